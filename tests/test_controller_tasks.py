"""Tasks that run on the controller never use become.

The plays become root on the hosts. A task delegated to localhost inherits that `become`,
so on a controller where the user is not root it would run `sudo` there: it asks for a
password (or fails without a terminal), and the files it writes (the image cache, fetched
archives) end up owned by root, so the next run as the user cannot write them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from role_tasks import ROOT, flat_tasks, load_yaml

TASK_FILES = sorted(
    [*ROOT.glob("roles/*/tasks/*.yml"), *ROOT.glob("roles/*/handlers/*.yml")],
)
PLAYBOOKS = sorted(ROOT.glob("playbooks/*.yml"))


def controller_tasks(path: Path) -> list[dict[str, Any]]:
    data = load_yaml(path) or []
    if path.parent.name == "playbooks":
        found = []
        for play in data:
            base = {"become": play["become"]} if "become" in play else {}
            for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                found += flat_tasks(play.get(section), base)
        return [t for t in found if t.get("delegate_to") in ("localhost", "127.0.0.1")]
    return [t for t in flat_tasks(data) if t.get("delegate_to") in ("localhost", "127.0.0.1")]


def test_the_roles_delegate_to_the_controller() -> None:
    """The check below looks at something: the gate and the image cache run there."""
    assert sum(len(controller_tasks(p)) for p in TASK_FILES) >= 10


@pytest.mark.parametrize("path", TASK_FILES + PLAYBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_controller_tasks_turn_become_off(path: Path) -> None:
    wrong = [t["name"] for t in controller_tasks(path) if t.get("become") is not False]
    assert wrong == [], (
        f"{path.relative_to(ROOT)}: tasks delegated to localhost without `become: false` "
        f"(they would run sudo on the controller): {wrong}"
    )
