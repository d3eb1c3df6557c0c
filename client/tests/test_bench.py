from __future__ import annotations

import json

import grpc
import pytest
from tfs_client import bench
from tfs_client.cli import main


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "digit.jpg"
    path.write_bytes(b"\xff\xd8" + b"7" * 15)
    return path


def test_bench_requests_json(fake, capsys, image):
    servicer, server = fake
    code = main(
        [
            "bench",
            "--server",
            server,
            "--model",
            "digits",
            "--image",
            str(image),
            "--concurrency",
            "4",
            "--requests",
            "40",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert err == ""  # no progress bar: stderr is not a terminal
    summary = json.loads(out)
    assert summary["concurrency"] == 4
    assert (summary["requests"], summary["ok"], summary["errors"]) == (40, 40, {})
    lat = summary["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert summary["qps"] > 0
    calls = servicer.calls("Predict")
    assert len(calls) == 41  # one warm-up call, then the measured ones
    assert all(c == calls[0] for c in calls)
    assert list(calls[0].inputs["images"].string_val) == [image.read_bytes()]
    assert calls[0].model_spec.signature_name == "predict_images"


def test_bench_duration_text_and_input(fake, capsys):
    servicer, server = fake
    code = main(
        [
            "bench",
            "--server",
            server,
            "--model",
            "half_plus_two",
            "--input",
            "x=[[1.0]]",
            "--duration",
            "0.3",
            "--concurrency",
            "2",
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("concurrency 2: ")
    seconds = float(lines[0].split(" in ")[1].split()[0])
    assert 0.3 <= seconds < 1.5
    assert lines[1].startswith("throughput ") and "p99" in lines[2]
    assert lines[3] == "errors      none"
    assert len(servicer.calls("Predict")) > 2


def test_bench_counts_errors_and_exits_1(fake, capsys, image):
    servicer, server = fake
    servicer.fail_next = [None, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED]
    code = main(
        [
            "bench",
            "--server",
            server,
            "--model",
            "digits",
            "--image",
            str(image),
            "--requests",
            "10",
            "--json",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 1
    assert summary["ok"] == 8
    assert summary["errors"] == {"RESOURCE_EXHAUSTED": 1, "UNAVAILABLE": 1}


def test_bench_stops_on_failed_warm_up(fake, capsys, image):
    servicer, server = fake
    code = main(
        ["bench", "--server", server, "--model", "nope", "--image", str(image), "--requests", "10"]
    )
    assert code == 4
    assert len(servicer.calls("Predict")) == 1


def test_run_needs_exactly_one_limit():
    with pytest.raises(ValueError):
        bench.run(lambda: None, 1)
    with pytest.raises(ValueError):
        bench.run(lambda: None, 1, duration=1.0, requests=1)


def test_run_counts_requests_exactly_across_threads():
    seen = []
    result = bench.run(lambda: seen.append(1), concurrency=8, requests=1000)
    assert len(seen) == 1000 == result.ok == result.requests
    assert len(result.latencies_ms) == 1000
