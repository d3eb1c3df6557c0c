"""Wait for long work on a host and report progress as it goes, never as a failed retry.

``until`` loops print ``FAILED - RETRYING`` once per check, which reads as trouble during
a build that takes an hour. This action waits for either

- ``command``: an argv it starts on the host itself, detached, with stdout and stderr in a
  log file (``log``, or one of its own), or
- ``jid``: an async job started earlier with ``async``/``poll: 0`` (any module),

and every ``interval`` seconds prints one line at the default verbosity: what is waited
for, the elapsed time and, when there is a log, its latest line. It returns the command's
exit status and log tail, or the async job's own result.
"""

from __future__ import annotations

import shlex
import time
import uuid
from typing import Any

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

ARGUMENT_SPEC: dict[str, Any] = {
    "what": {"type": "str", "required": True},
    "command": {"type": "list", "elements": "str"},
    "jid": {"type": "str"},
    "log": {"type": "str"},
    "chdir": {"type": "str"},
    "interval": {"type": "int", "default": 30},
    "poll": {"type": "int", "default": 2},
    "timeout": {"type": "int", "default": 3600},
    "tail_lines": {"type": "int", "default": 20},
}
LATEST_WIDTH = 160


def format_elapsed(seconds: float) -> str:
    """65 -> '1m05s', 3725 -> '1h02m05s', 7 -> '7s'."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def latest_line(text: str, width: int = LATEST_WIDTH) -> str:
    """The last non-empty line of `text` (progress bars' carriage returns count as breaks)."""
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= width else line[: width - 3] + "..."


def progress_line(host: str, what: str, elapsed: float, latest: str) -> str:
    """One progress report: what, how long so far, and the log's latest line if any."""
    line = f"{host}: waiting for {what}, {format_elapsed(elapsed)} elapsed"
    return f"{line}; latest: {latest}" if latest else line


def start_script(argv: list[str], state_dir: str, log: str, chdir: str | None) -> str:
    """Shell that starts argv detached in its own session; its exit status lands in state_dir/rc."""
    q = shlex.quote
    run = " ".join(q(arg) for arg in argv)
    inner = (
        f"{run} > {q(log)} 2>&1 < /dev/null; "
        f"echo $? > {q(state_dir)}/rc.tmp && mv {q(state_dir)}/rc.tmp {q(state_dir)}/rc"
    )
    cd = f"cd {q(chdir)} && " if chdir else ""
    return (
        f'mkdir -p {q(state_dir)} && mkdir -p "$(dirname {q(log)})" && : > {q(log)} && {cd}'
        f"(setsid sh -c {q(inner)} > /dev/null 2>&1 < /dev/null & echo $! > {q(state_dir)}/pid)"
    )


def status_script(state_dir: str, log: str, tail_lines: int) -> str:
    """Shell that prints a JSON-free status: first line the rc (or 'running'), then the log tail."""
    q = shlex.quote
    return (
        f"if [ -f {q(state_dir)}/rc ]; then cat {q(state_dir)}/rc; else echo running; fi; "
        f"tail -n {int(tail_lines)} {q(log)} 2>/dev/null || true"
    )


def parse_status(stdout: str) -> tuple[int | None, str]:
    """(exit status or None while running, log tail) from status_script's output."""
    first, _newline, tail = stdout.partition("\n")
    first = first.strip()
    return (None if first == "running" or not first.lstrip("-").isdigit() else int(first)), tail


class ActionModule(ActionBase):
    _requires_connection = True
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        _spec, args = self.validate_argument_spec(
            argument_spec=ARGUMENT_SPEC,
            mutually_exclusive=[("command", "jid")],
            required_one_of=[("command", "jid")],
        )
        if self._task.check_mode:
            result.update(skipped=True, msg=f"check mode: not waiting for {args['what']}")
            return result
        host = task_vars.get("inventory_hostname", "host")
        try:
            if args["command"]:
                result.update(self._wait_command(host, args))
            else:
                result.update(self._wait_job(host, args, task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    # --- helpers --------------------------------------------------------------------------

    def _shell(self, script: str) -> dict[str, Any]:
        return self._low_level_execute_command(script, sudoable=True)

    def _report(self, host: str, args: dict[str, Any], start: float, latest: str) -> None:
        display.display(progress_line(host, args["what"], time.monotonic() - start, latest))

    def _async_dir(self) -> str:
        return self._remote_expand_user(
            self.get_shell_option("async_dir", default="~/.ansible_async")
        )

    def _read_tail(self, log: str | None, lines: int) -> str:
        if not log:
            return ""
        res = self._shell(f"tail -n {int(lines)} {shlex.quote(log)} 2>/dev/null || true")
        return res.get("stdout", "")

    # --- command: start it detached, follow its log -----------------------------------------

    def _wait_command(self, host: str, args: dict[str, Any]) -> dict[str, Any]:
        state_dir = f"{self._async_dir()}/wait-job-{uuid.uuid4().hex}"
        log = args["log"] or f"{state_dir}/output"
        started = self._shell(start_script(args["command"], state_dir, log, args["chdir"]))
        if started.get("rc") != 0:
            return {
                "failed": True,
                "msg": f"could not start {args['what']}: {started.get('stderr', '').strip()}",
            }
        start = time.monotonic()
        last_report = start
        self._report(host, args, start, "")
        rc: int | None = None
        tail = ""
        while True:
            time.sleep(max(1, min(args["poll"], args["interval"])))
            status = self._shell(status_script(state_dir, log, args["tail_lines"]))
            rc, tail = parse_status(status.get("stdout", ""))
            now = time.monotonic()
            if rc is not None:
                break
            if now - start > args["timeout"]:
                self._shell(
                    f"kill -TERM -$(cat {shlex.quote(state_dir)}/pid) 2>/dev/null || true;"
                    f" rm -rf {shlex.quote(state_dir)}"
                )
                return {
                    "failed": True,
                    "changed": True,
                    "msg": (
                        f"{args['what']} was still running after {format_elapsed(now - start)}"
                        f" (timeout {args['timeout']}s) and was stopped; last lines of {log}:\n"
                        f"{tail}"
                    ),
                    "log": log,
                }
            if now - last_report >= args["interval"]:
                self._report(host, args, start, latest_line(tail))
                last_report = now
        elapsed = time.monotonic() - start
        if not args["log"]:
            self._shell(f"rm -rf {shlex.quote(state_dir)}")
        else:
            self._shell(
                f"rm -f {shlex.quote(state_dir)}/rc {shlex.quote(state_dir)}/pid; "
                f"rmdir {shlex.quote(state_dir)} 2>/dev/null || true"
            )
        outcome: dict[str, Any] = {
            "changed": True,
            "rc": rc,
            "elapsed": round(elapsed, 1),
            "stdout": tail,
            "stdout_lines": tail.splitlines(),
            "log": args["log"] or "",
        }
        if rc != 0:
            outcome["failed"] = True
            outcome["msg"] = (
                f"{args['what']} exited with status {rc} after {format_elapsed(elapsed)};"
                f" last lines of its output:\n{tail}"
            )
        return outcome

    # --- jid: poll an async job ------------------------------------------------------------

    def _wait_job(
        self, host: str, args: dict[str, Any], task_vars: dict[str, Any]
    ) -> dict[str, Any]:
        jid = args["jid"]
        async_dir = self._async_dir()
        start = time.monotonic()
        last_report = start
        self._report(host, args, start, "")
        while True:
            status = self._execute_module(
                module_name="ansible.legacy.async_status",
                module_args={"jid": jid, "_async_dir": async_dir},
                task_vars=task_vars,
            )
            if status.get("finished") or (status.get("failed") and not status.get("started")):
                break
            now = time.monotonic()
            if now - start > args["timeout"]:
                return {
                    "failed": True,
                    "msg": (
                        f"{args['what']} (async job {jid}) was still running after"
                        f" {format_elapsed(now - start)} (timeout {args['timeout']}s)"
                    ),
                }
            if now - last_report >= args["interval"]:
                self._report(host, args, start, latest_line(self._read_tail(args["log"], 5)))
                last_report = now
            time.sleep(max(1, min(args["poll"], args["interval"])))
        self._execute_module(
            module_name="ansible.legacy.async_status",
            module_args={"jid": jid, "mode": "cleanup", "_async_dir": async_dir},
            task_vars=task_vars,
        )
        outcome = {
            k: v
            for k, v in status.items()
            if k not in ("ansible_job_id", "finished", "started", "results_file", "erased")
        }
        outcome["elapsed"] = round(time.monotonic() - start, 1)
        if outcome.get("failed") and "msg" in outcome:
            outcome["msg"] = f"{args['what']}: {outcome['msg']}"
        return outcome
