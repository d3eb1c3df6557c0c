"""Prometheus metrics in the text exposition format, named like TF Serving's."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
LOAD_ATTEMPTS = ":tensorflow:cc:saved_model:load_attempt_count"
LOAD_LATENCY = ":tensorflow:cc:saved_model:load_latency"

# request latency buckets in microseconds
_BUCKETS: tuple[float, ...] = tuple(float(b * 10**e) for e in range(1, 8) for b in (1, 2.5, 5))

LabelKey = tuple[tuple[str, str], ...]


def _labels(key: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = key + extra
    if not items:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in items)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """Counters and histograms, safe to update from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[LabelKey, float]] = defaultdict(dict)
        self._hist: dict[LabelKey, list[float]] = {}
        self._hist_sum: dict[LabelKey, float] = defaultdict(float)

    def record_request(
        self, model: str, api: str, entrypoint: str, status: str, seconds: float
    ) -> None:
        key: LabelKey = (("model_name", model), ("status", status))
        lat_key: LabelKey = (("model_name", model), ("API", api), ("entrypoint", entrypoint))
        micros = seconds * 1e6
        with self._lock:
            counts = self._counters[REQUEST_COUNT]
            counts[key] = counts.get(key, 0) + 1
            buckets = self._hist.setdefault(lat_key, [0.0] * (len(_BUCKETS) + 1))
            buckets[bisect.bisect_left(_BUCKETS, micros)] += 1
            self._hist_sum[lat_key] += micros

    def record_load(self, model_path: str, ok: bool, seconds: float) -> None:
        key: LabelKey = (("model_path", model_path), ("status", "success" if ok else "fail"))
        with self._lock:
            attempts = self._counters[LOAD_ATTEMPTS]
            attempts[key] = attempts.get(key, 0) + 1
            if ok:
                lat = self._counters[LOAD_LATENCY]
                pkey: LabelKey = (("model_path", model_path),)
                lat[pkey] = lat.get(pkey, 0) + seconds * 1e6

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            helps = {
                REQUEST_COUNT: "The total number of requests.",
                LOAD_ATTEMPTS: "The number of times a SavedModel was attempted to load.",
                LOAD_LATENCY: "Latency in microseconds for SavedModels that loaded.",
            }
            for name in (LOAD_ATTEMPTS, LOAD_LATENCY, REQUEST_COUNT):
                series = self._counters.get(name)
                if not series:
                    continue
                lines.append(f"# HELP {name} {helps[name]}")
                lines.append(f"# TYPE {name} counter")
                for key, value in sorted(series.items()):
                    lines.append(f"{name}{_labels(key)} {_num(value)}")
            if self._hist:
                lines.append(f"# HELP {REQUEST_LATENCY} Request latency in microseconds.")
                lines.append(f"# TYPE {REQUEST_LATENCY} histogram")
                for key, buckets in sorted(self._hist.items()):
                    running = 0.0
                    for bound, count in zip(_BUCKETS, buckets, strict=False):
                        running += count
                        le = (("le", _num(bound)),)
                        lines.append(f"{REQUEST_LATENCY}_bucket{_labels(key, le)} {_num(running)}")
                    running += buckets[-1]
                    inf = (("le", "+Inf"),)
                    lines.append(f"{REQUEST_LATENCY}_bucket{_labels(key, inf)} {_num(running)}")
                    lines.append(f"{REQUEST_LATENCY}_sum{_labels(key)} {_num(self._hist_sum[key])}")
                    lines.append(f"{REQUEST_LATENCY}_count{_labels(key)} {_num(running)}")
        return "\n".join(lines) + "\n"
