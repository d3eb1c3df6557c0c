"""Library interface: one client object per server, one channel reused for every call."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import numpy as np

from . import tensors
from ._protos import (
    classification_pb2,
    example_pb2,
    feature_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from .connection import TlsOptions, create_channel
from .errors import LocalInputError, from_grpc

DEFAULT_TIMEOUT = 10.0
DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"

_Response = TypeVar("_Response")


@dataclass(frozen=True)
class ModelRef:
    """Which model to call: name plus at most one of version or label, and a signature."""

    name: str
    version: int | None = None
    label: str | None = None
    signature: str | None = None

    def __post_init__(self) -> None:
        if self.version is not None and self.label is not None:
            raise LocalInputError("give a model version or a version label, not both")

    def to_proto(self, with_signature: bool = True) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=self.name)
        if self.version is not None:
            spec.version.value = self.version
        elif self.label is not None:
            spec.version_label = self.label
        if with_signature and self.signature:
            spec.signature_name = self.signature
        return spec


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for UNAVAILABLE only: waits ``backoff``, ``2*backoff``, ... up to ``max_backoff``."""

    retries: int = 0
    backoff: float = 0.5
    max_backoff: float = 8.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def delay(self, attempt: int) -> float:
        return min(self.backoff * (2**attempt), self.max_backoff)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...] | None  # None: unknown rank; -1: unknown size

    @property
    def dtype_enum(self) -> int:
        return tensors.dtype_from_name(self.dtype)


@dataclass(frozen=True)
class Signature:
    name: str
    method: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: int | None
    signatures: dict[str, Signature]

    def signature(self, name: str) -> Signature:
        try:
            return self.signatures[name]
        except KeyError:
            known = ", ".join(sorted(self.signatures)) or "none"
            raise LocalInputError(
                f"model {self.name} has no signature {name!r} (signatures: {known})", 4
            ) from None


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str
    error_code: str
    error_message: str

    @property
    def failed(self) -> bool:
        return self.error_code != "OK"


@dataclass(frozen=True)
class PredictResult:
    model: str
    version: int | None
    signature: str
    outputs: dict[str, np.ndarray]


