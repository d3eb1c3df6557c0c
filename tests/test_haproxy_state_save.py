"""The load balancer's state save before a reload: nothing to save when no HAProxy runs,
and a failed save fails the handler, so the reload never loads a stale state file (which
would bring back nodes drained since it was written)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from role_tasks import ROOT, evaluate, find_task, load_yaml, module_args, role_variables

HANDLER = "Save the HAProxy server states"


def save(tmp_path: Path) -> tuple[dict, subprocess.CompletedProcess[str]]:
    """(the handler, its command run here with the socket and state file under TMP_PATH)."""
    task = find_task(load_yaml(ROOT / "roles/tfserving_lb/handlers/main.yml"), HANDLER)
    variables = {
        **role_variables("tfserving_lb"),
        "tfserving_lb_socket": str(tmp_path / "admin.sock"),
        "__tfserving_lb_state_file": str(tmp_path / "server-state"),
    }
    _, args = module_args(task)
    args = evaluate(args, variables)
    result = subprocess.run(
        [args["executable"], "-c", args["cmd"]], capture_output=True, text=True, check=False
    )
    return task, result


def test_nothing_to_save_without_a_running_haproxy(tmp_path: Path) -> None:
    (tmp_path / "server-state").write_text("earlier states\n")
    _, result = save(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "nothing to save" in result.stdout
    assert (tmp_path / "server-state").read_text() == "earlier states\n"


def test_a_save_that_fails_fails_the_handler(tmp_path: Path) -> None:
    # A socket nobody answers on: HAProxy's admin socket of a process that hangs or died.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(tmp_path / "admin.sock"))
    dead.close()
    (tmp_path / "server-state").write_text("earlier states\n")
    task, result = save(tmp_path)
    assert result.returncode != 0
    assert task.get("failed_when") is None, "the handler's result is ignored"
    assert (tmp_path / "server-state").read_text() == "earlier states\n"
