"""Tasks that copy a private key hide their output: `--check --diff` (or -v) would
otherwise print the key, as a copy's diff shows a text file's content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from role_tasks import ROOT, flat_tasks, load_yaml
from test_controller_tasks import TASK_FILES

WRITERS = {"ansible.builtin.copy", "ansible.builtin.template", "ansible.builtin.slurp"}


def copies_a_key(task: dict[str, Any]) -> bool:
    if not WRITERS & task.keys():
        return False
    text = json.dumps({k: task.get(k) for k in (*WRITERS, "loop", "with_items")}, default=str)
    return '.key"' in text  # a string that ends in .key: a file name


def test_the_check_finds_the_registry_key_copy() -> None:
    tasks = flat_tasks(load_yaml(ROOT / "roles/tfserving_registry/tasks/main.yml"))
    assert any(copies_a_key(task) for task in tasks)


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_key_copies_hide_their_output(path: Path) -> None:
    shown = [
        task.get("name", "?")
        for task in flat_tasks(load_yaml(path) or [])
        if copies_a_key(task) and not task.get("no_log")
    ]
    assert shown == [], f"{path.relative_to(ROOT)}: tasks that copy a key without no_log: {shown}"
