"""Filter for `nvidia-smi -L` output.

{{ smi_output | tfserving.fleet.nvidia_smi_list_gpus }}  -> ['NVIDIA A100 ...', ...]

Driver versions need no filter of their own: Ansible's `version` test compares them
numerically (`driver is ansible.builtin.version('525.60.13', '>=')`).
"""

from __future__ import annotations

import re

_GPU_LINE_RE = re.compile(r"^GPU\s+(\d+):\s*(.*?)\s*(?:\(UUID:\s*[^)]*\))?\s*$")


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
        return {"nvidia_smi_list_gpus": nvidia_smi_list_gpus}
