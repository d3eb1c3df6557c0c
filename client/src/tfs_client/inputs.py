"""Reading request inputs given on the command line: ``--input`` values and ``--image`` files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LocalInputError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./:-]*")


@dataclass(frozen=True)
class InputArg:
    """One ``--input``: an optional name and its value (JSON text or ``@file``)."""

    name: str | None
    raw: str


def parse_input_arg(text: str) -> InputArg:
    """Split ``NAME=VALUE``; text without a leading name is a bare VALUE."""
    name, sep, value = text.partition("=")
    if sep and _NAME.fullmatch(name):
        return InputArg(name, value)
    return InputArg(None, text)


def load_value(raw: str, label: str) -> Any:
    """Decode a JSON literal, ``@file.json`` or ``@file.npy``."""
    if raw.startswith("@"):
        path = Path(raw[1:])
        suffix = path.suffix.lower()
        if suffix not in (".npy", ".json"):
            raise LocalInputError(f"{label}: {path} must be a .npy or .json file")
        try:
            if suffix == ".npy":
                return np.load(path, allow_pickle=False)
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise LocalInputError(f"{label}: cannot read {path}: {err.strerror or err}") from err
        except ValueError as err:
            raise LocalInputError(f"{label}: {path} is not a valid .npy file: {err}") from err
        return _parse_json(text, f"{label}: {path}")
    return _parse_json(raw, label)


def _parse_json(text: str, label: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise LocalInputError(f"{label}: not valid JSON ({err})") from err


def resolve_inputs(args: list[InputArg], input_names: list[str]) -> dict[str, Any]:
    """Map each ``--input`` to a signature input; a bare value needs a single-input signature."""
    known = ", ".join(input_names) or "none"
    values: dict[str, Any] = {}
    for arg in args:
        name = arg.name
        if name is None:
            if len(input_names) != 1:
                raise LocalInputError(f"the signature has inputs {known}: write --input NAME=VALUE")
            name = input_names[0]
        if name not in input_names:
            raise LocalInputError(f"the signature has no input {name!r} (inputs: {known})")
        if name in values:
            raise LocalInputError(f"input {name!r} is given twice")
        values[name] = load_value(arg.raw, f"input {name}")
    missing = [n for n in input_names if n not in values]
    if missing:
        # TF Serving itself refuses requests that lack an input; say so before sending.
        raise LocalInputError(f"missing value for input {', '.join(missing)}")
    return values


def read_images(paths: list[Path]) -> list[bytes]:
    """Read each file's bytes (encoded JPEG/PNG, sent as they are)."""
    data = []
    for path in paths:
        try:
            data.append(Path(path).read_bytes())
        except OSError as err:
            raise LocalInputError(f"cannot read image {path}: {err.strerror or err}") from err
    return data


def batches(count: int, size: int | None) -> list[range]:
    """Index ranges of ``count`` items in chunks of ``size`` (all at once when None)."""
    step = size if size and size > 0 else max(count, 1)
    return [range(start, min(start + step, count)) for start in range(0, count, step)]
