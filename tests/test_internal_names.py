"""Public and internal names differ at a glance (issue 26, item 1).

A role's variables are of three kinds:

- inputs, ``<role>_*``: what a user may set, the options of ``meta/argument_specs.yml``;
- outputs, ``<role>_*`` too: facts another role or a playbook reads, listed under
  "Facts set for other roles" in the role's README;
- internal, ``__<role>_*``: everything else the role computes (``vars/``), sets with
  ``set_fact``, registers, loops over or passes between its own task files.

So, per role, every name its tasks, handlers and ``vars/`` set is internal, an argument
spec option (its own, or another role's that it passes to that role's entry point), or a
documented output; every internal name is read by its own role only (no other role or
playbook); and every documented output is still set by the role.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
SET_FACT = ("set_fact", "ansible.builtin.set_fact", "ansible.legacy.set_fact")
OUTPUTS_HEADING = "## Facts set for other roles"
INTERNAL = re.compile(r"(?<![\w.])__[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def all_tasks(role_dir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file, task) of every task and handler of the role, blocks opened; blocks too (their
    vars count)."""
    for part in ("tasks", "handlers"):
        for path in sorted((role_dir / part).glob("*.yml")):
            stack = list(load(path) or [])
            while stack:
                task = stack.pop()
                if not isinstance(task, dict):
                    continue
                yield f"{part}/{path.name}", task
                for section in ("block", "rescue", "always"):
                    stack.extend(task.get(section) or [])


def set_names(role: str, root: Path = ROOT) -> dict[str, set[str]]:
    """{name: where} of each variable the role sets: vars/*.yml keys, set_fact keys,
    registered results, loop variables and task or block vars."""
    role_dir = root / "roles" / role
    found: dict[str, set[str]] = {}
    for path in sorted((role_dir / "vars").glob("*.yml")):
        for name in load(path) or {}:
            found.setdefault(name, set()).add(f"vars/{path.name}")
    for where, task in all_tasks(role_dir):
        names: list[str] = []
        for key in SET_FACT:
            if isinstance(task.get(key), dict):
                names += [n for n in task[key] if n != "cacheable"]
        if task.get("register"):
            names.append(task["register"])
        loop_var = (task.get("loop_control") or {}).get("loop_var")
        if loop_var:
            names.append(loop_var)
        if isinstance(task.get("vars"), dict):
            names += list(task["vars"])
        for name in names:
            found.setdefault(name, set()).add(where)
    return found


def spec_options(root: Path = ROOT) -> set[str]:
    """Every option of every role's argument specs (any entry point)."""
    options: set[str] = set()
    for path in sorted((root / "roles").glob("*/meta/argument_specs.yml")):
        specs = (load(path) or {}).get("argument_specs") or {}
        for entry in specs.values():
            options.update((entry or {}).get("options") or {})
    return options


def documented_outputs(role: str, root: Path = ROOT) -> set[str]:
    """The names listed under "Facts set for other roles" in the role's README."""
    readme = root / "roles" / role / "README.md"
    if not readme.is_file():
        return set()
    text = readme.read_text()
    if OUTPUTS_HEADING not in text:
        return set()
    section = text.split(OUTPUTS_HEADING, 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^- `([a-z0-9_]+)`", section, flags=re.MULTILINE))


def problems(role: str, root: Path = ROOT) -> list[str]:
    """Names the role sets that are neither internal, an input nor a documented output."""
    options = spec_options(root)
    outputs = documented_outputs(role, root)
    found = []
    for name, where in sorted(set_names(role, root).items()):
        if name.startswith(f"__{role}_") or name in options or name in outputs:
            continue
        if name.startswith("ansible_"):  # connection settings (ansible_python_interpreter)
            continue
        found.append(
            f"{name} ({', '.join(sorted(where))}): name it __{role}_..., or list it under"
            f" {OUTPUTS_HEADING!r} in roles/{role}/README.md when another role reads it"
        )
    return found


@pytest.mark.parametrize("role", ROLES)
def test_every_name_a_role_sets_is_internal_an_input_or_an_output(role: str) -> None:
    assert problems(role) == []


@pytest.mark.parametrize("role", ROLES)
def test_documented_outputs_are_set_by_the_role(role: str) -> None:
    assert sorted(documented_outputs(role) - set(set_names(role))) == []


def owners(root: Path = ROOT) -> dict[str, str]:
    """{internal name: the role that sets it}."""
    owner: dict[str, str] = {}
    for role in ROLES:
        for name in set_names(role, root):
            if name.startswith("__"):
                owner[name] = role
        for name in load(root / "roles" / role / "defaults" / "main.yml") or {}:
            if name.startswith("__"):
                owner[name] = role
    return owner


def code_files(root: Path = ROOT) -> Iterator[Path]:
    for top in ("roles", "playbooks"):
        for path in sorted((root / top).rglob("*")):
            if path.is_file() and path.suffix in (".yml", ".yaml", ".j2"):
                yield path


def test_internal_names_are_read_by_their_own_role_only() -> None:
    owner = owners()
    assert owner, "no internal names found: the walker lost its way"
    found = []
    for path in code_files():
        rel = path.relative_to(ROOT)
        here = rel.parts[1] if rel.parts[0] == "roles" else None
        for name in sorted(set(INTERNAL.findall(path.read_text()))):
            role = owner.get(name)
            if role is None:
                # Not set anywhere: still internal to the role its prefix names.
                role = next(
                    (r for r in sorted(ROLES, key=len, reverse=True) if name.startswith(f"__{r}_")),
                    None,
                )
            if role is not None and role != here:
                found.append(f"{rel}: {name} is internal to role {role}")
    assert found == []


def test_internal_names_start_with_their_role() -> None:
    """An internal name carries its own role's prefix (the lint's var-naming rule too)."""
    found = [
        f"roles/{role}: {name}"
        for role in ROLES
        for name in set_names(role)
        if name.startswith("__") and not name.startswith(f"__{role}_")
    ]
    assert found == []


def test_the_check_sees_each_kind_of_name(tmp_path: Path) -> None:
    """A made-up role: an internal name, an input, an output, and one of each mistake."""
    role = tmp_path / "roles" / "demo"
    for sub in ("tasks", "vars", "meta"):
        (role / sub).mkdir(parents=True)
    (role / "meta" / "argument_specs.yml").write_text(
        yaml.safe_dump({"argument_specs": {"main": {"options": {"demo_port": {"type": "int"}}}}})
    )
    (role / "vars" / "main.yml").write_text("__demo_path: /x\ndemo_computed: 1\n")
    (role / "tasks" / "main.yml").write_text(
        yaml.safe_dump(
            [
                {"name": "a", "ansible.builtin.set_fact": {"demo_port": 1, "demo_result": 2}},
                {
                    "name": "b",
                    "block": [{"name": "c", "ansible.builtin.command": "true", "register": "x"}],
                },
                {"name": "d", "ansible.builtin.debug": {}, "vars": {"demo_local": 1}},
                {"name": "e", "ansible.builtin.set_fact": {"demo_output": 1}},
            ]
        )
    )
    (role / "README.md").write_text(
        f"# demo\n\n{OUTPUTS_HEADING}\n\n- `demo_output`: read by another role.\n"
    )
    found = "\n".join(problems("demo", tmp_path))
    assert documented_outputs("demo", tmp_path) == {"demo_output"}
    for name in ("demo_computed", "demo_result", "x (", "demo_local"):
        assert name in found
    for name in ("__demo_path", "demo_port", "demo_output"):
        assert name not in found
