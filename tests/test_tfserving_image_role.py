"""Static checks of the tfserving_image role and its test fixture. No Docker needed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLE = ROOT / "roles" / "tfserving_image"
FIXTURE_DOCKER_DIR = (
    ROOT / "molecule" / "fleet" / "fixtures" / "tfserving-repo" / "tensorflow_serving/tools/docker"
)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _spec_options() -> dict[str, dict[str, Any]]:
    return _load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


def _task_files() -> list[Path]:
    return [*sorted((ROLE / "tasks").glob("*.yml")), ROLE / "handlers" / "main.yml"]


def _walk_tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for task in tasks or []:
        found.append(task)
        for key in ("block", "rescue", "always"):
            found.extend(_walk_tasks(task.get(key, [])))
    return found


def test_every_default_is_documented_and_every_option_has_a_default() -> None:
    defaults = _load(ROLE / "defaults" / "main.yml")
    options = _spec_options()
    assert sorted(defaults) == sorted(options)


def test_documented_defaults_match_defaults_main() -> None:
    defaults = _load(ROLE / "defaults" / "main.yml")
    for name, option in _spec_options().items():
        if name == "tfserving_image_builder":
            continue  # a Jinja expression, described in words in the spec
        assert option["default"] == defaults[name], name
        assert option.get("description"), name
        assert option.get("type"), name


def test_variables_carry_the_role_prefix() -> None:
    names = list(_load(ROLE / "defaults" / "main.yml")) + list(_load(ROLE / "vars" / "main.yml"))
    assert [n for n in names if not n.startswith("tfserving_image_")] == []


def test_source_choices_match_the_task_files() -> None:
    choices = _spec_options()["tfserving_image_source"]["choices"]
    for source in choices:
        assert (ROLE / "tasks" / f"{source}.yml").is_file(), source


@pytest.mark.parametrize("path", _task_files(), ids=lambda p: p.name)
def test_command_tasks_state_changed_when_and_no_docker_cli(path: Path) -> None:
    for task in _walk_tasks(_load(path)):
        # The docker CLI only for builds, and only through wait_job, which follows the build
        # log (community.docker's build reports nothing until it ends).
        if "tfserving.fleet.wait_job" in task and "command" in task["tfserving.fleet.wait_job"]:
            assert re.match(
                r"\{\{\s*\['docker', 'build',", task["tfserving.fleet.wait_job"]["command"]
            ), task["name"]
        module = next(
            (k for k in task if k.split(".")[-1] in {"command", "shell", "raw", "script"}), None
        )
        if module is None:
            continue
        assert "changed_when" in task, task["name"]
        argv = task[module].get("argv", []) if isinstance(task[module], dict) else []
        cmd = task[module] if isinstance(task[module], str) else " ".join(map(str, argv))
        assert not re.match(r"\s*docker\b", cmd), task["name"]


def _args(dockerfile: Path) -> set[str]:
    return set(re.findall(r"^ARG\s+(\w+)", dockerfile.read_text(), flags=re.M))


def test_fixture_dockerfiles_take_the_arguments_the_role_passes() -> None:
    devel = _args(FIXTURE_DOCKER_DIR / "Dockerfile.devel")
    runtime = _args(FIXTURE_DOCKER_DIR / "Dockerfile")
    assert {"TF_SERVING_VERSION_GIT_COMMIT", "TF_SERVING_BUILD_OPTIONS"} <= devel
    assert "TF_SERVING_BUILD_IMAGE" in runtime
    assert re.search(
        r"^FROM \$\{TF_SERVING_BUILD_IMAGE\}", (FIXTURE_DOCKER_DIR / "Dockerfile").read_text(), re.M
    )


def test_role_dockerfile_names_follow_the_repository_layout() -> None:
    layout = _load(ROLE / "vars" / "main.yml")
    assert layout["tfserving_image_dockerfile_dir"] == "tensorflow_serving/tools/docker"
    assert layout["tfserving_image_dockerfiles"] == {
        "cpu": {"devel": "Dockerfile.devel", "runtime": "Dockerfile"},
        "gpu": {"devel": "Dockerfile.devel-gpu", "runtime": "Dockerfile.gpu"},
    }
