#!/usr/bin/python
"""Find the NVIDIA GPUs of a host (or of a container), their MIG slices and the driver version.

The parsers are pure functions so they can be tested against recorded outputs
(tests/test_nvidia_detection.py); the module only gathers the raw text.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_info
short_description: Detect NVIDIA GPUs, their MIG slices and the driver version on a host
author: tfserving-fleet maintainers (!UNKNOWN)
description:
  - Tries three sources in order and reports the first that finds a GPU.
  - C(nvidia-smi --query-gpu) when the binary is present and answers (driver loaded);
    C(nvidia-smi -L) then adds each GPU's MIG slices (UUID and profile).
  - C(/proc/driver/nvidia) (the kernel module's version file and C(gpus/*/information)).
  - NVIDIA (vendor 10de) VGA (class 0300) and 3D (class 0302) controllers in C(lspci -nn);
    this finds a GPU whose driver is not loaded, so the driver version stays empty.
  - With O(container), only nvidia-smi is asked, through C(docker exec), and the answer is
    the GPUs and MIG slices that container sees.
  - Changes nothing on the host.
  - An C(_info) module by Ansible's convention. It returns what it found as the task's
    result (register it) and sets no C(ansible_facts).
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
  container:
    description:
      - Name of a running container to ask instead of the host (C(docker exec CONTAINER
        nvidia-smi ...)); O(nvidia_smi) is then its name or path inside the container.
      - Empty asks the host.
    type: str
    default: ""
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: It only reads, so it runs the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: ansible.builtin.setup
    description: >-
      Gathers no GPU facts, and nvidia-smi run by ansible.builtin.command leaves MIG slices, a
      driver that is not loaded (a GPU seen only in lspci) and the parsing to every caller.
"""

EXAMPLES = r"""
- name: Detect the GPUs
  tfserving.fleet.nvidia_gpu_info:
  register: gpu

- name: List the GPUs a serving container sees
  tfserving.fleet.nvidia_gpu_info:
    container: tfserving-1
  register: gpu_seen
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
  description:
    - One entry per GPU (index, name, uuid, memory_mib, pci_bus, source, mig).
    - C(mig) lists the GPU's MIG slices from C(nvidia-smi -L), each with C(index) (the
      slice's device number on its GPU), C(uuid) (C(MIG-...)) and C(profile) (C(1g.5gb));
      empty without slices or when nvidia-smi did not find the GPUs.
  type: list
  elements: dict
  returned: always
checks:
  description: What each source said, in order, for messages.
  type: list
  elements: str
  returned: always
"""

import glob
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

# Fields asked from nvidia-smi. The name comes last so a comma inside a model name
# cannot shift the other columns.
NVIDIA_SMI_FIELDS = ("index", "uuid", "driver_version", "memory.total", "pci.bus_id", "name")
NVIDIA_SMI_QUERY = [
    "--query-gpu=" + ",".join(NVIDIA_SMI_FIELDS),
    "--format=csv,noheader,nounits",
]
# Lists the GPUs and, under each, its MIG slices (the query above does not show slices).
NVIDIA_SMI_LIST = ["-L"]
NVIDIA_VENDOR_ID = "10de"
# PCI classes of display controllers that are GPUs: VGA compatible (0300), 3D (0302).
GPU_PCI_CLASSES = ("0300", "0302")

