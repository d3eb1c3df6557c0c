"""The serving ports' firewall on a node without a load balancer (issue 23, items 1 and 2).

A stranger, a container on the scenario's network that is neither the controller nor in
tfserving_firewall_allow, tries each port the node publishes and the admin RPC
ModelService/HandleReloadConfigRequest (with the config the server already has, so a call
that gets through changes nothing). With the firewall off it gets through: the negative
control, which shows that the refusals after it come from the firewall. With the firewall
on it is refused on each port, and the controller still gets through. Then a reboot with a
broken rules file: the unit fails, docker does not start, the serving port stays closed,
and the play's next run (site.yml) puts the rules back and the node serves again.

Runs after test_faults.py (file order), which leaves half_plus_two's version 130 (the
inventory's expected answers) serving from a model root on a tmpfs; the reboot loses that
mount and the play's run restores the version. Leaves the host as converge does: the
firewall on, the server answering.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from converge_again import converge

SCENARIO_DIR = Path(__file__).resolve().parents[1]
SERVE = "../../playbooks/serve.yml"
HOST = "tfserving-debian12"
SCENARIO = os.environ.get("MOLECULE_SCENARIO_NAME", "default")
STRANGER = f"firewall-stranger-{SCENARIO}"
# The stand-in serving image (make setup builds it): a Python with grpcio for the stranger.
STRANGER_IMAGE = os.environ.get("STANDIN_TAG", "tfserving-standin:local")
STRANGER_PYTHON = "/opt/tfs-standin/bin/python"
RULES = "/etc/tfserving-firewall.rules"
DROPIN = "/etc/systemd/system/docker.service.d/tfserving-firewall.conf"

# Run in the stranger: a TCP connection to each port (open / refused / the error's name),
# then HandleReloadConfigRequest with the given serialized request on the first port.
PROBE = r"""
import json, socket, sys
import grpc
address, request = sys.argv[1], bytes.fromhex(sys.argv[3])
ports = [int(p) for p in sys.argv[2].split(",")]
seen = {}
for port in ports:
    try:
        socket.create_connection((address, port), timeout=5).close()
        seen[str(port)] = "open"
    except ConnectionRefusedError:
        seen[str(port)] = "refused"
    except OSError as error:
        seen[str(port)] = type(error).__name__
channel = grpc.insecure_channel(f"{address}:{ports[0]}")
reload = channel.unary_unary("/tensorflow.serving.ModelService/HandleReloadConfigRequest")
try:
    seen["reload"] = "OK " + reload(request, timeout=30).hex()
except grpc.RpcError as error:
    seen["reload"] = error.code().name
print(json.dumps(seen))
"""


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    """`docker ARGS` on the controller's engine (where the test hosts run)."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {result.stderr or result.stdout}")
    return result.stdout.strip()


def host_address() -> str:
    path = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / "test_hosts.yml"
    return yaml.safe_load(path.read_text())["all"]["hosts"][HOST]["test_host_address"]


def published_ports(host) -> list[int]:
    """The host ports the serving container publishes, all on the node's address."""
    bindings = json.loads(host.check_output("docker inspect tfserving"))[0]["HostConfig"][
        "PortBindings"
    ]
    found = {(b["HostIp"], int(b["HostPort"])) for each in bindings.values() for b in each}
    assert {address for address, _ in found} == {host_address()}, found
    ports = sorted(port for _, port in found)
    assert ports == [8500, 8501], ports  # gRPC first: the probe calls the RPC there
    return ports


def reload_request(host) -> str:
    """A ReloadConfigRequest holding the server's own config (hex): it changes nothing."""
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2

    request = model_management_pb2.ReloadConfigRequest()
    config = host.file("/srv/tfserving/config/models.config").content_string
    text_format.Parse(config, request.config)
    return request.SerializeToString().hex()


def probe(ports: list[int], request: str) -> dict[str, str]:
    """What the stranger sees of the node's ports and of the admin RPC."""
    out = docker(
        "exec", STRANGER, STRANGER_PYTHON, "-c", PROBE, host_address(),
        ",".join(map(str, ports)), request,
    )  # fmt: skip
    return json.loads(out.splitlines()[-1])


def controller_reaches(ports: list[int], timeout: float = 120) -> None:
    """The controller connects to every port and REST says the model is AVAILABLE."""
    address = host_address()
    deadline = time.monotonic() + timeout
    while True:
        try:
            for port in ports:
                socket.create_connection((address, port), timeout=5).close()
            reply = requests.get(f"http://{address}:8501/v1/models/half_plus_two", timeout=10)
            states = [v["state"] for v in reply.json()["model_version_status"]]
            if "AVAILABLE" in states:
                return
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the controller does not get through to {address} {ports}")
        time.sleep(2)


def on_host(*argv: str) -> str:
    """A command on the test host through `docker exec` (needs neither SSH nor the engine)."""
    return docker("exec", HOST, *argv, check=False, timeout=60)


def engine_state() -> tuple[str, str]:
    return on_host("systemctl", "is-active", "docker"), on_host(
        "systemctl", "is-active", "tfserving-firewall"
    )


