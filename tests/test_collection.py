"""The repository root builds as the collection tfserving.fleet, and the built tarball works
on its own: installed into an empty collections path, away from this checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
LEFT_OUT = (
    "client/",
    "standin/",
    "molecule/",
    "tests/",
    "inventory/",
    "files/",
    ".venv/",
    ".cache/",
    "ansible_collections/",
    "bench/",
    "scripts/",
)


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    """(the built tarball, an environment that sees only the installed copy, a work dir)."""
    work = tmp_path_factory.mktemp("collection")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["ANSIBLE_CONFIG"] = str(work / "none.cfg")  # not the checkout's ansible.cfg
    run(
        "ansible-galaxy",
        "collection",
        "build",
        "--output-path",
        str(work / "dist"),
        cwd=ROOT,
        env=env,
    )
    [tarball] = (work / "dist").glob("tfserving-fleet-*.tar.gz")
    collections = work / "collections"
    run(
        "ansible-galaxy",
        "collection",
        "install",
        "--offline",
        "-p",
        str(collections),
        str(tarball),
        cwd=work,
        env=env,
    )
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    return tarball, env, work


def test_tarball_holds_roles_and_plugins_only(installed: tuple[Path, dict[str, str], Path]) -> None:
    tarball, _, _ = installed
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert {f"roles/{role}/meta/argument_specs.yml" for role in ROLES} <= set(names)
    assert {f"plugins/modules/{module}.py" for module in MODULES} <= set(names)
    assert "plugins/module_utils/tfserving_config_protos.py" in names
    assert [n for n in names if n.startswith(LEFT_OUT)] == []


@pytest.mark.parametrize("module", MODULES)
def test_every_module_is_documented(
    installed: tuple[Path, dict[str, str], Path], module: str
) -> None:
    _, env, work = installed
    out = run("ansible-doc", "--json", f"tfserving.fleet.{module}", cwd=work, env=env).stdout
    [doc] = json.loads(out).values()
    assert doc["doc"]["short_description"]
    assert f"tfserving.fleet.{module}:" in (doc["examples"] or "")
    assert doc["return"]


@pytest.mark.parametrize("role", ROLES)
def test_every_role_argument_spec_is_documented(
    installed: tuple[Path, dict[str, str], Path], role: str
) -> None:
    _, env, work = installed
    out = run("ansible-doc", "-t", "role", f"tfserving.fleet.{role}", cwd=work, env=env).stdout
    assert f"{role}_" in out  # its role-prefixed variables


def test_playbook_with_fully_qualified_roles_passes_syntax_check(
    installed: tuple[Path, dict[str, str], Path],
) -> None:
    _, env, work = installed
    roles = "\n".join(f"    - role: tfserving.fleet.{role}" for role in ROLES)
    playbook = work / "fleet.yml"
    playbook.write_text(f"---\n- name: Every role\n  hosts: all\n  roles:\n{roles}\n")
    run("ansible-playbook", "-i", "localhost,", "--syntax-check", str(playbook), cwd=work, env=env)
