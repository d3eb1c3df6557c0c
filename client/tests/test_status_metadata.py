from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from fake_server import State, serve
from tfs_client.api import VersionStatus
from tfs_client.cli import main
from tfs_client.commands import readiness


def run(capsys, server: str, *argv: str) -> tuple[int, str, str]:
    code = main([argv[0], "--server", server, *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_status_lists_versions(fake, capsys):
    servicer, server = fake
    servicer.models["digits"].states[1] = (State.END, 0, "")
    code, out, err = run(capsys, server, "status", "--model", "digits")
    assert (code, err) == (0, "")
    assert out == "digits version 1: END\ndigits version 2: AVAILABLE\n"
    spec = servicer.calls("GetModelStatus")[0].model_spec
    assert spec.name == "digits" and not spec.HasField("version")


def test_status_json_with_version_and_error(fake, capsys):
    servicer, server = fake
    servicer.models["digits"].states[2] = (State.END, 3, "bad graph")
    code, out, _ = run(capsys, server, "status", "--model", "digits", "--version", "2", "--json")
    assert code == 0
    assert servicer.calls("GetModelStatus")[0].model_spec.version.value == 2
    assert json.loads(out) == {
        "model": "digits",
        "versions": [
            {
                "version": 2,
                "state": "END",
                "error_code": "INVALID_ARGUMENT",
                "error_message": "bad graph",
            }
        ],
    }


def test_status_text_shows_error(fake, capsys):
    servicer, server = fake
    servicer.models["digits"].states[2] = (State.END, 3, "bad graph")
    _, out, _ = run(capsys, server, "status", "--model", "digits")
    assert "digits version 2: END (error INVALID_ARGUMENT: bad graph)" in out


def test_status_unknown_model_exits_not_found(fake, capsys):
    _, server = fake
    code, out, err = run(capsys, server, "status", "--model", "nope")
    assert code == 4 and out == ""
    assert "NOT_FOUND" in err and "nope" in err


def test_wait_available_polls_until_loaded(fake, capsys):
    servicer, server = fake
    servicer.models["digits"].states[2] = (State.LOADING, 0, "")
    timer = threading.Timer(0.3, servicer.models["digits"].states.pop, args=(2,))
    timer.start()
    start = time.monotonic()
    code, out, _ = run(
        capsys,
        server,
        "status",
        "--model",
        "digits",
        "--wait-available",
        "5",
        "--interval",
        "0.05",
        "--json",
    )
    assert code == 0
    assert time.monotonic() - start >= 0.3
    assert len(servicer.calls("GetModelStatus")) >= 3
    assert json.loads(out)["ready"] is True


def test_wait_available_gives_up_after_the_limit(fake, capsys):
    servicer, server = fake
    servicer.models["digits"].states[2] = (State.LOADING, 0, "")
    start = time.monotonic()
    code, _, err = run(
        capsys,
        server,
        "status",
        "--model",
        "digits",
        "--wait-available",
        "0.3",
        "--interval",
        "0.05",
    )
    assert code == 1
    assert 0.3 <= time.monotonic() - start < 2
    assert err == "tfs-client: error: model digits not ready after 0.3 s: version 2 is LOADING\n"


def test_wait_available_fails_when_newest_version_stays_failed(fake, capsys):
    servicer, server = fake
    servicer.models["digits"].states[2] = (State.END, 13, "could not load")
    start = time.monotonic()
    code, _, err = run(
        capsys,
        server,
        "status",
        "--model",
        "digits",
        "--wait-available",
        "30",
        "--failed-grace",
        "0.5",
        "--interval",
        "0.1",
    )
    assert code == 1
    assert 0.5 <= time.monotonic() - start < 3
    assert "version 2 failed to load (INTERNAL: could not load)" in err


def test_wait_available_fails_at_once_on_a_failure_seen_after_loading(fake, capsys):
    servicer, server = fake
    servicer.models["digits"].states[2] = (State.LOADING, 0, "")
    threading.Timer(
        0.2, servicer.models["digits"].states.__setitem__, args=(2, (State.END, 13, "bad"))
    ).start()
    start = time.monotonic()
    code, _, err = run(
        capsys,
        server,
        "status",
        "--model",
        "digits",
        "--wait-available",
        "30",
        "--interval",
        "0.05",
    )
    assert code == 1
    assert time.monotonic() - start < 2
    assert "version 2 failed to load (INTERNAL: bad)" in err


def test_wait_available_does_not_take_an_earlier_failure_for_the_redeployed_version(fake, capsys):
    """The server still reports the failure of an earlier copy of the version until its next
    look at the model directory; the new copy then loads."""
    servicer, server = fake
    servicer.models["digits"].states[2] = (State.END, 13, "earlier copy did not load")
    threading.Timer(
        0.3, servicer.models["digits"].states.__setitem__, args=(2, (State.LOADING, 0, ""))
    ).start()
    threading.Timer(0.6, servicer.models["digits"].states.pop, args=(2,)).start()
    code, out, err = run(
        capsys,
        server,
        "status",
        "--model",
        "digits",
        "--wait-available",
        "10",
        "--interval",
        "0.05",
    )
    assert (code, err) == (0, "")
    assert "digits version 2: AVAILABLE" in out


def test_wait_available_waits_for_a_server_that_starts_later(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = threading.Event()

    def late_server() -> None:
        time.sleep(0.4)
        with serve(port=port):
            done.wait(10)

    thread = threading.Thread(target=late_server)
    thread.start()
    try:
        code, out, err = run(
            capsys,
            f"127.0.0.1:{port}",
            "status",
            "--model",
            "half_plus_two",
            "--wait-available",
            "8",
            "--interval",
            "0.1",
        )
    finally:
        done.set()
        thread.join()
    assert (code, err) == (0, "")
    assert out == "half_plus_two version 123: AVAILABLE\n"


def test_wait_available_reports_unreachable_server_with_its_exit_code(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = run(
        capsys,
        f"127.0.0.1:{port}",
        "status",
        "--model",
        "m",
        "--wait-available",
        "0.3",
        "--interval",
        "0.1",
    )
    assert code == 3
    assert "not ready after 0.3 s" in err and "UNAVAILABLE" in err


def v(version: int, state: str, code: str = "OK") -> VersionStatus:
    return VersionStatus(version, state, code, "" if code == "OK" else "boom")


@pytest.mark.parametrize(
    ("versions", "version", "verdict"),
    [
        ([], None, "waiting"),
        ([v(1, "AVAILABLE")], None, "ready"),
        ([v(1, "END"), v(2, "AVAILABLE")], None, "ready"),  # old one unloaded
        ([v(1, "AVAILABLE"), v(2, "LOADING")], None, "waiting"),
        ([v(1, "AVAILABLE"), v(2, "END", "INTERNAL")], None, "failed"),
        ([v(1, "END", "INTERNAL"), v(2, "AVAILABLE")], None, "ready"),  # fixed by a newer one
        ([v(1, "AVAILABLE"), v(2, "START")], 1, "ready"),
        ([v(1, "AVAILABLE")], 2, "waiting"),
        ([v(1, "AVAILABLE"), v(2, "END", "INTERNAL")], 2, "failed"),
    ],
)
def test_readiness_rules(versions, version, verdict):
    assert readiness(versions, version)[0] == verdict


def test_metadata_text(fake, capsys):
    servicer, server = fake
    code, out, _ = run(capsys, server, "metadata", "--model", "half_plus_two", "--version", "123")
    assert code == 0
    request = servicer.calls("GetModelMetadata")[0]
    assert list(request.metadata_field) == ["signature_def"]
    assert request.model_spec.version.value == 123
    assert out.splitlines() == [
        "model half_plus_two version 123",
        "signature serving_default (tensorflow/serving/predict)",
        "  input  x: DT_FLOAT [-1, 1]",
        "  output y: DT_FLOAT [-1, 1]",
        "signature two_inputs (tensorflow/serving/predict)",
        "  input  a: DT_INT64 [-1]",
        "  input  b: DT_BOOL [-1]",
        "  output sum: DT_INT64 [-1]",
    ]


def test_metadata_json(fake, capsys):
    _, server = fake
    code, out, _ = run(capsys, server, "metadata", "--model", "digits", "--json")
    assert code == 0
    assert json.loads(out) == {
        "model": "digits",
        "version": 2,
        "signatures": {
            "predict_images": {
                "method": "tensorflow/serving/predict",
                "inputs": {"images": {"dtype": "DT_STRING", "shape": [-1]}},
                "outputs": {"scores": {"dtype": "DT_FLOAT", "shape": [-1, 10]}},
            }
        },
    }
