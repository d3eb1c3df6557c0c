"""grpc.health.v1.Health, as ``--enable_grpc_healthcheck_service`` serves it.

TF Serving (2.15 and later) turns on gRPC's default health service and marks its two
services SERVING once the gRPC port is open; nothing changes that afterwards, so the
answer says the process listens, not that any model is AVAILABLE. The empty service name
(the whole server) is SERVING too, and an unknown name answers NOT_FOUND.

grpcio's health package is not in the image, so the two messages are declared here, in a
private descriptor pool, with the names and field numbers of grpc/health/v1/health.proto.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

SERVICE = "grpc.health.v1.Health"
# The service names TF Serving registers, besides "" for the whole server.
SERVED_NAMES = ("", "ModelService", "PredictionService")

UNKNOWN, SERVING, NOT_SERVING, SERVICE_UNKNOWN = 0, 1, 2, 3


def _pool() -> descriptor_pool.DescriptorPool:
    f = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tfs_standin/health.proto", package="grpc.health.v1", syntax="proto3"
    )
    req = fdp.message_type.add(name="HealthCheckRequest")
    req.field.add(name="service", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    resp = fdp.message_type.add(name="HealthCheckResponse")
    status = resp.enum_type.add(name="ServingStatus")
    for name, number in (
        ("UNKNOWN", UNKNOWN),
        ("SERVING", SERVING),
        ("NOT_SERVING", NOT_SERVING),
        ("SERVICE_UNKNOWN", SERVICE_UNKNOWN),
    ):
        status.value.add(name=name, number=number)
    resp.field.add(
        name="status",
        number=1,
        type=f.TYPE_ENUM,
        label=f.LABEL_OPTIONAL,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return pool


_POOL = _pool()


def _cls(name: str) -> type[message.Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"grpc.health.v1.{name}"))


HealthCheckRequest = _cls("HealthCheckRequest")
HealthCheckResponse = _cls("HealthCheckResponse")


class Health:
    """Check and Watch for the registered names; every name is SERVING once created."""

    def __init__(self, stopping: threading.Event) -> None:
        self._status = dict.fromkeys(SERVED_NAMES, SERVING)
        self._stopping = stopping

    def check(self, request: message.Message, context: grpc.ServicerContext) -> message.Message:
        status = self._status.get(request.service)  # type: ignore[attr-defined]
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "")
        return HealthCheckResponse(status=status)

    def watch(
        self, request: message.Message, context: grpc.ServicerContext
    ) -> Iterator[message.Message]:
        status = self._status.get(request.service, SERVICE_UNKNOWN)  # type: ignore[attr-defined]
        yield HealthCheckResponse(status=status)
        # The status never changes: hold the stream open until the client or server ends it.
        while context.is_active() and not self._stopping.is_set():
            time.sleep(0.5)

    def handler(self) -> grpc.GenericRpcHandler:
        def serialize(msg: message.Message) -> bytes:
            return msg.SerializeToString()

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    self.check,
                    request_deserializer=HealthCheckRequest.FromString,
                    response_serializer=serialize,
                ),
                "Watch": grpc.unary_stream_rpc_method_handler(
                    self.watch,
                    request_deserializer=HealthCheckRequest.FromString,
                    response_serializer=serialize,
                ),
            },
        )
