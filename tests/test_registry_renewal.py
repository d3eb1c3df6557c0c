"""The registry role's certificates are made again before they expire: its pki tasks run
here (the controller's part of the role) against a temporary secrets directory, with
certificates made to expire in two days, and with fresh ones."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from ansible_run import run_playbook
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

PLAYBOOK = """
- name: The registry's secrets on the controller
  hosts: localhost
  gather_facts: false
  vars:
    tfserving_registry_host: localhost
    tfserving_registry_address: registry.test
  tasks:
    - name: Check the inputs
      ansible.builtin.include_role:
        name: tfserving.fleet.tfserving_registry
        tasks_from: assert
    - name: Create or renew the CA and the server certificate
      ansible.builtin.include_role:
        name: tfserving.fleet.tfserving_registry
        tasks_from: pki
"""

FILES = ("ca.crt", "ca.key", "server.crt", "server.key")
DAY = datetime.timedelta(days=1)


def pki(tmp_path: Path, *extra: str, **variables: int) -> str:
    """Run the pki tasks on tmp_path/secrets; the output (the run must succeed)."""
    playbook = tmp_path / "pki.yml"
    playbook.write_text(PLAYBOOK)
    argv = ["-e", f"tfserving_registry_secrets_dir={tmp_path / 'secrets'}"]
    for name, value in variables.items():
        argv += ["-e", f"tfserving_registry_{name}={value}"]
    result = run_playbook(playbook, *argv, *extra)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def files(tmp_path: Path) -> dict[str, bytes]:
    return {name: (tmp_path / "secrets" / name).read_bytes() for name in FILES}


def cert(tmp_path: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((tmp_path / "secrets" / name).read_bytes())


def days_left(certificate: x509.Certificate) -> float:
    left = certificate.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return left / DAY


def signed_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether CA's key signed CERTIFICATE (what a client checks against the CA it trusts)."""
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert certificate.signature_hash_algorithm is not None
    try:
        public_key.verify(
            certificate.signature,
            certificate.tbs_certificate_bytes,
            ec.ECDSA(certificate.signature_hash_algorithm),
        )
    except InvalidSignature:
        return False
    return certificate.issuer == ca.subject


def test_certificates_that_expire_in_two_days_are_made_again_with_the_same_keys(
    tmp_path: Path,
) -> None:
    pki(tmp_path, cert_days=2, cert_renew_days=1)
    old = files(tmp_path)
    old_ca = cert(tmp_path, "ca.crt")
    assert 1.9 < days_left(cert(tmp_path, "server.crt")) <= 2
    assert 1.9 < days_left(old_ca) <= 2

    # The role's defaults: 825 days, made again when fewer than 30 remain. With --diff and
    # -vvv, the key must not show.
    output = pki(tmp_path, "--diff", "-vvv")
    new = files(tmp_path)
    assert new["server.crt"] != old["server.crt"]
    assert new["ca.crt"] != old["ca.crt"]
    assert (new["server.key"], new["ca.key"]) == (old["server.key"], old["ca.key"])
    server, ca = cert(tmp_path, "server.crt"), cert(tmp_path, "ca.crt")
    assert 824 < days_left(server) <= 825
    assert 824 < days_left(ca) <= 825
    assert server.subject == x509.load_pem_x509_certificate(old["server.crt"]).subject
    assert ca.subject == old_ca.subject
    # Signed by the same CA key: docker hosts that still trust the old CA accept it.
    assert signed_by(server, ca)
    assert signed_by(server, old_ca)
    for secret in ("server.key", "ca.key"):
        # The last line of an EC key's PEM is the end of its public key, which the
        # certificate's info shows: every other line holds the private part.
        body = [line for line in new[secret].decode().splitlines() if "-----" not in line]
        assert not any(line in output for line in body[:-1]), secret

    # Renewed once: the next run leaves them alone.
    pki(tmp_path)
    assert files(tmp_path) == new


def test_only_the_certificate_that_expires_is_made_again(tmp_path: Path) -> None:
    pki(tmp_path)
    (tmp_path / "secrets" / "server.crt").unlink()
    pki(tmp_path, cert_days=2, cert_renew_days=1)  # a CA of 825 days, a server cert of 2
    old = files(tmp_path)
    pki(tmp_path)
    new = files(tmp_path)
    assert new["server.crt"] != old["server.crt"]
    assert {k: v for k, v in new.items() if k != "server.crt"} == {
        k: v for k, v in old.items() if k != "server.crt"
    }
    assert signed_by(cert(tmp_path, "server.crt"), cert(tmp_path, "ca.crt"))


def test_fresh_certificates_are_left_alone_and_the_window_is_the_variable(
    tmp_path: Path,
) -> None:
    pki(tmp_path, cert_days=60, cert_renew_days=30)
    made = files(tmp_path)
    pki(tmp_path, cert_renew_days=59)  # 60 days left, renewed below 59: left alone
    assert files(tmp_path) == made
    # 60 days left, renewed below 90: made again.
    pki(tmp_path, cert_renew_days=90)
    renewed = files(tmp_path)
    assert renewed["server.crt"] != made["server.crt"]
    assert renewed["ca.crt"] != made["ca.crt"]
    assert days_left(cert(tmp_path, "server.crt")) > 824


def test_a_given_ca_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "own").mkdir()
    pki(tmp_path / "own", cert_days=2, cert_renew_days=1)  # a CA of one's own, expiring
    ca_cert = (tmp_path / "own" / "secrets" / "ca.crt").read_text()
    ca_key = (tmp_path / "own" / "secrets" / "ca.key").read_text()
    given = tmp_path / "given.yml"
    given.write_text(
        "tfserving_registry_ca_cert: |\n"
        + "".join(f"  {line}\n" for line in ca_cert.splitlines())
        + "tfserving_registry_ca_key: |\n"
        + "".join(f"  {line}\n" for line in ca_key.splitlines())
    )
    pki(tmp_path, "-e", f"@{given}")
    assert (tmp_path / "secrets" / "ca.crt").read_text() == ca_cert
    server = cert(tmp_path, "server.crt")
    assert signed_by(server, cert(tmp_path, "ca.crt"))
    assert days_left(server) > 824


@pytest.mark.parametrize("window", [0, 825])
def test_a_window_that_does_not_fit_the_lifetime_stops_the_run(tmp_path: Path, window: int) -> None:
    playbook = tmp_path / "pki.yml"
    playbook.write_text(PLAYBOOK)
    result = run_playbook(
        playbook,
        "-e",
        f"tfserving_registry_secrets_dir={tmp_path / 'secrets'}",
        "-e",
        f"tfserving_registry_cert_renew_days={window}",
    )
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "tfserving_registry_cert_renew_days" in output, output[-3000:]
    assert not (tmp_path / "secrets").exists()
