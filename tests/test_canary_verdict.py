"""The canary's verdict (plugins/filter/canary.py) on recorded metrics: a window from two
scrapes or from Prometheus, the baseline summed over its nodes, quantiles as Prometheus
computes them, and pass, fail on errors, fail on latency, not enough traffic, counter resets,
a baseline without errors. The fixtures are described in tests/fixtures/canary/README.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import required_tools
import yaml
from ansible.errors import AnsibleFilterError
from plugin_files import load_plugin

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "canary"
canary = load_plugin("filter", "canary")

PROMTOOL = shutil.which("promtool") or str(ROOT / ".cache" / "bin" / "promtool")
needs_promtool = required_tools.needs(
    os.access(PROMTOOL, os.X_OK), "promtool missing: run scripts/promtool.sh"
)

MODEL = "half_plus_two"
THRESHOLDS = {
    "min_requests": 100,
    "max_error_ratio": 0.01,
    "max_error_ratio_vs_baseline": 2,
    "max_p99_ratio": 3,
}


def text(name: str) -> str:
    return (FIXTURES / name).read_text()


def answer(name: str) -> dict[str, Any]:
    return json.loads(text(name))


def window(node: str, after: str = "after") -> dict[str, Any]:
    return canary.tfserving_canary_delta(
        text(f"{node}_{after}.txt"), text(f"{node}_before.txt"), node
    )


def baseline() -> dict[str, Any]:
    return canary.tfserving_canary_sum([window("node2"), window("node3")])


def canary_window(scenario: str) -> dict[str, Any]:
    return canary.tfserving_canary_delta(
        text(f"node1_after_{scenario}.txt"), text("node1_before.txt"), "node-1"
    )


def verdict(scenario: str, **kwargs: Any) -> dict[str, Any]:
    thresholds = {**THRESHOLDS, **kwargs.pop("thresholds", {})}
    return canary.tfserving_canary_verdict(
        canary_window(scenario), baseline(), kwargs.pop("failures", 0), thresholds, **kwargs
    )


def buckets(pairs: dict[str, float]) -> dict[str, Any]:
    return {"latency_buckets": pairs}


# ----- parsing and windows -----------------------------------------------------------------
def test_parse_sums_statuses_and_latency_over_api_and_entrypoint() -> None:
    stats = canary.tfserving_canary_parse(text("node1_after_strict.txt"))
    assert stats["restarts"] == []
    assert sorted(stats["models"]) == [MODEL, "query_of_death"]
    model = stats["models"][MODEL]
    # history: 610 OK at 0.3 ms (gRPC) and 25 at 0.8 ms (REST); window: 100 OK, 20 refused
    assert model["statuses"] == {"INVALID_ARGUMENT": 20, "OK": 735}
    assert (model["requests"], model["errors"]) == (755, 20)
    lat = model["latency_buckets"]
    assert list(lat)[:5] == ["10", "25", "50", "100", "250"]
    assert list(lat)[-1] == "+Inf"
    assert (lat["250"], lat["500"], lat["1000"], lat["2500"], lat["+Inf"]) == (
        20,
        718,
        727 + 25,
        730 + 25,
        755,
    )


def test_a_window_is_after_minus_before_per_status_and_bucket() -> None:
    stats = window("node3")
    assert stats["restarts"] == []
    model = stats["models"][MODEL]
    assert model["statuses"] == {"INVALID_ARGUMENT": 1, "OK": 500}
    assert (model["requests"], model["errors"]) == (501, 1)
    lat = model["latency_buckets"]
    assert (lat["100"], lat["250"], lat["500"], lat["1000"], lat["2500"], lat["+Inf"]) == (
        0,
        1,
        441,
        486,
        501,
        501,
    )
    # query_of_death served nothing in the window
    assert stats["models"]["query_of_death"]["requests"] == 0


def test_a_status_first_seen_within_the_window_counts_from_zero() -> None:
    model = canary_window("strict")["models"][MODEL]
    assert model["statuses"] == {"INVALID_ARGUMENT": 20, "OK": 100}


def test_a_counter_reset_takes_the_page_after_as_the_window_and_flags_the_server() -> None:
    stats = canary_window("restart")
    assert stats["restarts"] == ["node-1"]
    assert stats["models"][MODEL]["statuses"] == {"OK": 150}
    assert stats["models"][MODEL]["latency_buckets"]["500"] == 132
    # the restarted server has not served the idle model since
    assert "query_of_death" not in stats["models"]
    result = canary.tfserving_canary_verdict(stats, baseline(), 0, THRESHOLDS)
    assert result["verdict"] == "pass"
    assert result["restarts"] == ["node-1"]
    assert any("node-1 (canary) restarted within the window" in n for n in result["notes"])


def test_the_baseline_sums_its_nodes() -> None:
    model = baseline()["models"][MODEL]
    assert model["statuses"] == {"INVALID_ARGUMENT": 1, "OK": 1000}
    lat = model["latency_buckets"]
    assert (lat["250"], lat["500"], lat["1000"], lat["2500"], lat["+Inf"]) == (
        1,
        881,
        971,
        1001,
        1001,
    )


def test_sum_of_different_bucket_layouts_counts_each_at_its_nearest_lower_bound() -> None:
    one = {"models": {MODEL: {"statuses": {"OK": 4}, "latency_buckets": {"10": 1, "+Inf": 4}}}}
    two = {"models": {MODEL: {"statuses": {"OK": 2}, "latency_buckets": {"20": 2, "+Inf": 2}}}}
    summed = canary.tfserving_canary_sum([one, two])["models"][MODEL]
    assert summed["latency_buckets"] == {"10": 1, "20": 3, "+Inf": 6}
    assert summed["requests"] == 6


def test_the_exponential_layout_parses_and_resolves_1_8() -> None:
    stats = canary.tfserving_canary_parse(text("exponential_buckets.txt"))
    model = stats["models"][MODEL]
    assert (model["requests"], model["errors"]) == (202, 2)
    assert model["latency_buckets"]["340.12224"] == 100
    assert canary.tfserving_canary_resolution(stats) == 1.8
    # the median: the 101st of 202 requests, 1 % into the bucket (340.12224, 612.220032]
    p50 = canary.tfserving_canary_quantile(model, 0.5)
    assert p50 == pytest.approx(340.12224 + (612.220032 - 340.12224) * 0.01)


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("<html><body>502 Bad Gateway</body></html>\n", "line 1 is not a Prometheus sample"),
        (':tensorflow:serving:request_count{status="OK"} 3\n', "has no model_name label"),
        (':tensorflow:serving:request_count{model_name="m",status="OK"} many\n', "not a number"),
    ],
)
def test_a_page_that_is_not_metrics_fails_clearly(page: str, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        canary.tfserving_canary_parse(page)


def test_labels_with_escapes_and_commas_parse() -> None:
    page = (
        ':tensorflow:serving:request_count{model_name="a,\\"b\\"",status="OK"} 2 1796624227000\n'
        '# a comment\n\n:other_metric{x="y"} 1\n'
    )
    assert canary.tfserving_canary_parse(page)["models"] == {
        'a,"b"': {"requests": 2, "errors": 0, "statuses": {"OK": 2}, "latency_buckets": {}}
    }


# ----- quantiles and resolution ------------------------------------------------------------
def test_quantiles_interpolate_inside_the_bucket_as_prometheus_does() -> None:
    base = baseline()["models"][MODEL]
    # p50: request 500.5 of 1001; bucket (250, 500] holds 880 from the 2nd on
    assert canary.tfserving_canary_quantile(base, 0.5) == pytest.approx(250 + 250 * 499.5 / 880)
    # p99: request 990.99; bucket (1000, 2500] holds 30 from the 972nd on
    assert canary.tfserving_canary_quantile(base, 0.99) == pytest.approx(1999.5)


@pytest.mark.parametrize(
    ("pairs", "q", "want"),
    [
        ({"100": 0, "250": 10, "+Inf": 10}, 0.5, 175.0),
        ({"10": 4, "+Inf": 4}, 0.5, 5.0),  # the first bucket starts at 0
        ({"100": 5, "+Inf": 10}, 0.99, 100.0),  # in +Inf: the largest finite bound
        ({"100": 6, "250": 5, "+Inf": 10}, 0.5, 500 / 6),  # made monotonic first
        ({"100": 0, "+Inf": 0}, 0.5, None),
        ({}, 0.99, None),
    ],
)
def test_quantile_edges(pairs: dict[str, float], q: float, want: float | None) -> None:
    got = canary.tfserving_canary_quantile(buckets(pairs), q)
    assert got == (None if want is None else pytest.approx(want))


def test_quantile_outside_0_to_1_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match=r"must lie in 0\.\.1"):
        canary.tfserving_canary_quantile(buckets({"10": 1, "+Inf": 1}), 99)


def test_resolution_of_the_1_2_5_5_layout_is_2_5() -> None:
    assert canary.tfserving_canary_resolution() == 2.5
    assert canary.tfserving_canary_resolution(baseline()) == 2.5
    assert canary.tfserving_canary_resolution(buckets({"5": 0, "10": 0, "+Inf": 0})) == 2.0


# ----- the verdict -------------------------------------------------------------------------
def test_pass_when_the_canary_looks_like_the_baseline() -> None:
    result = verdict("good")
    assert result["verdict"] == "pass"
    assert result["reasons"] == []
    assert result["summary"] == "half_plus_two within every threshold"
    rows = {r["role"]: r for r in result["rows"]}
    assert (rows["canary"]["requests"], rows["canary"]["errors"]) == (100, 0)
    assert rows["canary"]["error_ratio"] == 0
    assert rows["canary"]["p99_ms"] == pytest.approx(2.0)
    assert rows["canary"]["p50_ms"] == pytest.approx((250 + 250 * 50 / 88) / 1000, abs=1e-6)
    assert rows["baseline"]["requests"] == 1001
    assert rows["baseline"]["error_ratio"] == pytest.approx(1 / 1001)
    assert rows["baseline"]["p99_ms"] == pytest.approx(1.9995)
    # query_of_death had no requests on either side
    assert [r["model"] for r in result["rows"]] == [MODEL, MODEL]
    assert "not judged: query_of_death" in " ".join(result["notes"])


def test_the_table_lists_requests_error_ratio_p50_and_p99() -> None:
    table = verdict("strict")["table"].splitlines()
    assert table[0].split() == [
        "model",
        "role",
        "requests",
        "errors",
        "error",
        "ratio",
        "p50",
        "p99",
    ]
    assert table[1].split() == [MODEL, "canary", "120", "20", "16.67%", "0.364", "ms", "1.90", "ms"]
    assert table[2].split() == [
        MODEL,
        "baseline",
        "1001",
        "1",
        "0.10%",
        "0.392",
        "ms",
        "2.00",
        "ms",
    ]


def test_fail_on_errors_names_model_metric_values_and_threshold() -> None:
    result = verdict("strict")
    assert result["verdict"] == "fail"
    absolute, relative = result["reasons"]
    assert absolute["model"] == MODEL
    assert absolute["metric"] == "error_ratio"
    assert absolute["canary"] == pytest.approx(20 / 120)
    assert absolute["baseline"] == pytest.approx(1 / 1001)
    assert absolute["threshold"] == 0.01
    assert absolute["text"] == (
        "half_plus_two: canary error ratio 0.1667 (20 of 120) is above max_error_ratio 0.01"
        " (baseline 0.0010)"
    )
    assert relative["metric"] == "error_ratio_vs_baseline"
    assert relative["threshold"] == 2
    assert "taken as 0.0083, one error in the canary's 120 requests" in relative["text"]
    assert result["summary"] == f"{absolute['text']}; {relative['text']}"


def test_fail_on_latency() -> None:
    result = verdict("slow")
    assert result["verdict"] == "fail"
    [reason] = result["reasons"]
    assert reason["metric"] == "p99_ms"
    # 100 requests at 30 ms: p99 interpolated in (25, 50] ms
    assert reason["canary"] == pytest.approx(49.75)
    assert reason["baseline"] == pytest.approx(1.9995)
    assert reason["threshold"] == 3
    assert reason["text"] == (
        "half_plus_two: canary p99 49.8 ms is 24.9x the baseline's 2.00 ms, above"
        " max_p99_ratio 3 (the buckets resolve ratios of 2.5x and more)"
    )


def test_the_latency_check_can_be_turned_off() -> None:
    assert verdict("slow", thresholds={"max_p99_ratio": None})["verdict"] == "pass"


def test_not_enough_traffic_is_never_a_pass() -> None:
    result = verdict("few")
    assert result["verdict"] == "not_enough_traffic"
    [reason] = result["reasons"]
    assert (reason["metric"], reason["canary"], reason["baseline"], reason["threshold"]) == (
        "requests",
        40,
        1001,
        100,
    )
    assert verdict("few", thresholds={"min_requests": 40})["verdict"] == "pass"


def test_a_model_named_but_without_requests_is_not_enough_traffic() -> None:
    result = verdict("good", models=[MODEL, "query_of_death"])
    assert result["verdict"] == "not_enough_traffic"
    assert [r["model"] for r in result["reasons"]] == ["query_of_death"]


def test_no_requests_anywhere_is_not_enough_traffic() -> None:
    still = canary.tfserving_canary_delta(text("node1_before.txt"), text("node1_before.txt"))
    result = canary.tfserving_canary_verdict(still, still, 0, THRESHOLDS)
    assert result["verdict"] == "not_enough_traffic"
    assert result["reasons"][0]["text"].endswith(
        "no requests in the window on the canary or the baseline"
    )


def test_a_failing_model_outweighs_one_short_of_traffic() -> None:
    slow = canary_window("slow")
    slow["models"]["other"] = {"statuses": {"OK": 3}, "latency_buckets": {"+Inf": 3}}
    result = canary.tfserving_canary_verdict(slow, baseline(), 0, THRESHOLDS)
    assert result["verdict"] == "fail"
    assert [r["metric"] for r in result["reasons"]] == ["p99_ms"]


def test_transport_failures_count_as_canary_requests_and_errors() -> None:
    result = verdict("good", failures=5)
    assert result["verdict"] == "fail"
    reason = result["reasons"][0]
    assert reason["metric"] == "error_ratio"
    assert reason["canary"] == pytest.approx(5 / 105)
    canary_row = result["rows"][0]
    assert (canary_row["requests"], canary_row["errors"]) == (105, 5)


def test_a_canary_that_refuses_every_connection_fails() -> None:
    """TF Serving counted nothing; the load balancer saw 150 failed connections."""
    nothing = canary.tfserving_canary_delta(text("node1_before.txt"), text("node1_before.txt"))
    result = canary.tfserving_canary_verdict(nothing, baseline(), 150, THRESHOLDS)
    assert result["verdict"] == "fail"
    assert result["reasons"][0]["canary"] == 1.0
    assert result["rows"][0]["p99_ms"] is None


def test_zero_baseline_errors_do_not_make_one_canary_error_a_failure() -> None:
    clean = window("node2")  # 500 requests, no errors
    three = canary_window("three_errors")  # 3 of 100
    loose = {**THRESHOLDS, "max_error_ratio": 0.05}
    result = canary.tfserving_canary_verdict(three, clean, 0, loose)
    # 0.03 > 2 x max(0, 1/100): the relative check fails, without dividing by zero
    assert result["verdict"] == "fail"
    [reason] = result["reasons"]
    assert reason["metric"] == "error_ratio_vs_baseline"
    assert (reason["canary"], reason["baseline"], reason["threshold"]) == (0.03, 0.0, 2)
    # 3 x one error's worth (0.01) is not exceeded by 0.03
    assert (
        canary.tfserving_canary_verdict(
            three, clean, 0, {**loose, "max_error_ratio_vs_baseline": 3}
        )["verdict"]
        == "pass"
    )
    # one error in 100 against a clean baseline passes both checks
    one = {"models": {MODEL: {**three["models"][MODEL], "statuses": {"OK": 99, "X": 1}}}}
    assert canary.tfserving_canary_verdict(one, clean, 0, THRESHOLDS)["verdict"] == "pass"


def test_without_a_baseline_only_the_absolute_ratio_is_checked() -> None:
    empty = {"models": {}, "restarts": []}
    assert (
        canary.tfserving_canary_verdict(canary_window("slow"), empty, 0, THRESHOLDS)["verdict"]
        == "pass"
    )
    result = canary.tfserving_canary_verdict(canary_window("strict"), empty, 0, THRESHOLDS)
    assert [r["metric"] for r in result["reasons"]] == ["error_ratio"]
    assert "No baseline requests" in " ".join(result["notes"])


def test_a_p99_threshold_below_the_resolution_is_noted() -> None:
    result = verdict("good", thresholds={"max_p99_ratio": 2})
    assert any("below the latency buckets' resolution 2.5" in n for n in result["notes"])
    assert not any("resolution" in n for n in verdict("good")["notes"])


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ({"max_error": 0.1}, "Unknown canary thresholds"),
        ({"min_requests": 0}, "min_requests must be a whole number"),
        ({"max_p99_ratio": 0.5}, "1 or more"),
        ({"max_error_ratio": "a lot"}, "not a number"),
    ],
)
def test_bad_thresholds_are_refused(thresholds: dict[str, Any], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        canary.tfserving_canary_verdict(canary_window("good"), baseline(), 0, thresholds)


def test_negative_transport_failures_are_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="counters were reset"):
        verdict("good", failures=-2)


# ----- Prometheus --------------------------------------------------------------------------
def test_queries() -> None:
    assert canary.tfserving_canary_queries("node-1", 60) == {
        "requests": "sum by (model_name, status) (increase(:tensorflow:serving:request_count"
        '{job="tfserving",node="node-1"}[60s]))',
        "latency": "sum by (model_name, le) (increase(:tensorflow:serving:request_latency_bucket"
        '{job="tfserving",node="node-1",API=~"(?i)predict|classify|regress|multi_?inference"}'
        "[60s]))",
        "transport_failures": '(sum(increase(haproxy_server_connection_errors_total{job="haproxy"'
        ',proxy=~"tfserving_grpc|tfserving_rest",server=~"node-1"}[60s])) or vector(0)) + '
        '(sum(increase(haproxy_server_response_errors_total{job="haproxy",'
        'proxy=~"tfserving_grpc|tfserving_rest",server=~"node-1"}[60s])) or vector(0))',
    }
    several = canary.tfserving_canary_queries(["node-2", "db.3"], 90, backends=["tfserving_grpc"])
    assert '{job="tfserving",node=~"node-2|db\\\\.3"}[90s]' in several["requests"]
    assert (
        'proxy=~"tfserving_grpc",server=~"node-2|db\\\\.3"}[90s]' in several["transport_failures"]
    )
    with pytest.raises(AnsibleFilterError, match="positive"):
        canary.tfserving_canary_queries("node-1", 0)


def test_prometheus_answers_give_the_same_verdict_as_the_scrapes() -> None:
    can = canary.tfserving_canary_from_prometheus(
        answer("prometheus_canary_strict_requests.json"),
        answer("prometheus_canary_strict_latency.json"),
    )
    base = canary.tfserving_canary_from_prometheus(
        answer("prometheus_baseline_requests.json")["data"]["result"],
        text("prometheus_baseline_latency.json"),
    )
    # increase() extrapolates: every count x 1.008
    assert can["models"][MODEL]["statuses"] == {
        "INVALID_ARGUMENT": pytest.approx(20.16),
        "OK": pytest.approx(100.8),
    }
    assert base["models"][MODEL]["requests"] == pytest.approx(1009.008)
    failures = canary.tfserving_canary_prometheus_number(
        answer("prometheus_transport_failures.json")
    )
    assert failures == 3
    assert canary.tfserving_canary_prometheus_number(answer("prometheus_no_failures.json")) == 0
    from_prometheus = canary.tfserving_canary_verdict(can, base, 0, THRESHOLDS)
    from_scrapes = verdict("strict")
    assert from_prometheus["verdict"] == from_scrapes["verdict"] == "fail"
    for got, want in zip(from_prometheus["reasons"], from_scrapes["reasons"], strict=True):
        assert got["metric"] == want["metric"]
        assert got["canary"] == pytest.approx(want["canary"])
        assert got["baseline"] == pytest.approx(want["baseline"])
    # the quantiles do not move when every bucket scales alike
    assert from_prometheus["rows"][0]["p99_ms"] == pytest.approx(1.9)
    with_failures = canary.tfserving_canary_verdict(can, base, failures, THRESHOLDS)
    assert with_failures["rows"][0]["errors"] == pytest.approx(23.16)


def test_a_prometheus_error_is_reported() -> None:
    refused = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
    with pytest.raises(AnsibleFilterError, match="bad_data parse error at char 3"):
        canary.tfserving_canary_from_prometheus(refused, [])
    grouped_wrong = [{"metric": {"model_name": MODEL}, "value": [1, "4"]}]
    with pytest.raises(AnsibleFilterError, match="group it by model_name and status"):
        canary.tfserving_canary_from_prometheus(grouped_wrong, [])


@needs_promtool
def test_the_queries_select_and_sum_what_they_should_in_prometheus(tmp_path: Path) -> None:
    """Prometheus itself evaluates the query strings over a fleet's series: the canary's
    node only, the baseline's two summed, HAProxy's two error counters added (0 without).

    Each counter is 0 until 45 s before the evaluation, so increase() needs no
    extrapolation and gives the plain difference.
    """

    def series(name: str, labels: dict[str, str], last: int) -> dict[str, str]:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return {"series": f"{name}{{{inner}}}", "values": f"0x13 {last // 2} {last} {last}"}

    count, bucket = canary.REQUEST_COUNT, canary.REQUEST_LATENCY_BUCKET
    inputs = []
    for node, ok, bad in (("node-1", 90, 10), ("node-2", 400, 0), ("node-3", 380, 2)):
        serving = {"job": "tfserving", "node": node, "model_name": MODEL}
        inputs.append(series(count, {**serving, "status": "OK"}, ok))
        if bad:
            inputs.append(series(count, {**serving, "status": "INVALID_ARGUMENT"}, bad))
        for entrypoint in ("GRPC", "REST"):
            labels = {**serving, "API": "predict", "entrypoint": entrypoint}
            inputs.append(series(bucket, {**labels, "le": "500"}, (ok + bad) // 2))
            inputs.append(series(bucket, {**labels, "le": "+Inf"}, (ok + bad) // 2))
    lb = {"job": "haproxy", "node": "lb-1", "proxy": "tfserving_grpc", "server": "node-1"}
    inputs.append(series(canary.LB_CONNECTION_ERRORS, lb, 4))
    inputs.append(series(canary.LB_RESPONSE_ERRORS, lb, 2))
    inputs.append(series(canary.LB_RESPONSE_ERRORS, {**lb, "server": "node-2"}, 6))
    inputs.append(series(canary.LB_RESPONSE_ERRORS, {**lb, "proxy": "stats"}, 50))

    one = canary.tfserving_canary_queries("node-1", 60)
    two = canary.tfserving_canary_queries(["node-2", "node-3"], 60)
    quiet = canary.tfserving_canary_queries("node-3", 60)
    at = {"eval_time": "4m"}
    cases = [
        {
            **at,
            "expr": one["requests"],
            "exp_samples": [
                {"labels": '{model_name="half_plus_two",status="INVALID_ARGUMENT"}', "value": 10},
                {"labels": '{model_name="half_plus_two",status="OK"}', "value": 90},
            ],
        },
        {
            **at,
            "expr": two["requests"],
            "exp_samples": [
                {"labels": '{model_name="half_plus_two",status="INVALID_ARGUMENT"}', "value": 2},
                {"labels": '{model_name="half_plus_two",status="OK"}', "value": 780},
            ],
        },
        {
            **at,
            "expr": one["latency"],
            "exp_samples": [
                {"labels": '{le="+Inf",model_name="half_plus_two"}', "value": 100},
                {"labels": '{le="500",model_name="half_plus_two"}', "value": 100},
            ],
        },
        {**at, "expr": one["transport_failures"], "exp_samples": [{"labels": "{}", "value": 6}]},
        {**at, "expr": two["transport_failures"], "exp_samples": [{"labels": "{}", "value": 6}]},
        {**at, "expr": quiet["transport_failures"], "exp_samples": [{"labels": "{}", "value": 0}]},
    ]
    tests = tmp_path / "tests.yml"
    tests.write_text(
        yaml.safe_dump(
            {
                "evaluation_interval": "15s",
                "tests": [{"interval": "15s", "input_series": inputs, "promql_expr_test": cases}],
            }
        )
    )
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrapes_give_the_canary_its_own_window_and_the_baseline_the_sum_of_the_others() -> None:
    after = [text("node1_after_strict.txt"), text("node2_after.txt"), text("node3_after.txt")]
    before = [text("node1_before.txt"), text("node2_before.txt"), text("node3_before.txt")]
    sides = canary.tfserving_canary_scrapes(after, before, ["node-1", "node2", "node3"])
    assert sides["canary"] == canary_window("strict")
    assert sides["baseline"] == baseline()


def test_scrapes_refuse_pages_that_do_not_pair_with_the_servers() -> None:
    with pytest.raises(AnsibleFilterError, match="one page at each end per server"):
        canary.tfserving_canary_scrapes([text("node2_after.txt")], [], ["node2"])


def test_answers_are_read_as_canary_then_baseline() -> None:
    answers = [
        answer("prometheus_canary_strict_requests.json"),
        answer("prometheus_canary_strict_latency.json"),
        answer("prometheus_baseline_requests.json"),
        answer("prometheus_baseline_latency.json"),
    ]
    sides = canary.tfserving_canary_answers(answers)
    assert sides["canary"] == canary.tfserving_canary_from_prometheus(answers[0], answers[1])
    assert sides["baseline"] == canary.tfserving_canary_from_prometheus(answers[2], answers[3])
    assert sides["canary"] != sides["baseline"]
    with pytest.raises(AnsibleFilterError, match="four answers"):
        canary.tfserving_canary_answers(answers[:2])


def test_status_calls_are_not_traffic_nor_latency() -> None:
    """The load balancer's health checks and the probes ask each model's status: they are
    OK requests in request_count, but neither the model's latency nor its traffic."""
    stats = canary.tfserving_canary_parse(text("status_calls.txt"))
    assert stats["models"]["m"]["latency_buckets"] == {"10000": 0, "25000": 90, "+Inf": 90}
    assert stats["models"]["m"]["requests"] == 130
    result = canary.tfserving_canary_verdict(stats, stats, 0, {"min_requests": 100})
    # 90 predictions are fewer than 100, whatever the 40 status calls add
    assert result["verdict"] == "not_enough_traffic"
    assert [r["model"] for r in result["reasons"]] == ["m"]
    assert result["reasons"][0]["canary"] == 90
    # a model only ever asked for its status is not judged
    assert any("not judged: checked_only" in note for note in result["notes"])
    assert canary.tfserving_canary_verdict(stats, stats, 0, {"min_requests": 90})["verdict"] == (
        "pass"
    )
