"""Faults a serving node meets, each under continuous gRPC traffic from the controller.

They run on the scenario's host after test_default.py (pytest takes the files in order),
from the state that file leaves, put back to plaintext gRPC by the first test here. Tests
run in file order. Each fault prints one ``FAULT`` line: requests sent while it happened,
how many failed, and the time from the fault to the first correct answer, measured by the
traffic loop's own clock (time.monotonic on the controller). The crash loop at a first
deploy (fault 4) is test_default.py's crash-loop test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
import yaml
from converge_again import converge
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

SCENARIO_DIR = Path(__file__).resolve().parents[1]
# Only the engine's play: the fault tests change daemon.json settings on a host that serves.
DOCKER_PLAY = "../../playbooks/docker.yml"
# The serving play restores what drifted and deploys new versions (site.yml set the host up).
SERVE = "../../playbooks/serve.yml"
HOST = "tfserving-debian12"
MODELS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "models"
X = [[1.0], [2.0], [5.0]]
HALF_PLUS_TWO = [[2.5], [3.0], [4.5]]
# test_default.py leaves version 124 (half_plus_three's graph) serving.
SERVED = [[3.5], [4.0], [5.5]]
SAMPLES = Path(__file__).resolve().parents[3] / "files" / "samples"


def settings(answers: list[list[float]] = SERVED) -> dict[str, object]:
    """The scenario's half_plus_two entry, expecting the given answers for x = 1, 2, 5."""
    return {
        "half_plus_two_copy": {
            "name": "half_plus_two",
            "path": str(MODELS / "half_plus_two"),
            "smoke_input": str(SAMPLES / "half_plus_two.json"),
            "smoke_expected_outputs": {"y": answers},
        }
    }


# Reconnect quickly after a connection fails, so the numbers measure the server and not
# the client's backoff (grpcio's default grows from 1 s to 120 s).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


# ----- the test host -------------------------------------------------------------------------
def host_address() -> str:
    """The test host's address from molecule's inventory (test hosts keep a fixed one)."""
    path = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / "test_hosts.yml"
    return yaml.safe_load(path.read_text())["all"]["hosts"][HOST]["test_host_address"]


