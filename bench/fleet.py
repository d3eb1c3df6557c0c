#!/usr/bin/env python3
"""Benchmarks of the fleet (molecule/fleet's hosts): a benchmark, not a test.

Needs the fleet converged and kept up:

    .venv/bin/molecule create -s fleet && .venv/bin/molecule converge -s fleet
    .venv/bin/python bench/fleet.py [--duration 10] [--skip rollout,...]
    .venv/bin/molecule destroy -s fleet

Measures, printing one JSON line per figure:
  grpc      tfs-client bench through the load balancer with one backend in service
            (the others in maintenance) vs direct to that node, concurrency 1 and 8
  noop      a second site.yml run: wall time and the changed count
  image     on one node: registry pull by digest vs the archive path (copy + load), bytes
            and seconds
  rollout   time per node of a rolling model update and of a rolling image update
            (from the per-batch play times of serve.yml)
  canary    a new model version rolled to the three nodes under traffic through the load
            balancer (tfs-client bench, concurrency 2), with and without the canary
            (--canary-seconds, share 25%): the time from the canary's window opening to its
            verdict (the report's "verdict after"), and the extra rollout time the canary
            adds, over --runs runs each (median)
  instances tfs-client bench through the load balancer with only fleet-node3 in service
            (the others in maintenance), with one server on it and then with
            --instances CPU servers (tfserving_instance_mode count, cpusets), --runs runs of
            --duration seconds each (median); fleet-node3 goes back to one server after.
            On these test hosts every server shares the machine's cores with the others
            and the client: the figure says what the split costs or gains here, not what a
            GPU host gains from a server per GPU (molecule/gpu/README.md says how to get that)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from conftest import TESTDATA  # noqa: E402

SCENARIO = ROOT / "molecule" / "fleet"
LB, NODES = "fleet-lb", ("fleet-node1", "fleet-node2", "fleet-node3")
TFS_CLIENT = str(Path(sys.executable).parent / "tfs-client")


def ephemeral() -> Path:
    """molecule's ephemeral directory of the fleet scenario (the newest one with hosts)."""
    found = sorted(
        Path.home().glob(".ansible/tmp/molecule.*.fleet/inventory/test_hosts.yml"),
        key=lambda p: p.stat().st_mtime,
    )
    return found[-1].parents[1] if found else Path("/nonexistent")


def addresses(eph: Path) -> dict[str, str]:
    hosts = yaml.safe_load((eph / "inventory" / "test_hosts.yml").read_text())
    return {n: v["test_host_address"] for n, v in hosts["all"]["hosts"].items()}


