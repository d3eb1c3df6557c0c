#!/usr/bin/python
"""Drain, enable or read one server of an HAProxy backend through the runtime API.

The socket talk and the waiting are plain functions over a ``send(command) -> reply``
callable, so tests drive them against a fake runtime API (tests/test_haproxy_server.py).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: haproxy_server
short_description: Drain or enable a server of an HAProxy backend, waiting on HAProxy's own counters
author: tfserving-fleet maintainers (!UNKNOWN)
description:
  - Talks to HAProxy's runtime API (the admin-level C(stats socket)).
  - C(state=drained) puts the server in drain mode (no new requests; health checks keep
    running, so HAProxy keeps knowing whether it is up) and waits until HAProxy reports no
    current session and no queued request on it. It asks HAProxy, not the TCP stack, so
    pooled idle HTTP/2 connections do not hold it up.
  - C(state=ready) takes the server out of drain or maintenance and waits until HAProxy's
    health check reports it UP.
  - C(state=query) changes nothing and returns the server's state (with O(weight), it
    sets only the weight).
  - The returned state carries the counters a canary is judged by - sessions since start
    and the connection and response errors HAProxy saw on the server.
  - With O(max_unavailable), a server that is in service is drained only while fewer than
    that many servers of the backend are out of service (not UP, drained or in
    maintenance), itself not counted. The module waits (O(peers_timeout)) for the others to
    come back, and fails at once when one that is out is in O(batch) (it cannot come back
    while this turn waits). A server already out of service is drained without the check,
    taking it out costs no capacity.
  - The state set here lives in the running process; the tfserving_lb role saves it across
    reloads (server-state-file).
options:
  socket:
    description: Path of the runtime API socket (level admin).
    type: path
    default: /run/haproxy/admin.sock
  backend:
    description: Backend name.
    type: str
    required: true
  server:
    description: Server name in that backend.
    type: str
    required: true
  state:
    description: What to do.
    type: str
    choices: [drained, ready, query]
    default: query
  timeout:
    description:
      - Longest wait in seconds for the sessions to end (drained) or for the server to be
        reported UP (ready). The module fails when it runs out, naming what it saw last.
    type: float
    default: 60
  interval:
    description: Seconds between two looks at HAProxy's counters.
    type: float
    default: 0.5
  wait:
    description: Wait as described above (false - set the state and return).
    type: bool
    default: true
  max_unavailable:
    description:
      - With C(state=drained), how many servers of the backend may be out of service at
        once, this one included. C(0) drains without looking at the others.
    type: int
    default: 0
  peers_timeout:
    description: Longest wait in seconds for enough of the other servers to be back in service.
    type: float
    default: 120
  batch:
    description:
      - The servers of this rollout batch. One of them out of service fails the check at once
        instead of being waited for.
    type: list
    elements: str
    default: []
  weight:
    description:
      - The server's weight (0-256) to set after the state change; HAProxy shares new
        requests among the servers of a backend in proportion to their weights. Left out,
        the weight stays as it is.
      - A canary gets a small weight beside the others' configured one, and every turn's
        C(ready) sets the configured weight again.
    type: int
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: community.general.haproxy
    description: >-
      Its drain wait looks for DRAIN in the server's status and counts no queued requests, so a
      drained server whose health check fails (DRAIN and DOWN) never counts as drained; it
      cannot hold a drain while other servers of the backend are out (O(max_unavailable)).
"""

EXAMPLES = r"""
- name: Drain this node at the load balancer and wait for its requests to finish
  tfserving.fleet.haproxy_server:
    backend: tfserving_grpc
    server: "{{ inventory_hostname }}"
    state: drained
    timeout: 30
  delegate_to: lb-01
"""

RETURN = r"""
before:
  description: The server's state before the change.
  type: dict
  returned: always
  sample: {status: UP, admin: ready, sessions: 3, queued: 0, check: L7OK, weight: 100,
           total: 5310, connection_errors: 0, response_errors: 0}
after:
  description: The server's state when the module returned.
  type: dict
  returned: always
waited:
  description: Seconds spent waiting.
  type: float
  returned: always
"""

import csv
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

# HAProxy's server admin flags (show servers state, srv_admin_state).
_MAINT_FLAGS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
_DRAIN_FLAGS = 0x08 | 0x10

