"""Flags and config files: what parses, what is refused, and how the CLI reports it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from tfs_standin import config, flags
from tfs_standin.server import StartupError

from conftest import HALF_PLUS_TWO, STANDIN_DIR, free_port, make_server, wait_until


def test_tf_serving_good_config_parses(testdata: Path) -> None:
    cfg = config.read_model_config_file(str(testdata / "good_model_config.txt"))
    assert [c.name for c in cfg.model_config_list.config] == ["half_plus_two", "half_plus_three"]
    assert all(c.model_platform == "tensorflow" for c in cfg.model_config_list.config)


def test_tf_serving_bad_config_is_rejected(testdata: Path) -> None:
    path = str(testdata / "bad_model_config.txt")
    with pytest.raises(config.ConfigError) as err:
        config.read_model_config_file(path)
    assert path in str(err.value)
    assert "\n" not in str(err.value)


def test_monitoring_and_batching_configs_parse(testdata: Path) -> None:
    mon = config.read_monitoring(str(testdata / "monitoring_config.txt"))
    assert mon is not None
    assert mon.prometheus_config.enable is True  # type: ignore[attr-defined]
    assert mon.prometheus_config.path == "/monitoring/prometheus/metrics"  # type: ignore[attr-defined]
    batching = config.read_batching(str(testdata / "batching_config.txt"))
    assert batching is not None
    assert batching.max_batch_size.value == 128  # type: ignore[attr-defined]
    assert batching.num_batch_threads.value == 8  # type: ignore[attr-defined]


def test_misspelled_field_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "monitoring.config"
    bad.write_text('prometheus_config { enabled: true path: "/m" }')
    with pytest.raises(config.ConfigError, match="monitoring config file"):
        config.read_monitoring(str(bad))


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ('model_config_list { config { name: "a" } }', "empty base_path"),
        (
            'model_config_list { config { name: "a" base_path: "/x" } '
            'config { name: "a" base_path: "/y" } }',
            "more than once",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/x" model_platform: "onnx" } }',
            "model_platform",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/x" '
            'version_labels { key: "bad-label" value: 1 } } }',
            "version label",
        ),
    ],
)
def test_semantic_config_errors(tmp_path: Path, cfg: str, message: str) -> None:
    path = tmp_path / "models.config"
    path.write_text(cfg)
    with pytest.raises(config.ConfigError, match=message):
        config.read_model_config_file(str(path))


def test_flag_defaults_and_both_spellings() -> None:
    opts = flags.parse([])
    assert (opts.port, opts.rest_api_port, opts.model_name) == (8500, 0, "default")
    assert opts.file_system_poll_wait_seconds == 1
    assert opts.model_config_file_poll_wait_seconds == 0
    assert (opts.max_num_load_retries, opts.load_retry_interval_micros) == (5, 60_000_000)
    assert opts.enable_model_warmup is True and opts.enable_batching is False
    opts = flags.parse(["--port", "9000", "--rest_api_port=9001", "--enable_batching"])
    assert (opts.port, opts.rest_api_port, opts.enable_batching) == (9000, 9001, True)
    assert flags.parse(["--enable_model_warmup=false"]).enable_model_warmup is False


@pytest.mark.parametrize("argv", [["--bogus_flag=1"], ["--port=abc"], ["--enable_batching=maybe"]])
def test_bad_flags_exit_non_zero(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        flags.parse(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_batching_file_needs_enable_batching(testdata: Path) -> None:
    args = [f"--model_base_path={testdata / HALF_PLUS_TWO}"]
    batching = f"--batching_parameters_file={testdata / 'batching_config.txt'}"
    with pytest.raises(StartupError, match="without --enable_batching"):
        make_server([*args, batching])
    make_server([*args, batching, "--enable_batching"])  # accepted together


def test_no_model_is_an_error() -> None:
    with pytest.raises(StartupError, match="--model_base_path and --model_config_file"):
        make_server([])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tfs_standin", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(STANDIN_DIR), "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_cli_version_and_unknown_flag() -> None:
    out = subprocess.run(_cli("--version"), capture_output=True, text=True, env=_env(), check=False)
    assert out.returncode == 0 and "stand-in" in out.stdout
    bad = subprocess.run(_cli("--nope"), capture_output=True, text=True, env=_env(), check=False)
    assert bad.returncode == 2 and "--nope" in bad.stderr


def test_cli_bad_config_file_is_one_line_and_exit_1(testdata: Path) -> None:
    path = testdata / "bad_model_config.txt"
    out = subprocess.run(
        _cli(f"--model_config_file={path}"),
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
        timeout=120,
    )
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if "stand-in): error:" in ln]
    assert len(lines) == 1 and str(path) in lines[0]


def test_cli_serves_and_stops_on_sigterm(testdata: Path) -> None:
    rest = free_port()
    proc = subprocess.Popen(
        _cli(
            f"--port={free_port()}",
            f"--rest_api_port={rest}",
            "--model_name=half_plus_two",
            f"--model_base_path={testdata / HALF_PLUS_TWO}",
            "--standin_bind_address=127.0.0.1",
        ),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{rest}/v1/models/half_plus_two:predict"

        def answers() -> bool:
            try:
                return requests.post(url, json={"instances": [1.0]}, timeout=2).ok
            except requests.ConnectionError:
                assert proc.poll() is None, "the server exited"
                return False

        wait_until(answers, timeout=90, what="the CLI server to answer")
        r = requests.post(url, json={"instances": [1.0, 2.0, 5.0]}, timeout=10)
        assert r.json() == {"predictions": [2.5, 3.0, 4.5]}
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        # No signal handler, as in tensorflow_model_server: the signal ends the process.
        assert proc.wait(timeout=30) == -signal.SIGTERM
        assert time.monotonic() - start < 30
        log = proc.stderr.read() if proc.stderr else ""
        assert "Successfully loaded servable version {name: half_plus_two version: 123}" in log
        assert "Exporting HTTP/REST API" in log
        assert "Unloading servable" not in log, "nothing drains or unloads on SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
