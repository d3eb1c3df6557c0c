"""The fleet under load: gRPC through the load balancer while the fleet changes.

Tests run in file order: the converged fleet first (registry, image by digest, load
balancer), then phases that change the fleet while a controller thread sends Predict
calls through the load balancer and checks every answer. Each phase must end with 0
failed requests; its count, p50 and p99 are printed (pytest -s / molecule's verifier output)
and appended to $FLEET_PHASES_REPORT when that is set.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import testinfra
import testinfra.host
import yaml
from converge_again import PROJECT_DIR, converge
from tfs_client.api import Client, ModelRef
from tfs_client.errors import RpcError

SCENARIO_DIR = Path(__file__).resolve().parents[1]
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))
MODELS = EPHEMERAL / "models"
LB = "fleet-lb"
NODES = ("fleet-node1", "fleet-node2", "fleet-node3")
PLAYBOOKS = "../../playbooks"
OLD = [2.5, 3.0, 4.5]  # half_plus_two of [1, 2, 5]
NEW = [3.5, 4.0, 5.5]  # half_plus_three: the version the rollout brings
# An input outside the smoke's range (files/samples/half_plus_two.json): the strict test
# model (scripts/make_test_models.py) refuses it with INVALID_ARGUMENT.
WIDE = [[1.0], [2.0], [150.0]]
# Variables the later phases keep (an image change stays in place for what follows).
# Rolling changes go one node first, then half of the rest at a time.
FLEET_VARS: dict[str, object] = {"tfserving_rollout_batch": [1, "50%"]}
BUILDER = "fleet-node1"
IMAGE_NAME = "tfserving-fleet/tensorflow-serving"
LABEL = "org.tfserving-fleet"
IMAGE_FACT = "/etc/ansible/facts.d/tfserving_image.fact"
GPU_FACT = "/etc/ansible/facts.d/nvidia_container_toolkit.fact"
# The image change: a build from the TF Serving repository fixture (prepare.yml).
FIXTURE_URL = "file:///srv/fixtures/tfserving-repo"
# The commit of each tag of the fixture's repositories (make-repos.sh makes the same ones
# every run; tests/test_tfserving_image_role.py checks them): a build is pinned to a commit.
FIXTURE_COMMITS = yaml.safe_load((SCENARIO_DIR / "fixtures" / "commits.yml").read_text())
BUILT_VERSION = "slow"
BUILT_REF = f"{IMAGE_NAME}:{BUILT_VERSION}"
BUILD_VARS: dict[str, object] = {
    "tfserving_image_source": "build",
    "tfserving_image_repo_url": FIXTURE_URL,
    "tfserving_image_repo_version": BUILT_VERSION,
    "tfserving_image_repo_commit": FIXTURE_COMMITS["tfserving-repo"][BUILT_VERSION],
    "tfserving_image_build_pull": False,
    "tfserving_image_build_ram_mb": 2048,
    "tfserving_image_build_poll_interval": 2,
    "tfserving_image_build_timeout": 600,
}


def addresses() -> dict[str, str]:
    hosts = yaml.safe_load((EPHEMERAL / "inventory" / "test_hosts.yml").read_text())
    return {name: v["test_host_address"] for name, v in hosts["all"]["hosts"].items()}


@functools.cache
def remote(host: str) -> testinfra.host.Host:
    """The host over the scenario's own connection (SSH as its user, commands under sudo)."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    return testinfra.get_host(f"ansible://{host}", ansible_inventory=str(inventory), sudo=True)


