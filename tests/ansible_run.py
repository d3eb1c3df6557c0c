"""Run a small playbook against this machine (connection local) for tests of plugins and
role task files that are safe to run here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_playbook(
    playbook: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook PLAYBOOK on localhost with this checkout's ansible.cfg; never raises."""
    argv = [
        str(BIN / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        str(playbook),
        *extra,
    ]
    environ = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "NO_COLOR": "1",
        **(env or {}),
    }
    return subprocess.run(
        argv, cwd=ROOT, env=environ, capture_output=True, text=True, check=False, timeout=300
    )