def container_addresses(name: str) -> list[str]:
    """The addresses Docker on the controller gives the test host's container now."""
    each = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    out = subprocess.run(
        ["docker", "inspect", "-f", each, name],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.split()


def serving_container(host) -> dict:
    return json.loads(host.check_output("docker inspect tfserving"))[0]


def changed_tasks(output: str) -> set[str]:
    """Names of the tasks that reported changed in ansible-playbook's default output."""
    names = set()
    for block in output.split("\nTASK [")[1:]:
        header, _, body = block.partition("]")
        if re.search(r"^changed: \[", body, re.MULTILINE):
            names.add(header.split(" : ", 1)[-1])
    return names


def recap_changed(output: str) -> int:
    match = re.search(rf"^{HOST}\s*:.*\bchanged=(\d+)", output, re.MULTILINE)
    assert match, output[-3000:]
    return int(match.group(1))


# ----- traffic -------------------------------------------------------------------------------
@dataclass
class Report:
    fault: str
    sent: int
    failed: int
    recover_s: float | None
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        recover = "never" if self.recover_s is None else f"{self.recover_s:.1f}s"
        return (
            f"FAULT {self.fault}: sent={self.sent} failed={self.failed} "
            f"time_to_first_correct_answer={recover} first_errors={self.errors[:3]}"
        )


class Traffic(threading.Thread):
    """gRPC Predict on half_plus_two in a loop, bounded in count and time.

    Every request carries a 2 s deadline; an answer counts as correct only when it is the
    expected tensor.
    """

    def __init__(self, expect: list[list[float]] = SERVED, max_s: float = 420.0) -> None:
        super().__init__(daemon=True)
        self.expect = expect
        self.max_s = max_s
        self.max_requests = 20_000
        self.stop = threading.Event()
        self.events: list[tuple[float, bool, str]] = []
        self.address = host_address()

    def run(self) -> None:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "half_plus_two"
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(X, dtype=np.float32)))
        channel = grpc.insecure_channel(f"{self.address}:8500", options=CHANNEL_OPTIONS)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        deadline = time.monotonic() + self.max_s
        while not self.stop.is_set() and time.monotonic() < deadline:
            if len(self.events) >= self.max_requests:
                break
            try:
                reply = stub.Predict(req, timeout=2)
                got = tf.make_ndarray(reply.outputs["y"]).tolist()
                ok, detail = got == self.expect, f"answer {got}"
            except grpc.RpcError as error:
                ok, detail = False, f"{error.code().name}: {error.details()}"
            except Exception as error:  # any other failure is a failed request, not a dead loop
                ok, detail = False, f"{type(error).__name__}: {error}"
            self.events.append((time.monotonic(), ok, detail))
            time.sleep(0.05)
        channel.close()

    def correct_since(self, since: float, after_failure: bool = False) -> int:
        """Correct answers since ``since``; with after_failure, only after the first failure.

        A server going down (a reboot, a crash) still answers for a moment after the fault
        was started: those answers must not count as recovered.
        """
        events = [e for e in list(self.events) if e[0] >= since]
        if after_failure:
            first_fail = next((i for i, (_, ok, _) in enumerate(events) if not ok), None)
            events = [] if first_fail is None else events[first_fail:]
        return sum(1 for _, ok, _ in events if ok)

    def wait_correct(
        self, count: int, since: float, timeout: float, after_failure: bool = False
    ) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.is_alive():
            if self.correct_since(since, after_failure) >= count:
                return
            time.sleep(0.1)

    def finish(self, fault: str, since: float) -> Report:
        # Ended by its own bounds (time, count) before the fault did, the loop saw only part.
        assert self.is_alive(), f"{fault}: the traffic loop ended before the fault was over"
        self.stop.set()
        self.join(timeout=30)
        after = [e for e in self.events if e[0] >= since]
        assert after, f"{fault}: no request was sent during the fault"
        # A request sent before the fault can still succeed after it: recovery is the first
        # correct answer after the first failure (no failure: nothing to recover from).
        first_fail = next((t for t, ok, _ in after if not ok), None)
        if first_fail is None:
            first_ok: float | None = since
        else:
            first_ok = next((t for t, ok, _ in after if ok and t > first_fail), None)
        report = Report(
            fault=fault,
            sent=len(after),
            failed=sum(1 for _, ok, _ in after if not ok),
            recover_s=None if first_ok is None else first_ok - since,
            errors=[d for _, ok, d in after if not ok],
        )
        print(report.line(), flush=True)
        return report


def start_traffic(expect: list[list[float]] = SERVED) -> Traffic:
    traffic = Traffic(expect)
    traffic.start()
    traffic.wait_correct(10, 0.0, timeout=150)
    assert traffic.correct_since(0.0) >= 10, f"no traffic before the fault: {traffic.events[-3:]}"
    return traffic


