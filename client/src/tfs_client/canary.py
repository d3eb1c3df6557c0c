"""``tfs-client canary-status``: the canary that is running now, and how it does so far.

While a canary window is open, the canary play keeps a file on the controller,
``<tfserving_canary_report_dir>/running.json``, and removes it when the verdict is made::

    {"canary": ["fleet-node1"], "baseline": ["fleet-node2", "fleet-node3"],
     "share": 25, "weight": 67, "started": 1765090000.5, "duration": 20,
     "metrics": "prometheus", "thresholds": {"min_requests": 50, "max_error_ratio": 0.01,
     "max_error_ratio_vs_baseline": 2.0, "max_p99_ratio": 3.0}}

``share`` is the percentage of new requests the load balancers send to the canary nodes,
``weight`` their HAProxy server weight, ``started`` the window's start (epoch seconds),
``duration`` its length in seconds and ``metrics`` where the play reads the window's
numbers (``prometheus`` or ``direct``). From the file come the share and the time left;
from the fleet's Prometheus (job ``tfserving``, one target per node labelled ``node``) the
canary's and the baseline's numbers since the window started, per model: requests, error
ratio (requests with a status other than OK over all requests) and p50 and p99 latency.
The thresholds the canary breaks so far are shown for information: the verdict is the
play's, at the end of the window (it also counts the load balancers' transport failures,
which TF Serving's counters do not see).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EXIT_NO_CANARY, EXIT_OK, LocalInputError, TfsClientError
from .fleet import REQUEST_COUNT

LATENCY_BUCKET = ":tensorflow:serving:request_latency_bucket"  # microseconds
# The latency histogram's API label of the calls that run a model (TF Serving "Predict",
# the stand-in "predict"), as a PromQL regex.
INFERENCE_API = "(?i)predict|classify|regress|multi_?inference"
RUNNING_FILE = "running.json"
DEFAULT_REPORT_DIR = "~/.local/state/tfserving-fleet/canary"  # tfserving_canary_report_dir
THRESHOLD_NAMES = (
    "min_requests",
    "max_error_ratio",
    "max_error_ratio_vs_baseline",
    "max_p99_ratio",
)

# PromQL expression -> [(labels, value)] of an instant vector (fleet.Prometheus.query).
Query = Callable[[str], list[tuple[dict[str, str], float]]]


clock: Callable[[], float] = time.time  # now, in epoch seconds (tests replace it)


def default_file() -> Path:
    return Path(DEFAULT_REPORT_DIR).expanduser() / RUNNING_FILE


@dataclass
class Running:
    """The content of ``running.json``."""

    canary: list[str]
    baseline: list[str]
    share: float  # percent of new requests to the canary nodes
    weight: int | None  # the canary nodes' HAProxy weight
    started: float  # epoch seconds
    duration: float  # seconds
    metrics: str  # "prometheus" or "direct": where the play reads the window
    thresholds: dict[str, float | None]


def _nodes(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
        raise ValueError(f"{key!r} must be a list of inventory names, got {value!r}")
    return value


def _float(data: dict[str, Any], key: str, required: bool = True) -> float | None:
    value = data.get(key)
    if value is None and not required:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{key!r} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{key!r} must be a finite number, got {value!r}")
    return number


def parse_running(data: Any) -> Running:
    """``running.json``'s content, checked (``ValueError`` says what is wrong)."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    thresholds = data.get("thresholds") or {}
    if not isinstance(thresholds, dict):
        raise ValueError(f"'thresholds' must be an object, got {thresholds!r}")
    weight = _float(data, "weight", required=False)
    return Running(
        canary=_nodes(data, "canary"),
        baseline=_nodes(data, "baseline"),
        share=_float(data, "share") or 0.0,
        weight=None if weight is None else round(weight),
        started=_float(data, "started") or 0.0,
        duration=_float(data, "duration") or 0.0,
        metrics=str(data.get("metrics") or "prometheus"),
        thresholds={name: _float(thresholds, name, required=False) for name in THRESHOLD_NAMES},
    )


def read_running(path: Path) -> Running | None:
    """The running canary, or None when there is no file (no window open)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise LocalInputError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        return parse_running(json.loads(text))
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise LocalInputError(f"{path} is not a canary's running file: {err}") from None


@dataclass
class Numbers:
    """One group of nodes' numbers for one model over the range."""

    requests: float | None = None
    failed: float | None = None  # requests with a status other than OK
    p50_us: float | None = None
    p99_us: float | None = None

    @property
    def error_ratio(self) -> float | None:
        if not self.requests or self.failed is None:
            return None
        return self.failed / self.requests


def node_regex(nodes: Sequence[str]) -> str:
    """A PromQL label regex matching exactly ``nodes``, as it goes between double quotes."""
    special = set("\\.+*?()|[]{}^$")
    names = ["".join(f"\\{c}" if c in special else c for c in node) for node in nodes]
    return "|".join(names).replace("\\", "\\\\")


