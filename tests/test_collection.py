"""The repository root builds as the collection tfserving.fleet, and the built tarball works
on its own: installed by scripts/install-collection.sh (with the collections galaxy.yml
declares, from the copies the ansible package bundles) into an empty collections path, away
from this checkout, with Python's path not scanned for collections."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from tfserving_role_site import Site

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
PLAYBOOKS = sorted(p.stem for p in (ROOT / "playbooks").glob("*.yml"))
INVENTORY = ROOT / "inventory" / "gpu"
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
# The collections the `ansible` package bundles (where the installed dependencies come from).
BUNDLED = next(
    Path(p)
    for p in importlib.util.find_spec("ansible_collections").submodule_search_locations
    if (Path(p) / "community" / "docker").is_dir()
)
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
    ".ci/",
    "ansible.cfg",
    "site.yml",  # the clone's entry point; the collection's is playbooks/site.yml
    "requirements.yml",
    "requirements.txt",
    "requirements.in",
    "Makefile",
    "conftest.py",
    "pyproject.toml",
)
# A collection name in a task, a filter or a plugin: namespace.collection.name.
FQCN = re.compile(r"(?<![\w.])([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.[a-z_][a-z0-9_]*")
PYTHON_COLLECTION = re.compile(r"\bansible_collections\.([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)")
CORE_IMPORT = re.compile(r"^\s*(?:from|import)\s+ansible\.[\w.]+.*$", re.M)  # ansible-core


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
    return result


def collections_used() -> dict[str, set[str]]:
    """Every other collection named in roles/, playbooks/ and plugins/: name -> files.

    A name counts when its namespace is one the bundled collections have (community,
    ansible, ...), which leaves out dotted variables such as ansible_facts.default_ipv4.x;
    ansible-core's own Python imports (ansible.module_utils..., ansible.utils.display) are
    not collections."""
    namespaces = {p.name for p in BUNDLED.iterdir() if p.is_dir() and p.name.isidentifier()}
    used: dict[str, set[str]] = {}
    for top in ("roles", "playbooks", "plugins"):
        for path in (ROOT / top).rglob("*"):
            if not path.is_file() or path.suffix not in (".yml", ".yaml", ".j2", ".py"):
                continue
            text = path.read_text()
            names = [f"{m[1]}.{m[2]}" for m in PYTHON_COLLECTION.finditer(text)]
            if path.suffix == ".py":
                text = CORE_IMPORT.sub("", text)
            names += [f"{m[1]}.{m[2]}" for m in FQCN.finditer(text) if m[1] in namespaces]
            for name in names:
                if name not in ("ansible.builtin", "ansible.legacy", "tfserving.fleet"):
                    used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return used


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    """(the built tarball, an environment that sees only the installed copy, a work dir)."""
    work = tmp_path_factory.mktemp("collection")
    collections = work / "collections"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    run(
        str(ROOT / "scripts" / "install-collection.sh"),
        str(collections),
        str(work / "dist"),
        cwd=work,
        env=env,
    )
    [tarball] = (work / "dist").glob("tfserving-fleet-*.tar.gz")
    (work / "none.cfg").write_text("")
    env["ANSIBLE_CONFIG"] = str(work / "none.cfg")  # not the checkout's ansible.cfg
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    env["ANSIBLE_COLLECTIONS_SCAN_SYS_PATH"] = "false"  # not the ansible package's copies
    return tarball, env, work


def test_tarball_holds_roles_plugins_and_playbooks_only(
    installed: tuple[Path, dict[str, str], Path],
) -> None:
    tarball, _, _ = installed
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert {f"roles/{role}/meta/argument_specs.yml" for role in ROLES} <= set(names)
    assert {f"plugins/modules/{module}.py" for module in MODULES} <= set(names)
    assert "plugins/module_utils/tfserving_config_protos.py" in names
    assert {f"playbooks/{playbook}.yml" for playbook in PLAYBOOKS} <= set(names)
    assert {"playbooks/site.yml", "playbooks/serve.yml", "playbooks/audit.yml"} <= set(names)
    assert [n for n in names if n.startswith(LEFT_OUT)] == []
    assert [n for n in names if {".cache", ".tfserving-registry"} & set(n.split("/"))] == []


def test_install_script_lists_what_it_installed(
    installed: tuple[Path, dict[str, str], Path],
) -> None:
    _, env, work = installed
    out = run("ansible-galaxy", "collection", "list", "--format", "json", cwd=work, env=env)
    listed = {
        name: info["version"]
        for path, found in json.loads(out.stdout).items()
        if path.startswith(env["ANSIBLE_COLLECTIONS_PATH"])
        for name, info in found.items()
    }
    assert listed["tfserving.fleet"] == GALAXY["version"]
    assert set(GALAXY["dependencies"]) <= set(listed)


def test_dependencies_cover_every_collection_used() -> None:
    used = collections_used()
    assert {"community.docker", "community.general"} <= set(used)  # the grep finds them
    missing = {name: sorted(files) for name, files in used.items()}
    for name in GALAXY["dependencies"]:
        missing.pop(name, None)
    assert missing == {}, f"used but not in galaxy.yml dependencies: {missing}"
    unused = set(GALAXY["dependencies"]) - set(used)
    assert unused == set(), f"in galaxy.yml dependencies but not used: {unused}"


@pytest.mark.parametrize("name", sorted(GALAXY["dependencies"]))
def test_bundled_copies_satisfy_the_declared_ranges(name: str) -> None:
    namespace, collection = name.split(".")
    manifest = json.loads((BUNDLED / namespace / collection / "MANIFEST.json").read_text())
    version = manifest["collection_info"]["version"]
    assert version in SpecifierSet(GALAXY["dependencies"][name]), (name, version)


def test_requirements_file_names_the_same_collections() -> None:
    requirements = yaml.safe_load((ROOT / "requirements.yml").read_text())
    named = {entry["name"]: entry["version"] for entry in requirements["collections"]}
    assert named == GALAXY["dependencies"]


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


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_installed_playbook_loads(
    installed: tuple[Path, dict[str, str], Path], playbook: str
) -> None:
    """tfserving.fleet.PLAYBOOK from the installed copy: syntax and every task it lists."""
    _, env, work = installed
    name = f"tfserving.fleet.{playbook}"
    inventory = str(INVENTORY)
    out = run("ansible-playbook", name, "--syntax-check", "-i", inventory, cwd=work, env=env)
    assert f"{env['ANSIBLE_COLLECTIONS_PATH']}/ansible_collections/tfserving/fleet/" in out.stdout
    out = run("ansible-playbook", name, "--list-tasks", "-i", inventory, cwd=work, env=env)
    assert "play #1" in out.stdout


def test_clone_site_runs_the_same_plays_as_the_collection_site(
    installed: tuple[Path, dict[str, str], Path],
) -> None:
    """site.yml in the clone (its ansible.cfg) only imports playbooks/site.yml."""
    _, env, work = installed
    clone_env = {k: v for k, v in env.items() if not k.startswith("ANSIBLE_")}
    clone_env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    argv = ("ansible-playbook", "--list-tasks", "-i", str(INVENTORY))
    clone = run(*argv, "site.yml", cwd=ROOT, env=clone_env).stdout
    collection = run(*argv, "tfserving.fleet.site", cwd=work, env=env).stdout

    def plays(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("playbook: ")]

    assert plays(clone) == plays(collection)
    assert "Check that the controller has what the serving nodes' rollout needs" in clone


@pytest.mark.parametrize("left_out", ["community.docker", "community.general"])
def test_without_a_dependency_the_playbook_fails(
    installed: tuple[Path, dict[str, str], Path], left_out: str, tmp_path: Path
) -> None:
    """The scan of Python's path is off: a dependency missing from the collections path is
    missing, although the ansible package bundles it."""
    _, env, work = installed
    source = Path(env["ANSIBLE_COLLECTIONS_PATH"]) / "ansible_collections"
    partial = tmp_path / "ansible_collections"
    for path in source.glob("*/*"):
        if f"{path.parent.name}.{path.name}" != left_out:
            (partial / path.parent.name).mkdir(parents=True, exist_ok=True)
            (partial / path.parent.name / path.name).symlink_to(path)
    env = {**env, "ANSIBLE_COLLECTIONS_PATH": str(tmp_path)}
    argv = ["ansible-playbook", "tfserving.fleet.site", "-i", str(INVENTORY)]
    for mode in ("--syntax-check", "--list-tasks"):
        result = subprocess.run(
            [*argv, mode], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode != 0, result.stdout[-2000:]
        assert f"couldn't resolve module/action '{left_out}." in result.stderr


def test_installed_role_runs_without_the_checkout_config(
    installed: tuple[Path, dict[str, str], Path], tmp_path: Path
) -> None:
    """The tfserving role's model logic (tests/fixtures/tfserving_role, with its fake
    tfs-client) from the installed copy, with an empty ansible.cfg: no progress callback,
    no pipelining, default forks and gathering. Only the collections path holds
    tfserving.fleet here (the fixture play is outside any collection)."""
    _, env, _ = installed
    site = Site(tmp_path)
    site.export("m", 1)
    site.export("m", 2)
    argv = site.argv([site.model("m")], None)
    fake = {k: v for k, v in site.env("normal").items() if k.startswith("FAKE_TFS_")}
    result = subprocess.run(
        argv, cwd=tmp_path, env={**env, **fake}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert site.versions("m") == ["2"]
    assert site.calls("wait")  # the gate ran tfs-client