def on(host: str, *argv: str, check: bool = True) -> str:
    result = remote(host).run(shlex.join(argv))
    if check and result.rc != 0:
        raise AssertionError(f"{host}: {shlex.join(argv)} exited {result.rc}: {result.stderr}")
    return result.stdout.strip()


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
    """Predict calls through the load balancer until stopped (bounded in count and time).

    Each worker pauses `pause` seconds between calls (about 40 calls a second in all): the
    test hosts, the load balancer and this client share two cores, and a flat-out client
    slows the very rollouts it watches.
    """

    def __init__(
        self,
        allowed: list[list[float]],
        workers: int = 2,
        max_seconds: float = 900,
        pause: float = 0.04,
        wide_every: int = 0,
    ):
        super().__init__(daemon=True)
        self.target = f"{addresses()[LB]}:8500"
        self.allowed = [np.array(a, np.float32) for a in allowed]
        self.workers = workers
        self.pause = pause
        # Every wide_every-th call of a worker sends an input outside the smoke's range
        # (WIDE); its failures are kept apart too (wide_failures).
        self.wide_every = wide_every
        self.wide_sent = 0
        self.wide_failures: list[str] = []
        self.started = time.monotonic()
        self.deadline = self.started + max_seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.answers: list[tuple[float, ...]] = []
        self.failures: list[str] = []
        self.times: list[float] = []
        self.threads: list[threading.Thread] = []

    def _work(self) -> None:
        client = Client(self.target, timeout=20)
        x = np.array([[1.0], [2.0], [5.0]], np.float32)
        x_wide = np.array(WIDE, np.float32)
        allowed_wide = [np.array([v * 0.5 + c for v in np.ravel(WIDE)]) for c in (2.0, 3.0)]
        calls = 0
        try:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                if len(self.latencies) >= 200_000:
                    break
                calls += 1
                wide = self.wide_every > 0 and calls % self.wide_every == 0
                start = time.perf_counter()
                try:
                    outputs = client.predict(
                        ModelRef("half_plus_two"), {"x": x_wide if wide else x}
                    )
                    y = outputs.outputs["y"].ravel()
                    allowed = allowed_wide if wide else self.allowed
                    ok = any(y.shape == a.shape and np.allclose(y, a) for a in allowed)
                    error = None if ok else f"unexpected answer {y.tolist()}"
                except RpcError as exc:
                    error = str(exc)
                except Exception as exc:  # a malformed answer counts, and the worker goes on
                    error = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - start
                with self.lock:
                    self.latencies.append(elapsed)
                    self.times.append(time.monotonic())
                    self.wide_sent += wide
                    if error:
                        self.failures.append(error)
                        if wide:
                            self.wide_failures.append(error)
                    else:
                        self.answers.append(tuple(round(float(v), 3) for v in y))
                time.sleep(self.pause)
        finally:
            client.close()

    def run(self) -> None:
        self.threads = [
            threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)
        ]
        for t in self.threads:
            t.start()
        for t in self.threads:
            t.join()

    def finish(self, phase: str) -> dict[str, object]:
        time.sleep(1)
        alive = sum(t.is_alive() for t in self.threads)
        ended = time.monotonic()
        self.stop.set()
        self.join(timeout=60)
        ordered = sorted(self.latencies)
        # Requests throughout the phase: every worker still sending at its end, and no gap
        # between answers longer than one call's timeout (20 s) and its pause.
        ends = [self.started, *sorted(t for t in self.times if t <= ended), ended]
        longest_gap = max(b - a for a, b in itertools.pairwise(ends))
        report = {
            "phase": phase,
            "requests": len(ordered),
            "failed": len(self.failures),
            "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1) if ordered else None,
            "seconds": round(time.monotonic() - self.started),
            "longest_gap_s": round(longest_gap, 1),
        }
        print("FLEET PHASE", json.dumps(report))
        if os.environ.get("FLEET_PHASES_REPORT"):
            with open(os.environ["FLEET_PHASES_REPORT"], "a") as out:
                out.write(json.dumps(report) + "\n")
        assert alive == self.workers, f"{phase}: {self.workers - alive} load worker(s) ended early"
        assert ordered, f"{phase}: no request was sent"
        assert longest_gap < 25, f"{phase}: no request answered for {longest_gap:.0f} s"
        return report


SHOW_STATE = (
    "echo 'show servers state tfserving_grpc' | socat stdio unix-connect:/run/haproxy/admin.sock"
)


class AdminStates(threading.Thread):
    """`show servers state` of the gRPC backend on the load balancer every 0.5 s, until
    stopped (bounded: 1500 looks, 12.5 minutes), timed by the load balancer's clock (the
    test hosts share this machine's). ``drained[node]`` lists the times a look saw the node
    drained or in maintenance; ``looks`` the times of every look."""

    STOP = "/tmp/admin-states.stop"

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.looks: list[float] = []
        self.drained: dict[str, list[float]] = {node: [] for node in NODES}
        self.rows: list[tuple[float, str, int]] = []

    def run(self) -> None:
        script = (
            f"rm -f {self.STOP}; i=0; while [ ! -e {self.STOP} ] && [ $i -lt 1500 ]; do "
            "echo T $(date +%s.%N); "
            f"{SHOW_STATE}; "
            "i=$((i+1)); sleep 0.5; done"
        )
        out = on(LB, "sh", "-c", script)
        now = 0.0
        for line in out.splitlines():
            fields = line.split()
            if fields[:1] == ["T"]:
                now = float(fields[1])
                self.looks.append(now)
            elif len(fields) > 6 and fields[1] == "tfserving_grpc" and fields[3] in self.drained:
                admin = int(fields[6])
                self.rows.append((now, fields[3], admin))
                if admin:
                    self.drained[fields[3]].append(now)

    def finish(self) -> None:
        on(LB, "touch", self.STOP)
        self.join(timeout=60)
        assert len(self.looks) >= 10, f"only {len(self.looks)} looks at the load balancer"

    def window(self, node: str) -> tuple[float, float] | None:
        """From the first look that saw the node drained to the first look after the last."""
        seen = self.drained[node]
        if not seen:
            return None
        after = [t for t in self.looks if t > seen[-1]]
        return seen[0], after[0] if after else seen[-1] + 0.5


