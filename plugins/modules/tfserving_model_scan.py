#!/usr/bin/python
"""Validate model exports on the controller and pick the versions each model serves."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tfserving_model_scan
short_description: Validate SavedModel export directories and select the versions to serve
author: tfserving-fleet maintainers (!UNKNOWN)
description:
  - Runs on the controller (delegate_to localhost) before any host changes.
  - Each model path must hold numeric version directories, each with saved_model.pb (or
    saved_model.pbtxt) and variables/variables.index.
  - A served version holds regular files and directories only. A symlink (to a file or a
    directory, inside the export or outside it), a device, a fifo or a socket is refused,
    naming the model, the version and the path, so no file a link points to (such as a
    controller key) is read, digested or copied to the hosts.
  - Smoke prediction settings must fit together (smoke_input or smoke_images, one
    expected class per image, a tolerance only with expected outputs) and their files
    must exist; smoke_input must be a JSON object.
  - Returns, per model, the versions its policy selects, each with its directory name and
    a content digest.
options:
  models:
    description: The tfserving_models list.
    type: list
    elements: dict
    required: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: ansible.builtin.find
    description: >-
      Lists the version directories, but applies no version policy, digests no export and
      refuses no link, device or fifo in it; this does all three before any host changes.
"""

EXAMPLES = r"""
- name: Check the exports and pick the versions to serve (on the controller)
  tfserving.fleet.tfserving_model_scan:
    models:
      - name: digits
        path: files/models/digits
        policy: latest
        num_versions: 1
        smoke_images: [files/samples/digit_7.jpg]
  delegate_to: localhost
  run_once: true
  register: scan
"""

RETURN = r"""
models:
  description: >-
    Per model, name, path, policy, selected versions, entries (version, dir, digest),
    labels and smoke (the smoke_* settings without the prefix, or null).
  type: list
  returned: success
"""

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.validation import check_type_path

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LABEL_RE = re.compile(r"^[A-Za-z0-9_]+$")


class ModelError(ValueError):
    """A model entry that cannot be served; the message names the model and the path."""


def controller_path(value: Any) -> Path:
    """A path inside a models entry, expanded as an option of type path would be (~, $VAR):
    the entries are free-form dicts, so the argument spec cannot type their keys."""
    return Path(check_type_path(str(value)))


def version_dirs(path: Path) -> dict[int, str]:
    """Numeric child directories of a model path: version number to directory name."""
    found: dict[int, str] = {}
    for child in sorted(path.iterdir()):
        if child.is_dir() and child.name.isdigit():
            found.setdefault(int(child.name), child.name)
    return dict(sorted(found.items()))


def kind(mode: int) -> str | None:
    """What a file of this lstat mode is, or None for a regular file or a directory."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kinds = {
        stat.S_ISLNK: "a symlink",
        stat.S_ISFIFO: "a fifo",
        stat.S_ISSOCK: "a socket",
        stat.S_ISBLK: "a block device",
        stat.S_ISCHR: "a character device",
    }
    return next((text for test, text in kinds.items() if test(mode)), "not a regular file")


def not_plain(version_path: Path) -> list[str]:
    """Everything in a version that is not a regular file or a directory, as
    'DIR/RELATIVE (what it is)', relative to the model path. Never follows a link."""
    found: list[str] = []
    pending = [version_path]
    while pending:
        current = pending.pop()
        info = current.lstat()
        what = kind(info.st_mode)
        relative = current.relative_to(version_path.parent)
        if what == "a symlink":
            what = f"a symlink to {os.readlink(current)}"
        if what:
            found.append(f"{relative} ({what})")
        elif stat.S_ISDIR(info.st_mode):
            pending.extend(sorted(current.iterdir(), reverse=True))
    return found


def check_version(name: str, version_path: Path) -> None:
    """Raise ModelError unless version_path looks like a complete SavedModel made of
    regular files and directories only."""
    odd = not_plain(version_path)
    if odd:
        shown = ", ".join(odd[:10]) + (f" and {len(odd) - 10} more" if len(odd) > 10 else "")
        raise ModelError(
            f"model {name!r} version {version_path.name}: {shown} in {version_path.parent}. "
            "A model export may hold regular files and directories only (no symlinks, "
            "devices, fifos or sockets): replace each link with a copy of what it points "
            "to, or remove it"
        )
    graph = [f for f in ("saved_model.pb", "saved_model.pbtxt") if (version_path / f).is_file()]
    if not graph:
        raise ModelError(
            f"model {name!r}: {version_path} has no saved_model.pb or saved_model.pbtxt"
        )
    if not (version_path / "variables" / "variables.index").is_file():
        raise ModelError(f"model {name!r}: {version_path} has no variables/variables.index")


def digest(version_path: Path) -> str:
    """sha256 over every file's relative path, mode bit for execution and content."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(version_path):
        dirs.sort()
        for file_name in sorted(files):
            file_path = Path(root, file_name)
            h.update(str(file_path.relative_to(version_path)).encode() + b"\0")
            with file_path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()


