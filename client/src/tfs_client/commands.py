"""The ``tfs-client`` commands, given the parsed command line."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import bench, canary, expect, fleet, gate, render, tensors
from ._protos import predict_pb2, types_pb2
from .api import (
    DEFAULT_SIGNATURE,
    Client,
    ModelRef,
    PredictResult,
    RetryPolicy,
    VersionStatus,
    decode_predict,
)
from .connection import TlsOptions
from .errors import (
    EXIT_FAILURE,
    EXIT_LOAD_FAILED,
    EXIT_NOT_READY,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    LocalInputError,
    RpcError,
    TfsClientError,
)
from .inputs import batches, parse_input_arg, read_images, resolve_inputs

IMAGE_SIGNATURE = "predict_images"
DEFAULT_BENCH_SECONDS = 10.0


def run(args: argparse.Namespace) -> int:
    handlers = {
        "predict": predict,
        "status": status,
        "wait": wait,
        "metadata": metadata,
        "bench": run_bench,
        "fleet-status": fleet.run_command,
        "canary-status": canary.run_command,
    }
    return handlers[args.command](args)


def _emit(lines: list[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))


def make_client(args: argparse.Namespace) -> Client:
    tls = None
    if args.tls or args.ca_file or args.cert_file or args.key_file or args.server_name_override:
        tls = TlsOptions(args.ca_file, args.cert_file, args.key_file, args.server_name_override)
    retry = RetryPolicy(retries=args.retries, backoff=args.backoff)
    return Client(args.server, tls=tls, timeout=args.timeout, retry=retry)


def model_ref(args: argparse.Namespace) -> ModelRef:
    return ModelRef(
        args.model,
        version=args.version,
        label=args.label,
        signature=getattr(args, "signature", None),
    )


@dataclass
class Batch:
    """One request and the names of its rows (image files, or ``row i``)."""

    request: predict_pb2.PredictRequest
    row_names: list[str]


def build_requests(client: Client, args: argparse.Namespace, batch_size: int | None) -> list[Batch]:
    """Turn ``--image`` or ``--input`` arguments into PredictRequests."""
    model = model_ref(args)
    if args.image:
        model = replace(model, signature=model.signature or IMAGE_SIGNATURE)
        data = read_images(args.image)
        out = []
        for chunk in batches(len(data), batch_size):
            proto = tensors.to_tensor_proto([data[i] for i in chunk], types_pb2.DT_STRING)
            request = client.predict_request(model, {args.image_input: proto})
            out.append(Batch(request, [str(args.image[i]) for i in chunk]))
        return out
    model = replace(model, signature=model.signature or DEFAULT_SIGNATURE)
    if not args.input:
        # A signature without inputs (e.g. one that reads a variable): name only the model.
        return [Batch(client.predict_request(model, {}), [])]
    parsed = [parse_input_arg(text) for text in args.input]
    signature = client.metadata(model).signature(model.signature or DEFAULT_SIGNATURE)
    values = resolve_inputs(parsed, list(signature.inputs))
    protos = {}
    for name, value in values.items():
        try:
            protos[name] = tensors.to_tensor_proto(value, signature.inputs[name].dtype_enum)
        except LocalInputError as err:
            raise LocalInputError(f"input {name}: {err}") from None
    request = client.predict_request(model, protos)
    rows = _leading_rows(values)
    return [Batch(request, [f"row {i}" for i in range(rows)])]


def _leading_rows(values: dict[str, Any]) -> int:
    shapes = [np.shape(v) for v in values.values()]
    return shapes[0][0] if shapes and shapes[0] else 0


def predict(args: argparse.Namespace) -> int:
    expected_outputs = expect.parse_expected_outputs(args.expect_output or [])
    with make_client(args) as client:
        work = build_requests(client, args, args.batch_size)
        results = [(b, decode_predict(b.request, client.predict_raw(b.request))) for b in work]
    if args.json:
        print(render.dumps(_merge_json([(b.row_names, r) for b, r in results])))
    else:
        for batch, result in results:
            _emit(render.format_predict(result, batch.row_names, args.top_k))
    if expected_outputs or args.expect_class:
        outputs, rows = _joined_outputs(results)
        expect.check(outputs, expected_outputs, args.tolerance, args.expect_class or [], rows)
    return EXIT_OK


def _joined_outputs(results: list[tuple[Batch, PredictResult]]) -> tuple[dict, list[str]]:
    """Every output over all batches (joined along the first axis) and the row names."""
    rows = [name for batch, _ in results for name in batch.row_names]
    if len(results) == 1:
        return results[0][1].outputs, rows
    joined = {
        name: np.concatenate([r.outputs[name] for _, r in results])
        for name in results[0][1].outputs
    }
    return joined, rows


def _merge_json(results: list[tuple[list[str], PredictResult]]) -> dict[str, Any]:
    """``{output: nested lists}``; several batches are joined along the first axis."""
    if len(results) == 1:
        return {k: render.jsonable(v) for k, v in results[0][1].outputs.items()}
    merged: dict[str, Any] = {}
    for name in results[0][1].outputs:
        parts = [r.outputs.get(name) for _, r in results]
        if all(
            p is not None and p.ndim >= 1 and p.shape[0] == len(rows)
            for p, (rows, _) in zip(parts, results, strict=True)
        ):
            merged[name] = render.jsonable(np.concatenate(parts))  # type: ignore[arg-type]
        else:
            merged[name] = [render.jsonable(p) if p is not None else None for p in parts]
    return merged


def metadata(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        meta = client.metadata(model_ref(args))
    if args.json:
        print(render.dumps(render.metadata_json(meta)))
    else:
        _emit(render.format_metadata(meta))
    return EXIT_OK


# Readiness ---------------------------------------------------------------------------------


def readiness(versions: list[VersionStatus], version: int | None) -> tuple[str, str]:
    """``("ready" | "waiting" | "failed", reason)`` for one look at the reported states.

    The rules are :class:`tfs_client.gate.VersionTracker`'s, seen once with no grace: the
    requested version, or else the newest reported one, must be AVAILABLE.
    """
    tracker = gate.VersionTracker(
        "model", frozenset([version]) if version is not None else frozenset(), 0.0
    )
    verdict, reason = tracker.judge(versions, 0.0)
    return verdict.value, reason


def status(args: argparse.Namespace) -> int:
    model = model_ref(args)
    with make_client(args) as client:
        if args.wait_available is None:
            versions = client.model_status(model)
            _show_status(args, model, versions, None)
            return EXIT_OK
        return _wait_available(args, client, model)


def _show_status(
    args: argparse.Namespace, model: ModelRef, versions: list[VersionStatus], ready: bool | None
) -> None:
    if args.json:
        print(render.dumps(render.status_json(model.name, versions, ready)))
    else:
        _emit(render.format_status(model.name, versions))


def _wait_available(args: argparse.Namespace, client: Client, model: ModelRef) -> int:
    client.retry = RetryPolicy(retries=0)  # the polling loop below is the retry
    deadline = time.monotonic() + args.wait_available
    expected = frozenset([model.version]) if model.version is not None else frozenset()
    tracker = gate.VersionTracker(model.name, expected, args.failed_grace)
    last_error: TfsClientError | None = None
    versions: list[VersionStatus] = []
    reason = "no answer yet"
    while True:
        client.timeout = max(min(args.timeout, deadline - time.monotonic()), 0.05)
        try:
            versions = client.model_status(model)
            last_error = None
            verdict, reason = tracker.judge(versions, time.monotonic())
            if verdict is gate.Verdict.READY:
                _show_status(args, model, versions, True)
                return EXIT_OK
            if verdict is gate.Verdict.FAILED:
                _show_status(args, model, versions, False)
                raise TfsClientError(reason, EXIT_FAILURE)
            reason = reason.removeprefix(f"model {model.name}: ")
        except RpcError as err:
            if err.code not in gate.WAITING_CODES:
                raise
            last_error, reason = err, str(err)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(args.interval, remaining))
    if versions:
        _show_status(args, model, versions, False)
    message = f"model {model.name} not ready after {args.wait_available:g} s: {reason}"
    raise TfsClientError(message, last_error.exit_code if last_error else EXIT_FAILURE)


_WAIT_EXIT = {
    gate.Outcome.READY: EXIT_OK,
    gate.Outcome.FAILED: EXIT_LOAD_FAILED,
    gate.Outcome.TIMEOUT: EXIT_NOT_READY,
    gate.Outcome.UNREACHABLE: EXIT_UNAVAILABLE,
}


def wait(args: argparse.Namespace) -> int:
    """Wait until every ``--expect MODEL=V,...`` version is AVAILABLE (the deployment gate)."""
    expected: dict[str, frozenset[int]] = {}
    for text in args.expect:
        try:
            name, versions = gate.parse_expectation(text)
        except ValueError as err:
            raise LocalInputError(f"--expect: {err}") from None
        expected[name] = expected.get(name, frozenset()) | versions
    with make_client(args) as client:
        result = gate.wait_for(
            client, expected, args.wait, args.timeout, args.interval, args.failed_grace
        )
    code = _WAIT_EXIT[result.outcome]
    if args.json:
        print(render.dumps(render.wait_json(result, args.server, code)))
    else:
        for name, versions in result.versions.items():
            _emit(render.format_status(name, versions))
    if code != EXIT_OK:
        prefix = f"server {args.server} not reachable: " if code == EXIT_UNAVAILABLE else ""
        raise TfsClientError(prefix + result.reason, code)
    return EXIT_OK


# Bench -------------------------------------------------------------------------------------


def run_bench(args: argparse.Namespace) -> int:
    with make_client(args) as client:
        request = build_requests(client, args, None)[0].request
        client.predict_raw(request)  # warm-up; stops here with a clear reason if it fails
        call = bench.predict_call(client.channel, request.SerializeToString(), args.timeout)
        duration = args.duration
        if duration is None and args.requests is None:
            duration = DEFAULT_BENCH_SECONDS
        progress = sys.stderr if bench.stderr_is_tty() else None
        result = bench.run(call, args.concurrency, duration, args.requests, progress)
    if args.json:
        print(render.dumps(result.summary()))
    else:
        _emit(bench.format_result(result))
    return EXIT_OK if not result.errors else EXIT_FAILURE
