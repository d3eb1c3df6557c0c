"""The canary play's first step (roles/tfserving/tasks/canary-select.yml) on localhost over
an inventory of hosts that are never reached: which node is the canary, its weight and
share, the metrics source, and each setting that cannot work refused before any change."""

from __future__ import annotations

import json
from pathlib import Path

from ansible_run import run_playbook

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.add_host:
        name: "{{ item }}"
        groups: [tfserving_nodes]
        ansible_connection: local
      loop: "{{ nodes }}"
    - ansible.builtin.add_host: {name: lb1, groups: [tfserving_lb], ansible_connection: local}
      when: with_lb | default(true)
    - ansible.builtin.add_host:
        name: mon1
        groups: [tfserving_monitoring]
        ansible_connection: local
        tfserving_monitoring_scrape_interval: 15s
      when: with_monitoring | default(false)
- hosts: tfserving_nodes
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    tfserving_models: [{name: m, path: /nonexistent}]
  tasks:
    - ansible.builtin.include_role:
        name: tfserving.fleet.tfserving
        tasks_from: canary-select
    - ansible.builtin.debug:
        msg: >-
          CANARY {{ {'node': inventory_hostname, 'here': tfserving_canary_here,
                     'weight': tfserving_canary_weight | int,
                     'share': __tfserving_canary_effective_share | default(none),
                     'baseline': __tfserving_canary_baseline | default(none),
                     'source': __tfserving_canary_source | default(none)} | to_json }}
"""


def select(tmp_path: Path, **extra: object) -> tuple[int, str, dict[str, dict[str, object]]]:
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    variables = {"nodes": ["n1", "n2", "n3"], "tfserving_canary": True, **extra}
    result = run_playbook(play, "-e", json.dumps(variables))
    output = result.stdout + result.stderr
    found = {}
    for line in output.splitlines():
        if '"msg": "CANARY ' in line:
            value = json.loads(json.loads("{" + line.strip().rstrip(",") + "}")["msg"][7:])
            found[value["node"]] = value
    return result.returncode, output, found


def test_the_first_node_is_the_canary_with_the_weight_of_its_share(tmp_path: Path) -> None:
    rc, output, found = select(tmp_path, tfserving_canary_share=25)
    assert rc == 0, output[-3000:]
    assert found["n1"] == {
        "node": "n1",
        "here": True,
        "weight": 67,  # 25 x 2 nodes x 100 / 75
        "share": 25.1,  # 67 / (67 + 200)
        "baseline": ["n2", "n3"],
        "source": "direct",  # no monitoring host
    }
    assert not found["n2"]["here"] and not found["n3"]["here"]


def test_chosen_canaries_share_the_share(tmp_path: Path) -> None:
    rc, output, found = select(
        tmp_path, nodes=["n1", "n2", "n3", "n4"], tfserving_canary_hosts=["n2", "n4"]
    )
    assert rc == 0, output[-3000:]
    # Hosts report in the order they finish: the set is what counts.
    assert sorted(n for n, v in found.items() if v["here"]) == ["n2", "n4"]
    # 10% together: 10 x 2 x 100 / (90 x 2) = 11 each; 22 / 222
    assert found["n2"]["weight"] == 11 and found["n2"]["share"] == 9.9
    assert found["n2"]["baseline"] == ["n1", "n3"]


def test_a_large_fleet_gets_a_smaller_share_and_is_told(tmp_path: Path) -> None:
    nodes = [f"n{i}" for i in range(1, 41)]
    rc, output, found = select(tmp_path, nodes=nodes, tfserving_canary_share=10)
    assert rc == 0, output[-3000:]
    assert found["n1"]["weight"] == 256  # 433 asked for: HAProxy's largest
    assert found["n1"]["share"] == 6.2
    assert "The canary gets 6.2% of new requests, not the 10%" in output


def test_no_canary_when_it_is_off(tmp_path: Path) -> None:
    rc, output, found = select(tmp_path, tfserving_canary=False)
    assert rc == 0, output[-3000:]
    assert {n: (v["here"], v["weight"]) for n, v in found.items()} == {
        "n1": (False, 0),
        "n2": (False, 0),
        "n3": (False, 0),
    }


def test_prometheus_is_the_source_when_there_is_one_and_sets_the_shortest_window(
    tmp_path: Path,
) -> None:
    rc, output, _ = select(tmp_path, with_monitoring=True, tfserving_canary_duration=30)
    assert rc != 0
    assert "tfserving_canary_duration is 30 s: give at least 45 s (three of Prometheus" in output
    rc, output, found = select(tmp_path, with_monitoring=True, tfserving_canary_duration=45)
    assert rc == 0, output[-3000:]
    assert found["n1"]["source"] == "prometheus"


def test_settings_that_cannot_work_are_refused_naming_them(tmp_path: Path) -> None:
    cases = {
        "tfserving_canary_hosts names hosts that are not in tfserving_nodes: n9": {
            "tfserving_canary_hosts": ["n9"]
        },
        "every node is a canary": {"tfserving_canary_hosts": ["n1", "n2", "n3"]},
        "tfserving_canary_share is 60: give a percent from 1 to 50": {"tfserving_canary_share": 60},
        "there is no load balancer (tfserving_lb)": {"with_lb": False},
        "tfserving_canary_metrics is prometheus, but the inventory has no": {
            "tfserving_canary_metrics": "prometheus"
        },
    }
    for message, extra in cases.items():
        rc, output, _ = select(tmp_path, **extra)
        assert rc != 0 and message in output, (message, output[-2000:])
