"""Replaying ``assets.extra/tf_serving_warmup_requests`` before a version goes AVAILABLE."""

from __future__ import annotations

import os

from google.protobuf import message
from tensorflow.python.lib.io import tf_record
from tensorflow_serving.apis import prediction_log_pb2

from tfs_standin import errors, inference, tensors
from tfs_standin.servable import LoadedVersion

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000


def run_warmup(lv: LoadedVersion) -> int:
    """Run every logged request in the version's warmup file; returns how many ran."""
    path = os.path.join(lv.path, WARMUP_FILE)
    if not os.path.isfile(path):
        return 0
    count = 0
    for record in tf_record.tf_record_iterator(path):
        try:
            log = prediction_log_pb2.PredictionLog.FromString(record)
        except message.DecodeError as exc:
            raise errors.invalid(f"Failed to parse warmup record from {path}") from exc
        kind = log.WhichOneof("log_type")
        if kind == "predict_log":
            req = log.predict_log.request
            inputs = {a: tensors.proto_to_ndarray(t, a) for a, t in req.inputs.items()}
            inference.predict(lv, req.model_spec.signature_name, inputs, list(req.output_filter))
        elif kind == "classify_log":
            req_c = log.classify_log.request
            inference.classify(lv, req_c.model_spec.signature_name, req_c.input)
        elif kind == "regress_log":
            req_r = log.regress_log.request
            inference.regress(lv, req_r.model_spec.signature_name, req_r.input)
        else:
            raise errors.invalid(f"Unsupported log_type for warmup: {kind} in {path}")
        count += 1
        # TF Serving replays a record, then counts it: record 1001 runs, then fails the load.
        if count > MAX_RECORDS:
            raise errors.invalid(
                f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}"
            )
    return count
