"""An in-process stand-in for TF Serving's gRPC services that records what it receives."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
import numpy as np
from tfs_client import tensors
from tfs_client._protos import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
    types_pb2,
)

Code = grpc.StatusCode
State = get_model_status_pb2.ModelVersionStatus.State


@dataclass
class FakeModel:
    versions: list[int]
    labels: dict[str, int]
    # signature -> (inputs {name: (dtype, shape)}, outputs {name: (dtype, shape)})
    signatures: dict[str, tuple[dict[str, tuple[int, list[int]]], dict[str, tuple[int, list[int]]]]]
    states: dict[int, tuple[int, int, str]] = field(default_factory=dict)  # state, code, msg


def default_models() -> dict[str, FakeModel]:
    f, s = types_pb2.DT_FLOAT, types_pb2.DT_STRING
    return {
        "half_plus_two": FakeModel(
            versions=[123],
            labels={"stable": 123},
            signatures={
                "serving_default": ({"x": (f, [-1, 1])}, {"y": (f, [-1, 1])}),
                "two_inputs": (
                    {"a": (types_pb2.DT_INT64, [-1]), "b": (types_pb2.DT_BOOL, [-1])},
                    {"sum": (types_pb2.DT_INT64, [-1])},
                ),
            },
        ),
        "counter": FakeModel(
            versions=[1],
            labels={},
            signatures={"serving_default": ({}, {"count": (types_pb2.DT_INT64, [])})},
        ),
        "digits": FakeModel(
            versions=[1, 2],
            labels={},
            signatures={
                "predict_images": ({"images": (s, [-1])}, {"scores": (f, [-1, 10])}),
            },
        ),
    }


def digit_of(image: bytes) -> int:
    """The fake 'recognizer': the class is the image's length modulo 10."""
    return len(image) % 10


class FakeServing(
    prediction_service_pb2_grpc.PredictionServiceServicer,
    model_service_pb2_grpc.ModelServiceServicer,
):
    def __init__(self) -> None:
        self.models = default_models()
        self.received: list[tuple[str, object]] = []
        self.fail_next: list[Code] = []
        self.delay = 0.0
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    # helpers -------------------------------------------------------------------------------
    def _enter(self, method: str, request: object, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.received.append((method, request))
            failure = self.fail_next.pop(0) if self.fail_next else None
        if failure is not None:
            context.abort(failure, f"injected {failure.name}")
        if self.delay:
            self.stopping.wait(self.delay)

    def calls(self, method: str) -> list:
        return [r for m, r in self.received if m == method]

    def _resolve(self, spec, context) -> tuple[FakeModel, int]:
        model = self.models.get(spec.name)
        if model is None:
            context.abort(Code.NOT_FOUND, f"Servable not found for request: Latest({spec.name})")
        if spec.HasField("version"):
            version = spec.version.value
        elif spec.version_label:
            if spec.version_label not in model.labels:
                context.abort(Code.INVALID_ARGUMENT, f"Unrecognized label {spec.version_label}")
            version = model.labels[spec.version_label]
        else:
            version = max(model.versions)
        if version not in model.versions:
            context.abort(Code.NOT_FOUND, f"Servable not found: Specific({spec.name}, {version})")
        return model, version

    # PredictionService ---------------------------------------------------------------------
    def Predict(self, request, context):
        self._enter("Predict", request, context)
        model, version = self._resolve(request.model_spec, context)
        sig_name = request.model_spec.signature_name or "serving_default"
        if sig_name not in model.signatures:
            context.abort(Code.INVALID_ARGUMENT, f'Serving signature name: "{sig_name}" not found')
        inputs_spec, _ = model.signatures[sig_name]
        if set(request.inputs) != set(inputs_spec):
            context.abort(Code.INVALID_ARGUMENT, "input size does not match signature")
        for name, (dtype, _shape) in inputs_spec.items():
            if request.inputs[name].dtype != dtype:
                context.abort(Code.INVALID_ARGUMENT, f"Expects arg[0] to be {dtype} for {name}")
        values = {n: tensors.to_array(t) for n, t in request.inputs.items()}
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = sig_name
        if request.model_spec.name == "counter":
            self.count = getattr(self, "count", 0) + 1
            out = {"count": np.array(self.count, dtype=np.int64)}
        elif sig_name == "serving_default":
            out = {"y": values["x"] * 0.5 + 2.0}
        elif sig_name == "two_inputs":
            out = {"sum": values["a"] + values["b"].astype(np.int64)}
        else:
            images = values["images"]
            scores = np.full((len(images), 10), 0.01, dtype=np.float32)
            for i, image in enumerate(images):
                scores[i, digit_of(image)] = 0.91
            out = {"scores": scores}
        for name, array in out.items():
            response.outputs[name].CopyFrom(tensors.to_tensor_proto(array))
        return response

    def GetModelMetadata(self, request, context):
        self._enter("GetModelMetadata", request, context)
        model, version = self._resolve(request.model_spec, context)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for name, (inputs, outputs) in model.signatures.items():
            sig = sig_map.signature_def[name]
            sig.method_name = "tensorflow/serving/predict"
            for target, specs in ((sig.inputs, inputs), (sig.outputs, outputs)):
                for key, (dtype, shape) in specs.items():
                    target[key].name = f"{key}:0"
                    target[key].dtype = dtype
                    for size in shape:
                        target[key].tensor_shape.dim.add(size=size)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.metadata["signature_def"].Pack(sig_map)
        return response

    def Classify(self, request, context):
        self._enter("Classify", request, context)
        response = classification_pb2.ClassificationResponse()
        for example in request.input.example_list.examples:
            x = example.features.feature["x"].float_list.value[0]
            item = response.result.classifications.add()
            item.classes.add(label="half", score=x * 0.5)
        return response

    def Regress(self, request, context):
        self._enter("Regress", request, context)
        response = regression_pb2.RegressionResponse()
        for example in request.input.example_list.examples:
            x = example.features.feature["x"].float_list.value[0]
            response.result.regressions.add(value=x * 0.5 + 2.0)
        return response

    # ModelService --------------------------------------------------------------------------
    def GetModelStatus(self, request, context):
        self._enter("GetModelStatus", request, context)
        model = self.models.get(request.model_spec.name)
        if model is None:
            context.abort(
                Code.NOT_FOUND, f"Could not find any versions of model {request.model_spec.name}"
            )
        response = get_model_status_pb2.GetModelStatusResponse()
        wanted = (
            request.model_spec.version.value if request.model_spec.HasField("version") else None
        )
        for version in model.versions:
            if wanted is not None and version != wanted:
                continue
            state, code, message = model.states.get(version, (State.AVAILABLE, 0, ""))
            item = response.model_version_status.add(version=version, state=state)
            item.status.error_code = code
            item.status.error_message = message
        if not response.model_version_status:
            context.abort(Code.NOT_FOUND, f"Could not find version {wanted}")
        return response


@contextmanager
def serve(
    servicer: FakeServing | None = None,
    port: int = 0,
    credentials: grpc.ServerCredentials | None = None,
) -> Iterator[tuple[FakeServing, int]]:
    """Run the fake on 127.0.0.1 (a free port unless given); yield it and its port."""
    servicer = servicer or FakeServing()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    address = f"127.0.0.1:{port}"
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    server.start()
    try:
        yield servicer, bound
    finally:
        servicer.stopping.set()
        server.stop(None)
