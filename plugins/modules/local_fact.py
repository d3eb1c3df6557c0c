#!/usr/bin/python
"""Record a local fact on the host: /etc/ansible/facts.d/NAME.fact as JSON.

The action of the same name (plugins/action/local_fact.py) runs this module and puts the
content into ansible_local.NAME at once, so the same run sees it without gathering facts.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: local_fact
short_description: Record a local fact on the host (facts.d/NAME.fact) and use it at once
author: tfserving-fleet maintainers (!UNKNOWN)
description:
  - Writes O(content) as JSON to C(O(fact_dir)/O(name).fact), creating the directory, and
    reports a change only when the file's content differs.
  - Later plays and later runs read it as C(ansible_local.NAME) (fact gathering reads
    C(/etc/ansible/facts.d)); this run sees it at once, without gathering facts again,
    because the action merges it into C(ansible_local).
  - Use it for what a role found or produced that another play relies on, so that play
    also works when it runs alone in a later run.
options:
  name:
    description: Name of the fact, the key under C(ansible_local); letters, digits, underscores.
    type: str
    required: true
  content:
    description: The fact, a dict written as JSON.
    type: dict
    required: true
  fact_dir:
    description: Directory of the local facts.
    type: path
    default: /etc/ansible/facts.d
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Record the image this host runs
  tfserving.fleet.local_fact:
    name: tfserving_image
    content:
      ref: "{{ image_ref }}"
      id: "{{ image_id }}"

- name: Use it (this run or a later one)
  ansible.builtin.debug:
    msg: "{{ ansible_local.tfserving_image.ref }}"
"""

RETURN = r"""
path:
  description: The fact file.
  type: str
  returned: always
  sample: /etc/ansible/facts.d/tfserving_image.fact
content:
  description: The recorded fact.
  type: dict
  returned: always
"""

import json
import os
import re
import tempfile

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render(content: dict[str, object]) -> str:
    """The file's text: sorted, indented JSON and a final newline."""
    return json.dumps(content, indent=2, sort_keys=True) + "\n"


def write_fact(fact_dir: str, name: str, content: dict[str, object], check_mode: bool) -> bool:
    """Write fact_dir/name.fact when its content differs; returns whether it changed."""
    if not _NAME_RE.match(name):
        raise ValueError(f"name must be letters, digits and underscores, got {name!r}")
    path = os.path.join(fact_dir, f"{name}.fact")
    text = render(content)
    try:
        with open(path, encoding="utf-8") as current:
            if current.read() == text:
                return False
    except FileNotFoundError:
        pass
    if check_mode:
        return True
    os.makedirs(fact_dir, mode=0o755, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=fact_dir)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return True


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "content": {"type": "dict", "required": True},
            "fact_dir": {"type": "path", "default": "/etc/ansible/facts.d"},
        },
        supports_check_mode=True,
    )
    params = module.params
    path = os.path.join(params["fact_dir"], f"{params['name']}.fact")
    try:
        changed = write_fact(
            params["fact_dir"], params["name"], params["content"], module.check_mode
        )
    except (ValueError, OSError) as error:
        module.fail_json(msg=f"cannot record the local fact {path}: {error}", path=path)
    module.exit_json(changed=changed, path=path, content=params["content"])


if __name__ == "__main__":
    main()
