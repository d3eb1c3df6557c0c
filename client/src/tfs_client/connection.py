"""gRPC channel creation: plain or TLS, matching the server's SSLConfig options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from .errors import LocalInputError

# Requests with images and answers with large tensors exceed gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 512 * 1024 * 1024

# gRPC's reconnect backoff grows to two minutes by default; a client that polls a server
# which is still starting should notice it within about a second.
_CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True)
class TlsOptions:
    """TLS settings; the server side counterpart is TF Serving's ``--ssl_config_file``.

    ``ca_file`` verifies the server (the server's ``custom_ca`` when it signs with a private
    CA); ``cert_file``/``key_file`` authenticate the client (needed when the server sets
    ``client_verify: true``); ``server_name_override`` is the name expected in the server
    certificate when it differs from the host name used to connect.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name_override: str | None = None


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise LocalInputError(f"cannot read {what} {path}: {err.strerror or err}") from err


def check_target(target: str) -> str:
    """Validate a ``HOST:PORT`` address."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LocalInputError(f"server address must be HOST:PORT, got {target!r}")
    return target


def create_channel(target: str, tls: TlsOptions | None = None) -> grpc.Channel:
    """Open one channel to ``target``; callers reuse it for all their calls."""
    check_target(target)
    options = list(_CHANNEL_OPTIONS)
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    if (tls.cert_file is None) != (tls.key_file is None):
        raise LocalInputError("a client certificate needs both --cert-file and --key-file")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca_file, "CA file"),
        private_key=_read(tls.key_file, "key file"),
        certificate_chain=_read(tls.cert_file, "certificate file"),
    )
    if tls.server_name_override:
        options.append(("grpc.ssl_target_name_override", tls.server_name_override))
    return grpc.secure_channel(target, credentials, options=options)
