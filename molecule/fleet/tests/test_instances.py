"""Servers per node (issue 25): fleet-node3 runs two CPU servers behind the load balancer.

Runs after test_fleet.py (pytest takes the files in order, and test_instances sorts after
test_fleet) on the fleet as it left it: every node on half_plus_two 125 (NEW), one server
each. fleet-node3 gets `tfserving_instance_mode: count` with two servers through its
host_vars, so the other nodes stay at one. Every run here takes fleet-node1 first, then
fleet-node2 and fleet-node3 in one batch (a turn fewer than the other files' one node at a
time), so the load balancer's budget, which counts servers, is 3: fleet-node2's one and
fleet-node3's two, drained together while fleet-node1 serves. Under gRPC traffic through
the load balancer with every answer checked, each phase loses no request:

  1 -> 2      the count goes from one server to two: fleet-node3's server 0 is replaced
              (its REST port and cpuset move), tfserving-1 is added, both gated, then put
              back; the load balancer's last play adds fleet-node3-1
  version     a model version rolls across, both servers of fleet-node3 included, no restart
  SIGKILL     one of the two servers is killed; the load balancer and the restart policy
              cover it
  2 -> 1      back to one server (mode one): tfserving-1 is removed only after server 0
              passed its gate, its line leaves the load balancer in the last play, and
              haproxy.cfg is byte for byte what it was before the first phase

The monitoring is run after the two count changes (its play reads each node's record):
Prometheus scrapes and probes each server while there are two, and fleet-status shows
them; the second run leaves the targets as test_monitoring.py expects them. Ends with the
fleet as it found it, but half_plus_two at version 126 (OLD's answers).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from converge_again import converge
from test_fleet import (
    LB,
    MODELS,
    NEW,
    NODES,
    OLD,
    PLAYBOOKS,
    SCENARIO_DIR,
    AdminStates,
    Traffic,
    addresses,
    connect,
    lb_servers,
    on,
    run,
    wait_all_up,
)
from tfs_client.api import Client, ModelRef

NODE = "fleet-node3"
SECOND = f"{NODE}-1"  # the load balancer's name of the node's server 1
HOST_VARS = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "/nonexistent")).parent / "host_vars"
NODE_VARS = HOST_VARS / f"{NODE}.yml"
TWO = {"tfserving_instance_mode": "count", "tfserving_instance_count": 2}
# fleet-node1, then the two others together; the load balancers' budget counts servers.
BUDGET = {"tfserving_rollout_batch": [1, "100%"], "tfserving_lb_max_unavailable": 3}
RECORD = "/etc/ansible/facts.d/tfserving_instances.fact"
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
TFS_CLIENT = str(Path(sys.executable).parent / "tfs-client")
# What the phases keep for the ones after them.
SEEN: dict[str, str] = {}


def inspect(node: str, container: str, template: str) -> str:
    return on(node, "docker", "inspect", "-f", template, container)


def cpus(text: str) -> set[int]:
    """'0-3,6' -> {0, 1, 2, 3, 6}."""
    found: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        found.update(range(int(low), int(high or low) + 1))
    return found


def answers(port: int) -> list[float]:
    """half_plus_two of [1, 2, 5] from one server, asked directly (not through the LB)."""
    x = np.array([[1.0], [2.0], [5.0]], np.float32)
    with Client(f"{addresses()[NODE]}:{port}", timeout=10) as client:
        reply = client.predict(ModelRef("half_plus_two"), {"x": x})
    return [round(float(v), 3) for v in reply.outputs["y"].ravel()]


def available(port: int) -> list[int]:
    """The versions of half_plus_two one server has AVAILABLE."""
    with Client(f"{addresses()[NODE]}:{port}", timeout=10) as client:
        states = client.model_status(ModelRef("half_plus_two"))
    return sorted(v.version for v in states if v.state == "AVAILABLE")


def containers(node: str) -> list[str]:
    return on(node, "docker", "ps", "-a", "--format", "{{.Names}}").split()


def audit_rows(output: str) -> dict[str, tuple[str, str]]:
    """{item: (status, found)} of the table audit.yml prints (as molecule/default reads it)."""
    rows = re.findall(r'"(\d+\.\d+) +(PASS|WARN|FAIL) +.*?  +(\S.*?)",?\n', output)
    return {item: (status, found) for item, status, found in rows}


def serve(phase: str, allowed: list[list[float]]) -> tuple[subprocess.CompletedProcess[str], dict]:
    """serve.yml under traffic through the load balancer; the phase's report."""
    traffic = Traffic(allowed)
    traffic.start()
    try:
        result = run(f"{PLAYBOOKS}/serve.yml", BUDGET)
    finally:
        report = traffic.finish(phase)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert report["failed"] == 0, traffic.failures[:5]
    return result, report


