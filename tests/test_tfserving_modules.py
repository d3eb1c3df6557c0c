"""The tfserving role's controller-side checks: model scan and config parsing."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import role_templates
from google.protobuf import text_format
from plugin_files import load_plugin


def load(name: str) -> ModuleType:
    return load_plugin("modules", name)


scan_mod = load("tfserving_model_scan")
check_mod = load("tfserving_config_check")


@pytest.fixture
def model_dir(tmp_path: Path, testdata: Path) -> Path:
    """half_plus_two with versions 1, 2 and 00000123 (a copy of the real export each)."""
    root = tmp_path / "half_plus_two"
    for version in ("1", "2", "00000123"):
        shutil.copytree(testdata / "saved_model_half_plus_two_cpu" / "00000123", root / version)
    (root / "notes").mkdir()
    return root


def test_latest_selects_the_newest_and_keeps_directory_names(model_dir: Path) -> None:
    [model] = scan_mod.scan([{"name": "m", "path": str(model_dir), "num_versions": 2}])
    assert model["found"] == [1, 2, 123]
    assert model["versions"] == [2, 123]
    assert [e["dir"] for e in model["entries"]] == ["2", "00000123"]
    assert model["served"] == ["m/2", "m/00000123"]


def test_all_and_specific_policies(model_dir: Path) -> None:
    [every] = scan_mod.scan([{"name": "m", "path": str(model_dir), "policy": "all"}])
    assert every["versions"] == [1, 2, 123]
    [some] = scan_mod.scan(
        [{"name": "m", "path": str(model_dir), "policy": "specific", "versions": [1, 123]}]
    )
    assert some["versions"] == [1, 123]


def test_paths_expand_as_an_option_of_type_path(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~ and $VAR in a model's path, as Ansible expands an option of type path."""
    monkeypatch.setenv("HOME", str(model_dir.parent))
    monkeypatch.setenv("MODEL_DIR_NAME", model_dir.name)
    [model] = scan_mod.scan([{"name": "m", "path": "~/$MODEL_DIR_NAME"}])
    assert model["path"] == str(model_dir)


def test_digest_follows_content(model_dir: Path) -> None:
    [before] = scan_mod.scan([{"name": "m", "path": str(model_dir), "policy": "all"}])
    digests = {e["dir"]: e["digest"] for e in before["entries"]}
    assert digests["1"] == digests["2"]
    (model_dir / "2" / "assets" / "foo.txt").write_text("changed")
    [after] = scan_mod.scan([{"name": "m", "path": str(model_dir), "policy": "all"}])
    changed = {e["dir"]: e["digest"] for e in after["entries"]}
    assert changed["1"] == digests["1"]
    assert changed["2"] != digests["2"]


@pytest.mark.parametrize(
    ("change", "entry", "message"),
    [
        (lambda d: shutil.rmtree(d), {}, "does not exist or is not a directory"),
        (lambda d: [shutil.rmtree(p) for p in d.iterdir()], {}, "has no numeric version directory"),
        (lambda d: (d / "00000123" / "saved_model.pb").unlink(), {}, "has no saved_model.pb"),
        (
            lambda d: shutil.rmtree(d / "00000123" / "variables"),
            {},
            "has no variables/variables.index",
        ),
        (lambda d: None, {"policy": "specific", "versions": [7]}, "versions [7] are not under"),
        (lambda d: None, {"labels": {"stable": 1}}, "label 'stable' points at version 1"),
        (lambda d: None, {"labels": {"not-ok": 123}}, "label 'not-ok' must match"),
        (lambda d: None, {"smoke_input": "/nonexistent.json"}, "smoke file /nonexistent.json"),
        (lambda d: None, {"name": "bad name"}, "model name 'bad name' must match"),
    ],
)
def test_bad_models_are_named_errors(model_dir: Path, change, entry, message) -> None:
    change(model_dir)
    model = {"name": "m", "path": str(model_dir), **entry}
    with pytest.raises(scan_mod.ModelError) as error:
        scan_mod.scan([model])
    assert message in str(error.value)
    if not entry:
        assert str(model_dir) in str(error.value)


def test_duplicate_names_are_rejected(model_dir: Path) -> None:
    entry = {"name": "m", "path": str(model_dir)}
    with pytest.raises(scan_mod.ModelError, match="repeated: \\['m'\\]"):
        scan_mod.scan([entry, entry])


