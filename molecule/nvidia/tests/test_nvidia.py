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
SOURCE = "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"
OLD_SOURCE = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"  # planted by prepare.yml
FIXTURE_REPO = "/srv/nvidia-fixture-repo"
PACKAGES = [
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
]
PINNED = "1.17.8-1"  # vars/fixture.yml; the fixture repository also offers 1.18.0-1
GPU_FACT = "/etc/ansible/facts.d/nvidia_container_toolkit.fact"


def test_docker_was_not_restarted_after_the_first_converge(host) -> None:
    # Recorded by converge.yml after the first run; the idempotence run must not restart it.
    recorded = host.file("/var/tmp/docker-after-converge").content_string
    now = host.check_output("systemctl show docker --property=MainPID,ExecMainStartTimestamp")
    assert now.strip() == recorded.strip()


def _deb822(text: str) -> dict[str, str]:
    return dict(
        line.split(": ", 1) for line in text.splitlines() if ": " in line and line[0] != "#"
    )


def test_keyring_holds_only_the_pinned_key(host) -> None:
    keyring = host.file(KEYRING)
    assert keyring.is_file
    assert keyring.mode == 0o644
    listing = host.check_output(f"gpg --batch --with-colons --show-keys {KEYRING}")
    primary = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
    pinned = host.file(f"{FIXTURE_REPO}/gpgkey.fingerprint").content_string.strip()
    assert primary == [pinned]


def test_deb822_source_signed_by_the_keyring(host) -> None:
    fields = _deb822(host.file(SOURCE).content_string)
    assert fields["Types"] == "deb"
    assert fields["URIs"] == f"file://{FIXTURE_REPO}/stable/deb/$(ARCH)"
    assert fields["Suites"] == "/"
    assert "Components" not in fields
    assert fields["Signed-By"] == KEYRING
    # The one-line source an earlier version of the role wrote is gone (no duplicate source).
    assert not host.file(OLD_SOURCE).exists


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


def test_gpu_mode_is_recorded_for_later_plays(host) -> None:
    fact = json.loads(host.file(GPU_FACT).content_string)
    assert fact == {
        "gpu_enabled": True,
        "gpu_count": 1,
        "gpu_models": ["Tesla T4"],
        "driver_version": "535.183.01",
        "detection_source": "nvidia-smi",
        # What the tfserving role pins its servers to (tfserving_instance_mode per_gpu).
        "gpus": [
            {
                "index": 0,
                "name": "Tesla T4",
                "source": "nvidia-smi",
                "uuid": "GPU-2c7e5a10-9f43-b8d1-06e2-3a4c7d9b1e55",
                "memory_mib": 15360,
                "pci_bus": "00000000:00:1e.0",
                "mig": [],
            }
        ],
    }


def test_a_key_with_another_fingerprint_fails_and_keeps_the_keyring(host) -> None:
    before = host.check_output(f"sha256sum {KEYRING}")
    pinned = host.file(f"{FIXTURE_REPO}/gpgkey.fingerprint").content_string.strip()
    other = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
    result = _run_role(
        {"nvidia_container_toolkit_repo_gpg_key_fingerprint": other}, host.backend.get_hostname()
    )
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert f"nvidia_container_toolkit_repo_gpg_key_fingerprint={other}" in output, output[-3000:]
    assert f"holds the key {pinned}, not the pinned fingerprint {other}" in output
    assert host.check_output(f"sha256sum {KEYRING}") == before


def test_a_key_file_with_a_second_key_is_refused_and_keeps_the_keyring(host) -> None:
    before = host.check_output(f"sha256sum {KEYRING}")
    pinned = host.file(f"{FIXTURE_REPO}/gpgkey.fingerprint").content_string.strip()
    result = _run_role(
        {"nvidia_container_toolkit_repo_gpg_key_url": f"file://{FIXTURE_REPO}/gpgkey-two-keys"},
        host.backend.get_hostname(),
    )
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert f"holds the pinned key {pinned} and 1 other key(s)" in output, output[-3000:]
    assert "a keyring may hold only the pinned key" in output
    assert host.check_output(f"sha256sum {KEYRING}") == before


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
    # No apt, no daemon.json work on a CPU host: the one change is the GPU mode recorded
    # for later plays (this host was a GPU host until now), and a second run changes nothing.
    assert "Install the toolkit packages" not in output
    assert "Merge the nvidia runtime" not in output
    fact = json.loads(host.file(GPU_FACT).content_string)
    assert fact["gpu_enabled"] is False
    assert fact["detection_source"] == "none"
    again = _run_role(
        {
            "nvidia_container_toolkit_enabled": "auto",
            "nvidia_container_toolkit_nvidia_smi": "/nonexistent/nvidia-smi",
        },
        name,
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "changed=0" in again.stdout


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
