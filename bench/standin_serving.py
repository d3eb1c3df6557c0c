#!/usr/bin/env python3
"""Throughput and latency of the TF Serving stand-in over gRPC and REST.

Starts the stand-in in this process on free 127.0.0.1 ports (or measures a running one
with --grpc/--rest, also on 127.0.0.1 only), drives closed-loop clients at each
concurrency for a fixed time, and prints a markdown table. The "session" rows are the
floor: the same input run straight through the model's TensorFlow Session, no server.

    python bench/standin_serving.py                      # half_plus_two
    python bench/standin_serving.py --digits             # plus the sample digits model
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "standin"), str(REPO)]

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402
from tensorflow_serving.config import model_server_config_pb2  # noqa: E402
from tfs_standin import inference  # noqa: E402
from tfs_standin.servable import LoadedVersion, SessionOptions  # noqa: E402

from conftest import TESTDATA  # noqa: E402 - the one place the test models' path is set

HALF_PLUS_TWO = TESTDATA / "saved_model_half_plus_two_cpu"
DIGITS = REPO / "files" / "models" / "digits"
SAMPLES = REPO / "files" / "samples"


@dataclass
class Case:
    """One model and one request, in the three forms the paths need."""

    model: str
    base_path: Path
    signature: str
    arrays: dict[str, np.ndarray]
    rest_body: dict


@dataclass
class Result:
    model: str
    path: str
    concurrency: int
    count: int
    seconds: float
    latencies: list[float]

    def row(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1e3
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3
        rate = self.count / self.seconds
        return (
            f"| {self.model} | {self.path} | {self.concurrency} | {rate:,.0f} | "
            f"{p50:.2f} | {p99:.2f} |"
        )


def drive(call: Callable[[], object], concurrency: int, seconds: float) -> tuple[int, list[float]]:
    """Closed loop: ``concurrency`` threads call as fast as they can for ``seconds``."""
    for _ in range(3):
        call()  # warm up
    stop = time.perf_counter() + seconds
    per_thread: list[list[float]] = [[] for _ in range(concurrency)]

    def worker(out: list[float]) -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            call()
            out.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(lat,)) for lat in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = [x for chunk in per_thread for x in chunk]
    return len(lat), lat


def half_plus_two_case() -> Case:
    x = np.array([[1.0], [2.0], [5.0]], dtype=np.float32)
    return Case(
        model="half_plus_two",
        base_path=HALF_PLUS_TWO,
        signature="serving_default",
        arrays={"x": x},
        rest_body={"instances": [1.0, 2.0, 5.0]},
    )


def digits_case(model_dir: Path, samples: Path) -> Case:
    images = sorted(samples.glob("*.jpg")) + sorted(samples.glob("*.jpeg"))
    if not images:
        raise SystemExit(f"bench: no JPEG samples in {samples}")
    data = images[0].read_bytes()
    return Case(
        model="digits",
        base_path=model_dir,
        signature="predict_images",
        arrays={"images": np.array([data], dtype=object)},
        rest_body={
            "signature_name": "predict_images",
            "instances": [{"b64": base64.b64encode(data).decode()}],
        },
    )


def latest_version(base: Path) -> Path:
    versions = [p for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise SystemExit(f"bench: no version directory under {base}")
    return max(versions, key=lambda p: int(p.name))


def bench_case(case: Case, grpc_target: str, rest_url: str, levels: list[int], seconds: float):
    results: list[Result] = []
    lv = LoadedVersion(case.model, 0, str(latest_version(case.base_path)), SessionOptions())
    try:

        def session_call() -> object:
            return inference.predict(lv, case.signature, case.arrays)

        count, lat = drive(session_call, 1, seconds)
        results.append(Result(case.model, "session (floor)", 1, count, seconds, lat))
    finally:
        lv.close()

    req = predict_pb2.PredictRequest()
    req.model_spec.name = case.model
    req.model_spec.signature_name = case.signature
    for alias, arr in case.arrays.items():
        req.inputs[alias].CopyFrom(tf.make_tensor_proto(arr))
    url = f"{rest_url}/v1/models/{case.model}:predict"
    with grpc.insecure_channel(grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for level in levels:
            count, lat = drive(lambda: stub.Predict(req, timeout=30), level, seconds)
            results.append(Result(case.model, "gRPC Predict", level, count, seconds, lat))
    local = threading.local()

    def rest_call() -> object:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        r = session.post(url, json=case.rest_body, timeout=30)
        r.raise_for_status()
        return r

    for level in levels:
        count, lat = drive(rest_call, level, seconds)
        results.append(Result(case.model, "REST :predict", level, count, seconds, lat))
    return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(cases: list[Case]) -> tuple[subprocess.Popen[bytes], str, str]:
    """The stand-in as its own process (so clients and server do not share one GIL)."""
    cfg = model_server_config_pb2.ModelServerConfig()
    for case in cases:
        cfg.model_config_list.config.add(name=case.model, base_path=str(case.base_path))
    tmp = tempfile.NamedTemporaryFile("w", suffix=".config", delete=False)  # noqa: SIM115
    with tmp:
        tmp.write(str(cfg))
    gport, rport = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfs_standin",
            f"--port={gport}",
            f"--rest_api_port={rport}",
            f"--model_config_file={tmp.name}",
            "--standin_bind_address=127.0.0.1",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO / "standin")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{rport}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("bench: the stand-in exited during start-up")
            try:
                if requests.get(f"{url}/v1/models/{cases[0].model}", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("bench: the stand-in did not start within 120s")
            time.sleep(0.2)
    finally:
        os.unlink(tmp.name)
    return proc, f"127.0.0.1:{gport}", url


def _local_only(target: str) -> str:
    host = target.split("//")[-1].rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"bench: only 127.0.0.1 targets are allowed, got {target}")
    return target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each cell")
    ap.add_argument("--concurrency", default="1,8", help="comma-separated client counts")
    ap.add_argument("--digits", action="store_true", help="also the sample digits model")
    ap.add_argument("--digits-path", type=Path, default=DIGITS)
    ap.add_argument("--samples", type=Path, default=SAMPLES)
    ap.add_argument("--grpc", help="measure a running server: 127.0.0.1:PORT for gRPC")
    ap.add_argument("--rest", help="measure a running server: http://127.0.0.1:PORT for REST")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]

    cases = [half_plus_two_case()]
    if args.digits:
        cases.append(digits_case(args.digits_path, args.samples))

    server = None
    if args.grpc and args.rest:
        grpc_target, rest_url = _local_only(args.grpc), _local_only(args.rest)
    else:
        server, grpc_target, rest_url = start_server(cases)

    rows: list[Result] = []
    try:
        for case in cases:
            rows.extend(bench_case(case, grpc_target, rest_url, levels, args.seconds))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    print(
        f"\n{os.cpu_count()} CPUs, {args.seconds:g}s per cell, closed-loop client threads "
        "in one process, server in another"
    )
    print("\n| model | path | concurrency | req/s | p50 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(r.row())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
