"""playbooks/audit.yml (CIS Docker Benchmark) against the host site.yml converged: it passes
and changes nothing, and it fails naming the items when the host is weakened beside the
server. Runs before test_default.py (file order), on the host as converge left it."""

from __future__ import annotations

import json
import re

from converge_again import PROJECT_DIR, converge

PLAYBOOKS = PROJECT_DIR / "playbooks"
ITEMS = "2.2 2.9 2.13 2.14 2.15 2.16 4.1 5.4 5.5 5.11 5.12 5.13 5.14 5.15 5.18 5.26 5.29 5.32"
# What site.yml applies: every item but the documented exceptions (2.9 user namespaces,
# 5.15 restart policy) and the optional memory and CPU limits (5.11, 5.12).
APPLIED = set(ITEMS.split()) - {"2.9", "5.11", "5.12", "5.15"}
INTRUDER = "audit-intruder"


def audit(*options: str) -> tuple[int, str]:
    result = converge(PLAYBOOKS, playbook="audit.yml", options=list(options))
    return result.returncode, result.stdout + result.stderr


def table(output: str) -> dict[str, tuple[str, str]]:
    """{item: (status, found)} from the table the play prints (a list of text lines)."""
    rows = re.findall(r'"(\d+\.\d+) +(PASS|WARN|FAIL) +.*?  +(\S.*?)",?\n', output)
    return {item: (status, found) for item, status, found in rows}


def test_audit_passes_on_the_converged_host_and_changes_nothing() -> None:
    rc, output = audit("--check", "--diff")
    assert rc == 0, output[-4000:]
    rows = table(output)
    print("\n".join(f"{item:<5} {status:<5} {found}" for item, (status, found) in rows.items()))
    assert sorted(rows) == sorted(ITEMS.split()), rows
    assert {item for item, (status, _) in rows.items() if status == "PASS"} == APPLIED, rows
    assert rows["2.9"] == ("WARN", "userns remapping off (documented exception)")
    assert rows["5.15"][0] == "WARN" and "unless-stopped" in rows["5.15"][1]
    assert "documented exceptions:" in output and "no FAIL" in output
    for item in ("2.9", "5.15", "5.18"):
        assert re.search(rf'"  {re.escape(item)} ', output), f"exception {item} not listed"
    recap = re.search(r"^tfserving-\S+ +: ok=\d+ +changed=(\d+) .*failed=(\d+)", output, re.M)
    assert recap and recap.groups() == ("0", "0"), output[-2000:]


def test_audit_fails_naming_the_items_on_a_weakened_host(host) -> None:
    """A container beside the server with the Docker socket and a port on every interface
    (the inventory names the node's address): 5.32 and 5.14 fail, naming the container."""
    server = json.loads(host.check_output("docker inspect tfserving"))[0]
    try:
        host.run_expect(
            [0],
            f"docker run -d --name {INTRUDER} -v /var/run/docker.sock:/var/run/docker.sock"
            f" -p 0.0.0.0:18080:8501 --entrypoint sleep {server['Config']['Image']} 900",
        )
        rc, output = audit()
    finally:
        host.run(f"docker rm -f {INTRUDER}")
    assert rc != 0
    assert "fails CIS Docker Benchmark item(s) 5.14, 5.32" in output, output[-4000:]
    rows = table(output)
    assert rows["5.32"] == ("FAIL", f"{INTRUDER}: mounts /var/run/docker.sock"), rows
    assert rows["5.14"] == ("FAIL", f"{INTRUDER}: every interface 0.0.0.0:18080->8501/tcp")
    # Only those two: the server itself still passes everything else.
    assert {item for item, (status, _) in rows.items() if status == "FAIL"} == {"5.14", "5.32"}
    # Undone: nothing but the server is left.
    assert host.run(f"docker inspect {INTRUDER}").rc != 0
    names = host.check_output("docker ps -a --format '{{.Names}}'").split()
    assert names == ["tfserving"]
