from __future__ import annotations

import numpy as np
import pytest
from tfs_client import tensors
from tfs_client._protos import tensor_pb2, types_pb2
from tfs_client.errors import LocalInputError

NUMERIC = [
    (np.float32, types_pb2.DT_FLOAT, "float_val"),
    (np.float64, types_pb2.DT_DOUBLE, "double_val"),
    (np.float16, types_pb2.DT_HALF, "half_val"),
    (np.int8, types_pb2.DT_INT8, "int_val"),
    (np.int16, types_pb2.DT_INT16, "int_val"),
    (np.int32, types_pb2.DT_INT32, "int_val"),
    (np.int64, types_pb2.DT_INT64, "int64_val"),
    (np.uint8, types_pb2.DT_UINT8, "int_val"),
    (np.uint16, types_pb2.DT_UINT16, "int_val"),
    (np.uint32, types_pb2.DT_UINT32, "uint32_val"),
    (np.uint64, types_pb2.DT_UINT64, "uint64_val"),
    (np.bool_, types_pb2.DT_BOOL, "bool_val"),
]


def sample(np_type: type, shape: tuple[int, ...]) -> np.ndarray:
    values = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    if np_type is np.bool_:
        return values % 2 == 1
    if np.issubdtype(np_type, np.floating):
        return (values * 1.25 - 3).astype(np_type)
    return values.astype(np_type)


@pytest.mark.parametrize(("np_type", "dtype", "field"), NUMERIC)
@pytest.mark.parametrize("shape", [(2, 3), (), (0, 4), (5,)])
@pytest.mark.parametrize("packed", [True, False])
def test_numeric_round_trip(np_type, dtype, field, shape, packed):
    array = sample(np_type, shape)
    proto = tensors.to_tensor_proto(array, packed=packed)
    assert proto.dtype == dtype
    assert [d.size for d in proto.tensor_shape.dim] == list(shape)
    if packed:
        assert len(proto.tensor_content) == array.size * array.itemsize
        assert len(getattr(proto, field)) == 0
    else:
        assert proto.tensor_content == b""
        assert len(getattr(proto, field)) == array.size
    back = tensors.to_array(tensor_pb2.TensorProto.FromString(proto.SerializeToString()))
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_tensor_content_is_little_endian_raw_bytes():
    proto = tensors.to_tensor_proto(np.array([1.0, -2.0], dtype=">f4"))  # big-endian input
    assert proto.dtype == types_pb2.DT_FLOAT
    assert proto.tensor_content == b"\x00\x00\x80\x3f\x00\x00\x00\xc0"


def test_strings_go_to_string_val_as_utf8_bytes():
    proto = tensors.to_tensor_proto([["ä", b"\xff\x00"], ["", "x"]])
    assert proto.dtype == types_pb2.DT_STRING
    assert list(proto.string_val) == ["ä".encode(), b"\xff\x00", b"", b"x"]
    assert [d.size for d in proto.tensor_shape.dim] == [2, 2]
    back = tensors.to_array(proto)
    assert back.dtype == object
    assert back.tolist() == [["ä".encode(), b"\xff\x00"], [b"", b"x"]]


def test_typed_fields_as_written_by_tensorflow_decode():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32)
    proto.tensor_shape.dim.add(size=3)
    proto.int_val.extend([4, -5, 6])
    np.testing.assert_array_equal(tensors.to_array(proto), np.array([4, -5, 6], np.int32))


def test_short_value_list_repeats_last_value_like_tensorflow():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=2)
    proto.float_val.extend([1.0, 7.0])
    np.testing.assert_array_equal(tensors.to_array(proto), [[1.0, 7.0], [7.0, 7.0]])
    proto.ClearField("float_val")
    np.testing.assert_array_equal(tensors.to_array(proto), np.zeros((2, 2)))


def test_wrong_tensor_content_size_is_an_error():
    proto = tensors.to_tensor_proto(np.zeros((2, 2), np.float32))
    proto.tensor_content = proto.tensor_content[:-4]
    with pytest.raises(ValueError, match="3 values"):
        tensors.to_array(proto)


def test_as_array_follows_the_requested_type():
    array = tensors.as_array([[1], [2]], types_pb2.DT_FLOAT)
    assert array.dtype == np.float32
    assert tensors.as_array([1.0, 0.0], types_pb2.DT_BOOL).tolist() == [True, False]
    assert tensors.as_array(["a"], types_pb2.DT_STRING).tolist() == [b"a"]


@pytest.mark.parametrize(
    ("value", "dtype", "message"),
    [
        ([1.5], types_pb2.DT_INT32, "not exact"),
        ([300], types_pb2.DT_UINT8, "out of range"),
        ([-1], types_pb2.DT_UINT32, "out of range"),
        ([2], types_pb2.DT_BOOL, "out of range"),
        (["a"], types_pb2.DT_FLOAT, "expected numbers"),
        ([1], types_pb2.DT_COMPLEX64, "not supported"),
        ([[1], [2, 3]], types_pb2.DT_FLOAT, "cannot convert"),
    ],
)
def test_as_array_refuses_lossy_or_wrong_values(value, dtype, message):
    with pytest.raises(LocalInputError, match=message):
        tensors.as_array(value, dtype)


def test_dtype_names():
    assert tensors.dtype_name(types_pb2.DT_FLOAT) == "DT_FLOAT"
    assert tensors.dtype_from_name("int64") == types_pb2.DT_INT64
    with pytest.raises(LocalInputError):
        tensors.dtype_from_name("DT_NOPE")
