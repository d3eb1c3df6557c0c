"""Model versions and their lifecycle, as TF Serving's file-system source and manager do it.

One background thread polls each model's base path, decides the aspired versions from
the version policy, loads new ones (with bounded retries), and unloads versions that are
no longer aspired once an aspired version is AVAILABLE, so a model keeps serving across
a version change and across a failed load of a newer version.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tensorflow_serving.apis import get_model_status_pb2, model_pb2
from tensorflow_serving.config import model_server_config_pb2

from tfs_standin import errors
from tfs_standin.servable import LoadedVersion, SessionOptions

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State
START, LOADING, AVAILABLE, UNLOADING, END = (
    State.START,
    State.LOADING,
    State.AVAILABLE,
    State.UNLOADING,
    State.END,
)

# tensorflow.error.Code numbers used in ModelVersionStatus.status
CODE_OK, CODE_UNKNOWN, CODE_NOT_FOUND, CODE_DATA_LOSS = 0, 2, 5, 15

Warmup = Callable[[LoadedVersion], int]


@dataclass
class VersionEntry:
    version: int
    path: str
    state: int = START
    error_code: int = CODE_OK
    error_message: str = ""
    loaded: LoadedVersion | None = None
    attempts: int = 0
    next_try: float = 0.0
    failed: bool = False  # gave up: not retried until the directory goes away and returns


@dataclass
class ModelEntry:
    config: model_server_config_pb2.ModelConfig
    versions: dict[int, VersionEntry] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    aspired: set[int] = field(default_factory=set)
    found: dict[int, str] = field(default_factory=dict)
    scanned: bool = False
    next_scan: float = 0.0
    removed: bool = False
    last_empty_log: float = -1e9

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class ManagerOptions:
    file_system_poll_wait_seconds: float = 1.0
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0
    session: SessionOptions = field(default_factory=SessionOptions)
    allow_labels_for_unavailable: bool = False


def _spec(name: str, version: int) -> str:
    return f"{{name: {name} version: {version}}}"


def _load_error_code(exc: BaseException) -> int:
    if isinstance(exc, errors.ServingError):
        return int(exc.code.value[0])
    code = getattr(exc, "error_code", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, FileNotFoundError):
        return CODE_NOT_FOUND
    if isinstance(exc, OSError):
        text = str(exc)
        missing = "does not exist" in text or "No such file" in text
        return CODE_NOT_FOUND if missing else CODE_DATA_LOSS
    return CODE_UNKNOWN


def scan_versions(base_path: str) -> dict[int, str] | None:
    """Integer-named child directories of ``base_path``; None if it cannot be listed."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return None
    found: dict[int, str] = {}
    for name in names:
        if name.isdigit():
            path = os.path.join(base_path, name)
            if os.path.isdir(path):
                found[int(name)] = path
    return found


def aspired_versions(
    policy: model_server_config_pb2.ModelVersionPolicy, found: set[int]
) -> set[int]:
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return set(found)
    if which == "specific":
        return {v for v in policy.specific.versions if v in found}
    num = (policy.latest.num_versions if which == "latest" else 0) or 1
    return set(sorted(found, reverse=True)[:num])


