"""Checks of the sample `digits` SavedModel in files/models, run the way the model server runs it.

The export is loaded with the TF1 SavedModel loader into a graph Session and executed through
the SignatureDef tensor names: the `images` input is fed with raw JPEG bytes and the `scores`
output is fetched. No Docker needed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import required_tools

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
try:
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2
except ImportError as error:
    required_tools.missing(f"TensorFlow is not importable: {error}", module_level=True)

ROOT = Path(__file__).resolve().parents[1]
MODEL_BASE = ROOT / "files" / "models" / "digits"
EXPORT_DIR = MODEL_BASE / "1"
SAMPLES_DIR = ROOT / "files" / "samples"
SIGNATURES = ("predict_images", "serving_default")


@pytest.fixture(scope="module")
def samples() -> tuple[list[str], list[bytes], np.ndarray]:
    labels: dict[str, int] = json.loads((SAMPLES_DIR / "labels.json").read_text())
    names = sorted(labels)
    jpegs = [(SAMPLES_DIR / name).read_bytes() for name in names]
    return names, jpegs, np.array([labels[name] for name in names])


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Any, Any]]:
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(EXPORT_DIR))
        yield session, meta_graph


def test_samples_cover_every_digit(samples: tuple[list[str], list[bytes], np.ndarray]) -> None:
    names, jpegs, labels = samples
    assert sorted(labels.tolist()) == list(range(10))
    for name, data in zip(names, jpegs, strict=True):
        assert data[:2] == b"\xff\xd8", f"{name} is not a JPEG"


def test_model_base_holds_only_numeric_versions() -> None:
    entries = [p.name for p in MODEL_BASE.iterdir()]
    assert entries and all(name.isdigit() for name in entries), entries
    assert (EXPORT_DIR / "saved_model.pb").is_file()


@pytest.mark.parametrize("signature_name", SIGNATURES)
def test_signature_shape(loaded: tuple[Any, Any], signature_name: str) -> None:
    _, meta_graph = loaded
    signature = meta_graph.signature_def[signature_name]
    assert signature.method_name == "tensorflow/serving/predict"
    assert list(signature.inputs) == ["images"]
    assert signature.inputs["images"].dtype == types_pb2.DT_STRING
    assert [d.size for d in signature.inputs["images"].tensor_shape.dim] == [-1]
    assert list(signature.outputs) == ["scores"]
    assert signature.outputs["scores"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in signature.outputs["scores"].tensor_shape.dim] == [-1, 10]


@pytest.mark.parametrize("signature_name", SIGNATURES)
def test_samples_classified_through_signature_tensors(
    loaded: tuple[Any, Any],
    samples: tuple[list[str], list[bytes], np.ndarray],
    signature_name: str,
) -> None:
    session, meta_graph = loaded
    names, jpegs, labels = samples
    signature = meta_graph.signature_def[signature_name]
    feed = {signature.inputs["images"].name: np.array(jpegs, dtype=object)}
    scores = session.run(signature.outputs["scores"].name, feed_dict=feed)

    assert scores.dtype == np.float32
    assert scores.shape == (len(names), 10)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-4)
    predicted = scores.argmax(axis=1)
    wrong = {n: int(p) for n, p, y in zip(names, predicted, labels, strict=True) if p != y}
    assert not wrong, f"misclassified samples: {wrong}"


def test_single_image_batch(
    loaded: tuple[Any, Any], samples: tuple[list[str], list[bytes], np.ndarray]
) -> None:
    session, meta_graph = loaded
    _, jpegs, labels = samples
    signature = meta_graph.signature_def["predict_images"]
    feed = {signature.inputs["images"].name: np.array(jpegs[:1], dtype=object)}
    scores = session.run(signature.outputs["scores"].name, feed_dict=feed)
    assert scores.shape == (1, 10)
    assert int(scores.argmax()) == int(labels[0])


def test_empty_batch(loaded: tuple[Any, Any]) -> None:
    session, meta_graph = loaded
    signature = meta_graph.signature_def["predict_images"]
    feed = {signature.inputs["images"].name: np.array([], dtype=object)}
    scores = session.run(signature.outputs["scores"].name, feed_dict=feed)
    assert scores.shape == (0, 10)


def test_half_plus_two_request_file() -> None:
    request = json.loads((SAMPLES_DIR / "half_plus_two.json").read_text())
    assert list(request) == ["x"]
    assert all(isinstance(row, list) and len(row) == 1 for row in request["x"])
