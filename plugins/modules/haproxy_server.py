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
  - With O(node) instead of O(server), the module acts on every server of that node at
    once - the server named as the node and those named NODE-i (a node's other servers,
    tfserving_instance_mode), not counting a name in O(nodes), which is another node's.
    A drain then takes all of them out together - the node's servers that are in service
    count against O(max_unavailable) with the others out; O(max_unavailable) is a number of
    servers, so a node with more servers in service than it allows is refused at once.
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
    description: Server name in that backend. One of O(server) and O(node) is required.
    type: str
  node:
    description:
      - An inventory node - act on each of its servers (named NODE and NODE-i).
    type: str
  nodes:
    description:
      - Every node behind the load balancer, so that a node named like another node's
        server (C(a-1) beside C(a)) is not taken for it.
    type: list
    elements: str
    default: []
  exclude:
    description:
      - Servers of O(node) to leave alone (servers the node no longer runs, left drained
        until the load balancer's configuration drops them).
    type: list
    elements: str
    default: []
  ignore:
    description:
      - Servers of other nodes that O(max_unavailable) does not count (their nodes no
        longer run them; they stay drained until the configuration drops them).
    type: list
    elements: str
    default: []
  ports:
    description:
      - "With C(state=ready), the port each server gets traffic on and is checked on, as
        C({NAME: {port: P, check_port: C}}) - applied through the runtime API before the
        server is put back when they differ (a node whose server moved to other ports in
        its turn). Servers not named keep theirs."
    type: dict
    default: {}
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
- name: Drain every server of this node (NODE, NODE-1, ...) together
  tfserving.fleet.haproxy_server:
    backend: tfserving_grpc
    node: "{{ inventory_hostname }}"
    nodes: "{{ groups['tfserving_nodes'] }}"
    state: drained
    max_unavailable: 2
  delegate_to: lb-01

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
  description:
    - The server's state before the change. With O(node), the node's servers together -
      counters summed, UP and ready only when every one is, the first server's weight.
  type: dict
  returned: always
  sample: {status: UP, admin: ready, sessions: 3, queued: 0, check: L7OK, weight: 100,
           total: 5310, connection_errors: 0, response_errors: 0}
after:
  description: The server's state when the module returned.
  type: dict
  returned: always
servers:
  description: Each server acted on, with its own C(before) and C(after).
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


def _drained(state: ServerState) -> bool:
    """A drain's goal: no session and no queued request."""
    return state.sessions == 0 and state.queued == 0


def _up(state: ServerState) -> bool:
    """A ready's goal: the health check reports the server UP."""
    return state.up


def read_state(send: Send, backend: str, server: str) -> ServerState:
    servers = read_backend(send, backend)
    if server not in servers:
        raise RuntimeError_(f"server {backend}/{server} is not in HAProxy's configuration")
    return servers[server]


def _describe(name: str, state: ServerState) -> str:
    return f"{name} ({state.status}, {state.admin})"


def server_node(name: str, nodes: list[str]) -> str:
    """The node a server belongs to: NAME itself when it is a node (or nothing says
    otherwise), the node NODE of a server NODE-i that is not a node's own name."""
    if name in nodes or not nodes:
        return name
    base, _dash, index = name.rpartition("-")
    if base and index.isdigit() and base in nodes:
        return base
    return name


def node_servers(names: list[str], node: str, nodes: list[str]) -> list[str]:
    """NODE's servers among NAMES: the one named as the node and its NODE-i, in index order."""
    own = [n for n in names if n != node and server_node(n, [*nodes, node]) == node]
    own.sort(key=lambda n: int(n.rpartition("-")[2]))
    return ([node] if node in names else []) + own


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
    own: list[str] | None = None,
    ignore: list[str] | None = None,
    nodes: list[str] | None = None,
) -> list[str]:
    """Wait until the servers to take out (OWN that are in service; just SERVER when OWN is
    not given) and the other servers out of service are at most max_unavailable together.

    Returns the names of the others out of service at the end; raises RuntimeError_ naming
    them when one of them is in ``batch`` (a batch of nodes: a server counts as its node)
    or when the wait runs out. IGNORE lists servers not counted (retired ones)."""
    start = clock()
    mine = set(own or [server])
    skipped = set(ignore or [])
    while True:
        servers = read_backend(send, backend)
        taking = sorted(n for n in mine if n in servers and servers[n].up)
        out = {n: s for n, s in servers.items() if n not in mine and n not in skipped and not s.up}
        if not taking or len(out) + len(taking) <= max_unavailable:
            return sorted(out)
        if len(taking) > max_unavailable:
            raise RuntimeError_(
                f"{server} has {len(taking)} servers in service ({', '.join(taking)}), which "
                f"a turn drains together, but tfserving_lb_max_unavailable is "
                f"{max_unavailable}: it counts servers, not nodes. Give it at least "
                f"{len(taking)} (the most servers a node of the batch has in service)."
            )
        names = ", ".join(_describe(n, s) for n, s in sorted(out.items()))
        who = (
            f"{server}'s servers ({', '.join(taking)}), drained together,"
            if len(taking) > 1
            else taking[0]
        )
        rule = (
            f"{who} stay{'' if len(taking) > 1 else 's'} in service: at most "
            f"{max_unavailable} server(s) of {backend} may be out at once "
            f"(tfserving_lb_max_unavailable) and {len(out)} other(s) are out: {names}."
        )
        if any(server_node(n, nodes or []) in batch or n in batch for n in out):
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


