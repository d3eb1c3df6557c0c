"""Servers per host (issue 25): GPUs and MIG slices read from recorded nvidia-smi outputs,
the instance specs the tfserving_instances filter makes of them, and the checks molecule/gpu
runs on each server's container, shown to fail on wrong specs.

Fixtures: tests/fixtures/nvidia (nvidia-smi outputs: 1 x L4, 2 x A100, 8 x H100, an A100
split into MIG slices beside a whole one, and what a container given one GPU or one slice
sees) and tests/fixtures/instances (docker inspect of a GPU serving container and of the
two images).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from ansible_run import run_playbook
from plugin_files import load_plugin
from role_tasks import load_yaml

ROOT = Path(__file__).resolve().parents[1]
NVIDIA = Path(__file__).resolve().parent / "fixtures" / "nvidia"
INSPECT = Path(__file__).resolve().parent / "fixtures" / "instances"
CHECKS = ROOT / "molecule" / "gpu" / "tasks" / "check-instances.yml"

facts = load_plugin("modules", "nvidia_gpu_info")
instances = load_plugin("filter", "instances", "instances_filters")
tfserving_instances = instances.tfserving_instances
container_problems = instances.tfserving_instance_container_problems
gpu_problems = instances.tfserving_instance_gpu_problems

ALL_GPUS = [{"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}]
# Each recorded host: (nvidia-smi --query-gpu file, nvidia-smi -L file).
HOSTS = {
    "l4": ("nvidia-smi-query-l4.csv", "nvidia-smi-L-l4.txt"),
    "a100x2": ("nvidia-smi-query-a100x2.csv", "nvidia-smi-L-a100x2.txt"),
    "h100x8": ("nvidia-smi-query-h100x8.csv", "nvidia-smi-L-h100x8.txt"),
    "a100-mig": ("nvidia-smi-query-a100-mig.csv", "nvidia-smi-L-a100-mig.txt"),
    "container-h100-gpu5": ("container-h100-gpu5-query.csv", "container-h100-gpu5-L.txt"),
    "container-a100-mig1": ("container-a100-mig1-query.csv", "container-a100-mig1-L.txt"),
}
GPU_COUNTS = {"l4": 1, "a100x2": 2, "h100x8": 8}
# More than one server: the REST range must start clear of the gRPC range.
SPREAD = {"rest_port": 8600, "memory_fraction": 0.4}


def text(name: str) -> str:
    return (NVIDIA / name).read_text(encoding="utf-8")


@dataclass
class RecordedNvidiaSmi:
    """A host (or, with a container, `docker exec`) whose nvidia-smi prints recorded text."""

    query: str
    listing: str
    ran: list[list[str]] = field(default_factory=list)

    def probe(self):
        return facts.Probe(
            which=lambda name: f"/usr/bin/{name}",
            run=self.run,
            read=lambda path: None,
            list_dir=lambda path: [],
        )

    def run(self, argv: list[str]):
        self.ran.append(argv)
        if argv[-1] == "-L":
            return facts.CommandResult(0, self.listing, "")
        return facts.CommandResult(0, self.query, "")


def detected(host: str, container: str = "") -> dict[str, Any]:
    """What nvidia_gpu_info returns on a recorded host (or for a container on it)."""
    query, listing = HOSTS[host]
    smi = RecordedNvidiaSmi(text(query), text(listing))
    return facts.detect(smi.probe(), container=container).as_result()


def gpus(host: str) -> list[dict[str, Any]]:
    return detected(host)["gpus"]


# --- nvidia-smi parsing --------------------------------------------------------------------


def test_list_reads_gpus_and_their_mig_slices() -> None:
    listed = facts.parse_nvidia_smi_list(text("nvidia-smi-L-a100-mig.txt"))
    assert [(gpu.index, gpu.name) for gpu in listed] == [
        (0, "NVIDIA A100-SXM4-40GB"),
        (1, "NVIDIA A100-SXM4-40GB"),
    ]
    assert listed[0].uuid == "GPU-8c7d3846-2e52-011a-eb28-42b9d326e9c2"
    assert [(s["index"], s["profile"]) for s in listed[0].mig] == [
        (0, "3g.20gb"),
        (1, "2g.10gb"),
        (2, "1g.5gb"),
        (3, "1g.5gb"),
    ]
    assert listed[0].mig[1]["uuid"] == "MIG-99bdb051-1925-535a-ad95-2622a2d2d4bb"
    assert listed[1].mig == []


def test_list_reads_profiles_with_media_extensions_and_old_slice_uuids() -> None:
    listing = (
        "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-11111111-2222-3333-4444-555555555555)\n"
        "  MIG 1g.10gb+me   Device  0: (UUID: MIG-66666666-7777-8888-9999-000000000000)\n"
        "  MIG 3g.40gb Device 1: (UUID: MIG-GPU-11111111-2222-3333-4444-555555555555/2/0)\n"
        "No devices were found\n"
    )
    [gpu] = facts.parse_nvidia_smi_list(listing)
    assert [(s["profile"], s["uuid"]) for s in gpu.mig] == [
        ("1g.10gb+me", "MIG-66666666-7777-8888-9999-000000000000"),
        ("3g.40gb", "MIG-GPU-11111111-2222-3333-4444-555555555555/2/0"),
    ]


@pytest.mark.parametrize("output", ["", "No devices were found\n", "Failed to initialize NVML\n"])
def test_list_without_gpus(output: str) -> None:
    assert facts.parse_nvidia_smi_list(output) == []


def test_query_with_units_and_name_before_memory() -> None:
    """`--query-gpu=index,uuid,name,memory.total --format=csv,noheader` says the same as
    the module's own query."""
    short, _ = facts.parse_nvidia_smi_query(
        text("nvidia-smi-query-short-h100x8.csv"), ("index", "uuid", "name", "memory.total")
    )
    full, driver = facts.parse_nvidia_smi_query(text("nvidia-smi-query-h100x8.csv"))
    assert driver == "550.54.15"
    assert [(g.index, g.uuid, g.name, g.memory_mib) for g in short] == [
        (g.index, g.uuid, g.name, g.memory_mib) for g in full
    ]
    assert [g.memory_mib for g in short] == [81559] * 8
    comma = "3, GPU-1, NVIDIA RTX A5000, Laptop GPU, 16384 MiB\n"
    [gpu] = facts.parse_nvidia_smi_query(comma, ("index", "uuid", "name", "memory.total"))[0]
    assert (gpu.index, gpu.name, gpu.memory_mib) == (3, "NVIDIA RTX A5000, Laptop GPU", 16384)


