"""Evaluate the expressions of a role's task files with Ansible's own templating.

Tests use it to see what a role would pass to a module for a given host, without a host:
the role's defaults and vars, the inventory's variables and the host's facts go in, the
task's arguments come out as the module would receive them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load_yaml(path: Path) -> Any:
    """A YAML file as Ansible loads it (strings in it may be templates)."""
    from ansible.parsing.dataloader import DataLoader

    return DataLoader().load_from_file(str(path), trusted_as_template=True)


def role_variables(role: str) -> dict[str, Any]:
    """defaults/main.yml overlaid with vars/main.yml of roles/ROLE."""
    variables: dict[str, Any] = {}
    for part in ("defaults", "vars"):
        path = ROOT / "roles" / role / part / "main.yml"
        if path.exists():
            variables.update(load_yaml(path) or {})
    return variables


def find_task(tasks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The task called NAME, also inside blocks; with the vars of the blocks around it."""
    for task in tasks:
        if task.get("name") == name:
            return task
        for section in ("block", "rescue", "always"):
            try:
                found = find_task(task.get(section) or [], name)
            except KeyError:
                continue
            return {**found, "vars": {**task.get("vars", {}), **found.get("vars", {})}}
    raise KeyError(f"no task named {name!r}")


def task_file(role: str, tasks_file: str, name: str) -> dict[str, Any]:
    """Task NAME of roles/ROLE/tasks/TASKS_FILE."""
    return find_task(load_yaml(ROOT / "roles" / role / "tasks" / tasks_file), name)


def module_args(task: dict[str, Any]) -> tuple[str, Any]:
    """(module name, arguments) of a task."""
    keywords = {
        "name", "vars", "when", "register", "loop", "loop_control", "delegate_to",
        "run_once", "changed_when", "failed_when", "notify", "become", "no_log", "tags",
        "check_mode", "diff", "throttle",
    }  # fmt: skip
    modules = [key for key in task if key not in keywords]
    if len(modules) != 1:
        raise ValueError(f"cannot tell the module of task {task.get('name')!r}: {modules}")
    return modules[0], task[modules[0]]


def evaluate(value: Any, variables: dict[str, Any]) -> Any:
    """VALUE templated with VARIABLES; arguments that template to `omit` are dropped."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from role_templates import load_collection

    load_collection()
    templar = Templar(loader=DataLoader(), variables={"omit": "__omit__", **variables})
    result = templar.template(value)
    if isinstance(result, dict):
        return {key: item for key, item in result.items() if item != "__omit__"}
    return result


BLOCK_SECTIONS = ("block", "rescue", "always")


def flat_tasks(
    tasks: list[dict[str, Any]] | None,
    inherited: dict[str, Any] | None = None,
    keys: tuple[str, ...] = ("delegate_to", "become", "no_log"),
) -> Iterator[dict[str, Any]]:
    """Every task of a task list, blocks opened: each with the KEYS its blocks (and
    INHERITED) set, its own winning, as Ansible passes them on."""
    for task in tasks or []:
        effective = {**(inherited or {}), **{k: task[k] for k in keys if k in task}}
        if any(section in task for section in BLOCK_SECTIONS):
            for section in BLOCK_SECTIONS:
                yield from flat_tasks(task.get(section), effective, keys)
        else:
            yield {**effective, **task}
