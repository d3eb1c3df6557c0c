"""The tfserving role's gate, rollback and interrupted-run windows, run for real with
ansible-playbook against a local directory and a fake tfs-client (tests/fixtures/
tfserving_role). The container parts are covered by molecule/default.

Windows of an interrupted run, in the order of a run (sync.yml, gate.yml, prune.yml):
  copy aside | .pending written | rename into place | gate | .sha256 written | prune
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
from plugin_files import load_plugin
from role_tasks import module_args, task_file
from tfserving_role_site import ANSIBLE_PLAYBOOK, ROOT, Site

scan_mod = load_plugin("modules", "tfserving_model_scan")


def deployed(
    site: Site, name: str, version: int, marker: str = "sha256", in_place: bool = True
) -> None:
    """What a run left: the version in place (or not) and its marker (.sha256 or .pending)."""
    source = site.exports / name / str(version)
    if in_place:
        shutil.copytree(source, site.host / "models" / name / str(version))
    state = site.host / "state" / name
    state.mkdir(parents=True, exist_ok=True)
    if marker:
        (state / f"{version}.{marker}").write_text(scan_mod.digest(source) + "\n")


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def output(result) -> str:
    return result.stdout + result.stderr


# Finding 1: a stuck version fails the play within the timeout and nothing serving is lost.
def test_stuck_version_fails_the_play_and_keeps_the_serving_version(site: Site) -> None:
    site.export("m", 1)
    site.export("m", 2, "STUCK")
    deployed(site, "m", 1)
    start = time.monotonic()
    result = site.run([site.model("m")], extra={"tfserving_gate_timeout": 4})
    elapsed = time.monotonic() - start
    assert result.returncode != 0, output(result)[-3000:]
    assert "did not pass the readiness gate (failed)" in output(result)
    assert "not ready after" in output(result)
    assert site.versions("m") == ["1"]  # the stuck one removed, the serving one kept
    assert site.markers("m") == ["1.sha256"]
    assert "The previous versions answer again: m=1" in output(result)
    assert elapsed < 120


# Finding 2: an unreachable server removes nothing; a bind address the controller cannot
# reach is refused before any host change.
def test_unreachable_server_fails_without_removing_anything(site: Site) -> None:
    site.export("m", 1)
    result = site.run([site.model("m")], mode="unreachable")
    text = output(result)
    assert result.returncode != 0
    assert "(unreachable)" in text
    assert (
        "no answer from 127.0.0.1:8500" in text and "0.0.0.0:8500 (tfserving_bind_address)" in text
    )
    assert "Nothing was removed" in text
    assert site.versions("m") == ["1"] and site.markers("m") == ["1.pending"]


def test_loopback_bind_address_is_refused_before_host_changes(site: Site) -> None:
    site.export("m", 1)
    result = site.run(
        [site.model("m")],
        extra={"tfserving_bind_address": "127.0.0.1", "tfserving_gate_address": "10.1.2.3"},
    )
    assert result.returncode != 0
    assert "tfserving_bind_address is 127.0.0.1" in output(result)
    assert not site.host.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tfserving_bind_address": ""}, "tfserving_bind_address on localhost: empty"),
        ({"tfserving_memory_limit": "lots"}, "tfserving_memory_limit on localhost: 'lots' is"),
        ({"tfserving_cpus": 4096}, "tfserving_cpus on localhost: 4096 is not between 0"),
        ({"tfserving_pids_limit": 10}, "tfserving_pids_limit on localhost: 10 is below 64"),
        # Docker would refuse these only after the serving container was removed.
        ({"tfserving_rest_port": 70000}, "tfserving_rest_port on localhost: 70000 is not a port"),
        ({"tfserving_grpc_port": 0}, "tfserving_grpc_port on localhost: 0 is not a port"),
        (
            {"tfserving_rest_port": 8500},
            "tfserving_rest_port on localhost: 8500 is the gRPC port too",
        ),
        # An empty (or mistyped) list would rewrite models.config empty and unload every model.
        ({"tfserving_models": []}, "tfserving_models on localhost: empty, so the server would"),
        (
            {"tfserving_firewall_enabled": True},
            "tfserving_firewall_allow on localhost: empty, so the firewall would shut out",
        ),
        (
            {
                "tfserving_firewall_enabled": True,
                "tfserving_firewall_allow": ["10.0.0.1"],
                "tfserving_firewall_sources": ["10.0.0.2", ""],
            },
            "tfserving_firewall_address_var on localhost: a load balancer or monitoring host",
        ),
    ],
)
def test_bad_container_settings_are_refused_naming_the_variable(
    site: Site, extra: dict, message: str
) -> None:
    site.export("m", 1)
    result = site.run([site.model("m")], extra=extra)
    assert result.returncode != 0
    assert message in output(result), output(result)[-3000:]
    assert "Nothing on the host has changed" in output(result)
    assert not site.host.exists()


def test_with_a_load_balancer_the_firewall_is_on_and_asks_for_the_controller(
    site: Site, tmp_path: Path
) -> None:
    # A fleet behind a load balancer gets the firewall without asking for it; it must not
    # shut out the controller, so the run stops before any change until the address is named.
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    localhost:\n  children:\n"
        "    tfserving_lb:\n      hosts:\n        lb1:\n          ansible_host: 10.0.0.5\n"
    )
    site.export("m", 1)
    result = site.run([site.model("m")], inventory=inventory)
    assert result.returncode != 0
    assert "tfserving_firewall_allow on localhost: empty" in output(result), output(result)[-3000:]
    assert not site.host.exists()
    turned_off = site.run(
        [site.model("m")], extra={"tfserving_firewall_enabled": False}, inventory=inventory
    )
    assert turned_off.returncode == 0, output(turned_off)[-3000:]


# Findings 4 and 5: answers are checked for every served version and label; a version that
# answers wrong is rolled back and the previous one is shown to answer again.
def test_every_served_version_and_label_is_checked(site: Site) -> None:
    for version in (1, 2, 3):
        site.export("m", version)
    model = site.model(
        "m",
        policy="specific",
        versions=[1, 3],
        labels={"stable": 1, "canary": 3},
        smoke_expected_outputs={"y": [[2.5]]},
        smoke_tolerance=0.01,
    )
    result = site.run([model])
    assert result.returncode == 0, output(result)[-3000:]
    targets = sorted(
        next(a for a in argv if a.startswith(("--version=", "--label=")))
        for argv in site.calls("predict")
    )
    assert targets == ["--label=canary", "--label=stable", "--version=1", "--version=3"]
    assert all(
        "--expect-output=y=[[2.5]]" in argv and "--tolerance=0.01" in argv
        for argv in site.calls("predict")
    )
    [wait] = site.calls("wait")
    assert "--expect=m=1,3" in wait


def test_wrong_answer_rolls_back_and_the_previous_version_answers_again(site: Site) -> None:
    site.export("m", 1)
    site.export("m", 2, "WRONG")
    deployed(site, "m", 1)
    result = site.run([site.model("m", smoke_expected_outputs={"y": 2.5})])
    text = output(result)
    assert result.returncode != 0
    assert "a served version answered wrong" in text and "answer differs" in text
    assert "Rolled back, removed again: m/2" in text
    assert "The previous versions answer again: m=1" in text
    assert site.versions("m") == ["1"]
    fallback = [argv for argv in site.calls("predict") if "--version=1" in argv]
    assert fallback, "the previous version's answer was not checked"


# Finding 6: every window of an interrupted run.
def test_interrupted_runs_that_placed_good_versions_finish_on_the_next_run(site: Site) -> None:
    # a: killed while copying aside (a leftover .incoming copy, no marker)
    site.export("a", 1)
    (site.host / "models" / "a" / ".incoming-1").mkdir(parents=True)
    # b: killed after .pending, before the rename
    site.export("b", 1)
    deployed(site, "b", 1, "pending", in_place=False)
    # c: killed after the rename (or in the gate): pending and in place; 1 passed before
    site.export("c", 1)
    site.export("c", 2)
    deployed(site, "c", 1)
    deployed(site, "c", 2, "pending")
    # d: killed between writing .sha256 and removing .pending
    site.export("d", 1)
    deployed(site, "d", 1)
    deployed(site, "d", 1, "pending", in_place=False)
    # e: killed in prune, after an old version's directory went, before its marker
    site.export("e", 2)
    deployed(site, "e", 2)
    (site.host / "state" / "e" / "1.sha256").write_text("old\n")
    models = [site.model(n) for n in "abcde"]
    result = site.run(models)
    assert result.returncode == 0, output(result)[-3000:]
    assert {n: site.versions(n) for n in "abcde"} == {
        "a": ["1"],
        "b": ["1"],
        "c": ["2"],
        "d": ["1"],
        "e": ["2"],
    }
    assert {n: site.markers(n) for n in "abcde"} == {
        "a": ["1.sha256"],
        "b": ["1.sha256"],
        "c": ["2.sha256"],
        "d": ["1.sha256"],
        "e": ["2.sha256"],
    }
    assert not (site.host / "models" / "a" / ".incoming-1").exists()
    [wait] = site.calls("wait")
    assert "--expect=c=2" in wait
    # and then nothing changes
    again = site.run(models)
    assert again.returncode == 0
    assert "changed=0" in again.stdout, again.stdout[-3000:]


def test_interrupted_runs_that_placed_broken_versions_are_rolled_back(site: Site) -> None:
    # f: killed after the rename or in the gate, with a version that does not load
    site.export("f", 1)
    site.export("f", 2, "BROKEN")
    deployed(site, "f", 1)
    deployed(site, "f", 2, "pending")
    # g: killed during a roll-back, after the directory went, before the marker
    site.export("g", 1)
    site.export("g", 2, "BROKEN")
    deployed(site, "g", 1)
    deployed(site, "g", 2, "pending", in_place=False)
    result = site.run([site.model("f"), site.model("g")])
    text = output(result)
    assert result.returncode != 0
    assert "failed to load" in text
    assert {n: site.versions(n) for n in "fg"} == {"f": ["1"], "g": ["1"]}
    assert {n: site.markers(n) for n in "fg"} == {"f": ["1.sha256"], "g": ["1.sha256"]}


def test_a_run_killed_in_the_gate_leaves_nothing_broken_for_the_next_run(site: Site) -> None:
    site.export("m", 1)
    site.export("m", 2, "BROKEN")
    deployed(site, "m", 1)
    # killed while the gate asks the server
    site.run_until([site.model("m")], lambda: bool(site.calls("wait") + site.calls("status")))
    assert site.versions("m") == ["1", "2"]  # 2 in place, its gate never finished
    result = site.run([site.model("m")])
    assert result.returncode != 0
    assert "Rolled back, removed again: m/2" in output(result)
    assert site.versions("m") == ["1"] and site.markers("m") == ["1.sha256"]


def test_a_directory_no_run_recorded_is_never_deleted(site: Site) -> None:
    site.export("m", 1)
    deployed(site, "m", 1, marker="")
    result = site.run([site.model("m")])
    assert result.returncode != 0
    assert "has no marker" in output(result)
    assert site.versions("m") == ["1"]
    assert site.calls("wait") == []


# Finding 7: the gate uses the TLS settings; what the server reads is its group's only.
def test_gate_and_smoke_checks_use_tls_and_files_belong_to_the_server_group(site: Site) -> None:
    site.export("m", 1)
    for name in ("ca.pem", "client.pem", "client.key"):
        (site.tmp / name).write_text("pem\n")
    extra = {
        "tfserving_ssl_server_cert": "CERT",
        "tfserving_ssl_server_key": "KEY",
        "tfserving_ssl_custom_ca": "CA",
        "tfserving_ssl_client_verify": True,
        "tfserving_gate_ca_file": str(site.tmp / "ca.pem"),
        "tfserving_gate_cert_file": str(site.tmp / "client.pem"),
        "tfserving_gate_key_file": str(site.tmp / "client.key"),
        "tfserving_gate_server_name": "serving.test",
    }
    result = site.run([site.model("m", smoke_expected_outputs={"y": 2.5})], extra=extra)
    assert result.returncode == 0, output(result)[-3000:]
    assert "KEY" not in output(result).replace("KEY_FILE", "")
    tls = [
        f"--ca-file={site.tmp / 'ca.pem'}",
        f"--cert-file={site.tmp / 'client.pem'}",
        f"--key-file={site.tmp / 'client.key'}",
        "--server-name-override=serving.test",
    ]
    for argv in site.calls("wait") + site.calls("predict"):
        assert all(option in argv for option in tls), argv
    for path in [
        site.host / "config" / "ssl.config",
        site.host / "models" / "m" / "1" / "saved_model.pb",
    ]:
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (0, 8500), path
        assert stat.S_IMODE(info.st_mode) & 0o007 == 0, path


def test_client_verify_without_a_gate_certificate_is_refused_before_host_changes(
    site: Site,
) -> None:
    site.export("m", 1)
    extra = {
        "tfserving_ssl_server_cert": "CERT",
        "tfserving_ssl_server_key": "KEY",
        "tfserving_ssl_custom_ca": "CA",
        "tfserving_ssl_client_verify": True,
    }
    result = site.run([site.model("m")], extra=extra)
    assert result.returncode != 0
    assert "tfserving_gate_cert_file" in output(result)
    assert not site.host.exists()


# Finding 9: a model dropped from tfserving_models leaves the host; it can come back fresh.
def test_dropped_model_is_removed_after_the_gate_and_can_return(site: Site) -> None:
    site.export("keep", 1)
    site.export("gone", 1)
    assert site.run([site.model("keep"), site.model("gone")]).returncode == 0
    assert site.versions("gone") == ["1"]
    result = site.run([site.model("keep")])
    assert result.returncode == 0, output(result)[-3000:]
    assert not (site.host / "models" / "gone").exists()
    assert not (site.host / "state" / "gone").exists()
    shutil.rmtree(site.exports / "gone")
    site.export("gone", 1, "RETRAINED")
    result = site.run([site.model("keep"), site.model("gone")])
    assert result.returncode == 0, output(result)[-3000:]
    assert (site.host / "models" / "gone" / "1" / "RETRAINED").exists()


# An export is regular files and directories only: a link (here to a controller secret, as
# assets/x -> ~/.ssh/id_ed25519 would be) is refused by the scan before any host change.
def export_linking_a_secret(site: Site) -> Path:
    """Version 1 of model m with assets/x -> a controller "private key" beside the site."""
    secret = site.tmp / "id_ed25519"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    version = site.export("m", 1)
    (version / "assets").mkdir()
    (version / "assets" / "x").symlink_to(secret)
    return version


def test_a_link_in_an_export_is_refused_before_any_host_change(site: Site) -> None:
    export_linking_a_secret(site)
    result = site.run([site.model("m")])
    text = output(result)
    assert result.returncode != 0
    assert "model 'm' version 1: " in text and "1/assets/x (a symlink to " in text, text[-3000:]
    assert "regular files and directories only" in text
    assert not site.host.exists()


SYNC_VERSION_PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - ansible.builtin.include_role:
        name: tfserving.fleet.tfserving
        tasks_from: sync-version.yml
"""