@pytest.mark.parametrize(("host", "count"), GPU_COUNTS.items())
def test_module_returns_uuids_of_1_2_and_8_gpus(host: str, count: int) -> None:
    result = detected(host)
    listed = facts.parse_nvidia_smi_list(text(HOSTS[host][1]))
    assert result["gpu_count"] == count
    assert [gpu["uuid"] for gpu in result["gpus"]] == [gpu.uuid for gpu in listed]
    assert all(gpu["uuid"].startswith("GPU-") and len(gpu["uuid"]) == 40 for gpu in result["gpus"])
    assert all(gpu["mig"] == [] for gpu in result["gpus"])
    assert result["checks"][-1] == "nvidia-smi -L: 0 MIG slice(s)"


def test_module_returns_mig_slices() -> None:
    result = detected("a100-mig")
    assert [len(gpu["mig"]) for gpu in result["gpus"]] == [4, 0]
    assert result["gpus"][0]["mig"][3] == {
        "index": 3,
        "uuid": "MIG-9e5f2109-2932-df25-ad16-dc33307c4826",
        "profile": "1g.5gb",
    }
    assert result["checks"][-1] == "nvidia-smi -L: 4 MIG slice(s)"


def test_mig_slices_are_matched_by_uuid_not_by_position() -> None:
    query, _ = facts.parse_nvidia_smi_query(text("nvidia-smi-query-a100-mig.csv"))
    listed = facts.parse_nvidia_smi_list(text("nvidia-smi-L-a100-mig.txt"))
    listed.reverse()
    for position, gpu in enumerate(listed):
        gpu.index = position  # numbered otherwise (another CUDA_DEVICE_ORDER)
    assert facts.add_mig_slices(query, listed) == 4
    assert [len(gpu.mig) for gpu in query] == [4, 0]


def test_failed_listing_keeps_the_gpus_and_says_slices_are_unknown() -> None:
    smi = RecordedNvidiaSmi(text("nvidia-smi-query-a100x2.csv"), "")
    smi.run = lambda argv: (  # type: ignore[method-assign]
        facts.CommandResult(6, "", "Unable to determine the device handle\n")
        if argv[-1] == "-L"
        else facts.CommandResult(0, text("nvidia-smi-query-a100x2.csv"), "")
    )
    result = facts.detect(smi.probe()).as_result()
    assert result["gpu_count"] == 2
    assert result["checks"][-1] == (
        "nvidia-smi -L: exit 6: Unable to determine the device handle (MIG slices unknown)"
    )


def test_module_asks_a_container_through_docker_exec_only() -> None:
    query, listing = HOSTS["container-a100-mig1"]
    smi = RecordedNvidiaSmi(text(query), text(listing))
    result = facts.detect(smi.probe(), container="tfserving-1").as_result()
    docker = ["/usr/bin/docker", "exec", "tfserving-1", "nvidia-smi"]
    assert smi.ran == [[*docker, *facts.NVIDIA_SMI_QUERY], [*docker, "-L"]]
    assert [gpu["uuid"] for gpu in result["gpus"]] == ["GPU-8c7d3846-2e52-011a-eb28-42b9d326e9c2"]
    assert [s["uuid"] for s in result["gpus"][0]["mig"]] == [
        "MIG-99bdb051-1925-535a-ad95-2622a2d2d4bb"
    ]
    no_docker = facts.Probe(
        which=lambda name: None, run=smi.run, read=lambda p: None, list_dir=lambda p: []
    )
    assert facts.detect(no_docker, container="tfserving").as_result()["checks"] == [
        "docker: not found (needed to ask a container)"
    ]


