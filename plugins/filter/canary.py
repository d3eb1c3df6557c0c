"""The canary's verdict: TF Serving's own metrics on the canary against the baseline nodes.

A canary node serves the new model versions or image beside the baseline nodes (all the
others) for a window. Both sides are measured over that same window, per model, from the
two metrics TF Serving exports on its REST port (``--monitoring_config_file``):

- ``:tensorflow:serving:request_count{model_name, status}``: a counter per gRPC status
  name; every status other than ``OK`` is an error;
- ``:tensorflow:serving:request_latency_bucket{model_name, API, entrypoint, le}``: a
  cumulative histogram of request wall time in microseconds, summed here over API and
  entrypoint.

Stats, the structure every filter here takes or returns (plain data, fit for YAML):

    {'models': {'half_plus_two': {'requests': 120, 'errors': 20,
                                  'statuses': {'INVALID_ARGUMENT': 20, 'OK': 100},
                                  'latency_buckets': {'10': 0, '25': 0, ..., '+Inf': 120}}},
     'restarts': []}

``latency_buckets`` maps each bound (``le``, microseconds) to the cumulative count;
``restarts`` names the servers whose counters went back during the window (see
tfserving_canary_delta).

Two ways to get a window's stats:

- from two direct scrapes of a node's metrics page, before and after the window:
  {{ after_text | tfserving.fleet.tfserving_canary_delta(before_text, 'node-1') }}
- from the fleet's Prometheus (HTTP API ``/api/v1/query`` at the end of the window) with
  the queries of tfserving_canary_queries:
  {{ requests_json | tfserving.fleet.tfserving_canary_from_prometheus(latency_json) }}

Then:

    {{ [stats_node2, stats_node3] | tfserving.fleet.tfserving_canary_sum }}   -> baseline
    {{ canary | tfserving.fleet.tfserving_canary_verdict(baseline, lb_failures,
                                                         thresholds) }}
    -> {'verdict': 'fail', 'summary': 'half_plus_two: ...', 'reasons': [...],
        'rows': [...], 'table': '...', 'resolution': 2.5, 'notes': [...],
        'restarts': [...]}

Resolution of the latency check. A histogram knows a latency only to its bucket, and the
quantile is interpolated linearly inside the bucket (as Prometheus's histogram_quantile
does), so a p99 can sit anywhere between the bucket's bounds. The buckets' resolution is the
largest ratio between neighbouring bounds (tfserving_canary_resolution): 2.5 for buckets
at 1, 2.5 and 5 per decade (1 to 2.5 is 2.5x, 2.5 to 5 is 2x, 5 to 10 is 2x; the
stand-in's layout), 1.8 for TF Serving's own exponential buckets (10 x 1.8^i microseconds).
Latencies within that ratio of each other can share a bucket and are not told apart, and a
p99 that merely crosses one bound can show a ratio of about that much with no real change.
So ``max_p99_ratio`` should be at least the resolution (the verdict notes when it is not),
and a slowdown is certain to show only when it is about ``max_p99_ratio`` times the
resolution or more; smaller real slowdowns may pass.

Why not the library: ansible.builtin.uri fetches the metrics and from_json reads Prometheus'
answer, but no library filter parses the text exposition format or takes a histogram's p99.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY_BUCKET = ":tensorflow:serving:request_latency_bucket"
# HAProxy's exporter: econ and eresp of each server (labels proxy and server)
LB_CONNECTION_ERRORS = "haproxy_server_connection_errors_total"
LB_RESPONSE_ERRORS = "haproxy_server_response_errors_total"

# The stand-in's request latency bounds, microseconds: 1, 2.5 and 5 per decade from 10 us.
STANDIN_BOUNDS: tuple[float, ...] = tuple(
    float(b * 10**e) for e in range(1, 8) for b in (1, 2.5, 5)
)

DEFAULT_THRESHOLDS: dict[str, float | None] = {
    # canary requests per model in the window; fewer is the verdict not_enough_traffic
    "min_requests": 100,
    # non-OK requests (and load balancer transport failures) over all requests
    "max_error_ratio": 0.01,
    # canary error ratio over the baseline's; the baseline's ratio is taken as at least one
    # error's worth of the canary's requests, so a clean baseline never makes one stray
    # canary error a failure on its own
    "max_error_ratio_vs_baseline": 2.0,
    # canary p99 over baseline p99; keep it at or above the buckets' resolution
    "max_p99_ratio": 3.0,
}

# The latency histogram's API label of the calls that run the model (TF Serving writes
# "Predict", the stand-in "predict"); status and metadata calls (the load balancer's health
# checks, the monitoring probes) are left out of the latencies and of the traffic count.
INFERENCE_API = re.compile(r"^(predict|classify|regress|multi_?inference)$", re.IGNORECASE)
INFERENCE_API_PROMQL = "(?i)predict|classify|regress|multi_?inference"

# Bounds at or above this are +Inf (an exporter may write the largest double).
_INF_FROM = 1e300

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(
    rf"^(?P<name>{_NAME})(?:\{{(?P<labels>.*)\}})?\s+(?P<value>\S+)(?:\s+-?\d+)?\s*$"
)
_LABEL = re.compile(r'\s*(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*,?')

Stats = dict[str, Any]


# ----- stats -------------------------------------------------------------------------------
def _empty() -> Stats:
    return {"models": {}, "restarts": []}


def _model(stats: Stats, name: str) -> dict[str, Any]:
    return stats["models"].setdefault(
        name, {"requests": 0, "errors": 0, "statuses": {}, "latency_buckets": {}}
    )


def _number(value: Any) -> int | float:
    """Integral counts as ints (reports read 120, not 120.0)."""
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"A count {value!r} is not a number.") from exc
    if math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _bound(le: Any) -> float:
    text = str(le).strip()
    try:
        value = float(text)
    except ValueError as exc:
        raise AnsibleFilterError(f"A latency bucket bound le={text!r} is not a number.") from exc
    if math.isnan(value):
        raise AnsibleFilterError("A latency bucket bound is NaN.")
    return math.inf if value >= _INF_FROM else value


def _le_key(bound: float) -> str:
    if math.isinf(bound):
        return "+Inf"
    return str(int(bound)) if bound.is_integer() else repr(bound)


def _sorted_buckets(buckets: Mapping[str, Any]) -> list[tuple[float, float]]:
    return sorted((_bound(le), float(_number(count))) for le, count in buckets.items())


def _finish(stats: Stats) -> Stats:
    """Counts as numbers, statuses and buckets in a stable order, errors from statuses."""
    for entry in stats["models"].values():
        statuses = {k: _number(v) for k, v in sorted(entry["statuses"].items())}
        entry["statuses"] = statuses
        entry["requests"] = _number(sum(statuses.values()))
        entry["errors"] = _number(sum(v for k, v in statuses.items() if k != "OK"))
        entry["latency_buckets"] = {
            _le_key(b): _number(c) for b, c in _sorted_buckets(entry["latency_buckets"])
        }
    stats["models"] = dict(sorted(stats["models"].items()))
    return stats


def _as_stats(value: Any, what: str) -> Stats:
    """Stats, or a metrics page's text parsed into stats."""
    if isinstance(value, str):
        return tfserving_canary_parse(value)
    if not isinstance(value, Mapping) or not isinstance(value.get("models"), Mapping):
        raise AnsibleFilterError(
            f"{what} is not canary stats (a mapping with 'models', as tfserving_canary_parse"
            f" returns) nor a metrics page: got {type(value).__name__}."
        )
    for name, entry in value["models"].items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("statuses"), Mapping):
            raise AnsibleFilterError(f"{what}: model {name!r} has no 'statuses' mapping.")
    # requests and errors are counted again from the statuses
    return _finish(
        {
            "models": {
                str(name): {
                    "statuses": dict(entry["statuses"]),
                    "latency_buckets": dict(entry.get("latency_buckets") or {}),
                }
                for name, entry in value["models"].items()
            },
            "restarts": list(value.get("restarts") or []),
        }
    )


