"""Monitoring on a converged host: what Prometheus sees, asked through its HTTP API.

Tests run in file order; the last one stops the serving container and converges again.
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

import pytest
import requests
from converge_again import PROJECT_DIR, converge

SCENARIO_DIR = Path(__file__).resolve().parents[1]
TFS_CLIENT = str(Path(sys.executable).parent / "tfs-client")
SAMPLE = PROJECT_DIR / "files" / "samples" / "digit_7.jpg"
REPORT = PROJECT_DIR / ".cache" / "monitoring-report.txt"
NODE = "tfserving-mon12"
SERVING_ALERTS = {"TFServingNodeDown", "TFServingModelUnavailable"}
ALERT_FOR = 20  # host_vars: tfserving_monitoring_node_down_for / _model_unavailable_for
INTERVAL = 5  # host_vars: scrape and evaluation interval


def report(title: str, text: str) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as out:
        out.write(f"== {title}\n{text.rstrip()}\n\n")


@pytest.fixture(scope="module")
def address(host) -> str:
    return host.ansible.get_variables()["test_host_address"]


@pytest.fixture(scope="module")
def prometheus(address: str) -> str:
    REPORT.unlink(missing_ok=True)
    return f"http://{address}:9090"


def api(prometheus: str, path: str, **params: str) -> Any:
    reply = requests.get(f"{prometheus}/api/v1/{path}", params=params, timeout=10)
    reply.raise_for_status()
    body = reply.json()
    assert body["status"] == "success", body
    return body["data"]


def scalar(prometheus: str, expr: str) -> float | None:
    result = api(prometheus, "query", query=expr)["result"]
    return float(result[0]["value"][1]) if result else None


def firing(prometheus: str) -> dict[str, dict[str, Any]]:
    alerts = api(prometheus, "alerts")["alerts"]
    return {a["labels"]["alertname"]: a for a in alerts if a["state"] == "firing"}


def main_pid(host, unit: str) -> str:
    return host.check_output(f"systemctl show -p MainPID --value {unit}")


@pytest.mark.parametrize(
    "unit", ["prometheus", "prometheus-blackbox-exporter", "prometheus-node-exporter"]
)
def test_services_run(host, unit: str) -> None:
    assert host.service(unit).is_running
    assert host.service(unit).is_enabled


def test_every_target_is_up(host, prometheus: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        targets = api(prometheus, "targets", state="active")["activeTargets"]
        down = [t for t in targets if t["health"] != "up"]
        if targets and not down:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"targets not up after 60 s: {json.dumps(down, indent=1)}")
        time.sleep(2)
    by_job = {t["labels"]["job"]: t for t in targets}
    assert set(by_job) == {"prometheus", "tfserving", "tfserving_models", "node"}
    assert {t["labels"]["node"] for t in targets} == {NODE}
    serving = by_job["tfserving"]
    assert serving["scrapeUrl"].endswith(":8501/monitoring/prometheus/metrics")
    image = json.loads(host.check_output("docker inspect tfserving"))[0]["Config"]["Image"]
    assert serving["labels"]["image"] == image
    assert by_job["tfserving_models"]["labels"]["model"] == "digits"
    report(
        "targets",
        "\n".join(f"{t['labels']['job']:18} {t['health']:4} {t['scrapeUrl']}" for t in targets),
    )


def test_model_probe_reads_the_rest_status(prometheus: str) -> None:
    expr = f'probe_success{{job="tfserving_models",node="{NODE}",model="digits"}}'
    assert scalar(prometheus, expr) == 1


def test_request_counts_grow_after_traffic(prometheus: str, address: str) -> None:
    expr = 'sum(:tensorflow:serving:request_count{job="tfserving",model_name="digits"})'
    before = scalar(prometheus, expr) or 0.0
    bench = subprocess.run(
        [TFS_CLIENT, "bench", f"--server={address}:8500", "--model=digits",
         "--requests=30", "--image", str(SAMPLE)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout + bench.stderr
    deadline = time.monotonic() + 30
    while (after := scalar(prometheus, expr) or 0.0) < before + 30:
        assert time.monotonic() < deadline, f"request_count went from {before} to {after} only"
        time.sleep(2)
    report("request_count after 30 requests (+1 warm-up)", f"before {before:g}, after {after:g}")


def test_fleet_status_shows_the_node(prometheus: str) -> None:
    def fleet_status(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TFS_CLIENT, "fleet-status", f"--prometheus={prometheus}", "--minutes=2", *extra],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    text = fleet_status()
    assert text.returncode == 0, text.stdout + text.stderr
    data = json.loads(fleet_status("--json").stdout)
    (node,) = data["nodes"]
    assert (node["node"], node["scraped"], node["healthy"]) == (NODE, True, True)
    (digits,) = node["models"]
    assert digits["name"] == "digits"
    assert {"version": 1, "state": "AVAILABLE"} in digits["versions"]
    assert digits["request_rate"] > 0 and digits["failed"] == 0
    report("tfs-client fleet-status", text.stdout)
    report("tfs-client fleet-status --json", json.dumps(data, indent=2))


def test_bad_duration_fails_before_any_change(host) -> None:
    rules = "/etc/prometheus/tfserving.rules.yml"
    before = host.file(rules).sha256sum
    result = converge(
        SCENARIO_DIR, {"tfserving_monitoring_node_down_for": "1 minute"}, playbook="monitoring.yml"
    )
    assert result.returncode != 0
    output = " ".join(result.stdout.split())
    assert "tfserving_monitoring_node_down_for must be a Prometheus duration" in output
    assert host.file(rules).sha256sum == before


def test_changed_rules_are_reloaded_not_restarted(host, prometheus: str) -> None:
    pid = main_pid(host, "prometheus")
    result = converge(
        SCENARIO_DIR, {"tfserving_monitoring_error_ratio": 0.2}, playbook="monitoring.yml"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    handlers = [line for line in result.stdout.splitlines() if line.startswith("RUNNING HANDLER")]
    assert any("Reload prometheus" in line for line in handlers), handlers
    assert not any("Restart prometheus" in line for line in handlers), handlers
    assert main_pid(host, "prometheus") == pid
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


def test_stopped_container_fires_the_alerts_and_a_converge_resolves_them(
    host, prometheus: str
) -> None:
    assert not SERVING_ALERTS & set(firing(prometheus))
    host.check_output("docker stop tfserving")
    stopped = time.monotonic()
    fired: dict[str, float] = {}
    # The condition shows at the next scrape, holds for ALERT_FOR, is seen at the next
    # evaluation: a few intervals of slack on top.
    limit = ALERT_FOR + 4 * INTERVAL + 10
    while not set(fired) >= SERVING_ALERTS:
        assert time.monotonic() - stopped < limit, f"only {sorted(fired)} fired within {limit} s"
        for name in set(firing(prometheus)) & SERVING_ALERTS:
            fired.setdefault(name, time.monotonic() - stopped)
        time.sleep(1)

    result = converge(SCENARIO_DIR)
    assert result.returncode == 0, result.stdout[-3000:]
    converged = time.monotonic()
    resolved: dict[str, float] = {}
    while set(resolved) != SERVING_ALERTS:
        assert time.monotonic() - converged < 4 * INTERVAL + 10, (
            f"still firing: {set(firing(prometheus))}"
        )
        still = set(firing(prometheus))
        for name in SERVING_ALERTS - still:
            resolved.setdefault(name, time.monotonic() - stopped)
        time.sleep(1)
    lines = [f"container stopped at t=0 s; converge done at t={converged - stopped:.0f} s"]
    lines += [f"{name}: fired at t={fired[name]:.0f} s, resolved at t={resolved[name]:.0f} s"
              for name in sorted(SERVING_ALERTS)]  # fmt: skip
    lines.append(f"(alert durations {ALERT_FOR} s, scrape and evaluation every {INTERVAL} s)")
    report("alert timeline", "\n".join(lines))
