"""How many TF Serving servers a host runs, and the container of each (issue 25).

{{ gpus | tfserving.fleet.tfserving_instances({'mode': 'per_gpu', 'memory_fraction': 0.4}) }}
    -> [{'index': 0, 'name': 'tfserving', 'grpc_port': 8500, 'rest_port': 8600,
         'device': {'kind': 'gpu', 'uuid': 'GPU-...', ...},
         'gpu_uuids': ['GPU-...'],
         'device_requests': [{'driver': 'nvidia', 'device_ids': ['GPU-...'],
                              'capabilities': [['gpu']]}],
         'memory_fraction': 0.4, 'cpuset_cpus': '', 'cpu_share': 0}, ...]
{{ container_info.container | tfserving.fleet.tfserving_instance_container_problems(
       instance, image_info.images[0]) }}
    -> [] or what differs ('device requests ... expected ...', 'not running', ...)
{{ seen | tfserving.fleet.tfserving_instance_gpu_problems(instance) }}
    -> [] or why the GPUs a container sees are not the ones it was given

DEVICES are the GPUs the host serves on: the `gpus` that tfserving.fleet.nvidia_gpu_info
returns (index, uuid, name, memory_mib, mig: [{index, uuid, profile}], ...), or [] for a
host that serves on CPU (no GPU, or GPU serving turned off).

SETTINGS (every key optional):
  mode             one (default): a single server, as before instances existed;
                   per_gpu: one server per GPU, pinned by UUID;
                   per_mig: one per MIG slice, and one per GPU that is not split;
                   count: COUNT servers on a CPU host, the CPUs split between them.
  count            servers in count mode (default 1).
  grpc_port        host port of the first server's gRPC (default 8500); server i: + i.
  rest_port        host port of the first server's REST (default 8501; 0: no REST).
  memory_fraction  --per_process_gpu_memory_fraction of each GPU server (default 0: the
                   server's own default); each server has its device to itself, so every
                   one gets the whole fraction. CPU servers get 0.
  cpus             the host's CPU ids, split between the servers in count mode.
  name             container name (default tfserving).

Naming: server 0 is NAME and server i > 0 is NAME-i. One server is then exactly today's
single container (name, ports, devices), so upgrading the collection changes nothing on a
host left at one; going from one to N keeps server 0 where it was (same name and ports:
it is replaced in place like any changed container) and adds NAME-1 ... NAME-(N-1) on new
ports beside it, which can start before anything is drained. Had every server been NAME-i,
going to N would rename server 0 onto ports that the old container still holds.

Ports: server i listens on grpc_port + i and rest_port + i on the host (inside every
container the server keeps the image's 8500 and 8501). Both ranges must fit below 65536
and must not overlap: with the defaults 8500 and 8501, two servers or more need another
REST base (the message proposes one).

Bad settings raise AnsibleFilterError naming the role variable (NAMES maps each setting
to the variable the caller took it from; the defaults are the tfserving role's names).

Why not the library: ansible.builtin.zip, map and combine could build one server per GPU, but
not split CPUs, check the port ranges or compare a container's spec in one tested place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

MODES = ("one", "per_gpu", "per_mig", "count")
# Copies of the tfserving role's defaults (mode one): tests/test_shared_facts.py.
DEFAULTS: dict[str, Any] = {
    "mode": "one",
    "count": 1,
    "grpc_port": 8500,
    "rest_port": 8501,
    "memory_fraction": 0.0,
    "cpus": [],
    "name": "tfserving",
}
# The variable each setting comes from, for messages (override with the NAMES argument).
VARIABLES = {
    "mode": "tfserving_instance_mode",
    "count": "tfserving_instance_count",
    "grpc_port": "tfserving_grpc_port",
    "rest_port": "tfserving_rest_port",
    "memory_fraction": "tfserving_gpu_memory_fraction",
    "cpus": "tfserving_instance_cpus",
    "name": "tfserving_container_name",
}
# What the server listens on inside every container (the image's entrypoint).
CONTAINER_GRPC_PORT = 8500
CONTAINER_REST_PORT = 8501
FRACTION_FLAG = "--per_process_gpu_memory_fraction="
ALL_GPUS = {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}


def _int(value: Any, what: str) -> int:
    """An integer setting (ints, or digits as text from an environment lookup)."""
    if isinstance(value, bool):
        raise AnsibleFilterError(f"{what} is {value!r}: give a whole number.")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise AnsibleFilterError(f"{what} is {value!r}: give a whole number.")


def _float(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise AnsibleFilterError(f"{what} is {value!r}: give a number.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"{what} is {value!r}: give a number.") from None


def _cpu_ranges(cpus: Sequence[int]) -> str:
    """[0, 1, 2, 3, 8, 9] -> '0-3,8-9' (docker's --cpuset-cpus form)."""
    parts: list[str] = []
    start = previous = None
    for cpu in [*cpus, None]:
        if start is not None and (cpu is None or cpu != previous + 1):
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = None
        if cpu is not None and start is None:
            start = cpu
        previous = cpu
    return ",".join(parts)


def _cpuset(text: str) -> set[int]:
    """'0-3,8' -> {0, 1, 2, 3, 8}."""
    cpus: set[int] = set()
    for part in str(text or "").split(","):
        part = part.strip()
        if not part:
            continue
        low, _dash, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def _shares(cpus: Sequence[int], count: int) -> list[list[int]]:
    """COUNT contiguous runs of CPUS; sizes differ by one at most, the larger first."""
    size, extra = divmod(len(cpus), count)
    shares: list[list[int]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        shares.append(list(cpus[start:end]))
        start = end
    return shares


def _settings(settings: Mapping[str, Any] | None, names: Mapping[str, str]) -> dict[str, Any]:
    given = dict(settings or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise AnsibleFilterError(
            f"tfserving_instances: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(DEFAULTS)}."
        )
    merged = {**DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    mode = str(merged["mode"]).strip().lower()
    if mode not in MODES:
        raise AnsibleFilterError(
            f"{names['mode']} is {merged['mode']!r}: give one of {', '.join(MODES)}."
        )
    count = _int(merged["count"], names["count"])
    if count < 1:
        raise AnsibleFilterError(f"{names['count']} is {count}: give 1 or more.")
    fraction = _float(merged["memory_fraction"], names["memory_fraction"])
    if not 0.0 <= fraction <= 1.0:
        raise AnsibleFilterError(
            f"{names['memory_fraction']} is {fraction}: give 0 (the server's default) "
            "up to 1 (a share of each server's GPU memory)."
        )
    cpus_given = merged["cpus"]
    if isinstance(cpus_given, (str, bytes)) or not isinstance(cpus_given, Sequence):
        raise AnsibleFilterError(
            f"{names['cpus']} is {cpus_given!r}: give a list of the host's CPU ids."
        )
    cpus = [_int(cpu, f"{names['cpus']} entry") for cpu in cpus_given]
    if any(cpu < 0 for cpu in cpus) or len(set(cpus)) != len(cpus):
        raise AnsibleFilterError(
            f"{names['cpus']} is {cpus_given!r}: give each CPU id (0 or more) once."
        )
    name = str(merged["name"]).strip()
    if not name:
        raise AnsibleFilterError(f"{names['name']} is empty: give the container name.")
    return {
        "mode": mode,
        "count": count,
        "grpc_port": _int(merged["grpc_port"], names["grpc_port"]),
        "rest_port": _int(merged["rest_port"], names["rest_port"]),
        "memory_fraction": fraction,
        "cpus": sorted(cpus),
        "name": name,
    }


def _check_ports(grpc: int, rest: int, servers: int, names: Mapping[str, str]) -> None:
    grpc_name, rest_name = names["grpc_port"], names["rest_port"]
    plural = "1 server" if servers == 1 else f"{servers} servers"
    if not 1 <= grpc <= 65535:
        raise AnsibleFilterError(f"{grpc_name} is {grpc}: give a port in 1-65535.")
    if grpc + servers - 1 > 65535:
        raise AnsibleFilterError(
            f"{grpc_name} is {grpc}: {plural} need gRPC ports {grpc}-{grpc + servers - 1}, "
            "past 65535."
        )
    if rest == 0:
        return
    if not 1 <= rest <= 65535:
        raise AnsibleFilterError(f"{rest_name} is {rest}: give a port in 1-65535 (0: no REST).")
    if rest + servers - 1 > 65535:
        raise AnsibleFilterError(
            f"{rest_name} is {rest}: {plural} need REST ports {rest}-{rest + servers - 1}, "
            "past 65535."
        )
    if rest <= grpc + servers - 1 and grpc <= rest + servers - 1:
        proposal = ((grpc + servers) // 100 + 1) * 100
        hint = f" (for instance {rest_name}: {proposal})" if proposal + servers - 1 <= 65535 else ""
        raise AnsibleFilterError(
            f"{grpc_name} {grpc} and {rest_name} {rest} collide with {plural}: gRPC takes "
            f"{grpc}-{grpc + servers - 1} and REST {rest}-{rest + servers - 1}. Put the REST "
            f"base at least {servers} ports away from the gRPC base{hint}."
        )


def _gpu_label(device: Mapping[str, Any]) -> str:
    return f"GPU {device.get('index', '?')} ({device.get('name') or 'unknown model'})"


def _whole_gpu(device: Mapping[str, Any], names: Mapping[str, str], mode: str) -> dict[str, Any]:
    uuid = str(device.get("uuid") or "")
    if not uuid:
        raise AnsibleFilterError(
            f"{names['mode']} is {mode}, but {_gpu_label(device)} has no UUID (found by "
            f"{device.get('source') or 'an unknown source'}): a server is pinned to its GPU by "
            "UUID, which only a loaded driver (nvidia-smi) reports."
        )
    return {
        "kind": "gpu",
        "uuid": uuid,
        "gpu_index": int(device.get("index", 0)),
        "gpu_uuid": uuid,
        "name": str(device.get("name") or ""),
        "profile": "",
    }


def _devices(
    devices: Sequence[Mapping[str, Any]], mode: str, names: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The device of each server in per_gpu and per_mig modes, in GPU index order."""
    if not devices:
        raise AnsibleFilterError(
            f"{names['mode']} is {mode}, but this host serves on CPU (no GPU detected, or GPU "
            "serving turned off): give one or count."
        )
    ordered = sorted(devices, key=lambda device: int(device.get("index", 0)))
    if mode == "per_gpu":
        split = [device for device in ordered if device.get("mig")]
        if split:
            raise AnsibleFilterError(
                f"{names['mode']} is per_gpu, but "
                + ", ".join(f"{_gpu_label(d)} has {len(d['mig'])} MIG slice(s)" for d in split)
                + ": CUDA cannot use a split GPU whole. Give per_mig."
            )
        return [_whole_gpu(device, names, mode) for device in ordered]
    if not any(device.get("mig") for device in ordered):
        raise AnsibleFilterError(
            f"{names['mode']} is per_mig, but no GPU of this host has MIG slices: give per_gpu "
            "(or create the slices first)."
        )
    chosen: list[dict[str, Any]] = []
    for device in ordered:
        if not device.get("mig"):
            chosen.append(_whole_gpu(device, names, mode))
            continue
        for slice_ in device["mig"]:
            chosen.append(
                {
                    "kind": "mig",
                    "uuid": str(slice_["uuid"]),
                    "gpu_index": int(device.get("index", 0)),
                    "gpu_uuid": str(device.get("uuid") or ""),
                    "name": str(device.get("name") or ""),
                    "profile": str(slice_.get("profile") or ""),
                }
            )
    return chosen


def tfserving_instances(
    devices: Sequence[Mapping[str, Any]] | None,
    settings: Mapping[str, Any] | None = None,
    names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The servers of a host, in index order (see the module's docstring).

    Each is {index, name, grpc_port, rest_port, device, gpu_uuids, device_requests,
    memory_fraction, cpuset_cpus, cpu_share}: DEVICE is the GPU or MIG slice a server is
    pinned to (None in mode one and on CPU), GPU_UUIDS what it sees (every GPU in mode one),
    DEVICE_REQUESTS the argument of community.docker.docker_container, CPUSET_CPUS its CPUs
    in count mode ('' otherwise) and CPU_SHARE their number, for --cpus where cpusets do not
    work (0 otherwise).
    """
    variables = {**VARIABLES, **(names or {})}
    given = _settings(settings, variables)
    mode = given["mode"]
    gpus = [dict(device) for device in devices or []]
    fraction = given["memory_fraction"] if gpus else 0.0

    pinned: list[dict[str, Any] | None]
    shares: list[list[int]] = []
    if mode in ("per_gpu", "per_mig"):
        pinned = list(_devices(gpus, mode, variables))
    elif mode == "count":
        if gpus:
            raise AnsibleFilterError(
                f"{variables['mode']} is count, which splits a CPU host's CPUs, but this host "
                f"serves on {len(gpus)} GPU(s): give one, per_gpu or per_mig."
            )
        count, cpus = given["count"], given["cpus"]
        if count > 1 and not cpus:
            raise AnsibleFilterError(
                f"{variables['count']} is {count}: {variables['cpus']} must list the host's "
                "CPU ids to split between the servers."
            )
        if count > 1 and count > len(cpus):
            raise AnsibleFilterError(
                f"{variables['count']} is {count}, more than the {len(cpus)} CPU(s) in "
                f"{variables['cpus']}: give at most {len(cpus)}."
            )
        # A single server keeps every CPU unpinned, as before instances existed.
        shares = _shares(cpus, count) if count > 1 else []
        pinned = [None] * count
    else:
        pinned = [None]

    servers = len(pinned)
    _check_ports(given["grpc_port"], given["rest_port"], servers, variables)

    instances: list[dict[str, Any]] = []
    for index, device in enumerate(pinned):
        if device is not None:
            requests = [
                {"driver": "nvidia", "device_ids": [device["uuid"]], "capabilities": [["gpu"]]}
            ]
            seen = [device["uuid"]]
        elif gpus:
            requests = [dict(ALL_GPUS, capabilities=[["gpu"]])]
            seen = [str(gpu["uuid"]) for gpu in gpus if gpu.get("uuid")]
        else:
            requests, seen = [], []
        share = shares[index] if shares else []
        instances.append(
            {
                "index": index,
                "name": given["name"] if index == 0 else f"{given['name']}-{index}",
                "grpc_port": given["grpc_port"] + index,
                "rest_port": given["rest_port"] + index if given["rest_port"] else 0,
                "device": device,
                "gpu_uuids": seen,
                "device_requests": requests,
                "memory_fraction": fraction,
                "cpuset_cpus": _cpu_ranges(share),
                "cpu_share": len(share),
            }
        )
    return instances


# --- checks of a running server against its instance -----------------------------------


def _request_key(request: Mapping[str, Any]) -> tuple[str, int, tuple[str, ...], str]:
    """A device request, from docker inspect (Driver, Count, DeviceIDs, Capabilities) or
    the docker_container argument (driver, count, device_ids, capabilities), comparable."""

    def get(key: str) -> Any:
        camel = {"device_ids": "DeviceIDs"}.get(key, key.capitalize())
        return request.get(key, request.get(camel))

    capabilities = sorted(sorted(str(c) for c in group) for group in get("capabilities") or [])
    return (
        str(get("driver") or ""),
        int(get("count") or 0),
        tuple(sorted(str(d) for d in get("device_ids") or [])),
        repr(capabilities),
    )


def _show_request(key: tuple[str, int, tuple[str, ...], str]) -> str:
    driver, count, ids, capabilities = key
    devices = f"device_ids {list(ids)}" if ids else f"count {count}"
    return f"{{driver {driver or '(none)'}, {devices}, capabilities {capabilities}}}"


def _host_ports(container: Mapping[str, Any], port: int) -> list[int | str]:
    """The host ports the container's PORT is published on (docker inspect's PortBindings)."""
    bindings = (container.get("HostConfig") or {}).get("PortBindings") or {}
    ports = [str(b.get("HostPort") or "") for b in bindings.get(f"{port}/tcp") or []]
    return sorted((int(p) if p.isdigit() else p for p in ports), key=str)


def tfserving_instance_container_problems(
    container: Mapping[str, Any] | None,
    instance: Mapping[str, Any],
    image: Mapping[str, Any] | None = None,
) -> list[str]:
    """What differs between a server's container and its INSTANCE ([] when nothing).

    CONTAINER is docker inspect's answer (community.docker.docker_container_info's
    `container`; None or {} when there is none) and IMAGE its image's (docker_image_info's
    `images[0]`). A GPU instance must run the GPU image (CUDA_VERSION in its environment),
    exactly its device requests and its memory fraction flag; a CPU instance none of them.
    Also checked: the name, that it runs, the published ports and the CPUs.
    """
    name = str(instance["name"])
    if not container:
        return [f"no container {name}"]
    problems: list[str] = []
    found_name = str(container.get("Name") or "").lstrip("/")
    if found_name != name:
        problems.append(f"container is named {found_name!r}, expected {name!r}")
    state = container.get("State") or {}
    if not state.get("Running"):
        problems.append(f"{name} is not running (status {state.get('Status', 'unknown')})")

    gpu = bool(instance.get("device_requests"))
    if image is None:
        problems.append(f"{name}: its image could not be read")
    else:
        env = (image.get("Config") or {}).get("Env") or []
        cuda = any(str(item).startswith("CUDA_VERSION=") for item in env)
        ref = (container.get("Config") or {}).get("Image", "?")
        if gpu and not cuda:
            problems.append(f"{name} runs {ref}, not the GPU image (no CUDA_VERSION in its env)")
        if not gpu and cuda:
            problems.append(f"{name} runs {ref}, a GPU image, on a CPU instance")

    host = container.get("HostConfig") or {}
    found = sorted(_request_key(r) for r in host.get("DeviceRequests") or [])
    wanted = sorted(_request_key(r) for r in instance.get("device_requests") or [])
    if found != wanted:
        problems.append(
            f"{name} has device requests [{', '.join(_show_request(k) for k in found)}], "
            f"expected [{', '.join(_show_request(k) for k in wanted)}]"
        )

    args = [str(arg) for arg in container.get("Args") or []]
    flags = [arg[len(FRACTION_FLAG) :] for arg in args if arg.startswith(FRACTION_FLAG)]
    fraction = float(instance.get("memory_fraction") or 0.0)
    if fraction > 0:
        try:
            values = [float(flag) for flag in flags]
        except ValueError:
            values = []
        if values != [fraction]:
            given = ", ".join(FRACTION_FLAG + flag for flag in flags) or "no fraction flag"
            problems.append(f"{name} has {given}, expected {FRACTION_FLAG}{fraction}")
    elif flags:
        problems.append(f"{name} has {FRACTION_FLAG}{flags[0]}, expected no fraction flag")

    grpc = _host_ports(container, CONTAINER_GRPC_PORT)
    if grpc != [int(instance["grpc_port"])]:
        problems.append(f"{name} publishes gRPC on {grpc}, expected [{instance['grpc_port']}]")
    rest = _host_ports(container, CONTAINER_REST_PORT)
    wanted_rest = [int(instance["rest_port"])] if instance.get("rest_port") else []
    if rest != wanted_rest:
        problems.append(f"{name} publishes REST on {rest}, expected {wanted_rest}")

    cpuset = _cpuset(str(host.get("CpusetCpus") or ""))
    wanted_cpus = _cpuset(str(instance.get("cpuset_cpus") or ""))
    share = int(instance.get("cpu_share") or 0)
    # Where cpusets do not work, the share may be given as --cpus instead (NanoCpus).
    as_cpus = not cpuset and share and int(host.get("NanoCpus") or 0) == share * 10**9
    if cpuset != wanted_cpus and not as_cpus:
        problems.append(
            f"{name} runs on CPUs {_cpu_ranges(sorted(cpuset)) or 'all'}, "
            f"expected {instance.get('cpuset_cpus') or 'all'}"
        )
    return problems


def tfserving_instance_gpu_problems(
    seen: Mapping[str, Any] | Sequence[Mapping[str, Any]], instance: Mapping[str, Any]
) -> list[str]:
    """Why the GPUs a server's container sees are not those of its INSTANCE ([] if they are).

    SEEN is tfserving.fleet.nvidia_gpu_info's answer for the container (`container:` set),
    or its `gpus`. A server pinned to a GPU must see that GPU alone; pinned to a MIG slice,
    that slice alone (nvidia-smi also lists the slice's GPU, which is expected); in mode
    one every GPU of the host; on CPU none.
    """
    checks: list[str] = []
    if isinstance(seen, Mapping):
        checks = [str(check) for check in seen.get("checks") or []]
        gpus = list(seen.get("gpus") or [])
    else:
        gpus = list(seen)
    name = str(instance["name"])
    seen_gpus = sorted(str(gpu.get("uuid") or "") for gpu in gpus)
    seen_slices = sorted(str(s["uuid"]) for gpu in gpus for s in gpu.get("mig") or [])
    shown = ", ".join(seen_gpus + seen_slices) or "no GPU" + (
        f" ({'; '.join(checks)})" if checks else ""
    )
    device = instance.get("device")
    if device is None:
        wanted = sorted(str(uuid) for uuid in instance.get("gpu_uuids") or [])
        if not instance.get("device_requests"):
            return [] if not gpus else [f"{name} is a CPU server but sees {shown}"]
        if seen_gpus != wanted:
            return [f"{name} sees {shown}; it was given every GPU of the host: {wanted}"]
        return []
    if device["kind"] == "mig":
        ok = seen_gpus == [str(device["gpu_uuid"])] and seen_slices == [str(device["uuid"])]
    else:
        ok = seen_gpus == [str(device["uuid"])] and not seen_slices
    if ok:
        return []
    return [f"{name} sees {shown}; it was given {device['kind'].upper()} {device['uuid']} alone"]


# --- what other hosts know of a node's servers ------------------------------------------


def tfserving_instance_server_name(index: Any, node: str) -> str:
    """The load balancer's name for server INDEX of NODE: the node's own name for server 0
    (so a node with one server keeps the name it had before instances), NODE-i after."""
    number = _int(index, "server index")
    return str(node) if number == 0 else f"{node}-{number}"


def tfserving_instance_record(pair: Sequence[Any]) -> dict[str, Any]:
    """What the tfserving role records of one server (record.yml), from (instance, server
    name): what the load balancers, monitoring and a person asking which GPU it serves need."""
    instance, server = pair
    return {
        "index": int(instance["index"]),
        "name": str(instance["name"]),
        "server": str(server),
        "grpc_port": int(instance["grpc_port"]),
        "rest_port": int(instance["rest_port"] or 0),
        "device": dict(instance["device"]) if instance.get("device") else None,
        "gpu_uuids": [str(uuid) for uuid in instance.get("gpu_uuids") or []],
        "cpuset_cpus": str(instance.get("cpuset_cpus") or ""),
    }


def _recorded_servers(value: Any, node: str) -> list[dict[str, Any]]:
    """The servers of a node's record (ansible_local.tfserving_instances.servers), checked."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise AnsibleFilterError(f"the record of {node}'s servers is not a list: {value!r}")
    servers = []
    for entry in value:
        if not isinstance(entry, Mapping):
            raise AnsibleFilterError(f"a server in the record of {node} is no mapping: {entry!r}")
        where = f"in the record of {node}"
        index = _int(entry.get("index", 0), f"server index {where}")
        servers.append(
            {
                "name": str(entry.get("server") or tfserving_instance_server_name(index, node)),
                "index": index,
                "grpc_port": _int(entry.get("grpc_port"), f"grpc_port {where}"),
                "rest_port": _int(entry.get("rest_port") or 0, f"rest_port {where}"),
            }
        )
    return sorted(servers, key=lambda server: server["index"])


def tfserving_lb_backend_servers(
    nodes: Sequence[Sequence[Any]],
    recorded: Mapping[str, Any] | None = None,
    written: Mapping[str, Any] | None = None,
    grpc_port: Any = 8500,
    rest_port: Any = 8501,
) -> list[dict[str, Any]]:
    """Every server a load balancer sends to: one line per server of each node.

    NODES are [name, address] pairs in inventory order. A node's servers are those its
    record lists (RECORDED: {node: servers of ansible_local.tfserving_instances}, read from
    the nodes in this run by playbooks/instances.yml; None or [] where it has none); else
    what this load balancer wrote for it last time (WRITTEN, its own record, for a node
    left out of this run by --limit); else one server on GRPC_PORT and REST_PORT named as
    the node, which is the configuration from before instances, line for line.

    -> [{name, node, index, address, grpc_port, rest_port}]
    """
    recorded = recorded or {}
    written = written or {}
    servers: list[dict[str, Any]] = []
    for pair in nodes:
        node, address = str(pair[0]), str(pair[1])
        found = recorded.get(node) or written.get(node)
        if found:
            own = _recorded_servers(found, node)
        else:
            own = [
                {
                    "name": node,
                    "index": 0,
                    "grpc_port": _int(grpc_port, "tfserving_lb_node_grpc_port"),
                    "rest_port": _int(rest_port, "tfserving_lb_node_rest_port"),
                }
            ]
        servers.extend({**server, "node": node, "address": address} for server in own)
    return servers


def tfserving_lb_server_ports(
    instances: Sequence[Mapping[str, Any]], node: str, backend: str = "grpc"
) -> dict[str, dict[str, int]]:
    """{server name: {port, check_port}} of a node's servers (tfserving_instances) in the
    load balancer's gRPC or REST backend: traffic on the gRPC (or REST) port, the health
    check on the REST port. What haproxy_server's ports option takes."""
    ports: dict[str, dict[str, int]] = {}
    for instance in instances or []:
        rest = int(instance.get("rest_port") or 0)
        traffic = int(instance["grpc_port"]) if backend == "grpc" else rest
        if not traffic or not rest:
            continue
        name = tfserving_instance_server_name(instance["index"], node)
        ports[name] = {"port": traffic, "check_port": rest}
    return ports


def tfserving_lb_node_servers(node: str, servers: Sequence[Mapping[str, Any]]) -> list[dict]:
    """NODE's servers among a load balancer's SERVERS, in the record's form (index, server,
    grpc_port, rest_port): what the load balancer keeps of each node."""
    return [
        {
            "index": int(server["index"]),
            "server": str(server["name"]),
            "grpc_port": int(server["grpc_port"]),
            "rest_port": int(server["rest_port"]),
        }
        for server in servers
        if server["node"] == node
    ]


def tfserving_canary_servers(
    canary: str,
    instances: Sequence[Mapping[str, Any]],
    baseline: Sequence[str],
    recorded: Mapping[str, Any] | None = None,
    rest_ports: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The servers a canary's direct scrapes read, the canary node's first: its servers as
    this turn runs them (INSTANCES), then each baseline node's as it recorded them
    (RECORDED, {node: servers}), or its one server on REST_PORTS[node].

    -> [{node, server, rest_port}]; the canary's count is how many come first."""
    recorded = recorded or {}
    rest_ports = rest_ports or {}
    pages = [
        {
            "node": str(canary),
            "server": tfserving_instance_server_name(instance["index"], canary),
            "rest_port": int(instance["rest_port"]),
        }
        for instance in instances
    ]
    for node in baseline:
        servers = _recorded_servers(recorded[node], node) if recorded.get(node) else []
        if not servers:
            servers = [{"name": str(node), "rest_port": _int(rest_ports.get(node, 8501), "rest")}]
        pages.extend(
            {"node": str(node), "server": server["name"], "rest_port": server["rest_port"]}
            for server in servers
        )
    return pages


def tfserving_node_server_names(
    nodes: str | Sequence[str], recorded: Mapping[str, Any] | None = None
) -> list[str]:
    """The load balancer's server names of NODES: each node's recorded servers (RECORDED,
    {node: servers}), or the node's own name for a node with one server or no record."""
    recorded = recorded or {}
    names: list[str] = []
    for node in [nodes] if isinstance(nodes, str) else nodes:
        servers = _recorded_servers(recorded[node], node) if recorded.get(node) else []
        names.extend([server["name"] for server in servers] or [str(node)])
    return names


def tfserving_lb_server_collisions(servers: Sequence[Mapping[str, Any]]) -> list[str]:
    """Server names given twice (a node named like another node's server NODE-i), each as
    'NAME (node A, server i of node B)'; [] when every name is its own."""
    seen: dict[str, list[str]] = {}
    for server in servers:
        index, node = int(server.get("index") or 0), server["node"]
        owner = f"node {node}" if index == 0 else f"server {index} of node {node}"
        seen.setdefault(str(server["name"]), []).append(owner)
    return [f"{name} ({', '.join(owners)})" for name, owners in seen.items() if len(owners) > 1]


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "tfserving_instances": tfserving_instances,
            "tfserving_instance_container_problems": tfserving_instance_container_problems,
            "tfserving_instance_gpu_problems": tfserving_instance_gpu_problems,
            "tfserving_instance_server_name": tfserving_instance_server_name,
            "tfserving_instance_record": tfserving_instance_record,
            "tfserving_lb_backend_servers": tfserving_lb_backend_servers,
            "tfserving_lb_server_collisions": tfserving_lb_server_collisions,
            "tfserving_lb_node_servers": tfserving_lb_node_servers,
            "tfserving_lb_server_ports": tfserving_lb_server_ports,
            "tfserving_canary_servers": tfserving_canary_servers,
            "tfserving_node_server_names": tfserving_node_server_names,
        }
