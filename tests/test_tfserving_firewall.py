"""The serving ports' firewall (issue 23, items 1 and 2): on by default wherever a port is
published beyond loopback, each source let in on the ports it needs only, host names
resolved on the controller, and a unit that keeps the engine from starting without the
rules. The rules are judged by walking the chain as iptables would for a new connection."""

from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import role_templates
from ansible_run import run_playbook
from role_tasks import ROOT, evaluate, load_yaml, module_args, role_variables, task_file

NODE = "node1"
ADDRESS = "10.0.10.21"
CONTROLLER = "10.0.0.1"
LB = "10.0.0.5"
MONITORING = "10.0.0.6"
STRANGER = "10.0.0.99"
GRPC, REST = 8500, 8501
FRONTED = {
    "groups": {"tfserving_lb": ["lb1"], "tfserving_monitoring": ["mon1"]},
    "hostvars": {"lb1": {"ansible_host": LB}, "mon1": {"ansible_host": MONITORING}},
}


def node(
    groups: dict[str, list[str]] | None = None,
    hostvars: dict[str, dict[str, Any]] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A node's variables: the role's defaults and vars, the inventory's, its facts."""
    facts = {
        "inventory_hostname": NODE,
        "ansible_host": ADDRESS,
        "ansible_facts": {"default_ipv4": {"address": ADDRESS}, "processor_vcpus": 4},
        "groups": {"tfserving_nodes": [NODE], **(groups or {})},
        "hostvars": hostvars or {},
        "ansible_playbook_python": sys.executable,
    }
    return {**role_variables("tfserving"), **overrides, **facts}


def expression(text: str, variables: dict[str, Any]) -> Any:
    """A Jinja expression (as a `when` holds it) evaluated with VARIABLES."""
    from ansible.template import trust_as_template

    return evaluate(trust_as_template("{{ " + text + " }}"), variables)


def enabled(**variables: Any) -> bool:
    return expression("tfserving_firewall_enabled | bool", node(**variables)) is True


def rules(**variables: Any) -> str:
    return role_templates.render("tfserving", "firewall.rules.j2", **node(**variables))


def verdict(text: str, source: str, port: int) -> str:
    """What TFSERVING-FW does with a new TCP connection from SOURCE to the published PORT:
    the first rule that matches decides (RETURN lets it on, REJECT refuses); none: on. A
    rule's port may be a range (FIRST:LAST, a node's servers)."""
    for line in text.splitlines():
        if not line.startswith("-A TFSERVING-FW "):
            continue
        rule_source = re.search(r" -s (\S+)", line)
        rule_port = re.search(r" --ctorigdstport (\d+)(?::(\d+))?", line)
        if rule_source and ipaddress.ip_address(source) not in ipaddress.ip_network(
            rule_source.group(1)
        ):
            continue
        if rule_port and not (
            int(rule_port.group(1)) <= port <= int(rule_port.group(2) or rule_port.group(1))
        ):
            continue
        return "refused" if " -j REJECT" in line else "let in"
    return "let in"


# ----- on by default ----------------------------------------------------------------------
def test_the_firewall_is_on_without_a_load_balancer() -> None:
    # The node of a first run: no load balancer, no monitoring, gRPC on its routable address.
    assert enabled()
    assert enabled(tfserving_bind_address="0.0.0.0")
    assert enabled(**FRONTED)


def test_the_firewall_is_off_only_when_nothing_is_published_beyond_loopback() -> None:
    assert not enabled(tfserving_bind_address="127.0.0.1")
    assert not enabled(tfserving_bind_address="127.0.0.1", tfserving_rest_port=0)
    # REST on the service address is enough to turn it on.
    assert enabled(tfserving_bind_address="127.0.0.1", tfserving_rest_bind_address=ADDRESS)
    # Turned off explicitly, it stays off.
    assert not enabled(tfserving_firewall_enabled=False)


# ----- each source on the ports it needs ----------------------------------------------------
def test_each_source_gets_the_ports_it_needs_and_no_more() -> None:
    text = rules(tfserving_firewall_allow=[CONTROLLER], **FRONTED)
    seen = {
        (who, port): verdict(text, source, port)
        for who, source in [
            ("controller", CONTROLLER),
            ("lb", LB),
            ("monitoring", MONITORING),
            ("stranger", STRANGER),
        ]
        for port in (GRPC, REST)
    }
    assert seen == {
        ("controller", GRPC): "let in",
        ("controller", REST): "let in",
        ("lb", GRPC): "let in",
        ("lb", REST): "let in",
        # The monitoring host scrapes REST metrics and probes REST status: no admin RPC.
        ("monitoring", GRPC): "refused",
        ("monitoring", REST): "let in",
        ("stranger", GRPC): "refused",
        ("stranger", REST): "refused",
    }, text


def test_a_monitoring_host_that_is_also_the_load_balancer_gets_grpc() -> None:
    text = rules(
        tfserving_firewall_allow=[CONTROLLER],
        groups={"tfserving_lb": ["lb1"], "tfserving_monitoring": ["lb1"]},
        hostvars={"lb1": {"ansible_host": LB}},
    )
    assert verdict(text, LB, GRPC) == verdict(text, LB, REST) == "let in"


def test_without_a_load_balancer_only_the_allowed_clients_get_in() -> None:
    text = rules(tfserving_firewall_allow=[CONTROLLER, "192.0.2.0/24"])
    for port in (GRPC, REST):
        assert verdict(text, CONTROLLER, port) == "let in"
        assert verdict(text, "192.0.2.77", port) == "let in"
        assert verdict(text, STRANGER, port) == "refused"
        assert verdict(text, LB, port) == "refused"


def test_with_rest_off_only_grpc_is_guarded_and_other_ports_are_left_alone() -> None:
    text = rules(tfserving_firewall_allow=[CONTROLLER], tfserving_rest_port=0)
    assert verdict(text, STRANGER, GRPC) == "refused"
    assert "--ctorigdstport 8501" not in text
    # SSH and the host's other services are not the firewall's business.
    assert verdict(text, STRANGER, 22) == "let in"
    assert verdict(text, STRANGER, 9100) == "let in"


def test_host_names_are_written_as_the_addresses_the_controller_resolved() -> None:
    text = rules(
        tfserving_firewall_allow=["controller.example.org"],
        __tfserving_firewall_names={"controller.example.org": ["192.0.2.7", "192.0.2.8"]},
        **FRONTED,
    )
    assert "example.org" not in "\n".join(
        line for line in text.splitlines() if not line.startswith("#")
    )
    assert verdict(text, "192.0.2.7", GRPC) == verdict(text, "192.0.2.8", GRPC) == "let in"
    assert verdict(text, STRANGER, GRPC) == "refused"


def test_the_rules_replace_their_own_chain_only() -> None:
    text = rules(tfserving_firewall_allow=[CONTROLLER])
    commands = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert commands[0] == "*filter" and commands[-1] == "COMMIT"
    assert commands[1] == ":TFSERVING-FW - [0:0]"
    assert all(line.startswith("-A TFSERVING-FW ") for line in commands[2:-1]), text


# ----- fail-closed at boot ------------------------------------------------------------------
def unit() -> str:
    return role_templates.render("tfserving", "tfserving-firewall.service.j2", **node())


def test_the_unit_loads_the_rules_before_the_engine_waiting_for_the_lock() -> None:
    text = unit()
    assert re.search(r"^Before=docker\.service$", text, re.M)
    assert re.search(r"^PartOf=docker\.service$", text, re.M)
    restore = "/usr/sbin/iptables-restore -w --noflush /etc/tfserving-firewall.rules"
    assert re.search(rf"^ExecStart={re.escape(restore)}$", text, re.M), text
    # A change of the rules is applied with a reload: a restart of this unit would
    # restart the engine, which requires it.
    assert re.search(rf"^ExecReload={re.escape(restore)}$", text, re.M), text
    starts = re.findall(r"^ExecStart=(.*)$", text, re.M)
    reloads = re.findall(r"^ExecReload=(.*)$", text, re.M)
    assert starts == reloads
    for command in starts:
        for call in re.findall(r"\biptables(?:-restore)? [^;|&']*", command):
            assert " -w" in call, f"without -w (the xtables lock): {call}"


def test_the_engine_requires_the_unit() -> None:
    path = expression("__tfserving_firewall_dropin_path", node())
    assert path == "/etc/systemd/system/docker.service.d/tfserving-firewall.conf"
    text = role_templates.render("tfserving", "tfserving-firewall.docker.conf.j2", **node())
    assert re.search(r"^\[Unit\]$", text, re.M)
    assert re.search(r"^Requires=tfserving-firewall\.service$", text, re.M)
    assert re.search(r"^After=tfserving-firewall\.service$", text, re.M)


def test_the_role_never_restarts_the_unit() -> None:
    """Restarting a unit that docker.service requires restarts the engine; changed rules
    are applied with a reload (ExecReload) instead."""
    apply = task_file(
        "tfserving",
        "firewall.yml",
        "Enable the firewall unit and apply the rules (a reload when they changed)",
    )
    module, args = module_args(apply)
    assert module == "ansible.builtin.systemd_service"
    for changed in (False, True):
        results = {"changed": changed}
        state = evaluate(
            args["state"],
            {
                **node(),
                "__tfserving_firewall_rules": results,
                "__tfserving_firewall_unit": {"changed": False},
            },
        )
        assert state.strip() == ("reloaded" if changed else "started")
    text = (ROOT / "roles/tfserving/tasks/firewall.yml").read_text()
    assert "restarted" not in text
    written = task_file("tfserving", "firewall.yml", "Write the firewall rules")
    assert module_args(written)[1]["validate"] == "iptables-restore -w --test --noflush %s"


def test_firewall_off_takes_the_engine_requirement_away_before_it_stops_the_unit() -> None:
    tasks = [t["name"] for t in flat(load_yaml(ROOT / "roles/tfserving/tasks/firewall-off.yml"))]
    drop = tasks.index("Stop the engine requiring the firewall unit")
    stop = tasks.index("Stop and disable the firewall unit")
    assert drop < stop, tasks


def flat(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for task in tasks or []:
        out.append(task)
        out += flat(task.get("block") or [])
    return out


def test_turning_it_off_says_what_is_exposed() -> None:
    task = task_file("tfserving", "firewall-off.yml", "Say what the serving ports are open to")
    module, args = module_args(task)
    assert module == "ansible.builtin.debug"
    variables = node(tfserving_rest_bind_address=ADDRESS, tfserving_firewall_enabled=False)
    message = " ".join(evaluate(args["msg"], variables).split())
    assert f"{ADDRESS}:8500 (gRPC" in message and f"{ADDRESS}:8501 (REST" in message
    assert "HandleReloadConfigRequest" in message
    assert expression(task["when"], variables) is True
    # Nothing published beyond loopback: nothing to say.
    quiet = node(tfserving_bind_address="127.0.0.1", tfserving_firewall_enabled=False)
    assert expression(task["when"], quiet) is False


# ----- the docker play puts the rules back before it starts the engine -----------------------
def test_the_docker_play_repairs_the_firewall_before_the_engine_starts() -> None:
    play = load_yaml(ROOT / "playbooks/docker.yml")[-1]
    names = [t["name"] for t in play["tasks"]]
    repair = next(i for i, t in enumerate(play["tasks"]) if "firewall" in t["name"])
    turn = next(i for i, t in enumerate(play["tasks"]) if t["name"].startswith("The node's turn"))
    assert repair < turn, names
    include = play["tasks"][repair]["ansible.builtin.include_role"]
    assert include == {"name": "tfserving.fleet.tfserving", "tasks_from": "firewall-boot"}
    block = task_file(
        "tfserving",
        "firewall-boot.yml",
        "Write the firewall again before the engine starts (its rules did not load)",
    )

    def repairs(status: dict[str, str]) -> bool:
        variables = {**node(), "__tfserving_firewall_boot": {"status": status}}
        return all(expression(condition, variables) is True for condition in block["when"])

    assert repairs({"LoadState": "loaded", "ActiveState": "failed"})
    assert repairs({"LoadState": "loaded", "ActiveState": "inactive"})
    assert not repairs({"LoadState": "loaded", "ActiveState": "active"})
    assert not repairs({"LoadState": "not-found", "ActiveState": "inactive"})


# ----- checks before any change, on the controller ----------------------------------------------
def check(tmp_path: Path, **variables: Any) -> str:
    """firewall-check.yml for a node on this machine; its output (and the rules' sources)."""
    import json

    playbook = tmp_path / "check.yml"
    playbook.write_text(
        "- name: The firewall's checks\n"
        "  hosts: localhost\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Check\n"
        "      ansible.builtin.include_role:\n"
        "        name: tfserving.fleet.tfserving\n"
        "        tasks_from: firewall-check.yml\n"
        "        public: true\n"
        "    - name: Show the sources\n"
        "      ansible.builtin.debug:\n"
        "        msg: \"SOURCES {{ __tfserving_firewall_services | map(attribute='sources')"
        ' | list }}"\n'
    )
    settings = {"tfserving_bind_address": ADDRESS, **variables}
    result = run_playbook(playbook, "-e", json.dumps(settings))
    return f"rc={result.returncode}\n" + result.stdout + result.stderr


def test_a_name_that_does_not_resolve_stops_the_run_naming_it(tmp_path: Path) -> None:
    output = check(tmp_path, tfserving_firewall_allow=["controller.no-such-host.invalid"])
    assert output.startswith("rc=2"), output[-3000:]
    text = " ".join(output.split())
    assert "controller.no-such-host.invalid (tfserving_firewall_allow)" in text, text[-3000:]
    assert "does not resolve" in text and "Nothing on the host has changed" in text


def test_a_name_is_resolved_on_the_controller(tmp_path: Path) -> None:
    output = check(tmp_path, tfserving_firewall_allow=["localhost", CONTROLLER])
    assert output.startswith("rc=0"), output[-3000:]
    assert "SOURCES [['10.0.0.1', '127.0.0.1'], ['10.0.0.1', '127.0.0.1']]" in output, output


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {},
            [
                "tfserving_firewall_allow on localhost: empty, so the firewall would shut out",
                f"The server publishes gRPC on {ADDRESS}:8500",
                "Set tfserving_firewall_allow to the controller's address",
                "tfserving_firewall_enabled: false",
            ],
        ),
        (
            {"tfserving_bind_address": "fd00::21", "tfserving_firewall_allow": [CONTROLLER]},
            ["tfserving_bind_address on localhost: fd00::21 is an IPv6 address"],
        ),
        (
            {"tfserving_firewall_allow": ["fd00::1"]},
            ["tfserving_firewall_allow on localhost: fd00::1 is IPv6"],
        ),
    ],
    ids=["no-controller", "ipv6-service-address", "ipv6-source"],
)
def test_the_checks_say_what_to_set(tmp_path: Path, variables: dict, expected: list[str]) -> None:
    output = check(tmp_path, **variables)
    assert output.startswith("rc=2"), output[-3000:]
    text = " ".join(output.split())
    for words in expected:
        assert words in text, text[-3000:]
