"""Static checks of the tfserving_image role and its test fixture. No Docker needed."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_run import run_playbook
from role_tasks import evaluate, find_task, flat_tasks, load_yaml, role_variables

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
    """Inputs (defaults) tfserving_image_*; what vars/ computes is internal, __tfserving_image_*."""
    defaults = list(_load(ROLE / "defaults" / "main.yml"))
    computed = list(_load(ROLE / "vars" / "main.yml"))
    assert [n for n in defaults if not n.startswith("tfserving_image_")] == []
    assert [n for n in computed if not n.startswith("__tfserving_image_")] == []


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
    assert layout["__tfserving_image_dockerfile_dir"] == "tensorflow_serving/tools/docker"
    assert layout["__tfserving_image_dockerfiles"] == {
        "cpu": {"devel": "Dockerfile.devel", "runtime": "Dockerfile"},
        "gpu": {"devel": "Dockerfile.devel-gpu", "runtime": "Dockerfile.gpu"},
    }


# --- Pinned supply chain (issue 23, item 7) -------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "ab" * 32
ACCEPTED = "INPUTS ACCEPTED"


def _run_role_tasks(
    tmp_path: Path, variables: dict[str, Any], tasks_from: tuple[str, ...] = ("variant", "assert")
) -> tuple[int, str]:
    """The role's task files TASKS_FROM on this machine (connection local), with VARIABLES
    as play variables; then a line saying the inputs were accepted. Only task files that
    change nothing here (facts, checks, messages) or work in tmp_path are run this way."""
    play = {
        "name": "tfserving_image task files",
        "hosts": "localhost",
        "gather_facts": False,
        "vars": variables,
        "tasks": [
            *(
                {
                    "name": f"Run {name}.yml",
                    "ansible.builtin.include_role": {
                        "name": "tfserving.fleet.tfserving_image",
                        "tasks_from": name,
                    },
                }
                for name in tasks_from
            ),
            {"name": "Report", "ansible.builtin.debug": {"msg": ACCEPTED}},
        ],
    }
    playbook = tmp_path / "role-tasks.yml"
    playbook.write_text(json.dumps([play]))
    result = run_playbook(playbook)
    return result.returncode, " ".join((result.stdout + result.stderr).split())


def test_a_build_from_a_tag_alone_is_refused_before_any_change(tmp_path: Path) -> None:
    rc, output = _run_role_tasks(
        tmp_path, {"tfserving_image_source": "build", "tfserving_image_repo_version": "2.19.1"}
    )
    assert rc != 0, output[-3000:]
    assert ACCEPTED not in output
    assert "tfserving_image_repo_commit is not set" in output, output[-3000:]
    assert "tfserving_image_repo_version=2.19.1" in output
    assert "No host was changed" in output


def _template(expression: str) -> Any:
    """EXPRESSION as a template Ansible trusts (as it trusts the role's files)."""
    from ansible.template import trust_as_template

    return trust_as_template(expression)


def _refusals(name: str, variables: dict[str, Any]) -> list[str]:
    """The messages with which assert.yml's check NAME refuses VARIABLES (one per loop item;
    none when it passes or does not apply), from the task's own expressions."""
    task = find_task(load_yaml(ROLE / "tasks" / "assert.yml"), name)
    check = task["ansible.builtin.assert"]
    env = {**role_variables("tfserving_image"), "__tfserving_image_variants": ["cpu"], **variables}
    items = evaluate(task["loop"], env) if "loop" in task else [None]
    refused = []
    for item in items:
        here = {**env, "item": item}
        if not evaluate(_template("{{ " + task.get("when", "true") + " }}"), here):
            continue
        if not evaluate(_template("{{ " + check["that"] + " }}"), here):
            refused.append(" ".join(str(evaluate(check["fail_msg"], here)).split()))
    return refused


@pytest.mark.parametrize(
    "commit",
    [
        "eab9c35",  # abbreviated
        "2.19.1",  # a tag
        "refs/tags/2.19.1",
        "g" * 40,  # not hex
        COMMIT + "8",  # 41 digits
        COMMIT + "\n",
        "sha256:" + "0" * 40,
    ],
)
def test_a_malformed_commit_is_refused_naming_the_variable(commit: str) -> None:
    variables = {"tfserving_image_source": "build", "tfserving_image_repo_commit": commit}
    message = (
        f'tfserving_image_repo_commit must be a full commit ID (40 hex digits), got "{commit}":'
        " an abbreviated ID, a tag or a branch can come to name another commit."
        " No host was changed."
    )
    refusals = _refusals("Fail when the pinned commit is not a full commit ID", variables)
    assert refusals == [" ".join(message.split())]


@pytest.mark.parametrize("commit", [COMMIT, COMMIT.upper()])
def test_a_full_commit_passes_the_check(commit: str) -> None:
    variables = {"tfserving_image_source": "build", "tfserving_image_repo_commit": commit}
    assert _refusals("Fail when the build source has no pinned commit", variables) == []
    assert _refusals("Fail when the pinned commit is not a full commit ID", variables) == []


def test_a_full_commit_is_accepted(tmp_path: Path) -> None:
    rc, output = _run_role_tasks(
        tmp_path, {"tfserving_image_source": "build", "tfserving_image_repo_commit": COMMIT}
    )
    assert rc == 0, output[-3000:]
    assert ACCEPTED in output
    assert "WARNING" not in output


def test_other_sources_need_no_commit(tmp_path: Path) -> None:
    rc, output = _run_role_tasks(
        tmp_path,
        {"tfserving_image_source": "pull", "tfserving_image_pull_digests": {"cpu": DIGEST}},
    )
    assert rc == 0, output[-3000:]
    assert "WARNING" not in output


def test_a_pull_by_tag_alone_draws_a_warning(tmp_path: Path) -> None:
    rc, output = _run_role_tasks(
        tmp_path, {"tfserving_image_source": "pull", "tfserving_image_variant": "gpu"}
    )
    assert rc == 0, output[-3000:]
    assert (
        "WARNING: tensorflow/serving:2.19.1-gpu (gpu) is pulled by tag alone:"
        " set tfserving_image_pull_digests.gpu"
    ) in output, output[-3000:]


@pytest.mark.parametrize("digest", ["sha256:abc", "ab" * 32, "sha512:" + "ab" * 64, DIGEST + " "])
def test_a_malformed_pull_digest_is_refused(digest: str) -> None:
    variables = {"tfserving_image_source": "pull", "tfserving_image_pull_digests": {"cpu": digest}}
    message = (
        f'tfserving_image_pull_digests.cpu must be sha256:<64 hex digits>, got "{digest}".'
        " No host was changed."
    )
    refusals = _refusals("Fail when a pull digest is not a sha256 digest", variables)
    assert refusals == [" ".join(message.split())]


@pytest.mark.parametrize(
    "pinned",
    [
        "ubuntu:20.04",  # a tag
        "ubuntu@sha256:abc",
        "ubuntu:20.04@" + DIGEST,  # a tag and a digest: community.docker would pull it each run
        DIGEST,  # no name
    ],
)
def test_a_malformed_base_image_pin_is_refused(pinned: str) -> None:
    variables = {
        "tfserving_image_source": "build",
        "tfserving_image_build_base_images": {"ubuntu:20.04": pinned},
    }
    [message] = _refusals("Fail when a base image is not pinned by digest", variables)
    assert message.startswith(
        'tfserving_image_build_base_images["ubuntu:20.04"] must be NAME@sha256:<64 hex digits>'
        f' (no tag), got "{pinned}"'
    ), message


def test_base_images_pinned_by_digest_pass_the_check() -> None:
    variables = {
        "tfserving_image_source": "build",
        "tfserving_image_build_base_images": {
            "ubuntu:20.04": f"ubuntu@{DIGEST}",
            "nvidia/cuda:12.2.0-base-ubuntu20.04": f"registry.example:5000/cuda@{DIGEST}",
        },
    }
    assert _refusals("Fail when a base image is not pinned by digest", variables) == []


def _dockerfile(text: str) -> dict[str, str]:
    """One result of the slurp of a Dockerfile."""
    return {"content": base64.b64encode(text.encode()).decode()}


# Upstream's layout (FROM lines only): a build stage chain, and the runtime image that
# starts from the devel image given as a build argument.
DEVEL = "FROM ubuntu:20.04 as base_build\nRUN true\nFROM base_build as binary_build\n"
RUNTIME = (
    "ARG TF_SERVING_BUILD_IMAGE=tensorflow/serving:latest-devel\n"
    "FROM ${TF_SERVING_BUILD_IMAGE} as build_image\nFROM ubuntu:20.04\n"
)
GPU_DEVEL = "FROM --platform=linux/amd64 nvidia/cuda:12.2.0-base-ubuntu20.04 AS base_build\n"


@pytest.mark.parametrize(
    ("texts", "pins", "unpinned", "pulled"),
    [
        ([DEVEL, RUNTIME], {}, ["ubuntu:20.04"], []),
        ([DEVEL, RUNTIME], {"ubuntu:20.04": f"ubuntu@{DIGEST}"}, [], ["ubuntu:20.04"]),
        (
            [DEVEL, RUNTIME, GPU_DEVEL],
            {"ubuntu:20.04": f"ubuntu@{DIGEST}"},
            ["nvidia/cuda:12.2.0-base-ubuntu20.04"],
            ["ubuntu:20.04"],
        ),
        # A FROM line with a digest is pinned already; scratch is no image.
        ([f"FROM ubuntu@{DIGEST}\n", "FROM scratch\nCOPY x /x\n"], {}, [], []),
        # A pin no Dockerfile of this build uses is not pulled.
        (
            [DEVEL],
            {"ubuntu:20.04": f"ubuntu@{DIGEST}", "other:1": f"other@{DIGEST}"},
            [],
            ["ubuntu:20.04"],
        ),
    ],
)
def test_base_images_are_read_from_the_from_lines(
    texts: list[str], pins: dict[str, str], unpinned: list[str], pulled: list[str]
) -> None:
    variables = {
        **role_variables("tfserving_image"),
        "tfserving_image_build_base_images": pins,
        "__tfserving_image_build_dockerfile_text": {"results": [_dockerfile(t) for t in texts]},
    }
    assert evaluate(_template("{{ __tfserving_image_build_from_unpinned }}"), variables) == unpinned
    assert evaluate(_template("{{ __tfserving_image_build_from_pinned }}"), variables) == pulled


def test_pinned_base_images_are_pulled_by_digest_and_tagged_to_the_from_name() -> None:
    tasks = load_yaml(ROLE / "tasks" / "base-images.yml")
    pull = find_task(tasks, "Pull each pinned base image by digest")
    variables = {
        **role_variables("tfserving_image"),
        "tfserving_image_build_base_images": {"ubuntu:20.04": f"ubuntu@{DIGEST}"},
        "item": "ubuntu:20.04",
    }
    assert evaluate(pull["community.docker.docker_image_pull"]["name"], variables) == (
        f"ubuntu@{DIGEST}"
    )
    tag = find_task(tasks, "Tag each pinned base image with the name in the FROM line")
    assert tag["loop"] == "{{ __tfserving_image_build_base_pull.results }}"
    variables["item"] = {"item": "ubuntu:20.04", "changed": False}
    args = evaluate(tag["community.docker.docker_image_tag"], variables)
    assert args["name"] == f"ubuntu@{DIGEST}"
    assert args["repository"] == ["ubuntu:20.04"]
    assert args["existing_images"] == "overwrite"


@pytest.mark.parametrize(
    ("build_pull", "pins", "flag"),
    [(True, {}, True), (False, {}, False), (True, {"ubuntu:20.04": f"ubuntu@{DIGEST}"}, False)],
)
def test_the_devel_build_runs_without_pull_when_base_images_are_pinned(
    build_pull: bool, pins: dict[str, str], flag: bool
) -> None:
    variables = {
        **role_variables("tfserving_image"),
        "tfserving_image_build_pull": build_pull,
        "tfserving_image_build_base_images": pins,
    }
    assert evaluate(_template("{{ __tfserving_image_build_pull_flag }}"), variables) == (
        ["--pull"] if flag else []
    )
    devel = find_task(
        load_yaml(ROLE / "tasks" / "build-variant.yml"),
        "Build the devel image (Bazel; hours for a real one)"
        " for {{ __tfserving_image_build_variant }}",
    )
    command = devel["tfserving.fleet.wait_job"]["command"]
    assert "__tfserving_image_build_pull_flag" in command
    assert "tfserving_image_build_pull " not in command and "--pull'" not in command


LABEL = "org.tfserving-fleet"


def _image(commit: str | None, variant: str = "cpu") -> dict[str, Any]:
    """An image as docker_image_info lists it, labelled with COMMIT and VARIANT (none: no
    labels)."""
    labels = {f"{LABEL}.source-commit": commit, f"{LABEL}.variant": variant} if commit else None
    return {"RepoTags": ["x:2.19.1"], "Config": {"Labels": labels}}


@pytest.mark.parametrize(
    ("images", "current"),
    [
        ([], False),  # no image yet
        ([_image(COMMIT)], True),
        ([_image("f" * 40)], False),  # another commit
        ([_image(COMMIT, "gpu")], False),  # another variant
        ([_image(None)], False),  # an image without labels
    ],
)
def test_an_image_is_current_when_its_labels_name_the_pinned_commit(
    images: list[dict[str, Any]], current: bool
) -> None:
    task = find_task(
        load_yaml(ROLE / "tasks" / "build.yml"),
        "Note each variant without an image of the pinned commit",
    )
    variables = {
        **role_variables("tfserving_image"),
        **task["vars"],
        "tfserving_image_repo_commit": COMMIT.upper(),
        "item": {"item": "cpu", "images": images},
    }
    assert evaluate(_template("{{ __tfserving_image_build_is_current }}"), variables) is current
    assert task["when"] == "not __tfserving_image_build_is_current"


def _blocks_around(tasks: list[dict[str, Any]], name: str) -> list[dict[str, Any]] | None:
    """The blocks around the task called NAME, outermost first (None: no such task)."""
    for task in tasks or []:
        if task.get("name") == name:
            return []
        for section in ("block", "rescue", "always"):
            inner = _blocks_around(task.get(section) or [], name)
            if inner is not None:
                return [task, *inner]
    return None


def test_nothing_is_fetched_when_every_variant_has_an_image_of_the_pinned_commit() -> None:
    tasks = load_yaml(ROLE / "tasks" / "build.yml")
    for name in ("Install git on the builder", "Check out the pinned commit"):
        blocks = _blocks_around(tasks, name)
        assert blocks is not None, name
        assert any(
            block.get("when") == "__tfserving_image_build_pending | length > 0" for block in blocks
        ), name
    # The repository is checked out by the pinned commit, never by the tag.
    git = [
        t
        for t in flat_tasks(load_yaml(ROLE / "tasks" / "checkout.yml"))
        if "ansible.builtin.git" in t
    ]
    assert [t["ansible.builtin.git"]["version"] for t in git] == [
        "{{ __tfserving_image_build_commit }}"
    ]


class Origin:
    """A TF Serving-like origin repository in a temporary directory: commit A tagged v1, then
    commit B on top."""

    def __init__(self, root: Path) -> None:
        self.path = root / "origin"
        self.path.mkdir()
        self.env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid",
        }
        self.git("init", "-q", "-b", "master")
        (self.path / "README.md").write_text("a\n")
        self.git("add", "README.md")
        self.git("commit", "-q", "-m", "A")
        self.git("tag", "v1")
        self.a = self.git("rev-parse", "HEAD")
        (self.path / "README.md").write_text("b\n")
        self.git("commit", "-q", "-am", "B")
        self.b = self.git("rev-parse", "HEAD")

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=cwd or self.path,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()


