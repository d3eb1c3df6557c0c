"""CIS Docker Benchmark checks on what `docker info`, `docker inspect` and daemon.json show.

The items are those the project applies (daemon section 2, container runtime section 5,
and 4.1 for the container user); numbers as in the CIS Docker Benchmark v1.6.0 (section 5
starts with 5.1 swarm mode, so 5.10 is the host network and 5.32 the Docker socket).

Every container on the host is judged, stopped ones too (they run again on a start or a
reboot with what they hold). An exception covers an item on the project's own labelled
container (org.tfserving-fleet.role=tfserving) only: the same setting on any other
container is judged as if there were no exception.

{{ host_info | docker_cis_audit(daemon_json, containers, bridge, service_address) }}
    -> {'rows': [{'item': '2.15', 'title': ..., 'status': 'PASS', 'found': ...}, ...],
        'exceptions': [{'item': '5.15', 'reason': ..., 'applied': True}, ...],
        'failed': ['5.32', ...]}
{{ report | docker_cis_table }}  -> the table as a list of text lines

Why not the library: community.docker.docker_host_info and docker_container_info return the
settings judged here but judge none of them; no library piece maps them to CIS items.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

PASS = "PASS"
WARN = "WARN"
FAIL = "FAIL"
_ORDER = {PASS: 0, WARN: 1, FAIL: 2}

# The project's own containers carry this label (roles/tfserving/tasks/container-spec.yml);
# they must meet every item the project applies (FAIL), other containers on the host are
# reported (WARN) unless an item is a hard one (privileged, host namespaces, sensitive
# mounts, runtime sockets, unconfined seccomp or AppArmor, host devices, a restart policy
# without a bound, a port on every interface). Exceptions apply to labelled ones only.
PROJECT_LABEL = "org.tfserving-fleet.role"
PROJECT_ROLE = "tfserving"

DEFAULT_EXCEPTIONS: dict[str, str] = {
    "2.9": (
        "user namespace remapping stays off: it breaks the NVIDIA container runtime and moves"
        " Docker's storage root, so every image would be pulled again"
    ),
    "5.15": (
        "the serving container restarts unless-stopped: a crash is always restarted, and the"
        " readiness gate, not a retry count, detects a crash loop and stops the container"
    ),
    "5.18": (
        "the serving container on a GPU host is given the host's GPUs (device_requests,"
        " driver nvidia); host device nodes are never excepted"
    ),
}

DANGEROUS_CAPS = frozenset(
    {"ALL", "SYS_ADMIN", "NET_ADMIN", "SYS_MODULE", "SYS_PTRACE", "SYS_RAWIO", "DAC_READ_SEARCH"}
)
REMOTE_LOG_DRIVERS = frozenset(
    {"syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "gcplogs", "etwlogs"}
)
# Container runtime sockets (5.32): a mount of one, or of a directory that holds one,
# gives the container the engine (and so the host).
RUNTIME_SOCKETS = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
)
SOCKET_NAMES = ("docker.sock", "containerd.sock")
# Sensitive host directories (5.6): / itself, these or anything under them.
SENSITIVE_DIRS = ("/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")
EVERY_INTERFACE = frozenset({"", "0.0.0.0", "::"})

Container = Mapping[str, Any]


@dataclass(frozen=True)
class Finding:
    status: str
    found: str
    # False where no exception may cover it (host devices are never the GPU exception).
    excusable: bool = True


def _worst(findings: list[Finding]) -> str:
    return max((f.status for f in findings), key=_ORDER.__getitem__, default=PASS)


def _running(container: Container) -> bool:
    return bool((container.get("State") or {}).get("Running"))


def _name(container: Container) -> str:
    """The container's name; a container that is not running says its state."""
    name = str(container.get("Name", "?")).lstrip("/")
    if _running(container):
        return name
    return f"{name} ({(container.get('State') or {}).get('Status') or 'stopped'})"


def _host(container: Container) -> Mapping[str, Any]:
    return container.get("HostConfig") or {}


def _is_project(container: Container) -> bool:
    labels = (container.get("Config") or {}).get("Labels") or {}
    return labels.get(PROJECT_LABEL) == PROJECT_ROLE


def _security_opt(container: Container, key: str) -> str | None:
    """The value of ``key=value`` (or the older ``key:value``) in HostConfig.SecurityOpt."""
    for option in _host(container).get("SecurityOpt") or []:
        text = str(option)
        cut = min((i for i in (text.find("="), text.find(":")) if i >= 0), default=len(text))
        if text[:cut] == key:
            return text[cut + 1 :]
    return None