def queries(nodes: Sequence[str], seconds: int) -> dict[str, str]:
    """The PromQL expressions of each measure, by ``Numbers`` attribute."""
    match = f'job="tfserving",node=~"{node_regex(nodes)}"'
    window = f"[{seconds}s]"
    requests = f"{REQUEST_COUNT}{{{match}}}{window}"
    failed = f'{REQUEST_COUNT}{{{match},status!="OK"}}{window}'
    # The calls that run the model: status calls (health checks) are not its latency.
    inference = f'{match},API=~"{INFERENCE_API}"'
    buckets = f"sum by (le, model_name) (increase({LATENCY_BUCKET}{{{inference}}}{window}))"
    return {
        "requests": f"sum by (model_name) (increase({requests}))",
        "failed": f"sum by (model_name) (increase({failed}))",
        "p50_us": f"histogram_quantile(0.5, {buckets})",
        "p99_us": f"histogram_quantile(0.99, {buckets})",
    }


def measure(query: Query, nodes: Sequence[str], seconds: int) -> dict[str, Numbers]:
    """Per model, the numbers of ``nodes`` together over the last ``seconds``."""
    models: dict[str, Numbers] = {}
    if not nodes:
        return models
    for attribute, expr in queries(nodes, seconds).items():
        for labels, value in query(expr):
            model = labels.get("model_name")
            if model and math.isfinite(value):  # no requests in the range: NaN quantiles
                setattr(models.setdefault(model, Numbers()), attribute, value)
    for numbers in models.values():
        # A model that served requests has no failures unless counted.
        if numbers.requests is not None and numbers.failed is None:
            numbers.failed = 0.0
    return models


@dataclass
class Breach:
    threshold: str
    canary: float
    limit: float
    message: str


def _ratio(value: float) -> str:
    return f"{value:.4f}"


def _ms(microseconds: float) -> str:
    return f"{microseconds / 1000:.2f} ms"


def judge(canary: Numbers, baseline: Numbers, thresholds: dict[str, float | None]) -> list[Breach]:
    """The thresholds the canary's numbers break so far (as the play's verdict reads them).

    The canary fails when a model's error ratio is above ``max_error_ratio``, or above the
    baseline's times ``max_error_ratio_vs_baseline`` when the baseline has errors, or its
    p99 is above the baseline's times ``max_p99_ratio``.
    """
    breaches: list[Breach] = []
    ratio, base_ratio = canary.error_ratio, baseline.error_ratio
    limit = thresholds.get("max_error_ratio")
    if ratio is not None and limit is not None and ratio > limit:
        message = f"error ratio {_ratio(ratio)} > max_error_ratio {limit:g}"
        breaches.append(Breach("max_error_ratio", ratio, limit, message))
    times = thresholds.get("max_error_ratio_vs_baseline")
    if ratio is not None and base_ratio and times is not None and ratio > base_ratio * times:
        message = (
            f"error ratio {_ratio(ratio)} > {times:g} x the baseline's {_ratio(base_ratio)}"
            " (max_error_ratio_vs_baseline)"
        )
        breaches.append(Breach("max_error_ratio_vs_baseline", ratio, base_ratio * times, message))
    times = thresholds.get("max_p99_ratio")
    p99, base_p99 = canary.p99_us, baseline.p99_us
    if p99 is not None and base_p99 and times is not None and p99 > base_p99 * times:
        message = f"p99 {_ms(p99)} > {times:g} x the baseline's {_ms(base_p99)} (max_p99_ratio)"
        breaches.append(Breach("max_p99_ratio", p99, base_p99 * times, message))
    return breaches


@dataclass
class ModelRow:
    model: str
    canary: Numbers
    baseline: Numbers
    breaches: list[Breach] = field(default_factory=list)
    enough_traffic: bool = True  # the canary's requests reach min_requests


@dataclass
class Status:
    file: str
    running: Running
    elapsed: float  # seconds since the window started
    left: float  # seconds until it ends; 0 once over (the verdict is being made)
    range_seconds: int  # the range of the queries: the elapsed seconds, rounded up
    prometheus: str | None
    note: str | None = None  # why there are no numbers so far
    error: str | None = None  # Prometheus did not answer
    error_code: int = EXIT_OK
    models: list[ModelRow] = field(default_factory=list)


def collect(
    path: Path, running: Running, now: float, query: Query | None, prometheus: str | None
) -> Status:
    """The running canary at ``now``, with its numbers so far when ``query`` is given."""
    elapsed = max(0.0, now - running.started)
    status = Status(
        file=str(path),
        running=running,
        elapsed=elapsed,
        left=max(0.0, running.started + running.duration - now),
        range_seconds=max(1, math.ceil(elapsed)),
        prometheus=prometheus,
    )
    if query is None:
        if running.metrics == "direct":
            status.note = (
                "the play reads the servers directly (metrics: direct), so the numbers so "
                "far need Prometheus: give --prometheus URL if the fleet has one"
            )
        else:
            status.note = "give --prometheus URL (the fleet's) for the numbers so far"
        return status
    try:
        canary = measure(query, running.canary, status.range_seconds)
        baseline = measure(query, running.baseline, status.range_seconds)
    except TfsClientError as err:
        status.error, status.error_code = str(err), err.exit_code
        return status
    minimum = running.thresholds.get("min_requests")
    for model in sorted(set(canary) | set(baseline)):
        mine, theirs = canary.get(model, Numbers()), baseline.get(model, Numbers())
        status.models.append(
            ModelRow(
                model,
                mine,
                theirs,
                judge(mine, theirs, running.thresholds),
                minimum is None or (mine.requests or 0) >= minimum,
            )
        )
    return status


