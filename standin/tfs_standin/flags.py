"""Command-line flags with tensorflow_model_server's names and defaults.

Both ``--flag=value`` and ``--flag value`` work; boolean flags also accept a bare
``--flag``. Unlike the real server, an unknown flag is an error (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from tfs_standin import PROG, __version__


@dataclass(frozen=True)
class Options:
    port: int
    grpc_socket_path: str
    rest_api_port: int
    rest_api_num_threads: int
    rest_api_timeout_in_ms: int
    model_name: str
    model_base_path: str
    model_config_file: str
    model_config_file_poll_wait_seconds: float
    file_system_poll_wait_seconds: float
    monitoring_config_file: str
    ssl_config_file: str
    enable_batching: bool
    batching_parameters_file: str
    per_process_gpu_memory_fraction: float
    tensorflow_intra_op_parallelism: int
    tensorflow_inter_op_parallelism: int
    enable_model_warmup: bool
    max_num_load_retries: int
    load_retry_interval_micros: int
    grpc_channel_arguments: str
    enable_grpc_healthcheck_service: bool
    allow_version_labels_for_unavailable_models: bool
    saved_model_tags: str
    standin_bind_address: str
    version: bool


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r} (use true or false)")


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.stderr.write(f"{self.prog}: run with --help for the list of flags\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tensorflow_model_server",
        description=(
            f"{PROG}: a TensorFlow Serving compatible STAND-IN server written in Python. "
            "It serves SavedModels with TensorFlow over TF Serving's gRPC and REST APIs. "
            "It is not the real tensorflow_model_server."
        ),
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("--port", type=_nonneg_int, default=8500, help="gRPC port (0 disables gRPC)")
    add("--grpc_socket_path", default="", help="also serve gRPC on this UNIX socket")
    add("--rest_api_port", type=_nonneg_int, default=0, help="REST port (0 disables REST)")
    add("--rest_api_num_threads", type=int, default=0, help="accepted; threads are per request")
    add("--rest_api_timeout_in_ms", type=int, default=30000, help="REST request deadline")
    add("--model_name", default="default", help="name of the single model")
    add("--model_base_path", default="", help="base path of the single model")
    add("--model_config_file", default="", help="ModelServerConfig text proto")
    add(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=0,
        help="re-read --model_config_file this often (0 = read once)",
    )
    add(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1,
        help="poll each base path for versions this often (0 = once)",
    )
    add("--monitoring_config_file", default="", help="MonitoringConfig text proto")
    add("--ssl_config_file", default="", help="SSLConfig text proto (gRPC TLS)")
    add("--enable_batching", type=_bool, nargs="?", const=True, default=False)
    add("--batching_parameters_file", default="", help="BatchingParameters text proto")
    add("--per_process_gpu_memory_fraction", type=float, default=0.0)
    add("--tensorflow_intra_op_parallelism", type=int, default=0)
    add("--tensorflow_inter_op_parallelism", type=int, default=0)
    add("--tensorflow_session_parallelism", type=int, default=0, help=argparse.SUPPRESS)
    add("--enable_model_warmup", type=_bool, nargs="?", const=True, default=True)
    add("--max_num_load_retries", type=_nonneg_int, default=5)
    add("--load_retry_interval_micros", type=_nonneg_int, default=60_000_000)
    add("--grpc_channel_arguments", default="", help="comma-separated key=value gRPC options")
    add("--enable_grpc_healthcheck_service", type=_bool, nargs="?", const=True, default=False)
    add(
        "--allow_version_labels_for_unavailable_models",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
    )
    add("--saved_model_tags", default="serve", help="comma-separated MetaGraph tags")
    add(
        "--standin_bind_address",
        default="0.0.0.0",
        help="stand-in extension: address both listeners bind (TF Serving binds all)",
    )
    add("--version", type=_bool, nargs="?", const=True, default=False, help="print the version")
    return parser


def parse(argv: list[str]) -> Options:
    """Parse ``argv`` (without the program name); exits 2 on a bad or unknown flag."""
    ns = build_parser().parse_args(argv)
    values = {k: v for k, v in vars(ns).items() if k != "tensorflow_session_parallelism"}
    return Options(**values)


def version_text() -> str:
    return f"TensorFlow ModelServer: {__version__} ({PROG}: Python stand-in, not TF Serving)"
