"""Run the local_fact module, then put the recorded content into ansible_local at once."""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase


def merged_local(current: object, name: str, content: dict[str, Any]) -> dict[str, Any]:
    """ansible_local with NAME set to content; the other local facts are kept."""
    facts = dict(current) if isinstance(current, dict) else {}
    facts[name] = content
    return facts


class ActionModule(ActionBase):
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        result.update(self._execute_module(task_vars=task_vars))
        if not result.get("failed"):
            current = task_vars.get("ansible_local", {})
            result["ansible_facts"] = {
                "ansible_local": merged_local(current, self._task.args["name"], result["content"])
            }
        return result