def select_versions(name: str, found: list[int], policy: str, model: dict[str, Any]) -> list[int]:
    """The versions the policy serves, from those found on the controller."""
    if policy == "latest":
        count = int(model.get("num_versions", 1))
        if count < 1:
            raise ModelError(f"model {name!r}: num_versions must be at least 1, got {count}")
        return found[-count:]
    if policy == "all":
        return list(found)
    if policy == "specific":
        wanted = sorted(int(v) for v in model.get("versions") or [])
        if not wanted:
            raise ModelError(f"model {name!r}: policy specific needs a non-empty versions list")
        missing = [v for v in wanted if v not in found]
        if missing:
            raise ModelError(
                f"model {name!r}: versions {missing} are not under {model['path']} (found {found})"
            )
        return wanted
    raise ModelError(f"model {name!r}: policy must be latest, all or specific, got {policy!r}")


def scan_model(model: dict[str, Any]) -> dict[str, Any]:
    name = str(model.get("name") or "")
    if not NAME_RE.match(name):
        raise ModelError(f"tfserving_models: model name {name!r} must match {NAME_RE.pattern}")
    raw_path = model.get("path")
    if not raw_path:
        raise ModelError(f"model {name!r}: path is required")
    path = controller_path(raw_path)
    if not path.is_dir():
        raise ModelError(f"model {name!r}: path {path} does not exist or is not a directory")
    dirs = version_dirs(path)
    found = list(dirs)
    if not found:
        raise ModelError(
            f"model {name!r}: {path} has no numeric version directory "
            f"(expected e.g. {path}/1/saved_model.pb)"
        )
    policy = str(model.get("policy", "latest"))
    selected = select_versions(name, found, policy, model)
    for version in selected:
        check_version(name, path / dirs[version])
    labels = model.get("labels") or {}
    for label, version in labels.items():
        if not LABEL_RE.match(str(label)):
            raise ModelError(f"model {name!r}: label {label!r} must match {LABEL_RE.pattern}")
        if int(version) not in selected:
            raise ModelError(
                f"model {name!r}: label {label!r} points at version {version}, "
                f"which is not served (served: {selected})"
            )
    smoke = scan_smoke(name, model)
    return {
        "name": name,
        "path": str(path),
        "policy": policy,
        "num_versions": int(model.get("num_versions", 1)),
        "found": found,
        "versions": selected,
        "served": [f"{name}/{dirs[v]}" for v in selected],
        "entries": [
            {
                "name": name,
                "path": str(path),
                "version": v,
                "dir": dirs[v],
                "key": f"{name}/{dirs[v]}",
                "digest": digest(path / dirs[v]),
            }
            for v in selected
        ],
        "labels": {str(k): int(v) for k, v in labels.items()},
        "smoke": smoke,
    }


SMOKE_KEYS = (
    "smoke_input",
    "smoke_images",
    "smoke_signature",
    "smoke_expected_outputs",
    "smoke_tolerance",
    "smoke_expected_classes",
)


def scan_smoke(name: str, model: dict[str, Any]) -> dict[str, Any] | None:
    """The model's smoke prediction settings, checked; None when it has none."""
    given = {k.removeprefix("smoke_"): model[k] for k in SMOKE_KEYS if model.get(k) is not None}
    if not given:
        return None
    if given.get("input") and given.get("images"):
        raise ModelError(f"model {name!r}: give smoke_input or smoke_images, not both")
    if "expected_classes" in given:
        if not given.get("images"):
            raise ModelError(f"model {name!r}: smoke_expected_classes needs smoke_images")
        if len(given["expected_classes"]) != len(given["images"]):
            raise ModelError(
                f"model {name!r}: smoke_expected_classes has {len(given['expected_classes'])} "
                f"entries for {len(given['images'])} smoke_images (one class per image)"
            )
    if "tolerance" in given and not given.get("expected_outputs"):
        raise ModelError(f"model {name!r}: smoke_tolerance needs smoke_expected_outputs")
    for smoke_file in [given.get("input"), *(given.get("images") or [])]:
        if smoke_file and not controller_path(smoke_file).is_file():
            raise ModelError(f"model {name!r}: smoke file {smoke_file} does not exist")
    if given.get("input"):
        path = controller_path(given["input"])
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ModelError(f"model {name!r}: smoke_input {path} is not JSON: {error}") from None
        if not isinstance(values, dict) or not values:
            raise ModelError(
                f"model {name!r}: smoke_input {path} must be a JSON object {{input name: value}}"
            )
        given["input"] = str(path)
    if given.get("images"):
        given["images"] = [str(controller_path(p)) for p in given["images"]]
    return given


def scan(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = [str(m.get("name")) for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ModelError(f"tfserving_models: model names must be unique, repeated: {duplicates}")
    return [scan_model(m) for m in models]


def main() -> None:
    module = AnsibleModule(
        argument_spec={"models": {"type": "list", "elements": "dict", "required": True}},
        supports_check_mode=True,
    )
    try:
        result = scan(module.params["models"])
    except (ModelError, OSError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, models=result)


if __name__ == "__main__":
    main()
