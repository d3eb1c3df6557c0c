"""CHANGELOG.md follows the one rule stated at its top (checked here): `## Unreleased`
first, then the releases newest first, the newest no later than galaxy.yml's version; in
each section entries under Added, Changed, Fixed and Removed, in that order, only those
with entries; an entry that changes a default says so first, stands under Changed and
names its variables in backquotes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "CHANGELOG.md").read_text()
KINDS = ["Added", "Changed", "Fixed", "Removed"]
VERSION = re.compile(r"^## (\d+)\.(\d+)\.(\d+)$")


def sections(text: str = TEXT) -> list[tuple[str, str]]:
    """(heading, body) of each `## ` section."""
    parts = re.split(r"^(## .*)$", text, flags=re.M)
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts), 2)]


def kinds(body: str) -> list[tuple[str, list[str]]]:
    """(kind, entries) of each `### ` subsection of a section."""
    parts = re.split(r"^### (.*)$", body, flags=re.M)
    assert not parts[0].strip(), f"text before the first ### heading: {parts[0].strip()[:80]!r}"
    found = []
    for i in range(1, len(parts), 2):
        entries = re.split(r"^(?=- )", parts[i + 1].strip(), flags=re.M)
        found.append((parts[i], [e for e in entries if e.strip()]))
    return found


def problems(text: str) -> list[str]:
    found = []
    if not text.startswith("# Changelog\n"):
        found.append("the file does not open with '# Changelog'")
    heads = [head for head, _ in sections(text)]
    if not heads or heads[0] != "## Unreleased":
        found.append("'## Unreleased' is not the first section")
    versions = []
    for head in heads[1:]:
        match = VERSION.match(head)
        if not match:
            found.append(f"{head!r} is no release heading (## X.Y.Z)")
        else:
            versions.append(tuple(int(n) for n in match.groups()))
    if versions != sorted(versions, reverse=True):
        found.append(f"the releases are not newest first: {versions}")
    galaxy = tuple(
        int(n) for n in yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"].split(".")
    )
    if versions and versions[0] > galaxy:
        found.append(f"release {versions[0]} is newer than galaxy.yml's version {galaxy}")
    for head, body in sections(text):
        try:
            subsections = kinds(body)
        except AssertionError as error:
            found.append(f"{head}: {error}")
            continue
        names = [kind for kind, _ in subsections]
        if [k for k in KINDS if k in names] != names:
            found.append(f"{head}: subsections {names}, not a subset of {KINDS} in that order")
        for kind, entries in subsections:
            if not entries:
                found.append(f"{head} / {kind}: no entries")
            for entry in entries:
                if not entry.startswith("- "):
                    found.append(f"{head} / {kind}: not a list item: {entry[:60]!r}")
                for match in re.finditer(
                    r"^\s*- Changed defaults?:(.*?)(?=^\s*- |\Z)", entry, re.M | re.S
                ):
                    if kind != "Changed":
                        found.append(f"{head} / {kind}: a changed default outside Changed")
                    if not re.search(r"`\w+`", match.group(1)):
                        found.append(f"{head}: a changed default names no variable: {entry[:60]!r}")
    return found


def test_the_changelog_follows_its_rule() -> None:
    assert problems(TEXT) == []


def test_the_rule_is_stated_at_the_top() -> None:
    top = TEXT[: TEXT.index("\n## ")]
    assert "tests/test_changelog.py" in top and all(kind in top for kind in KINDS)


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ("# Changelog\n\n## 0.2.0\n\n### Added\n\n- x\n", "'## Unreleased' is not the first"),
        ("# Changelog\n\n## Unreleased\n\n- loose entry\n", "text before the first ###"),
        ("# Changelog\n\n## Unreleased\n\n### Fixed\n\n- a\n\n### Added\n\n- b\n", "in that order"),
        ("# Changelog\n\n## Unreleased\n\n### Misc\n\n- a\n", "not a subset"),
        (
            "# Changelog\n\n## Unreleased\n\n### Fixed\n\n- Changed default: `x` is 2\n",
            "outside Changed",
        ),
        (
            "# Changelog\n\n## Unreleased\n\n### Changed\n\n- Changed default: retries are 2\n",
            "names no variable",
        ),
        ("# Changelog\n\n## Unreleased\n\n## 0.1.0\n\n## 0.2.0\n", "newest first"),
        ("# Changelog\n\n## Unreleased\n\n## 9.0.0\n", "newer than galaxy.yml"),
    ],
)
def test_the_check_finds_what_breaks_the_rule(broken: str, problem: str) -> None:
    assert any(problem in found for found in problems(broken)), problems(broken)


@pytest.mark.parametrize(
    "gone",
    [
        "tfserving.fleet.local_fact",
        "tfserving.fleet.nvidia_smi_list_gpus",
        "molecule/gpu/filter_plugins",
    ],
)
def test_what_left_the_collection_is_in_removed(gone: str) -> None:
    _, body = sections()[0]
    removed = dict(kinds(body)).get("Removed", [])
    assert any(gone in entry for entry in removed)
