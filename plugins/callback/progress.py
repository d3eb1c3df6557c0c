"""Ansible's default output, with retries of `until` loops shown as progress, not failure.

A task that polls (`until`/`retries`/`delay`) is waiting, not failing: instead of
``FAILED - RETRYING: [host]: task (N retries left).`` each retry prints
``waiting: [host]: task (attempt N of M, 12 s)``. Everything else is the default callback.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: progress
type: stdout
short_description: Ansible's default output, with until-loop retries shown as progress
description:
  - Prints what ansible.builtin.default prints, except that each retry of a task with
    C(until) reads "waiting" with the attempt and the seconds since the first attempt,
    instead of "FAILED - RETRYING".
extends_documentation_fragment:
  - default_callback
  - result_format_callback
requirements:
  - set as stdout callback in ansible.cfg
seealso:
  - plugin: ansible.builtin.default
    plugin_type: callback
    description: >-
      Prints every retry of an C(until) loop as C(FAILED - RETRYING), which reads as trouble
      during a long wait that is going well; it has no setting to print retries otherwise.
"""

import time
from typing import Any

from ansible import constants as C
from ansible.plugins.callback.default import CallbackModule as DefaultCallback


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "tfserving.fleet.progress"

    def __init__(self) -> None:
        super().__init__()
        self._first_attempt: dict[tuple[str, str], float] = {}

    def v2_runner_retry(self, result: Any) -> None:
        key = (result._host.get_name(), str(result._task._uuid))
        started = self._first_attempt.setdefault(key, time.monotonic())
        attempts = result._result.get("attempts", 0)
        retries = result._result.get("retries", 0)
        msg = retry_line(
            self.host_label(result),
            result.task_name or str(result._task),
            attempts,
            retries,
            time.monotonic() - started,
        )
        self._display.display(msg, color=C.COLOR_DEBUG)


def retry_line(host: str, task: str, attempt: int, retries: int, elapsed: float) -> str:
    """The progress line for one retry of an until loop."""
    return f"waiting: [{host}]: {task} (attempt {attempt} of {retries}, {elapsed:.0f} s)"
