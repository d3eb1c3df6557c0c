"""Version lifecycle: new versions take over, failed loads, policies, labels, reloads."""

from __future__ import annotations

import logging
import shutil
import socket
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, predict_pb2
from tensorflow_serving.config import model_server_config_pb2
from tfs_standin.server import StartupError

from conftest import (
    HALF_PLUS_THREE,
    HALF_PLUS_TWO,
    add_corrupt_version,
    add_version,
    make_server,
    wait_until,
)

FAST = [
    "--file_system_poll_wait_seconds=0.1",
    "--max_num_load_retries=1",
    "--load_retry_interval_micros=100000",
]
AVAILABLE, END = 30, 50


def y_of(running, model: str, **spec) -> tuple[int, list]:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    if "version" in spec:
        req.model_spec.version.value = spec["version"]
    if "label" in spec:
        req.model_spec.version_label = spec["label"]
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], dtype=np.float32)))
    resp = running.predict.Predict(req, timeout=10)
    return resp.model_spec.version.value, tf.make_ndarray(resp.outputs["y"]).tolist()


def states(running, model: str) -> dict[int, tuple[int, int, str]]:
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = model
    resp = running.models.GetModelStatus(req, timeout=10)
    return {
        s.version: (s.state, s.status.error_code, s.status.error_message)
        for s in resp.model_version_status
    }


def write_config(path: Path, models: list[tuple[str, Path, str]]) -> Path:
    """models: (name, base_path, extra text inside the config block)."""
    blocks = [
        f'config {{ name: "{n}" base_path: "{b}" model_platform: "tensorflow" {extra} }}'
        for n, b, extra in models
    ]
    path.write_text("model_config_list {\n" + "\n".join(blocks) + "\n}\n")
    return path


def test_new_version_takes_over_and_a_corrupt_one_does_not(
    testdata: Path, tmp_path: Path, start_server
) -> None:
    base = tmp_path / "hp"
    add_version(base, 1, testdata / HALF_PLUS_TWO / "00000123")
    srv = start_server(["--model_name=hp", f"--model_base_path={base}", *FAST])
    assert y_of(srv, "hp") == (1, [[2.5]])

    add_version(base, 2, testdata / HALF_PLUS_THREE / "00000123")
    wait_until(lambda: states(srv, "hp").get(1, (0,))[0] == END, what="version 1 unloaded")
    assert states(srv, "hp")[2][0] == AVAILABLE
    assert y_of(srv, "hp") == (2, [[3.5]])

    add_corrupt_version(base, 3)
    wait_until(lambda: states(srv, "hp").get(3, (0,))[0] == END, what="version 3 given up")
    st = states(srv, "hp")
    assert st[3][1] != 0 and st[3][2], "a failed load must carry its error"
    assert st[2][0] == AVAILABLE
    assert y_of(srv, "hp") == (2, [[3.5]]), "the older version keeps serving"
    rest = requests.get(f"{srv.rest}/v1/models/hp/versions/3", timeout=10).json()
    assert rest["model_version_status"][0]["state"] == "END"
    assert rest["model_version_status"][0]["status"]["error_code"] != "OK"


def test_policies_and_labels(testdata: Path, tmp_path: Path, start_server) -> None:
    base = tmp_path / "multi"
    add_version(base, 1, testdata / HALF_PLUS_TWO / "00000123")
    add_version(base, 2, testdata / HALF_PLUS_THREE / "00000123")
    add_version(base, 3, testdata / HALF_PLUS_TWO / "00000123")
    cfg = write_config(
        tmp_path / "models.config",
        [
            ("latest2", base, "model_version_policy { latest { num_versions: 2 } }"),
            (
                "every",
                base,
                "model_version_policy { all {} } "
                'version_labels { key: "stable" value: 1 } '
                'version_labels { key: "canary" value: 2 }',
            ),
            ("pinned", base, "model_version_policy { specific { versions: 1 } }"),
            ("default", base, ""),
        ],
    )
    srv = start_server([f"--model_config_file={cfg}", *FAST])

    def available(model: str) -> set[int]:
        return {v for v, s in states(srv, model).items() if s[0] == AVAILABLE}

    assert available("latest2") == {2, 3}
    assert available("every") == {1, 2, 3}
    assert available("pinned") == {1}
    assert available("default") == {3}
    assert y_of(srv, "pinned") == (1, [[2.5]])
    assert y_of(srv, "every", version=2) == (2, [[3.5]])
    assert y_of(srv, "every", label="stable") == (1, [[2.5]])
    assert y_of(srv, "every", label="canary") == (2, [[3.5]])
    r = requests.post(
        f"{srv.rest}/v1/models/every/labels/canary:predict", json={"instances": [1.0]}, timeout=10
    )
    assert r.json() == {"predictions": [3.5]}
    status = requests.get(f"{srv.rest}/v1/models/every/labels/stable", timeout=10).json()
    assert [s["version"] for s in status["model_version_status"]] == ["1"]
    with pytest.raises(grpc.RpcError) as err:
        y_of(srv, "latest2", version=1)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_label_on_unavailable_version_is_refused(testdata: Path, tmp_path: Path) -> None:
    base = tmp_path / "m"
    add_version(base, 1, testdata / HALF_PLUS_TWO / "00000123")
    cfg = write_config(
        tmp_path / "models.config",
        [("m", base, 'version_labels { key: "stable" value: 7 }')],
    )
    server = make_server([f"--model_config_file={cfg}", *FAST])
    with pytest.raises(StartupError, match="version 7 of model m"):
        server.start(timeout=30)


