"""Tiny images built inside a test host's own engine (no registry needed)."""

from __future__ import annotations

import shlex


def busybox_image(host, tag: str, scripts: dict[str, str] | None = None) -> str:
    """Build TAG in the host's engine from its static busybox (prepare installs it).

    ``scripts`` maps a path in the image to the body of an executable busybox sh script,
    e.g. a fixture ``/usr/bin/nvidia-smi``. There is no entrypoint: run
    ``/bin/busybox APPLET ...`` or one of the scripts.
    """
    dockerfile = ["FROM scratch", "COPY busybox /bin/busybox"]
    commands = ["set -e", "d=$(mktemp -d)", "cp /bin/busybox $d/"]
    for number, (path, body) in enumerate(sorted((scripts or {}).items())):
        script = f"#!/bin/busybox sh\n# TEST FIXTURE {path}\n{body}\n"
        commands += [
            f"printf %s {shlex.quote(script)} > $d/script{number}",
            f"chmod 755 $d/script{number}",
        ]
        dockerfile.append(f"COPY script{number} {path}")
    commands += [
        f"printf '%s\\n' {' '.join(shlex.quote(line) for line in dockerfile)} > $d/Dockerfile",
        f"docker build -q -t {shlex.quote(tag)} $d >/dev/null",
        "rm -rf $d",
    ]
    host.run_expect([0], "; ".join(commands))
    return tag
