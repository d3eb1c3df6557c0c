"""Arguments of the tfserving role's readiness gate (tfs-client wait and predict).

{{ __tfserving_scanned_models | tfserving_served_versions }}            -> {'digits': [1]}
{{ versions | tfserving_wait_expect }}                               -> ['--expect=digits=1']
{{ __tfserving_scanned_models | tfserving_fallback_versions(on_host) }} -> {'digits': [1]}
{{ __tfserving_scanned_models | tfserving_smoke_checks }}              -> [{name, target, args}]

The scanned models come from the tfserving_model_scan module: name, policy, num_versions,
versions (served), labels and smoke (the model's smoke_* settings, or None).

Why not the library: ansible.builtin.dict2items, map and selectattr cannot pick versions by a
model's policy as the server does, so the fallback would be an untested expression per use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Model = Mapping[str, Any]


def tfserving_served_versions(models: Sequence[Model]) -> dict[str, list[int]]:
    """The versions each model serves after this run."""
    return {str(m["name"]): sorted(int(v) for v in m["versions"]) for m in models}


def tfserving_wait_expect(versions: Mapping[str, Sequence[int]]) -> list[str]:
    """``--expect=NAME=V,...`` for every model with at least one version."""
    return [
        f"--expect={name}={','.join(str(v) for v in sorted(found))}"
        for name, found in sorted(versions.items())
        if found
    ]


def select(
    policy: str, num_versions: int, specific: Sequence[int], found: Sequence[int]
) -> list[int]:
    """The versions the server serves, given the version directories it finds."""
    ordered = sorted(set(int(v) for v in found))
    if policy == "all":
        return ordered
    if policy == "specific":
        return [v for v in ordered if v in set(int(s) for s in specific)]
    return ordered[-max(int(num_versions), 1) :] if ordered else []


def tfserving_fallback_versions(
    models: Sequence[Model], on_host: Mapping[str, Sequence[int]]
) -> dict[str, list[int]]:
    """What the server goes back to once this run's versions are removed again.

    ``on_host`` lists per model the versions that passed an earlier gate and are still on
    the host; the model's policy picks from them as the server will.
    """
    result: dict[str, list[int]] = {}
    for model in models:
        name = str(model["name"])
        result[name] = select(
            str(model.get("policy", "latest")),
            int(model.get("num_versions", 1)),
            model.get("versions") or [],
            on_host.get(name, []),
        )
    return result


def _smoke_inputs(smoke: Mapping[str, Any]) -> list[str]:
    if smoke.get("images"):
        return ["--image", *[str(p) for p in smoke["images"]]]
    if smoke.get("input"):
        values = json.loads(Path(str(smoke["input"])).read_text(encoding="utf-8"))
        return [f"--input={name}={json.dumps(value)}" for name, value in values.items()]
    return []


def _smoke_expectations(smoke: Mapping[str, Any]) -> list[str]:
    args = [
        f"--expect-output={name}={json.dumps(value)}"
        for name, value in (smoke.get("expected_outputs") or {}).items()
    ]
    if smoke.get("tolerance"):
        args.append(f"--tolerance={float(smoke['tolerance'])}")
    if smoke.get("expected_classes"):
        args += ["--expect-class", *[str(c) for c in smoke["expected_classes"]]]
    return args


def tfserving_smoke_checks(
    models: Sequence[Model], versions: Mapping[str, Sequence[int]] | None = None
) -> list[dict[str, Any]]:
    """One tfs-client predict per served version and per label of every model with a smoke.

    With ``versions`` (the fallback after a roll-back), those versions only, no labels.
    """
    checks: list[dict[str, Any]] = []
    for model in models:
        smoke = model.get("smoke")
        if not smoke:
            continue
        name = str(model["name"])
        # --expect-class applies to images, rows in file order.
        tail = (["--signature=" + str(smoke["signature"])] if smoke.get("signature") else []) + [
            *_smoke_inputs(smoke),
            *_smoke_expectations(smoke),
        ]
        chosen = versions.get(name, []) if versions is not None else model["versions"]
        targets = [f"--version={int(v)}" for v in sorted(chosen)]
        if versions is None:
            targets += [f"--label={label}" for label in sorted(model.get("labels") or {})]
        for target in targets:
            checks.append(
                {
                    "name": name,
                    "target": target.removeprefix("--").replace("=", " "),
                    # the option that takes several values goes last
                    "args": [f"--model={name}", target, *tail],
                }
            )
    return checks


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "tfserving_served_versions": tfserving_served_versions,
            "tfserving_wait_expect": tfserving_wait_expect,
            "tfserving_fallback_versions": tfserving_fallback_versions,
            "tfserving_smoke_checks": tfserving_smoke_checks,
        }
