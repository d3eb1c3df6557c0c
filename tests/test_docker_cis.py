"""The audit's CIS checks (plugins/filter/docker_cis.py) on recorded Docker output; the
audit playbook runs on a live host in molecule/default (tests/test_audit.py).

The fixtures were recorded on a test host converged by site.yml:
`docker info`, `docker inspect tfserving`, `docker network inspect bridge`, daemon.json,
and `docker inspect` of a container started with the Docker socket and a port on 0.0.0.0.
The dangerous container below is written as `docker inspect` showed it on Docker 20.10
(Debian 12's docker.io, the engine of the test hosts), running and exited.
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


def test_a_stopped_intruder_is_audited_too(node) -> None:
    """Stopped, it still holds the socket mount and binds 0.0.0.0 when started again (a
    stopped container shows no NetworkSettings.Ports: its PortBindings say where)."""
    intruder = stopped(fixture("inspect-intruder"))
    intruder["NetworkSettings"]["Ports"] = {}
    report = audit(node, containers=[*node["containers"], intruder])
    assert report["failed"] == ["5.14", "5.32"]
    rows = {row["item"]: row for row in report["rows"]}
    assert rows["5.32"]["found"] == "intruder (exited): mounts /var/run/docker.sock"
    assert rows["5.14"]["found"] == "intruder (exited): every interface 0.0.0.0:18080->80/tcp"


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
    assert report["failed"] == ["5.15"]
    assert "5.15" not in {e["item"] for e in report["exceptions"]}
    assert statuses(report)["2.15"] == "WARN"
    # unless-stopped, now without the exception: the project's container must meet it.
    report = audit(node, exceptions={"5.15": None})
    assert report["failed"] == ["5.15"]


def test_table_lists_every_item_exceptions_and_verdict(node) -> None:
    lines = cis.docker_cis_table(audit(node))
    items = [line.split()[0] for line in lines[1:] if line[:1].isdigit()]
    assert items == [item for item, _, _ in cis.DAEMON_CHECKS + cis.CONTAINER_CHECKS]
    assert "documented exceptions:" in lines
    assert lines[-1] == "no FAIL"


# The dangerous container of issue 23 ------------------------------------------------------

DANGEROUS = "dangerous"
# docker run --network host --pid host --ipc host --uts host -v /:/host:ro
#   --security-opt seccomp=unconfined --security-opt apparmor=unconfined --device /dev/mem
# (--pid host adds label=disable; an engine without AppArmor shows no AppArmorProfile).
DANGEROUS_HOST_CONFIG: dict[str, Any] = {
    "NetworkMode": "host",
    "PidMode": "host",
    "IpcMode": "host",
    "UTSMode": "host",
    "SecurityOpt": ["seccomp=unconfined", "apparmor=unconfined", "label=disable"],
    "Devices": [
        {"PathOnHost": "/dev/mem", "PathInContainer": "/dev/mem", "CgroupPermissions": "rwm"}
    ],
    "Binds": ["/:/host:ro"],
    "PortBindings": {},
}
DANGEROUS_MOUNTS = [
    {
        "Type": "bind",
        "Source": "/",
        "Destination": "/host",
        "Mode": "ro",
        "RW": False,
        "Propagation": "rslave",
    }
]
# Each item the dangerous container fails, and what the row says of it.
DANGEROUS_FOUND = json.loads((FIXTURES / "dangerous-found.json").read_text())["found"]


def stopped(container: dict[str, Any]) -> dict[str, Any]:
    """The container as `docker inspect` shows it once its process has exited."""
    container = copy.deepcopy(container)
    container["State"].update(Status="exited", Running=False, Pid=0, ExitCode=0)
    return container


def stranger(name: str = "stranger") -> dict[str, Any]:
    """A container beside the server that is not the project's and does nothing wrong that
    fails: the recorded intruder without its socket mount and its port."""
    container = copy.deepcopy(fixture("inspect-intruder"))
    container["Name"] = f"/{name}"
    container["Mounts"] = []
    container["HostConfig"].update(Binds=None, PortBindings={})
    container["NetworkSettings"]["Ports"] = {}
    return container


def dangerous(running: bool = True) -> dict[str, Any]:
    container = stranger(DANGEROUS)
    container["HostConfig"].update(copy.deepcopy(DANGEROUS_HOST_CONFIG))
    container["Mounts"] = copy.deepcopy(DANGEROUS_MOUNTS)
    container["NetworkSettings"]["Networks"] = {"host": {"NetworkID": "host"}}
    return container if running else stopped(container)


def test_a_stranger_beside_the_server_fails_nothing(node) -> None:
    assert audit(node, containers=[*node["containers"], stranger()])["failed"] == []


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_the_dangerous_container_fails_each_item_naming_it(node, running: bool) -> None:
    report = audit(node, containers=[*node["containers"], dangerous(running)])
    assert report["failed"] == list(DANGEROUS_FOUND)
    rows = {row["item"]: row for row in report["rows"]}
    name = DANGEROUS if running else f"{DANGEROUS} (exited)"
    for item, found in DANGEROUS_FOUND.items():
        assert rows[item]["status"] == "FAIL", item
        assert rows[item]["found"] == f"{name}: {found}", item
    # The table names them too, and its verdict lists them.
    assert cis.docker_cis_table(report)[-1] == "FAIL: " + ", ".join(DANGEROUS_FOUND)


@pytest.mark.parametrize(
    ("item", "change"),
    [
        ("5.10", lambda c: c["HostConfig"].update(NetworkMode="host")),
        ("5.16", lambda c: c["HostConfig"].update(PidMode="host", SecurityOpt=["label=disable"])),
        ("5.17", lambda c: c["HostConfig"].update(IpcMode="host")),
        ("5.21", lambda c: c["HostConfig"].update(UTSMode="host")),
        ("5.22", lambda c: c["HostConfig"].update(SecurityOpt=["seccomp=unconfined"])),
        ("5.22", lambda c: c["HostConfig"].update(SecurityOpt=["seccomp:unconfined"])),
        ("5.2", lambda c: c["HostConfig"].update(SecurityOpt=["apparmor=unconfined"])),
        ("5.2", lambda c: c.update(AppArmorProfile="unconfined")),
        ("5.18", lambda c: c["HostConfig"].update(Devices=DANGEROUS_HOST_CONFIG["Devices"])),
        ("5.15", lambda c: c["HostConfig"].update(RestartPolicy={"Name": "always"})),
        ("5.15", lambda c: c["HostConfig"].update(RestartPolicy={"Name": "unless-stopped"})),
    ],
)
@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_each_dangerous_setting_alone_fails_its_item(node, item, change, running) -> None:
    container = stranger()
    change(container)
    container = container if running else stopped(container)
    report = audit(node, containers=[*node["containers"], container])
    assert report["failed"] == [item]


@pytest.mark.parametrize(
    ("source", "items"),
    [
        ("/", ["5.6", "5.32"]),
        ("/etc", ["5.6"]),
        ("/etc/", ["5.6"]),
        ("/etc/shadow", ["5.6"]),
        ("/boot", ["5.6"]),
        ("/usr", ["5.6"]),
        ("/proc", ["5.6"]),
        ("/sys", ["5.6"]),
        ("/dev", ["5.6"]),
        ("/lib", ["5.6"]),
        ("/var/run/docker.sock", ["5.32"]),
        ("/run/docker.sock", ["5.32"]),
        ("/run/containerd/containerd.sock", ["5.32"]),
        ("/var/run/containerd/containerd.sock", ["5.32"]),
        ("/run/user/1000/docker.sock", ["5.32"]),
        ("/run", ["5.32"]),
        ("/var/run", ["5.32"]),
        ("/run/containerd", ["5.32"]),
        ("/var", ["5.32"]),
        ("/srv/data", []),
        ("/etcetera", []),
        ("/var/lib/docker/volumes/data/_data", []),
    ],
)
def test_sensitive_host_mounts_fail(node, source: str, items: list[str]) -> None:
    container = stranger()
    container["Mounts"] = [{"Type": "bind", "Source": source, "Destination": "/x", "RW": False}]
    report = audit(node, containers=[*node["containers"], container])
    assert report["failed"] == items


# Exceptions cover the project's labelled container only --------------------------------


def test_the_restart_exception_covers_only_the_labelled_server(node) -> None:
    """The serving container restarts unless-stopped (the documented exception); an
    unlabelled container with the same policy fails 5.15, naming it, not the server."""
    other = stranger()
    other["HostConfig"]["RestartPolicy"] = copy.deepcopy(
        node["containers"][0]["HostConfig"]["RestartPolicy"]
    )
    report = audit(node, containers=[*node["containers"], other])
    assert report["failed"] == ["5.15"]
    rows = {row["item"]: row for row in report["rows"]}
    assert rows["5.15"]["found"] == "stranger: unless-stopped"
    # Alone, the server's own row is the documented exception.
    assert "tfserving: unless-stopped (documented exception)" in {
        row["found"] for row in audit(node)["rows"]
    }


def test_the_gpu_exception_covers_only_the_labelled_server(node) -> None:
    gpus = [{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}]
    gpu_node = copy.deepcopy(node)
    gpu_node["containers"][0]["HostConfig"]["DeviceRequests"] = gpus
    other = stranger()
    other["HostConfig"]["DeviceRequests"] = copy.deepcopy(gpus)
    report = audit(gpu_node, containers=[*gpu_node["containers"], other])
    assert report["failed"] == ["5.18"]
    rows = {row["item"]: row for row in report["rows"]}
    assert rows["5.18"]["found"] == "stranger: GPUs (device_requests)"


def test_the_gpu_exception_does_not_cover_host_devices_on_the_server(node) -> None:
    weakened = copy.deepcopy(node)
    weakened["containers"][0]["HostConfig"]["Devices"] = DANGEROUS_HOST_CONFIG["Devices"]
    report = audit(weakened)
    assert report["failed"] == ["5.18"]
    rows = {row["item"]: row for row in report["rows"]}
    assert rows["5.18"]["found"] == "tfserving: host devices /dev/mem"


def test_the_label_must_name_the_serving_role(node) -> None:
    """A container that only carries the label key (or another role) is not the server."""
    for labels in ({"org.tfserving-fleet.role": "other"}, {"org.tfserving-fleet.source": "x"}):
        other = stranger()
        other["Config"]["Labels"] = labels
        other["HostConfig"]["RestartPolicy"] = {"Name": "unless-stopped"}
        assert audit(node, containers=[*node["containers"], other])["failed"] == ["5.15"]


def test_user_exceptions_for_container_items_do_not_cover_other_containers(node) -> None:
    report = audit(
        node,
        containers=[*node["containers"], dangerous()],
        exceptions={item: "accepted" for item in DANGEROUS_FOUND},
    )
    assert report["failed"] == list(DANGEROUS_FOUND)
    assert not any(e["applied"] for e in report["exceptions"] if e["item"] in DANGEROUS_FOUND)


def test_a_stopped_copy_of_the_server_passes_like_the_server(node) -> None:
    """The previous container a rollout keeps (stopped, labelled) is audited as the server."""
    previous = stopped(node["containers"][0])
    previous["Name"] = "/tfserving-previous"
    report = audit(node, containers=[*node["containers"], previous])
    assert report["failed"] == []
    rows = {row["item"]: row for row in report["rows"]}
    assert rows["5.15"]["found"] == (
        "tfserving: unless-stopped (documented exception); "
        "tfserving-previous (exited): unless-stopped (documented exception)"
    )


# Firewall and published-port addresses -------------------------------------------------
