"""Conversion between numpy arrays and ``tensorflow.TensorProto`` without TensorFlow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._protos import tensor_pb2, tensor_shape_pb2, types_pb2
from .errors import LocalInputError

TensorProto = tensor_pb2.TensorProto

# DataType enum value -> little-endian numpy dtype, for types with a fixed-size encoding.
_NUMERIC: dict[int, np.dtype[Any]] = {
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_DOUBLE: np.dtype("<f8"),
    types_pb2.DT_HALF: np.dtype("<f2"),
    types_pb2.DT_INT8: np.dtype("i1"),
    types_pb2.DT_INT16: np.dtype("<i2"),
    types_pb2.DT_INT32: np.dtype("<i4"),
    types_pb2.DT_INT64: np.dtype("<i8"),
    types_pb2.DT_UINT8: np.dtype("u1"),
    types_pb2.DT_UINT16: np.dtype("<u2"),
    types_pb2.DT_UINT32: np.dtype("<u4"),
    types_pb2.DT_UINT64: np.dtype("<u8"),
    types_pb2.DT_BOOL: np.dtype("?"),
}

# Repeated field of TensorProto that holds values of each type when tensor_content is empty.
_VALUE_FIELD: dict[int, str] = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_HALF: "half_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
}


def dtype_name(dtype: int) -> str:
    """``types_pb2.DT_FLOAT`` -> ``"DT_FLOAT"`` (unknown values as ``"DT_<n>"``)."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"DT_{dtype}"


def dtype_from_name(name: str) -> int:
    """``"DT_FLOAT"`` or ``"float"`` -> enum value."""
    key = name.upper()
    if not key.startswith("DT_"):
        key = "DT_" + key
    try:
        return types_pb2.DataType.Value(key)
    except ValueError as err:
        raise LocalInputError(f"unknown tensor type {name!r}") from err


def dtype_of(array: np.ndarray) -> int:
    """TensorFlow type for a numpy array."""
    if array.dtype.kind in "SUO":
        return types_pb2.DT_STRING
    for dtype, np_dtype in _NUMERIC.items():
        if (array.dtype.kind, array.dtype.itemsize) == (np_dtype.kind, np_dtype.itemsize):
            return dtype
    raise LocalInputError(f"numpy type {array.dtype} has no TensorFlow equivalent here")


def _to_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, np.bytes_ | np.str_):
        return _to_bytes(item.item())
    raise LocalInputError(f"string tensor element must be str or bytes, got {type(item).__name__}")


def as_array(value: Any, dtype: int | None = None) -> np.ndarray:
    """Turn ``value`` (nested lists, scalars, arrays) into an array of TensorFlow type ``dtype``.

    Numbers are converted only when no information is lost: ``1.5`` is refused for an
    integer tensor and ``2`` for a boolean one.
    """
    if dtype == types_pb2.DT_STRING:
        array = np.asarray(value, dtype=object)
        flat = [_to_bytes(item) for item in array.reshape(-1)]
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out.reshape(array.shape)
    try:
        array = np.asarray(value)
    except UnicodeError:  # a mix of str and non-ASCII bytes
        return as_array(value, types_pb2.DT_STRING)
    except ValueError as err:
        raise LocalInputError(f"cannot convert to a tensor: {err}") from err
    if dtype is None:
        if array.dtype.kind in "SUO":
            return as_array(array, types_pb2.DT_STRING)
        dtype_of(array)
        return array
    target = _NUMERIC.get(dtype)
    if target is None:
        raise LocalInputError(f"tensor type {dtype_name(dtype)} is not supported")
    if array.dtype.kind in "SUO" and array.size:
        raise LocalInputError(f"expected numbers for a {dtype_name(dtype)} tensor")
    try:
        converted = array.astype(target.newbyteorder("="))
    except (TypeError, ValueError) as err:
        raise LocalInputError(f"cannot convert to {dtype_name(dtype)}: {err}") from err
    lossy_float = array.dtype.kind in "fc" and target.kind in "iub"
    if array.size and lossy_float and not np.array_equal(converted.astype(array.dtype), array):
        raise LocalInputError(f"values are not exact {dtype_name(dtype)} values")
    narrowed = array.dtype.kind in "iu" and target.kind in "iub"
    if array.size and narrowed and not np.array_equal(converted.astype(array.dtype), array):
        raise LocalInputError(f"values are out of range for {dtype_name(dtype)}")
    return converted


