"""The whole job on a converged host: what a user of the fleet relies on.

Tests run in file order: the read-only checks first, then a rollout to a new version and a
failed rollout of a corrupt one.
"""

from __future__ import annotations

import json
import os
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
SAMPLES = PROJECT_DIR / "files" / "samples"
TFS_CLIENT = str(Path(sys.executable).parent / "tfs-client")
MODELS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "models"


@pytest.fixture(scope="module")
def address(host) -> str:
    return host.ansible.get_variables()["test_host_address"]


def container(host) -> dict:
    return json.loads(host.check_output("docker inspect tfserving"))[0]


def tfs_client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TFS_CLIENT, *args], capture_output=True, text=True, check=False, timeout=120
    )


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


@pytest.mark.parametrize("port", [8500, 8501])
def test_ports_listen(host, port: int) -> None:
    assert host.socket(f"tcp://0.0.0.0:{port}").is_listening


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


def test_metrics_count_requests(address: str) -> None:
    text = requests.get(f"http://{address}:8501/monitoring/prometheus/metrics", timeout=10).text
    assert "half_plus_two" in text


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


def test_new_version_rolls_in_without_a_failed_request(host, address: str, testdata: Path) -> None:
    # Version 124 carries half_plus_three's graph, so its answers tell it apart.
    shutil.copytree(
        testdata / "saved_model_half_plus_three" / "00000123", MODELS / "half_plus_two" / "124"
    )
    traffic = Traffic(address)
    traffic.start()
    result = converge(SCENARIO_DIR)
    time.sleep(1)
    traffic.stop.set()
    traffic.join(timeout=30)
    assert result.returncode == 0, result.stdout[-4000:]
    assert traffic.failures == []
    assert traffic.answers[0] == [2.5, 3.0, 4.5]
    assert traffic.answers[-1] == [3.5, 4.0, 5.5]
    assert {tuple(a) for a in traffic.answers} == {(2.5, 3.0, 4.5), (3.5, 4.0, 5.5)}
    assert predict_half_plus_two(address) == [3.5, 4.0, 5.5]
    status = tfs_client("status", f"--server={address}:8500", "--model=half_plus_two", "--json")
    versions = {v["version"]: v["state"] for v in json.loads(status.stdout)["versions"]}
    assert versions.get(124) == "AVAILABLE"
    # The policy (latest 1) no longer serves 123: it went once 124 was AVAILABLE.
    assert not host.file("/srv/tfserving/models/half_plus_two/00000123").exists
    assert host.file("/srv/tfserving/models/half_plus_two/124/saved_model.pb").exists


def test_corrupt_version_fails_the_play_and_the_old_one_answers(
    host, address: str, testdata: Path
) -> None:
    corrupt = MODELS / "half_plus_two" / "125"
    shutil.copytree(testdata / "saved_model_half_plus_three" / "00000123", corrupt)
    (corrupt / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    result = converge(SCENARIO_DIR)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "did not pass the readiness gate" in output, output[-4000:]
    assert "half_plus_two/125" in output
    assert predict_half_plus_two(address) == [3.5, 4.0, 5.5]
    assert not host.file("/srv/tfserving/models/half_plus_two/125").exists
    shutil.rmtree(corrupt)
