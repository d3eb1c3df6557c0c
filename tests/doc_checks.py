"""What the project's documentation may name: the variables, groups and plugins in its code.

A name a document gives (``tfserving_gate_timeout``, ``docker_daemon_json``) is stale when no
task, template, argument spec, default, var or plugin of the collection uses it any more:
a renamed or removed variable. The code is read without its comments (YAML is parsed, so a
name kept only in a comment does not count).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())

WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A name of the project's variables, groups or plugins: it starts with a role's name and an
# underscore (tfserving_, docker_, host_packages_, ...), or is a role's name. A trailing
# "_*" stands for every name that starts so (`tfserving_ssl_*`).
PREFIXES = sorted(ROLES, key=len, reverse=True)
ALTERNATIVES = "|".join(map(re.escape, PREFIXES))
NAME = re.compile(
    rf"(?<![\w./-])(?:{ALTERNATIVES})(?:_[a-z0-9]+)*(?:_\*)?(?![\w*-]|\.(?:py|yml|fact)\b|/)"
)


def _strings(data: Any) -> Iterator[str]:
    """Every key and string value of a parsed YAML document."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(data, list):
        for item in data:
            yield from _strings(item)
    elif isinstance(data, str):
        yield data


@cache
def code_words() -> frozenset[str]:
    """Every identifier in the collection's code (roles, playbooks, plugins), comments aside."""
    words: set[str] = set()
    for top in ("roles", "playbooks", "plugins"):
        for path in (ROOT / top).rglob("*"):
            if not path.is_file() or path.suffix == ".md":
                continue
            text = path.read_text(errors="replace")
            if path.suffix in (".yml", ".yaml"):
                for document in yaml.safe_load_all(text):
                    for string in _strings(document):
                        words.update(WORD.findall(string))
            else:
                words.update(WORD.findall(text))
    return frozenset(words)


def names_in(text: str) -> set[str]:
    """The project names a document gives (variables, groups, roles, plugins)."""
    return {match.group(0) for match in NAME.finditer(text)}


def stale_names(text: str, words: frozenset[str] | None = None) -> list[str]:
    """The names in TEXT that no code uses (a "_*" name: that no code name starts with)."""
    words = code_words() if words is None else words
    stale = []
    for name in sorted(names_in(text)):
        if name.endswith("_*"):
            if not any(word.startswith(name[:-1]) for word in words):
                stale.append(name)
        elif name not in words:
            stale.append(name)
    return stale


def argument_specs(role: str, root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """{entry point: {option: spec}} from roles/ROLE/meta/argument_specs.yml."""
    path = root / "roles" / role / "meta" / "argument_specs.yml"
    specs = (yaml.safe_load(path.read_text()) or {}).get("argument_specs") or {}
    return {entry: (spec or {}).get("options") or {} for entry, spec in specs.items()}
