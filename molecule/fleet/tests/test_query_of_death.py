"""A query of death through the load balancer: one request that kills the server it reaches.

The fleet serves query_of_death (scripts/make_test_models.py: y = x + 1, but an x holding
666 runs TensorFlow's Abort op, and the server dies with SIGABRT). The load balancer
retries a request once, on another node, when its server closes without answering
(`retries 1`, `retry-on conn-failure empty-response`, `option redispatch`), so that request
kills at most two servers and the third never sees it. Ordinary traffic, sent all along,
loses only what that one retry cannot save (usually nothing; see the last assertion).
Runs after test_fleet.py and test_monitoring.py (pytest takes the files in order);
half_plus_two answers whichever version those left.
"""

from __future__ import annotations

import json
import shlex
import time

import numpy as np
from test_fleet import LB, NEW, NODES, OLD, Traffic, addresses, lb_servers, on, wait_all_up
from tfs_client.api import Client, ModelRef
from tfs_client.errors import RpcError

MODEL = "query_of_death"
MODELS = ("half_plus_two", MODEL)
DEATH = np.array([[666.0]], np.float32)
# What TensorFlow's Abort kernel logs (LOG(FATAL)) before the process dies.
ABORT_LINE = "Abort_op intentional failure; query_of_death: x == 666"


def server_runs(node: str) -> tuple[str, ...]:
    """The serving container's ID, restart count and start time: a crash of the server ends
    the container (the server's status is the entrypoint's), and Docker's restart changes
    the count and the start time."""
    fields = "{{.Id}} {{.RestartCount}} {{.State.StartedAt}}"
    return tuple(on(node, "docker", "inspect", "-f", fields, "tfserving").split())


def aborts_since(node: str, since: int) -> int:
    """How many times the node's server logged the query of death's abort since ``since``."""
    script = f"docker logs --since {since} tfserving 2>&1 | grep -cF {shlex.quote(ABORT_LINE)}"
    return int(on(node, "sh", "-c", script + " || true"))


def wait_serving(node: str, timeout: float = 150) -> None:
    """Until the node's server (asked directly, not through the load balancer) has every
    model AVAILABLE again."""
    deadline = time.monotonic() + timeout
    states: object = None
    while time.monotonic() < deadline:
        try:
            with Client(f"{addresses()[node]}:8500", timeout=5) as client:
                states = {m: [v.state for v in client.model_status(ModelRef(m))] for m in MODELS}
            if all("AVAILABLE" in s for s in states.values()):
                return
        except RpcError as exc:
            states = str(exc)
        time.sleep(1)
    raise AssertionError(f"{node}: the server did not serve again within {timeout} s: {states}")


def test_the_lb_health_check_covers_the_query_of_death_model() -> None:
    config = on(LB, "cat", "/etc/haproxy/haproxy.cfg")
    assert f"uri /v1/models/{MODEL}" in config
    assert "uri /v1/models/half_plus_two" in config


def test_a_query_of_death_reaches_at_most_one_more_node() -> None:
    wait_all_up()
    before = {node: server_runs(node) for node in NODES}
    redispatched = {name: int(row["wredis"]) for name, row in lb_servers().items()}
    traffic = Traffic([OLD, NEW])
    traffic.start()
    time.sleep(3)
    since = int(time.time()) - 1
    sent = time.monotonic()
    answer: object = None
    with Client(f"{addresses()[LB]}:8500", timeout=30) as client:
        try:
            answer = client.predict(ModelRef(MODEL), {"x": DEATH}).outputs["y"].tolist()
        except RpcError as exc:
            answer = exc
    failed_after = round(time.monotonic() - sent, 2)

    # The killed servers restart (Docker's restart policy); wait for them to serve again and
    # for the load balancer to have every node UP, with ordinary traffic still running.
    deadline = time.monotonic() + 30
    restarted: list[str] = []
    while not restarted and time.monotonic() < deadline:
        time.sleep(1)
        restarted = [node for node in NODES if server_runs(node) != before[node]]
    time.sleep(3)  # the load balancer's checks: 2 failures 1 s apart mark a node DOWN
    restarted = [node for node in NODES if server_runs(node) != before[node]]
    for node in restarted:
        wait_serving(node)
    wait_all_up(timeout=150)
    time.sleep(2)
    report = traffic.finish("query of death")

    saw = [node for node in NODES if aborts_since(node, since)]
    redispatches = sum(
        int(row["wredis"]) - redispatched.get(name, 0) for name, row in lb_servers().items()
    )
    outcome = {
        "query_of_death": "answered" if not isinstance(answer, RpcError) else answer.code.name,
        "query_of_death_failed_after_s": failed_after,
        "servers_restarted": restarted,
        "servers_that_logged_the_abort": saw,
        "lb_redispatches": redispatches,
        "ordinary_requests": report["requests"],
        "ordinary_failed": report["failed"],
    }
    print("QUERY OF DEATH", json.dumps(outcome))

    assert isinstance(answer, RpcError), f"the query of death was answered: {answer}"
    assert restarted, f"no server restarted: {outcome}"
    assert len(restarted) <= 2, f"the query of death reached more than two nodes: {outcome}"
    # Exactly the servers that ran the request died; the others never saw it.
    assert saw == restarted, outcome
    # Ordinary requests: the retry budget that stops the query of death binds them too. One
    # the first server was answering when it died is retried once, and fails when that retry
    # lands on the second server as it dies (roles/tfserving_lb/README.md, "Why one retry").
    # So each failure is UNAVAILABLE and one of the redispatches beyond the query's own;
    # any other failure (a wrong answer, a request sent to a dead node unretried) fails here.
    assert all("(UNAVAILABLE)" in f for f in traffic.failures), (outcome, traffic.failures[:5])
    assert report["failed"] <= max(redispatches - 1, 0), (outcome, traffic.failures[:5])
