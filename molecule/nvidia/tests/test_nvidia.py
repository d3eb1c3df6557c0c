"""What a user of the nvidia_container_toolkit role relies on, on a fixture GPU host.

The host has no GPU: prepare.yml installs a recorded-output nvidia-smi and a signed local
repository of stand-in packages (see files/). What is checked here is what the role does
with them: repository, pinned packages, daemon.json, docker's runtime, and that its
checks fail the play when they should.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from converge_again import converge
from inner_images import busybox_image

SCENARIO_DIR = Path(__file__).resolve().parents[1]
KEYRING = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
SOURCE = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"
PACKAGES = [
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
]
PINNED = "1.17.8-1"  # vars/fixture.yml; the fixture repository also offers 1.18.0-1


def test_docker_was_not_restarted_after_the_first_converge(host) -> None:
    # Recorded by converge.yml after the first run; the idempotence run must not restart it.
    recorded = host.file("/var/tmp/docker-after-converge").content_string
    now = host.check_output("systemctl show docker --property=MainPID,ExecMainStartTimestamp")
    assert now.strip() == recorded.strip()


def test_keyring_and_signed_by_source(host) -> None:
    keyring = host.file(KEYRING)
    assert keyring.is_file
    assert "BEGIN PGP PUBLIC KEY BLOCK" in keyring.content_string
    source = host.file(SOURCE).content_string
    assert (
        f"deb [signed-by={KEYRING}] file:///srv/nvidia-fixture-repo/stable/deb/$(ARCH) /" in source
    )


def test_repository_signature_verifies_with_the_keyring(host) -> None:
    # Refresh only this source, into a lists directory of its own (the host's lists stay):
    # apt accepts the repository through the signed-by keyring alone.
    lists = "/tmp/nvidia-source-lists"
    host.run_expect([0], f"rm -rf {lists} && mkdir -p {lists}/partial")
    result = host.run(
        f"apt-get update -o Dir::State::Lists={lists} -o Dir::Etc::sourceparts=-"
        f" -o Dir::Etc::sourcelist={SOURCE}"
    )
    assert result.rc == 0, result.stderr
    assert "NO_PUBKEY" not in result.stderr
    assert "not signed" not in result.stderr
    assert host.file(f"{lists}/_srv_nvidia-fixture-repo_stable_deb_amd64_InRelease").is_file


@pytest.mark.parametrize("name", PACKAGES)
def test_packages_installed_at_the_pinned_version_and_held(host, name) -> None:
    package = host.package(name)
    assert package.is_installed
    assert package.version == PINNED
    assert host.check_output("dpkg-query --show --showformat='${Status}' %s", name).startswith(
        "hold "
    )


def test_daemon_json_keeps_planted_keys_and_adds_the_runtime(host) -> None:
    content = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert content["max-concurrent-downloads"] == 4  # planted by prepare.yml
    assert content["runtimes"]["runc-planted"] == {"path": "runc"}  # planted too
    assert content["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "args": []}
    assert "default-runtime" not in content


def test_docker_lists_the_nvidia_runtime(host) -> None:
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert "nvidia" in info["Runtimes"]
    assert "runc-planted" in info["Runtimes"]
    assert info["DefaultRuntime"] == "runc"


def test_a_container_runs_with_the_nvidia_runtime(host) -> None:
    # The fixture nvidia-container-runtime execs runc: this shows dockerd uses the runtime
    # entry the role wrote.
    image = busybox_image(host, "nvidia-fixture-busybox:local")
    out = host.check_output(
        f"docker run --rm --runtime nvidia {image} /bin/busybox echo via-nvidia-runtime"
    )
    assert out.strip() == "via-nvidia-runtime"


def test_cdi_spec_written(host) -> None:
    spec = host.file("/etc/cdi/nvidia.yaml")
    assert spec.is_file
    assert "kind: nvidia.com/gpu" in spec.content_string


def _run_role(extra_vars: dict[str, object], host_name: str) -> subprocess.CompletedProcess[str]:
    return converge(SCENARIO_DIR, extra_vars, host_name, playbook="toolkit.yml")


def _check_image(host, tag: str, nvidia_smi_body: str) -> str:
    """An image whose nvidia-smi (a fixture) prints what a container without GPUs sees."""
    return busybox_image(host, tag, {"/usr/bin/nvidia-smi": nvidia_smi_body})


def test_cpu_host_in_auto_mode_is_skipped_with_a_reason(host) -> None:
    name = host.backend.get_hostname()
    result = _run_role(
        {
            "nvidia_container_toolkit_enabled": "auto",
            "nvidia_container_toolkit_nvidia_smi": "/nonexistent/nvidia-smi",
        },
        name,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert (
        f"no NVIDIA GPU found on {name}"
        " (checked nvidia-smi, /proc/driver/nvidia, lspci): CPU serving" in output
    )
    assert "changed=0" in output
    # No apt, no daemon.json work on a CPU host.
    assert "Install the toolkit packages" not in output


def test_required_gpu_missing_fails_naming_host_and_sources(host) -> None:
    name = host.backend.get_hostname()
    before = host.file("/etc/docker/daemon.json").content_string
    result = _run_role({"nvidia_container_toolkit_nvidia_smi": "/nonexistent/nvidia-smi"}, name)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (
        f"nvidia_container_toolkit_enabled is true but no NVIDIA GPU was found on {name}"
        " (nvidia-smi: /nonexistent/nvidia-smi not found;"
        " /proc/driver/nvidia: not present (driver not loaded);"
    ) in output, output[-3000:]
    assert host.file("/etc/docker/daemon.json").content_string == before


def test_old_driver_fails_naming_required_and_found(host) -> None:
    result = _run_role(
        {"nvidia_container_toolkit_min_driver_version": "555.42.02"},
        host.backend.get_hostname(),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "NVIDIA driver 535.183.01 on" in output, output[-3000:]
    assert "the serving image needs driver 555.42.02 or newer" in output


@pytest.mark.parametrize(
    ("nvidia_smi_body", "message"),
    [
        # The container starts but lists no GPU.
        ("exit 0", "the container lists 0 GPU(s) (none) but detection found 1 via nvidia-smi"),
        # nvidia-smi in the container fails the way it does without a GPU.
        ("echo No devices were found; exit 6", "exited with status 6: No devices were found."),
    ],
)
def test_gpu_check_fails_the_play_when_the_container_sees_no_gpu(
    host, nvidia_smi_body, message
) -> None:
    image = _check_image(host, "nvidia-fixture-check:local", nvidia_smi_body)
    result = _run_role(
        {"nvidia_container_toolkit_check": True, "nvidia_container_toolkit_check_image": image},
        host.backend.get_hostname(),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "GPU check failed on" in output, output[-3000:]
    assert message in output, output[-3000:]
    # The check container is removed even when the check fails.
    assert host.run("docker container inspect nvidia-container-toolkit-check").rc != 0


def test_default_runtime_can_be_switched_on_and_back_off(host) -> None:
    name = host.backend.get_hostname()

    def default_runtime() -> str:
        return host.check_output("docker info --format '{{.DefaultRuntime}}'").strip()

    on = _run_role({"nvidia_container_toolkit_default_runtime": True}, name)
    assert on.returncode == 0, (on.stdout + on.stderr)[-3000:]
    assert default_runtime() == "nvidia"

    off = _run_role({"nvidia_container_toolkit_default_runtime": False}, name)
    assert off.returncode == 0, (off.stdout + off.stderr)[-3000:]
    assert default_runtime() == "runc"
    content = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert content["max-concurrent-downloads"] == 4
    assert content["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
