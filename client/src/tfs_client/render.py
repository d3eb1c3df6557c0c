"""Formatting of answers for people (text) and programs (JSON)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .api import ModelMetadata, PredictResult, TensorSpec, VersionStatus
from .gate import WaitResult

DEFAULT_TOP_K = 5


def top_k_outputs(outputs: Mapping[str, np.ndarray], top_k: int | None) -> list[str]:
    """Outputs shown as ranked classes: ``scores``, or every [N, K] float output with top-k."""
    chosen = []
    for name, array in outputs.items():
        if array.ndim != 2 or array.dtype.kind != "f":
            continue
        if name == "scores" or top_k is not None:
            chosen.append(name)
    return chosen


def ranked(scores: np.ndarray, k: int, classes: np.ndarray | None) -> list[list[tuple[str, float]]]:
    """Best ``k`` (label, score) pairs per row; labels from ``classes`` or column indices."""
    rows = []
    k = min(k, scores.shape[1])
    for i, row in enumerate(scores):
        order = np.argsort(-row, kind="stable")[:k]
        rows.append([(_label(classes, i, int(j)), float(row[j])) for j in order])
    return rows


def _label(classes: np.ndarray | None, row: int, column: int) -> str:
    if classes is None:
        return str(column)
    value = classes[row, column]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value.item() if isinstance(value, np.generic) else value)


def format_predict(result: PredictResult, row_names: Sequence[str], top_k: int | None) -> list[str]:
    """Text lines for one answer; ``row_names`` label the rows of ranked outputs."""
    version = f" version {result.version}" if result.version is not None else ""
    lines = [f"model {result.model}{version}, signature {result.signature}"]
    ranked_names = top_k_outputs(result.outputs, top_k)
    classes = result.outputs.get("classes")
    for name in ranked_names:
        scores = result.outputs[name]
        labels = classes if classes is not None and classes.shape == scores.shape else None
        for i, row in enumerate(ranked(scores, top_k or DEFAULT_TOP_K, labels)):
            title = row_names[i] if i < len(row_names) else f"row {i}"
            lines.append(f"{title} ({name}):")
            width = max(len(label) for label, _ in row)
            lines.extend(f"  {label:>{width}}  {score:.4f}" for label, score in row)
    for name, array in result.outputs.items():
        if name in ranked_names or _shown_as_labels(name, ranked_names, result.outputs):
            continue
        if array.ndim == 0:
            lines.append(f"{name}: {_scalar_text(array)}")
            continue
        kind = "string" if array.dtype.kind == "O" else array.dtype.name
        lines.append(f"{name}: {kind} {list(array.shape)}")
        lines.append(_format_array(array))
    return lines


def _shown_as_labels(name: str, ranked_names: list[str], outputs: Mapping[str, Any]) -> bool:
    """``classes`` is already shown as the labels of a ranked output of the same shape."""
    if name != "classes":
        return False
    return any(outputs[r].shape == outputs[name].shape for r in ranked_names)


def _format_array(array: np.ndarray) -> str:
    if array.dtype.kind == "O":
        array = np.vectorize(_text, otypes=[object])(array) if array.size else array
    return np.array2string(array, threshold=200, max_line_width=100, separator=", ")


def _scalar_text(array: np.ndarray) -> str:
    """A 0-d value as plain text: ``3.5``, ``7``, ``true``, or the string itself."""
    value = array.item()
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and array.dtype.itemsize < 8:
        return str(float(str(array)))
    return str(value)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(value)} bytes>"
    return str(value)


def jsonable(array: np.ndarray) -> Any:
    """Nested lists; bytes as text (or ``{"b64": ...}`` when not UTF-8), NaN/inf as null."""
    if array.dtype.kind == "O":
        return _map_nested(array.tolist(), _json_bytes)
    if array.dtype.kind == "f":
        if array.dtype.itemsize < 8:  # shortest text that reads back as the same float32
            short = [float(text) for text in array.astype(str).reshape(-1)]
            values = np.array(short, dtype=object).reshape(array.shape).tolist()
        else:
            values = array.tolist()
        return _map_nested(values, _json_float)
    return array.tolist()


def _map_nested(value: Any, fn: Any) -> Any:
    if isinstance(value, list):
        return [_map_nested(v, fn) for v in value]
    return fn(value)


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _json_bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def dumps(data: Any) -> str:
    return json.dumps(data, indent=None, separators=(",", ":"), allow_nan=False)


def format_metadata(meta: ModelMetadata) -> list[str]:
    version = f" version {meta.version}" if meta.version is not None else ""
    lines = [f"model {meta.name}{version}"]
    for sig in meta.signatures.values():
        lines.append(f"signature {sig.name} ({sig.method or 'unknown method'})")
        for kind, specs in (("input", sig.inputs), ("output", sig.outputs)):
            lines.extend(f"  {kind:6} {_spec_text(spec)}" for spec in specs.values())
    return lines


def _spec_text(spec: TensorSpec) -> str:
    shape = "unknown rank" if spec.shape is None else str(list(spec.shape))
    return f"{spec.name}: {spec.dtype} {shape}"


def metadata_json(meta: ModelMetadata) -> dict[str, Any]:
    def specs(items: Mapping[str, TensorSpec]) -> dict[str, Any]:
        return {
            k: {"dtype": s.dtype, "shape": list(s.shape) if s.shape is not None else None}
            for k, s in items.items()
        }

    return {
        "model": meta.name,
        "version": meta.version,
        "signatures": {
            sig.name: {
                "method": sig.method,
                "inputs": specs(sig.inputs),
                "outputs": specs(sig.outputs),
            }
            for sig in meta.signatures.values()
        },
    }


def format_status(model: str, versions: Sequence[VersionStatus]) -> list[str]:
    lines = []
    for v in versions:
        error = f" (error {v.error_code}: {v.error_message})" if v.failed else ""
        lines.append(f"{model} version {v.version}: {v.state}{error}")
    return lines or [f"{model}: no versions reported"]


def status_json(model: str, versions: Sequence[VersionStatus], ready: bool | None) -> Any:
    data: dict[str, Any] = {
        "model": model,
        "versions": [
            {
                "version": v.version,
                "state": v.state,
                "error_code": v.error_code,
                "error_message": v.error_message,
            }
            for v in versions
        ],
    }
    if ready is not None:
        data["ready"] = ready
    return data


def wait_json(result: WaitResult, server: str, exit_code: int) -> Any:
    """``tfs-client wait --json``: the outcome, its reason and every model's versions."""
    return {
        "result": result.outcome.value,
        "exit_code": exit_code,
        "server": server,
        "reason": result.reason,
        "elapsed": round(result.elapsed, 3),
        "models": {
            name: status_json(name, versions, None)["versions"]
            for name, versions in result.versions.items()
        },
    }
