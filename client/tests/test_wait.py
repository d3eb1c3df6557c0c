"""``tfs-client wait``: the deployment gate's one definition of ready."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from fake_server import State
from tfs_client.api import VersionStatus
from tfs_client.cli import main
from tfs_client.gate import Verdict, VersionTracker


def run(capsys, server: str, *argv: str) -> tuple[int, str, str]:
    code = main(["wait", "--server", server, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ready_when_every_expected_version_is_available(fake, capsys):
    _, server = fake
    code, out, err = run(
        capsys, server, "--expect", "digits=1,2", "--expect", "half_plus_two=123", "--json"
    )
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result["result"] == "ready"
    assert sorted(result["models"]) == ["digits", "half_plus_two"]


def test_an_expected_version_that_is_not_the_newest_is_waited_for(fake, capsys):
    servicer, server = fake
    servicer.models["digits"].states[1] = (State.LOADING, 0, "")
    code, _, err = run(capsys, server, "--expect", "digits=1", "--wait", "0.5", "--interval", "0.1")
    assert code == 9
    assert "version 1 is LOADING" in err


def test_stuck_version_gives_up_within_the_overall_time_even_with_slow_calls(fake, capsys):
    """Each call takes 0.4 s; the limit of 1 s still holds (not retries x per-call time)."""
    servicer, server = fake
    servicer.models["digits"].states[2] = (State.LOADING, 0, "")
    servicer.delay = 0.4
    start = time.monotonic()
    code, _, err = run(
        capsys,
        server,
        "--expect",
        "digits=2",
        "--wait",
        "1",
        "--timeout",
        "10",
        "--interval",
        "0.05",
    )
    elapsed = time.monotonic() - start
    assert code == 9, err
    assert 1.0 <= elapsed < 1.8
    assert "not ready after 1 s" in err


def test_unreachable_server_has_its_own_exit_code(capsys):
    port = free_port()
    start = time.monotonic()
    code, out, err = run(
        capsys,
        f"127.0.0.1:{port}",
        "--expect",
        "m=1",
        "--wait",
        "0.5",
        "--interval",
        "0.1",
        "--json",
    )
    assert code == 3
    assert time.monotonic() - start < 2
    assert json.loads(out)["result"] == "unreachable"
    assert f"server 127.0.0.1:{port} not reachable" in err


def test_fresh_failure_of_an_expected_version_stops_at_once(fake, capsys):
    servicer, server = fake
    servicer.models["digits"].states[2] = (State.LOADING, 0, "")
    timer = threading.Timer(
        0.3, servicer.models["digits"].states.__setitem__, args=(2, (State.END, 13, "bad graph"))
    )
    timer.start()
    start = time.monotonic()
    code, _, err = run(capsys, server, "--expect", "digits=2", "--wait", "30", "--interval", "0.05")
    timer.join()
    assert code == 8
    assert time.monotonic() - start < 3
    assert "version 2 failed to load (INTERNAL: bad graph)" in err


def test_earlier_failure_of_a_redeployed_version_is_not_taken_for_a_new_one(fake, capsys):
    """A version number that failed before and is deployed again: the server reports the old
    failure until it starts the new load; the new load succeeds."""
    servicer, server = fake
    servicer.models["digits"].states[2] = (State.END, 13, "old failure")
    threading.Timer(
        0.4, servicer.models["digits"].states.__setitem__, args=(2, (State.LOADING, 0, ""))
    ).start()
    threading.Timer(0.8, servicer.models["digits"].states.pop, args=(2,)).start()
    code, _, err = run(
        capsys,
        server,
        "--expect",
        "digits=2",
        "--wait",
        "10",
        "--interval",
        "0.05",
        "--failed-grace",
        "3",
    )
    assert (code, err) == (0, "")


def test_a_failure_that_stays_counts_after_the_grace(fake, capsys):
    servicer, server = fake
    servicer.models["digits"].states[2] = (State.END, 13, "bad graph")
    start = time.monotonic()
    code, _, err = run(
        capsys,
        server,
        "--expect",
        "digits=2",
        "--wait",
        "10",
        "--interval",
        "0.05",
        "--failed-grace",
        "0.5",
    )
    assert code == 8
    assert 0.5 <= time.monotonic() - start < 2
    assert "bad graph" in err


def test_model_not_configured_yet_is_a_timeout_not_unreachable(fake, capsys):
    _, server = fake
    code, _, err = run(capsys, server, "--expect", "nope=1", "--wait", "0.3", "--interval", "0.1")
    assert code == 9
    assert "NOT_FOUND" in err


def test_bad_expectation_is_a_usage_error(fake, capsys):
    _, server = fake
    code, _, err = run(capsys, server, "--expect", "digits=latest")
    assert code == 2
    assert "MODEL=VERSION" in err


def vs(version: int, state: str, code: str = "OK") -> VersionStatus:
    return VersionStatus(version, state, code, "" if code == "OK" else "boom")


def test_tracker_counts_a_failure_seen_after_loading():
    tracker = VersionTracker("m", frozenset([2]), failed_grace=60)
    assert tracker.judge([vs(1, "AVAILABLE"), vs(2, "END", "INTERNAL")], 0.0)[0] is Verdict.WAITING
    assert tracker.judge([vs(1, "AVAILABLE"), vs(2, "LOADING")], 1.0)[0] is Verdict.WAITING
    assert tracker.judge([vs(1, "AVAILABLE"), vs(2, "END", "INTERNAL")], 2.0)[0] is Verdict.FAILED


@pytest.mark.parametrize(
    ("versions", "verdict"),
    [
        ([vs(1, "AVAILABLE"), vs(2, "AVAILABLE")], Verdict.READY),
        ([vs(1, "AVAILABLE")], Verdict.WAITING),
        ([vs(1, "END"), vs(2, "AVAILABLE")], Verdict.WAITING),
        ([vs(1, "AVAILABLE"), vs(2, "AVAILABLE"), vs(3, "LOADING")], Verdict.READY),
    ],
)
def test_tracker_expects_exactly_the_given_versions(versions, verdict):
    assert VersionTracker("m", frozenset([1, 2])).judge(versions, 0.0)[0] is verdict
