"""GPU serving without a GPU: the container the roles specify for a GPU host and a CPU host
(image, GPUs, hardening, published addresses), the checks molecule/gpu runs on a real GPU
host, and that scenario's syntax."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from plugin_files import load_file
from role_tasks import evaluate, load_yaml, module_args, role_variables, task_file

ROOT = Path(__file__).resolve().parents[1]
INVENTORY = ROOT / "inventory" / "gpu"
SCENARIO = ROOT / "molecule" / "gpu"
ALL_GPUS = [{"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}]
FRACTION_FLAG = "--per_process_gpu_memory_fraction"

# molecule/gpu's own filters (next to its playbooks: they do not ship in the collection).
gpu_serving = load_file(SCENARIO / "filter_plugins" / "gpu_serving.py", "gpu_serving")


def _inventory_vars() -> dict[str, Any]:
    """What every node of inventory/gpu gets from its group_vars."""
    variables: dict[str, Any] = {}
    for group in ("all", "tfserving_nodes"):
        variables.update(load_yaml(INVENTORY / "group_vars" / f"{group}.yml"))
    return variables


def _groups() -> dict[str, list[str]]:
    """The groups of inventory/gpu/hosts.yml (one level of children, as it has)."""
    children = load_yaml(INVENTORY / "hosts.yml")["all"]["children"]
    return {name: list((group or {}).get("hosts") or {}) for name, group in children.items()}


def _host(gpu: bool, groups: dict[str, list[str]] | None = None, **overrides: Any) -> dict:
    """Variables of a node after the nvidia_container_toolkit role ran: defaults, then the
    inventory, then the roles' vars and the detection facts (Ansible's precedence)."""
    defaults = {**role_variables("tfserving_image"), **role_variables("tfserving")}
    address = "10.0.10.11" if gpu else "10.0.10.21"
    facts = {
        "inventory_hostname": "gpu-node-01" if gpu else "cpu-node-01",
        "ansible_host": address,
        "ansible_facts": {"default_ipv4": {"address": address}, "processor_vcpus": 32},
        "groups": _groups() if groups is None else groups,
        "inventory_dir": str(INVENTORY),
        "ansible_playbook_python": sys.executable,
        "nvidia_container_toolkit_gpu_enabled": gpu,
    }
    return {**defaults, **_inventory_vars(), **overrides, **facts}


def _image_ref(host: dict[str, Any]) -> str:
    """The image tfserving_image gives the host with the pull source: its variant choice,
    the pulled reference of that variant, and the reference it sets for the host."""
    choose = task_file("tfserving_image", "variant.yml", "Choose the image variant of the host")
    variant = evaluate(module_args(choose)[1]["__tfserving_image_host_variant"], host).strip()
    pull = task_file(
        "tfserving_image", "pull.yml", "Pull each variant the play needs (pinned tag or digest)"
    )
    pulled = evaluate(module_args(pull)[1]["name"], {**host, **pull["vars"], "item": variant})
    record = task_file("tfserving_image", "distribute.yml", "Set the image this host runs")
    produced = {variant: {"ref": pulled.strip(), "id": "sha256:" + "0" * 64}}
    return evaluate(
        module_args(record)[1]["tfserving_image_ref"],
        {**host, "__tfserving_image_host_variant": variant, "__tfserving_image_produced": produced},
    )


# The serving container task's name (it says when the plan only compares it).
RUN_CONTAINER = (
    "Run the serving container"
    "{{ ' (compared in check mode)' if __tfserving_container_plan | default(false) else '' }}"
)


def container_spec(
    gpu: bool, groups: dict[str, list[str]] | None = None, **overrides: Any
) -> dict[str, Any]:
    """The arguments of the tfserving role's serving container for such a host."""
    host = _host(gpu, groups, tfserving_image_source="pull", **overrides)
    host["tfserving_image_ref"] = _image_ref(host)
    module, args = module_args(
        task_file(
            "tfserving",
            "container-spec.yml",
            RUN_CONTAINER,
        )
    )
    assert module == "community.docker.docker_container"
    return evaluate(args, host)


