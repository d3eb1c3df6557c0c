from __future__ import annotations

import json
import socket

import grpc
import numpy as np
import pytest
from fake_server import digit_of
from tfs_client import tensors
from tfs_client._protos import types_pb2
from tfs_client.cli import main

HALF = ["--model", "half_plus_two"]


def run(capsys, server: str, *argv: str) -> tuple[int, str, str]:
    code = main([argv[0], "--server", server, *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def images(tmp_path):
    """Three image files whose fake classes are 3, 7 and 7."""
    paths = []
    for name, size in (("three.jpg", 13), ("seven.jpg", 17), ("other.jpg", 27)):
        path = tmp_path / name
        path.write_bytes(bytes(range(size)))
        paths.append(path)
    return paths


def test_predict_json_literal_sends_float_tensor_and_prints_result(fake, capsys):
    servicer, server = fake
    code, out, err = run(capsys, server, "predict", *HALF, "--input", "x=[[1.0],[2.0],[5.0]]")
    assert (code, err) == (0, "")
    assert [m for m, _ in servicer.received] == ["GetModelMetadata", "Predict"]
    request = servicer.calls("Predict")[0]
    assert request.model_spec.name == "half_plus_two"
    assert request.model_spec.signature_name == "serving_default"
    assert not request.model_spec.HasField("version") and request.model_spec.version_label == ""
    x = request.inputs["x"]
    assert x.dtype == types_pb2.DT_FLOAT
    assert [d.size for d in x.tensor_shape.dim] == [3, 1]
    assert x.tensor_content == np.array([[1.0], [2.0], [5.0]], "<f4").tobytes()
    assert "model half_plus_two version 123, signature serving_default" in out
    assert "y: float32 [3, 1]" in out
    assert "[[2.5]," in out and "[4.5]]" in out


def test_predict_json_output_and_bare_value(fake, capsys):
    _, server = fake
    code, out, _ = run(capsys, server, "predict", *HALF, "--input", "[[1], [2], [5]]", "--json")
    assert code == 0
    assert json.loads(out) == {"y": [[2.5], [3.0], [4.5]]}


@pytest.mark.parametrize(
    ("flags", "version", "label"),
    [(["--version", "123"], 123, ""), (["--label", "stable"], None, "stable")],
)
def test_version_and_label_reach_the_model_spec(fake, capsys, flags, version, label):
    servicer, server = fake
    code, _, _ = run(capsys, server, "predict", *HALF, *flags, "--input", "x=[[1.0]]")
    assert code == 0
    for request in (servicer.calls("GetModelMetadata")[0], servicer.calls("Predict")[0]):
        spec = request.model_spec
        assert (spec.version.value if spec.HasField("version") else None) == version
        assert spec.version_label == label


def test_version_and_label_together_are_refused(fake, capsys):
    _, server = fake
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "predict",
                "--server",
                server,
                *HALF,
                "--version",
                "1",
                "--label",
                "a",
                "--input",
                "x=1",
            ]
        )
    assert exc.value.code == 2


def test_inputs_from_npy_and_json_files_follow_signature_dtypes(fake, capsys, tmp_path):
    servicer, server = fake
    np.save(tmp_path / "a.npy", np.array([1, 2, 3], dtype=np.int32))
    (tmp_path / "b.json").write_text("[true, false, true]")
    code, out, _ = run(
        capsys,
        server,
        "predict",
        *HALF,
        "--signature",
        "two_inputs",
        "--input",
        f"a=@{tmp_path / 'a.npy'}",
        "--input",
        f"b=@{tmp_path / 'b.json'}",
        "--json",
    )
    assert code == 0, out
    request = servicer.calls("Predict")[0]
    assert request.model_spec.signature_name == "two_inputs"
    assert request.inputs["a"].dtype == types_pb2.DT_INT64  # int32 file, int64 signature
    assert request.inputs["b"].dtype == types_pb2.DT_BOOL
    assert json.loads(out) == {"sum": [2, 2, 4]}