def on(host: str, script: str) -> str:
    return subprocess.run(
        ["docker", "exec", host, "sh", "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()


def runtime(command: str) -> str:
    return on(LB, f'echo "{command}" | socat stdio unix-connect:/run/haproxy/admin.sock')


def emit(**figure: object) -> None:
    print(json.dumps(figure), flush=True)


def playbook(eph: Path, path: str, extra: dict[str, object] | None = None) -> tuple[float, str]:
    argv = ["ansible-playbook", "-i", str(eph / "inventory"), str(SCENARIO / path)]
    if extra:
        argv += ["-e", json.dumps(extra)]
    env = {
        **os.environ,
        "MOLECULE_EPHEMERAL_DIRECTORY": str(eph),
        "MOLECULE_PROJECT_DIRECTORY": str(ROOT),
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    start = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"{path} failed:\n{result.stdout[-3000:]}")
    return elapsed, result.stdout


def tfs_bench(target: str, duration: float, concurrency: int) -> dict[str, Any]:
    """tfs-client bench against TARGET's gRPC port (half_plus_two): its JSON summary."""
    out = subprocess.run(
        [
            TFS_CLIENT,
            "bench",
            f"--server={target}:8500",
            "--model=half_plus_two",
            "--input=x=[[1.0]]",
            f"--concurrency={concurrency}",
            f"--duration={duration}",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out))


def bench_grpc(addr: dict[str, str], duration: float) -> None:
    node = NODES[0]
    others = [n for n in NODES if n != node]
    for other in others:
        runtime(f"set server tfserving_grpc/{other} state maint")
    try:
        for concurrency in (1, 8):
            for label, target in (("lb", addr[LB]), ("direct", addr[node])):
                summary = tfs_bench(target, duration, concurrency)
                emit(
                    figure="grpc",
                    path=label,
                    concurrency=concurrency,
                    qps=summary["qps"],
                    p50_ms=summary["latency_ms"]["p50"],
                    p99_ms=summary["latency_ms"]["p99"],
                    errors=summary["errors"],
                )
    finally:
        for other in others:
            runtime(f"set server tfserving_grpc/{other} state ready")


def bench_noop(eph: Path) -> None:
    elapsed, out = playbook(eph, "converge.yml")
    changed = sum(int(c) for c in re.findall(r"changed=(\d+)", out.split("PLAY RECAP")[-1]))
    emit(figure="noop", seconds=round(elapsed, 1), changed=changed)


def bench_image(eph: Path) -> None:
    node = NODES[2]
    ref = on(node, "docker inspect -f '{{.Config.Image}}' tfserving")
    archive = ROOT / ".cache" / "standin" / "tfserving-standin.tar"
    on(node, "docker rm -f tfserving >/dev/null; docker image rm -f $(docker images -q) >/dev/null")
    rx0 = int(on(node, "cat /sys/class/net/eth0/statistics/rx_bytes"))
    start = time.monotonic()
    on(node, f"docker pull -q {ref} >/dev/null")
    pull = time.monotonic() - start
    rx = int(on(node, "cat /sys/class/net/eth0/statistics/rx_bytes")) - rx0
    emit(figure="image", path="registry pull", bytes=rx, seconds=round(pull, 1))
    on(node, "docker image rm -f $(docker images -q) >/dev/null")
    start = time.monotonic()
    subprocess.run(["docker", "cp", str(archive), f"{node}:/var/tmp/image.tar"], check=True)
    copied = time.monotonic() - start
    on(node, "docker load -q -i /var/tmp/image.tar >/dev/null && rm /var/tmp/image.tar")
    loaded = time.monotonic() - start
    emit(
        figure="image",
        path="archive copy+load",
        bytes=archive.stat().st_size,
        seconds=round(loaded, 1),
        copy_seconds=round(copied, 1),
    )
    # Back to the fleet's state: the image by digest and the container.
    on(node, f"docker pull -q {ref} >/dev/null")
    playbook(eph, "converge.yml")


def per_node_batches(out: str) -> list[float]:
    """Seconds per batch of the serve play, from the profile_tasks time stamps."""
    marks = [m.start() for m in re.finditer(r"PLAY \[(Deploy the models|The load bal)", out)]
    totals = []
    for begin, end in itertools.pairwise(marks):
        if "Deploy the models" not in out[begin : begin + 40]:
            continue
        times = re.findall(r"\s(\d+):(\d+):(\d+)\.(\d+) \*+", out[begin:end])
        seconds = [int(h) * 3600 + int(m) * 60 + int(s) + int(f) / 1000 for h, m, s, f in times]
        if len(seconds) >= 2:
            totals.append(round(seconds[-1] - seconds[0], 1))
    return totals


def bench_rollout(eph: Path) -> None:
    models = eph / "models" / "half_plus_two"
    version = str(max(int(p.name) for p in models.iterdir() if p.name.isdigit()) + 1)
    shutil.copytree(TESTDATA / "saved_model_half_plus_three" / "00000123", models / version)
    # One node at a time, whatever the scenario's batches: the figure is per node.
    elapsed, out = playbook(eph, "../../playbooks/serve.yml", {"tfserving_rollout_batch": 1})
    emit(
        figure="rollout",
        change="model version",
        seconds=round(elapsed, 1),
        per_batch=per_node_batches(out),
    )
    tag = f"bench{int(time.time())}"
    on(
        NODES[0],
        f"printf 'FROM tfserving-standin:local\\nLABEL bench={tag}\\n' | "
        f"docker build -q -t tfserving-standin:{tag} - >/dev/null",
    )
    extra = {
        "tfserving_image_source": "pull",
        "tfserving_image_pull_name": "tfserving-standin",
        "tfserving_image_pull_tag": tag,
        "tfserving_rollout_batch": 1,
    }
    elapsed, out = playbook(eph, "../../playbooks/image.yml", extra)
    emit(figure="rollout", change="image push+pull", seconds=round(elapsed, 1))
    elapsed, out = playbook(eph, "../../playbooks/serve.yml", extra)
    emit(
        figure="rollout",
        change="image (recreate)",
        seconds=round(elapsed, 1),
        per_batch=per_node_batches(out),
    )


def new_version(eph: Path) -> None:
    """The next version of half_plus_two on the controller (half_plus_three's graph)."""
    models = eph / "models" / "half_plus_two"
    version = str(max(int(p.name) for p in models.iterdir() if p.name.isdigit()) + 1)
    shutil.copytree(TESTDATA / "saved_model_half_plus_three" / "00000123", models / version)


def bench_canary(eph: Path, addr: dict[str, str], seconds: int, runs: int) -> None:
    traffic = subprocess.Popen(
        [
            TFS_CLIENT,
            "bench",
            f"--server={addr[LB]}:8500",
            "--model=half_plus_two",
            "--input=x=[[1.0]]",
            "--concurrency=2",
            "--duration=3600",
            "--json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    plain, canaried, verdicts = [], [], []
    try:
        for _ in range(runs):
            new_version(eph)
            elapsed, _ = playbook(eph, "../../playbooks/serve.yml", {"tfserving_rollout_batch": 1})
            plain.append(elapsed)
            new_version(eph)
            with tempfile.TemporaryDirectory() as reports:
                canary = {
                    "tfserving_rollout_batch": 1,
                    "tfserving_canary": True,
                    "tfserving_canary_share": 25,
                    "tfserving_canary_duration": seconds,
                    "tfserving_canary_min_requests": 30,
                    "tfserving_canary_report_dir": reports,
                }
                elapsed, _ = playbook(eph, "../../playbooks/serve.yml", canary)
                canaried.append(elapsed)
                report = next(Path(reports).glob("*.txt")).read_text()
                verdicts.append(int(re.search(r"after (\d+) s", report).group(1)))
    finally:
        traffic.terminate()
        traffic.wait()
    emit(
        figure="canary",
        nodes=len(NODES),
        window_s=seconds,
        runs=runs,
        verdict_s=statistics.median(verdicts),
        rollout_s=round(statistics.median(plain), 1),
        rollout_with_canary_s=round(statistics.median(canaried), 1),
        extra_s=round(statistics.median(canaried) - statistics.median(plain), 1),
        each={"verdict_s": verdicts, "plain_s": [round(x, 1) for x in plain],
              "canary_s": [round(x, 1) for x in canaried]},
    )  # fmt: skip


def bench_instances(
    eph: Path, addr: dict[str, str], duration: float, runs: int, count: int
) -> None:
    node = NODES[2]
    host_vars = eph / "inventory" / "host_vars"
    node_vars = host_vars / f"{node}.yml"
    budget = {"tfserving_lb_max_unavailable": count, "tfserving_rollout_batch": 1}

    def measure(servers: int) -> None:
        names = [node] + [f"{node}-{i}" for i in range(1, servers)]
        others = [
            line.split()[3]
            for line in runtime("show servers state tfserving_grpc").splitlines()[2:]
            if len(line.split()) > 3 and line.split()[3] not in names
        ]
        for other in others:
            runtime(f"set server tfserving_grpc/{other} state maint")
        try:
            for concurrency in (4, 16):
                summaries = [tfs_bench(addr[LB], duration, concurrency) for _ in range(runs)]
                emit(
                    figure="instances",
                    node=node,
                    servers=servers,
                    concurrency=concurrency,
                    runs=runs,
                    qps=round(statistics.median(float(s["qps"]) for s in summaries), 1),
                    p50_ms=statistics.median(float(s["latency_ms"]["p50"]) for s in summaries),
                    p99_ms=statistics.median(float(s["latency_ms"]["p99"]) for s in summaries),
                    errors=sum(sum(dict(s["errors"]).values()) for s in summaries),
                    cpus=on(node, "nproc"),
                )
        finally:
            for other in others:
                runtime(f"set server tfserving_grpc/{other} state ready")

    measure(1)
    host_vars.mkdir(exist_ok=True)
    node_vars.write_text(
        yaml.safe_dump({"tfserving_instance_mode": "count", "tfserving_instance_count": count})
    )
    try:
        elapsed, _ = playbook(eph, "../../playbooks/serve.yml", budget)
        emit(figure="instances", change=f"1 -> {count} servers", seconds=round(elapsed, 1))
        measure(count)
    finally:
        node_vars.unlink(missing_ok=True)
        elapsed, _ = playbook(eph, "../../playbooks/serve.yml", budget)
        emit(figure="instances", change=f"{count} -> 1 servers", seconds=round(elapsed, 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--skip", default="", help="comma-separated: grpc,noop,image,rollout,canary,instances"
    )
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--canary-seconds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    eph = ephemeral()
    if not (eph / "inventory" / "test_hosts.yml").exists():
        print("bench/fleet.py: no converged fleet (molecule converge -s fleet): skipped")
        return 0
    addr = addresses(eph)
    if "grpc" not in skip:
        bench_grpc(addr, args.duration)
    if "noop" not in skip:
        bench_noop(eph)
    if "image" not in skip:
        bench_image(eph)
    if "rollout" not in skip:
        bench_rollout(eph)
    if "canary" not in skip:
        bench_canary(eph, addr, args.canary_seconds, args.runs)
    if "instances" not in skip:
        bench_instances(eph, addr, args.duration, args.runs, args.instances)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
