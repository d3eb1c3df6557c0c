"""One source for each port and path several roles share (docs/architecture.md, "Shared
ports and addresses"): the role that owns a value defines it in its defaults; where another
role or a plugin needs it and the owner's defaults are not in scope (a node's hostvars on
the load balancer or the monitoring host hold only what the inventory sets), it reads the
host's own variable first and falls back to a copy of the default. Every copy is listed
here and must equal its source."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from plugin_files import load_plugin
from role_tasks import ROOT, evaluate, load_yaml

monitoring = load_plugin("filter", "monitoring", "shared_facts_monitoring")
instances = load_plugin("filter", "instances", "shared_facts_instances")


def defaults(role: str) -> dict[str, Any]:
    return load_yaml(ROOT / "roles" / role / "defaults" / "main.yml")


def fallback(path: str, variable: str) -> int:
    """The literal in `VARIABLE | default(N)` in PATH (a role's vars or defaults)."""
    text = (ROOT / path).read_text()
    found = re.findall(rf"{variable}\s*\|\s*default\((\d+)\)", text)
    assert found, f"{path} reads {variable} with no default"
    assert len(set(found)) == 1, f"{path} has several defaults for {variable}: {found}"
    return int(found[0])


def function_default(function: Any, argument: str) -> Any:
    import inspect

    return inspect.signature(function).parameters[argument].default


TFSERVING = defaults("tfserving")
GRPC = int(TFSERVING["tfserving_grpc_port"])
REST_ONE = int(evaluate(TFSERVING["tfserving_rest_port"], {"tfserving_instance_mode": "one"}))
REST_MANY = int(evaluate(TFSERVING["tfserving_rest_port"], {"tfserving_instance_mode": "per_gpu"}))
STATS = int(defaults("tfserving_lb")["tfserving_lb_stats_port"])
PROMETHEUS = int(defaults("tfserving_monitoring")["tfserving_monitoring_port"])

# (where, the copy, the source)
COPIES = [
    ("tfserving_lb defaults: tfserving_lb_node_grpc_port",
     lambda: int(defaults("tfserving_lb")["tfserving_lb_node_grpc_port"]), GRPC),
    ("tfserving_lb defaults: tfserving_lb_node_rest_port",
     lambda: int(defaults("tfserving_lb")["tfserving_lb_node_rest_port"]), REST_ONE),
    ("plugins/filter/monitoring.py: tfserving_grpc_port",
     lambda: monitoring.DEFAULTS["tfserving_grpc_port"], GRPC),
    ("plugins/filter/monitoring.py: tfserving_rest_port",
     lambda: monitoring.DEFAULTS["tfserving_rest_port"], REST_ONE),
    ("plugins/filter/monitoring.py: tfserving_rest_port_instances",
     lambda: monitoring.DEFAULTS["tfserving_rest_port_instances"], REST_MANY),
    ("plugins/filter/monitoring.py: tfserving_monitoring_path",
     lambda: monitoring.DEFAULTS["tfserving_monitoring_path"], TFSERVING["tfserving_monitoring_path"]),  # noqa: E501
    ("plugins/filter/monitoring.py: tfserving_container_name",
     lambda: monitoring.DEFAULTS["tfserving_container_name"], TFSERVING["tfserving_container_name"]),  # noqa: E501
    ("plugins/filter/instances.py: DEFAULTS grpc_port",
     lambda: instances.DEFAULTS["grpc_port"], GRPC),
    ("plugins/filter/instances.py: DEFAULTS rest_port",
     lambda: instances.DEFAULTS["rest_port"], REST_ONE),
    ("plugins/filter/instances.py: DEFAULTS name",
     lambda: instances.DEFAULTS["name"], TFSERVING["tfserving_container_name"]),
    ("plugins/filter/instances.py: tfserving_lb_backend_servers(grpc_port=)",
     lambda: function_default(instances.tfserving_lb_backend_servers, "grpc_port"), GRPC),
    ("plugins/filter/instances.py: tfserving_lb_backend_servers(rest_port=)",
     lambda: function_default(instances.tfserving_lb_backend_servers, "rest_port"), REST_ONE),
    ("tfserving_monitoring defaults: tfserving_monitoring_lb_port",
     lambda: fallback("roles/tfserving_monitoring/defaults/main.yml", "tfserving_lb_stats_port"), STATS),  # noqa: E501
    ("tfserving vars: the canary's tfserving_monitoring_port",
     lambda: fallback("roles/tfserving/vars/main.yml", "tfserving_monitoring_port"), PROMETHEUS),
]  # fmt: skip


@pytest.mark.parametrize(("where", "copy", "source"), COPIES, ids=[c[0] for c in COPIES])
def test_every_copy_equals_its_source(where: str, copy: Any, source: Any) -> None:
    assert copy() == source, f"{where} differs from its source"


def test_the_load_balancer_serves_on_the_nodes_ports_by_default() -> None:
    """The load balancer's own front ports default to the nodes' (clients see one port)."""
    lb = defaults("tfserving_lb")
    assert int(lb["tfserving_lb_grpc_port"]) == GRPC
    assert int(lb["tfserving_lb_rest_port"]) == REST_ONE


def test_the_monitoring_target_of_a_node_with_no_variables_uses_the_sources() -> None:
    one = monitoring.tfserving_monitoring_target({"inventory_hostname": "n1"})
    assert (one["grpc_port"], one["rest_port"]) == (GRPC, REST_ONE)
    assert one["metrics_path"] == TFSERVING["tfserving_monitoring_path"]
    many = monitoring.tfserving_monitoring_target(
        {"inventory_hostname": "n1", "tfserving_instance_mode": "per_gpu"}
    )
    assert many["rest_port"] == REST_MANY


def test_the_architecture_page_names_the_sources() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("**Shared ports and addresses.**") :]
    section = section[: section.index("\n## ")]
    for name in ("tests/test_shared_facts.py", "roles/tfserving/defaults/main.yml"):
        assert name in section
    for value in (GRPC, REST_ONE, REST_MANY, STATS, PROMETHEUS):
        assert str(value) in section, f"the section does not give {value}"


def test_the_copies_are_all_listed() -> None:
    """A new literal port in a role's defaults or vars outside the source is listed above."""
    listed = Path(__file__).read_text()
    for path in sorted((ROOT / "roles").glob("*/*/main.yml")):
        if path.parent.name not in ("defaults", "vars") or path.parts[-3] == "tfserving":
            continue
        for variable in re.findall(r"(\w+)\s*\|\s*default\((?:8500|8501|8600)\)", path.read_text()):
            assert variable in listed, f"{path}: {variable} copies a node port: list it here"