def admin_states() -> dict[str, int]:
    """srv_admin_state of each node in the gRPC backend (0: ready; drain or maintenance else)."""
    rows = [line.split() for line in on(LB, "sh", "-c", SHOW_STATE).splitlines()]
    return {r[3]: int(r[6]) for r in rows if len(r) > 6 and r[1] == "tfserving_grpc"}


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host (the last recap of the output)."""
    rows = re.findall(
        r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M
    )
    return {h: {"ok": int(o), "changed": int(c), "failed": int(f)} for h, o, c, _, f in rows}


def changed_tasks(output: str) -> list[str]:
    """'host: task' for every task of the output that reported a change."""
    changed, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[6:].split("]", 1)[0]
        elif match := re.match(r"changed: \[([^\]]+)\]", line):
            changed.append(f"{match.group(1)}: {task}")
    return changed


def test_a_no_op_run_under_traffic_drains_nothing_and_changes_nothing() -> None:
    """The idempotence run (the scenario's converge again, at its batch of 100%) with
    traffic through the load balancer, which is watched all along: no node leaves READY."""
    traffic = Traffic([OLD])
    states = AdminStates()
    traffic.start()
    states.start()
    start = time.monotonic()
    result = converge(SCENARIO_DIR)
    elapsed = time.monotonic() - start
    states.finish()
    report = traffic.finish("no-op converge")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    counters = recap(output)
    assert set(counters) >= {LB, *NODES}, counters
    changed = {h: c["changed"] for h, c in counters.items() if c["changed"]}
    assert changed == {}, "\n".join(changed_tasks(output))
    assert {node: times for node, times in states.drained.items() if times} == {}
    assert report["failed"] == 0, traffic.failures[:5]
    print(f"NO-OP converge under traffic: {elapsed:.0f} s, {len(states.looks)} looks, none drained")


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


# The canary (playbooks/serve.yml): fleet-node1 takes the change and CANARY_SHARE percent of
# new requests for CANARY_SECONDS beside the two others, then the verdict. The window is
# four of Prometheus' 5 s scrape intervals.
CANARY_SHARE = 25
CANARY_SECONDS = 20
CANARY = "fleet-node1"
BASELINE = ("fleet-node2", "fleet-node3")


def canary_vars(reports: Path, **more: object) -> dict[str, object]:
    return {
        "tfserving_canary": True,
        "tfserving_canary_share": CANARY_SHARE,
        "tfserving_canary_duration": CANARY_SECONDS,
        "tfserving_canary_min_requests": 30,
        "tfserving_canary_report_dir": str(reports),
        **more,
    }


def canary_report(reports: Path) -> str:
    """The one report the run kept on the controller."""
    files = sorted(reports.glob("*-fleet-node1.txt"))
    assert len(files) == 1, files
    return files[0].read_text()


def verdict_line(output: str) -> str:
    found = re.findall(r"canary (?:promoted|rolled back): [^\n\\]*", output)
    assert found, output[-4000:]
    return found[-1]


def served_versions(node: str) -> str:
    return on(node, "sh", "-c", "ls /srv/tfserving/models/half_plus_two | sort | xargs")


def canary_phase(
    name: str, version: Path, reports: Path, wide_every: int = 0, **more: object
) -> tuple[subprocess.CompletedProcess[str], dict[str, object], Traffic]:
    """Version 125 as VERSION, rolled with the canary under traffic through the load balancer."""
    shutil.copytree(version, MODELS / "half_plus_two" / "125")
    traffic = Traffic([OLD, NEW], wide_every=wide_every)
    traffic.start()
    try:
        result = run(f"{PLAYBOOKS}/serve.yml", canary_vars(reports, **more))
    finally:
        report = traffic.finish(name)
        # The bad version leaves the controller whatever happened: later phases roll 124.
        shutil.rmtree(MODELS / "half_plus_two" / "125")
    output = result.stdout + result.stderr
    print(verdict_line(output))
    print(canary_report(reports))
    return result, report, traffic


def assert_rolled_back(result: subprocess.CompletedProcess[str], before: dict[str, str]) -> None:
    """The canary serves 124 again, with the same container; the baseline never saw 125."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    assert "canary rolled back: fleet-node1" in output, output[-4000:]
    assert "The previous versions answer again" in output, output[-4000:]
    assert "No other node was changed; the rollout stops here." in output
    for node in NODES:
        assert served_versions(node) == "124", node
        assert container_id(node) == before[node], node
    for node in BASELINE:
        assert "125" not in on(node, "sh", "-c", "ls -R /srv/tfserving/state"), node
    # Only the canary's turn ran: the rolling play never started.
    assert "Deploy the models and serve them" not in output
    wait_all_up()
    weights = on(LB, "sh", "-c", SHOW_STATE)
    assert all(
        row.split()[7] == "100" for row in weights.splitlines() if "tfserving_grpc" in row
    ), weights


def canary_failure_budget(report: dict[str, object], traffic: Traffic, seconds: float) -> float:
    """Client-visible failures a bad canary may cause: the wide inputs among the canary's
    share of the requests sent while it served them (from its enable at its weight to its
    drain: the window, Prometheus' last scrape and the verdict; SECONDS), doubled for the
    round robin's granularity and bursts."""
    rate = float(report["requests"]) / max(float(report["seconds"]), 1.0)
    wide_share = 1.0 / traffic.wide_every if traffic.wide_every else 0.0
    return 2 * rate * seconds * CANARY_SHARE / 100 * wide_share + 3


def test_canary_a_good_version_is_promoted_to_every_node(testdata: Path, tmp_path: Path) -> None:
    """Version 124 (half_plus_three's graph: +3): the canary passes on its window, then the
    rest of the fleet rolls; no request fails and no container restarts."""
    shutil.copytree(
        testdata / "saved_model_half_plus_three" / "00000123", MODELS / "half_plus_two" / "124"
    )
    containers = {node: container_id(node) for node in NODES}
    traffic = Traffic([OLD, NEW])
    traffic.start()
    result = run(f"{PLAYBOOKS}/serve.yml", canary_vars(tmp_path))
    report = traffic.finish("a: model version, canary promoted")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    line = verdict_line(output)
    print(line)
    print(canary_report(tmp_path))
    assert line.startswith("canary promoted: fleet-node1 pass after "), line
    assert report["failed"] == 0, traffic.failures[:5]
    assert traffic.answers[0] == tuple(OLD) and traffic.answers[-1] == tuple(NEW)
    # A model version needs no restart.
    assert {node: container_id(node) for node in NODES} == containers
    for node in NODES:
        assert served_versions(node) == "124", node
    wait_all_up()


def test_canary_a_version_failing_real_inputs_is_rolled_back(
    testdata: Path, tmp_path: Path
) -> None:
    """Version 125 answers the smoke prediction but refuses inputs outside its range
    (INVALID_ARGUMENT), which every fourth request sends: the gate passes it, the canary's
    error ratio fails it, and fleet-node1 goes back to 124. The baseline never loads it."""
    before = {node: container_id(node) for node in NODES}
    start = time.monotonic()
    result, report, traffic = canary_phase(
        "canary: a version failing real inputs",
        testdata / "saved_model_half_plus_two_strict" / "00000123",
        tmp_path,
        wide_every=4,
    )
    output = result.stdout + result.stderr
    assert "error ratio" in verdict_line(output), verdict_line(output)
    assert_rolled_back(result, before)
    # Every failure is a wide input the canary refused; some reached it, and no more than
    # its share and time allow.
    assert traffic.failures, "the canary saw none of the wide inputs"
    assert traffic.failures == traffic.wide_failures
    assert all("INVALID_ARGUMENT" in f for f in traffic.failures), traffic.failures[:3]
    budget = canary_failure_budget(report, traffic, CANARY_SECONDS + 30)
    took = time.monotonic() - start
    print(f"CANARY failures {len(traffic.failures)} (budget {budget:.0f}) in {took:.0f} s")
    assert len(traffic.failures) <= budget


def test_canary_a_version_5x_slower_is_rolled_back_on_latency(
    testdata: Path, tmp_path: Path
) -> None:
    """Version 125 answers right but spends real TensorFlow work on each request (at least
    five times half_plus_two's latency): its p99 against the baseline's fails it. Read
    from the servers and the load balancer directly (tfserving_canary_metrics: direct)."""
    before = {node: container_id(node) for node in NODES}
    result, report, traffic = canary_phase(
        "canary: a version 5x slower",
        testdata / "saved_model_half_plus_two_slow" / "00000123",
        tmp_path,
        tfserving_canary_metrics="direct",
    )
    assert "p99" in verdict_line(result.stdout + result.stderr)
    assert_rolled_back(result, before)
    assert report["failed"] == 0, traffic.failures[:5]


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
    # A rebuilt image with a new tag: the builder builds it from the TF Serving repository
    # fixture (clone, devel build, runtime build; the `slow` tag's devel build prints a line
    # a second), pushes it, and the rollout pulls it by digest node by node.
    FLEET_VARS.update(BUILD_VARS)
    containers = {node: container_id(node) for node in NODES}
    traffic = Traffic([NEW])
    traffic.start()
    # The image play builds, pushes and pulls (running containers are left alone); the
    # serve play recreates the containers, one drained node at a time.
    pulled = run(f"{PLAYBOOKS}/image.yml")
    result = run(f"{PLAYBOOKS}/serve.yml") if pulled.returncode == 0 else pulled
    report = traffic.finish("b: image change")
    output = pulled.stdout + pulled.stderr + result.stdout + result.stderr
    assert pulled.returncode == 0 and result.returncode == 0, output[-4000:]
    assert report["failed"] == 0, traffic.failures[:5]
    new_id = on(BUILDER, "docker", "image", "inspect", "-f", "{{.Id}}", BUILT_REF)
    for node in NODES:
        assert container_id(node) != containers[node], node
        assert on(node, "docker", "inspect", "-f", "{{.Image}}", "tfserving") == new_id
    # One node at a time: each recreation happened in its own batch.
    batches = [line for line in output.splitlines() if "PLAY [Deploy the models" in line]
    assert len(batches) == 3, batches
    # The build reports progress lines with the build log's latest line, never FAILED.
    assert "FAILED" not in pulled.stdout + pulled.stderr
    devel = f"{BUILDER}: waiting for the cpu devel image build"
    progress = [line for line in output.splitlines() if line.startswith(devel)]
    assert any("elapsed; latest: fixture build step" in line for line in progress), progress
    wait_all_up()


def _fixture_commit(version: str = BUILT_VERSION) -> str:
    return on(
        BUILDER, "git", "-C", "/srv/fixtures/tfserving-repo", "rev-parse", f"{version}^{{commit}}"
    )


def test_the_built_image_is_labelled_with_its_source_and_build_arguments() -> None:
    labels = json.loads(
        on(BUILDER, "docker", "image", "inspect", "-f", "{{json .Config.Labels}}", BUILT_REF)
    )
    commit = _fixture_commit()
    assert labels[f"{LABEL}.source-commit"] == commit
    assert labels[f"{LABEL}.source-version"] == BUILT_VERSION
    assert labels[f"{LABEL}.source-repo"] == FIXTURE_URL
    assert labels[f"{LABEL}.variant"] == "cpu"
    # The fixture's Dockerfiles record the build arguments they received as labels.
    assert labels[f"{LABEL}.fixture.git-commit"] == commit
    assert labels[f"{LABEL}.fixture.build-options"] == "--config=release --local_ram_resources=2048"
    assert labels[f"{LABEL}.fixture.build-image"] == f"{IMAGE_NAME}-devel:{BUILT_VERSION}"


def test_the_builder_keeps_the_devel_image_and_no_leftovers() -> None:
    tags = on(BUILDER, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert f"{IMAGE_NAME}-devel:{BUILT_VERSION}" in tags
    assert not [t for t in tags if t.endswith("-candidate")], tags
    assert on(BUILDER, "sh", "-c", "ls -d /var/cache/tfserving-image/export || true") == ""


@pytest.mark.parametrize("node", NODES)
def test_each_node_records_the_image_it_runs(node: str) -> None:
    record = json.loads(on(node, "cat", IMAGE_FACT))
    ref = on(node, "docker", "inspect", "-f", "{{.Config.Image}}", "tfserving")
    image_id = on(node, "docker", "inspect", "-f", "{{.Image}}", "tfserving")
    assert record == {"ref": ref, "id": image_id, "variant": "cpu"}
    assert ref.startswith(f"{addresses()[LB]}:5000/{IMAGE_NAME}@sha256:"), ref


def _engine_started(node: str) -> float:
    """When the node's docker.service last became active (epoch seconds)."""
    value = on(
        node, "systemctl", "show", "-p", "ActiveEnterTimestamp", "--timestamp=unix", "docker"
    )
    return float(value.split("=@", 1)[1])


def test_phase_e_daemon_json_change_rolls_across_the_fleet() -> None:
    """The engines restart one node at a time, each inside its own drained window (watched
    at the load balancer every 0.5 s): live-restore keeps the containers running through a
    restart, so the answers alone would not show restarts that overlap."""
    FLEET_VARS["docker_daemon_options"] = {"log-opts": {"max-size": "20m", "max-file": "2"}}
    started = {node: _engine_started(node) for node in NODES}
    traffic = Traffic([NEW])
    states = AdminStates()
    traffic.start()
    states.start()
    result = run(f"{PLAYBOOKS}/docker.yml")
    states.finish()
    report = traffic.finish("e: daemon.json change")
    assert result.returncode == 0, result.stdout[-4000:]
    assert report["failed"] == 0, traffic.failures[:5]
    windows = {}
    for node in NODES:
        daemon = json.loads(on(node, "cat", "/etc/docker/daemon.json"))
        assert daemon["log-opts"]["max-size"] == "20m"
        restarted = _engine_started(node)
        assert restarted > started[node], f"docker was not restarted on {node}"
        window = states.window(node)
        assert window, f"{node} was never seen drained"
        assert window[0] <= restarted <= window[1], (node, window, restarted)
        windows[node] = window
    spans = sorted(windows.values())
    for (_, end), (begin, _) in itertools.pairwise(spans):
        assert end <= begin, f"drained windows overlap: {windows}"
    print(
        "PHASE e drained windows:",
        {
            n: [round(b - spans[0][0], 1), round(e - spans[0][0], 1)]
            for n, (b, e) in windows.items()
        },
    )
    wait_all_up()


HOST_VARS = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "/nonexistent")).parent / "host_vars"