@pytest.fixture(scope="module")
def stranger() -> Iterator[str]:
    """A container on the scenario's network, with the scenario's cleanup labels."""
    networks = json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", HOST))
    assert len(networks) == 1, networks
    ((network, settings),) = networks.items()
    docker("rm", "-f", STRANGER, check=False)
    docker(
        "run", "-d", "--rm", "--name", STRANGER, "--network", network,
        "--label", "owner=molecule", "--label", f"molecule-scenario={SCENARIO}",
        "--entrypoint", "sleep", STRANGER_IMAGE, "1800",
    )  # fmt: skip
    try:
        each = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        address = docker("inspect", "-f", each, STRANGER)
        # The controller reaches the host from the network's gateway (tfserving_firewall_allow).
        assert address not in (settings["Gateway"], host_address()), address
        yield STRANGER
    finally:
        docker("rm", "-f", STRANGER, check=False)


def test_the_firewall_is_on_and_the_engine_requires_it(host) -> None:
    # No load balancer and no monitoring host in this inventory: on all the same.
    assert host.check_output("systemctl is-active tfserving-firewall") == "active"
    assert "tfserving-firewall.service" in host.check_output("systemctl show -p Requires docker")
    assert "tfserving-firewall.service" in host.check_output("systemctl show -p After docker")
    chain = host.check_output("iptables -w -S TFSERVING-FW")
    for port in (8500, 8501):
        assert f"--ctorigdstport {port} -j REJECT" in chain, chain


def test_with_the_firewall_off_a_stranger_reaches_every_published_port(host, stranger) -> None:
    engine = host.check_output("systemctl show -p MainPID docker")
    result = converge(SCENARIO_DIR, {"tfserving_firewall_enabled": False}, playbook=SERVE)
    assert result.returncode == 0, result.stdout[-3000:]
    said = " ".join(result.stdout.split())
    address = host_address()
    assert f"tfserving_firewall_enabled is false on {HOST}" in said, said[-3000:]
    assert f"{address}:8500 (gRPC" in said and f"{address}:8501 (REST)" in said, said[-3000:]
    assert not host.file(DROPIN).exists
    assert "TFSERVING-FW" not in host.check_output("iptables -w -S")
    # Taking the firewall down left the engine running (its requirement went first).
    assert host.check_output("systemctl show -p MainPID docker") == engine

    from tensorflow_serving.apis import model_management_pb2

    ports = published_ports(host)
    seen = probe(ports, reload_request(host))
    assert seen["8500"] == seen["8501"] == "open", seen
    assert seen["reload"].startswith("OK "), seen
    reply = model_management_pb2.ReloadConfigResponse.FromString(bytes.fromhex(seen["reload"][3:]))
    assert reply.status.error_code == 0, reply


def test_with_the_firewall_on_the_stranger_is_refused_and_the_controller_gets_in(
    host, stranger
) -> None:
    engine = host.check_output("systemctl show -p MainPID docker")
    started = json.loads(host.check_output("docker inspect tfserving"))[0]["State"]["StartedAt"]
    result = converge(SCENARIO_DIR, playbook=SERVE)
    assert result.returncode == 0, result.stdout[-3000:]
    ports = published_ports(host)
    seen = probe(ports, reload_request(host))
    assert seen == {"8500": "refused", "8501": "refused", "reload": "UNAVAILABLE"}, seen
    controller_reaches(ports)
    # Putting the firewall in place restarted neither the engine nor the server.
    assert host.check_output("systemctl show -p MainPID docker") == engine
    state = json.loads(host.check_output("docker inspect tfserving"))[0]["State"]
    assert state["StartedAt"] == started and state["Running"] is True


def wait_for_boot(limit: float = 240) -> str:
    """Until systemd on the rebooted host has finished booting: running or degraded."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        state = on_host("systemctl", "is-system-running", "--wait")
        if state in ("running", "degraded"):
            return state
        time.sleep(2)  # PID 1 may not answer on its bus yet
    pytest.fail(f"{HOST} did not finish booting within {limit} s")


def test_a_reboot_with_broken_rules_keeps_the_port_closed_until_the_play_runs(
    host, stranger
) -> None:
    ports = published_ports(host)
    request = reload_request(host)
    docker("exec", HOST, "sh", "-c", f"echo 'this is not iptables-restore input' > {RULES}")
    docker("restart", "-t", "30", HOST)
    wait_for_boot()  # every start job is done, the engine's included
    docker_state, firewall_state = engine_state()
    assert docker_state in ("inactive", "failed") and firewall_state == "failed", on_host(
        "journalctl", "-b", "-u", "tfserving-firewall", "-u", "docker", "--no-pager"
    )
    # Nothing listens and nothing forwards: no port answers, and the admin RPC never arrives.
    seen = probe(ports, request)
    assert "open" not in (seen["8500"], seen["8501"]), seen
    assert not seen["reload"].startswith("OK"), seen

    # The play's next run writes the rules again before it starts the engine.
    result = converge(SCENARIO_DIR)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "did not load, so docker.service, which requires it, does not start" in " ".join(
        result.stdout.split()
    ), result.stdout[-4000:]
    assert engine_state() == ("active", "active")
    assert "TFSERVING-FW" in host.file(RULES).content_string
    controller_reaches(ports)
    seen = probe(ports, request)
    assert seen == {"8500": "refused", "8501": "refused", "reload": "UNAVAILABLE"}, seen