# --- instance specs --------------------------------------------------------------------------


@pytest.mark.parametrize("host", [None, *GPU_COUNTS])
def test_one_is_todays_single_container(host: str | None) -> None:
    """Mode one gives the same name, ports, devices and fraction as the tfserving role's
    container had before instances: an upgrade that keeps one server changes nothing."""
    from test_gpu_serving import container_spec

    devices = gpus(host) if host else []
    [one] = tfserving_instances(devices, {"memory_fraction": 0.9})
    today = container_spec(gpu=bool(host))  # inventory/gpu: fraction 0.9
    assert one["name"] == today["name"] == "tfserving"
    assert [f"10.0.10.{11 if host else 21}:{one['grpc_port']}:8500"] == today["published_ports"][:1]
    assert today["published_ports"][1].endswith(f":{one['rest_port']}:8501")
    assert one["device_requests"] == today["device_requests"]
    assert one["device"] is None
    assert (one["cpuset_cpus"], one["cpu_share"]) == ("", 0)
    fraction = [arg for arg in today["command"] if arg.startswith(instances.FRACTION_FLAG)]
    assert fraction == ([f"{instances.FRACTION_FLAG}{one['memory_fraction']}"] if host else [])
    assert one["gpu_uuids"] == [gpu["uuid"] for gpu in devices]


@pytest.mark.parametrize(("host", "count"), GPU_COUNTS.items())
def test_per_gpu_pins_one_gpu_to_each_server(host: str, count: int) -> None:
    devices = gpus(host)
    specs = tfserving_instances(devices, {"mode": "per_gpu", **SPREAD})
    assert len(specs) == count
    assert [s["index"] for s in specs] == list(range(count))
    assert [s["name"] for s in specs] == ["tfserving"] + [f"tfserving-{i}" for i in range(1, count)]
    assert [s["grpc_port"] for s in specs] == [8500 + i for i in range(count)]
    assert [s["rest_port"] for s in specs] == [8600 + i for i in range(count)]
    assert [s["memory_fraction"] for s in specs] == [0.4] * count
    for spec, gpu in zip(specs, devices, strict=True):
        # One device each, by UUID, in the shape community.docker.docker_container takes.
        assert spec["device_requests"] == [
            {"driver": "nvidia", "device_ids": [gpu["uuid"]], "capabilities": [["gpu"]]}
        ]
        assert spec["gpu_uuids"] == [gpu["uuid"]]
        assert spec["device"] == {
            "kind": "gpu",
            "uuid": gpu["uuid"],
            "gpu_index": gpu["index"],
            "gpu_uuid": gpu["uuid"],
            "name": gpu["name"],
            "profile": "",
        }
    pinned = [s["device_requests"][0]["device_ids"][0] for s in specs]
    assert len(set(pinned)) == count


@pytest.mark.parametrize(
    ("host", "mode"),
    [("l4", "per_gpu"), ("a100x2", "per_gpu"), ("h100x8", "per_gpu"), ("a100-mig", "per_mig")],
)
def test_round_trip_from_recorded_nvidia_smi_to_one_device_per_server(host: str, mode: str) -> None:
    """The UUIDs as `nvidia-smi -L` prints them, one per server, in its order: GPUs, or a
    split GPU's slices (read here with a pattern of the test's own, not the module's)."""
    query, listing = HOSTS[host]
    smi = RecordedNvidiaSmi(text(query), text(listing))
    devices = facts.detect(smi.probe()).as_result()["gpus"]
    specs = tfserving_instances(devices, {"mode": mode, **SPREAD})
    printed = re.findall(r"UUID: ((?:GPU|MIG)-[0-9a-f-]{36})\)", text(listing))
    usable = [
        uuid
        for uuid, following in zip(printed, [*printed[1:], ""], strict=True)
        if uuid.startswith("MIG-") or not following.startswith("MIG-")
    ]
    assert [s["device_requests"][0]["device_ids"] for s in specs] == [[uuid] for uuid in usable]
    assert [s["grpc_port"] for s in specs] == list(range(8500, 8500 + len(usable)))


def test_device_requests_use_only_docker_container_options() -> None:
    options = {"driver", "count", "device_ids", "capabilities", "options"}
    for mode, host in (("one", "h100x8"), ("per_gpu", "h100x8"), ("per_mig", "a100-mig")):
        for spec in tfserving_instances(gpus(host), {"mode": mode, **SPREAD}):
            assert all(set(request) <= options for request in spec["device_requests"])


