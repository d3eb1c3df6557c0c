"""The stand-in exports only metric families TF Serving itself exports.

Monitoring built against the stand-in must work against the real server: no family may
exist only here (TF Serving has, for example, no metric for a model's availability; the
monitoring role probes the REST model status for that).
"""

from __future__ import annotations

from tfs_standin.metrics import Metrics

# Families of tensorflow_model_server's Prometheus endpoint that the stand-in mirrors, with
# the labels the real server puts on them.
TF_SERVING_FAMILIES = {
    ":tensorflow:serving:request_count": {"model_name", "status"},
    ":tensorflow:serving:request_latency": {"model_name", "API", "entrypoint", "le"},
    ":tensorflow:cc:saved_model:load_attempt_count": {"model_path", "status"},
    ":tensorflow:cc:saved_model:load_latency": {"model_path"},
}


def test_only_tf_serving_families_with_their_labels() -> None:
    metrics = Metrics()
    metrics.record_request("digits", "predict", "GRPC", "OK", 0.01)
    metrics.record_request("digits", "predict", "REST", "INVALID_ARGUMENT", 0.02)
    metrics.record_load("/models/digits/1", True, 1.5)
    metrics.record_load("/models/digits/2", False, 0.5)
    text = metrics.render()
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert families == set(TF_SERVING_FAMILIES)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        family = name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
        if family not in TF_SERVING_FAMILIES:
            family = name
        labels = {pair.split("=")[0] for pair in rest.split("}")[0].split(",") if pair}
        assert labels <= TF_SERVING_FAMILIES[family], line
