"""Monitoring of the fleet: what Prometheus on the load balancer host sees, asked through
its HTTP API, after test_fleet.py's phases (pytest takes the files in order).

The fleet status and the alert timeline are also written to
.cache/monitoring-report.txt in the project directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from converge_again import PROJECT_DIR
from test_fleet import LB, NODES, PLAYBOOKS, addresses, on, run
from tfs_client.api import Client, ModelRef

TFS_CLIENT = str(Path(sys.executable).parent / "tfs-client")
REPORT = PROJECT_DIR / ".cache" / "monitoring-report.txt"
STOPPED = "fleet-node3"
# group_vars/all.yml: the alert durations and the scrape and evaluation interval.
ALERT_FOR = 20
INTERVAL = 5
NODE_ALERTS = {"TFServingNodeDown", "TFServingModelUnavailable", "TFServingLBBackendDown"}


def report(title: str, text: str) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as out:
        out.write(f"== {title}\n{text.rstrip()}\n\n")


@pytest.fixture(scope="module")
def prometheus() -> str:
    REPORT.unlink(missing_ok=True)
    return f"http://{addresses()[LB]}:9090"


def api(prometheus: str, path: str, **params: str) -> Any:
    reply = requests.get(f"{prometheus}/api/v1/{path}", params=params, timeout=10)
    reply.raise_for_status()
    body = reply.json()
    assert body["status"] == "success", body
    return body["data"]


def scalar(prometheus: str, expr: str) -> float | None:
    result = api(prometheus, "query", query=expr)["result"]
    return float(result[0]["value"][1]) if result else None


def firing(prometheus: str) -> dict[str, set[str]]:
    """Firing alerts: name -> the nodes (or load balancer servers) they fire for."""
    alerts: dict[str, set[str]] = {}
    for alert in api(prometheus, "alerts")["alerts"]:
        if alert["state"] == "firing":
            labels = alert["labels"]
            where = labels.get("server") or labels.get("node", "")
            alerts.setdefault(labels["alertname"], set()).add(where)
    return alerts


def main_pid(host: str, unit: str) -> str:
    return on(host, "systemctl", "show", "-p", "MainPID", "--value", unit)


def wait_targets_up(prometheus: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        targets = api(prometheus, "targets", state="active")["activeTargets"]
        down = [t for t in targets if t["health"] != "up"]
        if targets and not down:
            return targets
        if time.monotonic() > deadline:
            pytest.fail(f"targets not up after {timeout} s: {json.dumps(down, indent=1)}")
        time.sleep(2)


def test_monitoring_services_run() -> None:
    for unit in ("prometheus", "prometheus-blackbox-exporter"):
        assert on(LB, "systemctl", "is-active", unit) == "active", unit
    for node in NODES:
        assert on(node, "systemctl", "is-active", "prometheus-node-exporter") == "active", node


def test_every_target_is_up(prometheus: str) -> None:
    targets = wait_targets_up(prometheus, timeout=90)
    jobs: dict[str, set[str]] = {}
    for target in targets:
        jobs.setdefault(target["labels"]["job"], set()).add(target["labels"]["node"])
    assert jobs == {
        "prometheus": {LB},
        "tfserving": set(NODES),
        "tfserving_models": set(NODES),
        "node": set(NODES),
        "haproxy": {LB},
        "tfserving_registry": {LB},
    }
    report(
        "targets",
        "\n".join(
            f"{t['labels']['job']:18} {t['labels']['node']:12} {t['health']:4} {t['scrapeUrl']}"
            for t in sorted(targets, key=lambda t: (t["labels"]["job"], t["labels"]["node"]))
        ),
    )


def test_every_node_probe_sees_the_model_available(prometheus: str) -> None:
    for node in NODES:
        expr = f'probe_success{{job="tfserving_models",node="{node}",model="half_plus_two"}}'
        assert scalar(prometheus, expr) == 1, node


def test_request_counts_grow_after_traffic_through_the_load_balancer(prometheus: str) -> None:
    expr = 'sum(:tensorflow:serving:request_count{job="tfserving",model_name="half_plus_two"})'
    before = scalar(prometheus, expr) or 0.0
    x = np.array([[1.0], [2.0], [5.0]], np.float32)
    with Client(f"{addresses()[LB]}:8500", timeout=10) as client:
        for _ in range(30):
            client.predict(ModelRef("half_plus_two"), {"x": x})
    deadline = time.monotonic() + 4 * INTERVAL + 10
    while (after := scalar(prometheus, expr) or 0.0) < before + 30:
        assert time.monotonic() < deadline, f"request_count went from {before} to {after} only"
        time.sleep(2)
    report("request_count after 30 requests through the load balancer", f"{before:g} -> {after:g}")


def test_fleet_status_shows_every_node(prometheus: str) -> None:
    def fleet_status(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TFS_CLIENT, "fleet-status", f"--prometheus={prometheus}", "--minutes=2", *extra],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    text = fleet_status()
    assert text.returncode == 0, text.stdout + text.stderr
    data = json.loads(fleet_status("--json").stdout)
    by_node = {n["node"]: n for n in data["nodes"]}
    assert set(by_node) == set(NODES)
    for node, status in by_node.items():
        assert (status["scraped"], status["healthy"]) == (True, True), node
        assert [m["name"] for m in status["models"]] == ["half_plus_two", "query_of_death"]
        model = status["models"][0]
        assert any(v["state"] == "AVAILABLE" for v in model["versions"]), (node, model)
    assert sum(n["models"][0]["request_rate"] for n in by_node.values()) > 0
    report("tfs-client fleet-status", text.stdout)
    report("tfs-client fleet-status --json", json.dumps(data, indent=2))


def test_bad_duration_fails_before_any_change() -> None:
    rules = "/etc/prometheus/tfserving.rules.yml"
    before = on(LB, "sha256sum", rules)
    result = run(f"{PLAYBOOKS}/monitoring.yml", {"tfserving_monitoring_node_down_for": "1 minute"})
    assert result.returncode != 0
    # Ansible's default output puts a failed task's message on stderr.
    output = " ".join((result.stdout + result.stderr).split())
    expected = "tfserving_monitoring_node_down_for must be a Prometheus duration"
    assert expected in output, output[-2000:]
    assert on(LB, "sha256sum", rules) == before


def test_changed_rules_are_reloaded_not_restarted(prometheus: str) -> None:
    pid = main_pid(LB, "prometheus")
    result = run(f"{PLAYBOOKS}/monitoring.yml", {"tfserving_monitoring_error_ratio": 0.2})
    assert result.returncode == 0, result.stdout[-3000:]
    handlers = [line for line in result.stdout.splitlines() if line.startswith("RUNNING HANDLER")]
    assert any("Reload prometheus" in line for line in handlers), handlers
    assert not any("Restart prometheus" in line for line in handlers), handlers
    assert main_pid(LB, "prometheus") == pid
    deadline = time.monotonic() + 20
    while True:
        groups = api(prometheus, "rules")["groups"]
        queries = [
            r["query"] for g in groups for r in g["rules"] if r["name"] == "TFServingErrorRatio"
        ]
        if queries and "> 0.2" in queries[0]:
            break
        assert time.monotonic() < deadline, f"rules not reloaded: {queries}"
        time.sleep(1)


def test_a_stopped_node_fires_its_alerts_and_the_next_converge_resolves_them(
    prometheus: str,
) -> None:
    assert not {n for n, where in firing(prometheus).items() if STOPPED in where}
    on(STOPPED, "docker", "stop", "tfserving")
    stopped = time.monotonic()
    fired: dict[str, float] = {}
    # The condition shows at the next scrape, holds for ALERT_FOR, is seen at the next
    # evaluation: a few intervals of slack on top.
    limit = ALERT_FOR + 4 * INTERVAL + 10
    while set(fired) < NODE_ALERTS:
        assert time.monotonic() - stopped < limit, f"only {sorted(fired)} fired within {limit} s"
        for name, where in firing(prometheus).items():
            if name in NODE_ALERTS and STOPPED in where:
                fired.setdefault(name, time.monotonic() - stopped)
        time.sleep(1)

    result = run(f"{PLAYBOOKS}/serve.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    converged = time.monotonic()
    resolved: dict[str, float] = {}
    while set(resolved) != NODE_ALERTS:
        still = {n for n, where in firing(prometheus).items() if STOPPED in where}
        assert time.monotonic() - converged < 4 * INTERVAL + 20, f"still firing: {still}"
        for name in NODE_ALERTS - still:
            resolved.setdefault(name, time.monotonic() - stopped)
        time.sleep(1)
    done = converged - stopped
    lines = [f"{STOPPED}: container stopped at t=0 s; serve.yml done at t={done:.0f} s"]
    lines += [f"{name}: fired at t={fired[name]:.0f} s, resolved at t={resolved[name]:.0f} s"
              for name in sorted(NODE_ALERTS)]  # fmt: skip
    lines.append(f"(alert durations {ALERT_FOR} s, scrape and evaluation every {INTERVAL} s)")
    report("alert timeline", "\n".join(lines))
    print("\n".join(lines))