# ----- the text exposition format ----------------------------------------------------------
def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _parse_labels(text: str, lineno: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _LABEL.match(text, pos)
        if not match:
            raise AnsibleFilterError(
                f"Metrics line {lineno}: cannot read the labels {{{text[:120]}}}."
            )
        labels[match.group("key")] = _unescape(match.group("value"))
        pos = match.end()
    return labels


def _sample_value(text: str, lineno: int) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise AnsibleFilterError(
            f"Metrics line {lineno}: the value {text!r} is not a number."
        ) from exc


def _need(labels: Mapping[str, str], key: str, where: str) -> str:
    if key not in labels:
        raise AnsibleFilterError(f"{where} has no {key} label: {dict(labels)}.")
    return labels[key]


def _add_sample(
    stats: Stats, name: str, labels: Mapping[str, str], value: float, where: str
) -> None:
    if math.isnan(value):
        value = 0.0
    if name == REQUEST_COUNT:
        entry = _model(stats, _need(labels, "model_name", where))
        status = _need(labels, "status", where)
        entry["statuses"][status] = entry["statuses"].get(status, 0) + value
    elif name == REQUEST_LATENCY_BUCKET:
        if "API" in labels and not INFERENCE_API.match(labels["API"]):
            return
        entry = _model(stats, _need(labels, "model_name", where))
        le = _le_key(_bound(_need(labels, "le", where)))
        entry["latency_buckets"][le] = entry["latency_buckets"].get(le, 0) + value


def tfserving_canary_parse(text: str) -> Stats:
    """Stats from one scrape of a TF Serving metrics page (Prometheus text format).

    Counters are the server's totals since it started; tfserving_canary_delta turns two
    scrapes into a window. Other metrics, comments and blank lines are skipped; a line that
    is not a sample at all (an error page, say) fails with its number.
    """
    if not isinstance(text, str):
        raise AnsibleFilterError(
            f"tfserving_canary_parse takes the metrics page's text, got {type(text).__name__}."
        )
    stats = _empty()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise AnsibleFilterError(
                f"Metrics line {lineno} is not a Prometheus sample: {line[:120]!r}."
            )
        name = match.group("name")
        if name not in (REQUEST_COUNT, REQUEST_LATENCY_BUCKET):
            continue
        labels = _parse_labels(match.group("labels") or "", lineno)
        value = _sample_value(match.group("value"), lineno)
        _add_sample(stats, name, labels, value, f"Metrics line {lineno} ({name})")
    return _finish(stats)


# ----- Prometheus --------------------------------------------------------------------------
def _promql_string(value: str) -> str:
    """VALUE inside a PromQL double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _alternatives(names: Sequence[str]) -> str:
    """A regular expression (RE2, anchored by Prometheus) matching exactly these names."""
    return "|".join(re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", name) for name in names)


def tfserving_canary_queries(
    nodes: str | Sequence[str],
    window_s: int,
    job: str = "tfserving",
    lb_job: str = "haproxy",
    backends: Sequence[str] = ("tfserving_grpc", "tfserving_rest"),
    servers: str | Sequence[str] | None = None,
) -> dict[str, str]:
    """The PromQL queries for one side (the canary node, or the baseline nodes) over the
    last ``window_s`` seconds; run each with ``/api/v1/query`` at the end of the window.

    Targets are matched by the ``node`` label the monitoring role gives every target (the
    inventory name) and by job; several nodes are summed by Prometheus. ``requests`` and
    ``latency`` go to tfserving_canary_from_prometheus; ``transport_failures`` (HAProxy's
    connection and response errors for those servers in the given backends) to
    tfserving_canary_prometheus_number. ``servers`` are the load balancer servers of those
    nodes when a node runs several (NODE, NODE-1, ...; tfserving_instance_mode); by default
    the node names.

    increase() counts a series only from its first sample: errors that begin within the
    window are counted from the first scrape that sees them, one scrape interval's worth
    short at most (hence a window of at least three scrape intervals).
    """
    try:
        seconds = int(window_s)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(
            f"The canary window {window_s!r} is not a whole number of seconds."
        ) from exc
    if seconds <= 0:
        raise AnsibleFilterError(f"The canary window must be positive, got {seconds} s.")
    names = [nodes] if isinstance(nodes, str) else [str(n) for n in nodes]
    if not names or not all(names):
        raise AnsibleFilterError("tfserving_canary_queries needs at least one node name.")
    if isinstance(backends, str):
        backends = [backends]
    if servers is None:
        lb_names = names
    else:
        lb_names = [servers] if isinstance(servers, str) else [str(n) for n in servers]
    if not lb_names or not all(lb_names):
        raise AnsibleFilterError("tfserving_canary_queries needs at least one server name.")
    node = (
        f'node="{_promql_string(names[0])}"'
        if len(names) == 1
        else f'node=~"{_promql_string(_alternatives(names))}"'
    )
    serving = f'job="{_promql_string(job)}",{node}'
    inference = f'{serving},API=~"{_promql_string(INFERENCE_API_PROMQL)}"'
    lb = (
        f'job="{_promql_string(lb_job)}",'
        f'proxy=~"{_promql_string(_alternatives([str(b) for b in backends]))}",'
        f'server=~"{_promql_string(_alternatives(lb_names))}"'
    )
    window = f"[{seconds}s]"
    return {
        "requests": f"sum by (model_name, status) (increase({REQUEST_COUNT}{{{serving}}}{window}))",
        "latency": (
            f"sum by (model_name, le) (increase({REQUEST_LATENCY_BUCKET}{{{inference}}}{window}))"
        ),
        # One sum per counter (increase() over both names at once would drop the names and
        # clash), each 0 when HAProxy has no such series.
        "transport_failures": " + ".join(
            f"(sum(increase({metric}{{{lb}}}{window})) or vector(0))"
            for metric in (LB_CONNECTION_ERRORS, LB_RESPONSE_ERRORS)
        ),
    }


def _vector(result: Any, what: str) -> list[Mapping[str, Any]]:
    """The ``data.result`` of an instant query, from the whole response or the list."""
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except ValueError as exc:
            raise AnsibleFilterError(f"The Prometheus answer for {what} is not JSON.") from exc
    if isinstance(result, Mapping):
        if result.get("status") not in (None, "success"):
            raise AnsibleFilterError(
                f"Prometheus refused the {what} query: {result.get('errorType', '')}"
                f" {result.get('error', result.get('status'))}."
            )
        data = result.get("data", result)
        if data.get("resultType", "vector") != "vector":
            raise AnsibleFilterError(
                f"The {what} query returned a {data.get('resultType')}, not an instant vector."
            )
        result = data.get("result")
    if not isinstance(result, list):
        raise AnsibleFilterError(
            f"The Prometheus answer for {what} has no result list (data.result of /api/v1/query)."
        )
    for item in result:
        if not isinstance(item, Mapping) or "metric" not in item or "value" not in item:
            raise AnsibleFilterError(f"A {what} result is not an instant vector sample: {item!r}.")
    return result


def _vector_value(item: Mapping[str, Any], what: str) -> float:
    value = item["value"]
    try:
        number = float(value[1])
    except (TypeError, ValueError, IndexError) as exc:
        raise AnsibleFilterError(f"A {what} sample has no [time, value] pair: {value!r}.") from exc
    return 0.0 if math.isnan(number) else number


def tfserving_canary_from_prometheus(requests: Any, latency: Any) -> Stats:
    """Stats from the answers to tfserving_canary_queries' ``requests`` and ``latency``
    (each the whole ``/api/v1/query`` JSON, its text, or its ``data.result`` list)."""
    stats = _empty()
    for item in _vector(requests, "requests"):
        _add_sample(
            stats,
            REQUEST_COUNT,
            item["metric"],
            _vector_value(item, "requests"),
            "A requests result (group it by model_name and status)",
        )
    for item in _vector(latency, "latency"):
        _add_sample(
            stats,
            REQUEST_LATENCY_BUCKET,
            item["metric"],
            _vector_value(item, "latency"),
            "A latency result (group it by model_name and le)",
        )
    return _finish(stats)


def tfserving_canary_prometheus_number(result: Any) -> int | float:
    """The sum of an instant vector's values (0 when empty): the transport failures."""
    return _number(sum(_vector_value(i, "number") for i in _vector(result, "number")))


# ----- windows and sums --------------------------------------------------------------------
def _cumulative_at(buckets: list[tuple[float, float]], bound: float) -> float:
    """The cumulative count at ``bound`` of a histogram that may lack that bound: its count
    at the largest bound below (a lower estimate; exact when the layouts agree)."""
    count = 0.0
    for le, value in buckets:
        if le > bound:
            break
        count = value
    return count


def _series(stats: Stats) -> dict[tuple[str, str, str], float]:
    values: dict[tuple[str, str, str], float] = {}
    for name, entry in stats["models"].items():
        for status, count in entry["statuses"].items():
            values[(name, "status", status)] = float(count)
        for le, count in entry["latency_buckets"].items():
            values[(name, "le", _le_key(_bound(le)))] = float(count)
    return values


def tfserving_canary_delta(after: Any, before: Any, server: str = "") -> Stats:
    """The window between two scrapes of one server: ``after`` minus ``before`` (each the
    metrics page's text or its stats).

    A counter that went back, or a series that disappeared, means the server restarted
    within the window (its counters start again at zero): ``after`` alone is then the
    window (what it served since the restart; what it served before is lost), and
    ``restarts`` names ``server``.
    """
    late, early = _as_stats(after, "after"), _as_stats(before, "before")
    late_series, early_series = _series(late), _series(early)
    restarted = any(late_series.get(key, -1.0) < value for key, value in early_series.items())
    label = str(server) or "a server"
    if restarted:
        result = {"models": late["models"], "restarts": [*early["restarts"], label]}
        return _finish(result)
    result = _empty()
    result["restarts"] = list(late["restarts"])
    for (name, kind, key), value in late_series.items():
        entry = _model(result, name)
        delta = value - early_series.get((name, kind, key), 0.0)
        entry["statuses" if kind == "status" else "latency_buckets"][key] = delta
    return _finish(result)


def tfserving_canary_sum(stats_list: Iterable[Any]) -> Stats:
    """Several servers' stats (or metrics pages) as one: the baseline from its nodes."""
    if isinstance(stats_list, (str, Mapping)):
        raise AnsibleFilterError("tfserving_canary_sum takes a list of stats.")
    parts = [_as_stats(s, f"item {i} of the list") for i, s in enumerate(stats_list)]
    result = _empty()
    bounds: dict[str, set[float]] = {}
    for part in parts:
        result["restarts"].extend(part["restarts"])
        for name, entry in part["models"].items():
            total = _model(result, name)
            for status, count in entry["statuses"].items():
                total["statuses"][status] = total["statuses"].get(status, 0) + float(count)
            bounds.setdefault(name, set()).update(_bound(le) for le in entry["latency_buckets"])
    for name, names_bounds in bounds.items():
        summed = result["models"][name]["latency_buckets"]
        for part in parts:
            entry = part["models"].get(name)
            if entry is None:
                continue
            buckets = _sorted_buckets(entry["latency_buckets"])
            for bound in names_bounds:
                summed[_le_key(bound)] = summed.get(_le_key(bound), 0.0) + _cumulative_at(
                    buckets, bound
                )
    return _finish(result)


def tfserving_canary_scrapes(
    after: Sequence[Any], before: Sequence[Any], servers: Sequence[str], canary_pages: int = 1
) -> dict[str, Stats]:
    """The canary's and the baseline's window from direct scrapes: ``after`` and ``before``
    hold each server's metrics page at the end and at the start of the window, in the
    order of ``servers``, the canary first and the baseline nodes after it. A canary node
    with several servers (tfserving_instance_mode) has ``canary_pages`` pages, summed.

    -> {'canary': stats, 'baseline': stats summed over the baseline nodes}
    """
    if not len(after) == len(before) == len(servers) or not servers:
        raise AnsibleFilterError(
            f"tfserving_canary_scrapes needs one page at each end per server: got"
            f" {len(after)} and {len(before)} pages for {len(servers)} server(s)."
        )
    pairs = zip(after, before, servers, strict=True)
    deltas = [tfserving_canary_delta(a, b, str(n)) for a, b, n in pairs]
    count = int(canary_pages)
    if not 1 <= count < len(deltas) + (1 if count == 1 else 0):
        raise AnsibleFilterError(
            f"tfserving_canary_scrapes: {count} canary page(s) of {len(deltas)} leave no baseline."
        )
    canary = deltas[0] if count == 1 else tfserving_canary_sum(deltas[:count])
    return {"canary": canary, "baseline": tfserving_canary_sum(deltas[count:])}


def tfserving_canary_answers(answers: Sequence[Any]) -> dict[str, Stats]:
    """The canary's and the baseline's window from Prometheus: the answers to the canary's
    ``requests`` and ``latency`` queries, then the baseline's (tfserving_canary_queries).

    -> {'canary': stats, 'baseline': stats}
    """
    if len(answers) != 4:
        raise AnsibleFilterError(
            "tfserving_canary_answers needs four answers (canary requests and latency, then"
            f" the baseline's); got {len(answers)}."
        )
    return {
        "canary": tfserving_canary_from_prometheus(answers[0], answers[1]),
        "baseline": tfserving_canary_from_prometheus(answers[2], answers[3]),
    }


# ----- quantiles and resolution ------------------------------------------------------------
def _buckets_of(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping) and "latency_buckets" in value:
        return value["latency_buckets"]
    if isinstance(value, Mapping):
        return value
    raise AnsibleFilterError(
        "Give a model's stats (with latency_buckets) or its latency_buckets mapping."
    )


def tfserving_canary_quantile(model_stats: Mapping[str, Any], q: float) -> float | None:
    """The q-quantile (0..1) of a model's latency in microseconds, None without requests.

    As Prometheus's histogram_quantile: the bucket that holds the q-th request is found from
    the cumulative counts, and the value is interpolated linearly between that bucket's
    bounds (from 0 for the first bucket). A quantile in the +Inf bucket is the largest
    finite bound. Counts that are not monotonic (increase() extrapolates each series on its
    own) are made so first.
    """
    try:
        q = float(q)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"The quantile {q!r} is not a number.") from exc
    if not 0.0 <= q <= 1.0:
        raise AnsibleFilterError(f"The quantile must lie in 0..1, got {q}.")
    buckets = _sorted_buckets(_buckets_of(model_stats))
    if not buckets:
        return None
    monotonic: list[tuple[float, float]] = []
    running = 0.0
    for bound, count in buckets:
        running = max(running, count)
        monotonic.append((bound, running))
    total = monotonic[-1][1]
    if total <= 0:
        return None
    rank = q * total
    for index, (bound, count) in enumerate(monotonic):
        if count < rank:
            continue
        if math.isinf(bound):
            finite = [b for b, _count in monotonic if not math.isinf(b)]
            return finite[-1] if finite else None
        start, below = (0.0, 0.0) if index == 0 else monotonic[index - 1]
        if index == 0 and bound <= 0:
            return bound
        inside = count - below
        if inside <= 0:
            return bound
        return start + (bound - start) * (rank - below) / inside
    return None


