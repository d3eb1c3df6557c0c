"""playbooks/audit.yml (CIS Docker Benchmark v1.6.0 numbering) against the host site.yml
converged: it passes and changes nothing, and it fails naming the items when the host is
weakened beside the server, by a running container and by a stopped one. Runs before
test_default.py (file order), on the host as converge left it, and leaves it so."""

from __future__ import annotations

import json
import os
import re

from converge_again import PROJECT_DIR, converge

PLAYBOOKS = PROJECT_DIR / "playbooks"
ITEMS = (
    "2.2 2.9 2.13 2.14 2.15 2.16 4.1 5.2 5.4 5.5 5.6 5.10 5.11 5.12 5.13 5.14 5.15 5.16"
    " 5.17 5.18 5.21 5.22 5.26 5.29 5.32"
)
# What site.yml applies: every item but the documented exceptions (2.9 user namespaces,
# 5.15 restart policy) and the optional memory and CPU limits (5.11, 5.12).
APPLIED = set(ITEMS.split()) - {"2.9", "5.11", "5.12", "5.15"}
INTRUDER = "audit-intruder"
DANGEROUS = "audit-dangerous"
DANGEROUS_STOPPED = "audit-dangerous-stopped"
# The scenario's cleanup labels (those of its hosts, network and volumes) on the containers
# the tests start in the host's engine, so that a leftover is known as a test's. The tests
# remove them; the host's own removal (destroy) takes its engine with it.
LABELS = (
    "--label owner=molecule"
    f" --label molecule-scenario={os.environ.get('MOLECULE_SCENARIO_NAME', 'default')}"
)
# The dangerous container of issue 23: host namespaces, / mounted, unconfined, /dev/mem.
DANGEROUS_OPTIONS = (
    "--network host --pid host --ipc host --uts host -v /:/host:ro"
    " --security-opt seccomp=unconfined --security-opt apparmor=unconfined"
    " --device /dev/mem --entrypoint sleep"
)
# What each item's row says of it (running or stopped alike).
DANGEROUS_FOUND = json.loads(
    (PROJECT_DIR / "tests/fixtures/docker_cis/dangerous-found.json").read_text()
)["found"]


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
            f"docker run -d --name {INTRUDER} {LABELS}"
            " -v /var/run/docker.sock:/var/run/docker.sock"
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


def test_audit_fails_naming_each_item_on_a_dangerous_container_running_and_stopped(host) -> None:
    """Beside the server: the dangerous container running (restarting unless-stopped, as
    the server does) and the same container stopped. Each item fails naming both; 5.15
    names the running one only, not the server, whose exception is the only one. Stopped
    containers count: the second one is in every row."""
    server = json.loads(host.check_output("docker inspect tfserving"))[0]
    image = server["Config"]["Image"]
    # A container's /dev has no /dev/mem (the test host is one): make the node for the
    # engine to hand on (c 1 1, as on a host). Nothing reads it: the containers sleep, and
    # the test host's device cgroup still refuses access to it.
    made_mem = host.run("test -e /dev/mem").rc != 0
    try:
        if made_mem:
            host.run_expect([0], "mknod -m 600 /dev/mem c 1 1")
        host.run_expect(
            [0],
            f"docker run -d --name {DANGEROUS} {LABELS} --restart unless-stopped"
            f" {DANGEROUS_OPTIONS} {image} 900",
        )
        host.run_expect(
            [0], f"docker run -d --name {DANGEROUS_STOPPED} {LABELS} {DANGEROUS_OPTIONS} {image} 0"
        )
        host.run_expect([0], f"docker wait {DANGEROUS_STOPPED}")
        states = host.check_output(
            f"docker inspect -f '{{{{.State.Status}}}}' {DANGEROUS} {DANGEROUS_STOPPED}"
        ).split()
        assert states == ["running", "exited"], states
        rc, output = audit()
    finally:
        host.run(f"docker rm -f {DANGEROUS} {DANGEROUS_STOPPED}")
        if made_mem:
            host.run("rm -f /dev/mem")
    assert rc != 0
    failed = sorted([*DANGEROUS_FOUND, "5.15"], key=lambda i: tuple(map(int, i.split("."))))
    assert f"fails CIS Docker Benchmark item(s) {', '.join(failed)}" in output, output[-4000:]
    rows = table(output)
    for item, found in DANGEROUS_FOUND.items():
        status, shown = rows[item]
        assert status == "FAIL", (item, rows[item])
        # Both containers, the stopped one with its state; the server passes.
        assert set(shown.split("; ")) == {
            f"{DANGEROUS}: {found}",
            f"{DANGEROUS_STOPPED} (exited): {found}",
        }, (item, shown)
    # The restart exception is the server's: the same policy on another container fails.
    assert rows["5.15"] == ("FAIL", f"{DANGEROUS}: unless-stopped"), rows["5.15"]
    # Only those: the server fails nothing (the rows above name the two containers only).
    assert {item for item, (status, _) in rows.items() if status == "FAIL"} == set(failed)
    # Undone: nothing but the server is left, and no /dev/mem made here.
    for name in (DANGEROUS, DANGEROUS_STOPPED):
        assert host.run(f"docker inspect {name}").rc != 0
    names = host.check_output("docker ps -a --format '{{.Names}}'").split()
    assert names == ["tfserving"]
    assert not made_mem or host.run("test -e /dev/mem").rc != 0
