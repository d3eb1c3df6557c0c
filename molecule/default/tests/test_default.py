"""The whole job on a converged host: what a user of the fleet relies on.

Tests run in file order: the read-only checks first, then a rollout to a new version and a
failed rollout of a corrupt one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from converge_again import PROJECT_DIR, converge

SCENARIO_DIR = Path(__file__).resolve().parents[1]
# Tests that change models or server settings run the serving play, as a user does once
# site.yml has set the host up (the engine and image plays would change nothing).
SERVE = "../../playbooks/serve.yml"
SAMPLES = PROJECT_DIR / "files" / "samples"
TFS_CLIENT = str(Path(sys.executable).parent / "tfs-client")
MODELS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "models"
# Every task's time in the recap of the playbook runs these tests start (gate timings).
os.environ["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "all"
HALF_PLUS_TWO = [2.5, 3.0, 4.5]
HALF_PLUS_THREE = [3.5, 4.0, 5.5]
# One series of TF Serving's request counter: its labels, its value.
REQUEST_COUNT = re.compile(r"^:tensorflow:serving:request_count\{([^}]*)\} (\S+)$", re.MULTILINE)


def half_plus_two_copy(answers: list[float]) -> dict:
    """The scenario's half_plus_two entry, expecting the given answers for x = 1, 2, 5."""
    return {
        "half_plus_two_copy": {
            "name": "half_plus_two",
            "path": str(MODELS / "half_plus_two"),
            "smoke_input": str(SAMPLES / "half_plus_two.json"),
            "smoke_expected_outputs": {"y": [[a] for a in answers]},
        }
    }


def task_seconds(output: str, task: str) -> float:
    """A task's duration from the profile_tasks recap."""
    match = re.search(re.escape(task) + r" -+ ([0-9.]+)s", output)
    assert match, f"no timing for {task!r} in the output"
    return float(match.group(1))


@pytest.fixture(scope="module")
def address(host) -> str:
    return host.ansible.get_variables()["test_host_address"]


def container(host) -> dict:
    return json.loads(host.check_output("docker inspect tfserving"))[0]


def tfs_client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TFS_CLIENT, *args], capture_output=True, text=True, check=False, timeout=120
    )


def key_lines(path: Path) -> list[str]:
    """The base64 lines of a PEM private key (what a leak of it would contain)."""
    return [line for line in path.read_text().splitlines() if not line.startswith("-----")]


