"""The canary window's tasks for one metrics source are skipped cleanly under the other.

roles/tfserving/tasks/canary-window.yml reads the window either from each server's metrics
page (direct) or from Prometheus. The direct reads loop over servers noted only in direct
mode and delegate to each one's node; under prometheus, Ansible still templates the loop
and the delegation of a task whose `when` is false, and an undefined loop left `item`
undefined in `delegate_to` - the canary play then failed on the fleet with a monitoring
host (every run that used Prometheus). Each such task of the file runs here, on
localhost, under the source it is not for: every one must be skipped, none may fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_run import run_playbook
from role_tasks import ROOT, flat_tasks

ROLE = ROOT / "roles" / "tfserving"
WINDOW = ROLE / "tasks" / "canary-window.yml"


def tasks_for(source: str) -> list[dict[str, Any]]:
    """The tasks of canary-window.yml that run only with __tfserving_canary_source SOURCE."""
    marker = f"__tfserving_canary_source == '{source}'"
    found = []
    for task in flat_tasks(yaml.safe_load(WINDOW.read_text())):
        when = task.get("when", [])
        conditions = [when] if isinstance(when, str) else list(when)
        if any(marker in str(condition) for condition in conditions):
            found.append({k: v for k, v in task.items() if k != "register"})
    return found


@pytest.mark.parametrize(("source", "other"), [("direct", "prometheus"), ("prometheus", "direct")])
def test_tasks_of_one_source_are_skipped_under_the_other(
    source: str, other: str, tmp_path: Path
) -> None:
    tasks = tasks_for(source)
    assert tasks, f"no task of canary-window.yml runs only with {source}"
    for task in tasks:
        # The module's arguments stay as written: a skipped task never templates them.
        task.pop("name", None)
    play = [
        {
            "hosts": "localhost",
            "gather_facts": False,
            # The role's own variables, as the role's tasks see them.
            "vars_files": [str(ROLE / part / "main.yml") for part in ("defaults", "vars")],
            "vars": {"__tfserving_canary_source": other},
            "tasks": tasks,
        }
    ]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    result = run_playbook(path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "failed=0" in output
    assert "ok=0" in output and "changed=0" in output, output[-1500:]
    assert f"skipped={len(tasks)}" in output, output[-1500:]