def monitoring() -> None:
    result = run(f"{PLAYBOOKS}/monitoring.yml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def serving_targets(timeout: float = 90) -> list[dict]:
    """Prometheus' TF Serving targets, once every one of them is up."""
    prometheus = f"http://{addresses()[LB]}:9090"
    deadline = time.monotonic() + timeout
    while True:
        reply = requests.get(f"{prometheus}/api/v1/targets", params={"state": "active"}, timeout=10)
        targets = [
            t for t in reply.json()["data"]["activeTargets"] if t["labels"]["job"] == "tfserving"
        ]
        if targets and all(t["health"] == "up" for t in targets):
            return targets
        if time.monotonic() > deadline:
            pytest.fail(f"TF Serving targets not all up after {timeout} s: {targets}")
        time.sleep(2)


@pytest.fixture(scope="module", autouse=True)
def _host_vars_removed() -> Iterator[None]:
    """fleet-node3's count leaves with this file, also when a phase failed half-way."""
    yield
    NODE_VARS.unlink(missing_ok=True)


def test_instance_count_one_to_two_rolls_with_no_failed_request() -> None:
    SEEN["haproxy.cfg"] = on(LB, "cat", HAPROXY_CFG)
    assert set(lb_servers()) == set(NODES)
    HOST_VARS.mkdir(exist_ok=True)
    NODE_VARS.write_text(yaml.safe_dump(TWO))
    states = AdminStates()
    states.start()
    try:
        result, _ = serve("instances: 1 -> 2 servers on fleet-node3", [NEW])
    finally:
        states.finish()
    output = result.stdout + result.stderr
    assert f"{NODE}: containers: tfserving replaced or started, tfserving-1 created" in output
    # Only fleet-node3 changed, and only it was drained.
    assert not states.drained["fleet-node1"] and not states.drained["fleet-node2"]
    assert states.drained[NODE], "fleet-node3 was never drained"
    wait_all_up()
    assert set(lb_servers()) == {*NODES, SECOND}
    # Two containers, each on its own ports and its own share of the node's CPUs.
    nproc = int(on(NODE, "nproc", "--all"))
    shares = [
        cpus(inspect(NODE, name, "{{.HostConfig.CpusetCpus}}"))
        for name in ("tfserving", "tfserving-1")
    ]
    assert shares[0] and shares[1] and not shares[0] & shares[1], shares
    assert shares[0] | shares[1] == set(range(nproc)), shares
    # The kernel applies them inside the nested test host too: each server's process may
    # run on its cpuset only (so no --cpus fallback is needed here).
    for name, share in zip(("tfserving", "tfserving-1"), shares, strict=True):
        status = on(NODE, "docker", "exec", name, "cat", "/proc/1/status")
        allowed = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M)
        assert allowed and cpus(allowed.group(1)) == share, (name, share, allowed)
    ports = {
        name: json.loads(inspect(NODE, name, "{{json .HostConfig.PortBindings}}"))
        for name in ("tfserving", "tfserving-1")
    }
    assert [b["HostPort"] for b in ports["tfserving"]["8500/tcp"]] == ["8500"]
    assert [b["HostPort"] for b in ports["tfserving"]["8501/tcp"]] == ["8600"]
    assert [b["HostPort"] for b in ports["tfserving-1"]["8500/tcp"]] == ["8501"]
    assert [b["HostPort"] for b in ports["tfserving-1"]["8501/tcp"]] == ["8601"]
    for port in (8500, 8501):
        assert answers(port) == NEW, port
    # The record other plays read, and the load balancer's lines: each server checked on its
    # own REST port.
    record = json.loads(on(NODE, "cat", RECORD))
    assert record["mode"] == "count"
    assert [(s["server"], s["grpc_port"], s["rest_port"]) for s in record["servers"]] == [
        (NODE, 8500, 8600),
        (SECOND, 8501, 8601),
    ]
    config = on(LB, "cat", HAPROXY_CFG)
    address = addresses()[NODE]
    assert f"server {NODE} {address}:8500 port 8600" in config
    assert f"server {SECOND} {address}:8501 port 8601" in config
    # Both servers take requests through the load balancer.
    before = {name: int(row["stot"]) for name, row in lb_servers().items()}
    with Client(f"{addresses()[LB]}:8500", timeout=10) as client:
        for _ in range(40):
            client.predict(ModelRef("half_plus_two"), {"x": np.array([[1.0]], np.float32)})
    after = {name: int(row["stot"]) for name, row in lb_servers().items()}
    assert after[SECOND] - before[SECOND] >= 5, (before, after)
    assert after[NODE] - before[NODE] >= 5, (before, after)


