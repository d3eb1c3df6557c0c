"""Run the tfserving role's model logic (validate, sync, configs, gate, prune) against a
directory on this machine, with a fake tfs-client that answers from the host directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "tfserving_role"
PLAYBOOK = FIXTURE / "play.yml"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


@dataclass
class Site:
    tmp: Path

    @property
    def exports(self) -> Path:
        return self.tmp / "exports"

    @property
    def host(self) -> Path:
        return self.tmp / "host"

    @property
    def log(self) -> Path:
        return self.tmp / "calls.jsonl"

    def export(self, name: str, version: int | str, *flags: str) -> Path:
        """A SavedModel-shaped directory; flags (BROKEN, STUCK, WRONG) steer the fake."""
        path = self.exports / name / str(version)
        (path / "variables").mkdir(parents=True, exist_ok=True)
        (path / "saved_model.pb").write_text(f"graph of {name} {version}\n")
        (path / "variables" / "variables.index").write_text("index\n")
        for flag in flags:
            (path / flag).write_text("")
        return path

    def model(self, name: str, **settings: Any) -> dict[str, Any]:
        return {"name": name, "path": str(self.exports / name), **settings}

    def argv(
        self,
        models: list[dict[str, Any]],
        extra: dict[str, Any] | None,
        inventory: Path | None = None,
    ) -> list[str]:
        variables = {
            "tfserving_root": str(self.host),
            "tfserving_models": models,
            "tfserving_gate_timeout": 4,
            **(extra or {}),
        }
        argv = [ANSIBLE_PLAYBOOK, str(PLAYBOOK), "-e", json.dumps(variables)]
        return argv + (["-i", str(inventory)] if inventory else [])

    def env(self, mode: str) -> dict[str, str]:
        return {
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "NO_COLOR": "1",
            "FAKE_TFS_MODELS": str(self.host / "models"),
            "FAKE_TFS_LOG": str(self.log),
            "FAKE_TFS_MODE": mode,
        }

    def run(
        self,
        models: list[dict[str, Any]],
        mode: str = "normal",
        extra: dict[str, Any] | None = None,
        inventory: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """One run of play.yml; ``inventory`` (a file) adds groups such as tfserving_lb."""
        self.log.unlink(missing_ok=True)
        return subprocess.run(
            self.argv(models, extra, inventory),
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            env=self.env(mode),
            timeout=300,
        )

    def run_until(
        self, models: list[dict[str, Any]], ready: Any, mode: str = "hang", limit: float = 600
    ) -> None:
        """Start a run and kill it (the whole process group) once ``ready()`` is true."""
        self.log.unlink(missing_ok=True)
        process = subprocess.Popen(
            self.argv(models, None),
            cwd=ROOT,
            env=self.env(mode),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + limit
        try:
            while not ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the run ended before the moment to kill it")
                time.sleep(0.1)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def versions(self, name: str) -> list[str]:
        """Version directories of a model on the host."""
        path = self.host / "models" / name
        return (
            sorted((c.name for c in path.iterdir() if c.name.isdigit()), key=int)
            if path.is_dir()
            else []
        )

    def markers(self, name: str) -> list[str]:
        path = self.host / "state" / name
        return sorted(c.name for c in path.iterdir()) if path.is_dir() else []

    def calls(self, command: str) -> list[list[str]]:
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [argv for argv in lines if argv and argv[0] == command]
