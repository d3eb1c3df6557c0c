"""``tensorflow_model_server`` / ``python -m tfs_standin``: parse flags, start, serve."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

from tfs_standin import flags


class _Formatter(logging.Formatter):
    """``2025-01-31 12:00:00.123456: I module.py:42] message``, like TF Serving's log."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        micros = int((record.created % 1) * 1e6)
        head = f"{stamp}.{micros:06d}: {record.levelname[0]} {record.filename}:{record.lineno}]"
        text = f"{head} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("tfs_standin")
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("TFS_STANDIN_LOG_LEVEL", "INFO").upper())
    root.propagate = False


# tensorflow_model_server's exit status when the server cannot start (main returns -1).
EXIT_START_FAILED = 255


def main(argv: list[str] | None = None) -> int:
    opts = flags.parse(sys.argv[1:] if argv is None else argv)
    if opts.version:
        print(flags.version_text())
        return 0
    setup_logging()
    log = logging.getLogger("tfs_standin.cli")
    log.info("Starting %s", flags.version_text())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    # Like tensorflow_model_server, no signal handler: SIGTERM ends the process at once,
    # requests in flight included (nothing drains).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    server = None
    try:
        from tfs_standin.server import ModelsUnavailable, StandinServer, StartupError

        try:
            server = StandinServer(opts)
            server.start()
        except ModelsUnavailable as exc:
            log.error("Failed to start server: %s", exc)
            print(f"Failed to start server. Error: UNKNOWN: {exc}", flush=True)
            return EXIT_START_FAILED
        except StartupError as exc:
            log.error("Failed to start server: %s", exc)
            print(f"tensorflow_model_server (stand-in): error: {exc}", file=sys.stderr)
            return 1
        server.wait()
    except KeyboardInterrupt as exc:
        log.info("Stopping on %s", exc or "interrupt")
    finally:
        if server is not None:
            server.stop()
    return 0