_PROC_VERSION_RE = re.compile(
    r"^NVRM version:.*?Kernel Module\S*(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)"
)
# `nvidia-smi -L`: "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-...)" and, under a GPU,
# "  MIG 3g.20gb     Device  0: (UUID: MIG-...)" (profiles such as 1g.10gb+me included;
# drivers before R470 wrote the slice UUID as MIG-GPU-<uuid>/<gi>/<ci>).
_LIST_GPU_RE = re.compile(
    r"^GPU\s+(?P<index>\d+):\s*(?P<name>.*?)\s*\(UUID:\s*(?P<uuid>[^)\s]+)\s*\)"
)
_LIST_MIG_RE = re.compile(
    r"^MIG\s+(?P<profile>\S+)\s+Device\s+(?P<index>\d+):\s*\(UUID:\s*(?P<uuid>[^)\s]+)\s*\)"
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
    # MIG slices: {index, uuid, profile}, in the order nvidia-smi -L lists them.
    mig: list[dict[str, object]] = field(default_factory=list)


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


def _mib_or_none(text: str) -> int | None:
    """'40960' (nounits) or '40960 MiB' -> 40960; '[N/A]' -> None."""
    value = text.strip()
    if value.endswith("MiB"):
        value = value[: -len("MiB")]
    return _int_or_none(value)


def _query_row(line: str, fields: tuple[str, ...]) -> dict[str, str] | None:
    """One CSV line of `--query-gpu=<fields>` as {field: text}; None when it is not one.

    The name may itself contain commas: the columns before it are split from the left,
    those after it from the right, and what lies between is the name.
    """
    at = fields.index("name") if "name" in fields else len(fields)
    before, after = fields[:at], fields[at + 1 :]
    head = line.split(",", len(before)) if before else [line]
    if len(head) < len(before) + 1:
        return None
    rest = head[len(before)]
    tail = rest.rsplit(",", len(after)) if after else [rest]
    if len(tail) < len(after) + 1:
        return None
    row = dict(zip(before, head[: len(before)], strict=True))
    if "name" in fields:
        row["name"] = tail[0]
    row.update(zip(after, tail[1:], strict=True))
    return {key: value.strip() for key, value in row.items()}


def parse_nvidia_smi_query(
    text: str, fields: tuple[str, ...] = NVIDIA_SMI_FIELDS
) -> tuple[list[Gpu], str]:
    """Parse `nvidia-smi --query-gpu=<fields> --format=csv,noheader[,nounits]`.

    FIELDS must name `index`; `uuid`, `name`, `memory.total`, `pci.bus_id` and
    `driver_version` are read when asked for (memory with or without its MiB unit).
    Returns the GPUs by index and the driver version ('' when not asked for).
    """
    gpus: list[Gpu] = []
    driver_versions: list[str] = []
    for line in text.splitlines():
        row = _query_row(line, fields)
        if row is None:
            continue
        position = _int_or_none(row["index"])
        if position is None:
            continue
        gpus.append(
            Gpu(
                index=position,
                name=row.get("name", ""),
                source="nvidia-smi",
                uuid=row.get("uuid", ""),
                memory_mib=_mib_or_none(row.get("memory.total", "")),
                pci_bus=row.get("pci.bus_id", "").lower(),
            )
        )
        driver_versions.append(row.get("driver_version", ""))
    gpus.sort(key=lambda gpu: gpu.index)
    return gpus, (driver_versions[0] if driver_versions else "")


def parse_nvidia_smi_list(text: str) -> list[Gpu]:
    """Parse `nvidia-smi -L`: the GPUs (index, name, uuid) with their MIG slices."""
    gpus: list[Gpu] = []
    for line in text.splitlines():
        stripped = line.strip()
        gpu = _LIST_GPU_RE.match(stripped)
        if gpu:
            gpus.append(
                Gpu(
                    index=int(gpu["index"]),
                    name=gpu["name"],
                    source="nvidia-smi",
                    uuid=gpu["uuid"],
                )
            )
            continue
        mig = _LIST_MIG_RE.match(stripped)
        if mig and gpus:
            gpus[-1].mig.append(
                {"index": int(mig["index"]), "uuid": mig["uuid"], "profile": mig["profile"]}
            )
    gpus.sort(key=lambda gpu: gpu.index)
    return gpus


def add_mig_slices(gpus: list[Gpu], listed: list[Gpu]) -> int:
    """Give each GPU the MIG slices `nvidia-smi -L` listed under it (matched by UUID, by
    index when either side has no UUID). Returns the number of slices added."""
    by_uuid = {gpu.uuid: gpu for gpu in listed if gpu.uuid}
    by_index = {gpu.index: gpu for gpu in listed}
    added = 0
    for gpu in gpus:
        match = by_uuid.get(gpu.uuid) if gpu.uuid else None
        if match is None and (not gpu.uuid or not by_uuid):
            match = by_index.get(gpu.index)
        if match is not None:
            gpu.mig = [dict(slice_) for slice_ in match.mig]
            added += len(gpu.mig)
    return added


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


def _ask_nvidia_smi(probe: Probe, smi: list[str], found: Detection) -> bool:
    """nvidia-smi's GPUs, then their MIG slices, into FOUND; False when it listed none."""
    result = probe.run([*smi, *NVIDIA_SMI_QUERY])
    gpus, driver = parse_nvidia_smi_query(result.stdout) if result.rc == 0 else ([], "")
    if not gpus:
        reason = _first_line(result.stdout + "\n" + result.stderr) or "no GPU listed"
        found.checks.append(f"nvidia-smi: exit {result.rc}: {reason}")
        return False
    found.checks.append(f"nvidia-smi: {len(gpus)} GPU(s), driver {driver}")
    listing = probe.run([*smi, *NVIDIA_SMI_LIST])
    if listing.rc == 0:
        slices = add_mig_slices(gpus, parse_nvidia_smi_list(listing.stdout))
        found.checks.append(f"nvidia-smi -L: {slices} MIG slice(s)")
    else:
        reason = _first_line(listing.stdout + "\n" + listing.stderr) or "no output"
        found.checks.append(f"nvidia-smi -L: exit {listing.rc}: {reason} (MIG slices unknown)")
    found.source, found.driver_version, found.gpus = "nvidia-smi", driver, gpus
    return True


def detect(
    probe: Probe,
    nvidia_smi: str = "nvidia-smi",
    proc_dir: str = "/proc/driver/nvidia",
    lspci: str = "lspci",
    container: str = "",
) -> Detection:
    """Try nvidia-smi, then /proc/driver/nvidia, then lspci; the first that finds GPUs wins.

    A driver version found by a source that saw no GPU is still kept (for messages).
    With CONTAINER, only nvidia-smi inside that container is asked (docker exec).
    """
    found = Detection()

    if container:
        docker = probe.which("docker")
        if docker is None:
            found.checks.append("docker: not found (needed to ask a container)")
        else:
            _ask_nvidia_smi(probe, [docker, "exec", container, nvidia_smi], found)
        return found

    smi = probe.which(nvidia_smi)
    if smi is None:
        found.checks.append(f"nvidia-smi: {nvidia_smi} not found")
    elif _ask_nvidia_smi(probe, [smi], found):
        return found

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
            "container": {"type": "str", "default": ""},
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