def _combined(states: dict[str, ServerState], first: str) -> dict[str, object]:
    """One state for a node's servers: the first server's (the node's own) when it has
    one server; else the counters summed, UP only when every one is, ready only when every
    one is, and the first server's weight."""
    if len(states) == 1:
        return asdict(next(iter(states.values())))
    values = list(states.values())
    lead = states.get(first, values[0])
    admins = {state.admin for state in values}
    not_up = [state.status for state in values if state.status != "UP"]
    not_ok = [state.check for state in values if state.check not in ("L7OK", "L4OK", "")]
    return asdict(
        ServerState(
            status=not_up[0] if not_up else "UP",
            admin="ready" if admins == {"ready"} else "maint" if "maint" in admins else "drain",
            sessions=sum(state.sessions for state in values),
            queued=sum(state.queued for state in values),
            check=not_ok[0] if not_ok else lead.check,
            weight=lead.weight,
            total=sum(state.total for state in values),
            connection_errors=sum(state.connection_errors for state in values),
            response_errors=sum(state.response_errors for state in values),
        )
    )


def _read_ports(send: Send, backend: str) -> dict[str, tuple[str, int | None, int | None]]:
    """Each server's address, traffic port and check port (show servers state)."""
    ports = {}
    for row in _table(send(f"show servers state {backend}")):

        def number(key: str, row: dict[str, str] = row) -> int | None:
            value = row.get(key, "")
            return int(value) if value.isdigit() else None

        ports[row.get("srv_name", "")] = (
            row.get("srv_addr", ""),
            number("srv_port"),
            number("srv_check_port"),
        )
    return ports


