"""What a user of the docker role relies on, checked on each converged host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from converge_again import converge
from inner_images import busybox_image

SCENARIO_DIR = Path(__file__).resolve().parents[1]
# Written by prepare.yml on the adopted host, before the converge.
PROBE_RECORD = "/var/tmp/live-restore-probe.json"


def adopted(host) -> bool:
    """The host prepare.yml adopted: its engine ran with live-restore off and a container."""
    return "adopted" in host.ansible.get_variables()["group_names"]


def test_docker_service_active_and_enabled(host) -> None:
    service = host.service("docker")
    assert service.is_running
    assert service.is_enabled


def test_daemon_json_has_configured_and_foreign_keys(host) -> None:
    content = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert content["log-driver"] == "json-file"
    assert content["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert content["live-restore"] is True
    # Planted by prepare.yml: a key the role does not manage must survive.
    assert content["max-concurrent-downloads"] == 4


def test_engine_runs_the_merged_configuration(host) -> None:
    info = host.check_output("docker info --format '{{json .}}'")
    data = json.loads(info)
    assert data["LoggingDriver"] == "json-file"
    assert data["LiveRestoreEnabled"] is True
    # The inner /var/lib/docker is a volume, so the engine is not on the slow vfs driver.
    assert data["Driver"] == "overlay2"


def test_container_outlived_the_restart_that_adopted_the_host(host) -> None:
    """live-restore first: the converge's change needs a restart (log-opts and more), and the
    engine ran with live-restore off; the role turns live-restore on with a reload before
    restarting, so the container prepare.yml started is never stopped."""
    if not adopted(host):
        pytest.skip("only the adopted host had an engine and a container before the converge")
    before = json.loads(host.file(PROBE_RECORD).content_string)
    state = json.loads(host.check_output("docker inspect live-restore-probe"))[0]
    engine_since = int(
        host.check_output("systemctl show --value -p ActiveEnterTimestampMonotonic docker")
    )
    # The engine was restarted (a reload leaves the timestamp alone) ...
    assert engine_since > before["engine_active_since"]
    # ... and the container ran through it: not stopped, not restarted by its policy.
    assert state["State"]["Running"] is True
    assert state["State"]["StartedAt"] == before["started_at"]
    assert state["RestartCount"] == before["restart_count"]


def test_container_runs_inside_the_host(host) -> None:
    image = busybox_image(host, "tiny-busybox:local")
    out = host.check_output(f"docker run --rm {image} /bin/busybox echo hello-from-inner-container")
    assert out.strip() == "hello-from-inner-container"


def test_cis_daemon_defaults_are_in_effect(host) -> None:
    """The role's defaults (CIS Docker Benchmark 2.2, 2.14, 2.16), seen by a container."""
    content = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert (content["icc"], content["no-new-privileges"], content["userland-proxy"]) == (
        False,
        True,
        False,
    )
    bridge = json.loads(host.check_output("docker network inspect bridge"))[0]
    # dockerd leaves the default bridge as it was while containers run through its restart
    # ("There are old running containers, the network config will not take affect"): on the
    # adopted host icc goes off at the next engine start without running containers (a
    # reboot), as README.md says.
    icc = "true" if adopted(host) else "false"
    assert bridge["Options"]["com.docker.network.bridge.enable_icc"] == icc
    image = busybox_image(host, "tiny-busybox:local")
    status = host.check_output(f"docker run --rm {image} /bin/busybox cat /proc/self/status")
    assert "NoNewPrivs:\t1" in status
    # A published port works without docker-proxy (iptables only), also on loopback.
    name = "cis-port-probe"
    host.run(f"docker rm -f {name}")
    try:
        host.run_expect(
            [0],
            f"docker run -d --name {name} -p 127.0.0.1:18081:80 {image} /bin/busybox sh -c"
            " 'mkdir /w && echo cis-ok > /w/index.html && exec /bin/busybox httpd -f -p 80 -h /w'",
        )
        answer = host.run(
            "for i in 1 2 3 4 5; do busybox wget -q -O- http://127.0.0.1:18081/ && exit 0;"
            " sleep 1; done; exit 1"
        )
        assert answer.rc == 0 and answer.stdout.strip() == "cis-ok", answer.stderr
        assert "docker-proxy" not in host.check_output("cat /proc/[0-9]*/comm")
    finally:
        host.run(f"docker rm -f {name}")


def test_docker_user_runs_docker_in_a_fresh_login(host) -> None:
    assert "docker" in host.user("alice").groups
    result = host.run("su - alice -c 'docker ps --format {{.ID}}'")
    assert result.rc == 0, result.stderr


def test_user_outside_docker_group_is_refused(host) -> None:
    # The check above can only fail if the socket is not open to everybody.
    host.run_expect([0, 9], "id nobody")
    result = host.run("su -s /bin/sh nobody -c 'docker ps'")
    assert result.rc != 0
    assert "permission denied" in result.stderr.lower()


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            {"docker_install_source": "nightly"},
            "value of docker_install_source must be one of: upstream, distro, got: nightly",
        ),
        ({"docker_users": ["alice", "no-such-user"]}, "docker_users names users that do not exist"),
    ],
)
def test_bad_input_fails_before_any_change(host, extra_vars, message) -> None:
    name = host.backend.get_hostname()
    before = host.file("/etc/docker/daemon.json").content_string
    result = converge(SCENARIO_DIR, {**extra_vars, "docker_daemon_options": {"debug": True}}, name)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output, output[-3000:]
    assert host.file("/etc/docker/daemon.json").content_string == before
