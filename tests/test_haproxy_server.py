"""The haproxy_server module against a fake HAProxy runtime API on a UNIX socket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from plugin_files import load_plugin


def _load() -> ModuleType:
    return load_plugin("modules", "haproxy_server")


mod = _load()

STAT_HEADER = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,check_status,"


class FakeHAProxy:
    """Answers show stat / show servers state / set server like HAProxy 2.6 does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.servers = {"node1": {"status": "UP", "flags": 0, "scur": 0, "check": "L7OK"}}
        self.sessions_per_look: list[int] = []  # scur shown by successive show stat
        self.status_per_look: list[str] = []
        self.commands: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                command = conn.recv(4096).decode().strip()
                self.commands.append(command)
                conn.sendall(self.answer(command).encode())

    def answer(self, command: str) -> str:
        node = self.servers.get("node1")
        if command == "show stat":
            if self.sessions_per_look:
                node["scur"] = self.sessions_per_look.pop(0)
            if self.status_per_look:
                node["status"] = self.status_per_look.pop(0)
            rows = [STAT_HEADER, "grpc,FRONTEND,,,0,0,100,0,OPEN,,"]
            for name, s in self.servers.items():
                status = s["status"]
                if s["flags"] & 0x01:
                    status = "MAINT"
                elif s["flags"] & 0x08 and status == "UP":
                    status = "DRAIN"
                rows.append(f"tfserving_grpc,{name},0,0,{s['scur']},5,,9,{status},{s['check']},")
            rows.append("tfserving_grpc,BACKEND,0,0,0,5,,9,UP,,")
            return "\n".join(rows) + "\n\n"
        if command.startswith("show servers state"):
            lines = ["1", "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state"]
            for i, (name, s) in enumerate(self.servers.items()):
                lines.append(f"3 tfserving_grpc {i + 1} {name} 10.0.0.{i + 1} 2 {s['flags']}")
            return "\n".join(lines) + "\n\n"
        if command.startswith("set server tfserving_grpc/") and " state " in command:
            name = command.split("/", 1)[1].split(" ", 1)[0]
            if name not in self.servers:
                return "No such server.\n\n"
            state = command.rsplit(" ", 1)[1]
            self.servers[name]["flags"] = {"ready": 0, "drain": 0x08, "maint": 0x01}[state]
            return "\n"
        if command.startswith("set server"):
            return "No such server.\n\n"
        return "Unknown command.\n"

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[FakeHAProxy]:
    fake = FakeHAProxy(tmp_path / "admin.sock")
    yield fake
    fake.close()


def run(fake: FakeHAProxy, state: str, server: str = "node1", **kwargs: object) -> dict:
    send = mod.unix_socket_sender(str(fake.path))
    return mod.apply(send, "tfserving_grpc", server, state, interval=0.01, **kwargs)


def test_drain_waits_until_haproxy_counts_no_session(haproxy: FakeHAProxy) -> None:
    haproxy.servers["node1"]["scur"] = 3
    haproxy.sessions_per_look = [3, 3, 2, 1, 0]
    result = run(haproxy, "drained", timeout=5)
    assert result["changed"] is True
    assert result["before"]["admin"] == "ready"
    assert result["after"] == {
        "status": "DRAIN",
        "admin": "drain",
        "sessions": 0,
        "queued": 0,
        "check": "L7OK",
        "weight": 1,
        "total": 9,
        "connection_errors": 0,
        "response_errors": 0,
    }
    assert "set server tfserving_grpc/node1 state drain" in haproxy.commands
    assert haproxy.sessions_per_look == []


def test_drain_gives_up_after_the_timeout_naming_what_it_saw(haproxy: FakeHAProxy) -> None:
    haproxy.servers["node1"]["scur"] = 2
    with pytest.raises(
        mod.RuntimeError_, match=r"waited 0.2 s for no session and no queued request; .*2 session"
    ):
        run(haproxy, "drained", timeout=0.2)


def test_drain_of_a_down_server_returns_at_once(haproxy: FakeHAProxy) -> None:
    haproxy.servers["node1"]["status"] = "DOWN"
    result = run(haproxy, "drained", timeout=5)
    assert result["after"]["status"] == "DOWN"
    assert result["after"]["admin"] == "drain"


