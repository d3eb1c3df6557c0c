"""The wait_job action: progress lines while long work runs, never a FAILED retry line."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from ansible_run import run_playbook
from plugin_files import load_plugin

wait_job = load_plugin("action", "wait_job")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (7.9, "7s"), (65, "1m05s"), (3600, "1h00m00s"), (3725, "1h02m05s")],
)
def test_elapsed_time_reads_as_hours_minutes_seconds(seconds: float, text: str) -> None:
    assert wait_job.format_elapsed(seconds) == text


def test_latest_line_is_the_last_non_empty_one() -> None:
    assert wait_job.latest_line("Step 1/3 : FROM x\n ---> abc\n\n") == "---> abc"
    assert wait_job.latest_line("downloading 10%\r downloading 55%\r") == "downloading 55%"
    assert wait_job.latest_line("") == ""
    assert len(wait_job.latest_line("x" * 500)) == wait_job.LATEST_WIDTH


def test_progress_line_says_what_how_long_and_the_latest_line() -> None:
    line = wait_job.progress_line("builder", "the devel build", 125, "Step 4/9 : RUN make")
    assert (
        line == "builder: waiting for the devel build, 2m05s elapsed; latest: Step 4/9 : RUN make"
    )
    assert (
        wait_job.progress_line("node", "the load", 3, "")
        == "node: waiting for the load, 3s elapsed"
    )


def test_status_output_parses_running_and_exit_status() -> None:
    assert wait_job.parse_status("running\nline 1\nline 2\n") == (None, "line 1\nline 2\n")
    assert wait_job.parse_status("3\nboom\n") == (3, "boom\n")


PLAYBOOK = """
- name: Long work on this machine
  hosts: localhost
  gather_facts: false
  tasks:
    - name: A command of a few seconds
      tfserving.fleet.wait_job:
        what: the counting job
        command: [sh, -c, 'for i in 1 2 3 4 5; do echo "count $i"; sleep 1; done']
        log: "{{ workdir }}/count.log"
        interval: 1
        poll: 1
      register: counted

    - name: Show what it returned
      ansible.builtin.debug:
        msg: "rc={{ counted.rc }} last={{ counted.stdout_lines[-1] }}"

    - name: Start an async job
      ansible.builtin.command: sh -c 'sleep 3; echo async-done'
      async: 60
      poll: 0
      register: job
      changed_when: false

    - name: Wait for the async job
      tfserving.fleet.wait_job:
        what: the async job
        jid: "{{ job.ansible_job_id }}"
        interval: 1
        poll: 1
      register: waited

    - name: Show the job's own result
      ansible.builtin.debug:
        msg: "job stdout={{ waited.stdout }}"

    - name: A command that fails
      tfserving.fleet.wait_job:
        what: the failing job
        command: [sh, -c, 'echo "last words"; exit 3']
        poll: 1
"""


def test_waits_report_progress_and_results(tmp_path: Path) -> None:
    playbook = tmp_path / "wait.yml"
    playbook.write_text(PLAYBOOK)
    result = run_playbook(playbook, "-e", f"workdir={tmp_path}")
    output = result.stdout + result.stderr
    lines = output.splitlines()
    # Progress: what, elapsed, the log's latest line; never an until-style retry line.
    counting = [
        line for line in lines if line.startswith("localhost: waiting for the counting job")
    ]
    assert len(counting) >= 3, output[-3000:]
    assert any(re.search(r", \d+s elapsed; latest: count [1-5]$", line) for line in counting)
    assert "FAILED - RETRYING" not in output
    assert "rc=0 last=count 5" in output
    assert (tmp_path / "count.log").read_text().splitlines()[-1] == "count 5"
    assert any(line.startswith("localhost: waiting for the async job") for line in lines)
    assert "job stdout=async-done" in output
    # A failing command fails the task with its exit status and last output line.
    assert result.returncode != 0
    assert "the failing job exited with status 3" in output
    assert "last words" in output


def test_a_command_past_its_timeout_is_stopped(tmp_path: Path) -> None:
    playbook = tmp_path / "timeout.yml"
    marker = tmp_path / "still-running"
    playbook.write_text(
        f"""
- name: Too long
  hosts: localhost
  gather_facts: false
  tasks:
    - name: A command longer than its timeout
      tfserving.fleet.wait_job:
        what: the endless job
        command: [sh, -c, 'sleep 30; touch {marker}']
        timeout: 2
        poll: 1
"""
    )
    result = run_playbook(playbook)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the endless job was still running after" in output, output[-3000:]
    assert "(timeout 2s) and was stopped" in output
    # The whole session is gone, not just the shell that started it.
    left = subprocess.run(["pgrep", "-f", f"touch {marker}"], capture_output=True, check=False)
    assert left.returncode == 1, left.stdout
