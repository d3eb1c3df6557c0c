"""One loaded SavedModel version: a Graph and a Session kept for the version's lifetime.

Loading follows TF Serving: ``tf.compat.v1.saved_model.loader.load`` into a fresh Graph
and Session with the configured tags, then each request feeds and fetches the tensor
names of a SignatureDef. Because the Session lives as long as the version, stateful
models keep their state across requests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.python.client import pywrap_tf_session as tf_session

from tfs_standin import errors

log = logging.getLogger(__name__)

try:  # the v1 loader prints a deprecation notice on first use; it is the point here
    from tensorflow.python.util import deprecation

    deprecation._PRINT_DEPRECATION_WARNINGS = False
except ImportError:  # pragma: no cover - depends on TensorFlow internals
    pass


@dataclass(frozen=True)
class SessionOptions:
    tags: tuple[str, ...] = ("serve",)
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    gpu_memory_fraction: float = 0.0


class LoadedVersion:
    """A servable version ready to run; counts requests in flight so unload can wait."""

    def __init__(self, name: str, version: int, path: str, options: SessionOptions) -> None:
        self.name = name
        self.version = version
        self.path = path
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=options.intra_op_threads,
            inter_op_parallelism_threads=options.inter_op_threads,
            allow_soft_placement=True,
        )
        if options.gpu_memory_fraction > 0:
            config.gpu_options.per_process_gpu_memory_fraction = options.gpu_memory_fraction
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        try:
            with self.graph.as_default():
                self.meta_graph: meta_graph_pb2.MetaGraphDef = tf.compat.v1.saved_model.loader.load(
                    self.session, list(options.tags), path
                )
            self.session._extend_graph()
        except BaseException:
            self.session.close()
            raise
        self.signatures: Mapping[str, meta_graph_pb2.SignatureDef] = dict(
            self.meta_graph.signature_def
        )
        self._outputs: dict[str, object] = {}
        self._lock = threading.Condition()
        self._inflight = 0
        self._closed = False

    def _tf_output(self, tensor_name: str) -> object:
        out = self._outputs.get(tensor_name)
        if out is None:
            try:
                tensor = self.graph.get_tensor_by_name(tensor_name)
            except (KeyError, ValueError) as exc:
                raise errors.ServingError(
                    errors.grpc.StatusCode.INTERNAL,
                    f"signature tensor {tensor_name} is not in the graph: {exc}",
                ) from exc
            out = tensor._as_tf_output()
            self._outputs[tensor_name] = out
        return out

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        fetches: Sequence[str],
        timeout_ms: int = 0,
    ) -> list[np.ndarray]:
        """Run the session: ``feeds`` and ``fetches`` are graph tensor names.

        Shapes are not checked against the placeholders here, as in the C++ server.
        """
        feed = {self._tf_output(name): value for name, value in feeds.items()}
        fetch = [self._tf_output(name) for name in fetches]
        options = None
        if timeout_ms > 0:
            run_options = tf.compat.v1.RunOptions(timeout_in_ms=timeout_ms)
            options = tf_session.TF_NewBufferFromString(run_options.SerializeToString())
        try:
            return list(self.session._call_tf_sessionrun(options, feed, fetch, [], None))
        except tf.errors.OpError as exc:
            raise errors.ServingError(errors.code_from_number(exc.error_code), exc.message) from exc
        finally:
            if options is not None:
                tf_session.TF_DeleteBuffer(options)

    @contextmanager
    def in_use(self) -> Iterator[LoadedVersion]:
        with self._lock:
            if self._closed:
                raise errors.not_found(
                    f"Servable not found for request: Specific({self.name}, {self.version})"
                )
            self._inflight += 1
        try:
            yield self
        finally:
            with self._lock:
                self._inflight -= 1
                self._lock.notify_all()

    def close(self) -> None:
        """Refuse new requests, wait for those in flight, then free the Session."""
        with self._lock:
            self._closed = True
            while self._inflight:
                self._lock.wait()
        self.session.close()