def test_images_are_sent_as_one_string_tensor_and_ranked_per_file(fake, capsys, images):
    servicer, server = fake
    code, out, err = run(
        capsys, server, "predict", "--model", "digits", "--image", *map(str, images), "--top-k", "2"
    )
    assert (code, err) == (0, "")
    assert [m for m, _ in servicer.received] == ["Predict"]  # no metadata round trip
    request = servicer.calls("Predict")[0]
    assert request.model_spec.signature_name == "predict_images"
    tensor = request.inputs["images"]
    assert tensor.dtype == types_pb2.DT_STRING
    assert [d.size for d in tensor.tensor_shape.dim] == [3]
    assert list(tensor.string_val) == [p.read_bytes() for p in images]
    lines = out.splitlines()
    for path in images:
        at = lines.index(f"{path} (scores):")
        best, second = lines[at + 1].split(), lines[at + 2].split()
        assert best == [str(digit_of(path.read_bytes())), "0.9100"]
        assert second[1] == "0.0100"
        assert sum(1 for line in lines if line.startswith("  ")) == 2 * len(images)


def test_images_in_batches_and_json_rows_in_file_order(fake, capsys, images):
    servicer, server = fake
    code, out, _ = run(
        capsys,
        server,
        "predict",
        "--model",
        "digits",
        "--image",
        *map(str, images),
        "--batch-size",
        "2",
        "--json",
        "--signature",
        "predict_images",
        "--image-input",
        "images",
    )
    assert code == 0
    sizes = [
        [d.size for d in r.inputs["images"].tensor_shape.dim] for r in servicer.calls("Predict")
    ]
    assert sizes == [[2], [1]]
    scores = np.array(json.loads(out)["scores"])
    assert scores.shape == (3, 10)
    assert scores.argmax(axis=1).tolist() == [digit_of(p.read_bytes()) for p in images]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "x=[[1.0],"], "input x: not valid JSON"),
        (["--input", "z=[1]"], "no input 'z' (inputs: x)"),
        (["--input", "x=@missing.npy"], "cannot read missing.npy"),
        (["--input", "x=@data.csv"], "must be a .npy or .json file"),
        (["--input", "x=[1]", "--input", "x=[2]"], "given twice"),
        (["--input", 'x=["a"]'], "input x: expected numbers"),
        (["--signature", "two_inputs", "--input", "[1]"], "has inputs a, b: write"),
        (
            ["--signature", "two_inputs", "--input", "a=[1.5]", "--input", "b=[1]"],
            "input a: values are not exact DT_INT64",
        ),
        (["--signature", "two_inputs", "--input", "a=[1]"], "missing value for input b"),
    ],
)
def test_bad_local_input_exits_2_before_predict(fake, capsys, argv, message):
    servicer, server = fake
    code, out, err = run(capsys, server, "predict", *HALF, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err
    assert servicer.calls("Predict") == []


def test_missing_image_file(fake, capsys, images, tmp_path):
    servicer, server = fake
    code, _, err = run(
        capsys,
        server,
        "predict",
        "--model",
        "digits",
        "--image",
        str(images[0]),
        str(tmp_path / "nope.jpg"),
    )
    assert code == 2
    assert (
        err == f"tfs-client: error: cannot read image {tmp_path / 'nope.jpg'}: "
        "No such file or directory\n"
    )
    assert servicer.received == []


def test_unknown_signature_is_reported_from_metadata(fake, capsys):
    _, server = fake
    code, _, err = run(capsys, server, "predict", *HALF, "--signature", "nope", "--input", "1")
    assert code == 4
    assert "no signature 'nope' (signatures: serving_default, two_inputs)" in err


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["--model", "nope", "--image", "IMG"], 4, "not found (NOT_FOUND): Servable not found"),
        (["--model", "digits", "--version", "9", "--image", "IMG"], 4, "Specific(digits, 9)"),
        (
            ["--model", "digits", "--label", "canary", "--image", "IMG"],
            5,
            "(INVALID_ARGUMENT): Unrecognized label canary",
        ),
        (["--model", "digits", "--signature", "zzz", "--image", "IMG"], 5, "zzz"),
    ],
)
def test_server_errors_give_exit_code_and_one_line(fake, capsys, images, argv, code, text):
    _, server = fake
    argv = [str(images[0]) if a == "IMG" else a for a in argv]
    got, out, err = run(capsys, server, "predict", *argv)
    assert got == code
    assert out == ""
    assert err.startswith("tfs-client: error: ") and err.count("\n") == 1
    assert text in err


