"""Shared fixtures: the TF Serving test models, free ports, in-process stand-in servers."""

from __future__ import annotations

import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

STANDIN_DIR = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(STANDIN_DIR))

from tensorflow_serving.apis import (  # noqa: E402 - after the path set-up
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tfs_standin import flags  # noqa: E402
from tfs_standin.server import StandinServer  # noqa: E402

HALF_PLUS_TWO = "saved_model_half_plus_two_cpu"
HALF_PLUS_THREE = "saved_model_half_plus_three"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def add_version(base: Path, version: int, source: Path) -> Path:
    """Copy a SavedModel version in under a temporary name, then rename it into place."""
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{version}"
    shutil.copytree(source, tmp)
    final = base / str(version)
    tmp.rename(final)
    return final


def add_corrupt_version(base: Path, version: int) -> Path:
    tmp = base / f".tmp-{version}"
    tmp.mkdir(parents=True)
    (tmp / "saved_model.pb").write_bytes(b"this is not a SavedModel protobuf")
    final = base / str(version)
    tmp.rename(final)
    return final


class Running:
    """A started in-process server with clients for its ports."""

    def __init__(self, server: StandinServer) -> None:
        self.server = server
        self.grpc_port = server.grpc_port
        self.rest_port = server.rest_port
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def close(self) -> None:
        self.channel.close()
        self.server.stop()


def make_server(args: list[str], timeout: float = 60.0) -> StandinServer:
    argv = [
        f"--port={free_port()}",
        f"--rest_api_port={free_port()}",
        "--standin_bind_address=127.0.0.1",
        *args,
    ]
    return StandinServer(flags.parse(argv))


@pytest.fixture
def start_server() -> Iterator[Callable[..., Running]]:
    """Start servers for one test; all are stopped afterwards."""
    started: list[Running] = []

    def start(args: list[str], timeout: float = 60.0) -> Running:
        server = make_server(args)
        server.start(timeout=timeout)
        running = Running(server)
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()


@pytest.fixture(scope="session")
def main_server(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """half_plus_two and half_plus_three from TF Serving's own good_model_config.txt."""
    text = (testdata / "good_model_config.txt").read_text()
    text = text.replace("${TEST_HALF_PLUS_TWO_DIR}", str(testdata / HALF_PLUS_TWO))
    text = text.replace("${TEST_HALF_PLUS_THREE_DIR}", str(testdata / HALF_PLUS_THREE))
    cfg = tmp_path_factory.mktemp("main") / "models.config"
    cfg.write_text(text)
    server = make_server(
        [
            f"--model_config_file={cfg}",
            f"--monitoring_config_file={testdata / 'monitoring_config.txt'}",
        ]
    )
    server.start(timeout=60)
    running = Running(server)
    yield running
    running.close()
