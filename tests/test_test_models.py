"""The test models scripts/make_test_models.py generates: layout, signatures, known answers.

The suites (tests/, standin/tests, the molecule scenarios) rely on these exports being like
TF Serving's own test data: signature names and methods, input and output keys, the graph
tensor names behind them, the asset, and y = 0.5 x + 2 / 0.5 x + 3. Models run the way TF
Serving runs them: ``tf.compat.v1.saved_model.loader.load`` into a Session, then the
SignatureDef's tensor names. query_of_death (the fleet's retry test) answers x + 1, and an
input holding 666 ends the process that runs it with SIGABRT. half_plus_two_strict and
half_plus_two_slow (the canary tests' bad versions) are half_plus_two to a server and to the
smoke prediction; strict refuses |x| >= 100 with INVALID_ARGUMENT, slow answers many times
slower.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import tensorflow as tf
from plugin_files import load_plugin
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

REPO = Path(__file__).resolve().parents[1]
check_mod = load_plugin("modules", "tfserving_config_check")

TWO, THREE = "saved_model_half_plus_two_cpu", "saved_model_half_plus_three"
DEATH = "saved_model_query_of_death"
STRICT, SLOW = "saved_model_half_plus_two_strict", "saved_model_half_plus_two_slow"
HALF_PLUS_TWO_VERSIONS = [TWO, STRICT, SLOW]
VERSION = "00000123"
PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
X = [1.0, 2.0, 5.0]
PLUS_TWO = [[2.5], [3.0], [4.5]]
PLUS_THREE = [[3.5], [4.0], [5.5]]
PLUS_ONE = [[2.0], [3.0], [6.0]]

# signature -> (method, {input key: tensor name}, {output key: tensor name})
SIGNATURES: dict[str, dict[str, tuple[str, dict[str, str], dict[str, str]]]] = {
    TWO: {
        "serving_default": (PREDICT, {"x": "x:0"}, {"y": "y:0"}),
        "classify_x_to_y": (CLASSIFY, {"inputs": "tf_example:0"}, {"scores": "y:0"}),
        "regress_x_to_y": (REGRESS, {"inputs": "tf_example:0"}, {"outputs": "y:0"}),
        "regress_x_to_y2": (REGRESS, {"inputs": "tf_example:0"}, {"outputs": "y2:0"}),
        "regress_x2_to_y3": (REGRESS, {"inputs": "x2:0"}, {"outputs": "y3:0"}),
    },
    THREE: {
        "serving_default": (PREDICT, {"x": "x:0"}, {"y": "y:0"}),
        REGRESS: (REGRESS, {"inputs": "tf_example:0"}, {"outputs": "Identity:0"}),
    },
    DEATH: {
        "serving_default": (PREDICT, {"x": "x:0"}, {"y": "y:0"}),
    },
}
# The bad versions are versions of half_plus_two: the same signatures and tensor names.
SIGNATURES[STRICT] = SIGNATURES[SLOW] = SIGNATURES[TWO]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_test_models", REPO / "scripts" / "make_test_models.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def meta_graph(export: Path) -> meta_graph_pb2.MetaGraphDef:
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((export / "saved_model.pb").read_bytes())
    assert len(saved.meta_graphs) == 1
    return saved.meta_graphs[0]


def run_signature(export: Path, signature: str, key: str, value: np.ndarray) -> dict:
    """Load as TF Serving does and run one signature: its outputs by key."""
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], str(export))
        sig = meta.signature_def[signature]
        fetch = {k: info.name for k, info in sig.outputs.items()}
        return sess.run(fetch, feed_dict={sig.inputs[key].name: value})


def examples(feature: str = "x", values: list[float] = X) -> np.ndarray:
    """Serialized tf.Example protos, one float feature each."""
    protos = [
        tf.train.Example(
            features=tf.train.Features(
                feature={feature: tf.train.Feature(float_list=tf.train.FloatList(value=[v]))}
            )
        ).SerializeToString()
        for v in values
    ]
    return np.array(protos, dtype=object)


def column(values: list[float] = X) -> np.ndarray:
    return np.array([[v] for v in values], dtype=np.float32)


# ----- layout ------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [*HALF_PLUS_TWO_VERSIONS, THREE])
def test_one_version_dir_with_graph_variables_and_asset(testdata: Path, model: str) -> None:
    assert [p.name for p in (testdata / model).iterdir()] == [VERSION]
    export = testdata / model / VERSION
    assert (export / "saved_model.pb").is_file()
    assert (export / "variables" / "variables.index").is_file()
    assert list((export / "variables").glob("variables.data-*-of-*"))
    assert (export / "assets" / "foo.txt").read_text() == "asset-file-contents"


@pytest.mark.parametrize("model", [*HALF_PLUS_TWO_VERSIONS, THREE, DEATH])
def test_signatures_match_tf_servings_test_models(testdata: Path, model: str) -> None:
    meta = meta_graph(testdata / model / VERSION)
    assert list(meta.meta_info_def.tags) == ["serve"]
    assert set(meta.signature_def) == set(SIGNATURES[model])
    for name, (method, inputs, outputs) in SIGNATURES[model].items():
        sig = meta.signature_def[name]
        assert sig.method_name == method, name
        assert {k: v.name for k, v in sig.inputs.items()} == inputs, name
        assert {k: v.name for k, v in sig.outputs.items()} == outputs, name
    assert meta.signature_def["serving_default"].inputs["x"].dtype == tf.float32.as_datatype_enum


@pytest.mark.parametrize("model", HALF_PLUS_TWO_VERSIONS)
def test_half_plus_two_shapes_and_dtypes(testdata: Path, model: str) -> None:
    sigs = meta_graph(testdata / model / VERSION).signature_def
    x = sigs["serving_default"].inputs["x"]
    assert [d.size for d in x.tensor_shape.dim] == [-1, 1]
    example_input = sigs["classify_x_to_y"].inputs["inputs"]
    assert example_input.dtype == tf.string.as_datatype_enum
    assert example_input.tensor_shape.unknown_rank


@pytest.mark.parametrize("model", [*HALF_PLUS_TWO_VERSIONS, THREE])
def test_asset_is_registered(testdata: Path, model: str) -> None:
    meta = meta_graph(testdata / model / VERSION)
    [asset] = meta.collection_def["saved_model_assets"].any_list.value
    asset_def = meta_graph_pb2.AssetFileDef()
    assert asset.Unpack(asset_def)
    assert asset_def.filename == "foo.txt"
    paths = meta.collection_def["asset_filepaths"].node_list.value
    assert list(paths) == [asset_def.tensor_info.name]


# ----- known answers -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "want"),
    [(TWO, PLUS_TWO), (STRICT, PLUS_TWO), (SLOW, PLUS_TWO), (THREE, PLUS_THREE), (DEATH, PLUS_ONE)],
)
def test_predict_known_answers(testdata: Path, model: str, want: list) -> None:
    out = run_signature(testdata / model / VERSION, "serving_default", "x", column())
    assert out["y"].tolist() == want


@pytest.mark.parametrize(
    ("signature", "output", "want"),
    [
        ("classify_x_to_y", "scores", PLUS_TWO),
        ("regress_x_to_y", "outputs", PLUS_TWO),
        ("regress_x_to_y2", "outputs", PLUS_THREE),
    ],
)
@pytest.mark.parametrize("model", HALF_PLUS_TWO_VERSIONS)
def test_half_plus_two_from_tf_examples(
    testdata: Path, model: str, signature: str, output: str, want: list
) -> None:
    out = run_signature(testdata / model / VERSION, signature, "inputs", examples())
    assert out[output].tolist() == want


@pytest.mark.parametrize("model", HALF_PLUS_TWO_VERSIONS)
def test_half_plus_two_x2_to_y3(testdata: Path, model: str) -> None:
    out = run_signature(testdata / model / VERSION, "regress_x2_to_y3", "inputs", column())
    assert out["outputs"].tolist() == PLUS_THREE


def test_the_smoke_sample_is_what_the_bad_versions_answer_right(testdata: Path) -> None:
    """The fleet's smoke prediction for half_plus_two passes on both bad versions."""
    sample = json.loads((REPO / "files" / "samples" / "half_plus_two.json").read_text())
    x = np.array(sample["x"], np.float32)
    for model in (STRICT, SLOW):
        out = run_signature(testdata / model / VERSION, "serving_default", "x", x)
        assert out["y"].tolist() == (0.5 * x + 2).tolist(), model


