"""The roles' records on the host (ansible_local.NAME, /etc/ansible/facts.d/NAME.fact),
written with the library (ansible.builtin.file, copy, setup): later runs read them, this
run sees them at once, and a record is rewritten only when its content differs.

roles/tfserving/tasks/record.yml runs here as it is (its directory is a variable); the
other records (nvidia_container_toolkit's detect.yml, tfserving_image's distribute.yml and
registry.yml) are checked to be the same three tasks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_run import run_playbook
from role_tasks import ROOT, load_yaml, module_args

PLAYBOOK = """
- name: Record the node's servers and read them back
  hosts: localhost
  gather_facts: false
  vars:
    __tfserving_instances_fact_dir: "{{ fact_dir }}"
    tfserving_instance_mode: one
    __tfserving_instance_lb_names: [node1]
    tfserving_instances:
      - {index: 0, name: tfserving, grpc_port: 8500, rest_port: 8501, device: null,
         gpu_uuids: [GPU-1], cpuset_cpus: ""}
  tasks:
    - name: Record
      ansible.builtin.include_tasks: "{{ record }}"

    - name: Read it in the same run
      ansible.builtin.debug:
        msg: >-
          SEEN mode={{ ansible_local.tfserving_instances.mode | default('none') }}
          earlier={{ ansible_local.earlier.kept | default('gone') }}
"""
RECORD = ROOT / "roles" / "tfserving" / "tasks" / "record.yml"


def run(tmp_path: Path, *extra: str) -> str:
    playbook = tmp_path / "record.yml"
    playbook.write_text(PLAYBOOK)
    fact_dir = tmp_path / "facts.d"
    result = run_playbook(playbook, "-e", f"fact_dir={fact_dir}", "-e", f"record={RECORD}", *extra)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, output[-3000:]
    return output


def test_a_record_is_written_seen_at_once_and_rewritten_only_when_it_differs(
    tmp_path: Path,
) -> None:
    fact_dir = tmp_path / "facts.d"  # does not exist yet
    # --check first: nothing is written, so this run reads no record (unlike the
    # local_fact action the copy replaces; the roles read every record with a default).
    checked = run(tmp_path, "--check")
    assert "SEEN mode=none" in checked
    assert not fact_dir.exists()
    fact_dir.mkdir()
    (fact_dir / "earlier.fact").write_text('{"kept": true}\n')
    first = run(tmp_path)
    assert "SEEN mode=one earlier=True" in first  # the other records are kept
    assert "changed=1 " in first  # the copy
    record = fact_dir / "tfserving_instances.fact"
    content = json.loads(record.read_text())
    assert content["mode"] == "one"
    assert content["gpus"] == {"0": ["GPU-1"]}
    assert content["servers"][0]["server"] == "node1"
    # The same text as the local_fact module wrote: sorted, indented by 2, a final newline.
    assert record.read_text() == json.dumps(content, indent=2, sort_keys=True) + "\n"
    assert oct(record.stat().st_mode & 0o777) == "0o644"
    second = run(tmp_path)
    assert "SEEN mode=one earlier=True" in second
    assert "changed=0" in second


@pytest.mark.parametrize(
    ("role", "tasks_file", "name"),
    [
        ("nvidia_container_toolkit", "detect.yml", "nvidia_container_toolkit"),
        ("tfserving_image", "distribute.yml", "tfserving_image"),
        ("tfserving_image", "registry.yml", "tfserving_image"),
        ("tfserving", "record.yml", "tfserving_instances"),
    ],
)
def test_every_record_is_a_directory_a_copy_and_a_refresh(
    role: str, tasks_file: str, name: str
) -> None:
    tasks = load_yaml(ROOT / "roles" / role / "tasks" / tasks_file)
    modules = [module_args(task) for task in tasks]
    copies = [
        i
        for i, (module, args) in enumerate(modules)
        if module == "ansible.builtin.copy" and str(args["dest"]).endswith(f"/{name}.fact")
    ]
    assert len(copies) == 1, f"no copy of {name}.fact"
    at = copies[0]
    directory, copy, refresh = modules[at - 1], modules[at], modules[at + 1]
    assert directory[0] == "ansible.builtin.file" and directory[1]["state"] == "directory"
    assert copy[1]["mode"] == "0644"
    assert "to_nice_json(indent=2) }}\n" in copy[1]["content"]
    assert refresh[0] == "ansible.builtin.setup"
    assert refresh[1]["filter"] == "ansible_local"
    # The three run under the same condition.
    whens = {str(tasks[i].get("when")) for i in (at - 1, at, at + 1)}
    assert len(whens) == 1
