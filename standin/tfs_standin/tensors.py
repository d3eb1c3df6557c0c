"""Conversions between TensorProto, numpy arrays and TF Serving's JSON encoding."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from tfs_standin import errors

JSON = Any


def proto_to_ndarray(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as exc:
        raise errors.invalid(f"cannot decode input tensor {alias}: {exc}") from exc


def ndarray_to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    return tf.make_tensor_proto(array)


def dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype)


def _decode_json_string(value: JSON) -> bytes:
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise errors.invalid(f'JSON object {value!r} is not {{"b64": "..."}}')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error as exc:
            raise errors.invalid(f'invalid base64 data in {{"b64": ...}}: {exc}') from exc
    if isinstance(value, str):
        return value.encode("utf-8")
    raise errors.invalid(f'expected a string or {{"b64": ...}}, got {value!r}')


def _map_strings(value: JSON) -> JSON:
    if isinstance(value, list):
        return [_map_strings(v) for v in value]
    return _decode_json_string(value)


def _has_b64(value: JSON) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, dict) and "b64" in value


def json_to_ndarray(value: JSON, dtype: int, alias: str) -> np.ndarray:
    """A JSON value (nested lists of numbers, strings or {"b64"}) as an array of ``dtype``."""
    try:
        if dtype == types_pb2.DT_STRING or _has_b64(value):
            data = _map_strings(value)
            array = np.array(data, dtype=object)
            if array.dtype != object or any(not isinstance(x, bytes) for x in array.flat):
                raise ValueError("strings of unequal nesting")
            return array
        if dtype == types_pb2.DT_INVALID:
            return np.array(value)
        np_dtype = tf.dtypes.as_dtype(dtype).as_numpy_dtype
        return np.array(value, dtype=np_dtype)
    except errors.ServingError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise errors.invalid(
            f"cannot convert JSON value for input {alias} to {dtype_name(dtype)}: {exc}"
        ) from exc


def ndarray_to_json(array: np.ndarray, alias: str) -> JSON:
    """An output array as JSON: strings decode as UTF-8, or {"b64"} for *_bytes aliases."""
    if array.dtype == object or array.dtype.kind in ("S", "U"):
        as_b64 = alias.endswith("_bytes")

        def conv(item: Any) -> JSON:
            raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
            if not as_b64:
                try:
                    return raw.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(raw).decode("ascii")}

        flat = [conv(x) for x in array.ravel()]
        return _reshape(flat, array.shape)
    if array.dtype in (np.float32, np.float16):
        # shortest text that reads back as the same float32, as TF Serving prints it
        flat = [float(str(x)) for x in array.ravel()]
        return _reshape(flat, array.shape)
    return array.tolist()


def _reshape(flat: list[JSON], shape: tuple[int, ...]) -> JSON:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return flat
    step = len(flat) // shape[0] if shape[0] else 0
    return [_reshape(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]
