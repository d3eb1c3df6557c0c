"""Each role's defaults/main.yml and meta/argument_specs.yml describe the same variables.

Ansible does not apply an argument spec's ``default``: the value a role runs with comes from
its defaults/main.yml, and the spec only documents and checks it. So, per role:

- every variable of defaults/main.yml is an option of the main entry point (of some entry
  point, for a role without main, such as host_packages), except internal ``__`` names;
- every option with a ``default`` in any entry point is set in defaults/main.yml, to that
  value; where defaults/main.yml computes it (a template), the spec's default is free text
  saying what it is computed from;
- every variable of defaults/main.yml that an entry point lists has a ``default`` there, so
  ansible-doc shows what the role runs with;
- a ``required`` option is not set in defaults/main.yml (the check would never fire);
- no option is set in vars/main.yml (it would override what the user sets);
- the literal defaults pass the entry point's own type check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

ROOT = Path(__file__).resolve().parents[1]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
# Gaps a role is known to have, by role: each listed one must still be found (the test
# fails when one is closed, so the list only shrinks). None today.
KNOWN_GAPS: dict[str, set[str]] = {}


def load(root: Path, role: str, path: str) -> dict[str, Any]:
    file = root / "roles" / role / path
    return (yaml.safe_load(file.read_text()) or {}) if file.is_file() else {}


def templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def problems(role: str, root: Path = ROOT) -> set[str]:
    """What is wrong between the role's defaults/main.yml and its argument specs."""
    defaults = load(root, role, "defaults/main.yml")
    role_vars = load(root, role, "vars/main.yml")
    specs: dict[str, Any] = load(root, role, "meta/argument_specs.yml").get("argument_specs") or {}
    entry_options = {name: spec.get("options") or {} for name, spec in specs.items()}
    found: set[str] = set()

    documented = (
        set(entry_options["main"])
        if "main" in entry_options
        else {option for options in entry_options.values() for option in options}
    )
    where = "the main entry point" if "main" in entry_options else "any entry point"
    for name in sorted(defaults):
        if not name.startswith("__") and name not in documented:
            found.add(f"{name}: set in defaults/main.yml, not an option of {where}")

    for entry, options in entry_options.items():
        for name, option in options.items():
            option = option or {}
            if name in role_vars:
                found.add(f"{name}: an option of entry point {entry}, set in vars/main.yml")
            if option.get("required") and name in defaults:
                found.add(f"{name}: required, yet set in defaults/main.yml")
            if "default" in option and name not in defaults and not option.get("required"):
                found.add(f"{name}: default in entry point {entry}, not in defaults/main.yml")
            if name in defaults and "default" not in option:
                found.add(f"{name}: set in defaults/main.yml, no default in entry point {entry}")
            if (
                name in defaults
                and "default" in option
                and not templated(defaults[name])
                and option["default"] != defaults[name]
            ):
                found.add(
                    f"{name}: default {option['default']!r} in entry point {entry},"
                    f" {defaults[name]!r} in defaults/main.yml"
                )

        # The literal defaults against the entry point's types (the spec's own defaults and
        # required flags left out: the values under test are those of defaults/main.yml).
        spec = {
            name: {k: v for k, v in (option or {}).items() if k not in ("default", "required")}
            for name, option in options.items()
        }
        values = {
            name: defaults[name]
            for name in options
            if name in defaults and not templated(defaults[name])
        }
        result = ArgumentSpecValidator(spec).validate(values)
        for error in result.error_messages:
            found.add(f"entry point {entry}: defaults/main.yml does not pass its spec: {error}")
    return found


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_agree(role: str) -> None:
    assert (ROOT / "roles" / role / "meta" / "argument_specs.yml").is_file()
    known = KNOWN_GAPS.get(role, set())
    found = problems(role)
    assert sorted(found - known) == []
    assert sorted(known - found) == [], "closed: remove these from KNOWN_GAPS"


def test_the_check_sees_each_kind_of_gap(tmp_path: Path) -> None:
    """A made-up role with one of each gap: the check reports every one."""
    role = tmp_path / "roles" / "demo"
    for sub in ("defaults", "vars", "meta", "tasks"):
        (role / sub).mkdir(parents=True)
    (role / "defaults" / "main.yml").write_text(
        "demo_undocumented: 1\n__demo_internal: 2\ndemo_port: 80\ndemo_name: x\n"
        "demo_nodefault: 3\ndemo_typed: not-a-number\n"
    )
    (role / "vars" / "main.yml").write_text("demo_overridden: 1\n")
    (role / "meta" / "argument_specs.yml").write_text(
        yaml.safe_dump(
            {
                "argument_specs": {
                    "main": {
                        "options": {
                            "demo_port": {"type": "int", "default": 8080},
                            "demo_name": {"type": "str", "required": True},
                            "demo_missing": {"type": "str", "default": "y"},
                            "demo_nodefault": {"type": "int"},
                            "demo_typed": {"type": "int", "default": "not-a-number"},
                            "demo_overridden": {"type": "int", "default": 1},
                        }
                    }
                }
            }
        )
    )
    found = "\n".join(sorted(problems("demo", tmp_path)))
    assert "demo_undocumented: set in defaults/main.yml, not an option" in found
    assert "__demo_internal" not in found
    assert "demo_port: default 8080 in entry point main, 80 in defaults/main.yml" in found
    assert "demo_name: required, yet set in defaults/main.yml" in found
    assert "demo_missing: default in entry point main, not in defaults/main.yml" in found
    assert "demo_nodefault: set in defaults/main.yml, no default in entry point main" in found
    assert "demo_overridden: an option of entry point main, set in vars/main.yml" in found
    assert "demo_typed" in found and "does not pass its spec" in found
