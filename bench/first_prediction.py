#!/usr/bin/env python3
"""Time from serving-container start to the first successful gRPC prediction.

Runs against the `make demo` sandbox host: restarts the serving container inside it and
polls `tfs-client predict` from this machine until it answers. Prints each run and the
median. A benchmark, not a test.

    .venv/bin/python bench/first_prediction.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = "tfserving-sandbox"


def sandbox_address() -> str:
    out = subprocess.run(
        ["docker", "inspect", SANDBOX], capture_output=True, text=True, check=True
    ).stdout
    networks = json.loads(out)[0]["NetworkSettings"]["Networks"]
    return next(network["IPAddress"] for network in networks.values())


def one_run(address: str, timeout: float) -> float:
    subprocess.run(
        ["docker", "exec", SANDBOX, "docker", "stop", "tfserving"], check=True, capture_output=True
    )
    subprocess.run(
        ["docker", "exec", SANDBOX, "docker", "start", "tfserving"], check=True, capture_output=True
    )
    started = time.monotonic()
    predict = [
        str(Path(sys.executable).parent / "tfs-client"),
        "predict",
        f"--server={address}:8500",
        "--model=digits",
        "--signature=predict_images",
        "--timeout=2",
        "--image",
        str(ROOT / "files" / "samples" / "digit_7.jpg"),
    ]
    while time.monotonic() - started < timeout:
        if subprocess.run(predict, capture_output=True, check=False).returncode == 0:
            return time.monotonic() - started
        time.sleep(0.1)
    raise SystemExit(f"no successful prediction within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    address = sandbox_address()
    times = []
    for run in range(1, args.runs + 1):
        seconds = one_run(address, args.timeout)
        times.append(seconds)
        print(f"run {run}: {seconds:.2f} s")
    print(f"median of {len(times)}: {statistics.median(times):.2f} s (start to first prediction)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
