"""Prometheus metrics count requests; gRPC over TLS from an SSLConfig file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import grpc
import numpy as np
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from conftest import HALF_PLUS_TWO, Running

METRICS = "/monitoring/prometheus/metrics"


def _value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if found == labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests(main_server: Running) -> None:
    url = main_server.rest + METRICS
    before = requests.get(url, timeout=10)
    assert before.status_code == 200
    assert before.headers["Content-Type"].startswith("text/plain")
    ok = ":tensorflow:serving:request_count"
    lat = ":tensorflow:serving:request_latency_count"
    n_ok = _value(before.text, ok, model_name="half_plus_three", status="OK")
    n_lat = _value(before.text, lat, model_name="half_plus_three", API="predict", entrypoint="REST")
    n_missing = _value(before.text, ok, model_name="ghost", status="NOT_FOUND")
    for _ in range(5):
        requests.post(
            f"{main_server.rest}/v1/models/half_plus_three:predict",
            json={"instances": [1.0]},
            timeout=10,
        )
    requests.post(
        f"{main_server.rest}/v1/models/ghost:predict", json={"instances": [1.0]}, timeout=10
    )
    after = requests.get(url, timeout=10).text
    assert _value(after, ok, model_name="half_plus_three", status="OK") == n_ok + 5
    assert (
        _value(after, lat, model_name="half_plus_three", API="predict", entrypoint="REST")
        == n_lat + 5
    )
    assert _value(after, ok, model_name="ghost", status="NOT_FOUND") == n_missing + 1
    assert "# TYPE :tensorflow:serving:request_latency histogram" in after
    assert (
        _value(
            after,
            ":tensorflow:cc:saved_model:load_attempt_count",
            model_path=str(
                Path(main_server.server.model_config.model_config_list.config[1].base_path)
                / "00000123"
            ),
            status="success",
        )
        == 1
    )


def _make_cert(tmp: Path) -> tuple[str, str]:
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return key.read_text(), cert.read_text()


def test_grpc_tls_from_ssl_config(testdata: Path, tmp_path: Path, start_server) -> None:
    key, cert = _make_cert(tmp_path)
    ssl_cfg = tmp_path / "ssl.config"
    ssl_cfg.write_text(f"server_key: {key!r}\nserver_cert: {cert!r}\n".replace("'", '"'))
    srv = start_server(
        [
            "--model_name=hp",
            f"--model_base_path={testdata / HALF_PLUS_TWO}",
            f"--ssl_config_file={ssl_cfg}",
        ]
    )
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "hp"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[1.0]], dtype=np.float32)))
    creds = grpc.ssl_channel_credentials(root_certificates=cert.encode())
    with grpc.secure_channel(f"127.0.0.1:{srv.grpc_port}", creds) as channel:
        resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=10)
    assert tf.make_ndarray(resp.outputs["y"]).tolist() == [[2.5]]
    with grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}") as plain:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(plain)
        try:
            stub.Predict(req, timeout=5)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
        else:
            raise AssertionError("plain-text gRPC must not reach a TLS port")