def test_instance_ports_are_behind_the_firewall_and_the_audit_covers_both() -> None:
    address = addresses()[NODE]
    for port in (8500, 8501, 8600, 8601):
        assert connect("fleet-node2", address, port) == "refused", port
        assert connect(LB, address, port) == "open", port
    # The audit judges both servers as the project's own (labelled) containers: each held to
    # its cpuset (5.12), the restart policy excepted on both (5.15), FAIL on neither. (The
    # fleet's daemon items are molecule/default's business: only the container rows count.)
    result = converge(
        SCENARIO_DIR, playbook=f"{PLAYBOOKS}/audit.yml", limit=NODE, options=["--check"]
    )
    output = result.stdout + result.stderr
    rows = audit_rows(output)
    assert rows, output[-4000:]
    assert rows["5.12"][0] == "PASS", rows["5.12"]
    # One part per container, in the order docker lists them.
    assert set(rows["5.12"][1].split("; ")) == {
        f"{name}: cpuset {inspect(NODE, name, '{{.HostConfig.CpusetCpus}}')}"
        for name in ("tfserving", "tfserving-1")
    }, rows["5.12"]
    assert (
        rows["5.15"][0] == "WARN" and "tfserving-1: unless-stopped (documented" in rows["5.15"][1]
    )
    failing = {
        item: row for item, row in rows.items() if row[0] == "FAIL" and "tfserving" in row[1]
    }
    assert failing == {}, failing


def test_instance_monitoring_scrapes_and_fleet_status_shows_each_server() -> None:
    monitoring()
    targets = serving_targets()
    ours = sorted(
        t["labels"].get("server", t["labels"]["node"])
        for t in targets
        if t["labels"]["node"] == NODE
    )
    assert ours == [NODE, SECOND], targets
    scraped = {
        t["labels"].get("server"): t["scrapeUrl"] for t in targets if t["labels"]["node"] == NODE
    }
    assert scraped[SECOND].startswith(f"http://{addresses()[NODE]}:8601/"), scraped
    status = subprocess.run(
        [TFS_CLIENT, "fleet-status", f"--prometheus=http://{addresses()[LB]}:9090", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    rows = {row["server"]: row for row in json.loads(status.stdout)["nodes"]}
    assert {SECOND, NODE} <= set(rows), sorted(rows)
    assert rows[SECOND]["node"] == NODE and rows[SECOND]["healthy"], rows[SECOND]


def test_instance_a_model_version_rolls_across_both_servers_with_no_failed_request(
    testdata: Path,
) -> None:
    """Version 126 (half_plus_two: OLD's answers) on every node; both servers of
    fleet-node3 load it without a restart."""
    import shutil

    shutil.copytree(
        testdata / "saved_model_half_plus_two_cpu" / "00000123", MODELS / "half_plus_two" / "126"
    )
    before = {name: inspect(NODE, name, "{{.Id}}") for name in ("tfserving", "tfserving-1")}
    serve("instances: a model version across two servers", [NEW, OLD])
    for port in (8500, 8501):
        assert available(port) == [126], port
        assert answers(port) == OLD, port
    assert {name: inspect(NODE, name, "{{.Id}}") for name in before} == before
    wait_all_up()


def test_instance_one_server_sigkilled_costs_no_request() -> None:
    traffic = Traffic([OLD])
    traffic.start()
    time.sleep(3)
    pid = inspect(NODE, "tfserving-1", "{{.State.Pid}}")
    on(NODE, "kill", "-KILL", pid)
    time.sleep(3)
    wait_all_up(timeout=150)
    report = traffic.finish("instances: one of two servers SIGKILLed")
    assert report["failed"] == 0, traffic.failures[:5]
    assert int(inspect(NODE, "tfserving-1", "{{.RestartCount}}")) >= 1
    assert answers(8501) == OLD


def test_instance_count_two_to_one_removes_the_surplus_after_the_gate() -> None:
    NODE_VARS.unlink()
    states = AdminStates()
    states.start()
    try:
        result, _ = serve("instances: 2 -> 1 server on fleet-node3", [OLD])
    finally:
        states.finish()
    output = result.stdout + result.stderr
    assert (
        f"{NODE}: the container is replaced or started; servers removed after the gate: tfserving-1"
        in output
    )
    # The surplus server was removed after the node's gate, in its turn.
    turn = output[output.rindex("PLAY [Deploy the models") :]
    gate = turn.rindex("Judge the gate]")
    removed = turn.index("Remove the servers beyond the node's count]")
    assert gate < removed, "the surplus server was removed before the gate"
    assert not states.drained["fleet-node1"] and not states.drained["fleet-node2"]
    wait_all_up()
    assert set(lb_servers()) == set(NODES)
    assert containers(NODE) == ["tfserving"], containers(NODE)
    assert inspect(NODE, "tfserving", "{{.HostConfig.CpusetCpus}}") == ""
    assert answers(8500) == OLD
    record = json.loads(on(NODE, "cat", RECORD))
    assert record["mode"] == "one" and [s["server"] for s in record["servers"]] == [NODE]
    # One server per node again: the load balancer's configuration from before, byte for byte.
    assert on(LB, "cat", HAPROXY_CFG) == SEEN["haproxy.cfg"]
    # Prometheus back to one target per node (test_monitoring.py expects them so).
    monitoring()
    targets = serving_targets()
    assert sorted(t["labels"]["node"] for t in targets) == sorted(NODES), targets
    assert not [t for t in targets if "server" in t["labels"]], targets