def test_gpu_host_gets_the_gpu_image_all_gpus_and_the_memory_fraction() -> None:
    spec = container_spec(gpu=True)
    assert spec["image"] == "tensorflow/serving:2.19.1-gpu"
    assert spec["device_requests"] == ALL_GPUS
    # GPUs come from the device request; the runtime stays docker's default (runc).
    assert "runtime" not in spec
    assert f"{FRACTION_FLAG}=0.9" in spec["command"]
    assert any(arg.startswith("--model_config_file=") for arg in spec["command"])


def test_cpu_host_of_the_same_inventory_gets_none_of_it() -> None:
    spec = container_spec(gpu=False)
    assert spec["image"] == "tensorflow/serving:2.19.1"
    assert not spec["device_requests"]
    assert "runtime" not in spec
    # inventory/gpu sets the fraction for every node; only GPU hosts pass it on.
    assert not [arg for arg in spec["command"] if arg.startswith(FRACTION_FLAG)]
    assert any(arg.startswith("--model_config_file=") for arg in spec["command"])


def test_fraction_zero_leaves_the_servers_default_and_variant_can_be_forced() -> None:
    spec = container_spec(gpu=True, tfserving_gpu_memory_fraction=0.0)
    assert not [arg for arg in spec["command"] if arg.startswith(FRACTION_FLAG)]
    assert spec["device_requests"] == ALL_GPUS
    forced = container_spec(
        gpu=False, tfserving_image_variant="gpu", tfserving_image_pull_tag="2.20.0"
    )
    assert forced["image"] == "tensorflow/serving:2.20.0-gpu"
    assert not forced["device_requests"]


def test_pinned_digest_is_pulled_by_digest() -> None:
    digest = "sha256:" + "ab" * 32
    spec = container_spec(
        gpu=True,
        tfserving_image_pull_name="registry.example:5000/tensorflow/serving",
        tfserving_image_pull_digests={"gpu": digest},
    )
    assert spec["image"] == f"registry.example:5000/tensorflow/serving@{digest}"


def test_container_is_hardened_on_gpu_and_cpu_hosts() -> None:
    for gpu in (True, False):
        spec = container_spec(gpu=gpu)
        assert spec["read_only"] is True
        assert spec["cap_drop"] == ["ALL"]
        assert spec["security_opts"] == ["no-new-privileges"]
        assert spec["user"] == "8500:8500"
        # 32 CPUs: 64 per CPU.
        assert int(spec["pids_limit"]) == 2048
        assert spec["tmpfs"][0] == "/tmp:rw,noexec,nosuid,nodev,size=256m,mode=1777"
        # No memory or CPU limit unless asked for (0: none, so removing one takes effect).
        assert (spec["memory"], float(spec["cpus"])) == ("0", 0.0)
    gpu = container_spec(gpu=True)
    assert gpu["env"] == {"CUDA_CACHE_PATH": "/var/cache/cuda"}
    assert gpu["tmpfs"][1] == "/var/cache/cuda:rw,nosuid,nodev,size=1g,uid=8500,gid=8500,mode=0700"
    cpu = container_spec(gpu=False)
    assert "env" not in cpu and len(cpu["tmpfs"]) == 1


def test_small_host_gets_the_minimum_pids_limit_and_limits_are_passed_on() -> None:
    host_facts = {"default_ipv4": {"address": "10.0.10.21"}, "processor_vcpus": 2}
    host = _host(False, tfserving_memory_limit="8g", tfserving_cpus=1.5)
    spec = evaluate(
        module_args(
            task_file(
                "tfserving",
                "container-spec.yml",
                RUN_CONTAINER,
            )
        )[1],
        {**host, "ansible_facts": host_facts, "tfserving_image": "img"},
    )
    assert int(spec["pids_limit"]) == 1024
    assert (spec["memory"], float(spec["cpus"])) == ("8g", 1.5)


