"""Servers per node in the roles (issue 25): what a node in mode one keeps byte for byte
(its container spec, the load balancer's configuration, the firewall rules, Prometheus'
targets, against golden files rendered by the roles before instances), and what several
servers give - one container each, one load balancer line, firewall rule, scrape target
and probe each - and the bad settings refused before any change, naming the variable.

Golden files: tests/fixtures/instances/one (README.md there says how they were made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import role_templates
import test_gpu_serving as gpu_serving
import test_monitoring_role as monitoring_role
import test_tfserving_firewall as firewall
import test_tfserving_lb_template as lb_template
import yaml
from plugin_files import load_plugin
from role_tasks import evaluate, module_args, role_variables, task_file
from test_instances import gpus

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "instances" / "one"
instances = load_plugin("filter", "instances", "instances_filters")
COUNT_TWO = {"tfserving_instance_mode": "count", "tfserving_instance_count": 2}
# A node that recorded two servers (record.yml), as playbooks/instances.yml reads it.
TWO_RECORDED = [
    {"index": 0, "name": "tfserving", "server": "node2", "grpc_port": 8500, "rest_port": 8600},
    {"index": 1, "name": "tfserving-1", "server": "node2-1", "grpc_port": 8501, "rest_port": 8601},
]


# ----- mode one: byte for byte what the roles wrote before instances ------------------------
def test_mode_one_container_spec_is_the_one_from_before_instances() -> None:
    golden = json.loads((GOLDEN / "container-spec.json").read_text())
    now = {kind: gpu_serving.container_spec(gpu=kind == "gpu") for kind in ("gpu", "cpu")}
    assert json.loads(json.dumps(now, sort_keys=True, default=str)) == golden


def test_mode_one_load_balancer_configuration_is_the_one_from_before_instances() -> None:
    assert lb_template.render() == (GOLDEN / "haproxy.cfg").read_text()
    rest_tls = lb_template.render(
        tfserving_lb_rest_enabled=True,
        tfserving_lb_backend_tls=True,
        tfserving_lb_backend_server_name="serving.example",
    )
    assert rest_tls == (GOLDEN / "haproxy-rest-tls.cfg").read_text()


def test_mode_one_records_change_nothing_at_the_load_balancer() -> None:
    """Nodes that recorded their one server (mode one, the default ports) give the same lines."""
    recorded = {
        node: [
            {"index": 0, "name": "tfserving", "server": node, "grpc_port": 8500, "rest_port": 8501}
        ]
        for node in ("node1", "node2")
    }
    variables = lb_config_variables(recorded)
    assert not variables["__tfserving_lb_check_each_port"]
    config = lb_template.render(**variables)
    assert config == (GOLDEN / "haproxy.cfg").read_text()


def test_mode_one_firewall_rules_are_the_ones_from_before_instances() -> None:
    text = firewall.rules(tfserving_firewall_allow=[firewall.CONTROLLER], **firewall.FRONTED)
    assert text == (GOLDEN / "firewall.rules").read_text()


def test_mode_one_prometheus_configuration_is_the_one_from_before_instances() -> None:
    text = role_templates.render(
        "tfserving_monitoring", "prometheus.yml.j2", **monitoring_role.role_vars()
    )
    assert text == (GOLDEN / "prometheus.yml").read_text()


# ----- each server its own container -------------------------------------------------------
RUN_CONTAINER = gpu_serving.RUN_CONTAINER


def node_servers(gpu: bool, **overrides: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A node's variables (inventory/gpu, 32 CPUs) and the servers the role works out."""
    host = gpu_serving._host(gpu, tfserving_image="img", **overrides)
    return host, evaluate(role_variables("tfserving")["tfserving_instances"], host)


def spec(host: dict[str, Any], instance: dict[str, Any]) -> dict[str, Any]:
    _, args = module_args(task_file("tfserving", "container-spec.yml", RUN_CONTAINER))
    return evaluate(args, {**host, "__tfserving_instance": instance})


def test_count_mode_gives_each_server_its_container_ports_and_cpuset() -> None:
    host, servers = node_servers(False, **COUNT_TWO)
    specs = [spec(host, server) for server in servers]
    assert [s["name"] for s in specs] == ["tfserving", "tfserving-1"]
    assert [s["published_ports"] for s in specs] == [
        ["10.0.10.21:8500:8500", "10.0.10.21:8600:8501"],
        ["10.0.10.21:8501:8500", "10.0.10.21:8601:8501"],
    ]
    # 32 CPUs split in two contiguous halves; no GPU.
    assert [s["cpuset_cpus"] for s in specs] == ["0-15", "16-31"]
    assert all(s["device_requests"] == [] for s in specs)
    # The same read-only models, flags, hardening and health check for both.
    for key in ("mounts", "command", "read_only", "cap_drop", "healthcheck", "labels", "user"):
        assert specs[0][key] == specs[1][key], key


