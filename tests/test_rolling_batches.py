"""The batches of the rolling plays: tfserving_rollout_batch from the inventory reaches `serial`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

PLAY = """
- name: Load the inventory variables
  hosts: tfserving_nodes
  gather_facts: false
  tasks: []

- name: Rolling
  hosts: tfserving_nodes
  gather_facts: false
  connection: local
  serial: {serial}
  tasks:
    - name: Print the batch
      ansible.builtin.debug:
        msg: "BATCH {{{{ ansible_play_batch | to_json }}}}"
      run_once: true
"""


def batches(tmp_path: Path, group_vars: dict[str, object]) -> list[list[str]]:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "tfserving_nodes.yml").write_text(json.dumps(group_vars))
    hosts = {f"n{i}": {"ansible_python_interpreter": sys.executable} for i in range(1, 6)}
    (tmp_path / "hosts.yml").write_text(
        json.dumps({"all": {"children": {"tfserving_nodes": {"hosts": hosts}}}})
    )
    play = tmp_path / "play.yml"
    # The expression the rolling plays use, taken from playbooks/docker.yml.
    docker = yaml.safe_load((ROOT / "playbooks" / "docker.yml").read_text())
    assert "serial" not in docker[0], "the first play must load the inventory variables"
    serial = next(play["serial"] for play in docker if "serial" in play)
    play.write_text(PLAY.format(serial=json.dumps(serial)))
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp_path / "hosts.yml"),
            str(play),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:]
    return [
        json.loads(line.split("BATCH ", 1)[1].rstrip('"').replace('\\"', '"'))
        for line in result.stdout.splitlines()
        if '"msg": "BATCH ' in line
    ]


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        ([1, "50%"], [["n1"], ["n2", "n3"], ["n4", "n5"]]),
        (2, [["n1", "n2"], ["n3", "n4"], ["n5"]]),
        ("100%", [["n1", "n2", "n3", "n4", "n5"]]),
    ],
)
def test_inventory_batch_reaches_serial(
    tmp_path: Path, batch: object, expected: list[list[str]]
) -> None:
    assert batches(tmp_path, {"tfserving_rollout_batch": batch}) == expected


def test_without_a_batch_one_node_goes_at_a_time(tmp_path: Path) -> None:
    assert batches(tmp_path, {}) == [["n1"], ["n2"], ["n3"], ["n4"], ["n5"]]


@pytest.mark.parametrize("playbook", ["docker.yml", "gpu.yml", "serve.yml"])
def test_every_rolling_play_reads_the_same_batches(playbook: str) -> None:
    plays = yaml.safe_load((ROOT / "playbooks" / playbook).read_text())
    docker = yaml.safe_load((ROOT / "playbooks" / "docker.yml").read_text())
    serial = {play["serial"] for play in plays if "serial" in play}
    assert serial == {play["serial"] for play in docker if "serial" in play}
