"""The tfserving_monitoring role's files, rendered with Ansible and checked by promtool:
the generated scrape configuration, and each alert rule against recorded series."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from role_tasks import role_variables
from role_templates import render

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "filter"))
import monitoring  # noqa: E402

PROMTOOL = shutil.which("promtool") or str(ROOT / ".cache" / "bin" / "promtool")
needs_promtool = pytest.mark.skipif(
    not os.access(PROMTOOL, os.X_OK), reason="promtool missing: run scripts/promtool.sh"
)

NODES = {
    "node-1": {"inventory_hostname": "node-1", "ansible_host": "10.0.0.11",
               "tfserving_models": [{"name": "digits", "path": "/x"}]},
    "node-2": {"inventory_hostname": "node-2", "ansible_host": "10.0.0.12",
               "tfserving_monitoring_address": "192.168.5.12", "tfserving_rest_port": 9501,
               "tfserving_grpc_port": 9500,
               "tfserving_models": [{"name": "digits"}, {"name": "half_plus_two"}]},
}  # fmt: skip
LBS = {"lb-1": {"inventory_hostname": "lb-1", "ansible_host": "10.0.0.2"}}


def role_vars(**overrides: Any) -> dict[str, Any]:
    """The role's variables on the monitoring host of a fleet of NODES and LBS."""
    hostvars = {**NODES, **LBS, "mon-1": {"inventory_hostname": "mon-1"}}
    variables = {
        **role_variables("tfserving_monitoring"),
        "inventory_hostname": "mon-1",
        "groups": {"tfserving_nodes": list(NODES), "tfserving_lb": list(LBS)},
        "hostvars": hostvars,
        "tfserving_monitoring_images": {"node-1": "tensorflow/serving:2.19.1-gpu"},
        **overrides,
    }
    variables["tfserving_monitoring_targets"] = [
        monitoring.tfserving_monitoring_target(hostvars[node]) for node in NODES
    ]
    return variables


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False)


def test_target_reads_the_nodes_own_settings_with_the_tfserving_defaults() -> None:
    assert monitoring.tfserving_monitoring_target(NODES["node-1"]) == {
        "node": "node-1", "address": "10.0.0.11", "rest_port": 8501, "grpc_port": 8500,
        "metrics_path": "/monitoring/prometheus/metrics", "models": ["digits"],
        "container": "tfserving",
    }  # fmt: skip
    node2 = monitoring.tfserving_monitoring_target(NODES["node-2"])
    assert (node2["address"], node2["rest_port"], node2["grpc_port"]) == (
        "192.168.5.12",
        9501,
        9500,
    )


def scrape_configs(**overrides: Any) -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(
        render("tfserving_monitoring", "prometheus.yml.j2", **role_vars(**overrides))
    )
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_scrape_targets_come_from_the_inventory() -> None:
    jobs = scrape_configs()
    assert set(jobs) == {"prometheus", "tfserving", "tfserving_models", "haproxy"}
    serving = jobs["tfserving"]["static_configs"]
    assert [s["targets"] for s in serving] == [["10.0.0.11:8501"], ["192.168.5.12:9501"]]
    assert serving[0]["labels"] == {
        "node": "node-1", "grpc": "10.0.0.11:8500", "image": "tensorflow/serving:2.19.1-gpu",
        "__metrics_path__": "/monitoring/prometheus/metrics",
    }  # fmt: skip
    assert serving[1]["labels"]["grpc"] == "192.168.5.12:9500"
    probes = jobs["tfserving_models"]
    assert [s["targets"][0] for s in probes["static_configs"]] == [
        "http://10.0.0.11:8501/v1/models/digits",
        "http://192.168.5.12:9501/v1/models/digits",
        "http://192.168.5.12:9501/v1/models/half_plus_two",
    ]
    assert probes["params"] == {"module": ["tfserving_model_available"]}
    assert probes["relabel_configs"][-1]["replacement"] == "127.0.0.1:9115"
    # An inventory that sets no port scrapes the exporter where the load balancer role puts it.
    lb_port = role_variables("tfserving_lb")["tfserving_lb_stats_port"]
    assert jobs["haproxy"]["static_configs"] == [
        {"targets": [f"10.0.0.2:{lb_port}"], "labels": {"node": "lb-1"}}
    ]


