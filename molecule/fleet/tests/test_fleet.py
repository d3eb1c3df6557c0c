"""The fleet under load: gRPC through the load balancer while the fleet changes.

Tests run in file order: the converged fleet first (registry, image by digest, load
balancer), then phases that change the fleet while a controller thread sends Predict
calls through the load balancer and checks every answer. Each phase must end with 0
failed requests; its count, p50 and p99 are printed (pytest -s / molecule's verifier output)
and appended to $FLEET_PHASES_REPORT when that is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import yaml
from converge_again import PROJECT_DIR, converge
from tfs_client.api import Client, ModelRef
from tfs_client.errors import RpcError

SCENARIO_DIR = Path(__file__).resolve().parents[1]
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))
MODELS = EPHEMERAL / "models"
LB = "fleet-lb"
NODES = ("fleet-node1", "fleet-node2", "fleet-node3")
SITE = "../../site.yml"
PLAYBOOKS = "../../playbooks"
OLD = [2.5, 3.0, 4.5]  # half_plus_two of [1, 2, 5]
NEW = [3.5, 4.0, 5.5]  # half_plus_three: the version the rollout brings
# Variables the later phases keep (an image change stays in place for what follows).
FLEET_VARS: dict[str, object] = {}


def addresses() -> dict[str, str]:
    hosts = yaml.safe_load((EPHEMERAL / "inventory" / "test_hosts.yml").read_text())
    return {name: v["test_host_address"] for name, v in hosts["all"]["hosts"].items()}


def on(host: str, *argv: str, check: bool = True) -> str:
    return subprocess.run(
        ["docker", "exec", host, *argv], capture_output=True, text=True, check=check, timeout=120
    ).stdout.strip()


def lb_servers() -> dict[str, dict[str, str]]:
    """show stat of the gRPC backend: server name -> its row."""
    out = on(LB, "sh", "-c", 'echo "show stat" | socat stdio unix-connect:/run/haproxy/admin.sock')
    lines = [line for line in out.splitlines() if line.strip()]
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]
    return {
        r["svname"]: r
        for r in rows
        if r["pxname"] == "tfserving_grpc" and r["svname"] not in ("FRONTEND", "BACKEND")
    }


def wait_all_up(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {name: row["status"] for name, row in lb_servers().items()}
        if set(states.values()) == {"UP"}:
            return
        time.sleep(1)
    pytest.fail(f"not every node UP at the load balancer after {timeout} s: {states}")


def container_id(node: str) -> str:
    return on(node, "docker", "inspect", "-f", "{{.Id}}", "tfserving")


def run(playbook: str, extra: dict[str, object] | None = None) -> subprocess.CompletedProcess[str]:
    return converge(SCENARIO_DIR, {**FLEET_VARS, **(extra or {})}, playbook=playbook)


class Traffic(threading.Thread):
    """Predict calls through the load balancer until stopped (bounded in count and time)."""

    def __init__(self, allowed: list[list[float]], workers: int = 3, max_seconds: float = 900):
        super().__init__(daemon=True)
        self.target = f"{addresses()[LB]}:8500"
        self.allowed = [np.array(a, np.float32) for a in allowed]
        self.workers = workers
        self.deadline = time.monotonic() + max_seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.answers: list[tuple[float, ...]] = []
        self.failures: list[str] = []

    def _work(self) -> None:
        client = Client(self.target, timeout=20)
        x = np.array([[1.0], [2.0], [5.0]], np.float32)
        try:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                if len(self.latencies) >= 200_000:
                    break
                start = time.perf_counter()
                try:
                    y = client.predict(ModelRef("half_plus_two"), {"x": x}).outputs["y"].ravel()
                    ok = any(np.allclose(y, a) for a in self.allowed)
                    error = None if ok else f"unexpected answer {y.tolist()}"
                except RpcError as exc:
                    error = str(exc)
                elapsed = time.perf_counter() - start
                with self.lock:
                    self.latencies.append(elapsed)
                    if error:
                        self.failures.append(error)
                    else:
                        self.answers.append(tuple(round(float(v), 3) for v in y))
                time.sleep(0.01)
        finally:
            client.close()

    def run(self) -> None:
        threads = [threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def finish(self, phase: str) -> dict[str, object]:
        time.sleep(1)
        self.stop.set()
        self.join(timeout=60)
        ordered = sorted(self.latencies)
        report = {
            "phase": phase,
            "requests": len(ordered),
            "failed": len(self.failures),
            "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1) if ordered else None,
        }
        print("FLEET PHASE", json.dumps(report))
        if os.environ.get("FLEET_PHASES_REPORT"):
            with open(os.environ["FLEET_PHASES_REPORT"], "a") as out:
                out.write(json.dumps(report) + "\n")
        return report


def test_every_node_runs_the_image_by_digest_from_the_registry() -> None:
    registry = f"{addresses()[LB]}:5000/tfserving-fleet/tensorflow-serving@sha256:"
    images = {
        node: on(node, "docker", "inspect", "-f", "{{.Config.Image}}", "tfserving")
        for node in NODES
    }
    assert all(ref.startswith(registry) for ref in images.values()), images
    assert len(set(images.values())) == 1, images
    ids = {node: on(node, "docker", "inspect", "-f", "{{.Image}}", "tfserving") for node in NODES}
    assert len(set(ids.values())) == 1, ids


def test_registry_refuses_anonymous_requests_and_trusts_only_its_ca() -> None:
    ca = EPHEMERAL / "inventory" / ".tfserving-registry" / "ca.crt"
    reply = requests.get(f"https://{addresses()[LB]}:5000/v2/", verify=str(ca), timeout=10)
    assert reply.status_code == 401
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{addresses()[LB]}:5000/v2/", timeout=10)
    for node in NODES:
        path = f"/etc/docker/certs.d/{addresses()[LB]}:5000/ca.crt"
        assert on(node, "cat", path) == ca.read_text().strip()


def test_lb_balances_each_rpc_of_one_connection_across_the_nodes() -> None:
    before = {name: int(row["stot"]) for name, row in lb_servers().items()}
    with Client(f"{addresses()[LB]}:8500", timeout=10) as client:
        for _ in range(30):
            y = client.predict(ModelRef("half_plus_two"), {"x": np.array([[1.0]], np.float32)})
            assert y.outputs["y"].ravel().tolist() == [2.5]
    after = {name: int(row["stot"]) for name, row in lb_servers().items()}
    served = {name: after[name] - before[name] for name in NODES}
    assert all(count >= 5 for count in served.values()), served


def test_lb_refuses_the_reload_config_rpc() -> None:
    channel = grpc.insecure_channel(f"{addresses()[LB]}:8500")
    call = channel.unary_unary(
        "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as error:
        call(b"", timeout=10)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    channel.close()


def test_lb_exports_prometheus_metrics_and_rest_is_off() -> None:
    text = requests.get(f"http://{addresses()[LB]}:8405/metrics", timeout=10).text
    assert 'haproxy_server_status{proxy="tfserving_grpc",server="fleet-node1"' in text
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://{addresses()[LB]}:8501/v1/models/half_plus_two", timeout=5)


def test_lb_config_checks_the_served_model() -> None:
    config = on(LB, "cat", "/etc/haproxy/haproxy.cfg")
    assert "uri /v1/models/half_plus_two" in config
    assert on(LB, "haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg").endswith("valid")


def test_phase_a_new_model_version_rolls_across_the_fleet() -> None:
    shutil.copytree(
        Path(os.environ["TFSERVING_TESTDATA"]) / "saved_model_half_plus_three" / "00000123",
        MODELS / "half_plus_two" / "124",
    )
    containers = {node: container_id(node) for node in NODES}
    traffic = Traffic([OLD, NEW])
    traffic.start()
    result = run(f"{PLAYBOOKS}/serve.yml")
    report = traffic.finish("a: model version")
    assert result.returncode == 0, result.stdout[-4000:]
    assert report["failed"] == 0, traffic.failures[:5]
    assert traffic.answers[0] == tuple(OLD) and traffic.answers[-1] == tuple(NEW)
    # A model version needs no restart.
    assert {node: container_id(node) for node in NODES} == containers
    wait_all_up()


def test_phase_c_a_server_killed_mid_traffic_costs_no_request() -> None:
    traffic = Traffic([NEW])
    traffic.start()
    time.sleep(3)
    pid = on("fleet-node2", "docker", "inspect", "-f", "{{.State.Pid}}", "tfserving")
    on("fleet-node2", "kill", "-KILL", pid)
    time.sleep(3)
    wait_all_up(timeout=150)
    report = traffic.finish("c: server SIGKILLed")
    assert report["failed"] == 0, traffic.failures[:5]
    restarts = on("fleet-node2", "docker", "inspect", "-f", "{{.RestartCount}}", "tfserving")
    assert int(restarts) >= 1


def test_phase_b_image_change_recreates_every_container_node_by_node() -> None:
    # A rebuilt image with a new tag, on the builder; the rollout pushes and pulls it.
    on(
        "fleet-node1",
        "sh",
        "-c",
        "printf 'FROM tfserving-standin:local\\nLABEL org.tfserving-fleet.test=rebuilt\\n'"
        " | docker build -q -t tfserving-standin:rebuilt -",
    )
    new_id = on(
        "fleet-node1", "docker", "image", "inspect", "-f", "{{.Id}}", "tfserving-standin:rebuilt"
    )
    FLEET_VARS.update(
        tfserving_image_source="pull",
        tfserving_image_pull_name="tfserving-standin",
        tfserving_image_pull_tag="rebuilt",
    )
    containers = {node: container_id(node) for node in NODES}
    traffic = Traffic([NEW])
    traffic.start()
    result = run(SITE)
    report = traffic.finish("b: image change")
    assert result.returncode == 0, result.stdout[-4000:]
    assert report["failed"] == 0, traffic.failures[:5]
    for node in NODES:
        assert container_id(node) != containers[node], node
        assert on(node, "docker", "inspect", "-f", "{{.Image}}", "tfserving") == new_id
    # One node at a time: each recreation happened in its own batch.
    batches = [line for line in result.stdout.splitlines() if "PLAY [Deploy the models" in line]
    assert len(batches) == 3, batches
    wait_all_up()


def test_phase_e_daemon_json_change_rolls_across_the_fleet() -> None:
    FLEET_VARS["docker_daemon_options"] = {"log-opts": {"max-size": "20m", "max-file": "2"}}
    started = {
        node: on(node, "systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "docker")
        for node in NODES
    }
    traffic = Traffic([NEW])
    traffic.start()
    result = run(f"{PLAYBOOKS}/docker.yml")
    report = traffic.finish("e: daemon.json change")
    assert result.returncode == 0, result.stdout[-4000:]
    assert report["failed"] == 0, traffic.failures[:5]
    for node in NODES:
        daemon = json.loads(on(node, "cat", "/etc/docker/daemon.json"))
        assert daemon["log-opts"]["max-size"] == "20m"
        now = on(node, "systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "docker")
        assert now != started[node], f"docker was not restarted on {node}"
    wait_all_up()


def test_phase_d_corrupt_version_stops_the_rollout_after_the_first_batch() -> None:
    corrupt = MODELS / "half_plus_two" / "125"
    shutil.copytree(MODELS / "half_plus_two" / "124", corrupt)
    (corrupt / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    traffic = Traffic([NEW])
    traffic.start()
    result = run(f"{PLAYBOOKS}/serve.yml")
    report = traffic.finish("d: corrupt version")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "did not pass the readiness gate" in output, output[-4000:]
    assert report["failed"] == 0, traffic.failures[:5]
    servers = lb_servers()
    # The failed node stays out; the others never saw the version and stay in.
    assert servers["fleet-node1"]["status"] == "DRAIN", servers["fleet-node1"]["status"]
    for node in ("fleet-node2", "fleet-node3"):
        assert servers[node]["status"] == "UP"
        assert on(node, "sh", "-c", "ls /srv/tfserving/models/half_plus_two") == "124"
    assert on("fleet-node1", "sh", "-c", "ls /srv/tfserving/models/half_plus_two") == "124"
    shutil.rmtree(corrupt)


def test_no_run_printed_the_registry_password() -> None:
    password = (EPHEMERAL / "inventory" / ".tfserving-registry" / "password").read_text().split()[0]
    assert len(password) == 32
    result = run(f"{PLAYBOOKS}/image.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert password not in result.stdout + result.stderr
    changed = re.findall(r"changed=(\d+)", result.stdout.split("PLAY RECAP")[-1])
    assert changed and set(changed) == {"0"}, result.stdout[-2000:]


def test_project_root_is_unchanged_by_the_tests() -> None:
    assert not (PROJECT_DIR / ".tfserving-registry").exists()
