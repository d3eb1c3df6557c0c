"""What the tfserving_image role leaves on the builder, the node and the controller."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from converge_again import converge

SCENARIO_DIR = Path(__file__).resolve().parents[1]
CACHE_DIR = SCENARIO_DIR / ".cache" / "images"
IMAGE_REF = "tfserving-fleet/tensorflow-serving:2.19.1"
DEVEL_REF = "tfserving-fleet/tensorflow-serving-devel:2.19.1"
LABEL = "org.tfserving-fleet"
BUILDER = "image-builder"
HOSTS = ("image-builder", "image-node")


def _on(host_name: str, *argv: str) -> str:
    """Run a command on a test host (a local container) and return its stdout."""
    return subprocess.run(
        ["docker", "exec", host_name, *argv], capture_output=True, text=True, check=True
    ).stdout.strip()


def _fixture_commit() -> str:
    return _on(BUILDER, "git", "-C", "/srv/fixtures/tfserving-repo", "rev-parse", "2.19.1^{commit}")


def _image_id(host_name: str, ref: str = IMAGE_REF) -> str:
    return _on(host_name, "docker", "image", "inspect", "--format", "{{.Id}}", ref)


def _tagged_images(host_name: str) -> list[str]:
    out = _on(
        host_name,
        "docker",
        "images",
        "--no-trunc",
        "--filter",
        "dangling=false",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    )
    return sorted(out.splitlines())


def test_image_is_labelled_with_the_source_commit(host) -> None:
    inspect = json.loads(host.check_output(f"docker image inspect {IMAGE_REF}"))[0]
    labels = inspect["Config"]["Labels"]
    assert labels[f"{LABEL}.source-commit"] == _fixture_commit()
    assert labels[f"{LABEL}.source-version"] == "2.19.1"
    assert labels[f"{LABEL}.source-repo"] == "file:///srv/fixtures/tfserving-repo"
    assert labels[f"{LABEL}.variant"] == "cpu"


def test_node_runs_the_image_the_builder_built() -> None:
    ids = {name: _image_id(name) for name in HOSTS}
    assert len(set(ids.values())) == 1, ids


def test_build_arguments_reached_the_dockerfiles(host) -> None:
    # The fixture's Dockerfiles record the build arguments they received as labels.
    inspect = json.loads(host.check_output(f"docker image inspect {IMAGE_REF}"))[0]
    labels = inspect["Config"]["Labels"]
    assert labels[f"{LABEL}.fixture.git-commit"] == _fixture_commit()
    assert labels[f"{LABEL}.fixture.build-options"] == "--config=release --local_ram_resources=2048"
    assert labels[f"{LABEL}.fixture.build-image"] == DEVEL_REF


def test_builder_keeps_the_devel_image_and_no_leftovers() -> None:
    tags = [line.split()[0] for line in _tagged_images(BUILDER)]
    assert DEVEL_REF in tags
    assert not [t for t in tags if t.endswith("-candidate")], tags
    export_dir = _on(BUILDER, "sh", "-c", "ls -d /var/cache/tfserving-image/export || true")
    assert export_dir == ""


def test_node_has_no_tarball_left() -> None:
    out = _on("image-node", "sh", "-c", "ls /var/cache/tfserving-image/archives")
    assert out == ""


def test_controller_cache_holds_one_tarball_with_its_sha256() -> None:
    tarballs = sorted(CACHE_DIR.glob("*.tar"))
    assert [t.name for t in tarballs] == [_image_id(BUILDER).removeprefix("sha256:") + ".tar"]
    digest = hashlib.sha256()
    with tarballs[0].open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    recorded = (CACHE_DIR / (tarballs[0].name + ".sha256")).read_text().split()[0]
    assert recorded == digest.hexdigest()


def _converge_with(extra_vars: dict[str, object]) -> subprocess.CompletedProcess[str]:
    return converge(SCENARIO_DIR, extra_vars)


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        pytest.param(
            {"tfserving_image_source": "nightly"},
            "value of tfserving_image_source must be one of: build, pull, archive, got: nightly",
            id="unknown-source",
        ),
        pytest.param(
            {"tfserving_image_repo_url": "file:///srv/fixtures/no-dockerfiles"},
            "tfserving_image_repo_url=file:///srv/fixtures/no-dockerfiles"
            " at tfserving_image_repo_version=2.19.1",
            id="repository-without-dockerfiles",
        ),
        pytest.param(
            {"tfserving_image_repo_version": "broken"},
            "Building the cpu image from tfserving_image_repo_url=file:///srv/fixtures/tfserving-repo"
            " at tfserving_image_repo_version=broken",
            id="failing-build",
        ),
        pytest.param(
            {
                "tfserving_image_source": "archive",
                "tfserving_image_archives": {"cpu": {"src": "TMP_ARCHIVE", "sha256": "0" * 64}},
            },
            "tfserving_image_archives.cpu.sha256 is " + "0" * 64 + " but",
            id="archive-checksum-mismatch",
        ),
        pytest.param(
            {
                "tfserving_image_source": "archive",
                "tfserving_image_archives": {"gpu": {"src": "x", "sha256": "0"}},
            },
            "tfserving_image_archives has no entry for cpu",
            id="archive-missing-variant",
        ),
    ],
)
def test_bad_input_fails_and_leaves_the_hosts_unchanged(
    tmp_path: Path, extra_vars: dict[str, object], message: str
) -> None:
    archive = tmp_path / "image.tar"
    archive.write_bytes(b"not the expected image")
    extra_vars = json.loads(json.dumps(extra_vars).replace("TMP_ARCHIVE", str(archive)))
    before = {name: _tagged_images(name) for name in HOSTS}
    result = _converge_with(extra_vars)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert message in output, output[-3000:]
    assert {name: _tagged_images(name) for name in HOSTS} == before
    assert _on("image-node", "sh", "-c", "ls /var/cache/tfserving-image/archives") == ""


IMAGE_FACT = "/etc/ansible/facts.d/tfserving_image.fact"


@pytest.mark.parametrize("name", HOSTS)
def test_each_host_records_the_image_it_has(name: str) -> None:
    record = json.loads(_on(name, "cat", IMAGE_FACT))
    assert record == {"ref": IMAGE_REF, "id": _image_id(name), "variant": "cpu"}


def test_serving_alone_uses_the_recorded_image() -> None:
    # A later run of the serving play alone: nothing of this run's facts, only the records.
    result = converge(SCENARIO_DIR, {"tfserving_gpu": False}, playbook="serve-image.yml")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for name in HOSTS:
        assert f"{name} serves with {IMAGE_REF} (CPU)" in output


def test_serving_alone_without_a_gpu_mode_says_to_run_the_gpu_play() -> None:
    result = converge(SCENARIO_DIR, playbook="serve-image.yml", limit="image-node")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "No GPU mode for image-node" in output, output[-3000:]
    assert "Run the GPU play first (playbooks/gpu.yml, or site.yml)" in output


def test_serving_alone_without_a_recorded_image_says_to_run_the_image_play() -> None:
    _on("image-node", "mv", IMAGE_FACT, IMAGE_FACT + ".aside")
    try:
        result = converge(
            SCENARIO_DIR, {"tfserving_gpu": False}, playbook="serve-image.yml", limit="image-node"
        )
    finally:
        _on("image-node", "mv", IMAGE_FACT + ".aside", IMAGE_FACT)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "No serving image for image-node" in output, output[-3000:]
    assert "Run the image play first (playbooks/image.yml, or site.yml)" in output
    assert "tensorflow/serving" not in output


def test_a_build_and_a_load_report_progress_not_failed_retries() -> None:
    # Last in this file: it builds and distributes another tag. The fixture's `slow` devel
    # build prints a line a second for 8 seconds.
    result = converge(
        SCENARIO_DIR,
        {"tfserving_image_repo_version": "slow", "tfserving_image_build_poll_interval": 2},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "FAILED" not in output
    devel = "image-builder: waiting for the cpu devel image build"
    progress = [line for line in output.splitlines() if line.startswith(devel)]
    assert any("elapsed; latest: fixture build step" in line for line in progress), progress
    assert "image-node: waiting for the load of tfserving-fleet/tensorflow-serving:slow" in output
    log = _on(BUILDER, "cat", "/var/cache/tfserving-image/logs/cpu-devel.log")
    assert "fixture build step 8 of 8" in log