def tfserving_canary_resolution(stats: Any = None) -> float:
    """The largest ratio between neighbouring finite latency bounds: latencies closer than
    this are not told apart (see the module's documentation). Of the bounds found in the
    stats (any model), or of the stand-in's layout (1, 2.5, 5 per decade: 2.5) when there
    are none."""
    bounds: set[float] = set()
    if stats is not None:
        if not isinstance(stats, Mapping):
            raise AnsibleFilterError("tfserving_canary_resolution takes stats, or nothing.")
        # stats, or one model's entry
        entries = stats["models"].values() if "models" in stats else [stats]
        for entry in entries:
            bounds.update(_bound(le) for le in _buckets_of(entry))
    finite = sorted(b for b in bounds if not math.isinf(b) and b > 0)
    if len(finite) < 2:
        finite = list(STANDIN_BOUNDS)
    return round(max(high / low for low, high in itertools.pairwise(finite)), 6)


# ----- the verdict -------------------------------------------------------------------------
def _thresholds(given: Mapping[str, Any] | None) -> dict[str, float | None]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(DEFAULT_THRESHOLDS))
    if unknown:
        raise AnsibleFilterError(
            f"Unknown canary thresholds {unknown}: known are {sorted(DEFAULT_THRESHOLDS)}."
        )
    result: dict[str, float | None] = {}
    for key, default in DEFAULT_THRESHOLDS.items():
        value = given.get(key, default)
        if value is None and key != "min_requests":
            result[key] = None  # that check is off
            continue
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise AnsibleFilterError(
                f"The canary threshold {key}={value!r} is not a number."
            ) from exc
        if key == "min_requests" and (number < 1 or not number.is_integer()):
            raise AnsibleFilterError(
                f"min_requests must be a whole number of 1 or more, got {value!r}."
            )
        if number < 0 or math.isnan(number):
            raise AnsibleFilterError(
                f"The canary threshold {key} must not be negative, got {value!r}."
            )
        if key in ("max_error_ratio_vs_baseline", "max_p99_ratio") and number < 1:
            raise AnsibleFilterError(
                f"{key} is a multiple of the baseline's value: 1 or more, got {value!r}."
            )
        result[key] = number
    return result