def test_node_exporter_and_lb_port_are_options() -> None:
    LBS["lb-1"]["tfserving_lb_stats_port"] = 9404
    try:
        jobs = scrape_configs(tfserving_monitoring_node_exporter=True)
    finally:
        del LBS["lb-1"]["tfserving_lb_stats_port"]
    assert [s["targets"] for s in jobs["node"]["static_configs"]] == [
        ["10.0.0.11:9100"],
        ["192.168.5.12:9100"],
    ]
    assert jobs["haproxy"]["static_configs"][0]["targets"] == ["10.0.0.2:9404"]


def test_probe_module_needs_a_version_available() -> None:
    blackbox = yaml.safe_load(render("tfserving_monitoring", "blackbox.yml.j2", **role_vars()))
    http = blackbox["modules"]["tfserving_model_available"]["http"]
    (pattern,) = http["fail_if_body_not_matches_regexp"]
    # TF Serving's REST status answer for a model with version 1 available, and loading.
    available = '{\n "model_version_status": [\n  {\n   "version": "1",\n   "state": "AVAILABLE"'
    assert re.search(pattern, available)
    assert not re.search(
        pattern, '{"model_version_status": [{"version": "2", "state": "LOADING"}]}'
    )


@needs_promtool
def test_configuration_and_rules_pass_promtool(tmp_path: Path) -> None:
    rules = tmp_path / "tfserving.rules.yml"
    rules.write_text(render("tfserving_monitoring", "tfserving.rules.yml.j2", **role_vars()))
    config = tmp_path / "prometheus.yml"
    variables = role_vars(
        tfserving_monitoring_rules_file=str(rules),
        tfserving_monitoring_alertmanagers=["am-1:9093"],
        tfserving_monitoring_node_exporter=True,
    )
    config.write_text(render("tfserving_monitoring", "prometheus.yml.j2", **variables))
    checked = promtool("check", "config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 5 rules found" in checked.stdout + checked.stderr


def rule_test(
    tmp_path: Path, cases: list[dict[str, Any]], **overrides: Any
) -> subprocess.CompletedProcess[str]:
    rules = tmp_path / "rules.yml"
    rules.write_text(
        render("tfserving_monitoring", "tfserving.rules.yml.j2", **role_vars(**overrides))
    )
    tests = tmp_path / "tests.yml"
    tests.write_text(
        yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "15s", "tests": cases})
    )
    return promtool("test", "rules", str(tests))


CASES: dict[str, dict[str, Any]] = yaml.safe_load(
    (ROOT / "tests" / "fixtures" / "monitoring" / "rule_cases.yml").read_text()
)


@needs_promtool
@pytest.mark.parametrize("name", sorted(CASES))
def test_alert_rule(tmp_path: Path, name: str) -> None:
    result = rule_test(tmp_path, [CASES[name]])
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_thresholds_and_durations_are_the_variables(tmp_path: Path) -> None:
    # 20 s instead of 1 m: node-1 (down from 30 s) fires at 60 s already.
    firing = copy.deepcopy(CASES["node-down"]["alert_rule_test"][1])
    quick = {**CASES["node-down"], "alert_rule_test": [{**firing, "eval_time": "60s"}]}
    annotations = firing["exp_alerts"][0]["exp_annotations"]
    annotations["description"] = annotations["description"].replace("for 1m.", "for 20s.")
    result = rule_test(tmp_path, [quick], tfserving_monitoring_node_down_for="20s")
    assert result.returncode == 0, result.stdout + result.stderr
    # A 10 % threshold: 9.1 % failed requests no longer fire.
    quiet = [{"eval_time": "8m", "alertname": "TFServingErrorRatio", "exp_alerts": []}]
    tolerant = {**CASES["error-ratio"], "alert_rule_test": quiet}
    result = rule_test(tmp_path, [tolerant], tfserving_monitoring_error_ratio=0.1)
    assert result.returncode == 0, result.stdout + result.stderr
    # The unchanged case fails against the tolerant rules: the test can tell.
    result = rule_test(tmp_path, [CASES["error-ratio"]], tfserving_monitoring_error_ratio=0.1)
    assert result.returncode != 0