def test_half_plus_three_regress_from_tf_examples(testdata: Path) -> None:
    out = run_signature(testdata / THREE / VERSION, REGRESS, "inputs", examples())
    assert out["outputs"].tolist() == PLUS_THREE


def test_half_plus_three_swapped_into_half_plus_two_answers_plus_three(
    testdata: Path, tmp_path: Path
) -> None:
    """What the rollback and fidelity tests do: half_plus_three's graph and variables copied
    over a half_plus_two version directory load there and answer + 3."""
    version = tmp_path / "half_plus_two" / "2"
    shutil.copytree(testdata / TWO / VERSION, version)
    shutil.copyfile(testdata / THREE / VERSION / "saved_model.pb", version / "saved_model.pb")
    shutil.rmtree(version / "variables")
    shutil.copytree(testdata / THREE / VERSION / "variables", version / "variables")
    out = run_signature(version, "serving_default", "x", column())
    assert out["y"].tolist() == PLUS_THREE


# ----- query_of_death ----------------------------------------------------------------------
def test_query_of_death_layout_and_near_misses(testdata: Path) -> None:
    assert [p.name for p in (testdata / DEATH).iterdir()] == [VERSION]
    export = testdata / DEATH / VERSION
    x = meta_graph(export).signature_def["serving_default"].inputs["x"]
    assert [d.size for d in x.tensor_shape.dim] == [-1, 1]
    out = run_signature(export, "serving_default", "x", column([665.0, 667.0, -666.0]))
    assert out["y"].tolist() == [[666.0], [668.0], [-665.0]]


