"""tfs-client fleet-status against a fake Prometheus HTTP API and fake TF Serving nodes."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fake_server import FakeServing, State, serve
from tfs_client.cli import main

# query -> [(labels, value)]
Answers = Callable[[str], list[tuple[dict[str, str], float]]]


@contextmanager
def fake_prometheus(
    answer: Answers, targets: list[dict[str, str]] | None = None
) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 answering /api/v1/query (and /api/v1/targets with TARGETS'
    labels when given); yields its URL and the queries."""
    queries: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlparse(self.path)
            if url.path == "/api/v1/targets" and targets is not None:
                active = [{"labels": labels, "health": "up"} for labels in targets]
                self._send({"status": "success", "data": {"activeTargets": active}})
                return
            if url.path != "/api/v1/query":
                self.send_error(404)
                return
            query = urllib.parse.parse_qs(url.query)["query"][0]
            queries.append(query)
            result = [
                {"metric": labels, "value": [1700000000.0, repr(value)]}
                for labels, value in answer(query)
            ]
            self._send({"status": "success", "data": {"resultType": "vector", "result": result}})

        def _send(self, document: object) -> None:
            body = json.dumps(document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", queries
    finally:
        server.shutdown()
        server.server_close()


def fleet(node1_grpc: str, node2_grpc: str, node2_up: float = 1) -> Answers:
    """Two nodes serving digits; node-2 also half_plus_two, with failed requests."""

    def answer(query: str) -> list[tuple[dict[str, str], float]]:
        if query == 'up{job="tfserving"}':
            return [
                ({"node": "node-1", "grpc": node1_grpc, "image": "tensorflow/serving:2.19.1-gpu",
                  "instance": "10.0.0.1:8501", "job": "tfserving"}, 1),
                ({"node": "node-2", "grpc": node2_grpc, "image": "tensorflow/serving:2.19.1",
                  "instance": "10.0.0.2:8501", "job": "tfserving"}, node2_up),
            ]  # fmt: skip
        if query == 'probe_success{job="tfserving_models"}':
            return [
                ({"node": "node-1", "model": "digits"}, 1),
                ({"node": "node-2", "model": "digits"}, 1),
                ({"node": "node-2", "model": "half_plus_two"}, 1),
                ({"node": "node-9", "model": "digits"}, 1),  # not a scraped node: ignored
            ]
        if "rate(" in query and "status" not in query:
            return [({"node": "node-1", "model_name": "digits"}, 2.5)]
        if "increase(" in query and 'status!="OK"' in query:
            return [({"node": "node-2", "model_name": "half_plus_two"}, 3)]
        if "increase(" in query:
            return [
                ({"node": "node-1", "model_name": "digits"}, 750),
                ({"node": "node-2", "model_name": "half_plus_two"}, 12),
            ]
        raise AssertionError(f"unexpected query {query}")

    return answer


@pytest.fixture
def two_nodes() -> Iterator[tuple[FakeServing, str, FakeServing, str]]:
    with serve() as (one, port1), serve() as (two, port2):
        yield one, f"127.0.0.1:{port1}", two, f"127.0.0.1:{port2}"


def test_json_lists_every_node_with_image_versions_and_traffic(
    two_nodes: tuple[FakeServing, str, FakeServing, str], capsys: pytest.CaptureFixture[str]
) -> None:
    one, grpc1, two, grpc2 = two_nodes
    two.models["digits"].states[2] = (State.LOADING, 0, "")
    with fake_prometheus(fleet(grpc1, grpc2)) as (url, queries):
        code = main(["fleet-status", "--prometheus", url, "--minutes", "3", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["healthy"] is True and data["window_minutes"] == 3
    node1, node2 = data["nodes"]
    assert (node1["node"], node1["image"], node1["scraped"]) == (
        "node-1",
        "tensorflow/serving:2.19.1-gpu",
        True,
    )
    (digits1,) = node1["models"]
    assert digits1["versions"] == [
        {"version": 1, "state": "AVAILABLE"},
        {"version": 2, "state": "AVAILABLE"},
    ]
    assert (digits1["request_rate"], digits1["requests"], digits1["failed"]) == (2.5, 750, 0)
    assert [m["name"] for m in node2["models"]] == ["digits", "half_plus_two"]
    assert node2["models"][0]["versions"][1] == {"version": 2, "state": "LOADING"}
    assert node2["models"][0]["request_rate"] is None  # no traffic counted: unknown, not 0
    assert node2["models"][1]["failed"] == 3
    # The window reaches the queries; the fake nodes were asked for their models.
    assert any("[3m]" in q for q in queries)
    assert {r[0] for r in one.received} == {"GetModelStatus"}
    assert sorted(r[1].model_spec.name for r in two.received) == ["digits", "half_plus_two"]


def test_table_and_exit_code_show_a_node_down_and_a_model_without_available_version(
    two_nodes: tuple[FakeServing, str, FakeServing, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, grpc1, two, grpc2 = two_nodes
    two.models["half_plus_two"].states[123] = (State.END, 3, "could not load")
    with fake_prometheus(fleet(grpc1, grpc2, node2_up=0)) as (url, _):
        code = main(["fleet-status", "--prometheus", url])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0] == f"prometheus {url}, requests over the last 5 min"
    assert out[1].split() == ["NODE", "SCRAPE", "IMAGE", "MODEL", "VERSIONS", "REQ/S", "FAILED"]
    assert out[2].split() == [
        "node-1", "up", "tensorflow/serving:2.19.1-gpu", "digits",
        "1:AVAILABLE", "2:AVAILABLE", "2.50", "0",
    ]  # fmt: skip
    assert out[3].split()[:4] == ["node-2", "DOWN", "tensorflow/serving:2.19.1", "digits"]
    assert out[4].split() == ["half_plus_two", "123:END", "-", "3"]


def test_unreachable_node_is_reported_per_model(capsys: pytest.CaptureFixture[str]) -> None:
    with serve() as (_, port):
        grpc1 = f"127.0.0.1:{port}"
        with fake_prometheus(fleet(grpc1, "127.0.0.1:1")) as (url, _):
            code = main(["fleet-status", "--prometheus", url, "--json", "--timeout", "2"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    node2 = data["nodes"][1]
    assert node2["healthy"] is False
    assert all(m["error"] and "UNAVAILABLE" in m["error"] for m in node2["models"])
    assert data["nodes"][0]["healthy"] is True


def test_prometheus_unreachable_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fleet-status", "--prometheus", "http://127.0.0.1:1", "--timeout", "2"])
    assert code == 3
    assert "cannot query Prometheus at http://127.0.0.1:1" in capsys.readouterr().err


def test_empty_fleet_fails(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_prometheus(lambda query: []) as (url, _):
        code = main(["fleet-status", "--prometheus", url])
    assert code == 1
    assert '(no target of job "tfserving" in Prometheus)' in capsys.readouterr().out


def test_a_server_whose_target_moved_is_judged_by_its_current_target(
    two_nodes: tuple[FakeServing, str, FakeServing, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """node-2 went from one server to two: its old target (no `server` label, now down)
    stays in Prometheus' lookback for a while beside the new one. Only the target
    Prometheus scrapes now decides; seen in molecule/fleet as a healthy server reported
    down."""
    _, grpc1, _, grpc2 = two_nodes
    base = fleet(grpc1, grpc2)
    old = {"node": "node-2", "grpc": grpc2, "instance": "10.0.0.2:8501", "job": "tfserving"}
    new = {"node": "node-2", "server": "node-2", "grpc": grpc2, "instance": "10.0.0.2:8600",
           "job": "tfserving"}  # fmt: skip
    node1 = base('up{job="tfserving"}')[0]

    def answer(query: str) -> list[tuple[dict[str, str], float]]:
        if query == 'up{job="tfserving"}':
            # The new series first and the old one after it, which used to win.
            return [node1, ({**new, "__name__": "up"}, 1), ({**old, "__name__": "up"}, 0)]
        return base(query)

    with fake_prometheus(answer, targets=[node1[0], new]) as (url, _):
        code = main(["fleet-status", "--prometheus", url, "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0, data
    rows = {row["server"]: row for row in data["nodes"]}
    assert rows["node-2"]["scraped"] is True and rows["node-2"]["grpc"] == grpc2


def test_a_server_no_longer_configured_is_not_listed(
    two_nodes: tuple[FakeServing, str, FakeServing, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """node-2 went from two servers back to one: the removed server's last `up` (0) stays
    in Prometheus' lookback, but Prometheus no longer scrapes it, so it is no row (seen in
    molecule/fleet after a count change, as a DOWN server that no longer exists)."""
    _, grpc1, _, grpc2 = two_nodes
    base = fleet(grpc1, grpc2)
    current = [labels for labels, _ in base('up{job="tfserving"}')]
    gone = {"node": "node-2", "server": "node-2-1", "grpc": "10.0.0.2:8501",
            "instance": "10.0.0.2:8601", "job": "tfserving"}  # fmt: skip

    def answer(query: str) -> list[tuple[dict[str, str], float]]:
        if query == 'up{job="tfserving"}':
            return [*base(query), (gone, 0)]
        return base(query)

    with fake_prometheus(answer, targets=current) as (url, _):
        code = main(["fleet-status", "--prometheus", url, "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0, data
    assert [row["server"] for row in data["nodes"]] == ["node-1", "node-2"]
