"""TF Serving's REST API (and the Prometheus endpoint) on the standard library HTTP server."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_pb2,
    regression_pb2,
)

from tfs_standin import errors, tensors
from tfs_standin.api import Api

log = logging.getLogger(__name__)

_MODEL = r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>-?\d+)|/labels/(?P<label>[^/:]+))?"
# Case-insensitive, as TF Serving's REST handler matches its paths.
_GET = re.compile(_MODEL + r"(?P<meta>/metadata)?/?$", re.IGNORECASE)
_POST = re.compile(_MODEL + r":(?P<verb>predict|classify|regress)$", re.IGNORECASE)
# The paths TF Serving's REST dispatcher hands to its API handler; it answers every other
# path 404 without a body (inside /v1/, a path it cannot parse is a 400 "Malformed request").
_API = re.compile(r"(?i)/v1/.*")


def _spec(match: re.Match[str]) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=match["name"])
    if match["version"] is not None:
        spec.version.value = int(match["version"])
    elif match["label"] is not None:
        spec.version_label = match["label"]
    return spec


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=None, separators=(", ", ": ")).encode("utf-8")


def _proto_json(msg: Any) -> Any:
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


# ----- predict ---------------------------------------------------------------------------
def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and set(value) != {"b64"}


def _row_inputs(instances: Any, sig: meta_graph_pb2.SignatureDef) -> dict[str, Any]:
    if not isinstance(instances, list) or not instances:
        raise errors.invalid("'instances' must be a non-empty JSON list")
    if _is_named(instances[0]):
        columns: dict[str, list[Any]] = {}
        keys = set(instances[0])
        for inst in instances:
            if not _is_named(inst) or set(inst) != keys:
                raise errors.invalid("every object in 'instances' must have the same named inputs")
            for k, v in inst.items():
                columns.setdefault(k, []).append(v)
        return columns
    if len(sig.inputs) != 1:
        raise errors.invalid(
            f"The signature has {len(sig.inputs)} inputs: each instance must be a JSON object "
            "naming them"
        )
    return {next(iter(sig.inputs)): instances}


def _to_arrays(values: dict[str, Any], sig: meta_graph_pb2.SignatureDef) -> dict[str, Any]:
    out = {}
    for alias, value in values.items():
        info = sig.inputs.get(alias)
        dtype = info.dtype if info is not None else 0
        out[alias] = tensors.json_to_ndarray(value, dtype, alias)
    return out


def _predict_body(api: Api, spec: model_pb2.ModelSpec, body: Any, timeout_ms: int) -> Any:
    if not isinstance(body, dict):
        raise errors.invalid("request body must be a JSON object")
    if "signature_name" in body:
        if not isinstance(body["signature_name"], str):
            raise errors.invalid("'signature_name' must be a string")
        spec.signature_name = body["signature_name"]
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows and has_cols:
        raise errors.invalid("Not allowed to have both 'instances' and 'inputs' in the request")
    if not has_rows and not has_cols:
        raise errors.invalid("Missing 'inputs' or 'instances' key")

    def build(sig: meta_graph_pb2.SignatureDef) -> dict[str, Any]:
        if has_rows:
            return _to_arrays(_row_inputs(body["instances"], sig), sig)
        cols = body["inputs"]
        if not _is_named(cols):
            if len(sig.inputs) != 1:
                raise errors.invalid(
                    f"The signature has {len(sig.inputs)} inputs: 'inputs' must be a JSON "
                    "object naming them"
                )
            cols = {next(iter(sig.inputs)): cols}
        return _to_arrays(cols, sig)

    _, _, outputs = api.predict_arrays(spec, build, [], "REST", timeout_ms)
    if has_cols:
        if len(outputs) == 1:
            ((alias, arr),) = outputs.items()
            return {"outputs": tensors.ndarray_to_json(arr, alias)}
        return {"outputs": {a: tensors.ndarray_to_json(v, a) for a, v in outputs.items()}}
    sizes = {v.shape[0] if v.ndim else None for v in outputs.values()}
    if len(sizes) != 1 or None in sizes:
        raise errors.invalid(
            "Tensors in the output do not share a batch dimension; use the columnar "
            "'inputs' format for this signature"
        )
    if len(outputs) == 1:
        ((alias, arr),) = outputs.items()
        return {"predictions": tensors.ndarray_to_json(arr, alias)}
    as_json = {a: tensors.ndarray_to_json(v, a) for a, v in outputs.items()}
    (n,) = sizes
    return {"predictions": [{a: as_json[a][i] for a in as_json} for i in range(n)]}


# ----- classify / regress ----------------------------------------------------------------
def _feature(name: str, value: Any) -> feature_pb2.Feature:
    values = value if isinstance(value, list) else [value]
    feat = feature_pb2.Feature()
    if not values:
        feat.float_list.SetInParent()
        return feat
    if all(isinstance(v, str) or (isinstance(v, dict) and "b64" in v) for v in values):
        for v in values:
            feat.bytes_list.value.append(tensors.json_to_ndarray(v, 7, name).item())
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        feat.int64_list.value.extend(values)
    elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        feat.float_list.value.extend(float(v) for v in values)
    else:
        raise errors.invalid(f"feature {name}: values must be all numbers or all strings")
    return feat


def _example(obj: Any) -> example_pb2.Example:
    if not isinstance(obj, dict):
        raise errors.invalid("each example must be a JSON object of features")
    ex = example_pb2.Example()
    for name, value in obj.items():
        ex.features.feature[name].CopyFrom(_feature(name, value))
    return ex


def _input_from_body(body: Any) -> input_pb2.Input:
    if not isinstance(body, dict):
        raise errors.invalid("request body must be a JSON object")
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise errors.invalid("'examples' must be a non-empty JSON list")
    inp = input_pb2.Input()
    if "context" in body:
        lst = inp.example_list_with_context
        lst.context.CopyFrom(_example(body["context"]))
    else:
        lst = inp.example_list  # type: ignore[assignment]
    for e in examples:
        lst.examples.add().CopyFrom(_example(e))
    return inp


def _classify_body(api: Api, spec: model_pb2.ModelSpec, body: Any, timeout_ms: int) -> Any:
    req = classification_pb2.ClassificationRequest(model_spec=spec, input=_input_from_body(body))
    if isinstance(body.get("signature_name"), str):
        req.model_spec.signature_name = body["signature_name"]
    resp = api.classify(req, "REST", timeout_ms)
    return {
        "results": [[[c.label, c.score] for c in cl.classes] for cl in resp.result.classifications]
    }


def _regress_body(api: Api, spec: model_pb2.ModelSpec, body: Any, timeout_ms: int) -> Any:
    req = regression_pb2.RegressionRequest(model_spec=spec, input=_input_from_body(body))
    if isinstance(body.get("signature_name"), str):
        req.model_spec.signature_name = body["signature_name"]
    resp = api.regress(req, "REST", timeout_ms)
    return {"results": [r.value for r in resp.result.regressions]}


_VERBS = {"predict": _predict_body, "classify": _classify_body, "regress": _regress_body}


# ----- the HTTP server ---------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server_version = "tfs_standin"
    protocol_version = "HTTP/1.1"
    api: Api
    metrics_path: str | None
    timeout_ms: int

    # one buffered write per response (flushed by the base class), and no Nagle delay
    wbufsize = 1 << 16

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("REST %s", format % args)

    def _send(self, status: int, payload: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, exc: errors.ServingError) -> None:
        self._send(exc.http_status, _dumps({"error": exc.message}))

    def _malformed(self) -> None:
        self._error(errors.invalid(f"Malformed request: {self.command} {self.path}"))

    def _not_api(self, path: str) -> bool:
        """Answer 404 (no body) for a path outside the API; True when it did."""
        if _API.fullmatch(path):
            return False
        self._send(404, b"", "text/plain")
        return True

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if self.metrics_path and path == self.metrics_path:
            body = self.api.metrics.render().encode("utf-8")
            self._send(200, body, "text/plain; version=0.0.4; charset=utf-8")
            return
        if self._not_api(path):
            return
        match = _GET.match(path)
        if match is None:
            self._malformed()
            return
        try:
            spec = _spec(match)
            if match["meta"]:
                req = get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec=spec, metadata_field=["signature_def"]
                )
                resp = self.api.metadata(req, "REST")
                sig_map = get_model_metadata_pb2.SignatureDefMap()
                resp.metadata["signature_def"].Unpack(sig_map)
                out = {
                    "model_spec": _proto_json(resp.model_spec),
                    "metadata": {"signature_def": _proto_json(sig_map)},
                }
            else:
                status_req = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
                out = _proto_json(self.api.status(status_req, "REST"))
        except errors.ServingError as exc:
            self._error(exc)
            return
        self._send(200, json.dumps(out, indent=1).encode("utf-8"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if self._not_api(path):
            return
        match = _POST.match(path)
        if match is None:
            self._malformed()
            return
        try:
            try:
                body = json.loads(raw or b"null")
            except (ValueError, UnicodeDecodeError) as exc:
                raise errors.invalid(f"JSON Parse error: {exc}") from exc
            out = _VERBS[match["verb"].lower()](self.api, _spec(match), body, self.timeout_ms)
        except errors.ServingError as exc:
            self._error(exc)
            return
        except Exception as exc:
            log.exception("REST request failed")
            self._send(500, _dumps({"error": f"{type(exc).__name__}: {exc}"}))
            return
        self._send(200, _dumps(out))


class RestServer:
    def __init__(self, api: Api, host: str, port: int, metrics_path: str | None, timeout_ms: int):
        handler = type(
            "Handler",
            (_Handler,),
            {"api": api, "metrics_path": metrics_path, "timeout_ms": timeout_ms},
        )
        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="rest", kwargs={"poll_interval": 0.2}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
