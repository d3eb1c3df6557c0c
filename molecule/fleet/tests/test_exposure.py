"""Who reaches the monitoring and admin ports (issue 23, item 3).

Prometheus (9090) answers the controller, for `tfs-client fleet-status`; the blackbox
exporter (9115) listens on 127.0.0.1 and answers the monitoring host only; HAProxy's
exporter and stats (8405) answer the monitoring host (Prometheus scrapes them) and, in this
scenario, the controller (group_vars: test_fleet.py reads /metrics); node_exporter (9100)
answers the monitoring host. A node is neither the monitoring host nor the controller: it
stands for a stranger, and is refused on each of them.

The test hosts have one interface each, so what shows here is the host rules (INPUT, chains
TFSERVING-PROMETHEUS, TFSERVING-LB-STATS, TFSERVING-NODE-EXPORTER), not the listen
addresses: only the blackbox exporter's loopback address keeps a port closed by itself.

These tests only read, except the last, which takes node_exporter's rules away on one node
and puts them back as a boot would (pytest runs this file before test_fleet.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from test_fleet import LB, NODES, addresses, connect, on, remote

STRANGER = "fleet-node2"  # a node: not the monitoring host, not the controller
TFS_CLIENT = str(Path(sys.executable).parent / "tfs-client")
PROMETHEUS_CHAIN = "TFSERVING-PROMETHEUS"
LB_CHAIN = "TFSERVING-LB-STATS"
NODE_CHAIN = "TFSERVING-NODE-EXPORTER"
NODE_UNIT = "tfserving-node-exporter-firewall"
NODE_RULES = "/etc/tfserving-node-exporter-firewall.rules"


def rejected(host: str, chain: str, port: int) -> int:
    """Connections the REJECT rule of PORT in CHAIN on HOST has refused so far."""
    out = on(host, "iptables", "-w", "-n", "-v", "-x", "-L", chain)
    for line in out.splitlines():
        fields = line.split()
        if "REJECT" in fields and f"dpt:{port}" in fields:
            return int(fields[0])
    raise AssertionError(f"no REJECT for port {port} in {chain} on {host}:\n{out}")


def controller_connect(address: str, port: int) -> str:
    """The same probe as connect, from the controller (where the tests run)."""
    try:
        socket.create_connection((address, port), timeout=5).close()
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError as error:
        return type(error).__name__


def test_a_stranger_is_refused_on_each_monitoring_and_admin_port() -> None:
    hosts = addresses()
    lb = hosts[LB]
    # The refusals are the rules' (their counters move), not a service that is down.
    for chain, port in ((PROMETHEUS_CHAIN, 9090), (PROMETHEUS_CHAIN, 9115), (LB_CHAIN, 8405)):
        before = rejected(LB, chain, port)
        assert connect(STRANGER, lb, port) == "refused", port
        assert rejected(LB, chain, port) > before, (chain, port)
    for node in NODES:
        if node == STRANGER:
            continue
        before = rejected(node, NODE_CHAIN, 9100)
        assert connect(STRANGER, hosts[node], 9100) == "refused", node
        assert rejected(node, NODE_CHAIN, 9100) > before, node


def test_those_who_need_a_port_reach_it() -> None:
    hosts = addresses()
    lb = hosts[LB]
    # The controller: Prometheus (fleet-status), and in this scenario HAProxy's /metrics.
    assert controller_connect(lb, 9090) == "open"
    assert controller_connect(lb, 8405) == "open"
    # Prometheus, on the load balancer host: HAProxy's exporter there and every node_exporter.
    assert connect(LB, lb, 8405) == "open"
    for node in NODES:
        assert connect(LB, hosts[node], 9100) == "open", node
    # The blackbox exporter answers on loopback only, and to nobody else, the controller
    # included: whoever reaches it can make the monitoring host probe any address.
    assert connect(LB, "127.0.0.1", 9115) == "open"
    assert connect(LB, lb, 9115) == "refused"
    assert controller_connect(lb, 9115) == "refused"


def test_the_listen_addresses_are_the_variables() -> None:
    blackbox = on(LB, "cat", "/etc/default/prometheus-blackbox-exporter")
    assert "--web.listen-address=127.0.0.1:9115" in blackbox
    assert "--web.listen-address=0.0.0.0:9090" in on(LB, "cat", "/etc/default/prometheus")
    for node in NODES:
        exporter = on(node, "cat", "/etc/default/prometheus-node-exporter")
        assert "--web.listen-address=0.0.0.0:9100" in exporter, node
    assert "bind 0.0.0.0:8405" in on(LB, "cat", "/etc/haproxy/haproxy.cfg")


def _targets(prometheus: str) -> list[dict[str, Any]]:
    reply = requests.get(f"{prometheus}/api/v1/targets", params={"state": "active"}, timeout=10)
    reply.raise_for_status()
    return reply.json()["data"]["activeTargets"]


def test_prometheus_still_scrapes_every_target_and_fleet_status_reaches_it() -> None:
    prometheus = f"http://{addresses()[LB]}:9090"
    deadline = time.monotonic() + 90
    while True:
        targets = _targets(prometheus)
        down = [t for t in targets if t["health"] != "up"]
        if targets and not down:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"targets not up after 90 s: {json.dumps(down, indent=1)}")
        time.sleep(2)
    jobs: dict[str, set[str]] = {}
    for target in targets:
        jobs.setdefault(target["labels"]["job"], set()).add(target["labels"]["node"])
    # Through the rules: node_exporter on every node, HAProxy's exporter, and the probes
    # through the blackbox exporter on loopback.
    assert jobs["node"] == set(NODES)
    assert jobs["haproxy"] == {LB}
    assert jobs["tfserving_models"] == set(NODES)
    # fleet-status from the controller: exit code 3 would say Prometheus did not answer.
    status = subprocess.run(
        [TFS_CLIENT, "fleet-status", f"--prometheus={prometheus}", "--minutes=2", "--json"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert status.returncode != 3, status.stdout + status.stderr
    assert {n["node"] for n in json.loads(status.stdout)["nodes"]} == set(NODES)


def test_the_services_require_their_rules() -> None:
    for unit, firewall in (
        ("prometheus", "tfserving-prometheus-firewall"),
        ("prometheus-blackbox-exporter", "tfserving-prometheus-firewall"),
    ):
        requires = on(LB, "systemctl", "show", "-p", "Requires", "--value", unit).split()
        assert f"{firewall}.service" in requires, (unit, requires)
    assert on(LB, "systemctl", "is-enabled", "tfserving-lb-stats-firewall") == "enabled"
    for node in NODES:
        requires = on(node, "systemctl", "show", "-p", "Requires", "--value",
                      "prometheus-node-exporter").split()  # fmt: skip
        assert f"{NODE_UNIT}.service" in requires, (node, requires)


def _drop_rules(node: str) -> None:
    """The node as after a reboot, before its rules load: no chain, no jump."""
    on(node, "systemctl", "stop", f"{NODE_UNIT}.service")  # stops node_exporter with it
    jump = ["-p", "tcp", "-m", "conntrack", "--ctstate", "NEW", "-j", NODE_CHAIN]
    on(node, "iptables", "-w", "-D", "INPUT", *jump)
    on(node, "iptables", "-w", "-F", NODE_CHAIN)
    on(node, "iptables", "-w", "-X", NODE_CHAIN)


def test_node_exporter_never_starts_without_its_rules() -> None:
    node = "fleet-node3"
    address = addresses()[node]
    on(node, "cp", "-p", NODE_RULES, f"{NODE_RULES}.saved")
    try:
        _drop_rules(node)
        assert on(node, "systemctl", "is-active", "prometheus-node-exporter", check=False) in (
            "inactive",
            "failed",
        )
        # Rules that do not load: node_exporter does not start, so nobody reaches 9100.
        on(node, "sh", "-c", f"echo 'not iptables-restore input' > {NODE_RULES}")
        started = remote(node).run("systemctl start prometheus-node-exporter")
        assert started.rc != 0, started.stdout + started.stderr
        assert on(node, "systemctl", "is-active", "prometheus-node-exporter", check=False) != (
            "active"
        )
        assert connect(STRANGER, address, 9100) == "refused"
        assert connect(LB, address, 9100) == "refused"
        # Good rules again: starting node_exporter loads them first.
        on(node, "cp", "-p", f"{NODE_RULES}.saved", NODE_RULES)
        remote(node).run(f"systemctl reset-failed {NODE_UNIT}.service prometheus-node-exporter")
        on(node, "systemctl", "start", "prometheus-node-exporter")
        assert on(node, "systemctl", "is-active", NODE_UNIT) == "active"
        assert NODE_CHAIN in on(node, "iptables", "-w", "-S", "INPUT")
        deadline = time.monotonic() + 30
        while connect(LB, address, 9100) != "open":
            assert time.monotonic() < deadline, "node_exporter is not back"
            time.sleep(1)
        assert connect(STRANGER, address, 9100) == "refused"
    finally:
        on(node, "cp", "-p", f"{NODE_RULES}.saved", NODE_RULES)
        on(node, "rm", "-f", f"{NODE_RULES}.saved")
        remote(node).run(f"systemctl reset-failed {NODE_UNIT}.service prometheus-node-exporter")
        on(node, "systemctl", "start", "prometheus-node-exporter")
