"""The message classes of TF Serving's config files, parsed as the server parses them.

tensorflow-serving-api carries ModelServerConfig (and PlatformConfig) but not
MonitoringConfig, SSLConfig or BatchingParameters. This module declares those three
with the same package, message and field names as the server, so the same text-proto
files parse, and re-exports ModelServerConfig. The three live in a private descriptor pool,
so they can never clash with classes another library registers.

Without protobuf and tensorflow-serving-api (a host's Python, not the controller's .venv)
the module still imports: IMPORT_ERROR holds the ImportError and the classes are absent.
"""

from __future__ import annotations

try:
    from google.protobuf import (
        descriptor_pb2,
        descriptor_pool,
        message,
        message_factory,
        wrappers_pb2,
    )
    from tensorflow_serving.config import model_server_config_pb2
except ImportError as error:  # the caller reports it (tfserving_config_check: run from .venv)
    IMPORT_ERROR: ImportError | None = error
else:
    IMPORT_ERROR = None

_PACKAGE = "tensorflow.serving"


def _messages() -> list[tuple[str, list[tuple[str, int, int, int, str]]]]:
    """[(message name, [(field name, number, type, label, type_name)])]."""
    _F = descriptor_pb2.FieldDescriptorProto
    return [
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
    for msg_name, fields in _messages():
        msg = fdp.message_type.add(name=msg_name)
        for name, number, ftype, label, type_name in fields:
            field = msg.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
    pool.Add(fdp)
    return pool


def _cls(pool: descriptor_pool.DescriptorPool, name: str) -> type[message.Message]:
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


if IMPORT_ERROR is None:
    ModelServerConfig = model_server_config_pb2.ModelServerConfig
    _POOL = _build_pool()
    MonitoringConfig = _cls(_POOL, "MonitoringConfig")
    SSLConfig = _cls(_POOL, "SSLConfig")
    BatchingParameters = _cls(_POOL, "BatchingParameters")