def predict_half_plus_two(address: str) -> list[float]:
    reply = requests.post(
        f"http://{address}:8501/v1/models/half_plus_two:predict",
        json={"instances": [1.0, 2.0, 5.0]},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["predictions"]


def test_container_runs_with_its_restart_policy(host) -> None:
    spec = container(host)
    assert spec["State"]["Running"] is True
    assert spec["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_server_runs_as_the_fixed_non_root_user(host) -> None:
    assert container(host)["Config"]["User"] == "8500:8500"
    assert host.check_output("docker exec tfserving id -u") == "8500"


@pytest.mark.parametrize(
    "path",
    [
        "/srv/tfserving/models",
        "/srv/tfserving/models/digits/1/saved_model.pb",
        "/srv/tfserving/config",
        "/srv/tfserving/config/models.config",
    ],
)
def test_what_the_server_reads_belongs_to_its_group_only(host, path: str) -> None:
    f = host.file(path)
    assert (f.uid, f.gid) == (0, 8500)
    assert f.mode & 0o007 == 0


def test_container_becomes_healthy(host) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        health = container(host)["State"]["Health"]["Status"]
        if health == "healthy":
            return
        time.sleep(3)
    pytest.fail(f"container health is {health!r} after 90 s")


def test_model_root_is_mounted_read_only(host) -> None:
    mounts = {m["Destination"]: m for m in container(host)["Mounts"]}
    assert mounts["/models"]["Source"] == "/srv/tfserving/models"
    assert mounts["/models"]["RW"] is False
    assert mounts["/config"]["RW"] is False


def test_ports_are_published_on_the_service_address_only(host, address: str) -> None:
    bindings = container(host)["HostConfig"]["PortBindings"]
    assert bindings == {
        "8500/tcp": [{"HostIp": address, "HostPort": "8500"}],
        "8501/tcp": [{"HostIp": address, "HostPort": "8501"}],
    }
    # userland-proxy off (CIS 2.16): iptables forwards the ports, no docker-proxy runs.
    assert "docker-proxy" not in host.check_output("cat /proc/[0-9]*/comm")
    # So nothing listens on the ports: the engine's DNAT rules are what publish them, and
    # each must match the service address only (a port on every address has no -d).
    rules = host.check_output("iptables -w -t nat -S DOCKER")
    assert dnat_off_address(rules, address, ("8500", "8501")) == [], rules


def dnat_off_address(rules: str, address: str, ports: tuple[str, ...]) -> list[str]:
    """What is wrong with the engine's DNAT rules (iptables -S) for the ports: a port with
    no rule, or a rule that matches another destination than address."""
    problems = []
    for port in ports:
        dnat = [r for r in rules.splitlines() if "-j DNAT" in r and f"--dport {port} " in r]
        if not dnat:
            problems.append(f"no DNAT rule for port {port}")
        problems += [r for r in dnat if f" -d {address}/32 " not in r]
    return problems


def test_container_is_hardened(host) -> None:
    spec = container(host)["HostConfig"]
    assert spec["ReadonlyRootfs"] is True
    assert spec["CapDrop"] == ["ALL"] and not spec["CapAdd"]
    assert spec["SecurityOpt"] == ["no-new-privileges"]
    assert list(spec["Tmpfs"]) == ["/tmp"]
    status = host.check_output("docker exec tfserving cat /proc/1/status")
    assert re.search(r"^CapEff:\s+0+$", status, re.MULTILINE), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.MULTILINE), status
    write = host.run("docker exec tfserving touch /probe")
    assert write.rc != 0 and "Read-only file system" in write.stderr
    # 2 CPUs here: the minimum of 1024; print what the server holds after the tests so far.
    assert spec["PidsLimit"] == 1024
    pids = host.check_output("docker stats --no-stream --format '{{.PIDs}}' tfserving")
    print(f"serving container: {pids} of {spec['PidsLimit']} pids")
    assert 0 < int(pids) < spec["PidsLimit"] // 4


def test_models_config_as_configured(host) -> None:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    text = host.file("/srv/tfserving/config/models.config").content_string
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    models = {c.name: c for c in config.model_config_list.config}
    assert sorted(models) == ["digits", "half_plus_two"]
    assert models["digits"].base_path == "/models/digits"
    assert models["digits"].model_version_policy.latest.num_versions == 1


def test_every_sample_image_is_classified_as_its_label(address: str) -> None:
    labels: dict[str, int] = json.loads((SAMPLES / "labels.json").read_text())
    files = sorted(labels)
    result = tfs_client(
        "predict",
        f"--server={address}:8500",
        "--model=digits",
        "--signature=predict_images",
        "--json",
        "--image",
        *(str(SAMPLES / f) for f in files),
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)["scores"]
    assert len(scores) == len(files)
    predicted = {
        f: max(range(10), key=row.__getitem__) for f, row in zip(files, scores, strict=True)
    }
    assert predicted == labels


def test_rest_predict_half_plus_two(address: str) -> None:
    assert predict_half_plus_two(address) == [2.5, 3.0, 4.5]


def ok_requests(metrics: str, model: str) -> float:
    """The server's count of the model's requests that answered OK (its request_count)."""
    total, seen = 0.0, False
    for labels, value in REQUEST_COUNT.findall(metrics):
        named = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if named.get("model_name") == model and named.get("status") == "OK":
            total, seen = total + float(value), True
    assert seen, f"no {model} OK series of :tensorflow:serving:request_count in the metrics"
    return total


def test_metrics_count_requests(address: str) -> None:
    url = f"http://{address}:8501/monitoring/prometheus/metrics"
    before = ok_requests(requests.get(url, timeout=10).text, "half_plus_two")
    for _ in range(3):
        predict_half_plus_two(address)
    after = ok_requests(requests.get(url, timeout=10).text, "half_plus_two")
    assert after - before >= 3, (before, after)


class Traffic(threading.Thread):
    """REST predictions in a loop until stopped: every answer must be one of the versions."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.stop = threading.Event()
        self.answers: list[list[float]] = []
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set() and len(self.answers) < 100_000:
            try:
                self.answers.append(predict_half_plus_two(self.address))
            except (AssertionError, requests.RequestException) as error:
                self.failures.append(str(error))
            time.sleep(0.02)


def test_version_that_answers_wrong_is_rolled_back_and_the_previous_answers(
    host, address: str, testdata: Path
) -> None:
    # 124 carries half_plus_three's graph: it loads, but its answers are not half_plus_two's.
    shutil.copytree(
        testdata / "saved_model_half_plus_three" / "00000123", MODELS / "half_plus_two" / "124"
    )
    result = converge(SCENARIO_DIR, playbook=SERVE)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "did not pass the readiness gate (failed)" in output, output[-4000:]
    assert "answer differs from the expected" in output
    assert "Rolled back, removed again: half_plus_two/124" in output
    assert "The previous versions answer again:" in output and "half_plus_two=123" in output
    assert predict_half_plus_two(address) == HALF_PLUS_TWO
    assert not host.file("/srv/tfserving/models/half_plus_two/124").exists
    assert host.file("/srv/tfserving/models/half_plus_two/00000123").exists


def test_new_version_rolls_in_without_a_failed_request(host, address: str) -> None:
    # The same 124 again, now that its answers are the expected ones.
    traffic = Traffic(address)
    traffic.start()
    result = converge(SCENARIO_DIR, half_plus_two_copy(HALF_PLUS_THREE), playbook=SERVE)
    time.sleep(1)
    traffic.stop.set()
    traffic.join(timeout=30)
    assert result.returncode == 0, result.stdout[-4000:]
    assert traffic.failures == []
    assert traffic.answers[0] == HALF_PLUS_TWO
    assert traffic.answers[-1] == HALF_PLUS_THREE
    assert {tuple(a) for a in traffic.answers} == {tuple(HALF_PLUS_TWO), tuple(HALF_PLUS_THREE)}
    status = tfs_client("status", f"--server={address}:8500", "--model=half_plus_two", "--json")
    versions = {v["version"]: v["state"] for v in json.loads(status.stdout)["versions"]}
    assert versions.get(124) == "AVAILABLE"
    # The policy (latest 1) no longer serves 123: it went once 124 passed the gate.
    assert not host.file("/srv/tfserving/models/half_plus_two/00000123").exists
    assert host.file("/srv/tfserving/models/half_plus_two/124/saved_model.pb").exists
    assert host.file("/srv/tfserving/state/half_plus_two/124.sha256").exists


def test_corrupt_version_fails_the_play_and_the_old_one_answers(
    host, address: str, testdata: Path
) -> None:
    corrupt = MODELS / "half_plus_two" / "125"
    shutil.copytree(testdata / "saved_model_half_plus_three" / "00000123", corrupt)
    (corrupt / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    result = converge(SCENARIO_DIR, half_plus_two_copy(HALF_PLUS_THREE), playbook=SERVE)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "did not pass the readiness gate (failed)" in output, output[-4000:]
    assert "version 125 failed to load" in output
    assert "Rolled back, removed again: half_plus_two/125" in output
    assert "half_plus_two=124" in output and "answer again" in output
    assert predict_half_plus_two(address) == HALF_PLUS_THREE
    assert not host.file("/srv/tfserving/models/half_plus_two/125").exists
    shutil.rmtree(corrupt)


def test_stuck_version_fails_the_play_within_the_gate_timeout(host, address: str) -> None:
    """A version whose load never ends (its warmup blocks): the gate gives up on time."""
    stuck = MODELS / "half_plus_two" / "126"
    subprocess.run(
        [sys.executable, str(Path(__file__).parent / "blocking_model.py"), str(stuck)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    timeout = 20
    extra = {**half_plus_two_copy(HALF_PLUS_THREE), "tfserving_gate_timeout": timeout}
    result = converge(SCENARIO_DIR, extra, playbook=SERVE)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "did not pass the readiness gate (failed)" in output, output[-4000:]
    assert "version 126 is LOADING" in output
    waited = task_seconds(output, "Wait until exactly the served versions are AVAILABLE")
    watched = task_seconds(output, "Watch the server start; a crash ends the wait at once")
    print(f"gate timeout {timeout} s: watch {watched:.1f} s + wait {waited:.1f} s")
    assert watched + waited <= timeout + 10
    assert predict_half_plus_two(address) == HALF_PLUS_THREE
    assert not host.file("/srv/tfserving/models/half_plus_two/126").exists
    shutil.rmtree(stuck)


def wait_answers(address: str, expected: list[float], timeout: float = 60) -> None:
    """REST answers as expected within the timeout (the gate checked gRPC)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert predict_half_plus_two(address) == expected
            return
        except requests.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _serving(host) -> dict[str, object]:
    c = container(host)
    return {"id": c["Id"], "image": c["Image"], "args": c["Args"]}


def _no_previous_left(host) -> None:
    assert host.run("docker inspect tfserving-previous").rc != 0
    assert not host.file("/srv/tfserving/previous").exists


def test_a_flag_the_server_cannot_parse_restores_the_previous_container(host, address: str) -> None:
    """A new flag value that makes the server exit at start (the real server exits on a
    known flag it cannot parse too): the previous container comes back with its image,
    flags and config files, and its versions answer."""
    before = _serving(host)
    extra = {
        **half_plus_two_copy(HALF_PLUS_THREE),
        "tfserving_extra_args": ["--file_system_poll_wait_seconds=abc"],
        "tfserving_gate_timeout": 120,
    }
    result = converge(SCENARIO_DIR, extra, playbook=SERVE)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "did not pass the readiness gate (crashed)" in output, output[-4000:]
    assert "The previous container is back, with its image, flags and config files." in output
    assert "The previous versions answer again" in output, output[-4000:]
    assert "file_system_poll_wait_seconds" in output.split("Last lines of the server log:")[-1]
    after = _serving(host)
    assert after == before, "the container that serves is not the previous one"
    assert container(host)["State"]["Running"] is True
    wait_answers(address, HALF_PLUS_THREE)
    _no_previous_left(host)


def test_a_container_docker_cannot_create_leaves_the_previous_one_serving(
    host, address: str
) -> None:
    """The new container cannot be created (its image is at a registry that refuses the
    pull): the previous one, stopped to free its ports, is renamed back and started."""
    before = _serving(host)
    extra = {
        **half_plus_two_copy(HALF_PLUS_THREE),
        "tfserving_image": "127.0.0.1:9/tfserving-fleet/no-such-image:1",
    }
    result = converge(SCENARIO_DIR, extra, playbook=SERVE)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Docker refused the new serving container" in output, output[-4000:]
    assert "The previous container serves again" in output, output[-4000:]
    assert _serving(host) == before
    assert container(host)["State"]["Running"] is True
    wait_answers(address, HALF_PLUS_THREE)
    _no_previous_left(host)


def test_a_resource_update_docker_refuses_leaves_the_container_as_it_was(
    host, address: str
) -> None:
    """A memory limit below Docker's minimum passes the size check; limits are updated in
    place, so the refusal leaves the running container untouched (and nothing drained)."""
    before = _serving(host)
    extra = {**half_plus_two_copy(HALF_PLUS_THREE), "tfserving_memory_limit": "1m"}
    result = converge(SCENARIO_DIR, extra, playbook=SERVE)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Docker refused the new serving container" in output, output[-4000:]
    assert "The running container was left as it was." in output
    assert _serving(host) == before
    assert predict_half_plus_two(address) == HALF_PLUS_THREE


def test_crash_loop_at_start_is_stopped_with_the_server_reason(host, testdata: Path) -> None:
    """A first deploy of the container with a new model whose only version does not load:
    the server exits at start, which its restart policy would repeat forever."""
    host.run_expect([0], "docker rm -f tfserving")
    broken = MODELS / "broken" / "1"
    shutil.copytree(testdata / "saved_model_half_plus_three" / "00000123", broken)
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    extra = {
        **half_plus_two_copy(HALF_PLUS_THREE),
        "tfserving_models": "{{ sandbox_models + [half_plus_two_copy, broken_model] }}",
        "broken_model": {"name": "broken", "path": str(MODELS / "broken")},
        "tfserving_gate_timeout": 240,
    }
    start = time.monotonic()
    result = converge(SCENARIO_DIR, extra, playbook=SERVE)
    elapsed = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "did not pass the readiness gate (crashed)" in output, output[-4000:]
    assert "broken" in output.split("Last lines of the server log:")[-1]
    assert "Rolled back, removed again: broken/1" in output
    watched = task_seconds(output, "Watch the server start; a crash ends the wait at once")
    print(
        f"FAULT 4 crash loop at a first deploy: detected after {watched:.1f} s of watching"
        f" (play {elapsed:.0f} s)"
    )
    assert watched < 120
    state = container(host)["State"]
    assert state["Running"] is False and state["Restarting"] is False
    assert not host.file("/srv/tfserving/models/broken/1").exists
    shutil.rmtree(broken.parent)


def test_grpc_mutual_tls_end_to_end(host, address: str, tmp_path: Path) -> None:
    """gRPC with TLS and client certificates: the gate passes through it; plaintext clients
    and clients without a certificate are refused; a client with one gets the answer."""
    from tls_certs import write_test_pki

    pki = write_test_pki(tmp_path, "tfserving.test")
    extra = {
        **half_plus_two_copy(HALF_PLUS_THREE),
        "tfserving_ssl_server_cert": pki.server_cert.read_text(),
        "tfserving_ssl_server_key": pki.server_key.read_text(),
        "tfserving_ssl_custom_ca": pki.ca_cert.read_text(),
        "tfserving_ssl_client_verify": True,
        "tfserving_gate_ca_file": str(pki.ca_cert),
        "tfserving_gate_cert_file": str(pki.client_cert),
        "tfserving_gate_key_file": str(pki.client_key),
        "tfserving_gate_server_name": "tfserving.test",
    }
    # At -vvv, the most Ansible shows: no line of either private key in the whole log.
    result = converge(SCENARIO_DIR, extra, playbook=SERVE, options=["-vvv"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    secrets = key_lines(pki.server_key) + key_lines(pki.client_key)
    assert [line for line in secrets if line in output] == []
    assert "PRIVATE KEY" not in output
    print(f"-vvv TLS converge: {len(output)} characters of log, no private key line in it")
    # On the host the server key is in ssl.config alone: root's, readable by the server's
    # group only (the key files on the controller are the user's, 0600 here).
    ssl_config = host.file("/srv/tfserving/config/ssl.config")
    assert (ssl_config.uid, ssl_config.gid, ssl_config.mode) == (0, 8500, 0o640)
    holders = host.run(f"grep -rlF {secrets[0]} /srv /etc /root /home /tmp /var/tmp")
    assert holders.stdout.split() == ["/srv/tfserving/config/ssl.config"], holders.stdout
    assert {oct(path.stat().st_mode & 0o777) for path in (pki.server_key, pki.client_key)} == {
        "0o600"
    }
    assert container(host)["Config"]["User"] == "8500:8500"

    server = f"--server={address}:8500"
    query = ["--model=half_plus_two", "--input=x=[[1.0],[2.0],[5.0]]", "--json", "--timeout=5"]
    plain = tfs_client("predict", server, *query)
    assert plain.returncode == 3, plain.stderr
    tls = [f"--ca-file={pki.ca_cert}", "--server-name-override=tfserving.test"]
    no_cert = tfs_client("predict", server, *query, *tls)
    assert no_cert.returncode == 3, no_cert.stderr
    client = [f"--cert-file={pki.client_cert}", f"--key-file={pki.client_key}"]
    answer = tfs_client("predict", server, *query, *tls, *client)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == {"y": [[a] for a in HALF_PLUS_THREE]}
    digits = tfs_client(
        "predict",
        server,
        "--model=digits",
        "--image",
        str(SAMPLES / "digit_3.jpg"),
        "--expect-class",
        "3",
        *tls,
        *client,
    )
    assert digits.returncode == 0, digits.stderr