def test_per_gpu_pins_each_server_to_one_gpu_by_uuid_with_the_fraction() -> None:
    detected = {"gpus": gpus("a100x2")}
    host, servers = node_servers(
        True,
        tfserving_instance_mode="per_gpu",
        nvidia_container_toolkit_detected=detected,
    )
    specs = [spec(host, server) for server in servers]
    uuids = [gpu["uuid"] for gpu in detected["gpus"]]
    assert [s["device_requests"] for s in specs] == [
        [{"driver": "nvidia", "device_ids": [uuid], "capabilities": [["gpu"]]}] for uuid in uuids
    ]
    # inventory/gpu's fraction, on each server (each has its GPU to itself).
    assert all("--per_process_gpu_memory_fraction=0.9" in s["command"] for s in specs)
    assert all("cpuset_cpus" not in s for s in specs)
    assert [s["published_ports"][1] for s in specs] == [
        "10.0.10.11:8600:8501",
        "10.0.10.11:8601:8501",
    ]


def test_mode_one_on_a_gpu_host_still_asks_for_every_gpu_even_without_a_gpu_list() -> None:
    """A host whose GPU record predates GPU lists keeps serving as before."""
    host, servers = node_servers(True)
    (only,) = servers
    assert spec(host, only)["device_requests"] == gpu_serving.ALL_GPUS


def test_a_cpuset_left_by_an_earlier_count_is_taken_away() -> None:
    host, servers = node_servers(False)
    (only,) = servers
    assert "cpuset_cpus" not in spec(host, only)
    assert spec(host, {**only, "cpuset_stale": True})["cpuset_cpus"] == ""


def test_the_servers_record_holds_the_index_to_gpu_map() -> None:
    detected = {"gpus": gpus("a100x2")}
    host, servers = node_servers(
        True, tfserving_instance_mode="per_gpu", nvidia_container_toolkit_detected=detected
    )
    task = task_file(
        "tfserving",
        "record.yml",
        "Record the node's servers on the host (ansible_local.tfserving_instances)",
    )
    # The copy writes the task's vars' record as JSON.
    content = evaluate(task["vars"]["__tfserving_record"], {**host, "tfserving_instances": servers})
    written = evaluate(
        module_args(task)[1]["content"],
        {**host, "tfserving_instances": servers, "__tfserving_record": content},
    )
    assert json.loads(written) == content
    uuids = [gpu["uuid"] for gpu in detected["gpus"]]
    assert content["mode"] == "per_gpu"
    assert content["gpus"] == {"0": [uuids[0]], "1": [uuids[1]]}
    assert [
        (s["name"], s["server"], s["grpc_port"], s["rest_port"]) for s in content["servers"]
    ] == [
        ("tfserving", "gpu-node-01", 8500, 8600),
        ("tfserving-1", "gpu-node-01-1", 8501, 8601),
    ]


