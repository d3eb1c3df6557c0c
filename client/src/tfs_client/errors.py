"""Errors of the client and their one-line explanations."""

from __future__ import annotations

import grpc

# Process exit codes of the command line tool.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_INVALID_ARGUMENT = 5
EXIT_DEADLINE = 6
EXIT_MISMATCH = 7  # predict: the answer differs from the expected one
EXIT_LOAD_FAILED = 8  # wait: an expected version failed to load
EXIT_NOT_READY = 9  # wait: the server answered, but not every version was AVAILABLE in time
EXIT_NO_CANARY = 10  # canary-status: no canary window is open (no running file)

_MAX_DETAIL = 300

_EXIT_BY_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_INVALID_ARGUMENT,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_DEADLINE,
}


class TfsClientError(Exception):
    """Any failure the client reports; ``str()`` is a single line."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(one_line(message))
        if exit_code is not None:
            self.exit_code = exit_code


class LocalInputError(TfsClientError):
    """Bad input found before anything was sent (missing file, bad JSON, unknown name)."""

    exit_code = EXIT_USAGE


class RpcError(TfsClientError):
    """A call to the server failed."""

    def __init__(self, code: grpc.StatusCode, details: str, target: str, timeout: float | None):
        self.code = code
        self.details = one_line(details)
        self.target = target
        super().__init__(
            explain(code, self.details, target, timeout), _EXIT_BY_CODE.get(code, EXIT_FAILURE)
        )


def one_line(text: str) -> str:
    """Collapse whitespace and shorten ``text`` so it fits on one line."""
    flat = " ".join(text.split())
    if len(flat) > _MAX_DETAIL:
        flat = flat[: _MAX_DETAIL - 3] + "..."
    return flat


def explain(code: grpc.StatusCode, details: str, target: str, timeout: float | None) -> str:
    """Return a one-line reason for a failed call."""
    suffix = f": {details}" if details else ""
    if code is grpc.StatusCode.UNAVAILABLE:
        return f"server {target} unavailable (UNAVAILABLE){suffix}"
    if code is grpc.StatusCode.NOT_FOUND:
        return f"model, version, label or signature not found (NOT_FOUND){suffix}"
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return f"server rejected the request (INVALID_ARGUMENT){suffix}"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        limit = f"within {timeout:g} s " if timeout is not None else ""
        return f"no answer from {target} {limit}(DEADLINE_EXCEEDED)"
    return f"call to {target} failed ({code.name}){suffix}"


def from_grpc(err: grpc.RpcError, target: str, timeout: float | None) -> RpcError:
    """Wrap an exception raised by a grpc call."""
    code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (err.details() if isinstance(err, grpc.Call) else None) or str(err)
    return RpcError(code, details, target, timeout)
