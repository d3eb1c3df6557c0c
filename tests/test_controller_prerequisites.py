"""The controller check (roles/tfserving/tasks/controller.yml, run first by
playbooks/preflight.yml and by the role's validate.yml): a missing tfs-client or a
tensorflow-serving-api that ansible_playbook_python cannot import fails the run with what to
install, before any host task. Run for real with ansible-playbook, as in
test_tfserving_rollback.py (the role against a local directory, tests/fixtures/tfserving_role),
and site.yml against hosts that do not exist (nothing may connect to them)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tfserving_role_site import ANSIBLE_PLAYBOOK, ROOT, Site

CLIENT_HINT = "-m pip install ./client"
PROTOS_HINT = "-m pip install tensorflow-serving-api"


def assert_hint_names_this_python(text: str, hint: str) -> None:
    """The hint installs into the interpreter Ansible runs with: this test's own, whichever
    of the venv's names (python, python3) started it."""
    named = re.findall(rf"([^\s`]+) {re.escape(hint)}", text)
    assert named, f"no '{hint}' in: {text[-2000:]}"
    assert {Path(p).resolve() for p in named} == {Path(sys.executable).resolve()}, named


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def one_line(text: str) -> str:
    return " ".join(text.split())


def assert_no_host_task(site: Site) -> None:
    """Nothing reached the host directory and tfs-client was never called."""
    assert not site.host.exists()
    assert not site.log.exists()


def json_report(env: dict[str, str]) -> dict[str, str]:
    """The run's result as one JSON document on stdout (see report())."""
    return {**env, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}


def report(result: subprocess.CompletedProcess[str]) -> dict:
    """The JSON document, between the lines of ansible.cfg's profile_tasks callback."""
    start = result.stdout.index("{\n")
    return json.JSONDecoder().raw_decode(result.stdout, start)[0]


def without_protos(tmp_path: Path) -> dict[str, str]:
    """PYTHONPATH where tensorflow_serving exists but cannot be imported."""
    shadow = tmp_path / "shadow" / "tensorflow_serving"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ImportError('No module named tensorflow_serving (hidden by the test)')\n"
    )
    return {"PYTHONPATH": str(shadow.parent)}


def run_role(
    site: Site, extra: dict[str, object] | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    site.export("m", 1)
    return subprocess.run(
        site.argv([site.model("m")], extra),
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**site.env("normal"), **(env or {})},
        timeout=300,
    )


def client_path(tmp_path: Path, kind: str) -> Path:
    """A tfserving_client_command that the gate could not run."""
    if kind == "missing":
        return tmp_path / "nowhere" / "tfs-client"
    if kind == "directory":
        return tmp_path
    if kind == "not-executable":
        script = tmp_path / "tfs-client"
        script.write_text("#!/bin/sh\n")
        script.chmod(0o644)
        return script
    return Path("no-such-tfs-client-on-path")  # a bare name, looked up on PATH


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("missing", "does not exist"),
        ("directory", "is a directory"),
        ("not-executable", "is not executable"),
        ("not-on-path", "is not on the controller's PATH"),
    ],
)
def test_missing_client_fails_naming_the_variable_and_the_install(
    site: Site, tmp_path: Path, kind: str, problem: str
) -> None:
    client = client_path(tmp_path, kind)
    result = run_role(site, {"tfserving_client_command": str(client)})
    text = one_line(output(result))
    assert result.returncode != 0, text[-3000:]
    assert f"tfserving_client_command is {client}, which {problem}" in text
    assert_hint_names_this_python(text, CLIENT_HINT)
    assert "Nothing on the hosts has changed." in text
    assert "tensorflow-serving-api cannot be imported" not in text
    assert_no_host_task(site)


def test_unimportable_tensorflow_serving_api_fails_naming_the_package(
    site: Site, tmp_path: Path
) -> None:
    result = run_role(site, env=without_protos(tmp_path))
    text = one_line(output(result))
    assert result.returncode != 0, text[-3000:]
    assert f"tensorflow-serving-api cannot be imported by {sys.executable}" in text
    assert "hidden by the test" in text  # the import error itself
    assert_hint_names_this_python(text, PROTOS_HINT)
    assert "pip install ./client" in text
    assert "Nothing on the hosts has changed." in text
    assert_no_host_task(site)


def test_without_the_gate_the_client_is_not_needed(site: Site, tmp_path: Path) -> None:
    result = run_role(
        site,
        {
            "tfserving_client_command": str(tmp_path / "nowhere" / "tfs-client"),
            "tfserving_gate_enabled": False,
        },
    )
    text = one_line(output(result))
    assert "tfserving_client_command is" not in text
    assert site.versions("m") == ["1"]  # the check passed: the sync ran


def test_a_passing_controller_is_checked_once_per_run(site: Site) -> None:
    """The role run twice in one play (as site.yml runs preflight.yml, then serve.yml's)."""
    site.export("m", 1)
    env = json_report(site.env("normal"))
    playbook = site.tmp / "twice.yml"
    check = (
        "    - name: Check\n"
        "      ansible.builtin.include_role:\n"
        "        name: tfserving.fleet.tfserving\n"
        "        tasks_from: controller.yml\n"
    )
    playbook.write_text(
        "---\n- name: Twice\n  hosts: localhost\n  connection: local\n  gather_facts: false\n"
        f"  tasks:\n{check}{check}"
    )
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, str(playbook)], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert result.returncode == 0, output(result)[-3000:]
    [play] = report(result)["plays"]
    probes = [
        task["hosts"]["localhost"]
        for task in play["tasks"]
        if "Look for tfs-client" in task["task"]["name"]
    ]
    assert [probe.get("skipped", False) for probe in probes] == [False, True]


def test_site_stops_before_any_host_when_the_client_is_missing(tmp_path: Path) -> None:
    """site.yml against hosts that do not exist: only the preflight play runs, on no host."""
    inventory = tmp_path / "hosts.yml"
    unreachable = {"ansible_host": "192.0.2.1", "ansible_connection": "ssh"}
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "children": {
                        "tfserving_nodes": {"hosts": {"node-1": unreachable}},
                        "tfserving_lb": {"hosts": {"lb-1": unreachable}},
                        "tfserving_monitoring": {"hosts": {"monitor-1": unreachable}},
                    },
                    "vars": {"tfserving_client_command": str(tmp_path / "nowhere" / "tfs-client")},
                }
            }
        )
    )
    env = json_report({**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, "site.yml", "-i", str(inventory)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert result.returncode != 0, output(result)[-3000:]
    runs = report(result)
    assert [p["play"]["name"] for p in runs["plays"]] == [
        "Check that the controller has what the serving nodes' rollout needs"
    ]
    ran = [task["task"]["name"] for p in runs["plays"] for task in p["tasks"]]
    assert ran[-1].endswith(
        "Fail when the readiness gate's tfs-client is missing on the controller"
    )
    failed = [
        result
        for p in runs["plays"]
        for task in p["tasks"]
        for result in task["hosts"].values()
        if result.get("failed")
    ]
    assert "which does not exist" in one_line(failed[0]["msg"])
    assert CLIENT_HINT in failed[0]["msg"]
    # Nothing connected to a host: no host is unreachable, and none but node-1 ran a task.
    assert set(runs["stats"]) == {"node-1"}
    assert runs["stats"]["node-1"]["unreachable"] == 0
