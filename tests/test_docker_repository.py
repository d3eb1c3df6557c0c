"""What the docker role writes for Docker's own repository (not reachable from here)."""

from __future__ import annotations

import configparser

import pytest
import yaml
from role_templates import ROOT, render

DEBIAN_VARS = yaml.safe_load((ROOT / "roles/docker/vars/Debian.yml").read_text())
MAIN_VARS = yaml.safe_load((ROOT / "roles/docker/vars/main.yml").read_text())


def facts(distribution: str, release: str, architecture: str) -> dict[str, object]:
    return {
        "ansible_facts": {
            "distribution": distribution,
            "distribution_release": release,
            "architecture": architecture,
        }
    }


def test_deb822_source_is_signed_by_the_keyring() -> None:
    text = render(
        "docker",
        "docker.sources.j2",
        **facts("Debian", "bookworm", "x86_64"),
        **DEBIAN_VARS,
        **MAIN_VARS,
        docker_upstream_repo_url="https://download.docker.com/linux/debian",
        docker_upstream_repo_channel="stable",
    )
    fields = dict(
        line.split(": ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert fields == {
        "Types": "deb",
        "URIs": "https://download.docker.com/linux/debian",
        "Suites": "bookworm",
        "Components": "stable",
        "Architectures": "amd64",
        "Signed-By": "/etc/apt/keyrings/docker.asc",
    }


def test_deb822_architecture_follows_the_host() -> None:
    text = render(
        "docker",
        "docker.sources.j2",
        **facts("Ubuntu", "noble", "aarch64"),
        **DEBIAN_VARS,
        **MAIN_VARS,
        docker_upstream_repo_url="https://download.docker.com/linux/ubuntu",
        docker_upstream_repo_channel="stable",
    )
    assert "Architectures: arm64" in text.splitlines()
    assert "Suites: noble" in text.splitlines()


def test_dnf_repository_checks_signatures() -> None:
    text = render(
        "docker",
        "docker-ce.repo.j2",
        docker_upstream_repo_url="https://download.docker.com/linux/rhel",
        docker_upstream_repo_channel="stable",
        docker_upstream_gpg_key_url="https://download.docker.com/linux/rhel/gpg",
    )
    repo = configparser.ConfigParser(interpolation=None)
    repo.read_string(text)
    section = repo["docker-ce-stable"]
    assert (
        section["baseurl"] == "https://download.docker.com/linux/rhel/$releasever/$basearch/stable"
    )
    assert section["gpgcheck"] == "1"
    assert section["gpgkey"] == "https://download.docker.com/linux/rhel/gpg"
    assert section["enabled"] == "1"


@pytest.mark.parametrize(
    ("os_family", "source", "version", "wanted"),
    [
        ("Debian", "distro", "", ["docker.io"]),
        ("Debian", "distro", "20.10.24+dfsg1-1+deb12u1", ["docker.io=20.10.24+dfsg1-1+deb12u1"]),
        (
            "Debian",
            "upstream",
            "5:27.5.*",
            [
                "docker-ce=5:27.5.*",
                "docker-ce-cli=5:27.5.*",
                "containerd.io",
                "docker-buildx-plugin",
            ],
        ),
        ("RedHat", "upstream", "27.5.1", ["docker-ce-27.5.1", "docker-ce-cli-27.5.1"]),
    ],
)
def test_pinned_package_specs(os_family: str, source: str, version: str, wanted: list[str]) -> None:
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    os_vars = yaml.safe_load((ROOT / f"roles/docker/vars/{os_family}.yml").read_text())
    variables = {
        **MAIN_VARS,
        **os_vars,
        "docker_packages_wanted": trust_as_template(MAIN_VARS["docker_packages_wanted"]),
        "docker_install_source": source,
        "docker_package_version": version,
    }
    templar = Templar(loader=DataLoader(), variables=variables)
    specs = templar.template(trust_as_template("{{ docker_packages_wanted }}"))
    assert specs[: len(wanted)] == wanted
