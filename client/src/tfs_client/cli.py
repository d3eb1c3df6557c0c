"""Command line entry point ``tfs-client``.

Only the standard library is imported until a command runs, so ``--help`` and argument
errors answer at once; the commands themselves live in :mod:`tfs_client.commands`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_SERVER = "localhost:8500"

EPILOG = """\
exit codes: 0 success, 1 other failure (model not ready, failed requests in bench),
2 bad usage or local input, 3 UNAVAILABLE (wait: server not reachable), 4 NOT_FOUND,
5 INVALID_ARGUMENT, 6 DEADLINE_EXCEEDED, 7 answer differs from --expect-*,
8 wait: a version failed to load, 9 wait: not every version AVAILABLE in time,
10 canary-status: no canary is running"""


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        metavar="HOST:PORT",
        help=f"TF Serving gRPC address (default {DEFAULT_SERVER})",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="deadline of each call (default 10)",
    )
    group.add_argument(
        "--retries",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="retry a call up to N times while the server is UNAVAILABLE",
    )
    group.add_argument(
        "--backoff",
        type=_positive_float,
        default=0.5,
        metavar="SECONDS",
        help="first retry delay, doubled on each retry (default 0.5)",
    )
    tls = parser.add_argument_group("TLS (the server's --ssl_config_file)")
    tls.add_argument("--tls", action="store_true", help="use TLS with the system CA certificates")
    tls.add_argument(
        "--ca-file",
        type=Path,
        metavar="FILE",
        help="PEM CA certificate(s) to verify the server (implies TLS)",
    )
    tls.add_argument(
        "--cert-file",
        type=Path,
        metavar="FILE",
        help="PEM client certificate, for servers with client_verify",
    )
    tls.add_argument("--key-file", type=Path, metavar="FILE", help="PEM client private key")
    tls.add_argument(
        "--server-name-override",
        metavar="NAME",
        help="host name expected in the server certificate",
    )


def _model_options(parser: argparse.ArgumentParser, signature: bool) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", required=True, metavar="NAME", help="model name")
    which = group.add_mutually_exclusive_group()
    which.add_argument(
        "--version",
        type=_non_negative_int,
        metavar="V",
        help="model version (default: the server's choice)",
    )
    which.add_argument("--label", metavar="L", help="model version label")
    if signature:
        group.add_argument(
            "--signature",
            metavar="S",
            help="signature (default serving_default, or predict_images with --image)",
        )


def _input_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    title = "inputs (one of --image or --input" + (
        ")" if required else "; none for a signature without inputs)"
    )
    group = parser.add_argument_group(title)
    source = group.add_mutually_exclusive_group(required=required)
    source.add_argument(
        "--image",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="image files sent as encoded bytes in one DT_STRING tensor [N]",
    )
    source.add_argument(
        "--input",
        action="append",
        metavar="NAME=VALUE",
        help="input tensor: JSON literal, @file.json or @file.npy; NAME= may "
        "be left out when the signature has one input (repeatable)",
    )
    group.add_argument(
        "--image-input",
        default="images",
        metavar="NAME",
        help="input name for --image (default images)",
    )


def _failed_grace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--failed-grace",
        type=_non_negative_float,
        default=5.0,
        metavar="SECONDS",
        help="a failure reported for a version not seen loading in this wait counts only "
        "after it stayed for SECONDS (the server may still report an earlier attempt; "
        "default 5)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfs-client",
        description="Query TensorFlow Serving over gRPC: predict, model status, metadata, "
        "load tests.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = sub.add_parser(
        "predict",
        help="run a model on inputs and show the outputs",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _model_options(predict, signature=True)
    _input_options(predict, required=False)
    predict.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="B",
        help="images per request (default: all in one request)",
    )
    predict.add_argument(
        "--top-k",
        type=_positive_int,
        metavar="K",
        help="show the K best classes of every [N, K] float output "
        "(always done for an output named scores, K default 5)",
    )
    predict.add_argument("--json", action="store_true", help="print {output name: nested lists}")
    checks = predict.add_argument_group("checking the answer (exit code 7 when it differs)")
    checks.add_argument(
        "--expect-output",
        action="append",
        metavar="NAME=VALUE",
        help="expected value of an output: JSON literal, @file.json or @file.npy (repeatable)",
    )
    checks.add_argument(
        "--tolerance",
        type=_non_negative_float,
        default=0.0,
        metavar="T",
        help="largest absolute difference allowed for numbers (default 0: exact)",
    )
    checks.add_argument(
        "--expect-class",
        nargs="+",
        metavar="CLASS",
        help="expected best class of each row (each image) of the ranked output",
    )
    _connection_options(predict)

    status = sub.add_parser(
        "status",
        help="show the state of each model version",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _model_options(status, signature=False)
    status.add_argument(
        "--wait-available",
        type=_positive_float,
        metavar="SECONDS",
        help="poll until the model is ready (see README), fail after SECONDS",
    )
    status.add_argument(
        "--interval",
        type=_positive_float,
        default=0.5,
        metavar="SECONDS",
        help="poll interval for --wait-available (default 0.5)",
    )
    _failed_grace_option(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    _connection_options(status)

    wait = sub.add_parser(
        "wait",
        help="wait until the given versions of every model are AVAILABLE (deployment gate)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    wait.add_argument(
        "--expect",
        action="append",
        required=True,
        metavar="MODEL=V[,V...]",
        help="versions that must be AVAILABLE (repeatable, one per model)",
    )
    wait.add_argument(
        "--wait",
        type=_positive_float,
        default=300.0,
        metavar="SECONDS",
        help="overall time limit (default 300); each call's deadline is --timeout or the "
        "time left, whichever is smaller",
    )
    wait.add_argument(
        "--interval",
        type=_positive_float,
        default=1.0,
        metavar="SECONDS",
        help="poll interval (default 1)",
    )
    _failed_grace_option(wait)
    wait.add_argument("--json", action="store_true", help="print the outcome as JSON")
    _connection_options(wait)

    metadata = sub.add_parser(
        "metadata",
        help="show signatures: inputs, outputs, types, shapes",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _model_options(metadata, signature=False)
    metadata.add_argument("--json", action="store_true", help="print JSON")
    _connection_options(metadata)

    bench = sub.add_parser(
        "bench",
        help="measure throughput and latency of Predict",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _model_options(bench, signature=True)
    _input_options(bench)
    bench.add_argument(
        "--concurrency",
        type=_positive_int,
        default=1,
        metavar="N",
        help="parallel callers on one channel (default 1)",
    )
    amount = bench.add_mutually_exclusive_group()
    amount.add_argument(
        "--duration", type=_positive_float, metavar="S", help="run for S seconds (default 10)"
    )
    amount.add_argument(
        "--requests", type=_positive_int, metavar="N", help="send N requests in total"
    )
    bench.add_argument("--json", action="store_true", help="print JSON")
    _connection_options(bench)
    _fleet_status_parser(sub)
    _canary_status_parser(sub)
    return parser


def _fleet_status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fleet = sub.add_parser(
        "fleet-status",
        help="per node: image, model versions and states, request rate and failures",
        description="Every node Prometheus scrapes as a TF Serving node (job tfserving): its "
        "image, each model's versions and states (GetModelStatus on the node), and requests "
        "per second and failed requests over the last minutes (from Prometheus). Exit code 0 "
        "when every node is scraped and every model has a version AVAILABLE, else 1.",
    )
    fleet.add_argument(
        "--prometheus", required=True, metavar="URL", help="Prometheus, e.g. http://mon:9090"
    )
    fleet.add_argument(
        "--minutes", type=_positive_int, default=5, metavar="M", help="window (default 5)"
    )
    fleet.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="deadline of each query and call (default 10)",
    )
    fleet.add_argument("--json", action="store_true", help="print JSON")
    tls = fleet.add_argument_group("TLS to the nodes' gRPC ports")
    tls.add_argument("--tls", action="store_true", help="use TLS with the system CA certificates")
    tls.add_argument("--ca-file", type=Path, metavar="FILE", help="PEM CA (implies TLS)")
    tls.add_argument("--cert-file", type=Path, metavar="FILE", help="PEM client certificate")
    tls.add_argument("--key-file", type=Path, metavar="FILE", help="PEM client private key")


def _canary_status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    canary = sub.add_parser(
        "canary-status",
        help="the running canary: its share, the time left, canary against baseline so far",
        description="The canary whose window is open now, from the file the canary play "
        "keeps on the controller meanwhile: its nodes, share of new requests and the time "
        "left; with --prometheus, per model the canary's and the baseline's requests, error "
        "ratio and p50/p99 latency since the window started, and the thresholds the canary "
        "breaks so far (for information: the play makes the verdict). Exit code 0 when a "
        "canary is running, 10 when none is (no file), 3 when Prometheus does not answer.",
    )
    canary.add_argument(
        "--file",
        type=Path,
        metavar="FILE",
        help="the play's running file (default "
        "~/.local/state/tfserving-fleet/canary/running.json: "
        "tfserving_canary_report_dir/running.json)",
    )
    canary.add_argument(
        "--prometheus",
        metavar="URL",
        help="the fleet's Prometheus, e.g. http://mon:9090, for the numbers so far",
    )
    canary.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="deadline of each query (default 10)",
    )
    canary.add_argument("--json", action="store_true", help="print JSON")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import commands  # heavy imports (grpc, numpy, protos) only when a command runs
    from .errors import TfsClientError

    try:
        return commands.run(args)
    except TfsClientError as err:
        print(f"tfs-client: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("tfs-client: interrupted", file=sys.stderr)
        return 130


def entry_point() -> None:
    sys.exit(main())