def _move(send: Send, backend: str, name: str, wanted: dict[str, object]) -> bool:
    """Give the server the traffic and check ports WANTED ({port, check_port}) when they
    differ from its own; True when something changed."""
    address, port, check_port = _read_ports(send, backend).get(name, ("", None, None))
    moved = False
    new_port = wanted.get("port")
    if new_port and port is not None and int(new_port) != port and address:
        reply = send(f"set server {backend}/{name} addr {address} port {int(new_port)}").strip()
        if "changed" not in reply and "no need" not in reply:
            raise RuntimeError_(
                f"HAProxy refused to move {backend}/{name} to port {new_port}: {reply}"
            )
        moved = True
    # 0: no check port on the server's line, the configuration checks every server on one
    # port (http-check connect port): nothing per server to move.
    new_check = wanted.get("check_port")
    if new_check and check_port and int(new_check) != check_port:
        reply = send(f"set server {backend}/{name} check-port {int(new_check)}").strip()
        if reply:
            raise RuntimeError_(
                f"HAProxy refused to check {backend}/{name} on port {new_check}: {reply}"
            )
        moved = True
    return moved


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
    node: str | None = None,
    nodes: list[str] | None = None,
    exclude: list[str] | None = None,
    ignore: list[str] | None = None,
    ports: dict[str, dict[str, object]] | None = None,
) -> dict[str, object]:
    """Do what state asks on SERVER, or on every server of NODE; return before/after
    (combined over a node's servers), servers (each one's), changed, out_of_service and
    waited; raise RuntimeError_ on failure."""
    nodes = list(nodes or [])
    if node:
        present = list(read_backend(send, backend))
        names = [n for n in node_servers(present, node, nodes) if n not in (exclude or [])]
        if not names:
            raise RuntimeError_(f"server {backend}/{node} is not in HAProxy's configuration")
        server = node
    else:
        names = [server]
    before_each = {name: read_state(send, backend, name) for name in names}
    start = clock()
    out_of_service: list[str] = []
    changed = False
    if state == "drained":
        if max_unavailable > 0 and any(s.up for s in before_each.values()):
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
                own=names,
                ignore=ignore,
                nodes=nodes,
            )
        for name in names:
            _set(send, backend, name, "drain")
        done: Callable[[ServerState], bool] = _drained
        goal = "no session and no queued request"
        changed = any(s.admin != "drain" for s in before_each.values())
    elif state == "ready":
        for name in names:
            if name in (ports or {}):
                changed = _move(send, backend, name, ports[name]) or changed
            _set(send, backend, name, "ready")
        done = _up
        goal = "the health check to report it UP"
        changed = changed or any(s.admin != "ready" for s in before_each.values())
    else:
        for name in names:
            if weight is not None and before_each[name].weight != weight:
                _set_weight(send, backend, name, weight)
                changed = True
        after_each = (
            {name: read_state(send, backend, name) for name in names} if changed else before_each
        )
        return _result(changed, before_each, after_each, server, [], 0.0)
    for name in names:
        if weight is not None and before_each[name].weight != weight:
            _set_weight(send, backend, name, weight)
            changed = True
    after_each = {name: read_state(send, backend, name) for name in names}
    while wait and not all(done(s) for s in after_each.values()):
        if clock() - start >= timeout:
            name, after = next((n, s) for n, s in after_each.items() if not done(s))
            raise RuntimeError_(
                f"{backend}/{name}: waited {timeout:g} s for {goal}; last seen: "
                f"status {after.status}, {after.sessions} session(s), {after.queued} queued, "
                f"last check {after.check or '-'}"
            )
        sleep(interval)
        after_each = {name: read_state(send, backend, name) for name in names}
    return _result(
        changed, before_each, after_each, server, out_of_service, round(clock() - start, 2)
    )


def _result(
    changed: bool,
    before_each: dict[str, ServerState],
    after_each: dict[str, ServerState],
    first: str,
    out_of_service: list[str],
    waited: float,
) -> dict[str, object]:
    return {
        "changed": changed,
        "before": _combined(before_each, first),
        "after": _combined(after_each, first),
        "servers": {
            name: {"before": asdict(before_each[name]), "after": asdict(after_each[name])}
            for name in before_each
        },
        "out_of_service": out_of_service,
        "waited": waited,
    }


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "socket": {"type": "path", "default": "/run/haproxy/admin.sock"},
            "backend": {"type": "str", "required": True},
            "server": {"type": "str"},
            "node": {"type": "str"},
            "nodes": {"type": "list", "elements": "str", "default": []},
            "exclude": {"type": "list", "elements": "str", "default": []},
            "ignore": {"type": "list", "elements": "str", "default": []},
            "ports": {"type": "dict", "default": {}},
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
        required_one_of=[("server", "node")],
        mutually_exclusive=[("server", "node")],
        supports_check_mode=False,
    )
    params = module.params
    try:
        result = apply(
            unix_socket_sender(params["socket"]),
            params["backend"],
            params["server"] or params["node"],
            params["state"],
            timeout=params["timeout"],
            interval=params["interval"],
            wait=params["wait"],
            max_unavailable=params["max_unavailable"],
            peers_timeout=params["peers_timeout"],
            batch=params["batch"],
            weight=params["weight"],
            node=params["node"],
            nodes=params["nodes"],
            exclude=params["exclude"],
            ignore=params["ignore"],
            ports=params["ports"],
        )
    except (OSError, RuntimeError_) as error:
        module.fail_json(msg=f"HAProxy runtime API at {params['socket']}: {error}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
