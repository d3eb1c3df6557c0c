"""The project's stdout callback: an until loop that polls reads as progress, never FAILED."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

POLLING_PLAY = """
- name: Poll
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Wait for the third attempt
      ansible.builtin.command: "true"
      register: attempt
      until: attempt.attempts | default(0) | int >= 3
      retries: 5
      delay: 1
      changed_when: false
"""


def test_retries_print_progress_lines_without_failed(tmp_path: Path) -> None:
    playbook = tmp_path / "poll.yml"
    playbook.write_text(POLLING_PLAY)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "NO_COLOR": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            "-c",
            "local",
            str(playbook),
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    waiting = [line for line in result.stdout.splitlines() if line.startswith("waiting: ")]
    assert waiting == [
        "waiting: [localhost]: Wait for the third attempt (attempt 1 of 6, 0 s)",
        waiting[1],
    ]
    assert waiting[1].startswith(
        "waiting: [localhost]: Wait for the third attempt (attempt 2 of 6,"
    )
    assert "FAILED" not in result.stdout
