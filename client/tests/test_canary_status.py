"""tfs-client canary-status: the play's running file, and a fake Prometheus that answers
from per-node counters and latency histograms the way Prometheus would."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from test_fleet_status import fake_prometheus
from tfs_client import canary
from tfs_client.canary import Numbers, collect, format_status, judge, node_regex, parse_running
from tfs_client.cli import main

STARTED = 1765090000.5
INF = math.inf

# The file exactly as the canary play writes it.
RUNNING: dict[str, Any] = {
    "canary": ["fleet-node1"],
    "baseline": ["fleet-node2", "node3.example"],
    "share": 25,
    "weight": 67,
    "started": STARTED,
    "duration": 20,
    "metrics": "prometheus",
    "thresholds": {
        "min_requests": 50,
        "max_error_ratio": 0.01,
        "max_error_ratio_vs_baseline": 2.0,
        "max_p99_ratio": 3.0,
    },
}

# node -> model -> (requests, failed, cumulative latency buckets {le in microseconds: count})
FLEET: dict[str, dict[str, tuple[float, float, dict[float, float]]]] = {
    "fleet-node1": {
        "digits": (40, 2, {1000: 10, 2500: 30, 5000: 38, 10000: 40, 25000: 40, INF: 40}),
        "half_plus_two": (60, 0, {1000: 0, 2500: 0, 5000: 0, 10000: 30, 25000: 60, INF: 60}),
    },
    "fleet-node2": {
        "digits": (100, 1, {1000: 50, 2500: 90, 5000: 100, 10000: 100, 25000: 100, INF: 100}),
        "half_plus_two": (
            120,
            0,
            {1000: 60, 2500: 120, 5000: 120, 10000: 120, 25000: 120, INF: 120},
        ),
    },
    "node3.example": {
        "digits": (100, 0, {1000: 50, 2500: 90, 5000: 100, 10000: 100, 25000: 100, INF: 100}),
    },
    # Matched only if the dot of node3.example were a regex wildcard: must never count.
    "node3Xexample": {
        "digits": (1000, 1000, {1000: 0, 2500: 0, 5000: 0, 10000: 0, 25000: 0, INF: 1000}),
    },
    "fleet-node10": {  # Prometheus anchors label regexes (the fake too): not fleet-node1
        "digits": (500, 500, {1000: 0, 2500: 0, 5000: 0, 10000: 0, 25000: 0, INF: 500}),
    },
}


def quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's histogram_quantile over cumulative buckets."""
    bounds = sorted(buckets)
    total = buckets[INF]
    if total == 0:
        return math.nan
    rank = q * total
    for index, bound in enumerate(bounds):
        if buckets[bound] >= rank:
            if bound == INF:
                return bounds[-2]
            lower = bounds[index - 1] if index else 0.0
            before = buckets[lower] if index else 0.0
            return lower + (bound - lower) * (rank - before) / (buckets[bound] - before)
    raise AssertionError("unreachable")


def prometheus(fleet: dict[str, dict[str, tuple[float, float, dict[float, float]]]]) -> Any:
    """A query function over ``fleet``; it records the queries it was asked."""
    asked: list[str] = []

    def query(expr: str) -> list[tuple[dict[str, str], float]]:
        asked.append(expr)
        found = re.search(r'node=~"((?:[^"\\]|\\.)*)"', expr)
        assert found, expr
        pattern = found.group(1).replace("\\\\", "\\")  # the PromQL string's escapes
        nodes = [node for node in fleet if re.fullmatch(pattern, node)]
        models: dict[str, list[tuple[float, float, dict[float, float]]]] = {}
        for node in nodes:
            for model, numbers in fleet[node].items():
                models.setdefault(model, []).append(numbers)
        if expr.startswith("histogram_quantile("):
            q = float(expr[len("histogram_quantile(") :].split(",")[0])
            answer = []
            for model, rows in models.items():
                summed = {le: sum(r[2][le] for r in rows) for le in rows[0][2]}
                answer.append(({"model_name": model}, quantile(q, summed)))
            return answer
        if 'status!="OK"' in expr:
            return [({"model_name": m}, sum(r[1] for r in rows)) for m, rows in models.items()
                    if any(r[1] for r in rows)]  # fmt: skip
        return [({"model_name": m}, sum(r[0] for r in rows)) for m, rows in models.items()]

    query.asked = asked  # type: ignore[attr-defined]
    return query