def test_rest_is_on_the_service_address_only_for_a_load_balancer_or_monitoring() -> None:
    # inventory/gpu has both: gRPC and REST on the node's default address.
    assert container_spec(gpu=False)["published_ports"] == [
        "10.0.10.21:8500:8500",
        "10.0.10.21:8501:8501",
    ]
    nodes = {"tfserving_nodes": ["cpu-node-01"]}
    for extra in ({}, {"tfserving_lb": ["lb-01"]}, {"tfserving_monitoring": ["mon-01"]}):
        ports = container_spec(gpu=False, groups={**nodes, **extra})["published_ports"]
        rest = "10.0.10.21:8501:8501" if extra else "127.0.0.1:8501:8501"
        assert ports == ["10.0.10.21:8500:8500", rest], extra
    chosen = container_spec(
        gpu=False, groups=nodes, tfserving_bind_address="192.0.2.7", tfserving_rest_port=0
    )
    assert chosen["published_ports"] == ["192.0.2.7:8500:8500"]
    assert "--rest_api_port=0" in chosen["command"]


# nvidia-smi --query-compute-apps=pid,process_name,gpu_uuid,used_memory
#            --format=csv,noheader,nounits
APPS = """\
31337, /usr/bin/tensorflow_model_server, GPU-6f3c1a2e-0b1d-4c55-9d1e-1a2b3c4d5e6f, 6190
31337, /usr/bin/tensorflow_model_server, GPU-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d, 6188
4100, /opt/other, app, GPU-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d, [N/A]
"""
# nvidia-smi --query-gpu=uuid,memory.total,memory.used --format=csv,noheader,nounits
GPUS = """\
GPU-6f3c1a2e-0b1d-4c55-9d1e-1a2b3c4d5e6f, 15360, 6301
GPU-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d, 15360, 6420
"""


def test_compute_apps_and_gpu_memory_are_parsed() -> None:
    apps = gpu_serving.nvidia_smi_compute_apps(APPS)
    assert [app["pid"] for app in apps] == [31337, 31337, 4100]
    # A comma in a process name does not shift the fields after it.
    assert apps[2]["gpu_uuid"] == "GPU-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    assert apps[2]["used_memory_mib"] is None
    assert gpu_serving.nvidia_smi_compute_apps("No running processes found\n") == []
    gpus = gpu_serving.nvidia_smi_gpu_memory(GPUS)
    assert [gpu["total_mib"] for gpu in gpus] == [15360, 15360]
    assert gpus[1]["used_memory_mib"] == 6420
    with pytest.raises(ValueError, match=r"memory\.total"):
        gpu_serving.nvidia_smi_gpu_memory("GPU-1, [N/A], 3\n")


def test_memory_within_the_fraction_passes_and_above_fails() -> None:
    gpus = gpu_serving.nvidia_smi_gpu_memory(GPUS)
    server = gpu_serving.nvidia_smi_compute_apps(APPS)[:2]
    # 0.4 x 15360 + 256 = 6400 MiB: both entries (6190, 6188) are within.
    assert gpu_serving.gpu_memory_over_fraction(server, gpus, 0.4, 256) == []
    # 0.3 x 15360 + 256 = 4864 MiB: both are over.
    assert len(gpu_serving.gpu_memory_over_fraction(server, gpus, 0.3, 256)) == 2
    # Unknown memory cannot be shown to be within the limit.
    unknown = gpu_serving.nvidia_smi_compute_apps(APPS)[2:]
    assert gpu_serving.gpu_memory_over_fraction(unknown, gpus, 0.9, 1024) == unknown
    # The whole GPU's use stands in when nvidia-smi shows no process: 6420 > 6400.
    assert gpu_serving.gpu_memory_over_fraction(gpus, gpus, 0.4, 256) == [gpus[1]]


def test_a_limit_at_the_gpus_memory_is_refused_as_meaningless() -> None:
    gpus = gpu_serving.nvidia_smi_gpu_memory(GPUS)
    assert gpu_serving.gpu_memory_limit_not_below_total(gpus, 0.4, 1024) == []
    assert gpu_serving.gpu_memory_limit_not_below_total(gpus, 0.95, 1024) == gpus


@pytest.mark.parametrize("playbook", ["converge.yml", "verify.yml"])
def test_gpu_scenario_passes_syntax_check(playbook: str) -> None:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "NO_COLOR": "1"}
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "--syntax-check",
            "-i",
            str(SCENARIO / "inventory/example.yml"),
            str(SCENARIO / playbook),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
