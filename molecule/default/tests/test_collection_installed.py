"""The collection from its tarball deploys: built, installed with its declared
dependencies into an empty collections path (scripts/install-collection.sh), and its
`tfserving.fleet.site` run against this scenario's host with nothing else visible.

The host was converged from the checkout, so the installed copy finding nothing to change
(changed=0, every task it runs passing, the readiness gate included) shows that the
tarball holds the same deployment, not only files that parse."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from converge_again import PROJECT_DIR

INVENTORY = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "/nonexistent")).parent
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def test_installed_collection_site_runs_against_the_host(tmp_path: Path) -> None:
    collections = tmp_path / "collections"
    subprocess.run(
        [str(PROJECT_DIR / "scripts" / "install-collection.sh"), str(collections)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_ROLES")}
    env |= {
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "NO_COLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    result = subprocess.run(
        # The host shares two cores with another scenario's load: each gate call may take
        # longer than the 10 s a real node is given (one such call timed out in a CI run).
        [
            "ansible-playbook",
            "-i",
            str(INVENTORY),
            "tfserving.fleet.site",
            "-e",
            "tfserving_gate_call_timeout=30",
        ],
        cwd=tmp_path,  # no playbook-adjacent collections, no checkout
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # The run used the installed copy: its roles' paths are under the collections path.
    listed = subprocess.run(
        ["ansible-galaxy", "collection", "list", "tfserving.fleet", "--format", "json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    assert str(collections) in listed and str(PROJECT_DIR) not in listed, listed
    recaps = RECAP.findall(output)
    assert [name for name, *_ in recaps] == ["tfserving-debian12"], output[-3000:]
    _, ok, changed, unreachable, failed = recaps[0]
    assert (changed, unreachable, failed) == ("0", "0", "0"), output[-3000:]
    assert int(ok) > 50
    assert "Wait until exactly the served versions are AVAILABLE" in output
