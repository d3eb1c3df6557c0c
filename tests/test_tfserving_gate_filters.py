"""The tfserving role's gate and sync decisions (filters), the smoke settings' checks."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from plugin_files import load_plugin

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path) -> ModuleType:
    return load_plugin(path.parent.name, path.stem)


gate = load(ROOT / "plugins" / "filter" / "tfserving_gate.py")
sync = load(ROOT / "plugins" / "filter" / "tfserving_sync.py")
scan_mod = load(ROOT / "plugins" / "modules" / "tfserving_model_scan.py")


def model(name: str = "m", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "policy": "latest",
        "num_versions": 1,
        "versions": [2],
        "labels": {},
        "smoke": None,
        **fields,
    }


# Finding 4: invalid smoke combinations are refused by the argument spec.
def spec_errors(models: list[dict[str, Any]]) -> str:
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    specs = yaml.safe_load((ROOT / "roles/tfserving/meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    result = ArgumentSpecValidator({"tfserving_models": options["tfserving_models"]}).validate(
        {"tfserving_models": models}
    )
    return " ".join(result.error_messages)


def test_argument_spec_refuses_smoke_input_with_smoke_images() -> None:
    errors = spec_errors(
        [{"name": "m", "path": "/x", "smoke_input": "/a.json", "smoke_images": ["/b.jpg"]}]
    )
    assert "mutually exclusive" in errors and "smoke_input" in errors


@pytest.mark.parametrize(
    ("fields", "word"),
    [
        ({"smoke_expected_classes": ["7"]}, "smoke_images"),
        ({"smoke_tolerance": 0.1}, "smoke_expected_outputs"),
    ],
)
def test_argument_spec_refuses_incomplete_checks(fields: dict[str, Any], word: str) -> None:
    errors = spec_errors([{"name": "m", "path": "/x", **fields}])
    assert word in errors


def test_argument_spec_accepts_checked_smoke_settings() -> None:
    assert (
        spec_errors(
            [
                {
                    "name": "a",
                    "path": "/x",
                    "smoke_images": ["/1.jpg"],
                    "smoke_expected_classes": ["1"],
                },
                {
                    "name": "b",
                    "path": "/x",
                    "smoke_input": "/i.json",
                    "smoke_expected_outputs": {"y": [1.0]},
                    "smoke_tolerance": 0.5,
                },
                {"name": "c", "path": "/x", "smoke_expected_outputs": {"count": 1}},
            ]
        )
        == ""
    )


def test_scan_refuses_one_class_per_image_mismatch(tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(b"x")
    with pytest.raises(scan_mod.ModelError, match="one class per image"):
        scan_mod.scan_smoke(
            "m", {"smoke_images": [str(image)], "smoke_expected_classes": ["1", "2"]}
        )
    with pytest.raises(scan_mod.ModelError, match="not both"):
        scan_mod.scan_smoke("m", {"smoke_images": [str(image)], "smoke_input": str(image)})
    bad = tmp_path / "in.json"
    bad.write_text("[1, 2]")
    with pytest.raises(scan_mod.ModelError, match="JSON object"):
        scan_mod.scan_smoke("m", {"smoke_input": str(bad)})


def test_smoke_checks_cover_every_served_version_and_label(tmp_path: Path) -> None:
    inputs = tmp_path / "x.json"
    inputs.write_text(json.dumps({"x": [[1.0]]}))
    smoke = {"input": str(inputs), "expected_outputs": {"y": [[2.5]]}, "tolerance": 0.01}
    checks = gate.tfserving_smoke_checks(
        [model(versions=[1, 3], labels={"stable": 1, "canary": 3}, smoke=smoke), model("quiet")]
    )
    assert [c["target"] for c in checks] == [
        "version 1",
        "version 3",
        "label canary",
        "label stable",
    ]
    assert checks[0]["args"] == [
        "--model=m",
        "--version=1",
        "--input=x=[[1.0]]",
        "--expect-output=y=[[2.5]]",
        "--tolerance=0.01",
    ]


def test_smoke_checks_for_images_and_for_signatures_without_inputs() -> None:
    images = {"images": ["/s/7.jpg"], "signature": "predict_images", "expected_classes": ["7"]}
    [check] = gate.tfserving_smoke_checks([model(smoke=images)])
    assert check["args"] == [
        "--model=m",
        "--version=2",
        "--signature=predict_images",
        "--image",
        "/s/7.jpg",
        "--expect-class",
        "7",
    ]
    [bare] = gate.tfserving_smoke_checks([model(smoke={"expected_outputs": {"count": 1}})])
    assert bare["args"] == ["--model=m", "--version=2", "--expect-output=count=1"]


def test_fallback_follows_each_policy_over_what_passed_before() -> None:
    models = [
        model("latest2", num_versions=2),
        model("every", policy="all"),
        model("some", policy="specific", versions=[1, 4]),
        model("first"),
    ]
    on_host = {"latest2": [1, 2, 3], "every": [1, 5], "some": [1, 2, 3]}
    assert gate.tfserving_fallback_versions(models, on_host) == {
        "latest2": [2, 3],
        "every": [1, 5],
        "some": [1],
        "first": [],
    }
    assert gate.tfserving_wait_expect({"latest2": [3, 2], "first": []}) == ["--expect=latest2=2,3"]


def slurped(key: str, kind: str, digest: str) -> dict[str, Any]:
    return {
        "item": [{"key": key}, kind],
        "content": base64.b64encode(digest.encode() + b"\n").decode(),
    }


def test_sync_plan_for_each_state_a_run_can_leave() -> None:
    entries = [{"key": f"m/{v}", "digest": f"d{v}"} for v in range(1, 9)]
    markers = [
        slurped("m/1", "sha256", "d1"),  # passed a gate
        slurped("m/2", "sha256", "other"),  # passed a gate, export changed since
        slurped("m/3", "pending", "d3"),  # pending, in place
        slurped("m/4", "pending", "d4"),  # pending, not in place (killed before the rename)
        slurped("m/5", "pending", "old"),  # pending, in place, export changed since
        {"item": [{"key": "m/7"}, "sha256"], "skipped": True},
        slurped("m/8", "sha256", "d8"),  # passed a gate, directory deleted on the host
    ]
    in_place = ["m/1", "m/2", "m/3", "m/5", "m/6"]  # 6: no marker at all
    assert sync.tfserving_sync_plan(entries, markers, in_place) == {
        "skip": ["m/1"],
        "changed": ["m/2"],
        "adopt": ["m/3"],
        "place": ["m/4", "m/5", "m/7", "m/8"],
        "unrecorded": ["m/6"],
    }


def test_prune_list_keeps_exactly_what_is_configured() -> None:
    found = [
        "models/m",
        "models/m/1",
        "models/m/2",
        "models/m/.incoming-3",
        "state/m",
        "state/m/1.sha256",
        "state/m/2.sha256",
        "state/m/2.pending",
        "state/m/9.sha256",
        "models/gone",
        "models/gone/1",
        "state/gone",
        "state/gone/1.sha256",
    ]
    assert sync.tfserving_prune_list(found, ["m/2"], ["m"]) == [
        "models/gone",
        "models/m/.incoming-3",
        "models/m/1",
        "state/gone",
        "state/m/1.sha256",
        "state/m/2.pending",
        "state/m/9.sha256",
    ]


def test_versions_by_model() -> None:
    assert sync.tfserving_versions_by_model(["a/00000123", "a/2", "b/1", "junk"]) == {
        "a": [2, 123],
        "b": [1],
    }