class Manager:
    """Holds every model's versions; ``acquire`` finds the one a request asks for."""

    def __init__(self, options: ManagerOptions, warmup: Warmup | None = None) -> None:
        self.options = options
        self._warmup = warmup
        self._models: dict[str, ModelEntry] = {}
        self._lock = threading.Condition(threading.RLock())
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_load: Callable[[str, bool, float], None] | None = None

    # ----- configuration -------------------------------------------------------------
    def set_models(self, configs: list[model_server_config_pb2.ModelConfig]) -> list[str]:
        """Apply a model list: add new models, update changed ones, remove missing ones.

        Returns the names whose versions must (re)load. Labels are applied separately.
        """
        wanted = {c.name: c for c in configs}
        touched: list[str] = []
        with self._lock:
            for name, entry in self._models.items():
                if name not in wanted and not entry.removed:
                    log.info("Model %s is not in the new config: unloading it", name)
                    entry.removed = True
                    entry.aspired = set()
            for name, cfg in wanted.items():
                entry = self._models.get(name)
                if entry is None or entry.removed:
                    log.info("Adding/updating model %s (base path %s)", name, cfg.base_path)
                    old_versions = entry.versions if entry else {}
                    self._models[name] = ModelEntry(config=cfg, versions=old_versions)
                    touched.append(name)
                elif _differs(entry.config, cfg):
                    log.info("Updating model %s (base path %s)", name, cfg.base_path)
                    if entry.config.base_path != cfg.base_path:
                        for ve in entry.versions.values():
                            if ve.state in (START, LOADING) or ve.failed:
                                ve.failed, ve.state = False, END
                    entry.config = cfg
                    entry.scanned = False
                    entry.next_scan = 0.0
                    touched.append(name)
        self._wake.set()
        return touched

    def set_labels(self, name: str, labels: dict[str, int], check: bool = True) -> None:
        with self._lock:
            entry = self._models.get(name)
            if entry is None or entry.removed:
                raise errors.not_found(f"Could not find any versions of model {name}")
            if check and not self.options.allow_labels_for_unavailable:
                for label, version in sorted(labels.items()):
                    if entry.labels.get(label) == version:
                        continue
                    ve = entry.versions.get(version)
                    if ve is None or ve.state != AVAILABLE:
                        raise errors.failed_precondition(
                            f"Request to assign label to version {version} of model {name}, "
                            "which is not currently available for inference"
                        )
            entry.labels = dict(labels)

    # ----- serving lookups -----------------------------------------------------------
    def _resolve(self, spec: model_pb2.ModelSpec) -> LoadedVersion:
        name = spec.name
        entry = self._models.get(name)
        choice = spec.WhichOneof("version_choice")
        if choice == "version_label":
            label = spec.version_label
            if entry is None or entry.removed or label not in entry.labels:
                raise errors.invalid(f"Unrecognized servable version label: {label}")
            version = entry.labels[label]
            choice = "version"
        elif choice == "version":
            version = spec.version.value
        if choice == "version":
            ve = entry.versions.get(version) if entry and not entry.removed else None
            if ve is None or ve.state != AVAILABLE or ve.loaded is None:
                raise errors.not_found(
                    f"Servable not found for request: Specific({name}, {version})"
                )
            return ve.loaded
        if entry is not None and not entry.removed:
            available = [v for v in entry.versions.values() if v.state == AVAILABLE and v.loaded]
            if available:
                best = max(available, key=lambda v: v.version)
                assert best.loaded is not None
                return best.loaded
        raise errors.not_found(f"Servable not found for request: Latest({name})")

    @contextmanager
    def acquire(self, spec: model_pb2.ModelSpec) -> Iterator[LoadedVersion]:
        with self._lock:
            lv = self._resolve(spec)
        with lv.in_use() as used:
            yield used

    def status(self, spec: model_pb2.ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
        name = spec.name
        with self._lock:
            entry = self._models.get(name)
            if entry is None or not entry.versions:
                raise errors.not_found(f"Could not find any versions of model {name}")
            choice = spec.WhichOneof("version_choice")
            if choice == "version_label":
                if entry.removed or spec.version_label not in entry.labels:
                    raise errors.invalid(
                        f"Unrecognized servable version label: {spec.version_label}"
                    )
                picked = [entry.labels[spec.version_label]]
            elif choice == "version":
                picked = [spec.version.value]
            else:
                picked = sorted(entry.versions, reverse=True)
            resp = get_model_status_pb2.GetModelStatusResponse()
            for version in picked:
                ve = entry.versions.get(version)
                if ve is None:
                    raise errors.not_found(f"Could not find version {version} of model {name}")
                st = resp.model_version_status.add()
                st.version = ve.version
                st.state = ve.state
                st.status.error_code = ve.error_code
                st.status.error_message = ve.error_message
            return resp

    def model_names(self) -> list[str]:
        with self._lock:
            return [n for n, e in self._models.items() if not e.removed]

    # ----- waiting -------------------------------------------------------------------
    def settled(self, names: list[str]) -> tuple[bool, str]:
        """(done, error): done once every aspired version of ``names`` is terminal."""
        with self._lock:
            for name in names:
                entry = self._models.get(name)
                if entry is None or entry.removed:
                    continue
                if not entry.scanned or not entry.aspired:
                    return False, ""
                for v in entry.aspired:
                    ve = entry.versions.get(v)
                    if ve is None or (ve.state != AVAILABLE and not ve.failed):
                        return False, ""
            failed: list[str] = []
            for name in names:
                entry = self._models.get(name)
                if entry is None or entry.removed:
                    continue
                for v in sorted(entry.aspired, reverse=True):
                    ve = entry.versions[v]
                    if ve.failed:
                        code = errors.code_from_number(ve.error_code).name
                        failed.append(
                            f"{{{_spec(name, v)} due to error: {code}: {ve.error_message}}}, "
                        )
                        break
            if failed:
                # ServerCore's wording: one entry per model that did not come up.
                return True, (
                    f"{len(failed)} model(s) did not become available: {{{''.join(failed)}}}"
                )
        return True, ""

    def wait_settled(self, names: list[str], timeout: float | None = None) -> str:
        """Block until ``names`` settle; returns an error text ('' if all loaded)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                done, error = self.settled(names)
                if done:
                    return error
                if self._stop.is_set():
                    return "server is stopping"
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return f"timed out waiting for models {names} to load"
                self._lock.wait(0.5 if remaining is None else min(remaining, 0.5))

    # ----- the polling thread --------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="version-manager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            entries = [ve for e in self._models.values() for ve in e.versions.values()]
        for ve in entries:
            if ve.loaded is not None:
                self._unload(self._find_model(ve), ve)

    def _find_model(self, ve: VersionEntry) -> str:
        with self._lock:
            for name, entry in self._models.items():
                if any(x is ve for x in entry.versions.values()):
                    return name
        return "?"

    def _loop(self) -> None:
        tick = 0.05
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # keep serving whatever happens in one round
                log.exception("version manager round failed")
            self._wake.wait(tick)
            self._wake.clear()

    def _step(self) -> None:
        now = time.monotonic()
        with self._lock:
            names = list(self._models)
        for name in names:
            if self._stop.is_set():
                return
            self._scan_if_due(name, now)
            self._load_pending(name)
            self._unload_unaspired(name)

    def _scan_if_due(self, name: str, now: float) -> None:
        poll = self.options.file_system_poll_wait_seconds
        with self._lock:
            entry = self._models[name]
            if entry.removed:
                return
            if entry.scanned and (poll <= 0 or now < entry.next_scan):
                return
            base = entry.config.base_path
        found = scan_versions(base)
        with self._lock:
            entry = self._models[name]
            entry.scanned = True
            entry.next_scan = now + poll
            if not found:
                if now - entry.last_empty_log >= 30.0:
                    entry.last_empty_log = now
                    if found is None:
                        log.warning(
                            "No versions of servable %s found under base path %s "
                            "(the base path does not exist or cannot be read)",
                            name,
                            base,
                        )
                    else:
                        log.warning(
                            "No versions of servable %s found under base path %s. "
                            "Version directories must be named by an integer, e.g. %s/1/",
                            name,
                            base,
                            base.rstrip("/"),
                        )
                found = {}
            entry.found = found
            for ve in entry.versions.values():
                if ve.failed and ve.version not in found:
                    ve.failed = False  # a directory that returns is tried afresh
            aspired = aspired_versions(entry.config.model_version_policy, set(found))
            if aspired != entry.aspired:
                log.info(
                    "Aspired versions of model %s: %s (found %s)",
                    name,
                    sorted(aspired),
                    sorted(found),
                )
            entry.aspired = aspired
            self._lock.notify_all()

    def _load_pending(self, name: str) -> None:
        while True:
            with self._lock:
                entry = self._models[name]
                if entry.removed:
                    return
                now = time.monotonic()
                todo: VersionEntry | None = None
                for v in sorted(entry.aspired, reverse=True):
                    ve = entry.versions.get(v)
                    path = entry.found.get(v, "")
                    if ve is None or (ve.state == END and not ve.failed):
                        ve = VersionEntry(version=v, path=path)
                        entry.versions[v] = ve
                    if ve.state in (START, LOADING) and now >= ve.next_try and path:
                        ve.path = path
                        todo = ve
                        break
                if todo is None:
                    return
                if todo.state == START:
                    log.info(
                        "Loading servable version %s from %s", _spec(name, todo.version), todo.path
                    )
                todo.state = LOADING
                self._lock.notify_all()
            self._attempt_load(name, todo)

    def _attempt_load(self, name: str, ve: VersionEntry) -> None:
        started = time.monotonic()
        try:
            lv = LoadedVersion(name, ve.version, ve.path, self.options.session)
        except Exception as exc:  # any load failure is reported on the version
            self._load_failed(name, ve, exc, started)
            return
        try:
            if self._warmup is not None:
                count = self._warmup(lv)
                if count:
                    log.info("Finished reading warmup data for model %s: %d requests", name, count)
        except Exception as exc:
            lv.close()
            self._load_failed(name, ve, exc, started)
            return
        elapsed = time.monotonic() - started
        if self.on_load:
            self.on_load(ve.path, True, elapsed)
        with self._lock:
            ve.loaded = lv
            ve.state = AVAILABLE
            ve.error_code, ve.error_message = CODE_OK, ""
            ve.attempts = 0
            self._lock.notify_all()
        log.info(
            "Successfully loaded servable version %s in %.2fs; signatures: %s",
            _spec(name, ve.version),
            elapsed,
            ", ".join(sorted(lv.signatures)),
        )

    def _load_failed(self, name: str, ve: VersionEntry, exc: BaseException, started: float) -> None:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if self.on_load:
            self.on_load(ve.path, False, time.monotonic() - started)
        with self._lock:
            ve.attempts += 1
            ve.error_code = _load_error_code(exc)
            ve.error_message = message
            if ve.attempts > self.options.max_num_load_retries:
                ve.failed = True
                ve.state = END
                log.error(
                    "Loading servable version %s failed after %d attempt(s); giving up: %s",
                    _spec(name, ve.version),
                    ve.attempts,
                    message,
                )
            else:
                ve.next_try = time.monotonic() + self.options.load_retry_interval_seconds
                log.warning(
                    "Loading servable version %s failed (attempt %d of %d): %s; retrying in %gs",
                    _spec(name, ve.version),
                    ve.attempts,
                    self.options.max_num_load_retries + 1,
                    message,
                    self.options.load_retry_interval_seconds,
                )
            self._lock.notify_all()

    def _unload_unaspired(self, name: str) -> None:
        with self._lock:
            entry = self._models[name]
            aspired = set() if entry.removed else entry.aspired
            serving_aspired = any(
                entry.versions.get(v) is not None and entry.versions[v].state == AVAILABLE
                for v in aspired
            )
            victims = [
                ve
                for v, ve in entry.versions.items()
                if v not in aspired
                and ve.state == AVAILABLE
                and (not aspired or serving_aspired or entry.removed)
            ]
            for ve in entry.versions.values():
                if ve.version not in aspired and ve.state in (START, LOADING):
                    ve.state = END  # no longer wanted before it loaded
        for ve in victims:
            self._unload(name, ve)

    def _unload(self, name: str, ve: VersionEntry) -> None:
        with self._lock:
            lv = ve.loaded
            if lv is None:
                return
            ve.state = UNLOADING
            self._lock.notify_all()
        log.info("Unloading servable version %s", _spec(name, ve.version))
        lv.close()
        with self._lock:
            ve.loaded = None
            ve.state = END
            ve.error_code, ve.error_message = CODE_OK, ""
            self._lock.notify_all()
        log.info("Done unloading servable version %s", _spec(name, ve.version))


def _differs(
    a: model_server_config_pb2.ModelConfig, b: model_server_config_pb2.ModelConfig
) -> bool:
    return (
        a.base_path != b.base_path
        or a.model_version_policy != b.model_version_policy
        or a.model_platform != b.model_platform
    )