# ----- the load balancer: one line per server ------------------------------------------------
def lb_config_variables(
    recorded: dict[str, list[dict[str, Any]]],
    modes: dict[str, str] | None = None,
    written: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The role's servers and check form for node1 and node2 with these records."""
    role = role_variables("tfserving_lb")
    nodes = ["node1", "node2"]
    context = {
        **role,
        **lb_template.BASE,
        "groups": {"tfserving_nodes": nodes},
        "hostvars": {
            node: {
                **({"tfserving_recorded_servers": recorded[node]} if node in recorded else {}),
                **({"tfserving_instance_mode": modes[node]} if modes and node in modes else {}),
            }
            for node in nodes
        },
        "__tfserving_lb_servers_written": written or {},
    }
    servers = evaluate(role["__tfserving_lb_backend_servers"], context)
    each = evaluate(
        role["__tfserving_lb_check_each_port"],
        {**context, "__tfserving_lb_backend_servers": servers},
    )
    return {"__tfserving_lb_backend_servers": servers, "__tfserving_lb_check_each_port": each}


def test_a_node_with_two_servers_gets_two_lines_each_checked_on_its_own_rest_port() -> None:
    variables = lb_config_variables({"node2": TWO_RECORDED})
    assert variables["__tfserving_lb_check_each_port"] is True
    config = lb_template.render(tfserving_lb_rest_enabled=True, **variables)
    grpc = lb_template.section(config, "backend tfserving_grpc")
    assert grpc.count("http-check connect proto h1") == 2
    assert "http-check connect port" not in config
    servers = re.findall(r"^\s*server (.*)$", grpc, re.M)
    assert servers == [
        "node1 10.0.0.1:8500 port 8501",
        "node2 10.0.0.2:8500 port 8600",
        "node2-1 10.0.0.2:8501 port 8601",
    ]
    rest = re.findall(
        r"^\s*server (.*)$", lb_template.section(config, "backend tfserving_rest"), re.M
    )
    assert rest == [
        "node1 10.0.0.1:8501 port 8501",
        "node2 10.0.0.2:8600 port 8600",
        "node2-1 10.0.0.2:8601 port 8601",
    ]
    haproxy_check(lb_template.render(**variables))


def test_a_node_set_to_another_mode_gets_per_server_checks_before_its_turn() -> None:
    """Its servers move in its turn (the REST base moves to 8600): the check port must be
    per server, so that the turn can move it through the runtime API."""
    variables = lb_config_variables({}, modes={"node2": "count"})
    assert variables["__tfserving_lb_check_each_port"] is True
    assert "server node2 10.0.0.2:8500 port 8501" in lb_template.render(**variables)


def test_a_node_left_out_of_the_run_keeps_what_the_load_balancer_wrote() -> None:
    written = {
        "node2": instances.tfserving_lb_node_servers(
            "node2",
            instances.tfserving_lb_backend_servers(
                [["node2", "10.0.0.2"]], {"node2": TWO_RECORDED}
            ),
        )
    }
    variables = lb_config_variables({}, written=written)
    names = [s["name"] for s in variables["__tfserving_lb_backend_servers"]]
    assert names == ["node1", "node2", "node2-1"]


def test_server_names_that_collide_are_refused() -> None:
    servers = instances.tfserving_lb_backend_servers(
        [["a", "10.0.0.1"], ["a-1", "10.0.0.2"]],
        {
            "a": [
                {"index": 0, "grpc_port": 8500, "rest_port": 8600},
                {"index": 1, "grpc_port": 8501, "rest_port": 8601},
            ]
        },
    )
    assert instances.tfserving_lb_server_collisions(servers) == [
        "a-1 (server 1 of node a, node a-1)"
    ]
    task = task_file("tfserving_lb", "main.yml", "Fail when two servers would have the same name")
    failing = evaluate(
        task["vars"]["__tfserving_lb_collisions"], {"__tfserving_lb_backend_servers": servers}
    )
    assert failing


def haproxy_check(config: str) -> None:
    """`haproxy -c` on CONFIG where HAProxy is installed (skipped elsewhere)."""
    binary = os.environ.get("HAPROXY") or shutil.which("haproxy")
    if not binary:
        return
    local = (
        config.replace("chroot /var/lib/haproxy", "chroot /tmp")
        .replace("/run/haproxy/admin.sock", "/tmp/tfs-test-admin.sock")
        .replace("    user haproxy\n", "")
        .replace("    group haproxy\n", "")
    )
    result = subprocess.run(
        [binary, "-c", "-f", "/dev/stdin"], input=local, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_drain_enable_and_weight_act_on_all_of_a_nodes_servers() -> None:
    for tasks, name in (
        ("drain.yml", "Drain the node at every load balancer"),
        ("enable.yml", "Enable the node at every load balancer and wait until it is UP"),
        ("weight.yml", "Set the node's weight at every load balancer and read its counters"),
    ):
        _, args = module_args(task_file("tfserving_lb", tasks, name))
        assert args["node"] == "{{ inventory_hostname }}", tasks
        assert "server" not in args, tasks
        assert "tfserving_lb_nodes_group" in args["nodes"], tasks


def test_enable_moves_each_server_to_the_ports_of_its_turn_and_leaves_retired_ones_out() -> None:
    _host, servers = node_servers(False, **COUNT_TWO)
    variables = {
        **role_variables("tfserving_lb"),
        "inventory_hostname": "node2",
        "tfserving_instances": servers,
        "tfserving_retired_servers": ["node2-2"],
        "groups": {"tfserving_nodes": ["node1", "node2"], "tfserving_lb": ["lb1"]},
        "hostvars": {"lb1": {}},
        "item": ["lb1", "tfserving_grpc"],
    }
    task = task_file(
        "tfserving_lb",
        "enable.yml",
        "Enable the node at every load balancer and wait until it is UP",
    )
    args = evaluate(module_args(task)[1], {**variables, **task["vars"]})
    assert args["ports"] == {
        "node2": {"port": 8500, "check_port": 8600},
        "node2-1": {"port": 8501, "check_port": 8601},
    }
    assert args["exclude"] == ["node2-2"]


def test_other_nodes_drains_do_not_count_servers_retired_in_this_run() -> None:
    variables = {
        **role_variables("tfserving_lb"),
        "ansible_play_hosts_all": ["node1", "node2"],
        "hostvars": {"node1": {"tfserving_retired_servers": ["node1-1", "node1-2"]}, "node2": {}},
    }
    assert evaluate(variables["__tfserving_lb_retired_servers"], variables) == [
        "node1-1",
        "node1-2",
    ]


# ----- the firewall: every server's ports ----------------------------------------------------
def test_the_firewall_covers_every_servers_ports_and_nothing_else() -> None:
    text = firewall.rules(
        tfserving_firewall_allow=[firewall.CONTROLLER], **COUNT_TWO, **firewall.FRONTED
    )
    assert "--ctorigdstport 8500:8501 " in text and "--ctorigdstport 8600:8601 " in text
    for port in (8500, 8501):
        assert firewall.verdict(text, firewall.LB, port) == "let in"
        assert firewall.verdict(text, firewall.MONITORING, port) == "refused"
        assert firewall.verdict(text, firewall.STRANGER, port) == "refused"
    for port in (8600, 8601):
        assert firewall.verdict(text, firewall.MONITORING, port) == "let in"
        assert firewall.verdict(text, firewall.STRANGER, port) == "refused"
    assert firewall.verdict(text, firewall.STRANGER, 8602) == "let in"  # not a serving port


# ----- monitoring and fleet-status: every server ---------------------------------------------
def test_prometheus_scrapes_and_probes_each_server_of_a_node() -> None:
    nodes = monitoring_role.NODES
    node1 = {
        **nodes["node-1"],
        "tfserving_recorded_servers": [
            {"index": 0, "server": "node-1", "grpc_port": 8500, "rest_port": 8600},
            {"index": 1, "server": "node-1-1", "grpc_port": 8501, "rest_port": 8601},
        ],
    }
    variables = monitoring_role.role_vars()
    variables["__tfserving_monitoring_targets"] = [
        monitoring_role.monitoring.tfserving_monitoring_target(node1),
        monitoring_role.monitoring.tfserving_monitoring_target(nodes["node-2"]),
    ]
    config = yaml.safe_load(
        role_templates.render("tfserving_monitoring", "prometheus.yml.j2", **variables)
    )
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    serving = jobs["tfserving"]["static_configs"]
    assert [(s["targets"], s["labels"].get("server")) for s in serving] == [
        (["10.0.0.11:8600"], "node-1"),
        (["10.0.0.11:8601"], "node-1-1"),
        (["192.168.5.12:9501"], None),  # node-2 runs one server: as before instances
    ]
    assert serving[1]["labels"]["grpc"] == "10.0.0.11:8501"
    assert serving[1]["labels"]["node"] == "node-1"
    probes = [s["targets"][0] for s in jobs["tfserving_models"]["static_configs"]][:2]
    assert probes == [
        "http://10.0.0.11:8600/v1/models/digits",
        "http://10.0.0.11:8601/v1/models/digits",
    ]


# ----- the canary's unit is a node, with all its servers ---------------------------------------
def test_the_canary_share_counts_servers() -> None:
    task = task_file(
        "tfserving", "canary-select.yml", "Say whether this node is a canary, and its weight"
    )
    recorded = {"n1": TWO_RECORDED, "n2": [], "n3": []}
    variables = {
        **role_variables("tfserving"),
        "inventory_hostname": "n1",
        "tfserving_canary": True,
        "tfserving_canary_share": 20,
        "__tfserving_canary_nodes": ["n1"],
        "__tfserving_canary_baseline": ["n2", "n3"],
        "__tfserving_canary_recorded": recorded,
        "groups": {"tfserving_lb": ["lb1"], "tfserving_nodes": ["n1", "n2", "n3"]},
        "hostvars": {"lb1": {}},
    }
    weight = evaluate(
        module_args(task)[1]["tfserving_canary_weight"], {**variables, **task.get("vars", {})}
    )
    # Two canary servers beside two baseline servers, 20 %: 20 x 2 x 100 / (80 x 2) = 25 each.
    assert int(weight) == 25


# ----- bad settings: refused before any change, naming the variable -----------------------------
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "mode": (
        {"tfserving_instance_mode": "per_cpu", "case_entry": "plan"},
        # The spec's own check, or the instances filter when the validation resolves the
        # role's variables first (ansible-core 2.19 does): both name the variable and the
        # choices.
        "tfserving_instance_mode",
    ),
    "count_type": (
        {"tfserving_instance_count": "two", "case_entry": "plan"},
        "tfserving_instance_count",
    ),
    "count_zero": (
        {"tfserving_instance_mode": "count", "tfserving_instance_count": 0},
        "tfserving_instance_count is 0: give 1 or more.",
    ),
    "count_above_cpus": (
        {"tfserving_instance_mode": "count", "tfserving_instance_count": 3,
         "tfserving_instance_cpus": [0]},
        "tfserving_instance_count is 3, more than the 1 CPU(s) in tfserving_instance_cpus: "
        "give at most 1.",
    ),
    "cpu_not_on_host": (
        {"tfserving_instance_mode": "count", "tfserving_instance_count": 2,
         "tfserving_instance_cpus": [0, 4099]},
        "tfserving_instance_cpus on case_cpu_not_on_host names CPU(s) 4099",
    ),
    "rest_in_grpc_range": (
        {"tfserving_instance_mode": "count", "tfserving_instance_count": 2,
         "tfserving_instance_cpus": [0, 1], "tfserving_rest_port": 8501},
        "tfserving_grpc_port 8500 and tfserving_rest_port 8501 collide with 2 servers",
    ),
    "per_gpu_without_gpu_list": (
        {"tfserving_instance_mode": "per_gpu", "tfserving_gpu": True},
        "lists none to pin a server to",
    ),
    "per_gpu_on_cpu": (
        {"tfserving_instance_mode": "per_gpu", "tfserving_gpu": False},
        "tfserving_instance_mode is per_gpu, but this host serves on CPU",
    ),
    "budget": (
        {"tfserving_instance_mode": "count", "tfserving_instance_count": 1, "case_lb": True,
         "tfserving_recorded_servers": [{"index": 0}, {"index": 1}]},
        "tfserving_lb_max_unavailable is 1: it counts servers, not nodes. Set it to at least 2",
    ),
}  # fmt: skip

CASES_PLAY = """
- name: Each case's servers worked out, or refused
  hosts: cases
  gather_facts: false
  tasks:
    - name: Work out the servers
      block:
        - name: The role's step (the plan's entry point validates the arguments first)
          ansible.builtin.include_role:
            name: tfserving.fleet.tfserving
            tasks_from: ENTRY
        - name: Say it passed
          ansible.builtin.debug:
            msg: "CASE {{ inventory_hostname }} passed"
      rescue:
        - name: Say why it was refused
          ansible.builtin.debug:
            msg: "CASE {{ inventory_hostname }} refused: {{ ansible_failed_result.msg }}"
"""


def test_bad_instance_settings_are_refused_before_any_change_naming_the_variable(
    tmp_path: Path,
) -> None:
    """All cases in one run (one host each, on this machine): the argument specs refuse a
    mode or count of the wrong kind, instances-plan.yml the rest - before the plan looks at
    the host's containers, and so before the serve play drains or changes anything."""
    groups: dict[str, dict[str, Any]] = {"plan": {}, "instances-plan": {}}
    for name, (variables, _) in CASES.items():
        host = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "tfserving_gpu": False,
            "tfserving_models": [{"name": "m", "path": str(tmp_path)}],
            **{k: v for k, v in variables.items() if k not in ("case_lb", "case_entry")},
        }
        groups[variables.get("case_entry", "instances-plan")][f"case_{name}"] = host
    output = ""
    for entry, hosts in groups.items():
        inventory = {
            "all": {
                "children": {
                    "cases": {"hosts": hosts},
                    "tfserving_lb": {
                        "hosts": {"case_budget": None} if "case_budget" in hosts else {}
                    },
                }
            }
        }
        (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
        (tmp_path / "play.yml").write_text(CASES_PLAY.replace("ENTRY", entry))
        result = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"),
             "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")],
            capture_output=True, text=True, check=False, cwd=ROOT, timeout=600,
            env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "NO_COLOR": "1"},
        )  # fmt: skip
        output += result.stdout + result.stderr
    output = " ".join(output.split()).replace("\\n", " ")
    for name, (_, message) in CASES.items():
        verdict = re.search(rf"CASE case_{name} (passed|refused: .*?)\"", output)
        assert verdict, f"{name}: no verdict in {output[-3000:]}"
        assert verdict.group(1).startswith("refused"), (name, verdict.group(1))
        assert message in verdict.group(1), (name, verdict.group(1))
        assert "Nothing on the host has changed" in verdict.group(1) or name in (
            "mode",
            "count_type",
        )
