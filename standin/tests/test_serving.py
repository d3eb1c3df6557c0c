"""Predict, Classify, Regress, metadata and status over gRPC and REST, with known answers."""

from __future__ import annotations

import base64

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    predict_pb2,
    regression_pb2,
)

from conftest import Running

X = [[1.0], [2.0], [5.0]]
TWO = [[2.5], [3.0], [4.5]]
THREE = [[3.5], [4.0], [5.5]]


def predict_req(model: str, x: object = X, **spec: object) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            req.model_spec.version.value = int(value)  # type: ignore[call-overload]
        else:
            setattr(req.model_spec, key, value)
    if x is not None:
        req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(x, dtype=np.float32)))
    return req


def examples(*values: float) -> input_pb2.Input:
    inp = input_pb2.Input()
    for v in values:
        ex = inp.example_list.examples.add()
        ex.features.feature["x"].float_list.value.append(v)
    return inp


def grpc_error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


# ----- predict -----------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "want"), [("half_plus_two", TWO), ("half_plus_three", THREE)])
def test_grpc_predict_known_answers(main_server: Running, model: str, want: list) -> None:
    resp = main_server.predict.Predict(predict_req(model), timeout=10)
    assert tf.make_ndarray(resp.outputs["y"]).tolist() == want
    assert resp.model_spec.name == model
    assert resp.model_spec.version.value == 123
    assert resp.model_spec.signature_name == "serving_default"


def test_rest_predict_row_format(main_server: Running) -> None:
    r = requests.post(
        f"{main_server.rest}/v1/models/half_plus_two:predict",
        json={"instances": [1.0, 2.0, 5.0]},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [2.5, 3.0, 4.5]}
    named = requests.post(
        f"{main_server.rest}/v1/models/half_plus_two:predict",
        json={"instances": [{"x": [1.0]}, {"x": [2.0]}, {"x": [5.0]}]},
        timeout=10,
    )
    assert named.json() == {"predictions": TWO}


def test_rest_predict_columnar_format(main_server: Running) -> None:
    r = requests.post(
        f"{main_server.rest}/v1/models/half_plus_three/versions/123:predict",
        json={"inputs": {"x": X}},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"outputs": THREE}
    unnamed = requests.post(
        f"{main_server.rest}/v1/models/half_plus_three:predict", json={"inputs": X}, timeout=10
    )
    assert unnamed.json() == {"outputs": THREE}


@pytest.mark.parametrize("model", ["half_plus_two", "half_plus_three"])
def test_rest_and_grpc_agree(main_server: Running, model: str) -> None:
    xs = [[0.25], [-3.0], [10.5], [7.0]]
    g = main_server.predict.Predict(predict_req(model, xs), timeout=10)
    r = requests.post(
        f"{main_server.rest}/v1/models/{model}:predict", json={"inputs": {"x": xs}}, timeout=10
    )
    assert r.json()["outputs"] == tf.make_ndarray(g.outputs["y"]).tolist()


