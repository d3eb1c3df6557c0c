"""predict: signatures without inputs, plain scalars, answers checked against expectations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fake_server import digit_of
from tfs_client.cli import main


def run(capsys, server: str, *argv: str) -> tuple[int, str, str]:
    code = main(["predict", "--server", server, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_signature_without_inputs_is_called_with_none(fake, capsys):
    servicer, server = fake
    code, out, err = run(capsys, server, "--model", "counter")
    assert (code, err) == (0, "")
    [request] = servicer.calls("Predict")
    assert len(request.inputs) == 0
    assert request.model_spec.signature_name == "serving_default"
    assert servicer.calls("GetModelMetadata") == []
    assert out.splitlines()[1:] == ["count: 1"]  # a scalar output is printed plain


def test_scalar_json_is_a_plain_number(fake, capsys):
    _, server = fake
    code, out, _ = run(capsys, server, "--model", "counter", "--json")
    assert code == 0
    assert json.loads(out) == {"count": 1}


def test_expected_output_exact_match_passes(fake, capsys):
    _, server = fake
    code, _, err = run(
        capsys,
        server,
        "--model",
        "half_plus_two",
        "--input",
        "x=[[1.0],[2.0],[5.0]]",
        "--expect-output",
        "y=[[2.5],[3.0],[4.5]]",
    )
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("expected", "tolerance", "code"),
    [
        ("y=[[2.5],[3.0],[4.6]]", "0", 7),
        ("y=[[2.5],[3.0],[4.6]]", "0.2", 0),
        ("y=[[2.5],[3.0]]", "1", 7),  # shape differs
        ("z=[[2.5],[3.0],[4.5]]", "0", 7),  # no such output
    ],
)
def test_expected_output_differences_exit_7(fake, capsys, expected, tolerance, code):
    _, server = fake
    rc, out, err = run(
        capsys,
        server,
        "--model",
        "half_plus_two",
        "--input",
        "x=[[1.0],[2.0],[5.0]]",
        "--expect-output",
        expected,
        "--tolerance",
        tolerance,
    )
    assert rc == code, err
    if code:
        assert "answer differs from the expected" in err
        assert out  # the answer itself is still shown


def test_expected_output_from_a_json_file(fake, capsys, tmp_path):
    _, server = fake
    (tmp_path / "y.json").write_text("[[2.5], [3.5]]")
    rc, _, err = run(
        capsys,
        server,
        "--model",
        "half_plus_two",
        "--input",
        "x=[[1.0],[3.0]]",
        "--expect-output",
        f"y=@{tmp_path / 'y.json'}",
    )
    assert (rc, err) == (0, "")


def test_expected_class_per_image(fake, capsys, tmp_path):
    _, server = fake
    paths = []
    for size in (13, 17):
        path = tmp_path / f"img{size}.jpg"
        path.write_bytes(bytes(range(size)))
        paths.append(str(path))
    classes = [str(digit_of(bytes(range(13)))), str(digit_of(bytes(range(17))))]
    rc, _, err = run(
        capsys, server, "--model", "digits", "--image", *paths, "--expect-class", *classes
    )
    assert (rc, err) == (0, "")
    rc, _, err = run(
        capsys,
        server,
        "--model",
        "digits",
        "--image",
        *paths,
        "--batch-size",
        "1",
        "--expect-class",
        classes[0],
        "9",
    )
    assert rc == 7
    assert "img17.jpg: best class 7, expected 9" in err


def test_expected_strings_compare_as_text(fake, capsys):
    from tfs_client.expect import output_differences

    outputs = {"label": np.array([b"cat", b"dog"], dtype=object)}
    assert output_differences(outputs, {"label": ["cat", "dog"]}, 0) == []
    assert output_differences(outputs, {"label": ["cat", "cow"]}, 0)
