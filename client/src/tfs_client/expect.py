"""Checking an answer: expected output values (exact or within a tolerance), top classes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import render
from .errors import EXIT_MISMATCH, LocalInputError, TfsClientError
from .inputs import load_value, parse_input_arg


def parse_expected_outputs(texts: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` arguments (JSON literal, ``@file.json`` or ``@file.npy``)."""
    expected: dict[str, Any] = {}
    for text in texts:
        arg = parse_input_arg(text)
        if arg.name is None:
            raise LocalInputError(f"--expect-output needs NAME=VALUE, got {text!r}")
        if arg.name in expected:
            raise LocalInputError(f"--expect-output {arg.name} is given twice")
        expected[arg.name] = load_value(arg.raw, f"expected output {arg.name}")
    return expected


def output_differences(
    outputs: Mapping[str, np.ndarray], expected: Mapping[str, Any], tolerance: float
) -> list[str]:
    """One line per expected output that is missing or differs; empty when all match."""
    problems = []
    for name, value in expected.items():
        if name not in outputs:
            known = ", ".join(sorted(outputs)) or "none"
            problems.append(f"output {name} is missing (outputs: {known})")
            continue
        got = outputs[name]
        want = np.asarray(value, dtype=object if got.dtype.kind == "O" else None)
        if got.shape != want.shape:
            problems.append(
                f"output {name} has shape {list(got.shape)}, expected {list(want.shape)}"
            )
        elif not _values_match(got, want, tolerance):
            limit = f" within {tolerance:g}" if tolerance else ""
            problems.append(
                f"output {name} is {render.dumps(render.jsonable(got))}, "
                f"expected {render.dumps(render.jsonable(want))}{limit}"
            )
    return problems


def _values_match(got: np.ndarray, want: np.ndarray, tolerance: float) -> bool:
    if got.dtype.kind == "O" or want.dtype.kind in "OUS":
        texts = np.vectorize(_as_text, otypes=[object])
        return bool(np.array_equal(texts(got), texts(want))) if got.size else True
    try:
        got_f, want_f = got.astype(np.float64), want.astype(np.float64)
    except (TypeError, ValueError):
        return False
    if tolerance > 0:
        return bool(np.all(np.abs(got_f - want_f) <= tolerance))
    return bool(np.array_equal(got_f, want_f))


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def class_differences(
    outputs: Mapping[str, np.ndarray], expected: Sequence[str], row_names: Sequence[str]
) -> list[str]:
    """The best class of each row of the ranked output against ``expected`` (one per row)."""
    ranked_names = render.top_k_outputs(outputs, None) or render.top_k_outputs(outputs, 1)
    if len(ranked_names) != 1:
        raise TfsClientError(
            "--expect-class needs one [N, K] float output (or one named scores), "
            f"the answer has {', '.join(sorted(outputs)) or 'none'}",
            EXIT_MISMATCH,
        )
    scores = outputs[ranked_names[0]]
    classes = outputs.get("classes")
    labels = classes if classes is not None and classes.shape == scores.shape else None
    best = [row[0][0] for row in render.ranked(scores, 1, labels)]
    if len(best) != len(expected):
        return [f"{len(best)} rows answered, {len(expected)} expected classes given"]
    return [
        f"{row_names[i] if i < len(row_names) else f'row {i}'}: best class {got}, expected {want}"
        for i, (got, want) in enumerate(zip(best, expected, strict=True))
        if got != str(want)
    ]


def check(
    outputs: Mapping[str, np.ndarray],
    expected_outputs: Mapping[str, Any],
    tolerance: float,
    expected_classes: Sequence[str],
    row_names: Sequence[str],
) -> None:
    """Raise a TfsClientError (exit code 7) naming every difference."""
    problems = output_differences(outputs, expected_outputs, tolerance)
    if expected_classes:
        problems += class_differences(outputs, expected_classes, row_names)
    if problems:
        raise TfsClientError(
            "answer differs from the expected: " + "; ".join(problems), EXIT_MISMATCH
        )