def test_phase_d_a_failure_in_a_batch_of_two_leaves_the_other_node_in_service() -> None:
    """A batch of two (two may be out at once): fleet-node1 gets a corrupt version (its own
    copy of the model, through host_vars), fleet-node2 a good one. node1 fails its gate and
    stays drained; node2, drained in the same batch, passes and is put back; node3 is never
    reached. The version 125 stays in the export for the later phases."""
    good = MODELS / "half_plus_two" / "125"
    shutil.copytree(MODELS / "half_plus_two" / "124", good)
    broken = EPHEMERAL / "models-node1" / "half_plus_two"
    shutil.copytree(MODELS / "half_plus_two", broken)
    (broken / "126").mkdir()
    shutil.copytree(good, broken / "126", dirs_exist_ok=True)
    (broken / "126" / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    HOST_VARS.mkdir(exist_ok=True)
    node1_vars = HOST_VARS / "fleet-node1.yml"
    # The scenario's models (group_vars/all.yml), half_plus_two from node1's own copy.
    models = yaml.safe_load((SCENARIO_DIR / "group_vars" / "all.yml").read_text())[
        "tfserving_models"
    ]
    models[0]["path"] = str(broken)
    node1_vars.write_text(yaml.safe_dump({"tfserving_models": models}))
    traffic = Traffic([NEW])
    states = AdminStates()
    traffic.start()
    states.start()
    try:
        result = run(
            f"{PLAYBOOKS}/serve.yml",
            {"tfserving_rollout_batch": 2, "tfserving_lb_max_unavailable": 2},
        )
    finally:
        node1_vars.unlink()
        shutil.rmtree(broken.parent)
    states.finish()
    report = traffic.finish("d: one node of a batch of two fails")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "did not pass the readiness gate" in output, output[-4000:]
    assert "fleet-node1 failed its turn, so the rollout stops here" in output
    assert report["failed"] == 0, traffic.failures[:5]
    servers = lb_servers()
    assert servers["fleet-node1"]["status"] == "DRAIN", servers["fleet-node1"]["status"]
    # node2 was drained in the same batch, passed its gate with 125 and is back in service.
    assert states.drained["fleet-node2"], "fleet-node2 was never drained"
    assert servers["fleet-node2"]["status"] == "UP"
    assert on("fleet-node2", "sh", "-c", "ls /srv/tfserving/models/half_plus_two") == "125"
    # node3 was not reached: never drained, still on 124.
    assert servers["fleet-node3"]["status"] == "UP"
    assert not states.drained["fleet-node3"]
    assert on("fleet-node3", "sh", "-c", "ls /srv/tfserving/models/half_plus_two") == "124"
    assert on("fleet-node1", "sh", "-c", "ls /srv/tfserving/models/half_plus_two") == "124"


def test_phase_f_an_image_whose_server_exits_is_rolled_back_on_its_first_node() -> None:
    """A new image whose server exits at start (built on the builder from the running image,
    pushed to the registry): the first node's gate sees the crash, and its previous container
    comes back with its image, flags and config files; the others never run the image."""
    registry = f"{addresses()[LB]}:5000"
    crash = f"{registry}/{IMAGE_NAME}:crash"
    running = on(BUILDER, "docker", "inspect", "-f", "{{.Config.Image}}", "tfserving")
    dockerfile = (
        f"FROM {running}\n"
        'ENTRYPOINT ["/bin/sh", "-c", "echo fixture: this server exits at start >&2; exit 1"]\n'
    )
    on(BUILDER, "sh", "-c", f"printf '%s' {shlex.quote(dockerfile)} | docker build -q -t {crash} -")
    on(BUILDER, "docker", "push", "-q", crash)
    before = {
        node: on(node, "docker", "inspect", "-f", "{{.Id}} {{.Image}} {{json .Args}}", "tfserving")
        for node in NODES
    }
    traffic = Traffic([NEW])
    traffic.start()
    result = run(f"{PLAYBOOKS}/serve.yml", {"tfserving_image": crash})
    report = traffic.finish("f: an image whose server exits")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "fleet-node1 did not pass the readiness gate (crashed)" in output, output[-4000:]
    assert "The previous container is back, with its image, flags and config files." in output
    # ... and it serves: the previous versions answered the gate's checks again.
    assert "The previous versions answer again" in output, output[-4000:]
    assert "this server exits at start" in output
    assert report["failed"] == 0, traffic.failures[:5]
    after = {
        node: on(node, "docker", "inspect", "-f", "{{.Id}} {{.Image}} {{json .Args}}", "tfserving")
        for node in NODES
    }
    assert after == before
    for node in NODES:
        assert on(node, "docker", "ps", "-aq", "--filter", "name=tfserving-previous") == ""
    for node in ("fleet-node2", "fleet-node3"):
        assert on(node, "docker", "ps", "-aq", "--filter", f"ancestor={crash}") == ""


def test_phase_g_the_next_run_puts_the_failed_node_back_and_finishes_the_rollout() -> None:
    """fleet-node1 was left drained by the failed runs: the next run gates it and puts it
    back, and rolls 125 to the nodes that lack it."""
    assert lb_servers()["fleet-node1"]["status"] == "DRAIN"
    traffic = Traffic([NEW])
    traffic.start()
    result = run(f"{PLAYBOOKS}/serve.yml")
    report = traffic.finish("g: the rollout finished")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert report["failed"] == 0, traffic.failures[:5]
    wait_all_up()
    for node in NODES:
        assert on(node, "sh", "-c", "ls /srv/tfserving/models/half_plus_two") == "125"


def test_a_decommissioned_node_is_drained_emptied_and_stays_out_then_comes_back() -> None:
    """tfserving_decommission on fleet-node3: drained, its server and models removed, and
    left out of service while the others serve; a run without it brings the node back."""
    node3 = "fleet-node3"
    traffic = Traffic([NEW])
    traffic.start()
    result = converge(
        SCENARIO_DIR,
        {**FLEET_VARS, "tfserving_decommission": True, "tfserving_models": []},
        limit=node3,
        playbook=f"{PLAYBOOKS}/serve.yml",
    )
    report = traffic.finish("decommission of one node")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert report["failed"] == 0, traffic.failures[:5]
    servers = lb_servers()
    assert servers[node3]["status"] in ("DRAIN", "MAINT", "DOWN"), servers[node3]
    assert admin_states()[node3] != 0, "fleet-node3 is not held out of service"
    assert on(node3, "docker", "ps", "-aq", "--filter", "name=tfserving") == ""
    assert on(node3, "sh", "-c", "ls /srv/tfserving 2>/dev/null || true") == ""
    # Without it, the next run serves on the node again and puts it back.
    result = converge(SCENARIO_DIR, FLEET_VARS, limit=node3, playbook=f"{PLAYBOOKS}/serve.yml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    wait_all_up()


def connect(source: str, address: str, port: int) -> str:
    """From a test host: open, refused, or the error of a TCP connection."""
    probe = (
        "import socket, sys\n"
        "try:\n"
        "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close()\n"
        "    print('open')\n"
        "except ConnectionRefusedError:\n"
        "    print('refused')\n"
        "except OSError as error:\n"
        "    print(type(error).__name__)\n"
    )
    return on(source, "python3", "-c", probe, address, str(port))


def test_only_the_load_balancer_and_the_controller_reach_a_node() -> None:
    node1 = addresses()["fleet-node1"]
    for port in (8500, 8501):
        assert connect("fleet-node2", node1, port) == "refused", port
        assert connect(LB, node1, port) == "open", port
    socket.create_connection((node1, 8500), timeout=5).close()  # the controller


def test_the_firewall_comes_back_with_the_engine() -> None:
    # At boot the unit runs before docker.service; it also runs again with every engine
    # (re)start. Rules lost by hand come back with a restart of the engine.
    node3 = addresses()["fleet-node3"]
    assert on("fleet-node3", "systemctl", "is-enabled", "tfserving-firewall") == "enabled"
    on("fleet-node3", "iptables", "-w", "-F", "TFSERVING-FW")
    assert connect("fleet-node2", node3, 8500) == "open"
    on("fleet-node3", "systemctl", "restart", "docker")
    assert connect("fleet-node2", node3, 8500) == "refused"
    # Every node is in service again after phase g; node3 must be back after its restart.
    deadline = time.monotonic() + 120
    while lb_servers()["fleet-node3"]["status"] != "UP" and time.monotonic() < deadline:
        time.sleep(1)
    assert lb_servers()["fleet-node3"]["status"] == "UP"


def test_the_firewall_turned_off_is_taken_down_and_back_on_comes_back() -> None:
    node3 = addresses()["fleet-node3"]
    extra = {**FLEET_VARS, "tfserving_firewall_enabled": False}
    result = converge(SCENARIO_DIR, extra, limit="fleet-node3", playbook=f"{PLAYBOOKS}/serve.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert connect("fleet-node2", node3, 8500) == "open"
    assert "TFSERVING-FW" not in on("fleet-node3", "iptables", "-w", "-S")
    assert "tfserving-firewall" not in on("fleet-node3", "ls", "/etc/systemd/system", "/etc")
    result = converge(
        SCENARIO_DIR, FLEET_VARS, limit="fleet-node3", playbook=f"{PLAYBOOKS}/serve.yml"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert connect("fleet-node2", node3, 8500) == "refused"
    assert connect(LB, node3, 8500) == "open"


def test_no_run_printed_the_registry_password() -> None:
    # Before the bad-input runs below, which move the builder's checkout to other versions.
    password = (EPHEMERAL / "inventory" / ".tfserving-registry" / "password").read_text().split()[0]
    assert len(password) == 32
    result = run(f"{PLAYBOOKS}/image.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert password not in result.stdout + result.stderr
    changed = re.findall(r"changed=(\d+)", result.stdout.split("PLAY RECAP")[-1])
    assert changed and set(changed) == {"0"}, result.stdout[-2000:]


def _tagged_images(host: str) -> list[str]:
    out = on(
        host,
        "docker",
        "images",
        "--no-trunc",
        "--filter",
        "dangling=false",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    )
    return sorted(out.splitlines())


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        pytest.param(
            {"tfserving_image_source": "nightly"},
            "value of tfserving_image_source must be one of: build, pull, archive, got: nightly",
            id="unknown-source",
        ),
        pytest.param(
            {
                "tfserving_image_repo_url": "file:///srv/fixtures/no-dockerfiles",
                "tfserving_image_repo_version": "2.19.1",
                "tfserving_image_repo_commit": FIXTURE_COMMITS["no-dockerfiles"]["2.19.1"],
            },
            "tfserving_image_repo_url=file:///srv/fixtures/no-dockerfiles"
            " at tfserving_image_repo_version=2.19.1",
            id="repository-without-dockerfiles",
        ),
        pytest.param(
            {
                "tfserving_image_repo_version": "broken",
                "tfserving_image_repo_commit": FIXTURE_COMMITS["tfserving-repo"]["broken"],
            },
            f"Building the cpu image from tfserving_image_repo_url={FIXTURE_URL}"
            " at tfserving_image_repo_version=broken",
            id="failing-build",
        ),
        pytest.param(
            {
                "tfserving_image_source": "archive",
                "tfserving_image_archives": {"cpu": {"src": "TMP_ARCHIVE", "sha256": "0" * 64}},
            },
            "tfserving_image_archives.cpu.sha256 is " + "0" * 64 + " but",
            id="archive-checksum-mismatch",
        ),
        pytest.param(
            {
                "tfserving_image_source": "archive",
                "tfserving_image_archives": {"gpu": {"src": "x", "sha256": "0"}},
            },
            "tfserving_image_archives has no entry for cpu",
            id="archive-missing-variant",
        ),
    ],
)
def test_bad_image_input_fails_and_leaves_the_hosts_unchanged(
    tmp_path: Path, extra_vars: dict[str, object], message: str
) -> None:
    archive = tmp_path / "image.tar"
    archive.write_bytes(b"not the expected image")
    extra_vars = json.loads(json.dumps(extra_vars).replace("TMP_ARCHIVE", str(archive)))
    hosts = (BUILDER, "fleet-node2")
    before = {host: _tagged_images(host) for host in hosts}
    result = converge(
        SCENARIO_DIR, {**BUILD_VARS, **extra_vars}, playbook="image-role.yml", limit=",".join(hosts)
    )
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert message in output, output[-3000:]
    assert {host: _tagged_images(host) for host in hosts} == before
    assert on("fleet-node2", "sh", "-c", "ls /var/cache/tfserving-image/archives || true") == ""


def test_serving_alone_uses_the_recorded_image() -> None:
    result = converge(SCENARIO_DIR, {"tfserving_gpu": False}, playbook="serve-image.yml")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for node in NODES:
        ref = json.loads(on(node, "cat", IMAGE_FACT))["ref"]
        assert f"{node} serves with {ref} (CPU)" in output


def test_serving_alone_without_a_gpu_mode_says_to_run_the_gpu_play() -> None:
    on("fleet-node3", "mv", GPU_FACT, GPU_FACT + ".aside")
    try:
        result = converge(SCENARIO_DIR, playbook="serve-image.yml", limit="fleet-node3")
    finally:
        on("fleet-node3", "mv", GPU_FACT + ".aside", GPU_FACT)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "No GPU mode for fleet-node3" in output, output[-3000:]
    assert "Run the GPU play first (playbooks/gpu.yml, or site.yml)" in output


def test_serving_alone_without_a_recorded_image_says_to_run_the_image_play() -> None:
    on("fleet-node3", "mv", IMAGE_FACT, IMAGE_FACT + ".aside")
    try:
        result = converge(
            SCENARIO_DIR, {"tfserving_gpu": False}, playbook="serve-image.yml", limit="fleet-node3"
        )
    finally:
        on("fleet-node3", "mv", IMAGE_FACT + ".aside", IMAGE_FACT)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "No serving image for fleet-node3" in output, output[-3000:]
    assert "Run the image play first (playbooks/image.yml, or site.yml)" in output
    assert "tensorflow/serving" not in output


def test_without_a_registry_a_build_goes_through_the_controller_cache(tmp_path: Path) -> None:
    # The path of a fleet without a registry host: the builder exports the image, the
    # controller keeps one tarball per image ID with its sha256, and a node that lacks the
    # image gets it copied and loaded. The fixture's `tiny` build keeps the tarball small.
    # Last but one: the run records the tiny image on both hosts, so the records are put back.
    hosts = (BUILDER, "fleet-node3")
    records = {host: on(host, "cat", IMAGE_FACT) for host in hosts}
    cache = tmp_path / "images"
    tiny = f"{IMAGE_NAME}:tiny"
    try:
        result = converge(
            SCENARIO_DIR,
            {
                **BUILD_VARS,
                "tfserving_image_repo_version": "tiny",
                "tfserving_image_repo_commit": FIXTURE_COMMITS["tfserving-repo"]["tiny"],
                "tfserving_image_controller_cache_dir": str(cache),
            },
            playbook="image-role.yml",
            limit=",".join(hosts),
        )
    finally:
        for host, record in records.items():
            subprocess.run(
                ["docker", "exec", "-i", host, "sh", "-c", f"cat > {IMAGE_FACT}"],
                input=record + "\n",
                text=True,
                check=True,
                timeout=60,
            )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    image_id = on(BUILDER, "docker", "image", "inspect", "-f", "{{.Id}}", tiny)
    tarballs = sorted(cache.glob("*.tar"))
    assert [t.name for t in tarballs] == [image_id.removeprefix("sha256:") + ".tar"]
    digest = hashlib.sha256(tarballs[0].read_bytes()).hexdigest()
    assert (cache / (tarballs[0].name + ".sha256")).read_text().split()[0] == digest
    assert on("fleet-node3", "docker", "image", "inspect", "-f", "{{.Id}}", tiny) == image_id
    assert on("fleet-node3", "sh", "-c", "ls /var/cache/tfserving-image/archives") == ""
    assert on(BUILDER, "sh", "-c", "ls /var/cache/tfserving-image/export 2>/dev/null || true") == ""


def test_project_root_is_unchanged_by_the_tests() -> None:
    assert not (PROJECT_DIR / ".tfserving-registry").exists()
