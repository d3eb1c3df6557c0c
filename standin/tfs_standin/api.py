"""The API operations both front ends (gRPC and REST) call, with request metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_management_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from tfs_standin import errors, inference, tensors
from tfs_standin.manager import Manager
from tfs_standin.metrics import Metrics
from tfs_standin.servable import LoadedVersion

InputBuilder = Callable[[meta_graph_pb2.SignatureDef], dict[str, np.ndarray]]
Reloader = Callable[[model_management_pb2.ReloadConfigRequest], None]


# SharedBatchScheduler's input_batch_size_limit when BatchingParameters leave it unset.
DEFAULT_MAX_BATCH_SIZE = 1000


def check_batch(inputs: dict[str, np.ndarray], max_batch_size: int) -> None:
    """Refuse what TF Serving's batching session refuses, with its messages.

    The task size is the 0th dimension shared by every input; a task larger than
    max_batch_size is never split across batches unless large-batch splitting is on,
    and the server refuses it before running anything.
    """
    sizes = set()
    for value in inputs.values():
        if np.ndim(value) == 0:
            raise errors.invalid("Batching Run() input tensors must have at least one dimension")
        sizes.add(int(np.shape(value)[0]))
    if len(sizes) > 1:
        raise errors.invalid("Batching Run() input tensors must have equal 0th-dimension size")
    if sizes and (size := sizes.pop()) > max_batch_size:
        raise errors.invalid(
            f"Task size {size} is larger than maximum input batch size {max_batch_size}"
        )


class Api:
    def __init__(
        self,
        manager: Manager,
        metrics: Metrics,
        reloader: Reloader | None = None,
        max_batch_size: int | None = None,
    ):
        self.manager = manager
        self.metrics = metrics
        self.reloader = reloader
        # None: batching off. Otherwise every request is checked as the batcher checks it.
        self.max_batch_size = max_batch_size

    def _check_batch(self, inputs: dict[str, np.ndarray]) -> None:
        if self.max_batch_size is not None:
            check_batch(inputs, self.max_batch_size)

    def _check_examples(self, inp: input_pb2.Input) -> None:
        if self.max_batch_size is not None:
            count = len(inference.serialized_examples(inp))
            check_batch({"examples": np.zeros(count)}, self.max_batch_size)

    @contextmanager
    def _measure(self, model: str, api: str, entrypoint: str) -> Iterator[None]:
        started = time.perf_counter()
        status = "OK"
        try:
            yield
        except errors.ServingError as exc:
            status = exc.code_name
            raise
        except Exception:
            status = "UNKNOWN"
            raise
        finally:
            self.metrics.record_request(
                model, api, entrypoint, status, time.perf_counter() - started
            )

    @staticmethod
    def _fill_spec(
        spec: model_pb2.ModelSpec, lv: LoadedVersion, signature_name: str | None
    ) -> None:
        spec.name = lv.name
        spec.version.value = lv.version
        if signature_name is not None:
            spec.signature_name = signature_name

    def predict_arrays(
        self,
        spec: model_pb2.ModelSpec,
        build_inputs: InputBuilder,
        output_filter: list[str],
        entrypoint: str,
        timeout_ms: int = 0,
    ) -> tuple[LoadedVersion, str, dict[str, np.ndarray]]:
        with self._measure(spec.name, "predict", entrypoint), self.manager.acquire(spec) as lv:
            _, sig = inference.signature(lv, spec.signature_name)
            inputs = build_inputs(sig)
            self._check_batch(inputs)
            key, outputs = inference.predict(
                lv, spec.signature_name, inputs, output_filter, timeout_ms
            )
            return lv, key, outputs

    def predict(
        self, req: predict_pb2.PredictRequest, entrypoint: str = "GRPC", timeout_ms: int = 0
    ) -> predict_pb2.PredictResponse:
        def build(_sig: meta_graph_pb2.SignatureDef) -> dict[str, np.ndarray]:
            return {a: tensors.proto_to_ndarray(t, a) for a, t in req.inputs.items()}

        lv, key, outputs = self.predict_arrays(
            req.model_spec, build, list(req.output_filter), entrypoint, timeout_ms
        )
        resp = predict_pb2.PredictResponse()
        self._fill_spec(resp.model_spec, lv, key)
        for alias, value in outputs.items():
            resp.outputs[alias].CopyFrom(tensors.ndarray_to_proto(value))
        return resp

    def classify(
        self,
        req: classification_pb2.ClassificationRequest,
        entrypoint: str = "GRPC",
        timeout_ms: int = 0,
    ) -> classification_pb2.ClassificationResponse:
        spec = req.model_spec
        with self._measure(spec.name, "classify", entrypoint), self.manager.acquire(spec) as lv:
            self._check_examples(req.input)
            key, result = inference.classify(lv, spec.signature_name, req.input, timeout_ms)
            resp = classification_pb2.ClassificationResponse()
            self._fill_spec(resp.model_spec, lv, key)
            resp.result.CopyFrom(result)
            return resp

    def regress(
        self,
        req: regression_pb2.RegressionRequest,
        entrypoint: str = "GRPC",
        timeout_ms: int = 0,
    ) -> regression_pb2.RegressionResponse:
        spec = req.model_spec
        with self._measure(spec.name, "regress", entrypoint), self.manager.acquire(spec) as lv:
            self._check_examples(req.input)
            key, result = inference.regress(lv, spec.signature_name, req.input, timeout_ms)
            resp = regression_pb2.RegressionResponse()
            self._fill_spec(resp.model_spec, lv, key)
            resp.result.CopyFrom(result)
            return resp

    def metadata(
        self, req: get_model_metadata_pb2.GetModelMetadataRequest, entrypoint: str = "GRPC"
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        spec = req.model_spec
        with self._measure(spec.name, "GetModelMetadata", entrypoint):
            if not req.metadata_field:
                raise errors.invalid(
                    "GetModelMetadataRequest must specify at least one metadata_field"
                )
            for field in req.metadata_field:
                if field != "signature_def":
                    raise errors.invalid(f"Metadata field {field} is not supported")
            with self.manager.acquire(spec) as lv:
                resp = get_model_metadata_pb2.GetModelMetadataResponse()
                self._fill_spec(resp.model_spec, lv, None)
                sig_map = get_model_metadata_pb2.SignatureDefMap()
                for key, sig in lv.signatures.items():
                    sig_map.signature_def[key].CopyFrom(sig)
                resp.metadata["signature_def"].Pack(sig_map)
                return resp

    def status(
        self, req: get_model_status_pb2.GetModelStatusRequest, entrypoint: str = "GRPC"
    ) -> get_model_status_pb2.GetModelStatusResponse:
        with self._measure(req.model_spec.name, "GetModelStatus", entrypoint):
            return self.manager.status(req.model_spec)

    def reload_config(
        self, req: model_management_pb2.ReloadConfigRequest
    ) -> model_management_pb2.ReloadConfigResponse:
        resp = model_management_pb2.ReloadConfigResponse()
        if self.reloader is None:
            raise errors.ServingError(grpc.StatusCode.UNIMPLEMENTED, "config reload unavailable")
        try:
            self.reloader(req)
        except errors.ServingError as exc:
            resp.status.error_code = exc.code.value[0]
            resp.status.error_message = exc.message
        return resp
