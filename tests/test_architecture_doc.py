"""docs/architecture.md names only what exists: every file, role, entry point and variable
it gives is in the project, and the page stays short (under two screens of prose)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from doc_checks import ROLES, stale_names

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architecture.md"
TEXT = PAGE.read_text()
CODE = re.compile(r"`([^`\n]+)`")
FILE = re.compile(r"^[\w./-]+\.(?:yml|py|md|j2|json|fact|cfg)$|^[\w.-]+/[\w./-]+$")
# Files on the managed hosts, not in the project; NAME/V are placeholders.
HOST_PATH = re.compile(r"^/|NAME|\.fact$")
# A role's entry point as the page writes it: `ROLE` `tasks_from: X` or `ROLE` main.
ENTRY = re.compile(rf"`({'|'.join(ROLES)})`\s+(?:`tasks_from:\s*([\w-]+)(?:\.yml)?`|(main))")
MAX_LINES = 170  # two screens of prose


def quoted() -> list[str]:
    return [m.group(1).removeprefix("tasks_from: ").strip() for m in CODE.finditer(TEXT)]


def exists(name: str) -> bool:
    """NAME is a path from the root, or the file name of a playbook, a role's task file or
    another project file the page names by its name alone."""
    if (ROOT / name).exists():
        return True
    if "/" in name:  # a path under a role or playbooks/ (meta/argument_specs.yml, tasks/turn.yml)
        return any(ROOT.glob(f"*/*/{name}")) or any(ROOT.glob(f"*/{name}"))
    return any(
        path
        for path in ROOT.glob(f"**/{name}")
        if not {".venv", ".cache", ".git", "ansible_collections"} & set(path.parts)
    )


FILES = sorted({n for n in quoted() if FILE.match(n) and not HOST_PATH.search(n)})


@pytest.mark.parametrize("name", FILES)
def test_every_file_named_exists(name: str) -> None:
    assert exists(name), f"docs/architecture.md names {name}, which is not in the project"


def test_it_names_files() -> None:
    assert len(FILES) > 20  # the pattern still finds the page's files


def test_every_role_named_exists() -> None:
    roles = {n for n in quoted() if re.fullmatch(r"[a-z_]+", n) and n in ROLES}
    assert roles, "the page names no role"
    for match in re.finditer(r"`roles/([\w]+)", TEXT):
        assert match.group(1) in ROLES


def test_every_entry_point_named_exists() -> None:
    entries = {(m.group(1), m.group(2) or m.group(3)) for m in ENTRY.finditer(TEXT)}
    assert len(entries) > 10
    missing = [
        f"{role} {entry}"
        for role, entry in sorted(entries)
        if not (ROOT / "roles" / role / "tasks" / f"{entry}.yml").exists()
    ]
    assert missing == []


def test_every_variable_named_exists() -> None:
    assert stale_names(TEXT) == [], "named in docs/architecture.md, used nowhere in the code"


def test_the_page_stays_short() -> None:
    assert len(TEXT.splitlines()) <= MAX_LINES
