"""What the tfserving_lb role writes to haproxy.cfg."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import input_firewall_rules
import role_templates
from role_tasks import role_variables

BASE = {
    "tfserving_lb_socket": "/run/haproxy/admin.sock",
    "__tfserving_lb_state_file": "/var/lib/haproxy/server-state",
    "tfserving_lb_hard_stop_after": "30s",
    "tfserving_lb_timeout_connect": "2s",
    "tfserving_lb_timeout_client": "60s",
    "tfserving_lb_timeout_server": "30s",
    "tfserving_lb_retries": role_variables("tfserving_lb")["tfserving_lb_retries"],
    "tfserving_lb_bind_address": "0.0.0.0",
    "tfserving_lb_grpc_port": 8500,
    "tfserving_lb_rest_enabled": False,
    "tfserving_lb_rest_port": 8501,
    "tfserving_lb_rest_max_body_bytes": 65536,
    "tfserving_lb_stats_bind_address": "0.0.0.0",
    "tfserving_lb_stats_port": 8405,
    "__tfserving_lb_check_models": ["digits", "half_plus_two"],
    "tfserving_lb_node_rest_port": 8501,
    "tfserving_lb_node_grpc_port": 8500,
    "tfserving_lb_check_interval": "1s",
    "tfserving_lb_weight": 100,
    "tfserving_lb_check_fall": 2,
    "tfserving_lb_check_rise": 2,
    "tfserving_lb_backend_tls": False,
    "__tfserving_lb_backend_ca_file": "/etc/haproxy/ca.pem",
    "tfserving_lb_backend_server_name": "",
    "__tfserving_lb_servers": [["node1", "10.0.0.1"], ["node2", "10.0.0.2"]],
}


def servers(variables: dict[str, object]) -> dict[str, object]:
    """The role's own servers and check form for VARIABLES' nodes (__tfserving_lb_servers):
    one line per server each node recorded (hostvars' tfserving_recorded_servers; none:
    one line named as the node, as before instances)."""
    from role_tasks import evaluate

    role = role_variables("tfserving_lb")
    nodes = [pair[0] for pair in variables["__tfserving_lb_servers"]]  # type: ignore[union-attr]
    context = {
        **role,
        "groups": {"tfserving_nodes": nodes},
        "hostvars": {node: {} for node in nodes},
        **variables,
    }
    context["__tfserving_lb_backend_servers"] = evaluate(
        role["__tfserving_lb_backend_servers"], context
    )
    context["__tfserving_lb_check_each_port"] = evaluate(
        role["__tfserving_lb_check_each_port"], context
    )
    return {
        key: context[key]
        for key in ("__tfserving_lb_backend_servers", "__tfserving_lb_check_each_port")
    }


def render(**overrides: object) -> str:
    variables = {**BASE, **overrides}
    if "__tfserving_lb_backend_servers" not in overrides:
        variables.update(servers(variables))
    return role_templates.render("tfserving_lb", "haproxy.cfg.j2", **variables)


def section(config: str, name: str) -> str:
    match = re.search(rf"^{name}\n((?:[ \t]+.*\n|\n)*)", config, re.M)
    assert match, f"no section {name!r} in:\n{config}"
    return match.group(1)


def test_grpc_is_http2_end_to_end_and_balanced_per_request() -> None:
    config = render()
    frontend = section(config, "frontend tfserving_grpc")
    assert "bind 0.0.0.0:8500 proto h2" in frontend
    backend = section(config, "backend tfserving_grpc")
    assert "mode tcp" not in config
    assert re.search(r"default-server check .* proto h2", backend)
    assert "server node1 10.0.0.1:8500" in backend
    assert "server node2 10.0.0.2:8500" in backend


def test_health_check_asks_every_model_for_an_available_version() -> None:
    backend = section(render(), "backend tfserving_grpc")
    assert backend.count("http-check connect port 8501 proto h1") == 2
    assert "uri /v1/models/digits " in backend
    assert "uri /v1/models/half_plus_two " in backend
    assert backend.count('http-check expect rstring \'"state" *: *"AVAILABLE"\'') == 2


def test_without_models_the_check_is_a_connect_check() -> None:
    backend = section(render(__tfserving_lb_check_models=[]), "backend tfserving_grpc")
    assert "httpchk" not in backend
    assert "default-server check" in backend


def test_a_request_is_tried_on_at_most_one_more_node() -> None:
    """A refused connection or an empty answer (a server that died mid-request) goes once
    to another node. Not more: a request that kills the server it reaches (a query of
    death) would take down one node per retry. Not on a late answer: a slow request would
    run again on every retry, and HAProxy 2.6 has one retry counter for every cause."""
    defaults = section(render(), "defaults")
    assert re.search(r"^\s*retries 1$", defaults, re.M), defaults
    assert re.search(r"^\s*retry-on conn-failure empty-response$", defaults, re.M), defaults
    assert "response-timeout" not in defaults
    assert "option redispatch 1" in defaults
    assert "load-server-state-from-file global" in defaults
    # A node whose server died is marked DOWN on its first refused connection, so the one
    # retry of the requests it refuses goes to a live node.
    for backend in ("tfserving_grpc",):
        assert re.search(
            r"^\s*default-server check .* observe layer4 error-limit 1 on-error mark-down( |$)",
            section(render(), f"backend {backend}"),
            re.M,
        )


def test_reload_config_rpc_is_denied_and_the_exporter_has_its_own_port() -> None:
    config = render()
    assert (
        "http-request deny deny_status 403 if "
        "{ path /tensorflow.serving.ModelService/HandleReloadConfigRequest }"
    ) in section(config, "frontend tfserving_grpc")
    stats = section(config, "frontend tfserving_lb_stats")
    assert "bind 0.0.0.0:8405" in stats
    assert "use-service prometheus-exporter" in stats
    assert "stats socket /run/haproxy/admin.sock mode 660 level admin" in section(config, "global")


def test_rest_is_off_unless_asked_for_and_then_capped() -> None:
    assert "tfserving_rest" not in render()
    config = render(tfserving_lb_rest_enabled=True)
    frontend = section(config, "frontend tfserving_rest")
    assert "bind 0.0.0.0:8501" in frontend
    assert "req.hdr_val(content-length) gt 65536" in frontend
    backend = section(config, "backend tfserving_rest")
    assert "server node1 10.0.0.1:8501" in backend
    assert "proto h2" not in backend


def test_backend_tls_re_encrypts_with_the_given_ca() -> None:
    backend = section(
        render(tfserving_lb_backend_tls=True, tfserving_lb_backend_server_name="serving.example"),
        "backend tfserving_grpc",
    )
    assert "ssl verify required ca-file /etc/haproxy/ca.pem alpn h2" in backend
    assert "verifyhost serving.example" in backend


# Who reaches HAProxy's exporter and stats (issue 23, item 3): the monitoring hosts, which
# scrape /metrics, at the address the fleet gives them; nobody else by default.
MONITORS = {
    "mon-1": {"inventory_hostname": "mon-1", "ansible_host": "10.0.0.9"},
    "mon-2": {"inventory_hostname": "mon-2", "ansible_host": "10.0.0.10",
              "test_host_address": "172.30.0.10"},
}  # fmt: skip


def lb_variables(**overrides: object) -> dict[str, object]:
    """The role's defaults and vars on a load balancer of an inventory with MONITORS."""
    return {
        **role_variables("tfserving_lb"),
        "inventory_hostname": "lb-1",
        "groups": {"tfserving_nodes": ["node1"], "tfserving_monitoring": ["mon-1"]},
        "hostvars": {"node1": {"ansible_host": "10.0.0.1"}, **MONITORS},
        **overrides,
    }