def test_per_mig_serves_each_slice_and_each_whole_gpu() -> None:
    devices = gpus("a100-mig")
    specs = tfserving_instances(devices, {"mode": "per_mig", **SPREAD})
    slices = devices[0]["mig"]
    assert [s["device"]["kind"] for s in specs] == ["mig"] * 4 + ["gpu"]
    assert [s["device"]["uuid"] for s in specs] == [s["uuid"] for s in slices] + [
        devices[1]["uuid"]
    ]
    assert [s["device"]["profile"] for s in specs] == ["3g.20gb", "2g.10gb", "1g.5gb", "1g.5gb", ""]
    assert {s["device"]["gpu_uuid"] for s in specs[:4]} == {devices[0]["uuid"]}
    assert specs[1]["device_requests"] == [
        {
            "driver": "nvidia",
            "device_ids": ["MIG-99bdb051-1925-535a-ad95-2622a2d2d4bb"],
            "capabilities": [["gpu"]],
        }
    ]
    assert [s["name"] for s in specs] == ["tfserving"] + [f"tfserving-{i}" for i in range(1, 5)]
    assert [s["grpc_port"] for s in specs] == [8500, 8501, 8502, 8503, 8504]
    assert [s["memory_fraction"] for s in specs] == [0.4] * 5


