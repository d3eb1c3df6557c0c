"""The host-setup steps the package roles share (roles/host_packages), with the values the
docker and nvidia_container_toolkit roles give them. Docker's and NVIDIA's repositories are
not reachable from here; molecule/nvidia runs the same steps against a signed local one."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from role_templates import ROOT

HOST_PACKAGES_VARS = yaml.safe_load((ROOT / "roles/host_packages/vars/main.yml").read_text())
HOST_PACKAGES_DEFAULTS = yaml.safe_load(
    (ROOT / "roles/host_packages/defaults/main.yml").read_text()
)


def template(expression: str, variables: dict[str, Any]) -> Any:
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    trusted = {
        key: trust_as_template(value) if isinstance(value, str) else value
        for key, value in {**HOST_PACKAGES_DEFAULTS, **HOST_PACKAGES_VARS, **variables}.items()
    }
    templar = Templar(loader=DataLoader(), variables=trusted)
    return templar.template(trust_as_template(expression))


def docker_vars(os_family: str, source: str, version: str) -> dict[str, Any]:
    os_vars = yaml.safe_load((ROOT / f"roles/docker/vars/{os_family}.yml").read_text())
    return {
        "ansible_facts": {"os_family": os_family},
        "host_packages_packages": os_vars["__docker_os_packages"][source],
        "host_packages_pinned": os_vars["__docker_os_pinned_packages"][source],
        "host_packages_version": version,
    }


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
    specs = template("{{ __host_packages_specs }}", docker_vars(os_family, source, version))
    assert specs[: len(wanted)] == wanted


def test_every_toolkit_package_is_pinned_by_default() -> None:
    """What the toolkit role's install step hands host_packages, with the role's defaults."""
    role = ROOT / "roles" / "nvidia_container_toolkit"
    toolkit = {
        **yaml.safe_load((role / "defaults" / "main.yml").read_text()),
        **yaml.safe_load((role / "vars" / "main.yml").read_text()),
        "ansible_facts": {"os_family": "Debian"},
    }
    [install] = [
        task["vars"]
        for task in yaml.safe_load((role / "tasks" / "setup.yml").read_text())
        if task.get("ansible.builtin.include_role", {}).get("tasks_from") == "install"
    ]
    passed = {
        name: template(install[name], toolkit)
        for name in ("host_packages_packages", "host_packages_version")
    }
    version = toolkit["nvidia_container_toolkit_version"]
    assert version, "nvidia_container_toolkit_version has no default"
    specs = template(
        "{{ __host_packages_specs }}", {**passed, "ansible_facts": {"os_family": "Debian"}}
    )
    assert specs == [f"{name}={version}" for name in toolkit["__nvidia_container_toolkit_packages"]]


def installed(**versions: str) -> dict[str, Any]:
    """package_facts' shape: name -> [{name, version, ...}]."""
    return {name: [{"name": name, "version": v, "source": "apt"}] for name, v in versions.items()}


@pytest.mark.parametrize(
    ("version", "have", "missing", "off_pin"),
    [
        # A converged host: nothing to refresh.
        ("5:27.5.*", {"docker-ce": "5:27.5.1-1~debian.12~bookworm"}, [], []),
        # Pinned to another release: the lists are refreshed before the install.
        ("5:27.4.*", {"docker-ce": "5:27.5.1-1~debian.12~bookworm"}, [], ["docker-ce"]),
        # Not installed yet.
        ("5:27.5.*", {}, ["docker-ce"], []),
        # No pin: any installed version is fine.
        ("", {"docker-ce": "5:26.0.0-1~debian.12~bookworm"}, [], []),
        # A version, not a glob: matched exactly (1.17.8-1 is not 1.17.8-10).
        ("1.17.8-1", {"docker-ce": "1.17.8-10"}, [], ["docker-ce"]),
    ],
)
def test_refresh_only_when_a_package_is_missing_or_off_its_pin(
    version: str, have: dict[str, str], missing: list[str], off_pin: list[str]
) -> None:
    variables = {
        "ansible_facts": {"os_family": "Debian", "packages": installed(**have)},
        "host_packages_packages": ["docker-ce"],
        "host_packages_version": version,
    }
    assert template("{{ __host_packages_missing }}", variables) == missing
    assert template("{{ __host_packages_off_pin }}", variables) == off_pin


