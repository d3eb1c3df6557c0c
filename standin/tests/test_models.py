"""Model kinds beyond TF Serving's test data: stateful TF1 graphs, TF2 exports, warmup."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfs_standin.server import StartupError

from conftest import HALF_PLUS_TWO, make_server


def export_counter(path: Path) -> None:
    """A TF1 graph whose output counts the calls: state lives in the Session."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        x = tf.compat.v1.placeholder(tf.float32, shape=[None], name="x")
        calls = tf.compat.v1.Variable(0.0, name="calls")
        bumped = tf.compat.v1.assign_add(calls, 1.0)
        y = tf.identity(x * 0.0 + bumped, name="y")
        sess.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(str(path))
        sig = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
        builder.add_meta_graph_and_variables(
            sess, ["serve"], signature_def_map={"serving_default": sig}
        )
        builder.save()


class Doubler(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="pair")])
    def serve(self, pair: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"doubled": pair * 2.0, "total": tf.reduce_sum(pair, axis=1)}


def test_stateful_tf1_model_keeps_state(tmp_path: Path, start_server) -> None:
    export_counter(tmp_path / "counter" / "1")
    srv = start_server(["--model_name=counter", f"--model_base_path={tmp_path / 'counter'}"])
    url = f"{srv.rest}/v1/models/counter:predict"
    got = [requests.post(url, json={"instances": [0.0]}, timeout=10).json() for _ in range(3)]
    assert got == [{"predictions": [1.0]}, {"predictions": [2.0]}, {"predictions": [3.0]}]


def test_tf2_export_with_two_outputs(tmp_path: Path, start_server) -> None:
    module = Doubler()
    tf.saved_model.save(
        module, str(tmp_path / "doubler" / "7"), signatures={"serving_default": module.serve}
    )
    srv = start_server(["--model_name=doubler", f"--model_base_path={tmp_path / 'doubler'}"])
    url = f"{srv.rest}/v1/models/doubler:predict"
    rows = requests.post(url, json={"instances": [[1.0, 2.0], [3.0, 4.5]]}, timeout=10).json()
    assert rows == {
        "predictions": [
            {"doubled": [2.0, 4.0], "total": 3.0},
            {"doubled": [6.0, 9.0], "total": 7.5},
        ]
    }
    cols = requests.post(url, json={"inputs": {"pair": [[1.0, 2.0]]}}, timeout=10).json()
    assert cols == {"outputs": {"doubled": [[2.0, 4.0]], "total": [3.0]}}


def _write_warmup(version_dir: Path, x: np.ndarray) -> None:
    log = prediction_log_pb2.PredictionLog()
    req = log.predict_log.request
    req.model_spec.name = "hp"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    extra = version_dir / "assets.extra"
    extra.mkdir()
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        writer.write(log.SerializeToString())
        writer.write(log.SerializeToString())


def test_warmup_requests_are_replayed(
    testdata: Path, tmp_path: Path, start_server, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    caplog.set_level(logging.INFO, logger="tfs_standin")
    good = tmp_path / "good"
    shutil.copytree(testdata / HALF_PLUS_TWO / "00000123", good / "1")
    _write_warmup(good / "1", np.array([[1.0], [2.0]], dtype=np.float32))
    start_server(["--model_name=hp", f"--model_base_path={good}"])
    assert "Finished reading warmup data for model hp: 2 requests" in caplog.text

    bad = tmp_path / "bad"
    shutil.copytree(testdata / HALF_PLUS_TWO / "00000123", bad / "1")
    _write_warmup(bad / "1", np.array([b"not a number"], dtype=object))  # wrong dtype
    server = make_server(
        ["--model_name=hp", f"--model_base_path={bad}", "--max_num_load_retries=0"]
    )
    with pytest.raises(StartupError, match=r"not become available: \{\{\{name: hp version: 1\}"):
        server.start(timeout=30)
