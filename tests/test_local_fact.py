"""The local_fact module and action: a record on the host that later runs read, and that
this run sees at once in ansible_local."""

from __future__ import annotations

import json
from pathlib import Path

from ansible_run import run_playbook

PLAYBOOK = """
- name: Record and read back
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Record another fact first
      tfserving.fleet.local_fact:
        name: earlier
        content: {kept: true}
        fact_dir: "{{ fact_dir }}"

    - name: Record the image
      tfserving.fleet.local_fact:
        name: tfserving_image
        content: {ref: "example:1", id: "sha256:abc", variant: cpu}
        fact_dir: "{{ fact_dir }}"
      register: recorded

    - name: Read it in the same run
      ansible.builtin.debug:
        msg: >-
          SEEN ref={{ ansible_local.tfserving_image.ref }} changed={{ recorded.changed }}
          earlier={{ ansible_local.earlier.kept | default('gone') }}
"""


def test_a_fact_is_recorded_seen_at_once_and_rewritten_only_when_it_differs(
    tmp_path: Path,
) -> None:
    playbook = tmp_path / "fact.yml"
    playbook.write_text(PLAYBOOK)
    fact_dir = tmp_path / "facts.d"  # does not exist yet
    first = run_playbook(playbook, "-e", f"fact_dir={fact_dir}")
    output = " ".join((first.stdout + first.stderr).split())
    assert first.returncode == 0, output[-3000:]
    assert "SEEN ref=example:1 changed=True earlier=True" in output
    record = fact_dir / "tfserving_image.fact"
    assert json.loads(record.read_text()) == {
        "ref": "example:1",
        "id": "sha256:abc",
        "variant": "cpu",
    }
    assert oct(record.stat().st_mode & 0o777) == "0o644"
    second = run_playbook(playbook, "-e", f"fact_dir={fact_dir}")
    assert "SEEN ref=example:1 changed=False" in " ".join(second.stdout.split())