def _numbers_json(numbers: Numbers) -> dict[str, float | None]:
    return {
        "requests": numbers.requests,
        "failed": numbers.failed,
        "error_ratio": numbers.error_ratio,
        "p50_us": numbers.p50_us,
        "p99_us": numbers.p99_us,
    }


def to_json(status: Status) -> dict[str, Any]:
    running = status.running
    return {
        "running": True,
        "file": status.file,
        "canary": running.canary,
        "baseline": running.baseline,
        "share": running.share,
        "weight": running.weight,
        "started": running.started,
        "duration": running.duration,
        "elapsed": round(status.elapsed, 3),
        "left": round(status.left, 3),
        "metrics": running.metrics,
        "thresholds": running.thresholds,
        "prometheus": status.prometheus,
        "range_seconds": status.range_seconds,
        "note": status.note,
        "error": status.error,
        "models": [
            {
                "model": row.model,
                "canary": _numbers_json(row.canary),
                "baseline": _numbers_json(row.baseline),
                "enough_traffic": row.enough_traffic,
                "breaches": [
                    {"threshold": b.threshold, "canary": b.canary, "limit": b.limit,
                     "message": b.message}
                    for b in row.breaches
                ],
            }
            for row in status.models
        ],
    }  # fmt: skip


def _cell(value: float | None, digits: int, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


def _seconds(value: float) -> str:
    return f"{value:.0f} s"


def format_status(status: Status) -> list[str]:
    running = status.running
    weight = f" (weight {running.weight})" if running.weight is not None else ""
    lines = [
        f"canary {', '.join(running.canary)}{weight}: {running.share:g}% of new requests; "
        f"baseline {', '.join(running.baseline) or '-'}",
    ]
    timing = f"window {_seconds(running.duration)}: {_seconds(status.elapsed)} elapsed, "
    if status.left > 0:
        timing += f"{_seconds(math.ceil(status.left))} left"
    else:
        over = status.elapsed - running.duration
        timing += f"over {_seconds(over)} ago, the verdict is being made"
    lines.append(timing)
    if status.note:
        lines.append(status.note)
        return lines
    if status.error:
        lines.append(f"no numbers so far: {status.error}")
        return lines
    lines.append(f"so far (last {status.range_seconds} s) from prometheus {status.prometheus}")
    header = ("MODEL", "NODES", "REQUESTS", "ERROR RATIO", "P50 MS", "P99 MS")
    rows: list[tuple[str, ...]] = []
    for row in status.models:
        for group, numbers in (("canary", row.canary), ("baseline", row.baseline)):
            rows.append(
                (
                    row.model if group == "canary" else "",
                    group,
                    _cell(numbers.requests, 0),
                    _cell(numbers.error_ratio, 4),
                    _cell(numbers.p50_us, 2, 1000.0),
                    _cell(numbers.p99_us, 2, 1000.0),
                )
            )
    if rows:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
        for row_cells in [header, *rows]:
            cells = [c.ljust(w) for c, w in zip(row_cells, widths, strict=False)]
            lines.append("  ".join([*cells, row_cells[-1]]).rstrip())
    else:
        lines.append("(no requests counted yet for the canary or the baseline)")
    thresholds = ", ".join(
        f"{name} {value:g}" for name, value in running.thresholds.items() if value is not None
    )
    lines.append(f"thresholds: {thresholds or '-'} (for information: the play decides)")
    found = False
    for row in status.models:
        if not row.enough_traffic:
            found = True
            minimum = running.thresholds["min_requests"] or 0
            lines.append(
                f"{row.model}: not enough traffic yet, {_cell(row.canary.requests or 0.0, 0)} "
                f"canary requests < min_requests {minimum:g}"
            )
        for breach in row.breaches:
            found = True
            lines.append(f"{row.model}: breaks {breach.message}")
    if not found and status.models:
        lines.append("no threshold broken so far")
    return lines


def run_command(args: Any) -> int:
    """The ``canary-status`` command, given its parsed options."""
    import sys

    from . import render
    from .fleet import Prometheus

    path = args.file if args.file is not None else default_file()
    running = read_running(path)
    if running is None:
        if args.json:
            print(render.dumps({"running": False, "file": str(path)}))
        else:
            print(f"no canary is running (no {path})")
        return EXIT_NO_CANARY
    query: Query | None = None
    url = None
    if args.prometheus:
        prometheus = Prometheus(args.prometheus, args.timeout)
        query, url = prometheus.query, prometheus.url
    status = collect(path, running, clock(), query, url)
    if args.json:
        print(render.dumps(to_json(status)))
    else:
        sys.stdout.write("".join(f"{line}\n" for line in format_status(status)))
    return status.error_code