def _shape_proto(shape: Sequence[int]) -> tensor_shape_pb2.TensorShapeProto:
    proto = tensor_shape_pb2.TensorShapeProto()
    for size in shape:
        proto.dim.add(size=int(size))
    return proto


def to_tensor_proto(value: Any, dtype: int | None = None, packed: bool = True) -> TensorProto:
    """Build a TensorProto from ``value``.

    Fixed-size types go into ``tensor_content`` as raw little-endian bytes (one copy, no
    per-element work) unless ``packed`` is false, which uses the typed repeated fields.
    Strings (``str`` is encoded as UTF-8) always use ``string_val``.
    """
    array = as_array(value, dtype)
    tf_dtype = dtype if dtype is not None else dtype_of(array)
    proto = TensorProto(dtype=tf_dtype, tensor_shape=_shape_proto(array.shape))
    if tf_dtype == types_pb2.DT_STRING:
        proto.string_val.extend(array.reshape(-1).tolist())
        return proto
    np_dtype = _NUMERIC[tf_dtype]
    if packed:
        proto.tensor_content = np.ascontiguousarray(array, dtype=np_dtype).tobytes()
    elif tf_dtype == types_pb2.DT_HALF:
        proto.half_val.extend(array.astype(np_dtype).reshape(-1).view("<u2").tolist())
    else:
        getattr(proto, _VALUE_FIELD[tf_dtype]).extend(array.reshape(-1).tolist())
    return proto


def shape_of(proto: tensor_shape_pb2.TensorShapeProto) -> tuple[int, ...] | None:
    """Dimensions of a shape proto; ``None`` for unknown rank, ``-1`` for unknown sizes."""
    if proto.unknown_rank:
        return None
    return tuple(int(dim.size) for dim in proto.dim)


def to_array(proto: TensorProto) -> np.ndarray:
    """Decode a TensorProto into a numpy array (strings as an object array of bytes)."""
    shape = shape_of(proto.tensor_shape) or ()
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    dtype = proto.dtype
    if dtype == types_pb2.DT_STRING:
        values: Any = list(proto.string_val)
        out = np.empty(size, dtype=object)
        out[:] = _fill(values, size, b"")
        return out.reshape(shape)
    np_dtype = _NUMERIC.get(dtype)
    if np_dtype is None:
        raise ValueError(f"cannot decode a tensor of type {dtype_name(dtype)}")
    if proto.tensor_content:
        flat = np.frombuffer(proto.tensor_content, dtype=np_dtype)
        if flat.size != size:
            raise ValueError(f"tensor_content holds {flat.size} values for shape {list(shape)}")
        return flat.astype(np_dtype.newbyteorder("="), copy=False).reshape(shape)
    field = getattr(proto, _VALUE_FIELD[dtype])
    if dtype == types_pb2.DT_HALF:
        flat = np.asarray(field, dtype="<u2").view(np_dtype)
    else:
        flat = np.asarray(field, dtype=np_dtype)
    flat = np.asarray(_fill(flat, size, np_dtype.type(0)), dtype=np_dtype)
    return flat.astype(np_dtype.newbyteorder("="), copy=False).reshape(shape)


def _fill(values: Any, size: int, zero: Any) -> Any:
    """Apply TensorFlow's rule for short value lists: repeat the last value to ``size``."""
    count = len(values)
    if count == size:
        return values
    if count > size:
        raise ValueError(f"tensor holds {count} values for {size} elements")
    if count == 0:
        return [zero] * size
    return list(values) + [values[-1]] * (size - count)
