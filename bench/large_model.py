#!/usr/bin/env python3
"""A large model version to the three fleet nodes: Ansible's copy vs ansible.posix.synchronize.

A benchmark, not a test. Needs molecule/fleet's hosts up (molecule create -s fleet) and
rsync on the controller (synchronize runs rsync here, over `docker exec`, for the test
hosts' connection). Writes a version directory of --mb megabytes (one large variables file
plus a small saved_model.pb, like a real export) on the controller, then sends it to the
three nodes with each method in turn, in parallel across the nodes as a play does, and
prints one JSON line per method. The copies are removed afterwards.

    .venv/bin/python bench/large_model.py --mb 500
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODES = "fleet-node1,fleet-node2,fleet-node3"

PLAY = """
- name: Send a large version ({method})
  hosts: {nodes}
  gather_facts: false
  tasks:
    - name: Install rsync on the node
      ansible.builtin.apt:
        name: rsync
      when: "'{method}' == 'synchronize'"
    - name: Start from nothing
      ansible.builtin.file:
        path: /srv/bench-large
        state: absent
    - name: Create the parent
      ansible.builtin.file:
        path: /srv/bench-large
        state: directory
        mode: "0755"
    - name: Send
      {task}
    - name: Digest of the large file on the node
      ansible.builtin.stat:
        path: /srv/bench-large/version/variables/variables.data-00000-of-00001
        checksum_algorithm: sha256
      register: sent
    - name: Fail when the content differs
      ansible.builtin.assert:
        that: sent.stat.checksum == "{digest}"
"""
TASKS = {
    "copy": (
        "ansible.builtin.copy:\n        src: {src}/\n        dest: /srv/bench-large/version/\n"
        "        mode: u=rwX,go=rX"
    ),
    "synchronize": (
        "ansible.posix.synchronize:\n        src: {src}/\n        dest: /srv/bench-large/version/\n"
        "        archive: false\n        recursive: true\n        checksum: true"
    ),
}


def make_version(root: Path, megabytes: int) -> str:
    import hashlib

    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(os.urandom(64 * 1024))
    digest = hashlib.sha256()
    with (root / "variables" / "variables.data-00000-of-00001").open("wb") as out:
        for _ in range(megabytes):
            block = os.urandom(1 << 20)
            digest.update(block)
            out.write(block)
    (root / "variables" / "variables.index").write_bytes(os.urandom(4096))
    return digest.hexdigest()


def run(method: str, src: Path, digest: str, inventory: Path) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as play:
        task = TASKS[method].format(src=src)
        play.write(PLAY.format(method=method, nodes=NODES, task=task, digest=digest))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    argv = ["ansible-playbook", "-i", str(inventory), "-f", "8", play.name]
    start = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    elapsed = time.monotonic() - start
    os.unlink(play.name)
    if result.returncode != 0:
        sys.exit(f"{method} failed:\n{result.stdout[-3000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="size of the version (MB)")
    parser.add_argument("--methods", default="copy,synchronize")
    args = parser.parse_args()
    found = sorted(
        Path.home().glob(".ansible/tmp/molecule.*.fleet/inventory/test_hosts.yml"),
        key=lambda p: p.stat().st_mtime,
    )
    inventory = found[-1].parent if found else Path("/nonexistent")
    if not (inventory / "test_hosts.yml").exists():
        print(
            "bench/large_model.py: the fleet hosts are not up (molecule create -s fleet): skipped"
        )
        return 0
    if "synchronize" in args.methods and not shutil.which("rsync"):
        sys.exit("bench/large_model.py: rsync is not installed on the controller")
    with tempfile.TemporaryDirectory(prefix="large-version-") as tmp:
        src = Path(tmp) / "1"
        digest = make_version(src, args.mb)
        for method in args.methods.split(","):
            seconds = run(method, src, digest, inventory)
            print(
                json.dumps(
                    {
                        "figure": "large model version",
                        "method": method,
                        "megabytes": args.mb,
                        "nodes": 3,
                        "seconds": round(seconds, 1),
                        "mb_per_s_per_node": round(args.mb / seconds, 1),
                    }
                ),
                flush=True,
            )
    subprocess.run(
        [
            "ansible",
            "-i",
            str(inventory),
            NODES.replace(",", ":"),
            "-m",
            "ansible.builtin.file",
            "-a",
            "path=/srv/bench-large state=absent",
        ],
        capture_output=True,
        check=False,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
