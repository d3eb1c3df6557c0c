"""Run a scenario's playbook again from a testinfra test, with extra variables."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]


def converge(
    scenario_dir: Path,
    extra_vars: dict[str, object] | None = None,
    limit: str | None = None,
    playbook: str = "converge.yml",
    options: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """ansible-playbook SCENARIO/PLAYBOOK against molecule's inventory; never raises.
    ``options`` go to ansible-playbook as given (e.g. ``["--check"]``, ``["-vvv"]``)."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    argv = ["ansible-playbook", "-i", str(inventory), str(scenario_dir / playbook)]
    argv += options or []
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if limit:
        argv += ["--limit", limit]
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(PROJECT_DIR / "roles"), "NO_COLOR": "1"}
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=env, timeout=900)
