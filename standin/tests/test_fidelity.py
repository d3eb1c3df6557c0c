"""Where the roles depend on how tensorflow_model_server fails, the stand-in fails alike.

Each test names the real server's behaviour it checks; standin/README.md cites the source.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
from tfs_standin import health
from tfs_standin.server import ModelsUnavailable

from conftest import (
    HALF_PLUS_THREE,
    HALF_PLUS_TWO,
    STANDIN_DIR,
    add_corrupt_version,
    add_version,
    free_port,
    make_server,
    wait_until,
)

FAST = [
    "--file_system_poll_wait_seconds=0.1",
    "--max_num_load_retries=0",
    "--load_retry_interval_micros=100000",
]
AVAILABLE, END = 30, 50


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(STANDIN_DIR), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tfs_standin", "--standin_bind_address=127.0.0.1", *args]


def _predict(running, model: str, x: list[list[float]]) -> predict_pb2.PredictResponse:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(x, dtype=np.float32)))
    return running.predict.Predict(req, timeout=10)


def _state(running, model: str, version: int) -> int:
    url = f"{running.rest}/v1/models/{model}/versions/{version}"
    reply = requests.get(url, timeout=10)
    if reply.status_code != 200:
        return 0
    return {"AVAILABLE": AVAILABLE, "END": END}.get(
        reply.json()["model_version_status"][0]["state"], 0
    )


# ----- start-up --------------------------------------------------------------------------
def test_start_fails_with_the_count_of_models_that_did_not_become_available(
    testdata: Path, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    add_version(good, 1, testdata / HALF_PLUS_TWO / "00000123")
    add_corrupt_version(bad, 3)
    cfg = tmp_path / "models.config"
    cfg.write_text(
        "model_config_list {\n"
        f'  config {{ name: "good" base_path: "{good}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "bad" base_path: "{bad}" model_platform: "tensorflow" }}\n'
        "}\n"
    )
    server = make_server([f"--model_config_file={cfg}", *FAST])
    with pytest.raises(ModelsUnavailable) as err:
        server.start(timeout=60)
    text = str(err.value)
    assert text.startswith("1 model(s) did not become available: {{{name: bad version: 3} due ")
    assert "due to error: " in text and text.endswith("}, }")


def test_cli_exits_255_before_opening_ports_when_a_model_fails(tmp_path: Path) -> None:
    base = tmp_path / "bad"
    add_corrupt_version(base, 1)
    rest = free_port()
    out = subprocess.run(
        _cli(
            f"--port={free_port()}",
            f"--rest_api_port={rest}",
            "--model_name=bad",
            f"--model_base_path={base}",
            *FAST,
        ),
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
        timeout=120,
    )
    assert out.returncode == 255, out.stderr[-2000:]
    assert out.stdout.startswith(
        "Failed to start server. Error: UNKNOWN: 1 model(s) did not become available: "
        "{{{name: bad version: 1} due to error: "
    ), out.stdout
    assert "Exporting HTTP/REST API" not in out.stderr


# ----- SIGTERM (the CLI test in test_config.py checks the server process) --------------
def test_entrypoint_keeps_the_shell_as_parent_and_passes_the_exit_status(
    tmp_path: Path,
) -> None:
    """No exec: the shell stays PID 1 in the container, so docker stop waits its timeout."""
    fake = tmp_path / "bin" / "tensorflow_model_server"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "ppid=$PPID args=$*"\nexit 7\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    env.update(MODEL_NAME="m", MODEL_BASE_PATH="/models")
    proc = subprocess.Popen(
        [str(STANDIN_DIR / "tf_serving_entrypoint.sh"), "--enable_batching"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 7
    assert f"ppid={proc.pid} " in out, "the server must be a child of the entrypoint shell"
    assert "--model_base_path=/models/m --enable_batching" in out


# ----- gRPC health -------------------------------------------------------------------------
def _health_check(channel: grpc.Channel, service: str) -> int:
    check = channel.unary_unary(
        f"/{health.SERVICE}/Check",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=health.HealthCheckResponse.FromString,
    )
    return check(health.HealthCheckRequest(service=service), timeout=10).status


def test_grpc_health_service_when_enabled(testdata: Path, start_server) -> None:
    on = start_server(
        [
            "--model_name=half_plus_two",
            f"--model_base_path={testdata / HALF_PLUS_TWO}",
            "--enable_grpc_healthcheck_service",
        ]
    )
    for service in ("", "ModelService", "PredictionService"):
        assert _health_check(on.channel, service) == health.SERVING
    with pytest.raises(grpc.RpcError) as err:
        _health_check(on.channel, "nope")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    off = start_server(
        ["--model_name=half_plus_two", f"--model_base_path={testdata / HALF_PLUS_TWO}"]
    )
    with pytest.raises(grpc.RpcError) as err:
        _health_check(off.channel, "")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_health_does_not_track_model_state(testdata: Path, tmp_path: Path, start_server):
    base = tmp_path / "hp"
    add_version(base, 1, testdata / HALF_PLUS_TWO / "00000123")
    srv = start_server(
        [
            "--model_name=hp",
            f"--model_base_path={base}",
            "--enable_grpc_healthcheck_service",
            *FAST,
        ]
    )
    shutil.rmtree(base / "1")
    wait_until(lambda: _state(srv, "hp", 1) == END, what="version 1 unloaded")
    assert _health_check(srv.channel, "PredictionService") == health.SERVING


# ----- REST paths ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/healthz", 404),
        ("get", "/", 404),
        ("post", "/predict", 404),
        ("get", "/v2/models/half_plus_two", 404),
        ("get", "/v1/nothing/here", 400),
        ("get", "/V1/models/half_plus_two", 200),
    ],
)
def test_rest_paths_outside_v1_answer_404(main_server, method: str, path: str, status: int):
    reply = requests.request(method, main_server.rest + path, timeout=10)
    assert reply.status_code == status, reply.text
    if status == 404:
        assert reply.content == b""


# ----- batching ------------------------------------------------------------------------------
def test_batching_refuses_a_request_larger_than_max_batch_size(
    testdata: Path, tmp_path: Path, start_server
) -> None:
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 2 }\nbatch_timeout_micros { value: 1000 }\n")
    srv = start_server(
        [
            "--model_name=half_plus_two",
            f"--model_base_path={testdata / HALF_PLUS_TWO}",
            "--enable_batching",
            f"--batching_parameters_file={params}",
        ]
    )
    two = _predict(srv, "half_plus_two", [[1.0], [2.0]])
    assert tf.make_ndarray(two.outputs["y"]).tolist() == [[2.5], [3.0]]
    with pytest.raises(grpc.RpcError) as err:
        _predict(srv, "half_plus_two", [[1.0], [2.0], [5.0]])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "Task size 3 is larger than maximum input batch size 2"
    url = f"{srv.rest}/v1/models/half_plus_two:predict"
    reply = requests.post(url, json={"instances": [1.0, 2.0, 5.0]}, timeout=10)
    assert reply.status_code == 400
    assert reply.json() == {"error": "Task size 3 is larger than maximum input batch size 2"}


def test_without_batching_any_batch_size_runs(main_server) -> None:
    reply = requests.post(
        f"{main_server.rest}/v1/models/half_plus_two:predict",
        json={"instances": [float(i) for i in range(1500)]},
        timeout=30,
    )
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 1500


# ----- warmup ---------------------------------------------------------------------------------
def _warmup_file(version_dir: Path, records: int) -> None:
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.name = "hp"
    log.predict_log.request.inputs["x"].CopyFrom(
        tf.make_tensor_proto(np.array([[1.0]], dtype=np.float32))
    )
    extra = version_dir / "assets.extra"
    extra.mkdir()
    data = log.SerializeToString()
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        for _ in range(records):
            writer.write(data)


def test_warmup_of_more_than_1000_records_fails_the_load(
    testdata: Path, tmp_path: Path, start_server
) -> None:
    ok = tmp_path / "ok"
    add_version(ok, 1, testdata / HALF_PLUS_TWO / "00000123")
    _warmup_file(ok / "1", 1000)
    start_server(["--model_name=hp", f"--model_base_path={ok}", *FAST])

    over = tmp_path / "over"
    add_version(over, 1, testdata / HALF_PLUS_TWO / "00000123")
    _warmup_file(over / "1", 1001)
    server = make_server(["--model_name=hp", f"--model_base_path={over}", *FAST])
    with pytest.raises(ModelsUnavailable) as err:
        server.start(timeout=60)
    assert "INVALID_ARGUMENT: Number of warmup records exceeds the maximum (1000) at " in str(
        err.value
    )
    # --enable_model_warmup=false skips the file: the same version loads.
    start_server(
        ["--model_name=hp", f"--model_base_path={over}", "--enable_model_warmup=false", *FAST]
    )


# ----- a failed version number deployed again ---------------------------------------------------
def test_failed_version_is_retried_only_after_its_directory_went_away(
    testdata: Path, tmp_path: Path, start_server
) -> None:
    base = tmp_path / "hp"
    add_version(base, 1, testdata / HALF_PLUS_TWO / "00000123")
    srv = start_server(["--model_name=hp", f"--model_base_path={base}", *FAST])
    add_corrupt_version(base, 2)
    wait_until(lambda: _state(srv, "hp", 2) == END, what="version 2 given up")

    # Fixed in place (the directory never disappears): the failed load stays failed.
    shutil.copyfile(
        testdata / HALF_PLUS_THREE / "00000123" / "saved_model.pb", base / "2" / "saved_model.pb"
    )
    shutil.copytree(testdata / HALF_PLUS_THREE / "00000123" / "variables", base / "2" / "variables")
    time.sleep(1.0)  # ten polls
    assert _state(srv, "hp", 2) == END
    assert tf.make_ndarray(_predict(srv, "hp", [[1.0]]).outputs["y"]).tolist() == [[2.5]]

    # Removed, seen gone by a poll, deployed again: loaded afresh and serving.
    shutil.rmtree(base / "2")
    time.sleep(0.5)
    add_version(base, 2, testdata / HALF_PLUS_THREE / "00000123")
    wait_until(lambda: _state(srv, "hp", 2) == AVAILABLE, what="version 2 loaded again")
    assert tf.make_ndarray(_predict(srv, "hp", [[1.0]]).outputs["y"]).tolist() == [[3.5]]