def stats_rules(**overrides: object) -> str:
    rules = input_firewall_rules.evaluate(
        "{{ __tfserving_lb_stats_rules }}", lb_variables(**overrides)
    )
    return input_firewall_rules.rules_file(
        input_firewall_rules.firewall_variables("lb-stats", rules)
    )


def test_the_exporter_listens_where_the_variable_says() -> None:
    defaults = role_variables("tfserving_lb")
    address = input_firewall_rules.evaluate("{{ tfserving_lb_stats_bind_address }}", lb_variables())
    stats = section(render(tfserving_lb_stats_bind_address=address), "frontend tfserving_lb_stats")
    assert f"bind 0.0.0.0:{defaults['tfserving_lb_stats_port']}" in stats
    stats = section(
        render(tfserving_lb_stats_bind_address="10.0.0.2", tfserving_lb_stats_port=9404),
        "frontend tfserving_lb_stats",
    )
    assert "bind 10.0.0.2:9404" in stats
    # The host rules are IPv4-only: an IPv6 address for the exporter is refused.
    ipv4 = defaults["__tfserving_lb_ipv4"]
    assert re.match(ipv4, "0.0.0.0")
    assert re.match(ipv4, "10.0.0.2")
    assert not re.match(ipv4, "::")
    assert not re.match(ipv4, "[::]")


