"""Write a SavedModel version that never finishes loading: its warmup request dequeues from
an empty queue, so the server's load blocks (the version stays LOADING) without using CPU.

    python blocking_model.py DIR
"""

from __future__ import annotations

import sys
from pathlib import Path


def write(path: Path) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 1], name="x")
        queue = tf.queue.FIFOQueue(1, tf.float32, shapes=[[]], name="never_filled")
        y = tf.identity(x * 0.5 + 2.0 + queue.dequeue() * 0.0, name="y")
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(path))
            signature = v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": signature}
            )
            builder.save()
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name="half_plus_two", signature_name="serving_default")
    )
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], tf.float32))
    record = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    (path / "assets.extra").mkdir(parents=True)
    with tf.io.TFRecordWriter(str(path / "assets.extra" / "tf_serving_warmup_requests")) as out:
        out.write(record.SerializeToString())
    # The role's scan wants a variables index, which a graph without variables lacks.
    index = path / "variables" / "variables.index"
    if not index.exists():
        index.parent.mkdir(exist_ok=True)
        index.write_bytes(b"")


if __name__ == "__main__":
    write(Path(sys.argv[1]))