def test_canary_against_baseline_so_far_per_model() -> None:
    query = prometheus(FLEET)
    running = parse_running(RUNNING)
    status = collect(Path("running.json"), running, STARTED + 12.3, query, "http://mon:9090")
    assert (status.elapsed, status.left, status.range_seconds) == pytest.approx((12.3, 7.7, 13))
    assert all("[13s]" in q for q in query.asked) and len(query.asked) == 8
    assert any('node=~"fleet-node1"' in q for q in query.asked)
    assert any('node=~"fleet-node2|node3\\\\.example"' in q for q in query.asked)
    digits, half = status.models
    assert digits.model == "digits"
    assert (digits.canary.requests, digits.canary.failed) == (40, 2)
    assert digits.canary.error_ratio == pytest.approx(0.05)
    assert (digits.baseline.requests, digits.baseline.failed) == (200, 1)
    assert digits.baseline.error_ratio == pytest.approx(0.005)
    assert digits.canary.p50_us == pytest.approx(1750)
    assert digits.canary.p99_us == pytest.approx(9000)
    assert digits.baseline.p50_us == pytest.approx(1000)
    assert digits.baseline.p99_us == pytest.approx(4750)
    assert [b.threshold for b in digits.breaches] == [
        "max_error_ratio",
        "max_error_ratio_vs_baseline",
    ]
    assert digits.enough_traffic is False  # 40 < min_requests 50
    assert (half.canary.requests, half.canary.failed, half.canary.error_ratio) == (60, 0, 0)
    assert half.canary.p99_us == pytest.approx(24700)
    assert half.baseline.p99_us == pytest.approx(2470)
    assert [b.threshold for b in half.breaches] == ["max_p99_ratio"]
    assert half.breaches[0].limit == pytest.approx(7410)
    assert half.enough_traffic is True


def test_table_shows_share_time_left_numbers_and_broken_thresholds() -> None:
    running = parse_running(RUNNING)
    status = collect(Path("r.json"), running, STARTED + 12.3, prometheus(FLEET), "http://mon:9090")
    lines = format_status(status)
    assert lines[0] == (
        "canary fleet-node1 (weight 67): 25% of new requests; baseline fleet-node2, node3.example"
    )
    assert lines[1] == "window 20 s: 12 s elapsed, 8 s left"
    assert lines[2] == "so far (last 13 s) from prometheus http://mon:9090"
    assert lines[3].split() == ["MODEL", "NODES", "REQUESTS", "ERROR", "RATIO", "P50", "MS", "P99",
                                "MS"]  # fmt: skip
    assert lines[4].split() == ["digits", "canary", "40", "0.0500", "1.75", "9.00"]
    assert lines[5].split() == ["baseline", "200", "0.0050", "1.00", "4.75"]
    assert lines[6].split() == ["half_plus_two", "canary", "60", "0.0000", "10.00", "24.70"]
    assert lines[7].split() == ["baseline", "120", "0.0000", "1.00", "2.47"]
    assert lines[8:] == [
        "thresholds: min_requests 50, max_error_ratio 0.01, max_error_ratio_vs_baseline 2, "
        "max_p99_ratio 3 (for information: the play decides)",
        "digits: not enough traffic yet, 40 canary requests < min_requests 50",
        "digits: breaks error ratio 0.0500 > max_error_ratio 0.01",
        "digits: breaks error ratio 0.0500 > 2 x the baseline's 0.0050 "
        "(max_error_ratio_vs_baseline)",
        "half_plus_two: breaks p99 24.70 ms > 3 x the baseline's 2.47 ms (max_p99_ratio)",
    ]