def test_only_the_monitoring_hosts_reach_the_exporter_and_stats(tmp_path: Path) -> None:
    text = stats_rules()
    assert input_firewall_rules.who_reaches(text) == {8405: ["10.0.0.9"]}
    checked = input_firewall_rules.iptables_accepts(text, tmp_path)
    assert checked is None or checked.returncode == 0, checked.stderr
    # The address variable of the fleet (the nodes' serving firewall reads the same), every
    # monitoring host, the port, and tfserving_lb_stats_allow (e.g. the controller for /stats).
    text = stats_rules(
        groups={"tfserving_nodes": ["node1"], "tfserving_monitoring": ["mon-1", "mon-2"]},
        tfserving_firewall_address_var="ansible_host",
        tfserving_lb_stats_port=9404,
        tfserving_lb_stats_allow=["10.9.0.1"],
    )
    assert input_firewall_rules.who_reaches(text) == {9404: ["10.0.0.9", "10.0.0.10", "10.9.0.1"]}
    text = stats_rules(
        groups={"tfserving_nodes": ["node1"], "tfserving_monitoring": ["mon-2"]},
        tfserving_firewall_address_var="test_host_address",
    )
    assert input_firewall_rules.who_reaches(text) == {8405: ["172.30.0.10"]}
    # Without a monitoring host, only the load balancer itself.
    text = stats_rules(groups={"tfserving_nodes": ["node1"]})
    assert input_firewall_rules.who_reaches(text) == {8405: []}


def test_the_rules_are_in_place_before_haproxy_is_installed() -> None:
    from role_tasks import flat_tasks, load_yaml

    tasks = load_yaml(role_templates.ROOT / "roles" / "tfserving_lb" / "tasks" / "main.yml")
    names = [task.get("name", "") for task in flat_tasks(tasks)]
    include = next(t for t in flat_tasks(tasks) if "exporter and stats" in t.get("name", ""))
    assert (
        include["ansible.builtin.include_role"]["name"]
        == "tfserving.fleet.tfserving_input_firewall"
    )
    assert include["vars"]["tfserving_input_firewall_before"] == ["haproxy.service"]
    assert names.index(include["name"]) < names.index("Install HAProxy")


def test_every_server_gets_the_configured_weight() -> None:
    """The canary's share is its weight against this one (HAProxy's default is 1)."""
    for backend in ("backend tfserving_grpc", "backend tfserving_rest"):
        block = section(render(tfserving_lb_rest_enabled=True, tfserving_lb_weight=100), backend)
        assert re.search(r"^\s*default-server check weight 100 ", block, re.M), block


# The running check names m5..m1 and a model that leaves the set (base64 of its JSON, as
# slurp returns it).
RUNNING_CHECK = base64.b64encode(json.dumps(["m5", "m4", "m3", "m2", "m1", "gone"]).encode())
CHECK_ORDER_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from role_tasks import evaluate, module_args, role_variables, task_file
task = task_file("tfserving_lb", "main.yml", "Choose the models the health check asks for")
_, args = module_args(task)
variables = {
    **role_variables("tfserving_lb"),
    "tfserving_lb_check_phase": "rollout",
    "tfserving_lb_models": ["m1", "m2", "m3", "m4", "m5"],
    "__tfserving_lb_models_current": {"content": sys.argv[2]},
}
print(json.dumps(evaluate(args["__tfserving_lb_check_models"], variables)))
"""


def test_the_checked_models_keep_their_order_in_every_run() -> None:
    """The running check's models (a JSON list on the load balancer) narrow the new set in
    its own order: an order taken from a set would differ between runs (Python's string
    hashing is seeded per process), rewrite the configuration and reload HAProxy on a run
    that changes nothing. Each seed is a run."""
    tests = str(Path(__file__).resolve().parent)
    for seed in range(6):
        out = subprocess.run(
            [sys.executable, "-c", CHECK_ORDER_PROBE, tests, RUNNING_CHECK.decode()],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        assert json.loads(out.strip().splitlines()[-1]) == ["m1", "m2", "m3", "m4", "m5"], seed
