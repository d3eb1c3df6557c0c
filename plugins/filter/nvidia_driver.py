"""Filters for NVIDIA driver versions and `nvidia-smi -L` output.

{{ '535.183.01' | nvidia_driver_at_least('525.60.13') }}  -> True
{{ smi_output | nvidia_smi_list_gpus }}                    -> ['NVIDIA A100 ...', ...]
"""

from __future__ import annotations

import re

_GPU_LINE_RE = re.compile(r"^GPU\s+(\d+):\s*(.*?)\s*(?:\(UUID:\s*[^)]*\))?\s*$")


def driver_version_key(version: str) -> tuple[int, ...]:
    """'535.183.01' -> (535, 183, 1). Raises ValueError for anything else."""
    text = str(version).strip()
    if not re.fullmatch(r"\d+(?:\.\d+)*", text):
        raise ValueError(f"not an NVIDIA driver version: {version!r}")
    return tuple(int(part) for part in text.split("."))


def nvidia_driver_at_least(found: str, required: str) -> bool:
    """Whether driver `found` is `required` or newer (numeric, field by field).

    Missing trailing fields count as zero, so 550 == 550.0.0. An empty or malformed
    `found` is never enough; a malformed `required` is an error in the inventory.
    """
    wanted = driver_version_key(required)
    try:
        have = driver_version_key(found)
    except ValueError:
        return False
    width = max(len(have), len(wanted))
    return have + (0,) * (width - len(have)) >= wanted + (0,) * (width - len(wanted))


def nvidia_smi_list_gpus(output: str) -> list[str]:
    """Names of the GPUs in `nvidia-smi -L` output ('GPU 0: NAME (UUID: ...)' lines)."""
    names: list[str] = []
    for line in str(output).splitlines():
        match = _GPU_LINE_RE.match(line.strip())
        if match:
            names.append(match.group(2))
    return names


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "nvidia_driver_at_least": nvidia_driver_at_least,
            "nvidia_smi_list_gpus": nvidia_smi_list_gpus,
        }