def test_ready_waits_for_the_health_check_to_report_up(haproxy: FakeHAProxy) -> None:
    haproxy.servers["node1"].update(status="DOWN", flags=0x08)
    haproxy.status_per_look = ["DOWN", "DOWN", "DOWN 1/2", "UP"]
    result = run(haproxy, "ready", timeout=5)
    assert result["changed"] is True
    assert result["before"]["admin"] == "drain"
    assert result["after"]["status"] == "UP"
    assert result["after"]["admin"] == "ready"


def test_ready_fails_when_the_check_never_passes(haproxy: FakeHAProxy) -> None:
    haproxy.servers["node1"].update(status="DOWN", flags=0x08, check="L7STS")
    with pytest.raises(
        mod.RuntimeError_,
        match=r"waited 0.2 s for the health check to report it UP; last seen: status DOWN.*L7STS",
    ):
        run(haproxy, "ready", timeout=0.2)


def test_ready_on_a_server_in_service_changes_nothing(haproxy: FakeHAProxy) -> None:
    result = run(haproxy, "ready", timeout=1)
    assert result["changed"] is False


def test_maintenance_counts_as_not_ready(haproxy: FakeHAProxy) -> None:
    haproxy.servers["node1"]["flags"] = 0x01
    state = mod.read_state(mod.unix_socket_sender(str(haproxy.path)), "tfserving_grpc", "node1")
    assert state.admin == "maint"
    assert not state.up


def test_query_changes_nothing(haproxy: FakeHAProxy) -> None:
    result = run(haproxy, "query")
    assert result["changed"] is False
    assert not [c for c in haproxy.commands if c.startswith("set ")]


def test_unknown_server_is_a_clear_error(haproxy: FakeHAProxy) -> None:
    with pytest.raises(mod.RuntimeError_, match="tfserving_grpc/node9 is not in HAProxy"):
        run(haproxy, "drained", server="node9")


def _fleet(haproxy: FakeHAProxy, **others: dict[str, object]) -> None:
    for name, state in others.items():
        haproxy.servers[name] = {"status": "UP", "flags": 0, "scur": 0, "check": "L7OK", **state}


def test_drain_with_every_other_server_up_goes_ahead(haproxy: FakeHAProxy) -> None:
    _fleet(haproxy, node2={}, node3={})
    result = run(haproxy, "drained", timeout=1, max_unavailable=1, peers_timeout=1)
    assert result["after"]["admin"] == "drain"
    assert result["out_of_service"] == []


def test_drain_waits_for_a_server_that_is_out_to_come_back(haproxy: FakeHAProxy) -> None:
    _fleet(haproxy, node2={"status": "DOWN"}, node3={})
    # node2 comes back while the drain of node1 waits.
    threading.Timer(0.2, lambda: haproxy.servers["node2"].update(status="UP")).start()
    result = run(haproxy, "drained", timeout=1, max_unavailable=1, peers_timeout=5)
    assert result["after"]["admin"] == "drain"
    assert result["waited"] >= 0.2


def test_drain_stops_naming_the_server_that_stays_out(haproxy: FakeHAProxy) -> None:
    _fleet(haproxy, node2={"flags": 0x08}, node3={})
    with pytest.raises(
        mod.RuntimeError_,
        match=r"node1 stays in service: at most 1 server.* node2 \(DRAIN, drain\)\. Waited 0.2 s",
    ):
        run(haproxy, "drained", timeout=1, max_unavailable=1, peers_timeout=0.2)
    assert haproxy.servers["node1"]["flags"] == 0  # never drained


def test_drain_fails_at_once_when_the_server_out_is_in_the_same_batch(
    haproxy: FakeHAProxy,
) -> None:
    _fleet(haproxy, node2={"flags": 0x08}, node3={})
    with pytest.raises(mod.RuntimeError_, match=r"node2 .*same rollout batch"):
        run(haproxy, "drained", max_unavailable=1, peers_timeout=60, batch=["node1", "node2"])
    assert haproxy.servers["node1"]["flags"] == 0