def include_vars(role: str, task_file: str, task_name: str) -> dict[str, Any]:
    tasks = yaml.safe_load((ROOT / "roles" / role / "tasks" / task_file).read_text())
    [task] = [t for t in tasks if t["name"] == task_name]
    assert task["ansible.builtin.include_role"]["name"] == "tfserving.fleet.host_packages"
    return task["vars"]


def test_docker_repository_is_a_signed_deb822_source_with_the_pinned_key() -> None:
    step = include_vars(
        "docker",
        "setup.yml",
        "Add Docker's repository (signing key checked against the pinned fingerprint)",
    )
    defaults = yaml.safe_load((ROOT / "roles/docker/defaults/main.yml").read_text())
    variables = {
        **{k: v for k, v in defaults.items() if isinstance(v, str)},
        "ansible_facts": {"distribution": "Debian", "distribution_release": "bookworm"},
        "__docker_os_replaced_sources": [],
        "__docker_os_repository_name": "docker",
    }
    rendered = {k: template(v, variables) for k, v in step.items() if isinstance(v, str)}
    assert rendered["host_packages_apt_uri"] == "https://download.docker.com/linux/debian"
    assert rendered["host_packages_key_url"] == "https://download.docker.com/linux/debian/gpg"
    assert rendered["host_packages_key_fingerprint"] == "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
    assert rendered["host_packages_key_fingerprint_var"] == "docker_upstream_gpg_key_fingerprint"


def test_nvidia_pins_its_signing_key_by_default() -> None:
    defaults = yaml.safe_load(
        (ROOT / "roles/nvidia_container_toolkit/defaults/main.yml").read_text()
    )
    assert (
        defaults["nvidia_container_toolkit_repo_gpg_key_fingerprint"]
        == "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
    )
    step = include_vars(
        "nvidia_container_toolkit",
        "setup.yml",
        "Add NVIDIA's repository (signing key checked against the pinned fingerprint)",
    )
    assert step["host_packages_apt_suites"] == ["/"]  # a flat repository
    assert "host_packages_apt_components" not in step


def test_deb_architecture_names() -> None:
    arch = HOST_PACKAGES_VARS["__host_packages_deb_architectures"]
    assert arch["x86_64"] == "amd64"
    assert arch["aarch64"] == "arm64"


def test_dnf_repository_trusts_the_verified_local_key_file() -> None:
    """dnf imports the key that gpgkey points at when it first needs it: a URL would let
    it import whatever the URL serves then, past the pinned fingerprint. The key is fetched
    and checked once (signing_key), then rpm and the repository read that local file."""
    from role_tasks import evaluate, flat_tasks, load_yaml, module_args, role_variables

    tasks = list(flat_tasks(load_yaml(ROOT / "roles/host_packages/tasks/source-RedHat.yml")))
    variables = {
        **role_variables("host_packages"),
        "ansible_facts": {"os_family": "RedHat"},
        "host_packages_name": "docker",
        "host_packages_key_url": "https://download.docker.com/linux/rhel/gpg",
        "host_packages_key_fingerprint": "060A 61C5 1B55 8A7F 742B 77AA C52F EB6B 621E 9F35",
        "host_packages_dnf_baseurl": "https://download.docker.com/linux/rhel/9/x86_64/stable",
    }
    calls = [module_args(t) for t in tasks]
    modules = [name for name, _ in calls]
    assert modules.index("tfserving.fleet.signing_key") < modules.index("ansible.builtin.rpm_key")
    assert modules.index("ansible.builtin.rpm_key") < modules.index(
        "ansible.builtin.yum_repository"
    )
    checked = (
        "tfserving.fleet.signing_key",
        "ansible.builtin.rpm_key",
        "ansible.builtin.yum_repository",
    )
    args = {name: evaluate(value, variables) for name, value in calls if name in checked}
    key = args["tfserving.fleet.signing_key"]
    assert key["url"] == "https://download.docker.com/linux/rhel/gpg"
    assert key["dest"] == "/etc/pki/rpm-gpg/RPM-GPG-KEY-docker"
    assert key["fingerprint"] == variables["host_packages_key_fingerprint"]
    assert args["ansible.builtin.rpm_key"]["key"] == key["dest"]
    repository = args["ansible.builtin.yum_repository"]
    assert repository["gpgkey"] == "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-docker"
    assert repository["gpgcheck"] is True
