"""The audit's CIS checks and the firewall's address filters, on recorded Docker output.

The fixtures were recorded on a node converged by site.yml (molecule/security):
`docker info`, `docker inspect tfserving`, `docker network inspect bridge`, daemon.json,
and `docker inspect` of a container started with the Docker socket and a port on 0.0.0.0.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from plugin_files import load_plugin

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "docker_cis"


cis = load_plugin("filter", "docker_cis")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture
def node() -> dict[str, Any]:
    """The recorded converged node, as the audit playbook hands it to the filter."""
    tfserving = fixture("inspect-tfserving")
    return {
        "info": fixture("info"),
        "daemon": fixture("daemon"),
        "containers": [tfserving],
        "bridge": fixture("network-bridge"),
        "service_address": tfserving["HostConfig"]["PortBindings"]["8500/tcp"][0]["HostIp"],
    }


def audit(node: dict[str, Any], **changes: Any) -> dict[str, Any]:
    args = {**node, **changes}
    return cis.docker_cis_audit(
        args["info"],
        args["daemon"],
        args["containers"],
        args["bridge"],
        args["service_address"],
        args.get("exceptions"),
    )


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {row["item"]: row["status"] for row in report["rows"]}


def test_converged_node_passes_with_only_documented_or_optional_warnings(node) -> None:
    report = audit(node)
    assert report["failed"] == []
    warned = {i for i, s in statuses(report).items() if s == "WARN"}
    assert warned == {"2.9", "5.11", "5.12", "5.15"}
    applied = {e["item"] for e in report["exceptions"] if e["applied"]}
    assert applied == {"2.9", "5.15"}
    rows = {row["item"]: row for row in report["rows"]}
    assert "documented exception" in rows["5.15"]["found"]
    assert rows["5.4"]["found"] == "tfserving: drops ALL"


@pytest.mark.parametrize(
    ("item", "change"),
    [
        ("2.15", lambda n: n["info"].update(LiveRestoreEnabled=False)),
        ("2.16", lambda n: n["daemon"].pop("userland-proxy")),
        ("2.14", lambda n: n["daemon"].update({"no-new-privileges": False})),
        ("2.13", lambda n: n["daemon"]["log-opts"].pop("max-size")),
        (
            "2.2",
            lambda n: n["bridge"]["Options"].update(
                {"com.docker.network.bridge.enable_icc": "true"}
            ),
        ),
        ("5.13", lambda n: n["containers"][0]["HostConfig"].update(ReadonlyRootfs=False)),
        ("5.4", lambda n: n["containers"][0]["HostConfig"].update(CapDrop=None)),
        ("5.4", lambda n: n["containers"][0]["HostConfig"].update(CapAdd=["SYS_ADMIN"])),
        ("5.5", lambda n: n["containers"][0]["HostConfig"].update(Privileged=True)),
        ("5.29", lambda n: n["containers"][0]["HostConfig"].update(PidsLimit=None)),
        ("4.1", lambda n: n["containers"][0]["Config"].update(User="")),
    ],
)
def test_a_weakened_setting_fails_its_item_only(node, item: str, change) -> None:
    weakened = copy.deepcopy(node)
    change(weakened)
    report = audit(weakened)
    assert report["failed"] == [item]


def test_no_new_privileges_on_the_container_needs_it_there_or_in_the_daemon(node) -> None:
    weakened = copy.deepcopy(node)
    weakened["containers"][0]["HostConfig"]["SecurityOpt"] = None
    assert statuses(audit(weakened))["5.26"] == "PASS"  # the daemon default covers it
    weakened["daemon"]["no-new-privileges"] = False
    assert audit(weakened)["failed"] == ["2.14", "5.26"]


def test_intruder_with_socket_and_wide_port_fails_and_is_named(node) -> None:
    intruder = fixture("inspect-intruder")
    report = audit(node, containers=[*node["containers"], intruder])
    assert report["failed"] == ["5.14", "5.32"]
    rows = {row["item"]: row for row in report["rows"]}
    assert rows["5.32"]["found"] == "intruder: mounts /var/run/docker.sock"
    assert rows["5.14"]["found"] == "intruder: every interface 0.0.0.0:18080->80/tcp"
    # Not the project's container: missing hardening is reported, not failed.
    assert rows["5.13"]["status"] == "WARN"
    assert rows["5.13"]["found"] == "intruder: writable root filesystem"


def test_wide_port_is_only_a_warning_when_the_inventory_names_no_address(node) -> None:
    intruder = fixture("inspect-intruder")
    for address in ("", "0.0.0.0"):
        report = audit(node, containers=[intruder], service_address=address)
        assert statuses(report)["5.14"] == "WARN"


def test_stopped_containers_are_not_audited(node) -> None:
    intruder = copy.deepcopy(fixture("inspect-intruder"))
    intruder["State"]["Running"] = False
    assert audit(node, containers=[*node["containers"], intruder])["failed"] == []


def test_gpu_device_requests_are_a_documented_exception(node) -> None:
    gpu = copy.deepcopy(node)
    gpu["containers"][0]["HostConfig"]["DeviceRequests"] = [
        {"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}
    ]
    rows = {row["item"]: row for row in audit(gpu)["rows"]}
    assert rows["5.18"]["status"] == "WARN"
    assert rows["5.18"]["found"].endswith("(documented exception)")


def test_user_exceptions_add_and_drop(node) -> None:
    weakened = copy.deepcopy(node)
    weakened["info"]["LiveRestoreEnabled"] = False
    report = audit(weakened, exceptions={"2.15": "restarts are scheduled", "5.15": None})
    assert report["failed"] == []
    assert statuses(report)["2.15"] == "WARN"
    assert "5.15" not in {e["item"] for e in report["exceptions"]}
    assert statuses(report)["5.15"] == "WARN"  # unless-stopped, now without the exception


def test_table_lists_every_item_exceptions_and_verdict(node) -> None:
    lines = cis.docker_cis_table(audit(node))
    items = [line.split()[0] for line in lines[1:] if line[:1].isdigit()]
    assert items == [item for item, _, _ in cis.DAEMON_CHECKS + cis.CONTAINER_CHECKS]
    assert "documented exceptions:" in lines
    assert lines[-1] == "no FAIL"


# Firewall and published-port addresses -------------------------------------------------
