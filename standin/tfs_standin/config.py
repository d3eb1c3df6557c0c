"""Reading the server's text-proto config files and checking what they say."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypeVar

from google.protobuf import message, text_format
from tensorflow_serving.config import model_server_config_pb2

from tfs_standin import config_protos as protos
from tfs_standin.flags import Options

M = TypeVar("M", bound=message.Message)

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig

_LABEL = re.compile(r"^[a-zA-Z0-9_]+$")


class ConfigError(Exception):
    """A config problem, reported as one line and a non-zero exit."""


def parse_text_proto(path: str, cls: type[M], what: str) -> M:
    """Parse ``path`` as a text proto of ``cls``; ConfigError names the file on failure."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror or exc}") from exc
    msg = cls()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"invalid {what} file {path}: {detail}") from exc
    return msg


def read_model_config_file(path: str) -> model_server_config_pb2.ModelServerConfig:
    cfg = parse_text_proto(path, ModelServerConfig, "model config")
    validate_model_server_config(cfg, path)
    return cfg


def validate_model_server_config(cfg: model_server_config_pb2.ModelServerConfig, src: str) -> None:
    which = cfg.WhichOneof("config")
    if which == "custom_model_config":
        raise ConfigError(f"{src}: custom_model_config is not supported by the stand-in")
    seen: set[str] = set()
    for mc in cfg.model_config_list.config:
        if not mc.name:
            raise ConfigError(f"{src}: a model config has an empty name")
        if mc.name in seen:
            raise ConfigError(f"{src}: model name {mc.name!r} appears more than once")
        seen.add(mc.name)
        if not mc.base_path:
            raise ConfigError(f"{src}: model {mc.name!r} has an empty base_path")
        if mc.model_platform not in ("", "tensorflow"):
            raise ConfigError(
                f"{src}: model {mc.name!r}: model_platform {mc.model_platform!r} is not "
                'supported (only "tensorflow")'
            )
        for label in mc.version_labels:
            if not _LABEL.match(label):
                raise ConfigError(
                    f"{src}: model {mc.name!r}: version label {label!r} must match [a-zA-Z0-9_]+"
                )
        policy = mc.model_version_policy
        if policy.WhichOneof("policy_choice") == "latest" and policy.latest.num_versions < 0:
            raise ConfigError(f"{src}: model {mc.name!r}: latest.num_versions must be >= 0")


def model_server_config_from_flags(opts: Options) -> model_server_config_pb2.ModelServerConfig:
    """The config the flags ask for: the config file, else one model from name and path."""
    if opts.model_config_file:
        return read_model_config_file(opts.model_config_file)
    if not opts.model_base_path:
        raise ConfigError(
            "both --model_base_path and --model_config_file are empty: give one of them"
        )
    cfg = ModelServerConfig()
    mc = cfg.model_config_list.config.add()
    mc.name = opts.model_name
    mc.base_path = opts.model_base_path
    mc.model_platform = "tensorflow"
    return cfg


def check_flags(opts: Options) -> None:
    """Flag combinations the server refuses."""
    if opts.batching_parameters_file and not opts.enable_batching:
        raise ConfigError("--batching_parameters_file was given without --enable_batching")
    if opts.port == 0 and opts.rest_api_port == 0 and not opts.grpc_socket_path:
        raise ConfigError("--port=0 and --rest_api_port=0: no API would be served")
    if opts.port != 0 and opts.port == opts.rest_api_port:
        raise ConfigError("--port and --rest_api_port cannot be the same")
    if not 0.0 <= opts.per_process_gpu_memory_fraction <= 1.0:
        raise ConfigError("--per_process_gpu_memory_fraction must be within [0, 1]")


def read_monitoring(path: str) -> message.Message | None:
    if not path:
        return None
    return parse_text_proto(path, protos.MonitoringConfig, "monitoring config")


def read_ssl(path: str) -> message.Message | None:
    if not path:
        return None
    cfg = parse_text_proto(path, protos.SSLConfig, "SSL config")
    if not cfg.server_key or not cfg.server_cert:  # type: ignore[attr-defined]
        raise ConfigError(
            f"invalid SSL config file {path}: server_key and server_cert are required"
        )
    return cfg


def read_batching(path: str) -> message.Message | None:
    if not path:
        return None
    return parse_text_proto(path, protos.BatchingParameters, "batching parameters")


def grpc_channel_arguments(text: str) -> list[tuple[str, str | int]]:
    """``--grpc_channel_arguments``: comma-separated key=value; integer values become ints."""
    out: list[tuple[str, str | int]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--grpc_channel_arguments: {item!r} is not key=value")
        try:
            out.append((key, int(value)))
        except ValueError:
            out.append((key, value))
    return out
