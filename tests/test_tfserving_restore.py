"""keep-config.yml and restore.yml: the config files a replaced container read come back
readable by the server.

Run on this machine against a temporary tfserving_root (no container involved: the plan
found none kept, so only the config files are restored)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PLAY = """
- name: Restore the previous config files
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Keep the config files, as config.yml does before replacing a container
      ansible.builtin.include_role:
        name: tfserving.fleet.tfserving
        tasks_from: keep-config.yml
    - name: A new config file is written
      ansible.builtin.copy:
        dest: "{{ tfserving_root }}/config/models.config"
        content: "new\n"
        mode: "0640"
    - name: Restore
      ansible.builtin.include_role:
        name: tfserving.fleet.tfserving
        tasks_from: restore.yml
"""


def test_restored_config_directory_stays_searchable(tmp_path: Path) -> None:
    root = tmp_path / "srv"
    config = root / "config"
    config.mkdir(parents=True)
    config.chmod(0o750)  # as config.yml makes it
    (config / "models.config").write_text("previous\n")
    (config / "models.config").chmod(0o640)
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    extra = {
        "tfserving_root": str(root),
        "tfserving_container_gid": os.getgid(),
        # A replaced container: keep-config.yml keeps the files; no container runs here.
        "__tfserving_plan_previous": False,
        "__tfserving_plan_container_changed": True,
        "__tfserving_plan_config_changed": False,
        "__tfserving_plan_running": True,
        "tfserving_keeps_previous": False,
    }
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            str(play),
            "-e",
            json.dumps(extra),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "NO_COLOR": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert (config / "models.config").read_text() == "previous\n"
    mode = stat.S_IMODE(config.stat().st_mode)
    assert mode == 0o750, oct(mode)  # the server's group must be able to enter it
    assert stat.S_IMODE((config / "models.config").stat().st_mode) == 0o640
    assert not (root / "previous").exists()
