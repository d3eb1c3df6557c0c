"""The role READMEs say what the argument specs say.

A role README may carry a variable table (a Markdown table whose header starts with
``Variable`` and has a ``Default`` column). Per role, the table:

- names only options of the role's ``meta/argument_specs.yml`` (any entry point);
- gives each option's default as the spec does: one literal in backticks, equal to the
  spec's ``default`` (a default that is a template may be described in words instead; an
  option without a default says ``required`` or nothing);
- lists every option of the main entry point that has a literal default (what a user sees
  and may change). An option whose default is a template computed from another option is
  described with that option and may be left out.

And every README, with or without a table, gives no stale name: each variable, group, role
or plugin name it gives (``tfserving_*``, ``docker_*``, ...) is still used by the code
(tests/doc_checks.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from doc_checks import ROLES, ROOT, argument_specs, stale_names

READMES = [role for role in ROLES if (ROOT / "roles" / role / "README.md").is_file()]
BACKTICKED = re.compile(r"^`([^`]+)`$")


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def variable_tables(text: str) -> list[list[dict[str, str]]]:
    """Each variable table of a Markdown text: its rows as {column name: cell}."""
    tables: list[list[dict[str, str]]] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("|") or (index > 0 and lines[index - 1].startswith("|")):
            continue
        header = [cell.lower() for cell in cells(line)]
        if not header or header[0] not in ("variable", "variables") or "default" not in header:
            continue
        rows = []
        for row in lines[index + 2 :]:
            if not row.startswith("|"):
                break
            rows.append(dict(zip(header, cells(row), strict=False)))
        tables.append(rows)
    return tables


def templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def same_default(cell: str, default: Any) -> bool:
    """Whether a table's default cell (`VALUE`) says the spec's default."""
    match = BACKTICKED.match(cell)
    if not match:
        return False
    text = match.group(1)
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = text
    return parsed == default or text == str(default)


def problems(role: str, root: Path = ROOT) -> list[str]:
    """What the role's README variable tables say that its argument specs do not."""
    text = (root / "roles" / role / "README.md").read_text()
    tables = variable_tables(text)
    if not tables:
        return []
    specs = argument_specs(role, root)
    options: dict[str, dict[str, Any]] = {}
    for entry in sorted(specs, key=lambda name: name != "main"):  # main's spec first
        for name, spec in specs[entry].items():
            options.setdefault(name, spec or {})
    found = []
    listed = set()
    for row in (row for table in tables for row in table):
        first = row.get("variable", row.get("variables", ""))
        match = BACKTICKED.match(first)
        if not match or not re.fullmatch(r"\w+", match.group(1)):
            found.append(f"row {first!r}: name one variable per row, in backticks")
            continue
        name = match.group(1)
        listed.add(name)
        if name not in options:
            found.append(f"{name}: in the README's table, not in meta/argument_specs.yml")
            continue
        spec, cell = options[name], row.get("default", "")
        if "default" not in spec:
            if cell not in ("", "-", "required"):
                found.append(f"{name}: the README gives default {cell}, the spec has none")
        elif not templated(spec["default"]) and not same_default(cell, spec["default"]):
            found.append(f"{name}: the README gives default {cell}, the spec {spec['default']!r}")
    for name, spec in (specs.get("main") or {}).items():
        spec = spec or {}
        if "default" in spec and not templated(spec["default"]) and name not in listed:
            found.append(f"{name}: an option of main with a default, not in the README's table")
    return found


@pytest.mark.parametrize("role", READMES)
def test_variable_table_matches_the_specs(role: str) -> None:
    assert problems(role) == []


@pytest.mark.parametrize("role", READMES)
def test_readme_names_no_stale_variable(role: str) -> None:
    text = (ROOT / "roles" / role / "README.md").read_text()
    assert stale_names(text) == [], "named in the README, used nowhere in the code"


def test_a_role_with_a_table_has_one() -> None:
    """The table check has something to check: a README with a variable table exists."""
    assert any(variable_tables((ROOT / "roles" / r / "README.md").read_text()) for r in READMES)


def test_the_check_sees_each_kind_of_problem(tmp_path: Path) -> None:
    """A made-up role with one of each problem: the check reports every one."""
    role = tmp_path / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "meta" / "argument_specs.yml").write_text(
        yaml.safe_dump(
            {
                "argument_specs": {
                    "main": {
                        "options": {
                            "demo_port": {"type": "int", "default": 8080},
                            "demo_on": {"type": "bool", "default": False},
                            "demo_url": {"type": "str", "default": "{{ demo_base }}/x"},
                            "demo_left_out": {"type": "str", "default": ""},
                            "demo_name": {"type": "str", "required": True},
                            "demo_agree": {"type": "str", "default": "a:b"},
                        }
                    },
                    "other": {"options": {"demo_other": {"type": "list", "default": []}}},
                }
            }
        )
    )
    (role / "README.md").write_text(
        "# demo\n\n| Variable | Default | Meaning |\n| --- | --- | --- |\n"
        "| `demo_port` | `80` | wrong default |\n"
        "| `demo_on` | `false` | right |\n"
        "| `demo_url` | BASE/x | templated: words allowed |\n"
        "| `demo_name` | `x` | required, yet a default |\n"
        "| `demo_agree` | `a:b` | right |\n"
        "| `demo_other` | `[]` | another entry point's, right |\n"
        "| `demo_gone` | `1` | not in the specs |\n"
        "| `demo_a` / `_b` | `1` / `2` | two in one row |\n"
    )
    found = "\n".join(problems("demo", tmp_path))
    assert "demo_port: the README gives default `80`, the spec 8080" in found
    assert "demo_gone: in the README's table, not in meta/argument_specs.yml" in found
    assert "demo_name: the README gives default `x`, the spec has none" in found
    assert "demo_left_out: an option of main with a default, not in the README's table" in found
    assert "row '`demo_a` / `_b`': name one variable per row" in found
    for right in ("demo_on", "demo_url", "demo_agree", "demo_other:"):
        assert right not in found


def test_the_stale_check_sees_a_stale_name() -> None:
    words = frozenset({"tfserving_gate_timeout", "tfserving_ssl_server_cert"})
    text = (
        "`tfserving_gate_timeout`, `tfserving_gate_timeot`, `tfserving_ssl_*`, `tfserving_x_*`,"
        " tests/test_tfserving_x.py, ansible_local.tfserving_y, tfserving-previous"
    )
    assert stale_names(text, words) == ["tfserving_gate_timeot", "tfserving_x_*"]