def test_rest_b64_binary_input(main_server: Running) -> None:
    """Serialized tf.Examples sent as {"b64": ...} to a DT_STRING input."""
    blobs = []
    for v in (1.0, 2.0, 5.0):
        ex = example_pb2.Example()
        ex.features.feature["x"].float_list.value.append(v)
        blobs.append({"b64": base64.b64encode(ex.SerializeToString()).decode()})
    r = requests.post(
        f"{main_server.rest}/v1/models/half_plus_two:predict",
        json={"signature_name": "classify_x_to_y", "instances": blobs},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": TWO}


def test_grpc_output_filter(main_server: Running) -> None:
    req = predict_req("half_plus_two")
    req.output_filter.append("y")
    resp = main_server.predict.Predict(req, timeout=10)
    assert list(resp.outputs) == ["y"]
    req.output_filter[:] = ["nope"]
    err = grpc_error(lambda: main_server.predict.Predict(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: nope" in err.details()


# ----- classify and regress ------------------------------------------------------------
def test_grpc_regress(main_server: Running) -> None:
    req = regression_pb2.RegressionRequest(input=examples(1.0, 2.0, 5.0))
    req.model_spec.name = "half_plus_two"
    req.model_spec.signature_name = "regress_x_to_y"
    resp = main_server.predict.Regress(req, timeout=10)
    assert [r.value for r in resp.result.regressions] == [2.5, 3.0, 4.5]
    assert resp.model_spec.signature_name == "regress_x_to_y"
    assert resp.model_spec.version.value == 123


def test_grpc_classify(main_server: Running) -> None:
    req = classification_pb2.ClassificationRequest(input=examples(1.0, 2.0, 5.0))
    req.model_spec.name = "half_plus_two"
    req.model_spec.signature_name = "classify_x_to_y"
    resp = main_server.predict.Classify(req, timeout=10)
    got = [[(c.label, c.score) for c in cl.classes] for cl in resp.result.classifications]
    assert got == [[("", 2.5)], [("", 3.0)], [("", 4.5)]]


def test_classify_example_list_with_context(main_server: Running) -> None:
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = "half_plus_two"
    req.model_spec.signature_name = "classify_x_to_y"
    ctx = req.input.example_list_with_context
    ctx.context.features.feature["x"].float_list.value.append(1.0)
    ctx.examples.add()  # takes x from the context
    ctx.examples.add().features.feature["x"].float_list.value.append(5.0)  # its own x wins
    resp = main_server.predict.Classify(req, timeout=10)
    assert [cl.classes[0].score for cl in resp.result.classifications] == [2.5, 4.5]


def test_rest_classify_and_regress(main_server: Running) -> None:
    base = f"{main_server.rest}/v1/models/half_plus_two"
    body = {"examples": [{"x": 1.0}, {"x": 2.0}, {"x": 5.0}]}
    r = requests.post(
        f"{base}:regress", json={"signature_name": "regress_x_to_y", **body}, timeout=10
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"results": [2.5, 3.0, 4.5]}
    c = requests.post(
        f"{base}:classify", json={"signature_name": "classify_x_to_y", **body}, timeout=10
    )
    assert c.json() == {"results": [[["", 2.5]], [["", 3.0]], [["", 4.5]]]}


def test_classify_needs_a_classify_signature(main_server: Running) -> None:
    req = classification_pb2.ClassificationRequest(input=examples(1.0))
    req.model_spec.name = "half_plus_two"  # serving_default is a predict signature
    err = grpc_error(lambda: main_server.predict.Classify(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensorflow/serving/classify" in err.details()


# ----- metadata and status -------------------------------------------------------------
def test_grpc_metadata(main_server: Running) -> None:
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    req.model_spec.name = "half_plus_two"
    resp = main_server.predict.GetModelMetadata(req, timeout=10)
    assert resp.model_spec.version.value == 123
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sig_map)
    assert set(sig_map.signature_def) == {
        "serving_default",
        "classify_x_to_y",
        "regress_x_to_y",
        "regress_x_to_y2",
        "regress_x2_to_y3",
    }
    default = sig_map.signature_def["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert default.inputs["x"].dtype == tf.float32.as_datatype_enum
    req.metadata_field[:] = ["bogus"]
    err = grpc_error(lambda: main_server.predict.GetModelMetadata(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_rest_metadata(main_server: Running) -> None:
    r = requests.get(f"{main_server.rest}/v1/models/half_plus_three/metadata", timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_spec"]["name"] == "half_plus_three"
    assert body["model_spec"]["version"] == "123"
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert sigs["serving_default"]["outputs"]["y"]["dtype"] == "DT_FLOAT"


def test_status_grpc_and_rest(main_server: Running) -> None:
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "half_plus_two"
    resp = main_server.models.GetModelStatus(req, timeout=10)
    assert [(s.version, s.state, s.status.error_code) for s in resp.model_version_status] == [
        (123, 30, 0)
    ]
    r = requests.get(f"{main_server.rest}/v1/models/half_plus_two", timeout=10)
    assert r.json() == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    one = requests.get(f"{main_server.rest}/v1/models/half_plus_two/versions/123", timeout=10)
    assert one.json()["model_version_status"][0]["state"] == "AVAILABLE"


# ----- errors ----------------------------------------------------------------------------
def test_missing_model_version_and_signature(main_server: Running) -> None:
    stub = main_server.predict
    err = grpc_error(lambda: stub.Predict(predict_req("nope"), timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "Servable not found for request: Latest(nope)"

    err = grpc_error(lambda: stub.Predict(predict_req("half_plus_two", version=7), timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "Servable not found for request: Specific(half_plus_two, 7)"

    req = predict_req("half_plus_two", signature_name="nope")
    err = grpc_error(lambda: stub.Predict(req, timeout=10))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == 'Serving signature key "nope" not found.'

    req = predict_req("half_plus_two", version_label="nope")
    err = grpc_error(lambda: stub.Predict(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "Unrecognized servable version label: nope"


def test_missing_and_extra_inputs(main_server: Running) -> None:
    stub = main_server.predict
    err = grpc_error(lambda: stub.Predict(predict_req("half_plus_two", x=None), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Missing but required: {x}" in err.details()
    req = predict_req("half_plus_two")
    req.inputs["z"].CopyFrom(tf.make_tensor_proto(np.array([1.0], dtype=np.float32)))
    err = grpc_error(lambda: stub.Predict(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Sent extra: {z}" in err.details()


def test_wrong_dtype_is_invalid_argument(main_server: Running) -> None:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "half_plus_two"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array(X, dtype=np.float64)))
    err = grpc_error(lambda: main_server.predict.Predict(req, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_status_of_unknown_model_and_version(main_server: Running) -> None:
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "nope"
    err = grpc_error(lambda: main_server.models.GetModelStatus(req, timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    req.model_spec.name = "half_plus_two"
    req.model_spec.version.value = 9
    err = grpc_error(lambda: main_server.models.GetModelStatus(req, timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "text"),
    [
        ("post", "/v1/models/nope:predict", {"instances": [1.0]}, 404, "Latest(nope)"),
        (
            "post",
            "/v1/models/half_plus_two/versions/9:predict",
            {"instances": [1.0]},
            404,
            "Specific(half_plus_two, 9)",
        ),
        (
            "post",
            "/v1/models/half_plus_two:predict",
            {"signature_name": "nope", "instances": [1.0]},
            400,
            'key "nope" not found',
        ),
        (
            "post",
            "/v1/models/half_plus_two:predict",
            {"instances": [1.0], "inputs": [1.0]},
            400,
            "both",
        ),
        ("post", "/v1/models/half_plus_two:predict", {"instances": ["a"]}, 400, "x"),
        ("post", "/v1/models/half_plus_two:explode", {}, 400, "Malformed request"),
        ("get", "/v1/models/nope", None, 404, "nope"),
    ],
)
def test_rest_errors(
    main_server: Running, method: str, path: str, body: object, status: int, text: str
) -> None:
    r = requests.request(method, main_server.rest + path, json=body, timeout=10)
    assert r.status_code == status, r.text
    assert text in r.json()["error"]


def test_rest_rejects_invalid_json(main_server: Running) -> None:
    r = requests.post(
        f"{main_server.rest}/v1/models/half_plus_two:predict", data=b"{not json", timeout=10
    )
    assert r.status_code == 400
    assert "error" in r.json()
