#!/usr/bin/env python3
"""Compare tfs-client with the original one-off workflow against one running server.

Measured in one run, all against ``--server``:

* throughput of the library's load generator (one channel, request serialized once) at
  concurrency 1 and 8;
* a seed-style loop: sequential calls, each one building its request with
  ``tf.make_tensor_proto`` and creating a new stub (once on a new channel per call, as a
  script run per call does, and once on a shared channel);
* cold start of the command line tool (``tfs-client --help`` and a full ``predict`` round
  trip) and of a seed-style one-shot script (``import tensorflow``, build, call), as the
  median of several runs in fresh processes.

Prints a markdown table. Examples:

    python bench/client_vs_seed.py --server 127.0.0.1:8500
    python bench/client_vs_seed.py --model digits --image files/samples/digit_3.jpg
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from tfs_client import bench
from tfs_client.api import Client, ModelRef
from tfs_client.commands import IMAGE_SIGNATURE
from tfs_client.connection import create_channel
from tfs_client.tensors import to_tensor_proto

SEED_ONE_SHOT = """
import sys, grpc, tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
server, model, signature, name, values = sys.argv[1:6]
import json
data = json.loads(values)
if name == "images":
    data = [open(p, "rb").read() for p in data]
    tensor = tf.make_tensor_proto(data, shape=[len(data)])
else:
    tensor = tf.make_tensor_proto(data, dtype=tf.float32)
channel = grpc.insecure_channel(server)
stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
request = predict_pb2.PredictRequest()
request.model_spec.name = model
request.model_spec.signature_name = signature
request.inputs[name].CopyFrom(tensor)
print(stub.Predict(request, 10.0))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="127.0.0.1:8500")
    parser.add_argument("--model", default="half_plus_two")
    parser.add_argument("--image", nargs="+", type=Path, help="send these files (digits model)")
    parser.add_argument(
        "--values",
        default="[[1.0], [2.0], [5.0]]",
        help="JSON value of input x when no --image is given",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput run")
    parser.add_argument("--runs", type=int, default=5, help="cold start runs (median)")
    parser.add_argument("--skip-seed-cold-start", action="store_true")
    return parser.parse_args()


def timed_loop(call: Callable[[], Any], seconds: float) -> float:
    """Sequential calls for ``seconds``; returns calls per second."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        count += 1
    return count / (time.perf_counter() - start)


def median_seconds(argv: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env, timeout=120)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    args = parse_args()
    images = [p.read_bytes() for p in args.image] if args.image else None
    signature = IMAGE_SIGNATURE if images else "serving_default"
    input_name = "images" if images else "x"
    values = json.loads(args.values)
    model = ModelRef(args.model, signature=signature)

    # tfs-client: one channel, request built and serialized once.
    with Client(args.server) as client:
        proto = to_tensor_proto(images if images else values, 7 if images else 1)
        request = client.predict_request(model, {input_name: proto})
        client.predict_raw(request)  # fails here with a clear error if the server is wrong
        call = bench.predict_call(client.channel, request.SerializeToString(), 10.0)
        ours = {c: bench.run(call, c, duration=args.duration) for c in (1, 8)}

    # The original workflow, in a loop: TensorFlow builds every request.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    def seed_request() -> Any:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = args.model
        req.model_spec.signature_name = signature
        if images:
            tensor = tf.make_tensor_proto(images, shape=[len(images)])
        else:
            tensor = tf.make_tensor_proto(values, dtype=tf.float32)
        req.inputs[input_name].CopyFrom(tensor)
        return req

    def seed_new_channel() -> None:
        with grpc.insecure_channel(args.server) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            stub.Predict(seed_request(), 10.0)

    shared = create_channel(args.server)

    def seed_shared_channel() -> None:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(shared)
        stub.Predict(seed_request(), 10.0)

    seed_new = timed_loop(seed_new_channel, args.duration)
    seed_shared = timed_loop(seed_shared_channel, args.duration)
    shared.close()

    # Cold starts in fresh processes.
    env = dict(os.environ)
    exe = shutil.which("tfs-client")
    cli = [exe] if exe else [sys.executable, "-m", "tfs_client"]
    inputs = ["--image", *map(str, args.image)] if images else ["--input", f"x={args.values}"]
    predict_argv = [*cli, "predict", "--server", args.server, "--model", args.model, *inputs]
    cold_help = median_seconds([*cli, "--help"], args.runs, env)
    cold_predict = median_seconds(predict_argv, args.runs, env)
    cold_seed = None
    if not args.skip_seed_cold_start:
        payload = json.dumps([str(p) for p in args.image] if images else values)
        seed_argv = [
            sys.executable,
            "-c",
            SEED_ONE_SHOT,
            args.server,
            args.model,
            signature,
            input_name,
            payload,
        ]
        cold_seed = median_seconds(seed_argv, args.runs, env)

    base = seed_new
    print(
        f"Server {args.server}, model {args.model}, signature {signature}, "
        f"{args.duration:g} s per throughput run, cold start median of {args.runs} runs.\n"
    )
    print("| measurement | requests/s | p50 ms | p99 ms | vs seed loop |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| seed loop: make_tensor_proto, new channel + stub per call | {seed_new:.0f} | | | 1.0x |"
    )
    print(
        f"| seed loop: make_tensor_proto, shared channel, new stub per call | {seed_shared:.0f} "
        f"| | | {seed_shared / base:.1f}x |"
    )
    for conc, result in ours.items():
        print(
            f"| tfs-client bench, concurrency {conc} | {result.qps:.0f} "
            f"| {result.percentile(50):.2f} | {result.percentile(99):.2f} "
            f"| {result.qps / base:.1f}x |"
        )
    errors = {c: r.errors for c, r in ours.items() if r.errors}
    if errors:
        print(f"\nerrors during tfs-client runs: {errors}")
    print("\n| cold start (fresh process) | median seconds |")
    print("| --- | ---: |")
    print(f"| `tfs-client --help` | {cold_help:.3f} |")
    print(f"| `tfs-client predict` round trip | {cold_predict:.3f} |")
    if cold_seed is not None:
        print(f"| seed-style script (import tensorflow, build, Predict) | {cold_seed:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