def test_deadline_exceeded(fake, capsys, images):
    servicer, server = fake
    servicer.delay = 3.0
    code, _, err = run(
        capsys,
        server,
        "predict",
        "--model",
        "digits",
        "--image",
        str(images[0]),
        "--timeout",
        "0.2",
    )
    assert code == 6
    assert err == f"tfs-client: error: no answer from {server} within 0.2 s (DEADLINE_EXCEEDED)\n"


def test_unavailable_server(capsys, images):
    server = f"127.0.0.1:{free_port()}"
    code, _, err = run(capsys, server, "predict", "--model", "digits", "--image", str(images[0]))
    assert code == 3
    assert err.startswith(f"tfs-client: error: server {server} unavailable (UNAVAILABLE)")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("retries", "code", "calls"), [(2, 0, 3), (1, 3, 2)])
def test_retries_only_while_unavailable(fake, capsys, images, retries, code, calls):
    servicer, server = fake
    servicer.fail_next = [grpc.StatusCode.UNAVAILABLE] * 2
    got, _, err = run(
        capsys,
        server,
        "predict",
        "--model",
        "digits",
        "--image",
        str(images[0]),
        "--retries",
        str(retries),
        "--backoff",
        "0.01",
    )
    assert got == code
    assert len(servicer.calls("Predict")) == calls
    assert ("injected UNAVAILABLE" in err) == (code != 0)


def test_no_retry_for_other_errors(fake, capsys, images):
    servicer, server = fake
    servicer.fail_next = [grpc.StatusCode.INVALID_ARGUMENT]
    got, _, err = run(
        capsys,
        server,
        "predict",
        "--model",
        "digits",
        "--image",
        str(images[0]),
        "--retries",
        "3",
        "--backoff",
        "0.01",
    )
    assert got == 5
    assert len(servicer.calls("Predict")) == 1
    assert "injected INVALID_ARGUMENT" in err


def test_string_output_rendering():
    from tfs_client import render
    from tfs_client.api import PredictResult

    labels = tensors.to_array(tensors.to_tensor_proto([b"cat", b"\xff"]))
    result = PredictResult("m", 1, "s", {"label": labels})
    assert render.jsonable(labels) == ["cat", {"b64": "/w=="}]
    text = "\n".join(render.format_predict(result, [], None))
    assert "label: string [2]" in text and "cat" in text and "<1 bytes>" in text


def test_float32_json_uses_shortest_repr_and_null_for_nan():
    from tfs_client import render

    values = np.array([[0.1, np.nan], [np.inf, 2.5]], dtype=np.float32)
    assert render.dumps(render.jsonable(values)) == "[[0.1,null],[null,2.5]]"
    assert render.jsonable(np.float32(0.3).reshape(())) == 0.3


def test_classes_output_labels_the_ranked_scores():
    from tfs_client import render
    from tfs_client.api import PredictResult

    outputs = {
        "classes": np.array([[b"cat", b"dog"]], dtype=object),
        "scores": np.array([[0.2, 0.8]], dtype=np.float32),
    }
    lines = render.format_predict(PredictResult("m", 1, "s", outputs), ["a.jpg"], None)
    assert lines[1:] == ["a.jpg (scores):", "  dog  0.8000", "  cat  0.2000"]
