"""Scrape targets of a TF Serving node, from that node's variables.

{{ groups['tfserving_nodes'] | map('extract', hostvars)
   | map('tfserving.fleet.tfserving_monitoring_target') | list }}
-> [{'node': 'node-1', 'address': '10.0.0.5', 'rest_port': 8501, 'grpc_port': 8500,
     'metrics_path': '/monitoring/prometheus/metrics', 'models': ['digits'],
     'container': 'tfserving',
     'servers': [{'server': 'node-1', 'rest_port': 8501, 'grpc_port': 8500}]}, ...]

Where the node's variables do not set a value, the tfserving role's default applies.
`servers` are the node's servers (tfserving_instance_mode): what the node recorded
(tfserving_recorded_servers, read by playbooks/instances.yml), else its one server on
rest_port and grpc_port.

Why not the library: ansible.builtin.extract reads a node's hostvars, but the tfserving role's
defaults are not in them on the monitoring host, so each value would need its default repeated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Copies of the tfserving role's defaults (roles/tfserving/defaults/main.yml, the one
# source): they are not in a node's hostvars on the monitoring host.
# tests/test_shared_facts.py fails when they differ.
DEFAULTS: dict[str, Any] = {
    "tfserving_rest_port": 8501,
    "tfserving_rest_port_instances": 8600,  # the REST base in every mode but one
    "tfserving_grpc_port": 8500,
    "tfserving_monitoring_path": "/monitoring/prometheus/metrics",
    "tfserving_container_name": "tfserving",
}


def _get(variables: Mapping[str, Any], name: str, default: Any = None) -> Any:
    try:
        value = variables[name]
    except KeyError:
        return default
    return default if value is None else value


def tfserving_monitoring_target(variables: Mapping[str, Any]) -> dict[str, Any]:
    """What the monitoring host needs to know about one node."""
    node = str(_get(variables, "inventory_hostname"))
    address = _get(variables, "tfserving_monitoring_address") or _get(
        variables, "ansible_host", node
    )
    models = _get(variables, "tfserving_models", [])
    # The tfserving role's REST base moves to 8600 in every mode but one (its defaults).
    mode = str(_get(variables, "tfserving_instance_mode", "one"))
    rest_default = DEFAULTS[
        "tfserving_rest_port" if mode == "one" else "tfserving_rest_port_instances"
    ]
    rest_port = int(_get(variables, "tfserving_rest_port", rest_default))
    grpc_port = int(_get(variables, "tfserving_grpc_port", DEFAULTS["tfserving_grpc_port"]))
    recorded = _get(variables, "tfserving_recorded_servers", []) or []
    servers = [
        {
            "server": str(server.get("server") or node),
            "rest_port": int(server.get("rest_port") or 0),
            "grpc_port": int(server["grpc_port"]),
        }
        for server in sorted(recorded, key=lambda server: int(server.get("index") or 0))
    ] or [{"server": node, "rest_port": rest_port, "grpc_port": grpc_port}]
    return {
        "node": node,
        "address": str(address),
        "rest_port": rest_port,
        "grpc_port": grpc_port,
        "metrics_path": str(
            _get(variables, "tfserving_monitoring_path", DEFAULTS["tfserving_monitoring_path"])
        ),
        "models": [str(model["name"]) for model in models],
        "container": str(
            _get(variables, "tfserving_container_name", DEFAULTS["tfserving_container_name"])
        ),
        "servers": servers,
    }


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"tfserving_monitoring_target": tfserving_monitoring_target}
