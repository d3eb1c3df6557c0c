#!/usr/bin/python
"""Find the NVIDIA GPUs of a host and the loaded driver version.

The parsers are pure functions so they can be tested against recorded outputs
(tests/test_nvidia_detection.py); the module only gathers the raw text.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

DOCUMENTATION = r"""
---
module: nvidia_gpu_info
short_description: Detect NVIDIA GPUs and the driver version on a host
description:
  - Tries three sources in order and reports the first that finds a GPU.
  - C(nvidia-smi --query-gpu) when the binary is present and answers (driver loaded).
  - C(/proc/driver/nvidia) (the kernel module's version file and C(gpus/*/information)).
  - NVIDIA (vendor 10de) VGA (class 0300) and 3D (class 0302) controllers in C(lspci -nn);
    this finds a GPU whose driver is not loaded, so the driver version stays empty.
  - Changes nothing on the host.
  - An C(_info) module by Ansible's convention. It returns what it found as the task's
    result (register it) and sets no C(ansible_facts).
attributes:
  check_mode:
    support: full
    details: It only reads, so it runs the same in check mode.
options:
  nvidia_smi:
    description: Name (looked up in PATH) or absolute path of nvidia-smi.
    type: str
    default: nvidia-smi
  proc_dir:
    description: Directory the NVIDIA kernel module publishes its state in.
    type: path
    default: /proc/driver/nvidia
  lspci:
    description: Name (looked up in PATH) or absolute path of lspci.
    type: str
    default: lspci
"""

EXAMPLES = r"""
- name: Detect the GPUs
  tfserving.fleet.nvidia_gpu_info:
  register: gpu
"""

RETURN = r"""
gpu_count:
  description: Number of NVIDIA GPUs found.
  type: int
  returned: always
gpu_models:
  description: Model name of each GPU, in the order of their index.
  type: list
  elements: str
  returned: always
driver_version:
  description: Loaded driver version, empty when no driver answered.
  type: str
  returned: always
detection_source:
  description: The source that found the GPUs (nvidia-smi, proc, lspci) or none.
  type: str
  returned: always
gpus:
  description: One entry per GPU (index, name, uuid, memory_mib, pci_bus, source).
  type: list
  elements: dict
  returned: always
checks:
  description: What each source said, in order, for messages.
  type: list
  elements: str
  returned: always
"""

# Fields asked from nvidia-smi. The name comes last so a comma inside a model name
# cannot shift the other columns.
NVIDIA_SMI_FIELDS = ("index", "uuid", "driver_version", "memory.total", "pci.bus_id", "name")
NVIDIA_SMI_QUERY = [
    "--query-gpu=" + ",".join(NVIDIA_SMI_FIELDS),
    "--format=csv,noheader,nounits",
]
NVIDIA_VENDOR_ID = "10de"
# PCI classes of display controllers that are GPUs: VGA compatible (0300), 3D (0302).
GPU_PCI_CLASSES = ("0300", "0302")

_PROC_VERSION_RE = re.compile(
    r"^NVRM version:.*?Kernel Module\S*(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)"
)
_LSPCI_RE = re.compile(
    r"^(?P<bus>\S+)\s+(?P<class_name>.+?)\s+\[(?P<class>[0-9a-f]{4})\]:\s+"
    r"(?P<description>.*?)\s*\[(?P<vendor>[0-9a-f]{4}):(?P<device>[0-9a-f]{4})\]",
    re.IGNORECASE,
)


@dataclass
class Gpu:
    index: int
    name: str
    source: str
    uuid: str = ""
    memory_mib: int | None = None
    pci_bus: str = ""


@dataclass
class Detection:
    source: str = "none"
    driver_version: str = ""
    gpus: list[Gpu] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    def as_result(self) -> dict[str, object]:
        return {
            "gpu_count": len(self.gpus),
            "gpu_models": [gpu.name for gpu in self.gpus],
            "driver_version": self.driver_version,
            "detection_source": self.source,
            "gpus": [asdict(gpu) for gpu in self.gpus],
            "checks": list(self.checks),
        }


def _int_or_none(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_nvidia_smi_query(text: str) -> tuple[list[Gpu], str]:
    """Parse `nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits`."""
    gpus: list[Gpu] = []
    driver_versions: list[str] = []
    fixed = len(NVIDIA_SMI_FIELDS) - 1
    for line in text.splitlines():
        # The name is the last column and may itself contain commas: split the others off.
        row = line.split(",", fixed)
        if len(row) < len(NVIDIA_SMI_FIELDS):
            continue
        index, uuid, driver, memory, bus = (cell.strip() for cell in row[:fixed])
        name = row[fixed].strip()
        position = _int_or_none(index)
        if position is None:
            continue
        gpus.append(
            Gpu(
                index=position,
                name=name,
                source="nvidia-smi",
                uuid=uuid,
                memory_mib=_int_or_none(memory),
                pci_bus=bus.lower(),
            )
        )
        driver_versions.append(driver)
    gpus.sort(key=lambda gpu: gpu.index)
    return gpus, (driver_versions[0] if driver_versions else "")


def parse_proc_version(text: str) -> str:
    """Driver version from /proc/driver/nvidia/version ('' when not recognised)."""
    for line in text.splitlines():
        match = _PROC_VERSION_RE.match(line.strip())
        if match:
            return match.group(1)
    return ""


def parse_proc_information(text: str) -> dict[str, str]:
    """Key/value pairs of /proc/driver/nvidia/gpus/<bus>/information."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            info[key.strip()] = value.strip()
    return info


def gpus_from_proc(informations: list[tuple[str, str]]) -> list[Gpu]:
    """GPUs from (bus directory name, information file text) pairs."""
    gpus: list[Gpu] = []
    for position, (bus, text) in enumerate(sorted(informations)):
        info = parse_proc_information(text)
        minor = _int_or_none(info.get("Device Minor", ""))
        gpus.append(
            Gpu(
                index=position if minor is None else minor,
                name=info.get("Model", "unknown NVIDIA GPU"),
                source="proc",
                uuid=info.get("GPU UUID", ""),
                pci_bus=info.get("Bus Location", bus).lower(),
            )
        )
    gpus.sort(key=lambda gpu: gpu.index)
    return gpus


def _lspci_model(description: str) -> str:
    """'NVIDIA Corporation GA100 [A100 PCIe 40GB]' -> 'A100 PCIe 40GB'."""
    brackets = re.findall(r"\[([^\[\]]+)\]", description)
    if brackets:
        return brackets[-1].strip()
    return re.sub(r"^NVIDIA Corporation\s+", "", description).strip() or "unknown NVIDIA GPU"


def parse_lspci(text: str) -> list[Gpu]:
    """NVIDIA VGA/3D controllers in `lspci -nn` output."""
    gpus: list[Gpu] = []
    for line in text.splitlines():
        match = _LSPCI_RE.match(line.strip())
        if not match:
            continue
        if (
            match["vendor"].lower() != NVIDIA_VENDOR_ID
            or match["class"].lower() not in GPU_PCI_CLASSES
        ):
            continue
        gpus.append(
            Gpu(
                index=len(gpus),
                name=_lspci_model(match["description"]),
                source="lspci",
                pci_bus=match["bus"].lower(),
            )
        )
    return gpus


@dataclass
class CommandResult:
    rc: int
    stdout: str
    stderr: str


@dataclass
class Probe:
    """What detection needs from the host; tests give recorded answers instead."""

    which: Callable[[str], str | None]
    run: Callable[[list[str]], CommandResult]
    read: Callable[[str], str | None]
    list_dir: Callable[[str], list[str]]


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def detect(
    probe: Probe,
    nvidia_smi: str = "nvidia-smi",
    proc_dir: str = "/proc/driver/nvidia",
    lspci: str = "lspci",
) -> Detection:
    """Try nvidia-smi, then /proc/driver/nvidia, then lspci; the first that finds GPUs wins.

    A driver version found by a source that saw no GPU is still kept (for messages).
    """
    found = Detection()

    smi = probe.which(nvidia_smi)
    if smi is None:
        found.checks.append(f"nvidia-smi: {nvidia_smi} not found")
    else:
        result = probe.run([smi, *NVIDIA_SMI_QUERY])
        gpus, driver = parse_nvidia_smi_query(result.stdout) if result.rc == 0 else ([], "")
        if gpus:
            found.checks.append(f"nvidia-smi: {len(gpus)} GPU(s), driver {driver}")
            found.source, found.driver_version, found.gpus = "nvidia-smi", driver, gpus
            return found
        reason = _first_line(result.stdout + "\n" + result.stderr) or "no GPU listed"
        found.checks.append(f"nvidia-smi: exit {result.rc}: {reason}")

    version_text = probe.read(os.path.join(proc_dir, "version"))
    if version_text is None:
        found.checks.append(f"{proc_dir}: not present (driver not loaded)")
    else:
        found.driver_version = parse_proc_version(version_text)
        gpu_dir = os.path.join(proc_dir, "gpus")
        informations = []
        for bus in probe.list_dir(gpu_dir):
            text = probe.read(os.path.join(gpu_dir, bus, "information"))
            if text is not None:
                informations.append((bus, text))
        gpus = gpus_from_proc(informations)
        found.checks.append(
            f"{proc_dir}: {len(gpus)} GPU(s), driver {found.driver_version or 'unknown'}"
        )
        if gpus:
            found.source, found.gpus = "proc", gpus
            return found

    lspci_path = probe.which(lspci)
    if lspci_path is None:
        found.checks.append(f"lspci: {lspci} not installed")
    else:
        result = probe.run([lspci_path, "-nn"])
        if result.rc != 0:
            found.checks.append(f"lspci: exit {result.rc}: {_first_line(result.stderr)}")
        else:
            gpus = parse_lspci(result.stdout)
            found.checks.append(f"lspci: {len(gpus)} NVIDIA VGA/3D controller(s)")
            if gpus:
                found.source, found.gpus = "lspci", gpus
                return found
    return found


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _list_dir(path: str) -> list[str]:
    return sorted(os.path.basename(entry) for entry in glob.glob(os.path.join(path, "*")))


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
            "proc_dir": {"type": "path", "default": "/proc/driver/nvidia"},
            "lspci": {"type": "str", "default": "lspci"},
        },
        supports_check_mode=True,
    )

    def which(name: str) -> str | None:
        if os.path.isabs(name):
            return name if os.access(name, os.X_OK) else None
        return module.get_bin_path(name)

    def run(argv: list[str]) -> CommandResult:
        rc, out, err = module.run_command(argv, environ_update={"LC_ALL": "C"})
        return CommandResult(rc, out, err)

    probe = Probe(which=which, run=run, read=_read, list_dir=_list_dir)
    found = detect(probe, **module.params)
    module.exit_json(changed=False, **found.as_result())


if __name__ == "__main__":
    main()
