"""GPU detection and driver checks of the nvidia_container_toolkit role, on recorded outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from plugin_files import load_plugin
from role_tasks import evaluate, task_file

ROOT = Path(__file__).resolve().parents[1]
ROLE = ROOT / "roles" / "nvidia_container_toolkit"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nvidia"


facts = load_plugin("modules", "nvidia_gpu_info")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


class FakeHost:
    """A host described by recorded outputs: binaries, command answers and files."""

    def __init__(
        self,
        binaries: dict[str, str] | None = None,
        commands: dict[str, tuple[int, str, str]] | None = None,
        files: dict[str, str] | None = None,
    ) -> None:
        self.binaries = binaries or {}
        self.commands = commands or {}
        self.files = files or {}
        self.ran: list[list[str]] = []

    def probe(self):
        return facts.Probe(which=self.which, run=self.run, read=self.read, list_dir=self.list_dir)

    def which(self, name: str) -> str | None:
        return self.binaries.get(name)

    def run(self, argv: list[str]):
        self.ran.append(argv)
        rc, out, err = self.commands[Path(argv[0]).name]
        return facts.CommandResult(rc, out, err)

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def list_dir(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted({p[len(prefix) :].split("/")[0] for p in self.files if p.startswith(prefix)})


def proc_files(version_fixture: str, with_gpus: bool = True) -> dict[str, str]:
    files = {"/proc/driver/nvidia/version": fixture(version_fixture)}
    if with_gpus:
        for info in sorted((FIXTURES / "proc-gpus").glob("*/information")):
            files[f"/proc/driver/nvidia/gpus/{info.parent.name}/information"] = info.read_text()
    return files


SMI = {"nvidia-smi": "/usr/bin/nvidia-smi"}
LSPCI = {"lspci": "/usr/bin/lspci"}


# --- parsers -----------------------------------------------------------------------------


def test_nvidia_smi_query_two_gpus() -> None:
    gpus, version = facts.parse_nvidia_smi_query(fixture("nvidia-smi-query-a100x2.csv"))
    assert version == "535.183.01"
    assert [gpu.name for gpu in gpus] == ["NVIDIA A100-SXM4-40GB"] * 2
    assert [gpu.index for gpu in gpus] == [0, 1]
    assert gpus[0].uuid == "GPU-4f1c2e9a-7b3d-5e60-9a12-c8d04b1e7f21"
    assert gpus[0].memory_mib == 40960
    assert gpus[1].pci_bus == "00000000:0f:00.0"


def test_nvidia_smi_query_name_with_comma_stays_whole() -> None:
    line = "0, GPU-1, 550.90.07, 24576, 00000000:01:00.0, NVIDIA RTX A5000, Laptop GPU\n"
    gpus, _ = facts.parse_nvidia_smi_query(line)
    assert [gpu.name for gpu in gpus] == ["NVIDIA RTX A5000, Laptop GPU"]


def test_nvidia_smi_query_ignores_noise() -> None:
    text = "\nNo devices were found\n" + fixture("nvidia-smi-query-t4.csv")
    gpus, version = facts.parse_nvidia_smi_query(text)
    assert [gpu.name for gpu in gpus] == ["Tesla T4"]
    assert version == "470.256.02"


@pytest.mark.parametrize(
    ("name", "version"),
    [("proc-version-proprietary.txt", "535.183.01"), ("proc-version-open.txt", "550.54.15")],
)
def test_proc_version(name: str, version: str) -> None:
    assert facts.parse_proc_version(fixture(name)) == version


def test_proc_version_unrecognised_is_empty() -> None:
    assert facts.parse_proc_version("something else\n") == ""


def test_proc_information() -> None:
    info = facts.parse_proc_information(fixture("proc-gpus/0000:2a:00.0/information"))
    assert info["Model"] == "NVIDIA H100 80GB HBM3"
    assert info["Device Minor"] == "1"
    assert info["Bus Location"] == "0000:2a:00.0"


def test_lspci_counts_only_nvidia_vga_and_3d_controllers() -> None:
    gpus = facts.parse_lspci(fixture("lspci-nn-t4-server.txt"))
    # The ASPEED VGA (vendor 1a03) and the T4's audio function (class 0403) do not count.
    assert [(gpu.name, gpu.pci_bus) for gpu in gpus] == [("Tesla T4", "3b:00.0")]


def test_lspci_eight_gpus_without_the_nvswitches() -> None:
    gpus = facts.parse_lspci(fixture("lspci-nn-a100-sxm.txt"))
    assert len(gpus) == 8
    assert {gpu.name for gpu in gpus} == {"A100 SXM4 40GB"}


def test_lspci_cpu_host_has_no_gpu() -> None:
    assert facts.parse_lspci(fixture("lspci-nn-cpu-host.txt")) == []


def test_lspci_model_without_brackets() -> None:
    line = (
        "0000:01:00.0 VGA compatible controller [0300]: "
        "NVIDIA Corporation Device [10de:2684] (rev a1)"
    )
    assert [gpu.name for gpu in facts.parse_lspci(line)] == ["Device"]


# --- detection order ---------------------------------------------------------------------


def test_detect_prefers_nvidia_smi() -> None:
    host = FakeHost(
        binaries={**SMI, **LSPCI},
        commands={"nvidia-smi": (0, fixture("nvidia-smi-query-a100x2.csv"), "")},
        files=proc_files("proc-version-proprietary.txt"),
    )
    result = facts.detect(host.probe()).as_result()
    assert result["detection_source"] == "nvidia-smi"
    assert result["gpu_count"] == 2
    assert result["gpu_models"] == ["NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB"]
    assert result["driver_version"] == "535.183.01"
    # Then -L for the MIG slices (this host answers it with the query's text: none).
    assert host.ran == [
        ["/usr/bin/nvidia-smi", *facts.NVIDIA_SMI_QUERY],
        ["/usr/bin/nvidia-smi", "-L"],
    ]
    assert result["checks"][-1] == "nvidia-smi -L: 0 MIG slice(s)"
    assert [gpu["mig"] for gpu in result["gpus"]] == [[], []]


def test_detect_falls_back_to_proc_when_nvidia_smi_fails() -> None:
    host = FakeHost(
        binaries=SMI,
        commands={"nvidia-smi": (9, fixture("nvidia-smi-no-driver.txt"), "")},
        files=proc_files("proc-version-open.txt"),
    )
    result = facts.detect(host.probe()).as_result()
    assert result["detection_source"] == "proc"
    assert result["gpu_models"] == ["NVIDIA H100 80GB HBM3"] * 2
    assert result["driver_version"] == "550.54.15"
    assert result["checks"][0].startswith("nvidia-smi: exit 9: NVIDIA-SMI has failed")


def test_detect_falls_back_to_lspci_without_driver() -> None:
    host = FakeHost(binaries=LSPCI, commands={"lspci": (0, fixture("lspci-nn-a100-sxm.txt"), "")})
    result = facts.detect(host.probe()).as_result()
    assert result["detection_source"] == "lspci"
    assert result["gpu_count"] == 8
    assert result["driver_version"] == ""
    assert result["checks"][:2] == [
        "nvidia-smi: nvidia-smi not found",
        "/proc/driver/nvidia: not present (driver not loaded)",
    ]


def test_detect_cpu_host_reports_every_source() -> None:
    host = FakeHost(binaries=LSPCI, commands={"lspci": (0, fixture("lspci-nn-cpu-host.txt"), "")})
    result = facts.detect(host.probe()).as_result()
    assert result == {
        "gpu_count": 0,
        "gpu_models": [],
        "driver_version": "",
        "detection_source": "none",
        "gpus": [],
        "checks": [
            "nvidia-smi: nvidia-smi not found",
            "/proc/driver/nvidia: not present (driver not loaded)",
            "lspci: 0 NVIDIA VGA/3D controller(s)",
        ],
    }


def test_detect_without_lspci_says_so() -> None:
    result = facts.detect(FakeHost().probe(), lspci="lspci").as_result()
    assert result["detection_source"] == "none"
    assert result["checks"][-1] == "lspci: lspci not installed"


def test_detect_keeps_driver_version_of_proc_without_gpus() -> None:
    host = FakeHost(
        binaries=LSPCI,
        commands={"lspci": (0, fixture("lspci-nn-t4-server.txt"), "")},
        files=proc_files("proc-version-proprietary.txt", with_gpus=False),
    )
    result = facts.detect(host.probe()).as_result()
    assert result["detection_source"] == "lspci"
    assert result["driver_version"] == "535.183.01"


def test_detect_uses_the_given_nvidia_smi_path() -> None:
    host = FakeHost(binaries={"/opt/fixture/nvidia-smi": "/opt/fixture/nvidia-smi"})
    host.commands["nvidia-smi"] = (0, fixture("nvidia-smi-query-t4.csv"), "")
    result = facts.detect(host.probe(), nvidia_smi="/opt/fixture/nvidia-smi").as_result()
    assert result["gpu_models"] == ["Tesla T4"]


# --- driver version and nvidia-smi -L filters ----------------------------------------------


def version_at_least(found: str, required: str) -> bool:
    """The role's driver check, evaluated by Ansible: the builtin `version` test."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    preflight = yaml.safe_load((ROLE / "tasks" / "preflight.yml").read_text())
    [check] = [t for t in preflight if t["name"].startswith("Fail when the driver is older")]
    condition = check["ansible.builtin.assert"]["that"]
    templar = Templar(
        loader=DataLoader(),
        variables={
            "nvidia_container_toolkit_driver_version": found,
            "nvidia_container_toolkit_min_driver_version": required,
        },
    )
    return templar.template(trust_as_template("{{ " + condition + " }}"))


