"""Predict, Classify and Regress on one loaded version, with TF Serving's checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from tfs_standin import errors
from tfs_standin.servable import LoadedVersion

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def signature(lv: LoadedVersion, name: str) -> tuple[str, meta_graph_pb2.SignatureDef]:
    key = name or DEFAULT_SIGNATURE
    sig = lv.signatures.get(key)
    if sig is None:
        raise errors.failed_precondition(f'Serving signature key "{key}" not found.')
    return key, sig


def _set_text(names: Sequence[str]) -> str:
    return "{" + ",".join(sorted(names)) + "}"


def check_inputs(sig: meta_graph_pb2.SignatureDef, sent: Sequence[str]) -> None:
    expected = list(sig.inputs)
    if set(sent) == set(expected):
        return
    extra = [k for k in sent if k not in sig.inputs]
    missing = [k for k in expected if k not in sent]
    raise errors.invalid(
        f"input size does not match signature: {len(sent)}!={len(expected)} "
        f"len({_set_text(sent)}) != len({_set_text(expected)}). "
        f"Sent extra: {_set_text(extra)}. Missing but required: {_set_text(missing)}."
    )


def _tensor_name(info: meta_graph_pb2.TensorInfo, alias: str) -> str:
    if info.WhichOneof("encoding") != "name":
        raise errors.ServingError(
            errors.grpc.StatusCode.UNIMPLEMENTED,
            f"signature tensor {alias} uses a composite encoding the stand-in does not serve",
        )
    return info.name


def predict(
    lv: LoadedVersion,
    signature_name: str,
    inputs: Mapping[str, np.ndarray],
    output_filter: Sequence[str] = (),
    timeout_ms: int = 0,
) -> tuple[str, dict[str, np.ndarray]]:
    """Run a signature on named inputs; returns (signature key, outputs by alias)."""
    key, sig = signature(lv, signature_name)
    check_inputs(sig, list(inputs))
    if output_filter:
        seen: set[str] = set()
        for alias in output_filter:
            if alias not in sig.outputs:
                raise errors.invalid(
                    f"output tensor alias not found in signature: {alias} Outputs expected "
                    f"to be in the set {_set_text(list(sig.outputs))}."
                )
            if alias in seen:
                raise errors.invalid(f"duplicate output tensor alias in output_filter: {alias}")
            seen.add(alias)
        aliases = list(output_filter)
    else:
        aliases = sorted(sig.outputs)
    feeds = {_tensor_name(sig.inputs[a], a): v for a, v in inputs.items()}
    fetches = [_tensor_name(sig.outputs[a], a) for a in aliases]
    values = lv.run(feeds, fetches, timeout_ms)
    return key, dict(zip(aliases, values, strict=True))


def serialized_examples(inp: input_pb2.Input) -> list[bytes]:
    kind = inp.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in inp.example_list.examples]
    elif kind == "example_list_with_context":
        ctx = inp.example_list_with_context.context
        examples = []
        for e in inp.example_list_with_context.examples:
            merged = example_pb2.Example()
            merged.CopyFrom(ctx)
            merged.MergeFrom(e)
            examples.append(merged.SerializeToString())
    else:
        raise errors.invalid("Input is empty.")
    if not examples:
        raise errors.invalid("Input is empty.")
    return examples


def _run_examples(
    lv: LoadedVersion,
    sig: meta_graph_pb2.SignatureDef,
    inp: input_pb2.Input,
    aliases: Sequence[str],
    timeout_ms: int,
) -> tuple[int, list[np.ndarray]]:
    if len(sig.inputs) != 1:
        raise errors.invalid(f"Expected one input Tensor, got {len(sig.inputs)}.")
    ((in_alias, in_info),) = sig.inputs.items()
    examples = serialized_examples(inp)
    batch = np.array(examples, dtype=object)
    fetches = [_tensor_name(sig.outputs[a], a) for a in aliases]
    values = lv.run({_tensor_name(in_info, in_alias): batch}, fetches, timeout_ms)
    return len(examples), values


def _check_method(sig: meta_graph_pb2.SignatureDef, method: str, what: str) -> None:
    if sig.method_name != method:
        raise errors.invalid(
            f"Expected {what} signature method_name to be {method}. Was: {sig.method_name}"
        )


def classify(
    lv: LoadedVersion, signature_name: str, inp: input_pb2.Input, timeout_ms: int = 0
) -> tuple[str, classification_pb2.ClassificationResult]:
    key, sig = signature(lv, signature_name)
    _check_method(sig, CLASSIFY_METHOD, "classification")
    aliases = [a for a in ("classes", "scores") if a in sig.outputs]
    if not aliases:
        raise errors.invalid(
            "Expected classification signature outputs to contain classes or scores"
        )
    n, values = _run_examples(lv, sig, inp, aliases, timeout_ms)
    out = dict(zip(aliases, values, strict=True))
    classes, scores = out.get("classes"), out.get("scores")
    for name, arr in (("classes", classes), ("scores", scores)):
        if arr is not None and (arr.ndim != 2 or arr.shape[0] != n):
            raise errors.invalid(
                f"Expected {name} Tensor of shape [batch_size num_classes] with batch_size {n}, "
                f"got shape {list(arr.shape)}"
            )
    if classes is not None and scores is not None and classes.shape != scores.shape:
        raise errors.invalid(
            f"Tensors class and score should match in shape: {list(classes.shape)} vs "
            f"{list(scores.shape)}"
        )
    result = classification_pb2.ClassificationResult()
    width = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    for i in range(n):
        row = result.classifications.add()
        for j in range(width):
            cls = row.classes.add()
            if classes is not None:
                label = classes[i, j]
                is_bytes = isinstance(label, bytes)
                cls.label = label.decode("utf-8", "replace") if is_bytes else str(label)
            if scores is not None:
                cls.score = float(scores[i, j])
    return key, result


def regress(
    lv: LoadedVersion, signature_name: str, inp: input_pb2.Input, timeout_ms: int = 0
) -> tuple[str, regression_pb2.RegressionResult]:
    key, sig = signature(lv, signature_name)
    _check_method(sig, REGRESS_METHOD, "regression")
    if "outputs" not in sig.outputs:
        raise errors.invalid("No outputs found in regression signature")
    n, (values,) = _run_examples(lv, sig, inp, ["outputs"], timeout_ms)
    if not (values.shape == (n,) or values.shape == (n, 1)):
        raise errors.invalid(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
            f"with batch_size {n}, got {list(values.shape)}"
        )
    result = regression_pb2.RegressionResult()
    for v in values.reshape(n):
        result.regressions.add().value = float(v)
    return key, result
