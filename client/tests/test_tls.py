"""TLS with a private CA, a server certificate for another name, and client certificates."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from pathlib import Path

import pytest
from fake_server import serve
from tfs_client.cli import main

SERVER_NAME = "tfs.example.test"


def _with_cryptography(out: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def cert(subject: str, key, issuer_key, ca: bool, dns: str | None) -> bytes:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if dns:
            san = x509.SubjectAlternativeName([x509.DNSName(dns)])
            builder = builder.add_extension(san, critical=False)
        signed = builder.sign(issuer_key, hashes.SHA256())
        return signed.public_bytes(serialization.Encoding.PEM)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    (out / "ca.pem").write_bytes(cert("test CA", ca_key, ca_key, True, None))
    for who, dns in (("server", SERVER_NAME), ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        (out / f"{who}.key").write_bytes(pem)
        (out / f"{who}.pem").write_bytes(cert(who, key, ca_key, False, dns))


def _with_openssl(out: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=out, check=True, capture_output=True)

    def key(path: str) -> None:
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)

    key("ca.key")
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=test CA",
        "-days",
        "1",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-out",
        "ca.pem",
    )
    for who, dns in (("server", SERVER_NAME), ("client", None)):
        key(f"{who}.key")
        openssl("req", "-new", "-key", f"{who}.key", "-subj", f"/CN={who}", "-out", f"{who}.csr")
        ext = "basicConstraints=critical,CA:FALSE\n" + (
            f"subjectAltName=DNS:{dns}\n" if dns else ""
        )
        (out / f"{who}.ext").write_text(ext)
        openssl(
            "x509",
            "-req",
            "-in",
            f"{who}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            f"{who}.ext",
            "-out",
            f"{who}.pem",
        )


@pytest.fixture(scope="module", params=["cryptography", "openssl"])
def pki(request, tmp_path_factory) -> dict[str, Path]:
    """A private CA with a server certificate for SERVER_NAME and a client certificate."""
    out = tmp_path_factory.mktemp(request.param)
    if request.param == "cryptography":
        pytest.importorskip("cryptography")
        _with_cryptography(out)
    else:
        if shutil.which("openssl") is None:
            pytest.skip("openssl command not found")
        _with_openssl(out)
    return {
        name: out / name
        for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    }


@pytest.fixture
def tls_server(pki):
    import grpc

    credentials = grpc.ssl_server_credentials(
        [(pki["server.key"].read_bytes(), pki["server.pem"].read_bytes())],
        root_certificates=pki["ca.pem"].read_bytes(),
        require_client_auth=True,  # the server's client_verify: true
    )
    with serve(credentials=credentials) as (servicer, port):
        yield servicer, f"127.0.0.1:{port}"


def _status(server: str, *tls: str) -> int:
    return main(["status", "--server", server, "--model", "half_plus_two", "--timeout", "3", *tls])


def test_mutual_tls_with_server_name_override(tls_server, pki, capsys):
    servicer, server = tls_server
    code = _status(
        server,
        "--ca-file",
        str(pki["ca.pem"]),
        "--cert-file",
        str(pki["client.pem"]),
        "--key-file",
        str(pki["client.key"]),
        "--server-name-override",
        SERVER_NAME,
    )
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out == "half_plus_two version 123: AVAILABLE\n"
    assert len(servicer.calls("GetModelStatus")) == 1


@pytest.mark.parametrize(
    "drop", ["--server-name-override", "--cert-file", "--ca-file"], ids=["name", "cert", "ca"]
)
def test_handshake_failures_are_unavailable(tls_server, pki, capsys, drop):
    servicer, server = tls_server
    flags = {
        "--ca-file": str(pki["ca.pem"]),
        "--cert-file": str(pki["client.pem"]),
        "--key-file": str(pki["client.key"]),
        "--server-name-override": SERVER_NAME,
    }
    flags.pop(drop)
    if drop == "--cert-file":
        flags.pop("--key-file")
    code = _status(server, "--tls", *[x for item in flags.items() for x in item])
    _, err = capsys.readouterr()
    assert code == 3
    assert "UNAVAILABLE" in err and err.count("\n") == 1
    assert servicer.calls("GetModelStatus") == []


def test_plaintext_client_cannot_talk_to_tls_server(tls_server, capsys):
    _, server = tls_server
    assert _status(server) == 3


def test_certificate_without_key_is_a_usage_error(pki, capsys):
    code = _status("127.0.0.1:1", "--cert-file", str(pki["client.pem"]))
    assert code == 2
    assert "needs both --cert-file and --key-file" in capsys.readouterr().err


def test_missing_ca_file(tmp_path, capsys):
    code = _status("127.0.0.1:1", "--ca-file", str(tmp_path / "none.pem"))
    assert code == 2
    assert f"cannot read CA file {tmp_path / 'none.pem'}" in capsys.readouterr().err
