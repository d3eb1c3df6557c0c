"""The internal roles refuse to run outside their parent roles (issue 26, item 1).

host_packages is a step of docker and nvidia_container_toolkit, tfserving_input_firewall
of tfserving_lb and tfserving_monitoring. Run on their own (a play's roles, or an
include_role that does not name the caller), each fails on its first task, before any
change, saying that it is internal and which roles call it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_run import run_playbook

HOST_PACKAGES = (
    "host_packages is an internal role: called by docker and nvidia_container_toolkit only"
)
INPUT_FIREWALL = (
    "tfserving_input_firewall is an internal role: called by tfserving_lb and"
    " tfserving_monitoring only"
)

INCLUDE = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: tfserving.fleet.{role}
{tasks_from}      vars:
{vars}
"""

ROLES = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: tfserving.fleet.{role}
{vars}
"""


def run(tmp_path: Path, text: str) -> str:
    play = tmp_path / "play.yml"
    play.write_text(text)
    result = run_playbook(play)
    assert result.returncode != 0, result.stdout
    return " ".join((result.stdout + result.stderr).split())


@pytest.mark.parametrize("entry", ["os_family", "source", "install"])
def test_host_packages_refuses_an_include_without_its_caller(tmp_path: Path, entry: str) -> None:
    output = run(
        tmp_path,
        INCLUDE.format(
            role="host_packages",
            tasks_from=f"        tasks_from: {entry}\n",
            vars="        host_packages_name: example\n"
            "        host_packages_packages: [example]\n"
            "        host_packages_os_families: [Debian]\n"
            "        host_packages_key_url: https://example.invalid/gpg\n"
            "        host_packages_key_fingerprint: 0123456789ABCDEF0123456789ABCDEF01234567\n"
            "        host_packages_key_fingerprint_var: example_gpg_key_fingerprint\n",
        ),
    )
    assert HOST_PACKAGES in output
    assert "Refuse to run outside docker and nvidia_container_toolkit" in output


def test_host_packages_refuses_to_run_as_a_role_of_a_play(tmp_path: Path) -> None:
    output = run(tmp_path, ROLES.format(role="host_packages", vars=""))
    assert HOST_PACKAGES in output


def test_host_packages_refuses_another_caller(tmp_path: Path) -> None:
    """Its argument specs accept the parent roles only."""
    output = run(
        tmp_path,
        INCLUDE.format(
            role="host_packages",
            tasks_from="        tasks_from: os_family\n",
            vars="        host_packages_role: mine\n        host_packages_os_families: [Debian]\n",
        ),
    )
    assert "host_packages_role" in output and "docker, nvidia_container_toolkit" in output


def test_input_firewall_refuses_to_run_outside_its_parents(tmp_path: Path) -> None:
    output = run(
        tmp_path,
        INCLUDE.format(
            role="tfserving_input_firewall",
            tasks_from="",
            vars="        tfserving_input_firewall_name: demo\n"
            "        tfserving_input_firewall_rules: []\n"
            "        tfserving_input_firewall_enabled: false\n",
        ),
    )
    assert INPUT_FIREWALL in output