def test_query_of_death_abort_survives_pruning_to_the_output(testdata: Path) -> None:
    """The Abort op is in what fetching y runs: a control dependency keeps it there."""
    graph = meta_graph(testdata / DEATH / VERSION).graph_def
    kept = tf.compat.v1.graph_util.extract_sub_graph(graph, ["y"])
    assert [n.name for n in kept.node if n.op == "Abort"] == ["query_of_death/abort"]


def test_query_of_death_aborts_the_process_on_666(testdata: Path) -> None:
    """Loaded as TF Serving loads it, in a process of its own: an ordinary input answers,
    then a batch holding 666 ends the process with SIGABRT before any answer."""
    code = textwrap.dedent(
        """
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        import numpy as np
        import tensorflow as tf
        with tf.compat.v1.Session(graph=tf.Graph()) as sess:
            tf.compat.v1.saved_model.loader.load(sess, ["serve"], sys.argv[1])
            y = sess.run("y:0", {"x:0": np.array([[1.0]], np.float32)})
            print("ordinary", y.tolist(), flush=True)
            y = sess.run("y:0", {"x:0": np.array([[1.0], [666.0]], np.float32)})
            print("survived", y.tolist(), flush=True)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(testdata / DEATH / VERSION)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.stdout.splitlines() == ["ordinary [[2.0]]"], run.stdout + run.stderr[-2000:]
    assert run.returncode == -signal.SIGABRT, run.stderr[-2000:]
    assert "Abort_op intentional failure; query_of_death: x == 666" in run.stderr


# ----- half_plus_two_strict ---------------------------------------------------------------
def test_strict_answers_inside_its_range(testdata: Path) -> None:
    out = run_signature(
        testdata / STRICT / VERSION, "serving_default", "x", column([-99.5, 0.0, 99.5])
    )
    assert out["y"].tolist() == [[-47.75], [2.0], [51.75]]


@pytest.mark.parametrize("outside", [100.0, -100.0, 150.0, 1e6])
def test_strict_refuses_a_batch_with_one_input_out_of_range(testdata: Path, outside: float) -> None:
    with pytest.raises(tf.errors.InvalidArgumentError, match="half_plus_two_strict: x must lie"):
        run_signature(testdata / STRICT / VERSION, "serving_default", "x", column([1.0, outside]))


@pytest.mark.parametrize(
    ("signature", "key", "value", "name"),
    [
        ("regress_x_to_y", "inputs", examples(values=[2.0, 250.0]), "x"),
        ("classify_x_to_y", "inputs", examples(values=[-300.0]), "x"),
        ("regress_x2_to_y3", "inputs", column([500.0]), "x2"),
    ],
)
def test_strict_refuses_out_of_range_through_every_signature(
    testdata: Path, signature: str, key: str, value: np.ndarray, name: str
) -> None:
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"half_plus_two_strict: {name} must"):
        run_signature(testdata / STRICT / VERSION, signature, key, value)


# ----- half_plus_two_slow ------------------------------------------------------------------
def median_predict_seconds(export: Path, calls: int) -> float:
    """Median wall time of the predict signature over CALLS runs in one loaded Session (one
    intra-op thread, as on a busy node), after one warm-up run."""
    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=1, inter_op_parallelism_threads=1
    )
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph, config=config) as s:
        meta = tf.compat.v1.saved_model.loader.load(s, ["serve"], str(export))
        sig = meta.signature_def["serving_default"]
        feed = {sig.inputs["x"].name: column()}
        fetch = sig.outputs["y"].name
        assert s.run(fetch, feed).tolist() == PLUS_TWO
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            s.run(fetch, feed)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_slow_is_at_least_five_times_slower_than_half_plus_two(testdata: Path) -> None:
    fast = median_predict_seconds(testdata / TWO / VERSION, 15)
    slow = median_predict_seconds(testdata / SLOW / VERSION, 7)
    assert slow >= 5 * fast, f"slow {slow * 1e3:.2f} ms, half_plus_two {fast * 1e3:.2f} ms"
    # Real work, not a token delay: the fleet's p99 check needs milliseconds.
    assert slow >= 0.005, f"slow {slow * 1e3:.2f} ms"


def test_slow_matrix_products_are_in_what_fetching_y_runs(testdata: Path) -> None:
    """The loop of products is on the path to y (a data edge: x times the product's [0, 0]),
    not a side branch that pruning drops; it is TF1 control flow, with no function library."""
    meta = meta_graph(testdata / SLOW / VERSION)
    assert not meta.graph_def.library.function
    kept = tf.compat.v1.graph_util.extract_sub_graph(meta.graph_def, ["y"])
    ops = [n.op for n in kept.node]
    assert ops.count("MatMul") == 1
    assert {"Enter", "Merge", "Switch", "LoopCond", "NextIteration", "Exit"} <= set(ops)
    [steps] = [n for n in kept.node if n.name == "slow/products/steps"]
    assert tf.make_ndarray(steps.attr["value"].tensor) == 160


# ----- config files ------------------------------------------------------------------------
# Each file parses (and the bad one is refused): tests/test_tfserving_modules.py.
def test_good_config_names_both_models_with_placeholder_paths(testdata: Path) -> None:
    parsed = check_mod.parse("model_server", (testdata / "good_model_config.txt").read_text())
    assert [(c.name, c.base_path, c.model_platform) for c in parsed.model_config_list.config] == [
        ("half_plus_two", "${TEST_HALF_PLUS_TWO_DIR}", "tensorflow"),
        ("half_plus_three", "${TEST_HALF_PLUS_THREE_DIR}", "tensorflow"),
    ]


def test_monitoring_and_batching_values(testdata: Path) -> None:
    mon = check_mod.parse("monitoring", (testdata / "monitoring_config.txt").read_text())
    assert mon.prometheus_config.enable
    assert mon.prometheus_config.path == "/monitoring/prometheus/metrics"
    batching = check_mod.parse("batching", (testdata / "batching_config.txt").read_text())
    assert batching.max_batch_size.value == 128
    assert batching.num_batch_threads.value == 8


# ----- the generator -----------------------------------------------------------------------
def test_generated_set_is_current(testdata: Path) -> None:
    """The stamp holds the hash of the script that wrote the set: make testdata rebuilds."""
    script = REPO / "scripts" / "make_test_models.py"
    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    stamp = (testdata / ".stamp").read_text().splitlines()
    assert stamp[0] == f"script-sha256 {digest}", "stale: run `make testdata`"
    assert stamp[1] == f"tensorflow {tf.__version__}", "stale: run `make testdata`"
    assert "make_test_models.py" in (testdata / "README.md").read_text()


def test_script_builds_the_same_bytes_anywhere_and_caches(testdata: Path, tmp_path: Path) -> None:
    script = load_script()
    out = tmp_path / "tfserving"
    assert script.main(["--output-dir", str(out)]) == 0
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(testdata) for p in testdata.rglob("*") if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (testdata / rel).read_bytes(), rel
    assert [p.name for p in tmp_path.iterdir()] == ["tfserving"], "no staging left behind"
    # Up to date: a second run writes nothing.
    pb = out / TWO / VERSION / "saved_model.pb"
    before = pb.stat().st_mtime_ns
    assert script.main(["--output-dir", str(out)]) == 0
    assert pb.stat().st_mtime_ns == before
