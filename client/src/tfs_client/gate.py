"""Readiness: wait until given model versions are AVAILABLE, with a deadline that holds.

This is the one definition of "ready" in the project: ``tfs-client wait`` (the deployment
gate) and ``tfs-client status --wait-available`` both use :class:`VersionTracker`.

TF Serving keeps reporting a version that failed to load as END with its error. When the
same version number is deployed again (its directory removed and written anew), the server
goes on reporting the old failure until its next file-system poll starts the new load. So
a failure counts only when it is fresh: the version was seen starting, loading or
available during this wait, or it has stayed failed for ``failed_grace`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

import grpc

from .api import Client, ModelRef, RetryPolicy, VersionStatus
from .errors import RpcError

ACTIVE_STATES = {"START", "LOADING", "AVAILABLE", "UNLOADING"}
# Answers that mean "not yet" while waiting: server starting, model not configured yet.
WAITING_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
# Answers that show nobody is serving at the address.
UNREACHABLE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
DEFAULT_FAILED_GRACE = 5.0


class Verdict(Enum):
    READY = "ready"
    WAITING = "waiting"
    FAILED = "failed"


class Outcome(Enum):
    """How a wait ended; ``tfs-client wait`` maps each to an exit code."""

    READY = "ready"
    FAILED = "failed"  # an expected version failed to load
    TIMEOUT = "timeout"  # the server answered, but not every version was AVAILABLE in time
    UNREACHABLE = "unreachable"  # no status answer at all within the time


@dataclass
class VersionTracker:
    """Judges one model's reported versions against the versions expected of it.

    ``expected`` empty means: the newest reported version (``status --wait-available``).
    """

    model: str
    expected: frozenset[int] = frozenset()
    failed_grace: float = DEFAULT_FAILED_GRACE
    seen_active: set[int] = field(default_factory=set)
    failed_since: dict[int, float] = field(default_factory=dict)

    def judge(self, versions: list[VersionStatus], now: float) -> tuple[Verdict, str]:
        by_version = {v.version: v for v in versions}
        for v in versions:
            if v.state in ACTIVE_STATES:
                self.seen_active.add(v.version)
                self.failed_since.pop(v.version, None)
        targets = sorted(self.expected) or ([max(by_version)] if by_version else [])
        if not targets:
            return Verdict.WAITING, "no versions reported"
        waiting: list[str] = []
        for version in targets:
            status = by_version.get(version)
            if status is None:
                waiting.append(f"version {version} not reported yet")
            elif status.state == "AVAILABLE":
                continue
            elif status.state == "END" and status.failed:
                reason = (
                    f"version {version} failed to load "
                    f"({status.error_code}: {status.error_message})"
                )
                first = self.failed_since.setdefault(version, now)
                if version in self.seen_active or now - first >= self.failed_grace:
                    return Verdict.FAILED, f"model {self.model}: {reason}"
                waiting.append(f"{reason}, an earlier result: waiting for a new load")
            else:
                waiting.append(f"version {version} is {status.state}")
        if not self.expected and not waiting:
            busy = [v for v in versions if v.state in ("START", "LOADING")]
            if busy:
                waiting.append(f"version {busy[0].version} is {busy[0].state}")
        if waiting:
            return Verdict.WAITING, f"model {self.model}: " + "; ".join(waiting)
        names = ", ".join(str(v) for v in targets)
        return Verdict.READY, f"model {self.model}: version {names} AVAILABLE"


@dataclass
class WaitResult:
    outcome: Outcome
    reason: str
    elapsed: float
    versions: dict[str, list[VersionStatus]]
    answered: bool


def parse_expectation(text: str) -> tuple[str, frozenset[int]]:
    """``NAME=V[,V...]`` as (name, versions)."""
    name, sep, rest = text.partition("=")
    parts = [p.strip() for p in rest.split(",") if p.strip()]
    if not sep or not name or not parts or not all(p.isdigit() for p in parts):
        raise ValueError(f"expected MODEL=VERSION[,VERSION...], got {text!r}")
    return name, frozenset(int(p) for p in parts)


def wait_for(
    client: Client,
    expected: Mapping[str, Iterable[int]],
    timeout: float,
    call_timeout: float,
    interval: float,
    failed_grace: float = DEFAULT_FAILED_GRACE,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Poll GetModelStatus for every model until all expected versions are AVAILABLE.

    Ends by ``timeout`` seconds (plus at most one call's connection set-up): each call's
    deadline is the smaller of ``call_timeout`` and the time left.
    """
    client.retry = RetryPolicy(retries=0)  # the polling loop is the retry
    start = clock()
    deadline = start + timeout
    trackers = {
        name: VersionTracker(name, frozenset(versions), failed_grace)
        for name, versions in expected.items()
    }
    reported: dict[str, list[VersionStatus]] = {}
    answered = False
    verdicts = {name: Verdict.WAITING for name in trackers}
    reasons = {name: f"model {name}: no answer yet" for name in trackers}
    while True:
        for name, tracker in trackers.items():
            client.timeout = max(min(call_timeout, deadline - clock()), 0.05)
            try:
                reported[name] = client.model_status(ModelRef(name))
            except RpcError as err:
                if err.code not in WAITING_CODES:
                    raise
                answered = answered or err.code not in UNREACHABLE_CODES
                verdicts[name], reasons[name] = Verdict.WAITING, f"model {name}: {err}"
                continue
            answered = True
            verdicts[name], reasons[name] = tracker.judge(reported[name], clock())
            if verdicts[name] is Verdict.FAILED:
                return WaitResult(Outcome.FAILED, reasons[name], clock() - start, reported, True)
        if all(v is Verdict.READY for v in verdicts.values()):
            reason = "; ".join(reasons.values())
            return WaitResult(Outcome.READY, reason, clock() - start, reported, True)
        remaining = deadline - clock()
        if remaining <= 0:
            break
        sleep(min(interval, remaining))
    pending = "; ".join(r for n, r in reasons.items() if verdicts[n] is not Verdict.READY)
    outcome = Outcome.TIMEOUT if answered else Outcome.UNREACHABLE
    return WaitResult(
        outcome, f"not ready after {timeout:g} s: {pending}", clock() - start, reported, answered
    )