def test_a_larger_budget_lets_a_second_server_out(haproxy: FakeHAProxy) -> None:
    _fleet(haproxy, node2={"flags": 0x08}, node3={})
    result = run(haproxy, "drained", timeout=1, max_unavailable=2, peers_timeout=0.2)
    assert result["out_of_service"] == ["node2"]


def test_a_server_already_out_is_drained_without_the_check(haproxy: FakeHAProxy) -> None:
    _fleet(haproxy, node2={"status": "DOWN"}, node3={"status": "DOWN"})
    haproxy.servers["node1"]["status"] = "DOWN"
    result = run(haproxy, "drained", timeout=1, max_unavailable=1, peers_timeout=0.1)
    assert result["after"]["admin"] == "drain"


class WeightedHAProxy(FakeHAProxy):
    """Adds weights (show servers state's srv_uweight, set server ... weight) and counters."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.weights = {"node1": 100}

    def answer(self, command: str) -> str:
        if command.startswith("show servers state"):
            lines = [
                "1",
                "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state "
                "srv_uweight srv_iweight",
            ]
            for i, (name, s) in enumerate(self.servers.items()):
                weight = self.weights.get(name, 1)
                lines.append(
                    f"3 tfserving_grpc {i + 1} {name} 10.0.0.{i + 1} 2 {s['flags']} {weight} 100"
                )
            return "\n".join(lines) + "\n\n"
        if command == "show stat":
            header = "# pxname,svname,qcur,scur,stot,econ,eresp,status,check_status,"
            rows = [header]
            for name, s in self.servers.items():
                rows.append(f"tfserving_grpc,{name},0,{s['scur']},5310,2,3,{s['status']},L7OK,")
            return "\n".join(rows) + "\n\n"
        if command.startswith("set server tfserving_grpc/") and " weight " in command:
            name = command.split("/", 1)[1].split(" ", 1)[0]
            self.weights[name] = int(command.rsplit(" ", 1)[1])
            return "\n"
        return super().answer(command)


@pytest.fixture
def weighted(tmp_path: Path) -> Iterator[WeightedHAProxy]:
    fake = WeightedHAProxy(tmp_path / "w.sock")
    yield fake
    fake.sock.close()


def test_query_with_a_weight_sets_only_the_weight_and_reports_the_change(
    weighted: WeightedHAProxy,
) -> None:
    send = mod.unix_socket_sender(str(weighted.path))
    result = mod.apply(send, "tfserving_grpc", "node1", "query", weight=22)
    assert result["changed"] is True
    assert result["before"]["weight"] == 100 and result["after"]["weight"] == 22
    assert weighted.weights["node1"] == 22
    assert not any(c.startswith("set server") and " state " in c for c in weighted.commands)
    again = mod.apply(send, "tfserving_grpc", "node1", "query", weight=22)
    assert again["changed"] is False
    assert sum(" weight " in c for c in weighted.commands) == 1


def test_ready_puts_the_configured_weight_back(weighted: WeightedHAProxy) -> None:
    weighted.weights["node1"] = 22
    send = mod.unix_socket_sender(str(weighted.path))
    result = mod.apply(send, "tfserving_grpc", "node1", "ready", weight=100, interval=0.01)
    assert result["changed"] is True  # admin was ready already: only the weight moved
    assert weighted.weights["node1"] == 100


def test_the_state_carries_the_counters_a_canary_is_judged_by(weighted: WeightedHAProxy) -> None:
    send = mod.unix_socket_sender(str(weighted.path))
    state = mod.read_state(send, "tfserving_grpc", "node1")
    assert (state.total, state.connection_errors, state.response_errors) == (5310, 2, 3)
    assert state.weight == 100


def test_a_weight_out_of_range_is_refused(weighted: WeightedHAProxy) -> None:
    send = mod.unix_socket_sender(str(weighted.path))
    with pytest.raises(mod.RuntimeError_, match="0-256"):
        mod.apply(send, "tfserving_grpc", "node1", "query", weight=300)