@pytest.fixture
def bounded() -> Iterator[None]:
    """Fail a test that blocks (a scan reading a fifo waits for a writer) instead of hanging."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError("the scan blocked (it opened something that is not a regular file)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def link_to_secret(version: Path, secret: Path) -> str:
    """assets/x -> a controller file outside the export (as it were ~/.ssh/id_ed25519)."""
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (version / "assets" / "x").symlink_to(secret)
    return "assets/x"


def link_to_directory(version: Path, secret: Path) -> str:
    (version / "assets" / "vars").symlink_to("../variables", target_is_directory=True)
    return "assets/vars"


def fifo(version: Path, secret: Path) -> str:
    os.mkfifo(version / "assets" / "pipe")
    return "assets/pipe"


def linked_graph(version: Path, secret: Path) -> str:
    """saved_model.pb itself a link to a file inside the export."""
    graph = version / "saved_model.pb"
    graph.rename(version / "assets" / "graph.pb")
    graph.symlink_to("assets/graph.pb")
    return "saved_model.pb"


@pytest.mark.parametrize("make", [link_to_secret, link_to_directory, fifo, linked_graph])
def test_links_and_special_files_in_a_served_version_are_refused(
    model_dir: Path, tmp_path: Path, bounded: None, make
) -> None:
    relative = make(model_dir / "00000123", tmp_path / "id_ed25519")
    with pytest.raises(scan_mod.ModelError) as error:
        scan_mod.scan([{"name": "m", "path": str(model_dir)}])
    message = str(error.value)
    assert "model 'm' version 00000123" in message
    assert f"00000123/{relative}" in message
    assert str(model_dir) in message
    assert "regular files and directories only" in message


def test_a_version_directory_that_is_a_link_is_refused(model_dir: Path, bounded: None) -> None:
    (model_dir / "200").symlink_to("00000123", target_is_directory=True)
    with pytest.raises(scan_mod.ModelError) as error:
        scan_mod.scan([{"name": "m", "path": str(model_dir)}])
    assert "model 'm' version 200: 200 " in str(error.value)
    assert "regular files and directories only" in str(error.value)


def test_every_offending_path_is_named(model_dir: Path, tmp_path: Path, bounded: None) -> None:
    version = model_dir / "00000123"
    link_to_secret(version, tmp_path / "id_ed25519")
    fifo(version, tmp_path)
    with pytest.raises(scan_mod.ModelError) as error:
        scan_mod.scan([{"name": "m", "path": str(model_dir)}])
    assert "00000123/assets/pipe (a fifo)" in str(error.value)
    assert "00000123/assets/x (a symlink to " in str(error.value)


def test_a_link_in_a_version_that_is_not_served_is_left_alone(
    model_dir: Path, tmp_path: Path, bounded: None
) -> None:
    link_to_secret(model_dir / "1", tmp_path / "id_ed25519")
    [model] = scan_mod.scan([{"name": "m", "path": str(model_dir)}])
    assert model["versions"] == [123]


@pytest.mark.parametrize(
    ("kind", "file_name"),
    [
        ("model_server", "good_model_config.txt"),
        ("monitoring", "monitoring_config.txt"),
        ("batching", "batching_config.txt"),
    ],
)
def test_reference_configs_parse(kind: str, file_name: str, testdata: Path) -> None:
    check_mod.parse(kind, (testdata / file_name).read_text())


def test_bad_config_is_rejected(testdata: Path) -> None:
    with pytest.raises(text_format.ParseError, match="improperly"):
        check_mod.parse("model_server", (testdata / "bad_model_config.txt").read_text())


def test_ssl_config_parses_pem_contents() -> None:
    parsed = check_mod.parse(
        "ssl", 'server_key: "-----BEGIN KEY-----\\nabc\\n"\nclient_verify: true\n'
    )
    assert parsed.client_verify is True
    assert parsed.server_key.startswith("-----BEGIN KEY-----\n")


def render(template: str, **variables: object) -> str:
    return role_templates.render("tfserving", template, **variables)


def test_rendered_models_config_matches_the_scan(model_dir: Path) -> None:
    models = scan_mod.scan(
        [
            {"name": "a", "path": str(model_dir), "num_versions": 2, "labels": {"stable": 2}},
            {"name": "b", "path": str(model_dir), "policy": "specific", "versions": [1, 123]},
            {"name": "c", "path": str(model_dir), "policy": "all"},
        ]
    )
    config = check_mod.parse(
        "model_server", render("models.config.j2", __tfserving_scanned_models=models)
    )
    a, b, c = config.model_config_list.config
    assert (a.name, a.base_path, a.model_platform) == ("a", "/models/a", "tensorflow")
    assert a.model_version_policy.latest.num_versions == 2
    assert dict(a.version_labels) == {"stable": 2}
    assert list(b.model_version_policy.specific.versions) == [1, 123]
    assert c.model_version_policy.HasField("all")


def test_rendered_batching_and_ssl_configs_parse() -> None:
    batching = check_mod.parse(
        "batching",
        render(
            "batching.config.j2",
            tfserving_batching_parameters={
                "max_batch_size": 32,
                "batch_timeout_micros": 1000,
                "allowed_batch_sizes": [8, 16, 32],
                "pad_variable_length_inputs": True,
                "thread_pool_name": "batch_threads",
            },
        ),
    )
    assert batching.max_batch_size.value == 32
    assert list(batching.allowed_batch_sizes) == [8, 16, 32]
    assert batching.pad_variable_length_inputs is True
    assert batching.thread_pool_name.value == "batch_threads"
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    ssl = check_mod.parse(
        "ssl",
        render(
            "ssl.config.j2",
            tfserving_ssl_server_key='key "quoted"\n',
            tfserving_ssl_server_cert=pem,
            tfserving_ssl_custom_ca="",
            tfserving_ssl_client_verify=False,
        ),
    )
    assert ssl.server_cert == pem
    assert ssl.server_key == 'key "quoted"\n'