def _ms(micros: float | None) -> float | None:
    return None if micros is None else round(micros / 1000.0, 6)


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    if value >= 1:
        return f"{value:.2f} ms"
    return f"{value:.3f} ms"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _fmt_count(value: float) -> str:
    return str(_number(round(float(value), 1)))


def _row(
    model: str, role: str, requests: float, errors: float, entry: Mapping[str, Any] | None
) -> dict[str, Any]:
    buckets = entry["latency_buckets"] if entry else {}
    return {
        "model": model,
        "role": role,
        "requests": _number(requests),
        "errors": _number(errors),
        "error_ratio": (errors / requests) if requests > 0 else None,
        "p50_ms": _ms(tfserving_canary_quantile(buckets, 0.5)) if buckets else None,
        "p99_ms": _ms(tfserving_canary_quantile(buckets, 0.99)) if buckets else None,
        "statuses": dict(entry["statuses"]) if entry else {},
    }


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = ("model", "role", "requests", "errors", "error ratio", "p50", "p99")
    cells = [header] + [
        (
            str(r["model"]),
            str(r["role"]),
            _fmt_count(r["requests"]),
            _fmt_count(r["errors"]),
            "-" if r["error_ratio"] is None else f"{100 * r['error_ratio']:.2f}%",
            _fmt_ms(r["p50_ms"]),
            _fmt_ms(r["p99_ms"]),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = []
    for c in cells:
        left = [c[i].ljust(widths[i]) for i in range(2)]
        right = [c[i].rjust(widths[i]) for i in range(2, len(header))]
        lines.append("  ".join(left + right).rstrip())
    return "\n".join(lines)


def _reason(
    model: str, metric: str, canary: Any, baseline: Any, threshold: Any, text: str
) -> dict[str, Any]:
    return {
        "model": model,
        "metric": metric,
        "canary": canary,
        "baseline": baseline,
        "threshold": threshold,
        "text": f"{model}: {text}",
    }


def _traffic(entry: Mapping[str, Any] | None) -> float:
    """A model's requests that ran it: the count of its latency histogram, which holds the
    inference calls only (request_count also counts status and metadata calls)."""
    buckets = (entry or {}).get("latency_buckets") or {}
    return float(_sorted_buckets(buckets)[-1][1]) if buckets else 0.0


def tfserving_canary_verdict(
    canary: Any,
    baseline: Any,
    transport_failures: Any = 0,
    thresholds: Mapping[str, Any] | None = None,
    models: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Judge the canary's window against the baseline's.

    ``canary`` and ``baseline`` are stats of the same window (the baseline summed over its
    nodes). ``transport_failures`` counts requests the load balancer sent to the canary that
    failed before TF Serving counted them (HAProxy's eresp + econ over the window: a gRPC
    error arrives as HTTP 200 and is in TF Serving's counts instead). The load balancer does
    not know the model, so every judged model's canary row carries them all, as requests
    and as errors. ``thresholds`` override DEFAULT_THRESHOLDS; None turns a check off
    (except min_requests).

    Judged are ``models`` when given, otherwise every model with requests in the window on
    either side (a model idle on both is left out, with a note). Per model:

    - fewer than min_requests canary requests: not enough traffic (the other checks are
      not made for that model: a handful of requests proves nothing either way);
    - canary error ratio above max_error_ratio: fail;
    - canary error ratio above max_error_ratio_vs_baseline times the baseline's, where the
      baseline's ratio counts as at least 1 / canary requests (one error's worth): fail;
    - canary p99 above max_p99_ratio times the baseline's p99: fail.

    The verdict is ``fail`` when any check fails, else ``not_enough_traffic`` when any model
    lacks requests (or none had any), else ``pass``. ``reasons`` lists each failed check
    (model, metric, canary value, baseline value, threshold, text); for
    not_enough_traffic, the models short of requests.
    """
    limits = _thresholds(thresholds)
    can, base = _as_stats(canary, "canary"), _as_stats(baseline, "baseline")
    try:
        failures = float(transport_failures or 0)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(
            f"transport_failures must be a number, got {transport_failures!r}."
        ) from exc
    if failures < 0 or math.isnan(failures):
        raise AnsibleFilterError(
            f"transport_failures must not be negative, got {transport_failures!r} (a negative"
            " delta means the load balancer's counters were reset: take the later value)."
        )
    notes: list[str] = []
    resolution = tfserving_canary_resolution({"models": {**base["models"], **can["models"]}})
    if limits["max_p99_ratio"] is not None and limits["max_p99_ratio"] < resolution:
        notes.append(
            f"max_p99_ratio {limits['max_p99_ratio']:g} is below the latency buckets'"
            f" resolution {resolution:g}: a p99 that only crosses one bucket bound can fail it."
        )
    if models is not None:
        judged = [str(m) for m in models]
    else:
        seen = sorted(set(can["models"]) | set(base["models"]))
        judged = [
            m
            for m in seen
            if _traffic(can["models"].get(m)) > 0 or _traffic(base["models"].get(m)) > 0
        ]
        idle = [m for m in seen if m not in judged]
        if idle:
            notes.append(
                f"No requests in the window on either side, not judged: {', '.join(idle)}."
            )
    for side, stats in (("canary", can), ("baseline", base)):
        for server in stats["restarts"]:
            notes.append(
                f"{server} ({side}) restarted within the window: only what it served since"
                " the restart is counted."
            )
    if failures:
        notes.append(
            f"{_fmt_count(failures)} load balancer transport failures to the canary count as"
            " requests and errors of every judged model."
        )
    if not base["models"]:
        notes.append("No baseline requests: only the absolute error ratio can be checked.")

    reasons: list[dict[str, Any]] = []
    short: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    min_requests = limits["min_requests"] or 1
    for name in judged:
        c_entry, b_entry = can["models"].get(name), base["models"].get(name)
        c_req = float(c_entry["requests"]) + failures if c_entry else failures
        c_err = float(c_entry["errors"]) + failures if c_entry else failures
        b_req = float(b_entry["requests"]) if b_entry else 0.0
        b_err = float(b_entry["errors"]) if b_entry else 0.0
        c_row = _row(name, "canary", c_req, c_err, c_entry)
        b_row = _row(name, "baseline", b_req, b_err, b_entry)
        rows += [c_row, b_row]
        c_traffic = _traffic(c_entry) + failures
        if c_traffic < min_requests:
            short.append(
                _reason(
                    name,
                    "requests",
                    _number(c_traffic),
                    _number(_traffic(b_entry)),
                    _number(min_requests),
                    f"{_fmt_count(c_traffic)} canary requests in the window, fewer than"
                    f" min_requests {_number(min_requests)} (baseline"
                    f" {_fmt_count(_traffic(b_entry))})",
                )
            )
            continue
        c_ratio = c_err / c_req
        b_ratio = b_err / b_req if b_req > 0 else None
        limit = limits["max_error_ratio"]
        if limit is not None and c_ratio > limit:
            reasons.append(
                _reason(
                    name,
                    "error_ratio",
                    c_ratio,
                    b_ratio,
                    limit,
                    f"canary error ratio {_fmt_ratio(c_ratio)} ({_fmt_count(c_err)} of"
                    f" {_fmt_count(c_req)}) is above max_error_ratio {limit:g}"
                    f" (baseline {_fmt_ratio(b_ratio)})",
                )
            )
        limit = limits["max_error_ratio_vs_baseline"]
        if limit is not None and b_ratio is not None:
            floor = max(b_ratio, 1.0 / c_req)
            if c_ratio > limit * floor:
                reasons.append(
                    _reason(
                        name,
                        "error_ratio_vs_baseline",
                        c_ratio,
                        b_ratio,
                        limit,
                        f"canary error ratio {_fmt_ratio(c_ratio)} is above"
                        f" max_error_ratio_vs_baseline {limit:g} x the baseline's"
                        f" {_fmt_ratio(b_ratio)}"
                        + (
                            f" (taken as {_fmt_ratio(floor)}, one error in the canary's"
                            f" {_fmt_count(c_req)} requests)"
                            if floor > b_ratio
                            else ""
                        ),
                    )
                )
        limit = limits["max_p99_ratio"]
        c_p99, b_p99 = c_row["p99_ms"], b_row["p99_ms"]
        if limit is not None and c_p99 is not None and b_p99 is not None:
            ratio = c_p99 / b_p99 if b_p99 > 0 else math.inf
            if ratio > limit:
                reasons.append(
                    _reason(
                        name,
                        "p99_ms",
                        c_p99,
                        b_p99,
                        limit,
                        f"canary p99 {_fmt_ms(c_p99)} is {ratio:.3g}x the baseline's"
                        f" {_fmt_ms(b_p99)}, above max_p99_ratio {limit:g}"
                        f" (the buckets resolve ratios of {resolution:g}x and more)",
                    )
                )
    if reasons:
        verdict = "fail"
    elif short or not judged:
        verdict = "not_enough_traffic"
        reasons = short
        if not judged:
            reasons = [
                _reason(
                    "(all models)",
                    "requests",
                    0,
                    0,
                    _number(min_requests),
                    "no requests in the window on the canary or the baseline",
                )
            ]
    else:
        verdict = "pass"
    summary = (
        "; ".join(r["text"] for r in reasons)
        if reasons
        else f"{', '.join(judged)} within every threshold"
    )
    return {
        "verdict": verdict,
        "summary": summary,
        "reasons": reasons,
        "rows": rows,
        "table": _table(rows),
        "resolution": resolution,
        "thresholds": limits,
        "notes": notes,
        "restarts": [*can["restarts"], *base["restarts"]],
    }


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "tfserving_canary_parse": tfserving_canary_parse,
            "tfserving_canary_queries": tfserving_canary_queries,
            "tfserving_canary_from_prometheus": tfserving_canary_from_prometheus,
            "tfserving_canary_prometheus_number": tfserving_canary_prometheus_number,
            "tfserving_canary_delta": tfserving_canary_delta,
            "tfserving_canary_sum": tfserving_canary_sum,
            "tfserving_canary_scrapes": tfserving_canary_scrapes,
            "tfserving_canary_answers": tfserving_canary_answers,
            "tfserving_canary_quantile": tfserving_canary_quantile,
            "tfserving_canary_resolution": tfserving_canary_resolution,
            "tfserving_canary_verdict": tfserving_canary_verdict,
        }