@pytest.mark.parametrize(
    ("devices", "settings", "message"),
    [
        (
            [],
            {"mode": "per_gpu"},
            "tfserving_instance_mode is per_gpu, but this host serves on CPU",
        ),
        (
            [],
            {"mode": "per_mig"},
            "tfserving_instance_mode is per_mig, but this host serves on CPU",
        ),
        ("a100-mig", {"mode": "per_gpu"}, "GPU 0 (NVIDIA A100-SXM4-40GB) has 4 MIG slice"),
        ("h100x8", {"mode": "per_mig"}, "no GPU of this host has MIG slices: give per_gpu"),
        ("a100x2", {"mode": "count", "count": 2}, "serves on 2 GPU(s): give one, per_gpu"),
        ([], {"mode": "all"}, "tfserving_instance_mode is 'all': give one of one, per_gpu"),
        ([], {"mode": "count", "count": 0}, "tfserving_instance_count is 0: give 1 or more"),
        ([], {"count": True}, "tfserving_instance_count is True: give a whole number"),
        ([], {"mode": "count", "count": 2}, "tfserving_instance_cpus must list the host's CPU"),
        ([], {"mode": "count", "count": 3, "cpus": [0, 1]}, "more than the 2 CPU(s) in"),
        ([], {"cpus": [0, 0]}, "give each CPU id (0 or more) once"),
        ([], {"cpus": "0-3"}, "tfserving_instance_cpus is '0-3': give a list"),
        ([], {"memory_fraction": 1.5}, "tfserving_gpu_memory_fraction is 1.5: give 0"),
        ([], {"memory_fraction": "most"}, "tfserving_gpu_memory_fraction is 'most'"),
        ([], {"name": " "}, "tfserving_container_name is empty"),
        ([], {"replicas": 2}, "unknown setting(s) replicas"),
        ([], {"grpc_port": 0}, "tfserving_grpc_port is 0: give a port in 1-65535"),
        ([], {"rest_port": 70000}, "tfserving_rest_port is 70000: give a port in 1-65535 (0"),
        ([], {"rest_port": 8500}, "tfserving_grpc_port 8500 and tfserving_rest_port 8500 collide"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(
    devices: str | list, settings: dict[str, Any], message: str
) -> None:
    found = gpus(devices) if isinstance(devices, str) else devices
    with pytest.raises(AnsibleFilterError) as error:
        tfserving_instances(found, settings)
    assert message in str(error.value)


def test_a_gpu_without_uuid_cannot_be_pinned() -> None:
    seen_by_lspci = [{"index": 0, "name": "A100 SXM4 40GB", "source": "lspci", "uuid": ""}]
    assert tfserving_instances(seen_by_lspci)[0]["device_requests"] == ALL_GPUS
    with pytest.raises(AnsibleFilterError, match="has no UUID \\(found by lspci\\)"):
        tfserving_instances(seen_by_lspci, {"mode": "per_gpu"})


def test_port_ranges_must_not_overlap_nor_pass_65535() -> None:
    eight = gpus("h100x8")
    with pytest.raises(AnsibleFilterError) as error:
        tfserving_instances(eight, {"mode": "per_gpu"})
    assert str(error.value) == (
        "tfserving_grpc_port 8500 and tfserving_rest_port 8501 collide with 8 servers: gRPC "
        "takes 8500-8507 and REST 8501-8508. Put the REST base at least 8 ports away from the "
        "gRPC base (for instance tfserving_rest_port: 8600)."
    )
    # REST below gRPC collides the same way; right after the gRPC range it does not.
    with pytest.raises(AnsibleFilterError, match="gRPC takes 8500-8507 and REST 8493-8500"):
        tfserving_instances(eight, {"mode": "per_gpu", "rest_port": 8493})
    assert (
        tfserving_instances(eight, {"mode": "per_gpu", "rest_port": 8508})[7]["rest_port"] == 8515
    )
    assert (
        tfserving_instances(eight, {"mode": "per_gpu", "rest_port": 8492})[7]["rest_port"] == 8499
    )
    with pytest.raises(AnsibleFilterError, match="8 servers need gRPC ports 65530-65537"):
        tfserving_instances(eight, {"mode": "per_gpu", "grpc_port": 65530, "rest_port": 8500})
    with pytest.raises(AnsibleFilterError, match="8 servers need REST ports 65530-65537"):
        tfserving_instances(eight, {"mode": "per_gpu", "rest_port": 65530})
    # REST off: only the gRPC range counts, every server runs without REST.
    off = tfserving_instances(eight, {"mode": "per_gpu", "rest_port": 0})
    assert [s["rest_port"] for s in off] == [0] * 8


def test_messages_name_the_callers_variables() -> None:
    names = {"mode": "servers", "rest_port": "rest"}
    with pytest.raises(AnsibleFilterError, match=r"^servers is per_gpu, but this host"):
        tfserving_instances([], {"mode": "per_gpu"}, names)
    with pytest.raises(AnsibleFilterError, match="tfserving_grpc_port 8500 and rest 8501"):
        tfserving_instances(gpus("a100x2"), {"mode": "per_gpu"}, names)


def test_count_splits_the_cpus_into_contiguous_shares() -> None:
    specs = tfserving_instances([], {"mode": "count", "count": 4, "cpus": list(range(8)), **SPREAD})
    assert [s["cpuset_cpus"] for s in specs] == ["0-1", "2-3", "4-5", "6-7"]
    assert [s["cpu_share"] for s in specs] == [2, 2, 2, 2]
    assert [s["name"] for s in specs] == ["tfserving", "tfserving-1", "tfserving-2", "tfserving-3"]
    assert [(s["grpc_port"], s["rest_port"]) for s in specs] == [
        (8500, 8600),
        (8501, 8601),
        (8502, 8602),
        (8503, 8603),
    ]
    # CPU servers: no device, no fraction (only GPU servers pass the flag).
    assert all(s["device_requests"] == [] and s["memory_fraction"] == 0.0 for s in specs)
    assert all(s["device"] is None and s["gpu_uuids"] == [] for s in specs)


def test_count_shares_differ_by_one_at_most_and_follow_the_cpu_ids() -> None:
    uneven = tfserving_instances(
        [], {"mode": "count", "count": 4, "cpus": list(range(6)), **SPREAD}
    )
    assert [s["cpuset_cpus"] for s in uneven] == ["0-1", "2-3", "4", "5"]
    # Ids as the host has them (sorted; gaps, say offline CPUs, are kept out).
    gaps = tfserving_instances(
        [], {"mode": "count", "count": 2, "cpus": [9, 8, 3, 2, 1, 0, 10, 11], **SPREAD}
    )
    assert [s["cpuset_cpus"] for s in gaps] == ["0-3", "8-11"]
    odd = tfserving_instances([], {"mode": "count", "count": 2, "cpus": [0, 2, 4, 6], **SPREAD})
    assert [s["cpuset_cpus"] for s in odd] == ["0,2", "4,6"]
    every = tfserving_instances([], {"mode": "count", "count": 2, "cpus": ["0", "1"], **SPREAD})
    assert [s["cpuset_cpus"] for s in every] == ["0", "1"]


def test_count_of_one_is_todays_unpinned_container() -> None:
    [one] = tfserving_instances([], {"mode": "count", "count": 1, "cpus": list(range(4))})
    assert one == tfserving_instances([])[0]
    assert (one["cpuset_cpus"], one["cpu_share"], one["name"]) == ("", 0, "tfserving")


def test_settings_from_environment_lookups_are_numbers_as_text() -> None:
    specs = tfserving_instances(
        gpus("a100x2"),
        {"mode": "per_gpu", "grpc_port": "9000", "rest_port": "9100", "memory_fraction": "0.5"},
    )
    assert [(s["grpc_port"], s["rest_port"], s["memory_fraction"]) for s in specs] == [
        (9000, 9100, 0.5),
        (9001, 9101, 0.5),
    ]


def test_filters_are_registered() -> None:
    assert set(instances.FilterModule().filters()) == {
        "tfserving_instances",
        "tfserving_instance_container_problems",
        "tfserving_instance_gpu_problems",
        # What other hosts know of a node's servers (the roles, issue 25's orchestration).
        "tfserving_instance_server_name",
        "tfserving_instance_record",
        "tfserving_lb_backend_servers",
        "tfserving_lb_node_servers",
        "tfserving_lb_server_collisions",
        "tfserving_lb_server_ports",
        "tfserving_canary_servers",
        "tfserving_node_server_names",
    }


# --- the checks of molecule/gpu on recorded docker inspect answers --------------------------


def inspect(name: str) -> dict[str, Any]:
    return json.loads((INSPECT / name).read_text(encoding="utf-8"))


GPU_CONTAINER = inspect("inspect-tfserving-gpu.json")  # mode one, fraction 0.4
GPU_IMAGE = inspect("image-tfserving-gpu.json")
CPU_IMAGE = inspect("image-tfserving-cpu.json")
FRACTION = "--per_process_gpu_memory_fraction=0.4"


def as_cpu(container: dict[str, Any]) -> dict[str, Any]:
    """The recorded container as the role runs it on a CPU host."""
    cpu = copy.deepcopy(container)
    cpu["Args"] = [arg for arg in cpu["Args"] if arg != FRACTION]
    cpu["HostConfig"]["DeviceRequests"] = None
    cpu["Config"]["Image"] = "tensorflow/serving:2.19.1"
    return cpu


def named(container: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """CONTAINER with the name and published ports of server SPEC."""
    one = copy.deepcopy(container)
    one["Name"] = "/" + spec["name"]
    host_ip = "10.0.10.11"
    one["HostConfig"]["PortBindings"] = {
        "8500/tcp": [{"HostIp": host_ip, "HostPort": str(spec["grpc_port"])}],
        "8501/tcp": [{"HostIp": host_ip, "HostPort": str(spec["rest_port"])}],
    }
    return one


def pinned(container: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The recorded GPU container as the role would run server SPEC, pinned to its device
    (docker inspect shows a request by id with Count 0)."""
    one = named(container, spec)
    one["HostConfig"]["DeviceRequests"] = [
        {
            "Driver": "nvidia",
            "Count": 0,
            "DeviceIDs": spec["device_requests"][0]["device_ids"],
            "Capabilities": [["gpu"]],
            "Options": {},
        }
    ]
    return one


def changed(container: dict[str, Any], **paths: Any) -> dict[str, Any]:
    """CONTAINER with 'A__B=value' set at A.B."""
    wrong = copy.deepcopy(container)
    for path, value in paths.items():
        *parents, last = path.split("__")
        target = wrong
        for key in parents:
            target = target[key]
        target[last] = value
    return wrong


ONE_GPU = tfserving_instances(gpus("a100x2"), {"memory_fraction": 0.4})[0]
ONE_CPU = tfserving_instances([], {"memory_fraction": 0.4})[0]
PER_GPU = tfserving_instances(gpus("h100x8"), {"mode": "per_gpu", **SPREAD})
PER_MIG = tfserving_instances(gpus("a100-mig"), {"mode": "per_mig", **SPREAD})
COUNT = tfserving_instances([], {"mode": "count", "count": 2, "cpus": [0, 1, 2, 3], **SPREAD})
NO_FRACTION = [arg for arg in GPU_CONTAINER["Args"] if arg != FRACTION]
# The A100 pair's first GPU alone, where the server should have both.
FIRST_A100 = {**tfserving_instances(gpus("a100x2"), {"mode": "per_gpu", **SPREAD})[0]}
FIRST_A100.update(rest_port=8501)
COUNT_1_UNPINNED = named(as_cpu(GPU_CONTAINER), COUNT[1])

# (case, instance, container or None, image): each wrong in one way.
WRONG_SPECS = [
    ("missing", ONE_GPU, None, None, "no container tfserving"),
    (
        "stopped",
        ONE_GPU,
        changed(GPU_CONTAINER, State__Running=False, State__Status="exited"),
        GPU_IMAGE,
        "tfserving is not running (status exited)",
    ),
    (
        "cpu-image",
        ONE_GPU,
        changed(GPU_CONTAINER, Config__Image="tensorflow/serving:2.19.1"),
        CPU_IMAGE,
        "runs tensorflow/serving:2.19.1, not the GPU image",
    ),
    (
        "no-devices",
        ONE_GPU,
        changed(GPU_CONTAINER, HostConfig__DeviceRequests=None),
        GPU_IMAGE,
        "tfserving has device requests [], expected [{driver nvidia, count -1",
    ),
    (
        "one-gpu-of-two",
        ONE_GPU,
        pinned(GPU_CONTAINER, FIRST_A100),
        GPU_IMAGE,
        "device_ids ['GPU-4f1c2e9a-7b3d-5e60-9a12-c8d04b1e7f21'], capabilities",
    ),
    (
        "no-fraction",
        ONE_GPU,
        changed(GPU_CONTAINER, Args=NO_FRACTION),
        GPU_IMAGE,
        "tfserving has no fraction flag, expected --per_process_gpu_memory_fraction=0.4",
    ),
    (
        "other-fraction",
        ONE_GPU,
        changed(GPU_CONTAINER, Args=[*NO_FRACTION, "--per_process_gpu_memory_fraction=0.9"]),
        GPU_IMAGE,
        "tfserving has --per_process_gpu_memory_fraction=0.9, expected",
    ),
    (
        "other-port",
        ONE_GPU,
        changed(
            GPU_CONTAINER,
            HostConfig__PortBindings={
                **GPU_CONTAINER["HostConfig"]["PortBindings"],
                "8500/tcp": [{"HostIp": "10.0.10.11", "HostPort": "8600"}],
            },
        ),
        GPU_IMAGE,
        "tfserving publishes gRPC on [8600], expected [8500]",
    ),
    (
        "gpu-on-cpu-host",
        ONE_CPU,
        changed(as_cpu(GPU_CONTAINER), Config__Image="tensorflow/serving:2.19.1-gpu"),
        GPU_IMAGE,
        "runs tensorflow/serving:2.19.1-gpu, a GPU image, on a CPU instance",
    ),
    (
        "other-slice",
        PER_MIG[1],
        pinned(
            GPU_CONTAINER,
            {**PER_MIG[2], "name": "tfserving-1", "grpc_port": 8501, "rest_port": 8601},
        ),
        GPU_IMAGE,
        "device_ids ['MIG-5a6c4968-6a17-d220-5b36-27fc9530d168']",
    ),
    (
        "unpinned-cpus",
        COUNT[1],
        COUNT_1_UNPINNED,
        CPU_IMAGE,
        "tfserving-1 runs on CPUs all, expected 2-3",
    ),
]


def right_specs() -> list[tuple[str, dict, dict, dict]]:
    """(case, instance, container, image) that match."""
    cpu = as_cpu(GPU_CONTAINER)
    count_1 = changed(COUNT_1_UNPINNED, HostConfig__CpusetCpus="2-3")
    count_1_as_cpus = changed(count_1, HostConfig__CpusetCpus="", HostConfig__NanoCpus=2 * 10**9)
    return [
        ("one-gpu", ONE_GPU, GPU_CONTAINER, GPU_IMAGE),
        ("one-cpu", ONE_CPU, cpu, CPU_IMAGE),
        ("per-gpu-5", PER_GPU[5], pinned(GPU_CONTAINER, PER_GPU[5]), GPU_IMAGE),
        ("per-mig-1", PER_MIG[1], pinned(GPU_CONTAINER, PER_MIG[1]), GPU_IMAGE),
        ("count-1", COUNT[1], count_1, CPU_IMAGE),
        ("count-1-cpus", COUNT[1], count_1_as_cpus, CPU_IMAGE),
    ]


@pytest.mark.parametrize(("case", "instance", "container", "image"), right_specs())
def test_container_check_passes_the_right_spec(case: str, instance, container, image) -> None:
    assert container_problems(container, instance, image) == [], case


@pytest.mark.parametrize(("case", "instance", "container", "image", "message"), WRONG_SPECS)
def test_container_check_fails_each_wrong_spec(case: str, instance, container, image, message):
    problems = container_problems(container, instance, image)
    assert len(problems) == 1, (case, problems)
    assert message in problems[0], (case, problems)


def test_the_gpu_a_server_sees_must_be_the_one_it_was_given() -> None:
    gpu5 = detected("container-h100-gpu5", container="tfserving-5")
    mig1 = detected("container-a100-mig1", container="tfserving-1")
    assert gpu_problems(gpu5, PER_GPU[5]) == []
    assert gpu_problems(mig1, PER_MIG[1]) == []
    assert gpu_problems(detected("a100x2"), ONE_GPU) == []
    assert gpu_problems({"skipped": True}, ONE_CPU) == []
    # Another GPU, every GPU, another slice, the slice's whole GPU, no GPU at all.
    assert gpu_problems(gpu5, PER_GPU[4]) == [
        "tfserving-4 sees GPU-ba9e5c47-afca-1560-936e-0b4f1fd8218a; it was given GPU "
        "GPU-dbcf34d8-96a8-dab3-189d-51ec6c90847f alone"
    ]
    assert "it was given GPU" in gpu_problems(detected("h100x8"), PER_GPU[5])[0]
    assert "it was given MIG MIG-d563fe7e" in gpu_problems(mig1, PER_MIG[0])[0]
    assert gpu_problems(detected("a100-mig"), PER_MIG[1])
    nothing = {"gpus": [], "checks": ["nvidia-smi: exit 127: nvidia-smi: not found"]}
    assert gpu_problems(nothing, PER_GPU[0]) == [
        "tfserving sees no GPU (nvidia-smi: exit 127: nvidia-smi: not found); it was given GPU "
        "GPU-ee544eeb-36cb-b404-03ed-3511d7ec202a alone"
    ]
    assert gpu_problems(gpu5, ONE_GPU)[0].startswith("tfserving sees GPU-ba9e5c47")
    assert gpu_problems(gpu5, ONE_CPU) == [
        "tfserving is a CPU server but sees GPU-ba9e5c47-afca-1560-936e-0b4f1fd8218a"
    ]


# --- molecule/gpu's task file, run by Ansible on localhost --------------------------------


def host_case(specs: list[tuple], seen: list[Any]) -> dict[str, Any]:
    """The registered results verify.yml hands to tasks/check-instances.yml."""
    return {
        "gpu_verify_instances": [spec[1] for spec in specs],
        "gpu_verify_info": {
            "results": [
                {"exists": spec[2] is not None, "container": spec[2], "item": spec[1]}
                for spec in specs
            ]
        },
        "gpu_verify_image": {
            "results": [
                {"images": [spec[3]]} if spec[2] is not None else {"skipped": True}
                for spec in specs
            ]
        },
        "gpu_verify_seen": {"results": seen},
    }


PLAY = """
- name: Judge recorded answers with molecule/gpu's checks
  hosts: right,wrong_specs,wrong_gpus
  gather_facts: false
  vars:
    gpu_verify_instances: "{{ cases[inventory_hostname].gpu_verify_instances }}"
    gpu_verify_info: "{{ cases[inventory_hostname].gpu_verify_info }}"
    gpu_verify_image: "{{ cases[inventory_hostname].gpu_verify_image }}"
    gpu_verify_seen: "{{ cases[inventory_hostname].gpu_verify_seen }}"
  tasks:
    - name: The checks of molecule/gpu/verify.yml
      ansible.builtin.include_tasks: CHECKS
"""


def test_verify_includes_the_checks_and_no_failed_when_overrides_them() -> None:
    verify = load_yaml(ROOT / "molecule" / "gpu" / "verify.yml")[0]["tasks"]
    [include] = [task for task in verify if "ansible.builtin.include_tasks" in task]
    assert include["ansible.builtin.include_tasks"] == "tasks/check-instances.yml"
    checks = load_yaml(CHECKS)
    assert all("failed_when" not in task and "ignore_errors" not in task for task in checks)
    assert [task["ansible.builtin.assert"]["that"] for task in checks] == [
        "gpu_verify_problems | length == 0"
    ] * 2


def test_molecule_checks_fail_on_wrong_specs_and_pass_the_right_ones(tmp_path: Path) -> None:
    right = right_specs()
    seen_right = [
        detected("a100x2"),
        {"skipped": True},
        detected("container-h100-gpu5", container="tfserving-5"),
        detected("container-a100-mig1", container="tfserving-1"),
        {"skipped": True},
        {"skipped": True},
    ]
    # The same containers, but per-gpu-5 sees all eight GPUs and per-mig-1 a whole GPU.
    seen_wrong = [*seen_right]
    seen_wrong[2] = detected("h100x8")
    seen_wrong[3] = detected("container-h100-gpu5", container="tfserving-1")
    cases = {
        "right": host_case(right, seen_right),
        "wrong_specs": host_case([case[:4] for case in WRONG_SPECS], []),
        "wrong_gpus": host_case(right, seen_wrong),
    }
    (tmp_path / "cases.json").write_text(json.dumps({"cases": cases}))
    play = tmp_path / "play.yml"
    play.write_text(PLAY.replace("CHECKS", str(CHECKS)))
    result = run_playbook(
        play,
        "-i",
        "right,wrong_specs,wrong_gpus",
        "-e",
        f"@{tmp_path / 'cases.json'}",
        env={"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"},
    )
    assert result.returncode != 0, result.stdout[-3000:]
    # The JSON document, between the lines of ansible.cfg's profile_tasks callback.
    report = json.JSONDecoder().raw_decode(result.stdout, result.stdout.index("{\n"))[0]
    stats = report["stats"]
    assert stats["right"]["failures"] == 0, result.stdout[-3000:]
    assert stats["wrong_specs"]["failures"] == 1
    assert stats["wrong_gpus"]["failures"] == 1

    verdicts: dict[str, dict[str, tuple[bool, str]]] = {}
    for task in report["plays"][0]["tasks"]:
        for host, outcome in task["hosts"].items():
            for item in outcome.get("results", []):
                name = item["gpu_verify_instance"]["name"]
                key = f"{task['task']['name'][:20]}/{name}/{item['gpu_verify_index']}"
                verdicts.setdefault(host, {})[key] = (bool(item.get("failed")), item["msg"])

    # Right: both checks ran and passed for every server.
    assert len(verdicts["right"]) == 2 * len(right)
    assert not any(failed for failed, _ in verdicts["right"].values())
    # Wrong specs: every one failed the container check, with its reason.
    failed = [(failed, msg) for failed, msg in verdicts["wrong_specs"].values()]
    assert len(failed) == len(WRONG_SPECS)
    for (is_failed, msg), case in zip(failed, WRONG_SPECS, strict=True):
        assert is_failed, case[0]
        assert case[4] in msg, (case[0], msg)
    # Wrong GPUs: the containers are right, the GPUs seen by two servers are not.
    gpu_checks = {
        key: verdict
        for key, verdict in verdicts["wrong_gpus"].items()
        if key.startswith("Check that each")
    }
    assert [failed for failed, _ in gpu_checks.values()] == [False, False, True, True, False, False]
    assert "it was given GPU GPU-ba9e5c47" in list(gpu_checks.values())[2][1]
    assert "it was given MIG MIG-99bdb051" in list(gpu_checks.values())[3][1]
