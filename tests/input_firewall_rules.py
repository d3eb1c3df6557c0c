"""What the tfserving_input_firewall role writes for a role's rules: the iptables-restore file
and the units, rendered with Ansible's own templating, and read back as "who reaches which
port". Used by the tests of the roles that include it (monitoring, load balancer)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from role_tasks import role_variables
from role_templates import render

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "filter"))
import input_firewall  # noqa: E402

ROLE = "tfserving_input_firewall"
IPTABLES_RESTORE = shutil.which("iptables-restore")


def evaluate(expression: str, variables: dict[str, Any]) -> Any:
    """EXPRESSION (a Jinja template) with VARIABLES, as a role's task would see it."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template(expression))


def firewall_variables(name: str, rules: Any, **extra: Any) -> dict[str, Any]:
    """The role's variables when included with NAME and RULES (as the including role passes
    them: templates of its own variables are already evaluated), after its check task."""
    return {
        **role_variables(ROLE),
        "tfserving_input_firewall_name": name,
        "tfserving_input_firewall_rules": rules,
        "__tfserving_input_firewall_checked": input_firewall.tfserving_input_rules(rules),
        **extra,
    }


def rules_file(variables: dict[str, Any]) -> str:
    return render(ROLE, "input-firewall.rules.j2", **variables)


def unit_file(variables: dict[str, Any]) -> str:
    return render(ROLE, "input-firewall.service.j2", **variables)


def dropin_file(variables: dict[str, Any]) -> str:
    return render(ROLE, "required-by.conf.j2", **variables)


RULE = re.compile(
    r"^-A (?P<chain>\S+) -p tcp --dport (?P<port>\d+)(?: -s (?P<source>\S+))? -j (?P<target>.+)$"
)


def who_reaches(text: str) -> dict[int, list[str]]:
    """Port -> the sources it accepts, read from an iptables-restore file as the kernel
    would apply it: each port's RETURNs must come before its REJECT, the loopback RETURN
    first of all, and the file must replace one chain."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*filter" and lines[-1] == "COMMIT", text
    (chain,) = re.findall(r"^:(\S+) - \[0:0\]$", text, re.M)
    assert lines[2] == f"-A {chain} -i lo -j RETURN", text
    allowed: dict[int, list[str]] = {}
    rejected: set[int] = set()
    for line in lines[3:-1]:
        match = RULE.match(line)
        assert match and match["chain"] == chain, f"unexpected line {line!r} in:\n{text}"
        port = int(match["port"])
        assert port not in rejected, f"a rule for {port} after its REJECT:\n{text}"
        if match["target"] == "RETURN":
            assert match["source"], line
            allowed.setdefault(port, []).append(match["source"])
        else:
            assert match["target"] == "REJECT --reject-with tcp-reset" and not match["source"]
            rejected.add(port)
            allowed.setdefault(port, [])
    assert set(allowed) == rejected, f"a port without its REJECT:\n{text}"
    return allowed


def iptables_accepts(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str] | None:
    """iptables-restore --test on the file (as the role's validate does), where this machine
    lets us; None where it cannot (no iptables, not root)."""
    if IPTABLES_RESTORE is None or os.geteuid() != 0:
        return None
    path = tmp_path / "input-firewall.rules"
    path.write_text(text)
    result = subprocess.run(
        [IPTABLES_RESTORE, "--wait=10", "--test", "--noflush", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if "Permission denied" in result.stderr or "Operation not permitted" in result.stderr:
        return None
    return result
