"""A throw-away CA with a server and a client certificate, for the TLS test (cryptography)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def write_test_pki(out: Path, server_name: str) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def issue(subject: str, key, issuer: str, issuer_key, ca: bool, usage=None, dns=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if dns:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), False)
        return builder.sign(issuer_key, hashes.SHA256())

    def save(path: Path, data: bytes) -> Path:
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def key_pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("tfserving test CA", ca_key, "tfserving test CA", ca_key, True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = issue(
        server_name,
        server_key,
        "tfserving test CA",
        ca_key,
        False,
        ExtendedKeyUsageOID.SERVER_AUTH,
        server_name,
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = issue(
        "gate", client_key, "tfserving test CA", ca_key, False, ExtendedKeyUsageOID.CLIENT_AUTH
    )
    out.mkdir(parents=True, exist_ok=True)
    return Pki(
        ca_cert=save(out / "ca.pem", ca.public_bytes(pem)),
        server_cert=save(out / "server.pem", server.public_bytes(pem)),
        server_key=save(out / "server.key", key_pem(server_key)),
        client_cert=save(out / "client.pem", client.public_bytes(pem)),
        client_key=save(out / "client.key", key_pem(client_key)),
    )
