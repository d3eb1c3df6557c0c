"""TF Serving's gRPC services (PredictionService, ModelService) on grpcio."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from typing import TypeVar

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from tfs_standin import errors
from tfs_standin.api import Api

log = logging.getLogger(__name__)

R = TypeVar("R")


def _timeout_ms(context: grpc.ServicerContext) -> int:
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e8:
        return 0
    return max(1, int(remaining * 1000))


def _call(context: grpc.ServicerContext, fn: Callable[[], R]) -> R:
    try:
        return fn()
    except errors.ServingError as exc:
        context.abort(exc.code, exc.message)
    except Exception as exc:
        log.exception("gRPC request failed")
        context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
    raise AssertionError("unreachable")  # context.abort always raises


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, api: Api) -> None:
        self.api = api

    def Predict(self, request, context):
        return _call(context, lambda: self.api.predict(request, "GRPC", _timeout_ms(context)))

    def Classify(self, request, context):
        return _call(context, lambda: self.api.classify(request, "GRPC", _timeout_ms(context)))

    def Regress(self, request, context):
        return _call(context, lambda: self.api.regress(request, "GRPC", _timeout_ms(context)))

    def GetModelMetadata(self, request, context):
        return _call(context, lambda: self.api.metadata(request, "GRPC"))

    def MultiInference(self, request, context):
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not implemented by the stand-in"
        )


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, api: Api) -> None:
        self.api = api

    def GetModelStatus(self, request, context):
        return _call(context, lambda: self.api.status(request, "GRPC"))

    def HandleReloadConfigRequest(self, request, context):
        return _call(context, lambda: self.api.reload_config(request))


def build_server(
    api: Api,
    address: str,
    credentials: grpc.ServerCredentials | None,
    channel_args: list[tuple[str, str | int]],
    extra_addresses: list[str] = (),  # type: ignore[assignment]
    max_workers: int = 16,
    extra_handlers: list[grpc.GenericRpcHandler] = (),  # type: ignore[assignment]
) -> grpc.Server:
    options: list[tuple[str, str | int]] = [
        ("grpc.max_receive_message_length", -1),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 0),
        *channel_args,
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(api), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(api), server)
    if extra_handlers:
        server.add_generic_rpc_handlers(tuple(extra_handlers))
    for addr in [address, *extra_addresses]:
        try:
            bound = (
                server.add_secure_port(addr, credentials)
                if credentials is not None and not addr.startswith("unix:")
                else server.add_insecure_port(addr)
            )
        except RuntimeError as exc:
            raise OSError(f"cannot bind gRPC to {addr}: {exc}") from exc
        if not bound:
            raise OSError(f"cannot bind gRPC to {addr} (port in use?)")
    return server