@pytest.mark.parametrize(
    ("found", "required", "ok"),
    [
        ("535.183.01", "525.60.13", True),
        ("525.60.13", "525.60.13", True),
        ("525.60.11", "525.60.13", False),
        ("525.105.17", "525.60.13", True),  # numeric, not text: 105 > 60
        ("470.256.02", "525.60.13", False),
        ("550.0.1", "550", True),
        ("1000.1", "525.60.13", True),
    ],
)
def test_driver_check_compares_versions_numerically(found: str, required: str, ok: bool) -> None:
    assert version_at_least(found, required) is ok


def check_gpus(output: str) -> list[str]:
    """The GPU names check.yml reads from the container's `nvidia-smi -L` output."""
    name = "Fail unless the container lists every detected GPU"
    task = task_file("nvidia_container_toolkit", "check.yml", name)
    return evaluate(
        task["vars"]["__nvidia_container_toolkit_check_gpus"],
        {"__nvidia_container_toolkit_check_run": {"container": {"Output": output}}},
    )


@pytest.mark.parametrize(
    ("name", "gpus"),
    [
        ("nvidia-smi-L-a100x2.txt", ["NVIDIA A100-SXM4-40GB"] * 2),
        ("nvidia-smi-L-h100x8.txt", 8),
        ("nvidia-smi-L-a100-mig.txt", 2),  # the MIG lines are no GPUs of their own
        ("container-h100-gpu5-L.txt", 1),
    ],
)
def test_the_check_lists_the_gpus_of_nvidia_smi_l(name: str, gpus: list[str] | int) -> None:
    found = check_gpus(fixture(name))
    if isinstance(gpus, int):
        assert len(found) == gpus
        assert all(gpu.startswith("NVIDIA ") and "UUID" not in gpu for gpu in found)
    else:
        assert found == gpus


@pytest.mark.parametrize("output", ["", "No devices were found\n", "Failed to initialize NVML\n"])
def test_the_check_lists_no_gpus_without_them(output: str) -> None:
    assert check_gpus(output) == []