def test_error_ratio_against_baseline_only_counts_when_the_baseline_has_errors() -> None:
    thresholds = parse_running(RUNNING).thresholds
    # Under the absolute 1%, but 4x the baseline's 0.2%: breaks the ratio to the baseline.
    breaches = judge(Numbers(1000, 8, 1000, 2000), Numbers(1000, 2, 1000, 2000), thresholds)
    assert [(b.threshold, b.limit) for b in breaches] == [("max_error_ratio_vs_baseline", 0.004)]
    # 2x the baseline's exactly is allowed; a baseline without errors: only the absolute one.
    assert judge(Numbers(1000, 4, 1000, 2000), Numbers(1000, 2, 1000, 2000), thresholds) == []
    assert judge(Numbers(1000, 8, 1000, 2000), Numbers(1000, 0, 1000, 2000), thresholds) == []
    # p99 at 3x the baseline's is allowed, above it is not; no baseline p99: nothing to judge.
    assert judge(Numbers(100, 0, 1000, 6000), Numbers(100, 0, 1000, 2000), thresholds) == []
    assert [b.threshold for b in judge(Numbers(100, 0, 1, 6001), Numbers(100, 0, 1, 2000),
                                       thresholds)] == ["max_p99_ratio"]  # fmt: skip
    assert judge(Numbers(100, 0, 1000, 60000), Numbers(), thresholds) == []


def test_no_requests_yet_shows_dashes_and_no_breaks() -> None:
    # Early in the window Prometheus has no increase yet: empty answers, NaN quantiles.
    def nothing(expr: str) -> list[tuple[dict[str, str], float]]:
        return [({"model_name": "digits"}, math.nan)] if "histogram_quantile" in expr else []

    status = collect(Path("r.json"), parse_running(RUNNING), STARTED + 0.2, nothing, "http://m")
    assert status.range_seconds == 1 and status.models == []
    assert format_status(status)[2:4] == [
        "so far (last 1 s) from prometheus http://m",
        "(no requests counted yet for the canary or the baseline)",
    ]

    # Then the baseline's first requests, none yet at the canary.
    def baseline_only(expr: str) -> list[tuple[dict[str, str], float]]:
        if "histogram_quantile" in expr or "fleet-node1" in expr:
            return [({"model_name": "digits"}, math.nan)] if "histogram" in expr else []
        return [({"model_name": "digits"}, 30.0)] if "status" not in expr else []

    status = collect(Path("r.json"), parse_running(RUNNING), STARTED + 3, baseline_only, "u")
    lines = format_status(status)
    assert lines[4].split() == ["digits", "canary", "-", "-", "-", "-"]
    assert lines[5].split() == ["baseline", "30", "0.0000", "-", "-"]
    assert lines[-1] == "digits: not enough traffic yet, 0 canary requests < min_requests 50"
    assert status.models[0].breaches == []


def test_node_regex_matches_exactly_the_names() -> None:
    assert node_regex(["fleet-node1"]) == "fleet-node1"
    assert node_regex(["a.b", "c+d"]) == "a\\\\.b|c\\\\+d"