def _mount_sources(container: Container) -> list[str]:
    """The host paths of the container's mounts, normalised (/etc/ is /etc)."""
    sources = []
    for mount in container.get("Mounts") or []:
        source = str(mount.get("Source") or "")
        if source.startswith("/"):
            sources.append(posixpath.normpath(source).replace("//", "/"))
    return sources


def _under(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or lies under it (everything lies under /)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _miss(container: Container) -> str:
    """Status of a missing setting: the project's containers FAIL, others WARN."""
    return FAIL if _is_project(container) else WARN


# Daemon (section 2) ---------------------------------------------------------------------


def check_icc(info: Mapping[str, Any], daemon: Mapping[str, Any], bridge: Any) -> Finding:
    options = (bridge or {}).get("Options") or {}
    value = options.get("com.docker.network.bridge.enable_icc")
    if value is None:
        value = str(daemon.get("icc", True)).lower()
    if value == "false":
        return Finding(PASS, "icc off on the default bridge")
    return Finding(FAIL, "icc on: containers on the default bridge reach each other")


def check_userns(info: Mapping[str, Any], daemon: Mapping[str, Any], bridge: Any) -> Finding:
    if any("name=userns" in str(o) for o in info.get("SecurityOptions") or []):
        return Finding(PASS, "userns remapping on")
    return Finding(WARN, "userns remapping off")


def check_daemon_logs(info: Mapping[str, Any], daemon: Mapping[str, Any], bridge: Any) -> Finding:
    driver = str(info.get("LoggingDriver") or daemon.get("log-driver") or "json-file")
    return _log_finding(driver, daemon.get("log-opts") or {}, "daemon")


def _log_finding(driver: str, opts: Mapping[str, Any], who: str) -> Finding:
    if driver == "local" or driver in REMOTE_LOG_DRIVERS:
        return Finding(PASS, f"{who}: {driver}")
    if driver == "json-file" and opts.get("max-size"):
        return Finding(
            PASS, f"{who}: json-file max-size {opts['max-size']} max-file {opts.get('max-file', 1)}"
        )
    if driver == "json-file":
        return Finding(FAIL, f"{who}: json-file without max-size (unbounded)")
    return Finding(FAIL, f"{who}: log driver {driver}")


def check_no_new_privileges(
    info: Mapping[str, Any], daemon: Mapping[str, Any], bridge: Any
) -> Finding:
    if daemon.get("no-new-privileges") is True:
        return Finding(PASS, "daemon.json no-new-privileges: true")
    return Finding(FAIL, f"daemon.json no-new-privileges: {daemon.get('no-new-privileges')}")


def check_live_restore(info: Mapping[str, Any], daemon: Mapping[str, Any], bridge: Any) -> Finding:
    if info.get("LiveRestoreEnabled") is True:
        return Finding(PASS, "live-restore on")
    return Finding(FAIL, "live-restore off: containers stop when dockerd restarts")


def check_userland_proxy(
    info: Mapping[str, Any], daemon: Mapping[str, Any], bridge: Any
) -> Finding:
    if daemon.get("userland-proxy") is False:
        return Finding(PASS, "userland-proxy off")
    return Finding(FAIL, "userland-proxy on (docker-proxy per published port)")


DaemonCheck = Callable[[Mapping[str, Any], Mapping[str, Any], Any], Finding]
DAEMON_CHECKS: list[tuple[str, str, DaemonCheck]] = [
    ("2.2", "Traffic between containers on the default bridge is restricted", check_icc),
    ("2.9", "User namespace support is enabled", check_userns),
    ("2.13", "Container logs are bounded or shipped", check_daemon_logs),
    ("2.14", "Containers cannot acquire new privileges (daemon)", check_no_new_privileges),
    ("2.15", "Live restore is enabled", check_live_restore),
    ("2.16", "Userland proxy is disabled", check_userland_proxy),
]

# Containers (sections 4 and 5) ----------------------------------------------------------


def check_user(c: Container, ctx: Mapping[str, Any]) -> Finding:
    user = str((c.get("Config") or {}).get("User") or "")
    if user and user.split(":")[0] not in ("0", "root"):
        return Finding(PASS, f"user {user}")
    return Finding(_miss(c), "runs as root")


def check_apparmor(c: Container, ctx: Mapping[str, Any]) -> Finding:
    profile = str(c.get("AppArmorProfile") or "")
    if "unconfined" in (profile, _security_opt(c, "apparmor")):
        return Finding(FAIL, "AppArmor unconfined")
    if profile:
        return Finding(PASS, f"AppArmor {profile}")
    return Finding(PASS, "no AppArmor on this host")


def check_caps(c: Container, ctx: Mapping[str, Any]) -> Finding:
    added = {str(x).upper().removeprefix("CAP_") for x in _host(c).get("CapAdd") or []}
    dropped = {str(x).upper().removeprefix("CAP_") for x in _host(c).get("CapDrop") or []}
    risky = sorted(added & DANGEROUS_CAPS)
    if risky:
        return Finding(FAIL, f"adds {','.join(risky)}")
    if "ALL" in dropped:
        extra = f" (adds {','.join(sorted(added))})" if added else ""
        return Finding(PASS, f"drops ALL{extra}")
    return Finding(_miss(c), "Docker's default capabilities")


def check_privileged(c: Container, ctx: Mapping[str, Any]) -> Finding:
    if _host(c).get("Privileged"):
        return Finding(FAIL, "privileged")
    return Finding(PASS, "not privileged")


def check_sensitive_mounts(c: Container, ctx: Mapping[str, Any]) -> Finding:
    mounted = sorted(
        {s for s in _mount_sources(c) if s == "/" or any(_under(s, d) for d in SENSITIVE_DIRS)}
    )
    if mounted:
        return Finding(FAIL, "mounts " + ", ".join(mounted))
    return Finding(PASS, "no sensitive host directory")


def _namespace_check(key: str, what: str) -> Callable[[Container, Mapping[str, Any]], Finding]:
    """5.10, 5.16, 5.17, 5.21: the container must not join the host's namespace."""

    def check(c: Container, ctx: Mapping[str, Any]) -> Finding:
        mode = str(_host(c).get(key) or "")
        if mode == "host":
            return Finding(FAIL, f"host {what}")
        return Finding(PASS, f"{what} {mode}" if mode else f"own {what}")

    check.__name__ = f"check_{key}"
    return check


check_host_network = _namespace_check("NetworkMode", "network")
check_host_pid = _namespace_check("PidMode", "PID namespace")
check_host_ipc = _namespace_check("IpcMode", "IPC namespace")
check_host_uts = _namespace_check("UTSMode", "UTS namespace")


def check_memory(c: Container, ctx: Mapping[str, Any]) -> Finding:
    memory = int(_host(c).get("Memory") or 0)
    if memory > 0:
        return Finding(PASS, f"memory {memory // (1024 * 1024)}MiB")
    return Finding(WARN, "no memory limit")


def check_cpu(c: Container, ctx: Mapping[str, Any]) -> Finding:
    host = _host(c)
    if int(host.get("NanoCpus") or 0) > 0:
        return Finding(PASS, f"cpus {int(host['NanoCpus']) / 1e9:g}")
    if int(host.get("CpuQuota") or 0) > 0:
        return Finding(PASS, f"cpu quota {host['CpuQuota']}")
    if int(host.get("CpuShares") or 0) not in (0, 1024):
        return Finding(PASS, f"cpu shares {host['CpuShares']}")
    # A server of a node that splits its CPUs (tfserving_instance_mode count) is held to its own.
    if host.get("CpusetCpus"):
        return Finding(PASS, f"cpuset {host['CpusetCpus']}")
    return Finding(WARN, "no CPU limit")


def check_read_only(c: Container, ctx: Mapping[str, Any]) -> Finding:
    if _host(c).get("ReadonlyRootfs"):
        return Finding(PASS, "read-only root")
    return Finding(_miss(c), "writable root filesystem")


def check_bind(c: Container, ctx: Mapping[str, Any]) -> Finding:
    named = str(ctx.get("service_address") or "")
    wide: list[str] = []
    bound: list[str] = []
    # A stopped container shows no NetworkSettings.Ports: its PortBindings are what it
    # binds when it starts again.
    if _running(c):
        ports = (c.get("NetworkSettings") or {}).get("Ports") or {}
    else:
        ports = _host(c).get("PortBindings") or {}
    for port, bindings in sorted(ports.items()):
        for binding in bindings or []:
            address = str(binding.get("HostIp") or "")
            text = f"{address or '0.0.0.0'}:{binding.get('HostPort') or '(any)'}->{port}"
            (wide if address in EVERY_INTERFACE else bound).append(text)
    if wide:
        status = FAIL if named and named not in EVERY_INTERFACE else WARN
        return Finding(status, "every interface " + ", ".join(sorted(set(wide))))
    return Finding(PASS, ", ".join(bound) if bound else "no published ports")


def check_restart(c: Container, ctx: Mapping[str, Any]) -> Finding:
    policy = _host(c).get("RestartPolicy") or {}
    name = str(policy.get("Name") or "no")
    retries = int(policy.get("MaximumRetryCount") or 0)
    shown = f"{name}" + (f":{retries}" if name == "on-failure" else "")
    if name == "no" or (name == "on-failure" and 0 < retries <= 5):
        return Finding(PASS, shown)
    # Restarted without end: the serving container's documented exception, no other's.
    return Finding(FAIL, shown)


def _is_gpu_request(request: Mapping[str, Any]) -> bool:
    return request.get("Driver") == "nvidia" or "gpu" in str(request.get("Capabilities"))


def check_devices(c: Container, ctx: Mapping[str, Any]) -> Finding:
    """Host device nodes FAIL on any container (no exception covers them); GPUs given by
    device_requests are the GPU server's documented exception, a FAIL on any other."""
    host = _host(c)
    devices = [str(d.get("PathOnHost")) for d in host.get("Devices") or []]
    requests = list(host.get("DeviceRequests") or [])
    if devices:
        return Finding(FAIL, "host devices " + ", ".join(devices), excusable=False)
    if requests and all(_is_gpu_request(r) for r in requests):
        # A server pinned to its GPU or MIG slice (tfserving_instance_mode) names it.
        pinned = sorted({str(d) for r in requests for d in r.get("DeviceIDs") or []})
        return Finding(
            FAIL, "GPUs (device_requests" + (f": {', '.join(pinned)})" if pinned else ")")
        )
    if requests:
        drivers = ", ".join(sorted({str(r.get("Driver") or "default") for r in requests}))
        return Finding(FAIL, f"device_requests (driver {drivers})", excusable=False)
    return Finding(PASS, "no host devices")


def check_seccomp(c: Container, ctx: Mapping[str, Any]) -> Finding:
    profile = _security_opt(c, "seccomp")
    if profile == "unconfined":
        return Finding(FAIL, "seccomp unconfined")
    if profile:
        return Finding(PASS, "custom seccomp profile")
    return Finding(PASS, "default seccomp profile")


def check_container_no_new_privileges(c: Container, ctx: Mapping[str, Any]) -> Finding:
    opts = {str(o).replace("=", ":") for o in _host(c).get("SecurityOpt") or []}
    if opts & {"no-new-privileges", "no-new-privileges:true"}:
        return Finding(PASS, "no-new-privileges")
    if ctx.get("daemon_no_new_privileges"):
        return Finding(PASS, "no-new-privileges (daemon default)")
    return Finding(_miss(c), "may gain privileges")


def check_pids(c: Container, ctx: Mapping[str, Any]) -> Finding:
    limit = int(_host(c).get("PidsLimit") or 0)
    if limit > 0:
        return Finding(PASS, f"pids {limit}")
    return Finding(_miss(c), "no pids limit")


def check_socket(c: Container, ctx: Mapping[str, Any]) -> Finding:
    """A runtime socket mounted, or a directory above one (/, /run, /var/run, /var)."""
    mounted: list[str] = []
    for source in sorted(set(_mount_sources(c))):
        if source.endswith(tuple("/" + n for n in SOCKET_NAMES)):
            mounted.append(source)
            continue
        held = [s for s in RUNTIME_SOCKETS if _under(s, source)]
        if held:
            names = [n for n in SOCKET_NAMES if any(s.endswith("/" + n) for s in held)]
            mounted.append(f"{source} (holds {', '.join(names)})")
    if mounted:
        return Finding(FAIL, "mounts " + ", ".join(mounted))
    return Finding(PASS, "no Docker or containerd socket")


ContainerCheck = Callable[[Container, Mapping[str, Any]], Finding]
CONTAINER_CHECKS: list[tuple[str, str, ContainerCheck]] = [
    ("4.1", "Containers run as a non-root user", check_user),
    ("5.2", "AppArmor is not disabled", check_apparmor),
    ("5.4", "Linux capabilities are restricted", check_caps),
    ("5.5", "No privileged containers", check_privileged),
    ("5.6", "Sensitive host directories are not mounted", check_sensitive_mounts),
    ("5.10", "The host network namespace is not shared", check_host_network),
    ("5.11", "Memory usage is limited", check_memory),
    ("5.12", "CPU usage is limited", check_cpu),
    ("5.13", "Root filesystem is read-only", check_read_only),
    ("5.14", "Ports bind to a named host address", check_bind),
    ("5.15", "Restart policy is on-failure with at most 5 retries", check_restart),
    ("5.16", "The host PID namespace is not shared", check_host_pid),
    ("5.17", "The host IPC namespace is not shared", check_host_ipc),
    ("5.18", "Host devices are not exposed", check_devices),
    ("5.21", "The host UTS namespace is not shared", check_host_uts),
    ("5.22", "The default seccomp profile is not disabled", check_seccomp),
    ("5.26", "Containers cannot acquire new privileges", check_container_no_new_privileges),
    ("5.29", "PIDs are limited", check_pids),
    ("5.32", "The Docker and containerd sockets are not mounted", check_socket),
]


def _container_row(
    item: str,
    check: ContainerCheck,
    containers: list[Container],
    ctx: Mapping[str, Any],
    exceptions: Mapping[str, str],
) -> tuple[Finding, bool]:
    """The item's row over every container, and whether an exception applied.

    An exception turns a finding on the project's labelled container into WARN; on any
    other container, or for a finding no exception may cover, the finding stands.
    """
    if not containers:
        return Finding(PASS, "no containers"), False
    results: list[tuple[str, Finding]] = []
    applied = False
    for c in containers:
        finding = check(c, ctx)
        if finding.status != PASS and item in exceptions and finding.excusable and _is_project(c):
            finding = Finding(WARN, f"{finding.found} (documented exception)")
            applied = True
        results.append((_name(c), finding))
    status = _worst([f for _item, f in results])
    shown = [(n, f) for n, f in results if f.status == status]
    return Finding(status, "; ".join(f"{n}: {f.found}" for n, f in shown)), applied


def docker_cis_audit(
    info: Mapping[str, Any],
    daemon: Mapping[str, Any] | None,
    containers: list[Container],
    bridge: Mapping[str, Any] | None = None,
    service_address: str = "",
    exceptions: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """Every item's row, the exceptions (and whether they applied), the items that FAIL.

    ``exceptions`` is merged over DEFAULT_EXCEPTIONS (a null or empty reason drops one).
    A daemon item on the list that does not pass is reported WARN, never FAIL; a container
    item on the list is WARN on the project's labelled container only. ``containers`` are
    every container on the host, stopped ones included.
    """
    daemon = daemon or {}
    merged = {**DEFAULT_EXCEPTIONS, **(exceptions or {})}
    merged = {k: str(v) for k, v in merged.items() if v}
    ctx = {
        "service_address": service_address,
        "daemon_no_new_privileges": daemon.get("no-new-privileges") is True,
    }
    rows: list[dict[str, str]] = []
    applied: set[str] = set()
    for item, title, daemon_check in DAEMON_CHECKS:
        finding = daemon_check(info, daemon, bridge)
        status, found = finding.status, finding.found
        if status != PASS and item in merged:
            status, found = WARN, f"{found} (documented exception)"
            applied.add(item)
        rows.append({"item": item, "title": title, "status": status, "found": found})
    for item, title, container_check in CONTAINER_CHECKS:
        finding, excepted = _container_row(item, container_check, containers, ctx, merged)
        if excepted:
            applied.add(item)
        rows.append(
            {"item": item, "title": title, "status": finding.status, "found": finding.found}
        )
    return {
        "rows": rows,
        "exceptions": [
            {"item": k, "reason": v, "applied": k in applied}
            for k, v in sorted(merged.items(), key=lambda kv: _item_key(kv[0]))
        ],
        "failed": [r["item"] for r in rows if r["status"] == FAIL],
    }


def _item_key(item: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in item.split("."))


def docker_cis_table(report: Mapping[str, Any]) -> list[str]:
    """The report as text lines: item, status, title, what was found; then the exceptions."""
    rows = report["rows"]
    width = max((len(r["title"]) for r in rows), default=10)
    lines = [f"{'item':<5} {'status':<6} {'check':<{width}}  found"]
    lines += [f"{r['item']:<5} {r['status']:<6} {r['title']:<{width}}  {r['found']}" for r in rows]
    lines.append("documented exceptions:")
    lines += [
        f"  {e['item']:<5} {'(applies here) ' if e['applied'] else ''}{e['reason']}"
        for e in report["exceptions"]
    ]
    failed = report["failed"]
    lines.append(f"FAIL: {', '.join(failed)}" if failed else "no FAIL")
    return lines


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"docker_cis_audit": docker_cis_audit, "docker_cis_table": docker_cis_table}