class Client:
    """Calls TF Serving's PredictionService and ModelService at ``target`` (``HOST:PORT``)."""

    def __init__(
        self,
        target: str,
        tls: TlsOptions | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.channel = channel if channel is not None else create_channel(target, tls)
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def call(self, method: Callable[..., _Response], request: Any) -> _Response:
        """Call ``method(request)`` with the timeout, retrying while the server is UNAVAILABLE."""
        attempt = 0
        while True:
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as err:
                code = err.code() if isinstance(err, grpc.Call) else None
                if code is grpc.StatusCode.UNAVAILABLE and attempt < self.retry.retries:
                    self.retry.sleep(self.retry.delay(attempt))
                    attempt += 1
                    continue
                raise from_grpc(err, self.target, self.timeout) from None

    # Predict ------------------------------------------------------------------------------

    def predict_request(
        self,
        model: ModelRef,
        inputs: Mapping[str, Any],
        dtypes: Mapping[str, int] | None = None,
        output_filter: Sequence[str] = (),
    ) -> predict_pb2.PredictRequest:
        """Build a PredictRequest; values may be arrays, nested lists or TensorProtos."""
        request = predict_pb2.PredictRequest(model_spec=model.to_proto())
        for name, value in inputs.items():
            if isinstance(value, tensors.TensorProto):
                request.inputs[name].CopyFrom(value)
            else:
                dtype = (dtypes or {}).get(name)
                request.inputs[name].CopyFrom(tensors.to_tensor_proto(value, dtype))
        request.output_filter.extend(output_filter)
        return request

    def predict_raw(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        return self.call(self._predictions.Predict, request)

    def predict(
        self,
        model: ModelRef,
        inputs: Mapping[str, Any],
        dtypes: Mapping[str, int] | None = None,
        output_filter: Sequence[str] = (),
    ) -> PredictResult:
        """Run the model's signature on ``inputs`` and decode every output tensor."""
        request = self.predict_request(model, inputs, dtypes, output_filter)
        return decode_predict(request, self.predict_raw(request))

    # Classify / Regress on tf.Example inputs ----------------------------------------------

    def classify(
        self, model: ModelRef, examples: Iterable[Mapping[str, Any]]
    ) -> list[list[tuple[str, float]]]:
        """Classify tf.Examples given as ``{feature: values}``; (label, score) per example."""
        request = classification_pb2.ClassificationRequest(
            model_spec=model.to_proto(), input=_example_input(examples)
        )
        response = self.call(self._predictions.Classify, request)
        return [
            [(c.label, c.score) for c in item.classes] for item in response.result.classifications
        ]

    def regress(self, model: ModelRef, examples: Iterable[Mapping[str, Any]]) -> list[float]:
        """Regress tf.Examples given as ``{feature: values}``; one value per example."""
        request = regression_pb2.RegressionRequest(
            model_spec=model.to_proto(), input=_example_input(examples)
        )
        response = self.call(self._predictions.Regress, request)
        return [r.value for r in response.result.regressions]

    # Model information --------------------------------------------------------------------

    def metadata(self, model: ModelRef) -> ModelMetadata:
        """Signatures of the model (GetModelMetadata with ``signature_def``)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model.to_proto(with_signature=False), metadata_field=["signature_def"]
        )
        response = self.call(self._predictions.GetModelMetadata, request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        if "signature_def" in response.metadata:
            response.metadata["signature_def"].Unpack(sig_map)
        signatures = {
            name: Signature(
                name=name,
                method=sig.method_name,
                inputs=_tensor_specs(sig.inputs),
                outputs=_tensor_specs(sig.outputs),
            )
            for name, sig in sorted(sig_map.signature_def.items())
        }
        spec = response.model_spec
        return ModelMetadata(
            name=spec.name or model.name,
            version=spec.version.value if spec.HasField("version") else None,
            signatures=signatures,
        )

    def model_status(self, model: ModelRef) -> list[VersionStatus]:
        """States of the model's versions (GetModelStatus), sorted by version."""
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=model.to_proto(with_signature=False)
        )
        response = self.call(self._models.GetModelStatus, request)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        result = [
            VersionStatus(
                version=item.version,
                state=_enum_name(state_name, item.state),
                error_code=_error_code_name(item.status.error_code),
                error_message=item.status.error_message,
            )
            for item in response.model_version_status
        ]
        return sorted(result, key=lambda s: s.version)


def decode_predict(
    request: predict_pb2.PredictRequest, response: predict_pb2.PredictResponse
) -> PredictResult:
    """Decode every output tensor of ``response``."""
    spec = response.model_spec
    return PredictResult(
        model=spec.name or request.model_spec.name,
        version=spec.version.value if spec.HasField("version") else None,
        signature=spec.signature_name or request.model_spec.signature_name or DEFAULT_SIGNATURE,
        outputs={name: tensors.to_array(t) for name, t in sorted(response.outputs.items())},
    )


def _enum_name(namer: Callable[[int], str], value: int) -> str:
    try:
        return namer(value)
    except ValueError:
        return str(value)


# tensorflow.error.Code uses the same numbers as gRPC status codes.
_CODE_NAMES = {status.value[0]: status.name for status in grpc.StatusCode}


def _error_code_name(code: int) -> str:
    return _CODE_NAMES.get(code, str(code))


def _tensor_specs(infos: Mapping[str, Any]) -> dict[str, TensorSpec]:
    return {
        key: TensorSpec(
            name=key,
            dtype=tensors.dtype_name(info.dtype),
            shape=tensors.shape_of(info.tensor_shape),
        )
        for key, info in sorted(infos.items())
    }


def _feature(values: Any) -> feature_pb2.Feature:
    array = np.asarray(values).reshape(-1)
    if array.dtype.kind in "SUO":
        return feature_pb2.Feature(
            bytes_list=feature_pb2.BytesList(value=[tensors._to_bytes(v) for v in array])
        )
    if array.dtype.kind in "iub":
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=array.tolist()))
    return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=array.tolist()))


def _example_input(examples: Iterable[Mapping[str, Any]]) -> input_pb2.Input:
    items = [
        example_pb2.Example(
            features=feature_pb2.Features(
                feature={name: _feature(values) for name, values in example.items()}
            )
        )
        for example in examples
    ]
    return input_pb2.Input(example_list=input_pb2.ExampleList(examples=items))
