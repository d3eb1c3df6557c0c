#!/usr/bin/env python3
"""Converge and no-op times of a molecule scenario by connection: `docker exec` as root
against SSH as an unprivileged sudo user, and over SSH with pipelining off and with
mitogen's strategy (when the `mitogen` package is importable).

For each connection the scenario's hosts are created afresh (molecule create, which also
runs prepare), converged once (timed), then converged again RUNS times, each of which must
report changed=0 (timed, median). A benchmark, not a test; it takes several minutes.

    .venv/bin/python bench/connection.py [--scenario default] [--runs 3] [--mitogen]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECAP = re.compile(r"^\S+\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def molecule(action: str, scenario: str, env: dict[str, str]) -> tuple[float, str]:
    """Run `molecule ACTION -s SCENARIO`; (seconds, output). Exits on failure."""
    started = time.monotonic()
    result = subprocess.run(
        ["molecule", action, "-s", scenario], capture_output=True, text=True, env=env, check=False
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-2000:])
        raise SystemExit(f"molecule {action} -s {scenario} failed")
    return seconds, result.stdout + result.stderr


def no_op(scenario: str, env: dict[str, str]) -> float:
    seconds, output = molecule("converge", scenario, env)
    recaps = RECAP.findall(output)
    if not recaps or any(changed != "0" or failed != "0" for changed, _, failed in recaps):
        raise SystemExit(f"the rerun was not a no-op: {recaps}")
    return seconds


def mitogen_env() -> dict[str, str] | None:
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or spec.origin is None:
        return None
    plugins = Path(spec.origin).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": "mitogen_linear"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mitogen", action="store_true", help="also time mitogen_linear")
    args = parser.parse_args()

    base = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "ANSIBLE_FORCE_COLOR": "0",
        "NO_COLOR": "1",
        "PY_COLORS": "0",
    }
    rows: list[tuple[str, float | None, float]] = []

    def measure(label: str, runs: Callable[[], list[float]]) -> None:
        times = runs()
        print(f"{label}: no-op runs {[round(t, 1) for t in times]}", flush=True)
        rows.append((label, None, statistics.median(times)))

    for connection in ("docker", "ssh"):
        env = {**base, "TEST_HOSTS_CONNECTION": connection}
        molecule("destroy", args.scenario, env)
        molecule("create", args.scenario, env)
        converge, _ = molecule("converge", args.scenario, env)
        times = [no_op(args.scenario, env) for _ in range(args.runs)]
        label = "docker exec as root" if connection == "docker" else "SSH as a sudo user"
        print(f"{label}: converge {converge:.1f} s, no-op runs {[round(t, 1) for t in times]}")
        rows.append((label, converge, statistics.median(times)))
    ssh = {**base, "TEST_HOSTS_CONNECTION": "ssh"}
    off = {**ssh, "ANSIBLE_PIPELINING": "false"}
    measure("SSH, pipelining off", lambda: [no_op(args.scenario, off) for _ in range(args.runs)])
    if args.mitogen:
        extra = mitogen_env()
        if extra is None:
            print("mitogen: not importable (pip install mitogen): skipped")
        else:
            env = {**ssh, **extra}
            measure(
                "SSH, mitogen_linear", lambda: [no_op(args.scenario, env) for _ in range(args.runs)]
            )
    molecule("destroy", args.scenario, base)

    ssh_no_op = rows[1][2]
    print(
        f"\n| molecule/{args.scenario} | converge | no-op (median of {args.runs}) | vs SSH no-op |"
    )
    print("| --- | --- | --- | --- |")
    for label, converge, median in rows:
        shown = f"{converge:.0f} s" if converge is not None else ""
        print(f"| {label} | {shown} | {median:.1f} s | {ssh_no_op / median:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
