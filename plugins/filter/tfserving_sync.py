"""The tfserving role's sync decisions: what each served version needs on a host.

Per version the host holds, under state/NAME/, no marker, ``DIR.pending`` (placed by a run
whose gate has not passed) or ``DIR.sha256`` (passed a gate), each holding the content
digest, and maybe the directory models/NAME/DIR.

{{ entries | tfserving_sync_plan(markers, version_dirs) }}
  -> {skip: [...], adopt: [...], place: [...], changed: [...], unrecorded: [...]}
{{ ['digits/1', 'digits/2'] | tfserving_versions_by_model }} -> {'digits': [1, 2]}
{{ found_paths | tfserving_prune_list(served_keys, model_names) }} -> paths to remove

Why not the library: ansible.builtin.difference and friends compare flat lists; a version's
state (marker, digest, directory) decides here, which no set filter does on its own.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def marker_contents(results: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """``{"NAME/DIR.sha256": digest}`` from slurp results looped over (entry, kind)."""
    found: dict[str, str] = {}
    for result in results:
        if "content" not in result:
            continue
        entry, kind = result["item"]
        text = base64.b64decode(result["content"]).decode("utf-8", "replace").strip()
        found[f"{entry['key']}.{kind}"] = text
    return found


def tfserving_sync_plan(
    entries: Sequence[Mapping[str, Any]],
    marker_results: Iterable[Mapping[str, Any]],
    version_dirs: Sequence[str],
) -> dict[str, list[str]]:
    """Sort the served versions (keys NAME/DIR) by what the sync does with them.

    skip        passed a gate, same content, in place: nothing to do
    changed     passed a gate, but the export differs now: an error
    adopt       pending and in place with the wanted content: new in this run, no copy
    place       anything else without a passed gate, or a version that passed one whose
                directory was deleted on the host: copied aside and renamed into place
    unrecorded  a directory in place with no marker at all: an error (never deleted)
    """
    markers = marker_contents(marker_results)
    present = set(version_dirs)
    plan: dict[str, list[str]] = {
        k: [] for k in ("skip", "changed", "adopt", "place", "unrecorded")
    }
    for entry in entries:
        key, digest = str(entry["key"]), str(entry["digest"])
        confirmed, pending = markers.get(f"{key}.sha256"), markers.get(f"{key}.pending")
        if confirmed is not None:
            if confirmed != digest:
                plan["changed"].append(key)
            else:
                plan["skip" if key in present else "place"].append(key)
        elif pending is not None:
            plan["adopt" if pending == digest and key in present else "place"].append(key)
        elif key in present:
            plan["unrecorded"].append(key)
        else:
            plan["place"].append(key)
    return plan


def tfserving_versions_by_model(keys: Iterable[str]) -> dict[str, list[int]]:
    """``NAME/DIR`` keys as ``{NAME: [version numbers]}``."""
    result: dict[str, list[int]] = {}
    for key in keys:
        name, _slash, directory = str(key).rpartition("/")
        if name and directory.isdigit():
            result.setdefault(name, []).append(int(directory))
    return {name: sorted(set(found)) for name, found in sorted(result.items())}


def tfserving_prune_list(
    found: Iterable[str], served_keys: Iterable[str], model_names: Iterable[str]
) -> list[str]:
    """Paths under the role's root (``models/...``, ``state/...``) that go after a passed gate.

    Models no longer configured go whole; in a configured model, every directory that is not
    a served version (older versions, leftover ``.incoming-*`` copies) and every marker but
    the ``.sha256`` of a served version. Version directories come before markers, so an
    interrupted prune never leaves a directory without its marker.
    """
    served, names = set(served_keys), set(model_names)
    remove: list[str] = []
    for path in sorted(set(found)):
        area, _slash, rest = path.partition("/")
        name, _slash, child = rest.partition("/")
        if area not in ("models", "state") or not name:
            continue
        if name not in names:
            if not child:
                remove.append(path)
            continue
        if not child or "/" in child:
            continue
        if area == "models":
            keep = f"{name}/{child}" in served
        else:
            keep = child.endswith(".sha256") and f"{name}/{child.removesuffix('.sha256')}" in served
        if not keep:
            remove.append(path)
    return sorted(remove, key=lambda p: (not p.startswith("models/"), p))


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "tfserving_sync_plan": tfserving_sync_plan,
            "tfserving_versions_by_model": tfserving_versions_by_model,
            "tfserving_prune_list": tfserving_prune_list,
        }