def write(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "running.json"
    path.write_text(json.dumps({**RUNNING, **changes}, indent=4) + "\n")
    return path


def test_no_file_means_no_canary_and_exit_code_10(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "running.json"
    assert main(["canary-status", "--file", str(path)]) == 10
    assert capsys.readouterr().out == f"no canary is running (no {path})\n"
    assert main(["canary-status", "--file", str(path), "--json"]) == 10
    assert json.loads(capsys.readouterr().out) == {"running": False, "file": str(path)}


def test_default_file_is_the_play_report_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(canary, "clock", lambda: STARTED + 5)
    report_dir = tmp_path / ".local/state/tfserving-fleet/canary"
    report_dir.mkdir(parents=True)
    write(report_dir)
    assert main(["canary-status"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "window 20 s: 5 s elapsed, 15 s left"


def test_direct_metrics_without_prometheus_still_show_share_and_time_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(canary, "clock", lambda: STARTED + 31.0)
    path = write(tmp_path, metrics="direct", duration=40, share=10, weight=11)
    assert main(["canary-status", "--file", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "canary fleet-node1 (weight 11): 10% of new requests; baseline fleet-node2, node3.example",
        "window 40 s: 31 s elapsed, 9 s left",
        "the play reads the servers directly (metrics: direct), so the numbers so far need "
        "Prometheus: give --prometheus URL if the fleet has one",
    ]
    assert main(["canary-status", "--file", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["share"], data["left"], data["metrics"], data["models"]) == (10, 9, "direct", [])
    assert "need Prometheus" in data["note"]


def test_json_through_prometheus_http_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(canary, "clock", lambda: STARTED + 20.4)
    path = write(tmp_path)
    with fake_prometheus(prometheus(FLEET)) as (url, queries):
        code = main(["canary-status", "--file", str(path), "--prometheus", url, "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["running"], data["canary"], data["baseline"]) == (
        True,
        ["fleet-node1"],
        ["fleet-node2", "node3.example"],
    )
    assert (data["share"], data["weight"], data["duration"], data["left"]) == (25, 67, 20, 0)
    assert data["range_seconds"] == 21 and all("[21s]" in q for q in queries)
    assert data["thresholds"]["max_p99_ratio"] == 3.0
    digits = data["models"][0]
    assert digits["model"] == "digits" and digits["enough_traffic"] is False
    assert digits["canary"] == pytest.approx(
        {"requests": 40, "failed": 2, "error_ratio": 0.05, "p50_us": 1750, "p99_us": 9000}
    )
    assert digits["baseline"]["requests"] == 200
    half = data["models"][1]
    assert [(b["threshold"], round(b["canary"]), round(b["limit"])) for b in half["breaches"]] == [
        ("max_p99_ratio", 24700, 7410)
    ]


def test_window_over_says_the_verdict_is_being_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(canary, "clock", lambda: STARTED + 26.0)
    path = write(tmp_path, metrics="prometheus")
    assert main(["canary-status", "--file", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "window 20 s: 26 s elapsed, over 6 s ago, the verdict is being made",
        "give --prometheus URL (the fleet's) for the numbers so far",
    ]


def test_prometheus_unreachable_still_shows_the_canary_and_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(canary, "clock", lambda: STARTED + 2.0)
    path = write(tmp_path)
    code = main(["canary-status", "--file", str(path), "--prometheus", "http://127.0.0.1:1",
                 "--timeout", "2"])  # fmt: skip
    assert code == 3
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "window 20 s: 2 s elapsed, 18 s left"
    assert out[2].startswith("no numbers so far: cannot query Prometheus at http://127.0.0.1:1")


def test_a_file_that_is_not_the_play_s_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, started="yesterday")
    assert main(["canary-status", "--file", str(path)]) == 2
    assert "is not a canary's running file: 'started' must be a number" in capsys.readouterr().err
    path.write_text("{not json")
    assert main(["canary-status", "--file", str(path)]) == 2


def test_numbers_written_as_strings_are_read() -> None:
    running = parse_running({**RUNNING, "share": "25", "duration": "40", "started": "1.5"})
    assert (running.share, running.duration, running.started) == (25, 40, 1.5)


def test_latencies_are_those_of_the_calls_that_run_the_model() -> None:
    """Status calls (the load balancer's health checks) are left out of p50 and p99."""
    for name in ("p50_us", "p99_us"):
        expr = canary.queries(["fleet-node1"], 30)[name]
        assert 'API=~"(?i)predict|classify|regress|multi_?inference"' in expr, expr
    assert "API" not in canary.queries(["fleet-node1"], 30)["requests"]
