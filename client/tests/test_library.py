from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from tfs_client.api import Client, ModelRef, RetryPolicy
from tfs_client.errors import LocalInputError, RpcError

SRC = str(Path(__file__).parents[1] / "src")


def test_predict_returns_arrays_and_spec(fake):
    _, server = fake
    with Client(server) as client:
        result = client.predict(ModelRef("half_plus_two"), {"x": np.array([[1.0], [5.0]], "f4")})
    assert result.model == "half_plus_two" and result.version == 123
    assert result.signature == "serving_default"
    np.testing.assert_array_equal(result.outputs["y"], np.array([[2.5], [4.5]], "f4"))


def test_one_channel_for_all_calls(fake):
    servicer, server = fake
    with Client(server) as client:
        channel = client.channel
        client.metadata(ModelRef("digits"))
        client.model_status(ModelRef("digits"))
        assert client.channel is channel
    assert [m for m, _ in servicer.received] == ["GetModelMetadata", "GetModelStatus"]


def test_classify_and_regress_send_examples(fake):
    servicer, server = fake
    model = ModelRef("half_plus_two", signature="classify_x_to_y")
    with Client(server) as client:
        assert client.classify(model, [{"x": 3.0}]) == [[("half", 1.5)]]
        assert client.regress(model, [{"x": 1.0}, {"x": 4.0}]) == [2.5, 4.0]
    examples = servicer.calls("Regress")[0].input.example_list.examples
    assert [list(e.features.feature["x"].float_list.value) for e in examples] == [[1.0], [4.0]]
    assert servicer.calls("Classify")[0].model_spec.signature_name == "classify_x_to_y"


def test_retry_backoff_doubles_up_to_the_cap(fake):
    servicer, server = fake
    servicer.fail_next = [grpc.StatusCode.UNAVAILABLE] * 4
    sleeps: list[float] = []
    retry = RetryPolicy(retries=4, backoff=0.1, max_backoff=0.5, sleep=sleeps.append)
    with Client(server, retry=retry) as client:
        client.model_status(ModelRef("digits"))
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5])
    assert len(servicer.calls("GetModelStatus")) == 5


def test_rpc_error_carries_code(fake):
    _, server = fake
    with Client(server) as client, pytest.raises(RpcError) as exc:
        client.model_status(ModelRef("nope"))
    assert exc.value.code is grpc.StatusCode.NOT_FOUND
    assert exc.value.exit_code == 4


@pytest.mark.parametrize("target", ["localhost", "host:port", ":8500", "h:70000"])
def test_bad_server_address(target):
    with pytest.raises(LocalInputError, match="HOST:PORT"):
        Client(target)


def test_version_and_label_are_exclusive():
    with pytest.raises(LocalInputError):
        ModelRef("m", version=1, label="a")


def _python(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=SRC)
    env.pop("TFS_CLIENT_FULL_TF_IMPORT", None)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_library_import_does_not_load_the_tensorflow_runtime():
    out = _python(
        "import sys, tfs_client.api, tfs_client.commands\n"
        "print(sorted(m for m in ('tensorflow', 'tensorflow.python', 'keras') if m in sys.modules))"
    )
    assert out == "[]"


def test_help_imports_neither_grpc_nor_numpy():
    out = _python(
        "import sys, contextlib, io\n"
        "from tfs_client import cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.main(['predict', '--help'])\n"
        "print(sorted(m for m in ('grpc', 'numpy', 'tfs_client.api') if m in sys.modules))"
    )
    assert out == "[]"