def test_ports_open_only_once_a_version_is_available(
    testdata: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "late"
    base.mkdir()
    server = make_server(["--model_name=late", f"--model_base_path={base}", *FAST])
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.start(timeout=60)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    caplog.set_level(logging.INFO, logger="tfs_standin")
    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_until(
            lambda: "No versions of servable late found under base path" in caplog.text,
            what="the no-versions message",
        )
        with (
            pytest.raises(OSError),
            socket.create_connection(("127.0.0.1", server.opts.rest_api_port), timeout=1),
        ):
            pass
        add_version(base, 5, testdata / HALF_PLUS_TWO / "00000123")
        thread.join(timeout=60)
        assert not thread.is_alive() and not errors, errors
        r = requests.get(f"http://127.0.0.1:{server.opts.rest_api_port}/v1/models/late", timeout=10)
        assert r.json()["model_version_status"][0]["version"] == "5"
    finally:
        thread.join(timeout=60)
        server.stop()


def test_initial_load_failure_stops_startup(tmp_path: Path) -> None:
    base = tmp_path / "bad"
    add_corrupt_version(base, 1)
    server = make_server(["--model_name=bad", f"--model_base_path={base}", *FAST])
    with pytest.raises(
        StartupError, match=r"^1 model\(s\) did not become available: \{\{\{name: bad version: 1\}"
    ):
        server.start(timeout=30)


def test_config_file_reload(
    testdata: Path, tmp_path: Path, start_server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tfs_standin")
    two, three = testdata / HALF_PLUS_TWO, testdata / HALF_PLUS_THREE
    cfg = write_config(tmp_path / "models.config", [("a", two, "")])
    srv = start_server(
        [f"--model_config_file={cfg}", "--model_config_file_poll_wait_seconds=0.2", *FAST]
    )
    assert y_of(srv, "a") == (123, [[2.5]])
    write_config(tmp_path / "next.config", [("b", three, "")]).replace(cfg)
    wait_until(lambda: states(srv, "a")[123][0] == END, what="model a unloaded")

    def b_available() -> bool:
        try:
            return states(srv, "b")[123][0] == AVAILABLE
        except grpc.RpcError:
            return False

    wait_until(b_available, what="model b loaded")
    assert y_of(srv, "b") == (123, [[3.5]])
    with pytest.raises(grpc.RpcError) as err:
        y_of(srv, "a")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # a broken file is reported and ignored: b keeps serving
    cfg.write_text("this is not a text proto")
    wait_until(
        lambda: "Config reload skipped: invalid model config file" in caplog.text,
        what="the reload error",
    )
    assert y_of(srv, "b") == (123, [[3.5]])


def test_reload_config_rpc(testdata: Path, tmp_path: Path, start_server) -> None:
    base = tmp_path / "rpc"
    shutil.copytree(testdata / HALF_PLUS_TWO, base)
    srv = start_server(["--model_name=one", f"--model_base_path={base}", *FAST])
    req = model_management_pb2.ReloadConfigRequest()
    mc = req.config.model_config_list.config.add(
        name="two", base_path=str(testdata / HALF_PLUS_THREE), model_platform="tensorflow"
    )
    assert isinstance(mc, model_server_config_pb2.ModelConfig)
    resp = srv.models.HandleReloadConfigRequest(req, timeout=60)
    assert resp.status.error_code == 0, resp.status.error_message
    assert y_of(srv, "two") == (123, [[3.5]])
    wait_until(lambda: states(srv, "one")[123][0] == END, what="model one unloaded")
    bad = model_management_pb2.ReloadConfigRequest()
    bad.config.model_config_list.config.add(name="x", base_path="")
    resp = srv.models.HandleReloadConfigRequest(bad, timeout=60)
    assert resp.status.error_code != 0 and "base_path" in resp.status.error_message
