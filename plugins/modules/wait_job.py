#!/usr/bin/python
"""Documentation of the wait_job action (plugins/action/wait_job.py does the work)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wait_job
short_description: Wait for a long command or async job, printing progress lines (never FAILED)
author: tfserving-fleet maintainers (!UNKNOWN)
description:
  - Waits for long work on the host and prints one line every O(interval) seconds at the
    default verbosity, saying what is waited for, the elapsed time and the latest output line.
  - "For example: C(builder: waiting for the devel image build, 12m30s elapsed; latest: Step
    7/12 : RUN make). Unlike an C(until) loop it never prints C(FAILED - RETRYING) while the
    work is going well."
  - With O(command), starts the command on the host itself, detached in its own session, with
    stdout and stderr written to O(log) (or a file of its own), and waits for it to exit;
    each progress line shows the latest line of that output. A non-zero exit fails the task
    with the exit status and the last lines of the output.
  - With O(jid), waits for an async job started earlier on the host (any module with
    C(async) and poll 0) and returns that job's result; O(log), if given, is a file whose
    latest line the progress lines show.
  - Runs on the controller as an action; the host needs C(sh), C(setsid) and C(tail).
options:
  what:
    description: What is waited for, in words; every progress line and message starts with it.
    type: str
    required: true
  command:
    description: The command to run, as an argv list (no shell). Mutually exclusive with O(jid).
    type: list
    elements: str
  jid:
    description: The C(ansible_job_id) of an async job started earlier on this host.
    type: str
  log:
    description:
      - File on the host that receives the command's output (O(command)), or that the job
        writes (O(jid)); its latest line is shown in each progress line. The file is kept.
    type: str
  chdir:
    description: Directory the command runs in.
    type: str
  interval:
    description: Seconds between progress lines.
    type: int
    default: 30
  poll:
    description: Seconds between checks whether the work has finished (at most O(interval)).
    type: int
    default: 2
  timeout:
    description:
      - Longest wait in seconds. A command still running then is stopped (its session is sent
        SIGTERM) and the task fails.
    type: int
    default: 3600
  tail_lines:
    description: How many of the last output lines the result (and a failure message) carries.
    type: int
    default: 20
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: none
    details: In check mode nothing is started or waited for; the task is skipped.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: ansible.builtin.async_status
    description: >-
      C(async) with this polled in an C(until) loop has no line of the build's output while it
      runs (the job's result file holds its output only once it exited), so no progress line
      could show the build log's latest line; kept for that line (tfserving_image's builds).
"""

EXAMPLES = r"""
- name: Build the image, one progress line a minute with the build's latest step
  tfserving.fleet.wait_job:
    what: the image build
    command: [docker, build, --tag, "example:1", /srv/src]
    log: /var/log/example-build.log
    interval: 60
    timeout: 28800

- name: Start loading an image in the background
  community.docker.docker_image_load:
    path: /var/cache/image.tar
  async: 3600
  poll: 0
  register: load_job

- name: Wait for the load, one line every 30 seconds
  tfserving.fleet.wait_job:
    what: the image load
    jid: "{{ load_job.ansible_job_id }}"
  register: loaded
"""

RETURN = r"""
rc:
  description: Exit status of the command (O(command)).
  type: int
  returned: with command
stdout:
  description: The last O(tail_lines) lines of the command's output (O(command)).
  type: str
  returned: with command
elapsed:
  description: Seconds waited.
  type: float
  returned: always
log:
  description: The log file given, empty when the output went to a file of the action's own.
  type: str
  returned: with command
msg:
  description: Why the task failed (exit status or timeout, with the last output lines).
  type: str
  returned: failure
"""
