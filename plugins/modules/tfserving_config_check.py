#!/usr/bin/python
"""Parse a rendered TF Serving config file with the protos the server itself uses."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tfserving_config_check
short_description: Parse a TF Serving text-proto config as the server will
author: tfserving-fleet maintainers (!UNKNOWN)
description:
  - Runs on the controller with a Python that has tensorflow-serving-api.
  - Fails, naming the file and the parser's message, when the content does not parse.
options:
  content:
    description: The rendered text proto.
    type: str
    required: true
  kind:
    description: Which message the content is.
    type: str
    choices: [model_server, monitoring, ssl, batching]
    required: true
  name:
    description: The file name used in messages.
    type: str
    required: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: ansible.builtin.template
    description: >-
      Its O(ansible.builtin.template#module:validate) runs a checker on the host, and TF Serving has
      none; this parses the text proto on the controller with the protos the server itself uses.
"""

EXAMPLES = r"""
- name: Parse a rendered models.config as the server will
  tfserving.fleet.tfserving_config_check:
    content: "{{ lookup('ansible.builtin.template', 'models.config.j2') }}"
    kind: model_server
    name: models.config
  delegate_to: localhost
"""

RETURN = r"""
kind:
  description: The message type that parsed.
  type: str
  returned: success
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule


def message_for(kind: str) -> Any:
    """An empty message of the kind's proto class."""
    from ansible_collections.tfserving.fleet.plugins.module_utils import (
        tfserving_config_protos as config_protos,
    )

    if config_protos.IMPORT_ERROR is not None:
        raise config_protos.IMPORT_ERROR
    classes = {
        "model_server": config_protos.ModelServerConfig,
        "monitoring": config_protos.MonitoringConfig,
        "ssl": config_protos.SSLConfig,
        "batching": config_protos.BatchingParameters,
    }
    return classes[kind]()


def parse(kind: str, content: str) -> Any:
    from google.protobuf import text_format

    return text_format.Parse(content, message_for(kind))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "content": {"type": "str", "required": True, "no_log": True},
            "kind": {
                "type": "str",
                "required": True,
                "choices": ["model_server", "monitoring", "ssl", "batching"],
            },
            "name": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    try:
        parse(module.params["kind"], module.params["content"])
    except ImportError as error:
        module.fail_json(
            msg=f"cannot check {module.params['name']}: tensorflow-serving-api "
            f"is not importable ({error}); run Ansible from the project's .venv"
        )
    except Exception as error:  # text_format.ParseError and protobuf type errors
        module.fail_json(msg=f"{module.params['name']} does not parse: {error}")
    module.exit_json(changed=False, kind=module.params["kind"])


if __name__ == "__main__":
    main()
