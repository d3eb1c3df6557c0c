"""Putting it together: config, version manager, gRPC and REST listeners, config reloads."""

from __future__ import annotations

import logging
import threading
import time

import grpc
from google.protobuf import message
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.config import model_server_config_pb2

from tfs_standin import config, errors
from tfs_standin.api import DEFAULT_MAX_BATCH_SIZE, Api
from tfs_standin.flags import Options
from tfs_standin.grpc_server import build_server
from tfs_standin.health import Health
from tfs_standin.manager import Manager, ManagerOptions
from tfs_standin.metrics import Metrics
from tfs_standin.rest_server import RestServer
from tfs_standin.servable import SessionOptions
from tfs_standin.warmup import run_warmup

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The server cannot start; the message is the one-line reason."""


class ModelsUnavailable(StartupError):
    """A configured model did not become available at start-up (ServerCore's error)."""


class StandinServer:
    def __init__(self, opts: Options) -> None:
        try:
            config.check_flags(opts)
            self.model_config = config.model_server_config_from_flags(opts)
            self.monitoring = config.read_monitoring(opts.monitoring_config_file)
            self.ssl = config.read_ssl(opts.ssl_config_file)
            self.batching = config.read_batching(opts.batching_parameters_file)
            self.channel_args = config.grpc_channel_arguments(opts.grpc_channel_arguments)
        except config.ConfigError as exc:
            raise StartupError(str(exc)) from exc
        self.opts = opts
        self.metrics = Metrics()
        tags = tuple(t.strip() for t in opts.saved_model_tags.split(",") if t.strip())
        self.manager = Manager(
            ManagerOptions(
                file_system_poll_wait_seconds=opts.file_system_poll_wait_seconds,
                max_num_load_retries=opts.max_num_load_retries,
                load_retry_interval_seconds=opts.load_retry_interval_micros / 1e6,
                session=SessionOptions(
                    tags=tags or ("serve",),
                    intra_op_threads=opts.tensorflow_intra_op_parallelism,
                    inter_op_threads=opts.tensorflow_inter_op_parallelism,
                    gpu_memory_fraction=opts.per_process_gpu_memory_fraction,
                ),
                allow_labels_for_unavailable=opts.allow_version_labels_for_unavailable_models,
            ),
            warmup=run_warmup if opts.enable_model_warmup else None,
        )
        self.manager.on_load = self.metrics.record_load
        self.api = Api(self.manager, self.metrics, self._reload_rpc, self._max_batch_size())
        self._grpc: grpc.Server | None = None
        self._rest: RestServer | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.grpc_port = 0
        self.rest_port = 0

    def _max_batch_size(self) -> int | None:
        """The batch limit requests are checked against; None when batching is off."""
        if not self.opts.enable_batching:
            return None
        limit = getattr(self.batching, "max_batch_size", None)
        if limit is not None and self.batching.HasField("max_batch_size"):  # type: ignore[union-attr]
            return int(limit.value)
        return DEFAULT_MAX_BATCH_SIZE

    # ----- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float | None = None) -> None:
        """Load the configured models, then open the ports. Raises StartupError."""
        if self.opts.enable_batching:
            log.info(
                "Batching is enabled: the stand-in accepts the batching parameters but runs "
                "each request on its own (no batching)"
            )
        self.manager.start()
        self.manager.set_models(list(self.model_config.model_config_list.config))
        names = self.manager.model_names()
        log.info("Waiting for models to load: %s", ", ".join(names) or "(none)")
        error = self.manager.wait_settled(names, timeout)
        if error:
            self.stop()
            raise ModelsUnavailable(error)
        try:
            self._apply_labels(self.model_config)
        except errors.ServingError as exc:
            self.stop()
            raise StartupError(exc.message) from exc
        try:
            self._open_ports()
        except OSError as exc:
            self.stop()
            raise StartupError(str(exc)) from exc
        if self.opts.model_config_file and self.opts.model_config_file_poll_wait_seconds > 0:
            self._poller = threading.Thread(
                target=self._poll_config, name="config-poll", daemon=True
            )
            self._poller.start()

    def _open_ports(self) -> None:
        host = self.opts.standin_bind_address
        metrics_path = None
        prom = getattr(self.monitoring, "prometheus_config", None)
        if prom is not None and prom.enable:
            metrics_path = prom.path or "/monitoring/prometheus/metrics"
            if not self.opts.rest_api_port:
                log.warning("Prometheus metrics are enabled but --rest_api_port is 0: not served")
        if self.opts.port or self.opts.grpc_socket_path:
            creds = None
            if self.ssl is not None:
                creds = grpc.ssl_server_credentials(
                    [(self.ssl.server_key.encode(), self.ssl.server_cert.encode())],  # type: ignore[attr-defined]
                    root_certificates=self.ssl.custom_ca.encode() or None,  # type: ignore[attr-defined]
                    require_client_auth=bool(self.ssl.client_verify),  # type: ignore[attr-defined]
                )
            addresses = []
            extra = [f"unix:{self.opts.grpc_socket_path}"] if self.opts.grpc_socket_path else []
            if self.opts.port:
                addresses.append(f"{host}:{self.opts.port}")
            main_addr, *rest = addresses + extra
            handlers = []
            if self.opts.enable_grpc_healthcheck_service:
                handlers.append(Health(self._stop).handler())
            self._grpc = build_server(
                self.api, main_addr, creds, self.channel_args, rest, extra_handlers=handlers
            )
            self._grpc.start()
            self.grpc_port = self.opts.port
            if self.opts.port:
                log.info(
                    "Running gRPC ModelServer at %s:%d%s ...",
                    host,
                    self.opts.port,
                    " (TLS)" if creds else "",
                )
        if self.opts.rest_api_port:
            self._rest = RestServer(
                self.api,
                host,
                self.opts.rest_api_port,
                metrics_path,
                self.opts.rest_api_timeout_in_ms,
            )
            self._rest.start()
            self.rest_port = self.opts.rest_api_port
            log.info("Exporting HTTP/REST API at:%s:%d ...", host, self.opts.rest_api_port)
            if metrics_path:
                log.info("Prometheus metrics at %s on the REST port", metrics_path)

    def stop(self) -> None:
        self._stop.set()
        if self._grpc is not None:
            self._grpc.stop(grace=1).wait()
            self._grpc = None
        if self._rest is not None:
            self._rest.stop()
            self._rest = None
        self.manager.stop()

    # ----- config changes ----------------------------------------------------------------
    def _apply_labels(self, cfg: model_server_config_pb2.ModelServerConfig) -> None:
        for mc in cfg.model_config_list.config:
            self.manager.set_labels(mc.name, dict(mc.version_labels))

    def apply_config(
        self, cfg: model_server_config_pb2.ModelServerConfig, timeout: float | None = None
    ) -> None:
        """Make ``cfg`` the model list; raises ServingError if a model or label fails."""
        with self._reload_lock:
            try:
                config.validate_model_server_config(cfg, "new config")
            except config.ConfigError as exc:
                raise errors.invalid(str(exc)) from exc
            touched = self.manager.set_models(list(cfg.model_config_list.config))
            error = self.manager.wait_settled(touched, timeout)
            if error:
                raise errors.ServingError(grpc.StatusCode.UNKNOWN, error)
            self._apply_labels(cfg)
            self.model_config = cfg
            log.info("Config applied: models %s", ", ".join(self.manager.model_names()))

    def _reload_rpc(self, req: model_management_pb2.ReloadConfigRequest) -> None:
        log.info("Received a ReloadConfigRequest")
        self.apply_config(req.config)

    def _poll_config(self) -> None:
        path = self.opts.model_config_file
        wait = self.opts.model_config_file_poll_wait_seconds
        while not self._stop.wait(wait):
            try:
                cfg = config.read_model_config_file(path)
            except config.ConfigError as exc:
                log.error("Config reload skipped: %s", exc)
                continue
            if cfg == self.model_config:
                continue
            log.info("Model config file %s changed: applying it", path)
            try:
                self.apply_config(cfg)
            except errors.ServingError as exc:
                log.error("Config reload from %s failed: %s", path, exc.message)

    def wait(self) -> None:
        while not self._stop.is_set():
            time.sleep(0.5)


def describe(msg: message.Message | None) -> str:
    return "" if msg is None else " ".join(str(msg).split())
