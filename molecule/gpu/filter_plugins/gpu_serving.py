"""Filters that read what nvidia-smi says about the processes using the GPUs.

{{ apps_csv | nvidia_smi_compute_apps }}
    -> [{'pid': 4242, 'process_name': '/usr/bin/tensorflow_model_server',
         'gpu_uuid': 'GPU-...', 'used_memory_mib': 6100}, ...]
{{ gpus_csv | nvidia_smi_gpu_memory }}
    -> [{'gpu_uuid': 'GPU-...', 'total_mib': 15360, 'used_memory_mib': 6400}, ...]
{{ apps | gpu_memory_over_fraction(gpus, 0.4, 1024) }}
    -> the entries using more than 0.4 x their GPU's memory + 1024 MiB

Inputs are the CSV forms (``--format=csv,noheader,nounits``) of
``nvidia-smi --query-compute-apps=pid,process_name,gpu_uuid,used_memory`` and
``nvidia-smi --query-gpu=uuid,memory.total,memory.used``.
"""

from __future__ import annotations


def _rows(output: str, width: int) -> list[list[str]]:
    rows: list[list[str]] = []
    for line in str(output).splitlines():
        if not line.strip() or line.lstrip().startswith("No running"):
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < width:
            raise ValueError(f"expected {width} comma-separated fields, got: {line!r}")
        # A process name may itself contain commas: the first and last fields are fixed.
        rows.append([fields[0], ",".join(fields[1 : len(fields) - 2]), *fields[-2:]])
    return rows


def _mib(text: str) -> int | None:
    """Memory in MiB; None where nvidia-smi cannot tell ('[N/A]', '[Not Supported]')."""
    try:
        return int(float(text))
    except ValueError:
        return None


def nvidia_smi_compute_apps(output: str) -> list[dict[str, object]]:
    """Processes using a GPU: pid, process_name, gpu_uuid, used_memory_mib (None if unknown)."""
    apps: list[dict[str, object]] = []
    for pid, name, uuid, used in _rows(output, 4):
        apps.append(
            {"pid": int(pid), "process_name": name, "gpu_uuid": uuid, "used_memory_mib": _mib(used)}
        )
    return apps


def nvidia_smi_gpu_memory(output: str) -> list[dict[str, object]]:
    """GPUs from ``--query-gpu=uuid,memory.total,memory.used``: gpu_uuid, total_mib,
    used_memory_mib (the GPU's memory in use by all processes together)."""
    gpus: list[dict[str, object]] = []
    for line in str(output).splitlines():
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        total = _mib(fields[1]) if len(fields) == 3 else None
        if total is None:
            raise ValueError(f"expected 'uuid, memory.total, memory.used', got: {line!r}")
        gpus.append({"gpu_uuid": fields[0], "total_mib": total, "used_memory_mib": _mib(fields[2])})
    return gpus


def gpu_memory_limits(
    gpus: list[dict[str, object]], fraction: float, margin_mib: int
) -> dict[str, float]:
    """{gpu uuid: fraction x the GPU's memory + margin}, in MiB."""
    return {
        str(gpu["gpu_uuid"]): float(fraction) * int(str(gpu["total_mib"])) + int(margin_mib)
        for gpu in gpus
    }


def gpu_memory_limit_not_below_total(
    gpus: list[dict[str, object]], fraction: float, margin_mib: int
) -> list[dict[str, object]]:
    """The GPUs whose limit is not below their memory: on them a check shows nothing."""
    limits = gpu_memory_limits(gpus, fraction, margin_mib)
    return [gpu for gpu in gpus if limits[str(gpu["gpu_uuid"])] >= int(str(gpu["total_mib"]))]


def gpu_memory_over_fraction(
    usages: list[dict[str, object]],
    gpus: list[dict[str, object]],
    fraction: float,
    margin_mib: int,
) -> list[dict[str, object]]:
    """The entries of `usages` (gpu_uuid, used_memory_mib) above their GPU's limit.

    An entry whose memory nvidia-smi cannot report, or whose GPU is unknown, is returned
    too: the limit cannot be shown to hold for it.
    """
    limits = gpu_memory_limits(gpus, fraction, margin_mib)
    over: list[dict[str, object]] = []
    for usage in usages:
        used = usage.get("used_memory_mib")
        limit = limits.get(str(usage.get("gpu_uuid")))
        if used is None or limit is None or int(str(used)) > limit:
            over.append(usage)
    return over


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "nvidia_smi_compute_apps": nvidia_smi_compute_apps,
            "nvidia_smi_gpu_memory": nvidia_smi_gpu_memory,
            "gpu_memory_limits": gpu_memory_limits,
            "gpu_memory_limit_not_below_total": gpu_memory_limit_not_below_total,
            "gpu_memory_over_fraction": gpu_memory_over_fraction,
        }
