"""Load generator: one channel, one pre-serialized request, N threads calling it."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import grpc
import numpy as np

from .api import PREDICT_METHOD

Call = Callable[[], Any]


@dataclass
class BenchResult:
    concurrency: int
    requests: int
    ok: int
    errors: dict[str, int]
    seconds: float
    latencies_ms: list[float] = field(repr=False, default_factory=list)

    @property
    def qps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        return float(np.percentile(np.asarray(self.latencies_ms), q))

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "ok": self.ok,
            "errors": dict(sorted(self.errors.items())),
            "seconds": round(self.seconds, 4),
            "qps": round(self.qps, 2),
            "latency_ms": {
                name: (round(v, 3) if (v := self.percentile(q)) is not None else None)
                for name, q in (("p50", 50), ("p90", 90), ("p99", 99))
            },
        }


def predict_call(channel: grpc.Channel, request_bytes: bytes, timeout: float | None) -> Call:
    """A Predict call that sends already serialized bytes and skips decoding the answer."""
    method = channel.unary_unary(PREDICT_METHOD)  # no (de)serializers: bytes in, bytes out

    def call() -> Any:
        return method(request_bytes, timeout=timeout)

    return call


class _Work:
    """Hands out permission for the next request until the count or the time is used up."""

    def __init__(self, requests: int | None, deadline: float | None) -> None:
        self._left = requests
        self._deadline = deadline
        self._lock = threading.Lock()
        self.started = 0

    def take(self) -> bool:
        if self._deadline is not None and time.perf_counter() >= self._deadline:
            return False
        with self._lock:
            if self._left is not None:
                if self._left <= 0:
                    return False
                self._left -= 1
            self.started += 1
            return True


def run(
    call: Call,
    concurrency: int,
    duration: float | None = None,
    requests: int | None = None,
    progress: TextIO | None = None,
) -> BenchResult:
    """Run ``call`` from ``concurrency`` threads for ``duration`` seconds or ``requests`` calls."""
    if (duration is None) == (requests is None):
        raise ValueError("give exactly one of duration or requests")
    start = time.perf_counter()
    work = _Work(requests, start + duration if duration is not None else None)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[Counter[str]] = [Counter() for _ in range(concurrency)]

    def worker(index: int) -> None:
        mine, failed = latencies[index], errors[index]
        clock = time.perf_counter
        while work.take():
            t0 = clock()
            try:
                call()
            except grpc.RpcError as err:
                code = err.code() if isinstance(err, grpc.Call) else None
                failed[code.name if code is not None else "UNKNOWN"] += 1
                continue
            mine.append((clock() - t0) * 1000.0)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    if progress is not None:
        _show_progress(threads, work, start, duration, requests, progress)
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    merged = [ms for part in latencies for ms in part]
    error_counts: Counter[str] = sum(errors, Counter())
    return BenchResult(
        concurrency=concurrency,
        requests=work.started,
        ok=len(merged),
        errors=dict(error_counts),
        seconds=seconds,
        latencies_ms=merged,
    )


def _show_progress(
    threads: list[threading.Thread],
    work: _Work,
    start: float,
    duration: float | None,
    requests: int | None,
    out: TextIO,
) -> None:
    width = 30
    while any(t.is_alive() for t in threads):
        elapsed = time.perf_counter() - start
        if duration is not None:
            fraction = min(elapsed / duration, 1.0)
        else:
            fraction = min(work.started / requests, 1.0) if requests else 1.0
        filled = int(fraction * width)
        rate = work.started / elapsed if elapsed > 0 else 0.0
        out.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%} "
            f"{work.started} requests, {rate:.0f}/s "
        )
        out.flush()
        threads[0].join(0.2)
    out.write("\r" + " " * (width + 40) + "\r")
    out.flush()


def format_result(result: BenchResult) -> list[str]:
    s = result.summary()
    lat = s["latency_ms"]
    errors = ", ".join(f"{k} {v}" for k, v in s["errors"].items()) or "none"

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} ms"

    return [
        f"concurrency {result.concurrency}: {result.ok} ok of {result.requests} requests "
        f"in {result.seconds:.2f} s",
        f"throughput  {result.qps:.1f} requests/s",
        f"latency     p50 {ms(lat['p50'])}  p90 {ms(lat['p90'])}  p99 {ms(lat['p99'])}",
        f"errors      {errors}",
    ]


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
