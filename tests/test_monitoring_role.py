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

import input_firewall_rules
import pytest
import required_tools
import yaml
from ansible_run import run_playbook
from role_tasks import role_variables
from role_templates import render

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "filter"))
import monitoring  # noqa: E402

PROMTOOL = shutil.which("promtool") or str(ROOT / ".cache" / "bin" / "promtool")
needs_promtool = required_tools.needs(
    os.access(PROMTOOL, os.X_OK), "promtool missing: run scripts/promtool.sh"
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
# What the registry role's tasks/settings.yml notes on the monitoring host.
REGISTRY = {"host": "reg-1", "url": "10.0.0.3:5000", "ca": "/ctl/ca.crt", "renew_days": 30}


def role_vars(**overrides: Any) -> dict[str, Any]:
    """The role's variables on the monitoring host of a fleet of NODES and LBS."""
    hostvars = {**NODES, **LBS, "mon-1": {"inventory_hostname": "mon-1"}}
    variables = {
        **role_variables("tfserving_monitoring"),
        "inventory_hostname": "mon-1",
        "groups": {"tfserving_nodes": list(NODES), "tfserving_lb": list(LBS)},
        "hostvars": hostvars,
        "__tfserving_monitoring_images": {"node-1": "tensorflow/serving:2.19.1-gpu"},
        **overrides,
    }
    variables["__tfserving_monitoring_targets"] = [
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
        "servers": [{"server": "node-1", "rest_port": 8501, "grpc_port": 8500}],
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
        __tfserving_monitoring_rules_file=str(rules),
        tfserving_monitoring_alertmanagers=["am-1:9093"],
        tfserving_monitoring_node_exporter=True,
        tfserving_registry_settings=REGISTRY,
    )
    config.write_text(render("tfserving_monitoring", "prometheus.yml.j2", **variables))
    checked = promtool("check", "config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout + checked.stderr


def test_the_registry_is_probed_over_tls_trusting_the_fleets_ca() -> None:
    jobs = scrape_configs(tfserving_registry_settings=REGISTRY)
    registry = jobs["tfserving_registry"]
    assert registry["static_configs"] == [
        {"targets": ["https://10.0.0.3:5000/v2/"], "labels": {"node": "reg-1"}}
    ]
    assert registry["params"] == {"module": ["tfserving_registry_tls"]}
    assert registry["relabel_configs"] == jobs["tfserving_models"]["relabel_configs"]
    blackbox = yaml.safe_load(
        render(
            "tfserving_monitoring",
            "blackbox.yml.j2",
            **role_vars(tfserving_registry_settings=REGISTRY),
        )
    )
    http = blackbox["modules"]["tfserving_registry_tls"]["http"]
    # An anonymous GET /v2/ is answered 401 by the registry; over TLS only, with the CA
    # the role copies to the monitoring host.
    assert http["valid_status_codes"] == [401]
    assert http["fail_if_not_ssl"] is True
    assert http["tls_config"] == {"ca_file": "/etc/prometheus/tfserving-registry-ca.crt"}
    assert "insecure_skip_verify" not in http["tls_config"]
    # No registry in the inventory: no job, no module.
    assert "tfserving_registry" not in scrape_configs()
    plain = yaml.safe_load(render("tfserving_monitoring", "blackbox.yml.j2", **role_vars()))
    assert list(plain["modules"]) == ["tfserving_model_available"]


BLACKBOX = shutil.which("prometheus-blackbox-exporter")


@pytest.mark.skipif(BLACKBOX is None, reason="prometheus-blackbox-exporter missing")
def test_the_probe_modules_pass_the_exporters_check(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("")
    config = tmp_path / "blackbox.yml"
    variables = role_vars(
        tfserving_registry_settings=REGISTRY, __tfserving_monitoring_registry_ca=str(ca)
    )
    config.write_text(render("tfserving_monitoring", "blackbox.yml.j2", **variables))
    checked = subprocess.run(
        [str(BLACKBOX), "--config.check", f"--config.file={config}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


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


DAY = 86400
REGISTRY_PROBE = 'job="tfserving_registry", node="reg-1", instance="https://10.0.0.3:5000/v2/"'


def cert_expiring(eval_day: int, days_left: int, threshold: int = 21) -> dict[str, Any]:
    return {
        "eval_time": f"{eval_day}d",
        "alertname": "TFServingRegistryCertExpiring",
        "exp_alerts": [
            {
                "exp_labels": {
                    "job": "tfserving_registry",
                    "node": "reg-1",
                    "instance": "https://10.0.0.3:5000/v2/",
                    "severity": "warning",
                },
                "exp_annotations": {
                    "summary": (
                        f"The registry's TLS certificate (reg-1) expires in {days_left}.0 days"
                    ),
                    "description": (
                        "A certificate of https://10.0.0.3:5000/v2/ (the server's or its CA's)"
                        f" expires within {threshold} days. Run the registry play"
                        " (playbooks/image.yml): it makes the certificates it created again"
                        " when fewer than tfserving_registry_cert_renew_days remain; a CA of"
                        " your own you renew yourself."
                    ),
                },
            }
        ],
    }


# One probe a day. The chain expires 30 days after the start until the registry play
# renews it on day 11 (825 days from then); another registry's stays far off.
REGISTRY_CERT = {
    "interval": "1d",
    "input_series": [
        {
            "series": f"probe_ssl_last_chain_expiry_timestamp_seconds{{{REGISTRY_PROBE}}}",
            "values": f"{30 * DAY}x10 {836 * DAY}x3",
        },
        {
            "series": 'probe_ssl_last_chain_expiry_timestamp_seconds{job="tfserving_registry",'
            ' node="reg-2", instance="https://10.0.0.4:5000/v2/"}',
            "values": f"{400 * DAY}x13",
        },
    ],
}


def quiet(eval_day: int) -> dict[str, Any]:
    return {
        "eval_time": f"{eval_day}d",
        "alertname": "TFServingRegistryCertExpiring",
        "exp_alerts": [],
    }


@needs_promtool
def test_registry_cert_expiring_fires_within_the_threshold_and_resolves_on_renewal(
    tmp_path: Path,
) -> None:
    # 22 days left: quiet; 21: not fewer than 21, quiet; 20: fires; renewed: quiet.
    case = {
        **REGISTRY_CERT,
        "alert_rule_test": [quiet(8), quiet(9), cert_expiring(10, 20), quiet(11)],
    }
    result = rule_test(tmp_path, [case])
    assert result.returncode == 0, result.stdout + result.stderr
    # The threshold is the variable: with 25 days it fires on day 8 already (22 left).
    case = {**REGISTRY_CERT, "alert_rule_test": [quiet(4), cert_expiring(8, 22, 25)]}
    result = rule_test(tmp_path, [case], tfserving_monitoring_registry_cert_days=25)
    assert result.returncode == 0, result.stdout + result.stderr
    # The same expectation against the default threshold fails: the test can tell.
    result = rule_test(tmp_path, [{**REGISTRY_CERT, "alert_rule_test": [cert_expiring(8, 22)]}])
    assert result.returncode != 0


@needs_promtool
def test_a_failing_registry_probe_fires_after_the_node_down_duration(tmp_path: Path) -> None:
    # An expired certificate fails the probe (and its expiry series goes away): this alert
    # takes over from TFServingRegistryCertExpiring.
    firing = {
        "exp_labels": {
            "job": "tfserving_registry",
            "node": "reg-1",
            "instance": "https://10.0.0.3:5000/v2/",
            "severity": "critical",
        },
        "exp_annotations": {
            "summary": "The registry https://10.0.0.3:5000/v2/ (reg-1) fails its TLS probe",
            "description": (
                "No answer 401 over TLS with a certificate the fleet's CA signed (registry"
                " down, or its certificate expired or not the CA's) for 1m; nodes cannot pull"
                " images. probe_ssl_* and the blackbox exporter's log say which."
            ),
        },
    }
    case = {
        "interval": "15s",
        "input_series": [
            {"series": f"probe_success{{{REGISTRY_PROBE}}}", "values": "1 0x12"},
            {
                "series": 'probe_success{job="tfserving_models", node="node-1", model="digits",'
                ' instance="m"}',
                "values": "1x12",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "60s", "alertname": "TFServingRegistryProbeFailed", "exp_alerts": []},
            {
                "eval_time": "75s",
                "alertname": "TFServingRegistryProbeFailed",
                "exp_alerts": [firing],
            },
            {"eval_time": "75s", "alertname": "TFServingModelUnavailable", "exp_alerts": []},
        ],
    }
    result = rule_test(tmp_path, [case])
    assert result.returncode == 0, result.stdout + result.stderr


REGISTRY_PLAY = """
- name: The monitoring host reads the registry's settings
  hosts: mon
  gather_facts: false
  tasks:
    - name: Read them as the role does
      ansible.builtin.include_role:
        name: tfserving.fleet.tfserving_monitoring
        tasks_from: registry.yml
    - name: Show them
      ansible.builtin.debug:
        msg: >-
          SETTINGS {{ tfserving_registry_settings.items() | map('join', '=') | join(' ') }}
          renew_days:{{ tfserving_registry_settings.renew_days | type_debug }}
"""


def read_registry_settings(tmp_path: Path, *extra: str) -> tuple[int, str]:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {"mon": {"ansible_connection": "local"}},
                    "children": {
                        "tfserving_registry": {"hosts": {"reg-1": {"ansible_host": "10.9.8.7"}}}
                    },
                }
            }
        )
    )
    playbook = tmp_path / "registry.yml"
    playbook.write_text(REGISTRY_PLAY)
    result = run_playbook(playbook, "-i", str(inventory), *extra)
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def test_the_monitoring_host_reads_the_registry_with_the_registry_roles_defaults(
    tmp_path: Path,
) -> None:
    secrets = tmp_path / ".tfserving-registry"  # the default: next to the inventory
    rc, output = read_registry_settings(tmp_path)
    assert rc != 0
    assert f"its CA at {secrets}/ca.crt on the controller" in output, output[-3000:]
    secrets.mkdir()
    (secrets / "ca.crt").write_text("CA\n")
    rc, output = read_registry_settings(tmp_path)
    assert rc == 0, output[-3000:]
    expected = (
        f"SETTINGS host=reg-1 url=10.9.8.7:5000 ca={secrets}/ca.crt renew_days=30 renew_days:int"
    )
    assert expected in output, output[-3000:]
    # An alert earlier than the renewal window could not be cleared by a run: refused.
    rc, output = read_registry_settings(
        tmp_path, "-e", "tfserving_monitoring_registry_cert_days=31"
    )
    assert rc != 0
    assert "tfserving_registry_cert_renew_days (30)" in output, output[-3000:]


# Who reaches the monitoring ports (issue 23, item 3): the controller Prometheus (for
# tfs-client fleet-status), nobody the blackbox exporter, the monitoring hosts node_exporter.
CONTROLLER = "10.9.0.1"  # the fleet's tfserving_firewall_allow
MONITORS = {"mon-1": {"inventory_hostname": "mon-1", "ansible_host": "10.0.0.9",
                      "test_host_address": "172.30.0.9"}}  # fmt: skip


def fleet_vars(**overrides: Any) -> dict[str, Any]:
    """role_vars() with a monitoring host in the inventory and the fleet's controller list."""
    variables = role_vars(**overrides)
    variables["hostvars"] = {**variables["hostvars"], **MONITORS}
    variables["groups"] = {**variables["groups"], "tfserving_monitoring": list(MONITORS)}
    variables.setdefault("tfserving_firewall_allow", [CONTROLLER])
    return variables


def monitoring_rules(**overrides: Any) -> str:
    variables = fleet_vars(**overrides)
    rules = input_firewall_rules.evaluate("{{ __tfserving_monitoring_firewall_rules }}", variables)
    return input_firewall_rules.rules_file(
        input_firewall_rules.firewall_variables("prometheus", rules)
    )


def node_exporter_rules(**overrides: Any) -> str:
    variables = fleet_vars(**overrides)
    rules = input_firewall_rules.evaluate(
        "{{ __tfserving_monitoring_node_exporter_rules }}", variables
    )
    return input_firewall_rules.rules_file(
        input_firewall_rules.firewall_variables("node-exporter", rules)
    )


def test_the_blackbox_exporter_listens_on_loopback_and_node_exporter_on_ipv4() -> None:
    blackbox = render(
        "tfserving_monitoring", "prometheus-blackbox-exporter.default.j2", **role_vars()
    )
    assert re.search(r"^ARGS=\"(.*)\"$", blackbox, re.M)[1].split() == [
        "--config.file=/etc/prometheus/blackbox.yml",
        "--web.listen-address=127.0.0.1:9115",
    ]
    # Its own default (":9100") also listens on IPv6, where the IPv4 host rules do not reach.
    node = render("tfserving_monitoring", "prometheus-node-exporter.default.j2", **role_vars())
    assert re.search(r"^ARGS=\"(.*)\"$", node, re.M)[1] == "--web.listen-address=0.0.0.0:9100"
    moved = render(
        "tfserving_monitoring", "prometheus-node-exporter.default.j2",
        **role_vars(tfserving_monitoring_node_exporter_listen_address="10.0.0.11",
                    tfserving_monitoring_node_exporter_port=9200),
    )  # fmt: skip
    assert "--web.listen-address=10.0.0.11:9200" in moved
    assert "--web.listen-address=0.0.0.0:9090 " in render(
        "tfserving_monitoring", "prometheus.default.j2", **role_vars()
    )


def test_prometheus_scrapes_itself_and_the_exporter_where_they_listen() -> None:
    jobs = scrape_configs()
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["localhost:9090"]
    assert jobs["tfserving_models"]["relabel_configs"][-1]["replacement"] == "127.0.0.1:9115"
    jobs = scrape_configs(
        tfserving_monitoring_listen_address="10.0.0.5",
        tfserving_monitoring_blackbox_listen_address="127.0.0.2",
        tfserving_registry_settings=REGISTRY,
    )
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["10.0.0.5:9090"]
    for job in ("tfserving_models", "tfserving_registry"):
        assert jobs[job]["relabel_configs"][-1]["replacement"] == "127.0.0.2:9115"


def test_only_the_controller_reaches_prometheus_and_nobody_the_blackbox_exporter(
    tmp_path: Path,
) -> None:
    text = monitoring_rules()
    assert input_firewall_rules.who_reaches(text) == {9090: [CONTROLLER], 9115: []}
    checked = input_firewall_rules.iptables_accepts(text, tmp_path)
    assert checked is None or checked.returncode == 0, checked.stderr
    # tfserving_monitoring_allow wins over the fleet's controller list; ports follow their
    # variables; a network and a host name (resolved on the controller) are written as such.
    text = monitoring_rules(
        tfserving_monitoring_allow=["192.168.7.0/24", "localhost"],
        tfserving_monitoring_port=9091,
        tfserving_monitoring_blackbox_port=9116,
    )
    assert input_firewall_rules.who_reaches(text) == {
        9091: ["127.0.0.1", "192.168.7.0/24"],
        9116: [],
    }


def test_only_the_monitoring_hosts_reach_node_exporter() -> None:
    # At the address the nodes' serving firewall reads for them (tfserving_firewall_address_var).
    text = node_exporter_rules()
    assert input_firewall_rules.who_reaches(text) == {9100: ["10.0.0.9"]}
    text = node_exporter_rules(
        tfserving_firewall_address_var="test_host_address",
        tfserving_monitoring_node_exporter_port=9200,
        tfserving_monitoring_node_exporter_allow=["10.0.1.0/24"],
    )
    assert input_firewall_rules.who_reaches(text) == {9200: ["10.0.1.0/24", "172.30.0.9"]}
    # Not the controller: it has no use for node_exporter.
    assert CONTROLLER not in text


def test_the_services_do_not_start_without_their_rules() -> None:
    variables = input_firewall_rules.firewall_variables(
        "prometheus",
        [{"port": 9090, "what": "Prometheus", "sources": [CONTROLLER]}],
        tfserving_input_firewall_required_by=["prometheus.service"],
    )
    unit = input_firewall_rules.unit_file(variables)
    assert "Before=prometheus.service" in unit
    rules = "/etc/tfserving-prometheus-firewall.rules"
    assert f"ExecStart=/usr/sbin/iptables-restore --wait=10 --noflush {rules}" in unit
    assert f"ExecReload=/usr/sbin/iptables-restore --wait=10 --noflush {rules}" in unit
    jump = "iptables -w -I INPUT -p tcp -m conntrack --ctstate NEW -j TFSERVING-PROMETHEUS"
    assert jump in unit
    dropin = input_firewall_rules.dropin_file(variables)
    assert "Requires=tfserving-prometheus-firewall.service" in dropin
    assert "After=tfserving-prometheus-firewall.service" in dropin


def _task_names(path: Path) -> list[str]:
    from role_tasks import flat_tasks, load_yaml

    return [task.get("name", "") for task in flat_tasks(load_yaml(path))]


def test_the_rules_and_listen_addresses_are_in_place_before_the_packages_start_the_services() -> (
    None
):
    tasks = ROOT / "roles" / "tfserving_monitoring" / "tasks"
    main = _task_names(tasks / "main.yml")
    firewall = next(i for i, name in enumerate(main) if "reach Prometheus" in name)
    assert firewall < main.index("Write where Prometheus and the blackbox exporter listen")
    assert main.index("Write where Prometheus and the blackbox exporter listen") < main.index(
        "Install Prometheus and the blackbox exporter"
    )
    node = _task_names(tasks / "node-exporter.yml")
    install = node.index("Install node_exporter from the OS packages")
    assert node.index("Let only the monitoring hosts reach node_exporter") < install
    assert node.index("Write the command line arguments of node_exporter") < install


@pytest.mark.parametrize(
    "variable",
    ["tfserving_monitoring_listen_address", "tfserving_monitoring_blackbox_listen_address"],
)
def test_an_ipv6_listen_address_is_refused(variable: str) -> None:
    """The host rules are IPv4-only: an IPv6 listen address would bypass them."""
    checks = {
        task["name"]: task
        for task in yaml.safe_load(
            (ROOT / "roles/tfserving_monitoring/tasks/assert.yml").read_text()
        )
    }
    task = checks[
        "Fail when Prometheus or the blackbox exporter would listen outside the host rules"
    ]
    assert variable in task["loop"]
    ipv4 = role_variables("tfserving_monitoring")["__tfserving_monitoring_ipv4"]
    for address in ("0.0.0.0", "127.0.0.1", "10.0.0.5"):
        assert re.match(ipv4, address), address
    for address in ("::", "[::]", "::1", "localhost", "10.0.0", ""):
        assert not re.match(ipv4, address), address


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("fd00::1", "is IPv6: the host rules are IPv4 only"),
        ("", "An empty source in the rules of Prometheus"),
        ("no-such-host.invalid", "does not resolve to an IPv4 address on the controller"),
        ("10.0.0.1 -j ACCEPT", "is neither an IPv4 address"),
    ],
)
def test_a_source_the_rules_cannot_hold_stops_the_run_naming_it(source: str, message: str) -> None:
    from ansible.errors import AnsibleFilterError

    with pytest.raises(AnsibleFilterError, match=re.escape(message)) as error:
        input_firewall_rules.input_firewall.tfserving_input_rules(
            [{"port": 9090, "what": "Prometheus", "sources": [CONTROLLER, source]}]
        )
    assert "Prometheus" in str(error.value)
