"""The docker role's daemon.json mechanism (tasks/daemon-json.yml), run on this machine
against a file in a temporary directory: what it hands its callers, and how it fails."""

from __future__ import annotations

import json
from pathlib import Path

from ansible_run import run_playbook

PLAYBOOK = """
- name: Merge into a daemon.json
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Merge as the nvidia_container_toolkit role does, deciding from the current content
      ansible.builtin.include_role:
        name: tfserving.fleet.docker
        tasks_from: daemon-json
      vars:
        docker_daemon_json_settings: >-
          {{ {'runtimes': {'nvidia': {'path': 'nvidia-container-runtime', 'args': []}}}
             | combine({'default-runtime': 'runc'}
                       if (docker_daemon_json_current | default({})).get('default-runtime')
                          == 'nvidia'
                       else {}) }}

    - name: Hand over what the caller received
      ansible.builtin.copy:
        dest: "{{ caller_view }}"
        content: >-
          {{ {'current': docker_daemon_json_current, 'merged': docker_daemon_json} | to_json }}
        mode: "0644"
      check_mode: false
"""


def merge(tmp_path: Path, *extra: str) -> tuple[int, str]:
    playbook = tmp_path / "merge.yml"
    playbook.write_text(PLAYBOOK)
    result = run_playbook(
        playbook,
        "-e",
        f"__docker_daemon_json_path={tmp_path / 'daemon.json'}",
        "-e",
        f"caller_view={tmp_path / 'caller.json'}",
        *extra,
    )
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def caller_view(tmp_path: Path) -> dict[str, dict[str, object]]:
    return json.loads((tmp_path / "caller.json").read_text())


def test_callers_get_the_content_before_and_after_the_merge(tmp_path: Path) -> None:
    current = {
        "max-concurrent-downloads": 4,
        "default-runtime": "nvidia",
        "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}},
    }
    (tmp_path / "daemon.json").write_text(json.dumps(current))
    # --check: the file would be written (and docker restarted); nothing here is touched.
    rc, output = merge(tmp_path, "--check")
    assert rc == 0, output[-3000:]
    view = caller_view(tmp_path)
    assert view["current"] == current
    # The settings were decided from the current content: nvidia was the default runtime.
    assert view["merged"] == {**current, "default-runtime": "runc"}
    assert json.loads((tmp_path / "daemon.json").read_text()) == current


def test_a_file_that_cannot_be_read_fails_naming_it(tmp_path: Path) -> None:
    (tmp_path / "daemon.json").mkdir()  # exists, but cannot be read as a file
    rc, output = merge(tmp_path, "--check")
    assert rc != 0
    assert f"Could not read {tmp_path / 'daemon.json'} on localhost as a JSON object" in output, (
        output[-3000:]
    )
    assert "nothing was changed" in output
    assert not (tmp_path / "caller.json").exists()


def test_content_that_is_not_a_json_object_fails_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "daemon.json").write_text('["not", "an", "object"]')
    rc, output = merge(tmp_path, "--check")
    assert rc != 0
    assert f"Could not read {tmp_path / 'daemon.json'} on localhost as a JSON object" in output
    assert "not an object" in output, output[-3000:]