Send = Callable[[str], str]


class RuntimeError_(Exception):
    """The runtime API refused a command or the server was not found."""


@dataclass(frozen=True)
class ServerState:
    status: str  # show stat's status: UP, DOWN, DRAIN, MAINT, "UP 1/2", "no check", ...
    admin: str  # ready, drain or maint
    sessions: int
    queued: int
    check: str  # last check result, e.g. L7OK, L4CON, L7STS
    weight: int = 1  # the user weight (show servers state's srv_uweight)
    total: int = 0  # sessions (requests, in HTTP mode without keep-alive) since start: stot
    connection_errors: int = 0  # econ: connections that failed
    response_errors: int = 0  # eresp: responses that failed (reset, empty, timeout)

    @property
    def up(self) -> bool:
        """In service: checked and UP (or not checked at all), and not drained or in maintenance."""
        return self.status in ("UP", "no check") and self.admin == "ready"


def unix_socket_sender(path: str, timeout: float = 5.0) -> Send:
    """One connection per command, as the runtime API closes it after answering."""

    def send(command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(path)
            conn.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    return send


def _table(text: str) -> list[dict[str, str]]:
    """Rows of a runtime API table: a '# ' header line, comma- or space-separated."""
    lines = [line for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("# "):
            header, rows = line[2:], lines[i + 1 :]
            if "," in header:
                return list(csv.DictReader([header, *rows]))
            names = header.split()
            return [dict(zip(names, row.split(), strict=False)) for row in rows]
    return []


def read_backend(send: Send, backend: str) -> dict[str, ServerState]:
    """Every server of the backend, by name."""
    rows = _table(send(f"show servers state {backend}"))
    flags = {row.get("srv_name", ""): int(row.get("srv_admin_state", "0") or 0) for row in rows}
    weights = {row.get("srv_name", ""): int(row.get("srv_uweight", "1") or 1) for row in rows}
    servers = {}
    for row in _table(send("show stat")):
        name = row.get("svname", "")
        if row.get("pxname") != backend or name in ("FRONTEND", "BACKEND"):
            continue
        flag = flags.get(name, 0)
        servers[name] = ServerState(
            status=row.get("status", ""),
            admin="maint" if flag & _MAINT_FLAGS else "drain" if flag & _DRAIN_FLAGS else "ready",
            sessions=int(row.get("scur") or 0),
            queued=int(row.get("qcur") or 0),
            check=row.get("check_status", ""),
            weight=weights.get(name, 1),
            total=int(row.get("stot") or 0),
            connection_errors=int(row.get("econ") or 0),
            response_errors=int(row.get("eresp") or 0),
        )
    return servers


def read_state(send: Send, backend: str, server: str) -> ServerState:
    servers = read_backend(send, backend)
    if server not in servers:
        raise RuntimeError_(f"server {backend}/{server} is not in HAProxy's configuration")
    return servers[server]


def _describe(name: str, state: ServerState) -> str:
    return f"{name} ({state.status}, {state.admin})"


def wait_for_peers(
    send: Send,
    backend: str,
    server: str,
    max_unavailable: int,
    batch: list[str],
    timeout: float,
    interval: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> list[str]:
    """Wait until fewer than max_unavailable other servers are out of service.

    Returns the names of those out of service at the end; raises RuntimeError_ naming them
    when one of them is in ``batch`` or when the wait runs out."""
    start = clock()
    while True:
        servers = read_backend(send, backend)
        out = {n: s for n, s in servers.items() if n != server and not s.up}
        if len(out) < max_unavailable:
            return sorted(out)
        names = ", ".join(_describe(n, s) for n, s in sorted(out.items()))
        rule = (
            f"{server} stays in service: at most {max_unavailable} server(s) of {backend} may "
            f"be out at once (tfserving_lb_max_unavailable) and {len(out)} other(s) are out: "
            f"{names}."
        )
        if any(n in batch for n in out):
            raise RuntimeError_(
                f"{rule} They are in the same rollout batch: make tfserving_rollout_batch at "
                f"most tfserving_lb_max_unavailable."
            )
        if clock() - start >= timeout:
            raise RuntimeError_(
                f"{rule} Waited {timeout:g} s for them to come back; bring them back (or "
                f"raise tfserving_lb_max_unavailable) and run again."
            )
        sleep(interval)


def _set(send: Send, backend: str, server: str, state: str) -> None:
    reply = send(f"set server {backend}/{server} state {state}").strip()
    if reply:
        raise RuntimeError_(
            f"HAProxy refused 'set server {backend}/{server} state {state}': {reply}"
        )


def _set_weight(send: Send, backend: str, server: str, weight: int) -> None:
    if not 0 <= weight <= 256:
        raise RuntimeError_(f"weight {weight} for {backend}/{server}: give 0-256")
    reply = send(f"set server {backend}/{server} weight {weight}").strip()
    if reply:
        raise RuntimeError_(
            f"HAProxy refused 'set server {backend}/{server} weight {weight}': {reply}"
        )


def apply(
    send: Send,
    backend: str,
    server: str,
    state: str,
    timeout: float = 60.0,
    interval: float = 0.5,
    wait: bool = True,
    max_unavailable: int = 0,
    peers_timeout: float = 120.0,
    batch: list[str] | None = None,
    weight: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, object]:
    """Do what state asks; return before/after/changed/waited, raise RuntimeError_ on failure."""
    before = read_state(send, backend, server)
    start = clock()
    out_of_service: list[str] = []
    if state == "drained":
        if max_unavailable > 0 and before.up:
            out_of_service = wait_for_peers(
                send,
                backend,
                server,
                max_unavailable,
                batch or [],
                peers_timeout,
                interval,
                clock,
                sleep,
            )
        _set(send, backend, server, "drain")
        done: Callable[[ServerState], bool] = lambda s: s.sessions == 0 and s.queued == 0  # noqa: E731
        goal = "no session and no queued request"
        changed = before.admin != "drain"
    elif state == "ready":
        _set(send, backend, server, "ready")
        done = lambda s: s.up  # noqa: E731
        goal = "the health check to report it UP"
        changed = before.admin != "ready"
    else:
        changed = weight is not None and before.weight != weight
        if changed:
            _set_weight(send, backend, server, weight)
        after = read_state(send, backend, server) if changed else before
        return {
            "changed": changed,
            "before": asdict(before),
            "after": asdict(after),
            "out_of_service": [],
            "waited": 0.0,
        }
    if weight is not None and before.weight != weight:
        _set_weight(send, backend, server, weight)
        changed = True
    after = read_state(send, backend, server)
    while wait and not done(after):
        if clock() - start >= timeout:
            raise RuntimeError_(
                f"{backend}/{server}: waited {timeout:g} s for {goal}; last seen: "
                f"status {after.status}, {after.sessions} session(s), {after.queued} queued, "
                f"last check {after.check or '-'}"
            )
        sleep(interval)
        after = read_state(send, backend, server)
    return {
        "changed": changed,
        "before": asdict(before),
        "after": asdict(after),
        "out_of_service": out_of_service,
        "waited": round(clock() - start, 2),
    }


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "socket": {"type": "path", "default": "/run/haproxy/admin.sock"},
            "backend": {"type": "str", "required": True},
            "server": {"type": "str", "required": True},
            "state": {
                "type": "str",
                "choices": ["drained", "ready", "query"],
                "default": "query",
            },
            "timeout": {"type": "float", "default": 60.0},
            "interval": {"type": "float", "default": 0.5},
            "wait": {"type": "bool", "default": True},
            "max_unavailable": {"type": "int", "default": 0},
            "peers_timeout": {"type": "float", "default": 120.0},
            "batch": {"type": "list", "elements": "str", "default": []},
            "weight": {"type": "int"},
        },
        supports_check_mode=False,
    )
    params = module.params
    try:
        result = apply(
            unix_socket_sender(params["socket"]),
            params["backend"],
            params["server"],
            params["state"],
            timeout=params["timeout"],
            interval=params["interval"],
            wait=params["wait"],
            max_unavailable=params["max_unavailable"],
            peers_timeout=params["peers_timeout"],
            batch=params["batch"],
            weight=params["weight"],
        )
    except (OSError, RuntimeError_) as error:
        module.fail_json(msg=f"HAProxy runtime API at {params['socket']}: {error}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