# ----- the faults ------------------------------------------------------------------------------
def test_served_before_any_fault(host) -> None:
    # Plaintext gRPC again (test_default.py ends with mutual TLS).
    result = converge(SCENARIO_DIR, settings(), playbook=SERVE)
    assert result.returncode == 0, result.stdout[-3000:]
    spec = serving_container(host)
    assert spec["State"]["Running"] is True
    assert spec["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert spec["Config"]["StopTimeout"] == 5
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is True


def test_fault1_server_process_killed_is_restarted_by_docker(host) -> None:
    before = serving_container(host)
    traffic = start_traffic()
    shell = int(host.check_output("docker inspect -f '{{.State.Pid}}' tfserving"))
    # The server runs under the image's entrypoint shell; kill it as the OOM killer would.
    server = int(host.check_output(f"cat /proc/{shell}/task/{shell}/children").split()[0])
    assert "tensorflow_model_server" in host.check_output(f"tr '\\0' ' ' < /proc/{server}/cmdline")
    crash = time.monotonic()
    host.run_expect([0], f"kill -KILL {server}")
    traffic.wait_correct(5, crash, timeout=180, after_failure=True)
    report = traffic.finish("1 server process SIGKILL", crash)
    after = serving_container(host)
    assert report.recover_s is not None, report.line()
    assert after["RestartCount"] == before["RestartCount"] + 1
    assert after["State"]["Running"] is True


def test_fault2_live_restore_turned_on_without_stopping_the_container(host) -> None:
    started = serving_container(host)["State"]["StartedAt"]
    handlers = re.compile(r"^RUNNING HANDLER \[[^\]]*: (\w+ docker)\]", re.MULTILINE)
    for live_restore in (False, True):
        extra = {} if live_restore else {"docker_daemon_options": {"live-restore": False}}
        result = converge(SCENARIO_DIR, extra, playbook=DOCKER_PLAY)
        assert result.returncode == 0, result.stdout[-3000:]
        assert handlers.findall(result.stdout) == ["Reload docker"], result.stdout[-3000:]
        info = json.loads(host.check_output("docker info --format '{{json .}}'"))
        assert info["LiveRestoreEnabled"] is live_restore
        state = serving_container(host)["State"]
        assert state["Running"] is True and state["StartedAt"] == started


class Connects(threading.Thread):
    """A new TCP connection to the gRPC port every 20 ms (bounded: 3000, one minute): how
    long a node without a load balancer refuses new clients while its engine restarts."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.results: list[tuple[float, bool]] = []

    def run(self) -> None:
        address = host_address()
        while not self.stop.is_set() and len(self.results) < 3000:
            try:
                socket.create_connection((address, 8500), timeout=0.5).close()
                ok = True
            except OSError:
                ok = False
            self.results.append((time.monotonic(), ok))
            time.sleep(0.02)

    def longest_refusal(self) -> float:
        longest, since = 0.0, None
        for t, ok in self.results:
            if not ok and since is None:
                since = t
            elif ok and since is not None:
                longest, since = max(longest, t - since), None
        return longest


def test_fault2_engine_restart_keeps_the_container_answering(host) -> None:
    started = serving_container(host)["State"]["StartedAt"]
    traffic = start_traffic()
    connects = Connects()
    connects.start()
    time.sleep(1)
    restart = time.monotonic()
    host.run_expect([0], "systemctl restart docker")
    host.run_expect([0], "docker info >/dev/null")
    traffic.wait_correct(40, restart, timeout=60)
    time.sleep(1)
    connects.stop.set()
    connects.join(timeout=10)
    report = traffic.finish("2 systemctl restart docker", restart)
    # Established connections lose nothing; new ones are refused while the engine rebuilds
    # its port rules (printed, not judged: docs/rollouts.md, What a node without a load
    # balancer sees).
    print(
        f"FAULT 2 new connections during the engine restart: {len(connects.results)} tried, "
        f"{sum(not ok for _, ok in connects.results)} refused, "
        f"longest refusal {connects.longest_refusal():.2f} s",
        flush=True,
    )
    assert report.failed == 0, report.line()
    assert serving_container(host)["State"]["StartedAt"] == started


def test_fault3_host_reboot_comes_back_without_a_play(host) -> None:
    traffic = start_traffic()
    reboot = time.monotonic()
    subprocess.run(["docker", "restart", "-t", "30", HOST], check=True, timeout=120)
    traffic.wait_correct(5, reboot, timeout=330, after_failure=True)
    report = traffic.finish("3 host reboot", reboot)
    assert report.failed > 0, "the reboot never interrupted the traffic: " + report.line()
    assert report.recover_s is not None, report.line()
    # The host came back at its address, where the serving ports are published.
    assert container_addresses(HOST) == [host_address()]
    # Booted (degraded is the test hosts' normal state: see molecule/README.md), and none of
    # the units the fleet runs on failed on the way up.
    assert booted(host) in ("running", "degraded")
    failed = host.check_output("systemctl list-units --failed --plain --no-legend")
    assert fleet_units(failed) == [], failed
    host.run_expect([0], "systemctl is-active docker")


def booted(host, limit: float = 240) -> str:
    """systemd's state once the rebooted host has finished booting (running or degraded), or
    the last state it said when it did not within limit seconds."""
    deadline = time.monotonic() + limit
    state = ""
    while time.monotonic() < deadline:
        state = host.run("systemctl is-system-running --wait").stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(2)  # PID 1 may not answer on its bus yet ("offline")
    return state


def fleet_units(listing: str) -> list[str]:
    """The engine's and the fleet's own units in `systemctl list-units --failed` output."""
    return [
        line.split()[0]
        for line in listing.splitlines()
        if line.strip() and re.match(r"(docker|containerd|tfserving-[\w-]+)\.", line.split()[0])
    ]


def test_fault5_drift_is_restored_and_reported(host) -> None:
    config = "/srv/tfserving/config/models.config"
    rendered = host.file(config).content_string
    traffic = start_traffic()
    drift = time.monotonic()
    host.run_expect([0], "rm -rf /srv/tfserving/models/half_plus_two/124")
    host.run_expect([0], f"sed -i 's/num_versions: 1/num_versions: 3/' {config}")
    host.run_expect([0], "docker rm -f tfserving")
    result = converge(SCENARIO_DIR, settings(), playbook=SERVE)
    assert result.returncode == 0, result.stdout[-3000:]
    changed = changed_tasks(result.stdout)
    assert {"Copy the version aside", "Write the config files", "Run the serving container"} <= (
        changed
    ), sorted(changed)
    assert host.file("/srv/tfserving/models/half_plus_two/124/saved_model.pb").exists
    assert host.file(config).content_string == rendered
    # Recovery here is the serving play's run: no server answers until it recreates one.
    traffic.wait_correct(5, drift, timeout=60, after_failure=True)
    report = traffic.finish("5 drift restored by serve.yml", drift)
    assert report.failed > 0, "the container was removed, yet nothing failed: " + report.line()
    assert report.recover_s is not None, report.line()
    again = converge(SCENARIO_DIR, settings(), playbook=SERVE)
    assert again.returncode == 0, again.stdout[-3000:]
    assert recap_changed(again.stdout) == 0, sorted(changed_tasks(again.stdout))


def test_fault6_full_disk_during_a_copy(host, testdata: Path) -> None:
    root = "/srv/tfserving/models"
    # A small filesystem as the model root: the current content plus 1 MiB of room.
    used_kb = int(host.check_output(f"du -sk {root}").split()[0])
    host.run_expect(
        [0],
        f"set -e; rm -rf /tmp/models-copy; cp -a {root} /tmp/models-copy; "
        f"mount -t tmpfs -o size={used_kb + 1024}k,mode=0755 tmpfs {root}; "
        f"cp -a /tmp/models-copy/. {root}/; rm -rf /tmp/models-copy",
    )
    # The container sees a mount made after it started only once it starts again.
    host.run_expect([0], "docker restart tfserving")
    # A new version (half_plus_two's graph again) too large for the room left.
    big = MODELS / "half_plus_two" / "130"
    shutil.copytree(testdata / "saved_model_half_plus_two_cpu" / "00000123", big)
    (big / "assets").mkdir(exist_ok=True)
    (big / "assets" / "padding.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    traffic = start_traffic()
    full = time.monotonic()
    result = converge(SCENARIO_DIR, settings(HALF_PLUS_TWO), playbook=SERVE)
    report = traffic.finish("6 disk full during the copy of a new version", full)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"to {HOST}:{root}/half_plus_two/.incoming-130" in output, output[-4000:]
    assert "No space left on device" in output, output[-4000:]
    assert report.failed == 0, report.line()
    assert host.file(f"{root}/half_plus_two/124/saved_model.pb").exists
    assert not host.file(f"{root}/half_plus_two/.incoming-130").exists
    assert not host.file(f"{root}/half_plus_two/130").exists

    host.run_expect([0], f"mount -o remount,size=64m {root}")
    result = converge(SCENARIO_DIR, settings(HALF_PLUS_TWO), playbook=SERVE)
    assert result.returncode == 0, result.stdout[-4000:]
    since = time.monotonic()
    traffic = start_traffic(expect=HALF_PLUS_TWO)
    report = traffic.finish("6 after space is back, the new version answering", since)
    assert report.failed == 0, report.line()