def _checkout(tmp_path: Path, origin: Origin, commit: str) -> tuple[int, str]:
    return _run_role_tasks(
        tmp_path,
        {
            "tfserving_image_repo_url": f"file://{origin.path}",
            "tfserving_image_repo_version": "v1",
            "tfserving_image_repo_commit": commit,
            "__tfserving_image_checkout_dir": str(tmp_path / "checkout"),
        },
        tasks_from=("checkout",),
    )


def test_the_checkout_is_the_pinned_commit_and_is_checked(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.fail("git is needed for this test")
    origin = Origin(tmp_path)
    rc, output = _checkout(tmp_path, origin, origin.a)
    assert rc == 0, output[-3000:]
    assert origin.git("rev-parse", "HEAD", cwd=tmp_path / "checkout") == origin.a
    assert f"HEAD of the checkout is the pinned commit {origin.a}" in output
    assert "WARNING" not in output
    # The tag moves: the build still gets the pinned commit, and the run says the tag moved.
    origin.git("tag", "-f", "v1", origin.b)
    rc, output = _checkout(tmp_path, origin, origin.b)
    assert rc == 0, output[-3000:]
    rc, output = _checkout(tmp_path, origin, origin.a)
    assert rc == 0, output[-3000:]
    assert origin.git("rev-parse", "HEAD", cwd=tmp_path / "checkout") == origin.a
    assert (
        f"WARNING: tfserving_image_repo_version=v1 is a tag of {origin.b} in"
        f" file://{origin.path}, not of the pinned commit {origin.a}"
    ) in output, output[-3000:]


def test_a_commit_the_repository_lacks_is_refused(tmp_path: Path) -> None:
    origin = Origin(tmp_path)
    rc, output = _checkout(tmp_path, origin, "deadbeef" * 5)
    assert rc != 0
    assert (
        f"tfserving_image_repo_commit={'deadbeef' * 5} could not be checked out from"
        f" tfserving_image_repo_url=file://{origin.path}"
    ) in output, output[-3000:]
    assert "Nothing was built" in output


def test_the_checkout_is_asserted_against_the_pinned_commit() -> None:
    tasks = list(flat_tasks(load_yaml(ROLE / "tasks" / "checkout.yml")))
    names = [t["name"] for t in tasks]
    check = find_task(tasks, "Fail unless HEAD is the pinned commit")
    assert names.index(check["name"]) > names.index("Check out the pinned commit")
    assert check["ansible.builtin.assert"]["that"] == (
        "__tfserving_image_checkout.after | lower == __tfserving_image_build_commit"
    )


def test_the_fixture_commits_are_what_make_repos_makes(tmp_path: Path) -> None:
    """molecule/fleet passes these commits; make-repos.sh makes the same ones every run."""
    fixtures = ROOT / "molecule" / "fleet" / "fixtures"
    shutil.copytree(fixtures / "tfserving-repo", tmp_path / "tfserving-repo")
    subprocess.run(["sh", str(fixtures / "make-repos.sh"), str(tmp_path)], check=True)
    made = {
        repo: {
            tag: subprocess.run(
                ["git", "-C", str(tmp_path / repo), "rev-parse", f"refs/tags/{tag}^{{commit}}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            for tag in subprocess.run(
                ["git", "-C", str(tmp_path / repo), "tag"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
        }
        for repo in ("tfserving-repo", "no-dockerfiles")
    }
    assert _load(fixtures / "commits.yml") == made


def test_inventories_that_build_pin_a_commit() -> None:
    for path in sorted((ROOT / "inventory").glob("*/group_vars/*.yml")):
        variables = _load(path) or {}
        if variables.get("tfserving_image_source") == "build":
            assert re.fullmatch(
                r"[0-9a-f]{40}", str(variables.get("tfserving_image_repo_commit"))
            ), path


@pytest.mark.parametrize(
    ("image", "warned"),
    [
        ("nvidia/cuda:12.5.1-base-ubuntu22.04", True),
        (f"nvidia/cuda@{DIGEST}", False),
        (f"registry.example:5000/nvidia/cuda@{DIGEST}", False),
        # docker takes a tag with a digest, but community.docker looks the image up by the
        # tag and digest together and would pull it on every run.
        (f"nvidia/cuda:12.5.1-base-ubuntu22.04@{DIGEST}", True),
        ("nvidia/cuda@sha256:abc", True),
    ],
)
def test_the_gpu_check_image_by_tag_alone_draws_a_warning(image: str, warned: bool) -> None:
    tasks = load_yaml(ROOT / "roles" / "nvidia_container_toolkit" / "tasks" / "check.yml")
    warning = find_task(tasks, "Warn that the GPU check image is not pinned by digest")
    variables = {
        **role_variables("nvidia_container_toolkit"),
        "nvidia_container_toolkit_check_image": image,
    }
    assert evaluate(_template("{{ " + warning["when"] + " }}"), variables) is warned
    message = evaluate(warning["ansible.builtin.debug"]["msg"], variables)
    assert message.startswith(f"WARNING: the GPU check image {image} is a tag")
    assert "nvidia_container_toolkit_check_image" in message
    assert [t["name"] for t in flat_tasks(tasks)].index(warning["name"]) == 0
