"""The platforms each role's meta/main.yml lists are those the molecule scenarios run, or
are marked untested there (and in README.md's "Platforms")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLES = sorted(p.parent.parent.name for p in ROOT.glob("roles/*/meta/main.yml"))
DEBIAN = {"12": "bookworm", "13": "trixie"}
UNTESTED = re.compile(r"^\s*# Untested:", re.M)


def scenario_platforms() -> set[tuple[str, str]]:
    """(platform, version) of every host image a molecule scenario starts."""
    found = set()
    for path in ROOT.glob("molecule/*/molecule.yml"):
        for platform in yaml.safe_load(path.read_text()).get("platforms") or []:
            image = str(platform.get("image", ""))
            match = re.search(r"debian[\w-]*:(\d+)$", image)
            if match:
                found.add(("Debian", DEBIAN[match.group(1)]))
            elif image:
                pytest.fail(f"{path}: image {image} is no Debian image this test knows")
    return found


def listed(role: str) -> tuple[set[tuple[str, str]], str]:
    text = (ROOT / "roles" / role / "meta" / "main.yml").read_text()
    platforms = yaml.safe_load(text)["galaxy_info"]["platforms"]
    return {(p["name"], str(v)) for p in platforms for v in p["versions"]}, text


def test_the_scenarios_run_debian_12_and_13() -> None:
    assert scenario_platforms() == {("Debian", "bookworm"), ("Debian", "trixie")}


@pytest.mark.parametrize("role", ROLES)
def test_every_tested_platform_is_listed(role: str) -> None:
    platforms, _ = listed(role)
    assert scenario_platforms() <= platforms


@pytest.mark.parametrize("role", ROLES)
def test_a_platform_no_scenario_runs_is_marked_untested(role: str) -> None:
    platforms, text = listed(role)
    extra = sorted(platforms - scenario_platforms())
    if extra:
        assert UNTESTED.search(text), f"{role} lists {extra} without '# Untested:'"
        readme = (ROOT / "README.md").read_text()
        section = readme[readme.index("## Platforms") :]
        section = section[: section.index("\n## ")]
        assert f"`{role}`" in section and "untested" in section