# The second line, behind the scan (an export changed after it): the copy never follows a
# link, so no controller file a link points to reaches the host, and a copy holding a link is
# removed before the owner and mode changes, which would follow it, and before it is placed.
def test_the_copy_never_follows_a_link(site: Site) -> None:
    version = export_linking_a_secret(site)
    (version / "assets" / "vars").symlink_to("../variables", target_is_directory=True)
    for made_by_sync in ("models/m", "state/m"):
        (site.host / made_by_sync).mkdir(parents=True)
    play = site.tmp / "sync-version.yml"
    play.write_text(SYNC_VERSION_PLAY)
    entry = {"name": "m", "path": str(site.exports / "m"), "version": 1, "dir": "1"}
    variables = {
        "tfserving_root": str(site.host),
        "__tfserving_new_versions": [],
        "__tfserving_version": {**entry, "key": "m/1", "digest": "0" * 64},
    }
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, str(play), "-e", json.dumps(variables)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=site.env("normal"),
        timeout=300,
    )
    text = output(result)
    assert result.returncode != 0, text[-3000:]
    assert "Could not copy model m version 1" in text
    # the find on the host lists them: copied as links, not followed (a followed link
    # arrives as a regular file or a directory, which nothing would refuse)
    assert ".incoming-1/assets/x" in text and ".incoming-1/assets/vars" in text, text[-3000:]
    assert "regular files and directories only" in text
    assert not (site.host / "models" / "m" / "1").exists()
    assert not (site.host / "models" / "m" / ".incoming-1").exists()
    assert not list((site.host / "state" / "m").iterdir())
    regular = [p for p in site.host.rglob("*") if p.is_file() and not p.is_symlink()]
    assert all("PRIVATE KEY" not in p.read_text() for p in regular), regular


def test_the_rsync_transfer_never_follows_a_link() -> None:
    _, args = module_args(
        task_file("tfserving", "sync-version.yml", "Send the version aside with rsync")
    )
    # archive off and neither links nor copy_links: rsync skips a link ("skipping
    # non-regular file"), it neither follows it nor recreates it.
    assert (args["archive"], args["links"], args["copy_links"]) == (False, False, False)
    assert not args.get("rsync_opts")
