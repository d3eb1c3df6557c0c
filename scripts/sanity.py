#!/usr/bin/env python3
"""`ansible-test sanity` (its default tests, --local, offline) on what the collection ships.

ansible-test wants the collection at .../ansible_collections/tfserving/fleet and does not
accept the checkout's symlink, so this builds the tarball (`ansible-galaxy collection
build`, which applies galaxy.yml's build_ignore), unpacks it into a temporary
ansible_collections/tfserving/fleet, adds tests/sanity/ (the ignore file, which the
tarball leaves out) and runs the tests there on the controller's Python.

Offline, ansible-test cannot create the virtual environments it runs some tests in (it
downloads pip and pinned packages). For each such test this script prepares the
environment ansible-test would look for, holding exactly the packages the test asks for,
linked from the project's .venv (their versions may differ from ansible-test's pins). A
test whose packages the .venv does not have is skipped by name, and the summary at the end
says which and why. SANITY_REQUIRE_ALL=1 turns those skips into a failure.

    scripts/sanity.py [ansible-test sanity options, e.g. --test yamllint]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PYTHON_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
IGNORE_DIR = ROOT / "tests" / "sanity"


def build(work: Path) -> Path:
    """The collection as the tarball ships it, at WORK/ansible_collections/tfserving/fleet."""
    dist = work / "dist"
    subprocess.run(
        [BIN / "ansible-galaxy", "collection", "build", "--force", "--output-path", dist, ROOT],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    [tarball] = dist.glob("tfserving-fleet-*.tar.gz")
    collection = work / "ansible_collections" / "tfserving" / "fleet"
    collection.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(collection, filter="data")
    shutil.copytree(IGNORE_DIR, collection / "tests" / "sanity")
    return collection


def requirement_names(commands: list) -> list[str]:
    """The distribution names ansible-test's pip commands would install."""
    from ansible_test._internal.python_requirements import PipInstall

    names = []
    for command in commands:
        if isinstance(command, PipInstall):
            for _, content in command.requirements:
                for line in content.splitlines():
                    line = line.split("#", 1)[0].strip()
                    if line:
                        names.append(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0])
    return names


def top_level_entries(dist: metadata.Distribution) -> set[str]:
    """The names a distribution puts in site-packages (packages, modules, its dist-info)."""
    entries = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first not in ("..", "__pycache__") and not first.endswith(".pth"):
            entries.add(first)
    return entries


def prepare(home: Path, collection: Path, tests: list[str]) -> dict[str, str]:
    """Create the environments ansible-test looks for; returns {test: why skipped}."""
    os.chdir(collection)  # ansible-test's data context is the current directory
    from ansible_test._internal.commands.sanity import hash_pip_commands
    from ansible_test._internal.host_configs import NativePythonConfig
    from ansible_test._internal.python_requirements import collect_requirements

    python = NativePythonConfig(version=PYTHON_VERSION, path=sys.executable)
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    skipped: dict[str, str] = {}
    for test in tests:
        # The import test runs modules and plugins in two environments and reads YAML in a
        # third; every other test uses the one named after it.
        environments = [(test, False)]
        if test == "import":
            environments += [("import.module", True), ("import.plugin", True)]
        for name, minimize in environments:
            commands = collect_requirements(
                python=python,
                controller=True,
                command=None,
                ansible=False,
                coverage=False,
                minimize=minimize,
                sanity=name,
            )
            if not commands:
                continue  # ansible-test's shared environment without packages: it makes that
            wanted = requirement_names(commands)
            missing = []
            dists = []
            for requirement in wanted:
                try:
                    dists.append(metadata.distribution(requirement))
                except metadata.PackageNotFoundError:
                    missing.append(requirement)
            if missing:
                skipped[test] = f"needs {', '.join(missing)}, not in the project's .venv"
                break
            path = home / ".ansible/test/venv" / f"sanity.{name}" / PYTHON_VERSION
            path = path / hash_pip_commands(commands)
            subprocess.run(
                [sys._base_executable, "-m", "venv", "--without-pip", path],  # type: ignore[attr-defined]
                check=True,
            )
            [venv_site] = path.glob("lib/python*/site-packages")
            for dist in dists:
                for entry in top_level_entries(dist):
                    (venv_site / entry).symlink_to(site / entry)
            import yaml

            has_yaml = "PyYAML" in wanted
            libyaml = bool(getattr(yaml, "__with_libyaml__", False)) if has_yaml else None
            (path / "meta.install.json").write_text(
                json.dumps([command.serialize() for command in commands], indent=4)
            )
            (path / "meta.yaml.json").write_text(json.dumps(libyaml))
            (path / "marker.txt").touch()
    return skipped


def applicable(test: str, collection: Path, env: dict[str, str]) -> bool:
    """Whether the test has files to check (ansible-test --explain says so, running nothing)."""
    command = [BIN / "ansible-test", "sanity", "--local", "--python", PYTHON_VERSION]
    explained = subprocess.run(
        [*command, "--test", test, "--explain"],
        cwd=collection,
        env=env,
        capture_output=True,
        text=True,
    )
    return "No tests applicable." not in explained.stdout + explained.stderr


def main() -> int:
    extra = sys.argv[1:]
    not_applicable: list[str] = []
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    # Nothing from the checkout's ansible.cfg (collections_path = .) or a shared home.
    for key in list(env):
        if key.startswith("ANSIBLE_"):
            del env[key]
    with tempfile.TemporaryDirectory(prefix="tfserving-sanity-") as tmp:
        work = Path(tmp)
        home = work / "home"
        home.mkdir()
        env["HOME"] = str(home)
        os.environ["HOME"] = str(home)
        collection = build(work)
        listed = subprocess.run(
            [BIN / "ansible-test", "sanity", "--list-tests"],
            cwd=collection,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        skipped = prepare(home, collection, listed)
        # Without shellcheck, ansible-test skips that test with a mere warning: name it too.
        if "shellcheck" in listed and shutil.which("shellcheck", path=env["PATH"]) is None:
            skipped["shellcheck"] = "needs the shellcheck program, not installed"
        # A test with nothing to check in what the collection ships is not a skip.
        for test in list(skipped):
            if not applicable(test, collection, env):
                del skipped[test]
                not_applicable.append(test)
        command = [BIN / "ansible-test", "sanity", "--local", "--python", PYTHON_VERSION]
        command += [f"--skip-test={test}" for test in sorted(skipped)] + extra
        print("sanity:", " ".join(str(c) for c in command[1:]), flush=True)
        result = subprocess.run(command, cwd=collection, env=env)
    print(f"sanity: ansible-test exited {result.returncode} on Python {PYTHON_VERSION}")
    if not_applicable:
        print(f"sanity: not applicable (no file to check): {', '.join(sorted(not_applicable))}")
    for test, why in sorted(skipped.items()):
        print(f"sanity: SKIPPED {test}: {why}")
    if result.returncode != 0:
        return result.returncode
    if skipped and os.environ.get("SANITY_REQUIRE_ALL") == "1":
        print("sanity: SANITY_REQUIRE_ALL=1 and tests were skipped", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
