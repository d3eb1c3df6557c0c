"""The scenario reaches its host as users reach theirs: SSH as an unprivileged user with
passwordless sudo, and the host's key checked against this run's known_hosts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

INVENTORY = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "/nonexistent")).parent
HOST = "tfserving-debian12"


def ansible(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """ad-hoc ansible against the scenario's inventory, with molecule's ansible.cfg."""
    return subprocess.run(
        ["ansible", "-i", str(INVENTORY), HOST, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", "ANSIBLE_FORCE_COLOR": "0", **env},
    )


def host_vars() -> dict[str, str]:
    return yaml.safe_load((INVENTORY / "test_hosts.yml").read_text())["all"]["hosts"][HOST]


def test_connects_over_ssh_as_an_unprivileged_user(host) -> None:
    assert host_vars()["ansible_connection"] == "ssh"
    result = ansible("-m", "ansible.builtin.command", "-a", "id -un")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "deploy"
    # sudo needs no password, and the tests themselves read the host as root through it.
    assert host.check_output("id -u") == "0"


def test_a_host_key_that_is_not_the_hosts_is_refused(tmp_path: Path) -> None:
    """Host key checking is on: the same connection with another key on record fails."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True
    )
    address = host_vars()["ansible_host"]
    known = tmp_path / "known_hosts"
    known.write_text(f"{address} {(tmp_path / 'other.pub').read_text()}")
    wrong = ansible(
        "-m",
        "ansible.builtin.ping",
        "-e",
        f"ansible_ssh_common_args='-o UserKnownHostsFile={known}'",
        # A new connection: a persistent one (ControlPersist) checked the key when it opened.
        ANSIBLE_SSH_ARGS="-o ControlMaster=no",
    )
    assert wrong.returncode != 0
    assert "UNREACHABLE" in wrong.stdout, wrong.stdout + wrong.stderr
    assert "Host key verification failed" in wrong.stdout + wrong.stderr
    right = ansible("-m", "ansible.builtin.ping")
    assert right.returncode == 0, right.stdout + right.stderr
