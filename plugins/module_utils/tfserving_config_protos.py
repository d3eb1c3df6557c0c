"""The message classes of TF Serving's config files, parsed as the server parses them.

tensorflow-serving-api carries ModelServerConfig (and PlatformConfig) but not
MonitoringConfig, SSLConfig or BatchingParameters. This module declares those three
with the same package, message and field names as the server, so the same text-proto
files parse, and re-exports ModelServerConfig. The three live in a private descriptor pool,
so they can never clash with classes another library registers.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

ModelServerConfig = model_server_config_pb2.ModelServerConfig

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "tensorflow.serving"

# (message name, [(field name, number, type, label, type_name)])
_MESSAGES: list[tuple[str, list[tuple[str, int, int, int, str]]]] = [
    (
        "PrometheusConfig",
        [
            ("enable", 1, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
            ("path", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
        ],
    ),
    (
        "MonitoringConfig",
        [
            (
                "prometheus_config",
                1,
                _F.TYPE_MESSAGE,
                _F.LABEL_OPTIONAL,
                f".{_PACKAGE}.PrometheusConfig",
            ),
        ],
    ),
    (
        "SSLConfig",
        [
            ("server_key", 1, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
            ("server_cert", 2, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
            ("custom_ca", 3, _F.TYPE_STRING, _F.LABEL_OPTIONAL, ""),
            ("client_verify", 4, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
        ],
    ),
    (
        "BatchingParameters",
        [
            (
                "max_batch_size",
                1,
                _F.TYPE_MESSAGE,
                _F.LABEL_OPTIONAL,
                ".google.protobuf.Int64Value",
            ),
            (
                "batch_timeout_micros",
                2,
                _F.TYPE_MESSAGE,
                _F.LABEL_OPTIONAL,
                ".google.protobuf.Int64Value",
            ),
            (
                "max_enqueued_batches",
                3,
                _F.TYPE_MESSAGE,
                _F.LABEL_OPTIONAL,
                ".google.protobuf.Int64Value",
            ),
            (
                "num_batch_threads",
                4,
                _F.TYPE_MESSAGE,
                _F.LABEL_OPTIONAL,
                ".google.protobuf.Int64Value",
            ),
            (
                "thread_pool_name",
                5,
                _F.TYPE_MESSAGE,
                _F.LABEL_OPTIONAL,
                ".google.protobuf.StringValue",
            ),
            ("allowed_batch_sizes", 6, _F.TYPE_INT64, _F.LABEL_REPEATED, ""),
            ("pad_variable_length_inputs", 7, _F.TYPE_BOOL, _F.LABEL_OPTIONAL, ""),
            (
                "enable_large_batch_splitting",
                8,
                _F.TYPE_MESSAGE,
                _F.LABEL_OPTIONAL,
                ".google.protobuf.BoolValue",
            ),
            (
                "max_execution_batch_size",
                9,
                _F.TYPE_MESSAGE,
                _F.LABEL_OPTIONAL,
                ".google.protobuf.Int64Value",
            ),
        ],
    ),
]


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tfs_client/config_messages.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=[wrappers.name],
    )
    for msg_name, fields in _MESSAGES:
        msg = fdp.message_type.add(name=msg_name)
        for name, number, ftype, label, type_name in fields:
            field = msg.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
    pool.Add(fdp)
    return pool


_POOL = _build_pool()


def _cls(name: str) -> type[message.Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


MonitoringConfig = _cls("MonitoringConfig")
SSLConfig = _cls("SSLConfig")
BatchingParameters = _cls("BatchingParameters")
