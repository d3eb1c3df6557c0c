"""Render a role's templates with Ansible's own templating, for tests of what roles write."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_LOADED: list[bool] = []


def load_collection() -> None:
    """Let templates use this collection's plugins by their names (tfserving.fleet.FILTER),
    as ansible.cfg's collections_path does for ansible-playbook."""
    if not _LOADED:
        from ansible.plugins.loader import init_plugin_loader

        init_plugin_loader([str(ROOT)])
        _LOADED.append(True)


def render(role: str, template: str, **variables: object) -> str:
    """roles/ROLE/templates/TEMPLATE rendered with the given variables."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    load_collection()
    source = (ROOT / "roles" / role / "templates" / template).read_text()
    templar = Templar(loader=DataLoader(), variables={"ansible_managed": "managed", **variables})
    return templar.template(trust_as_template(source))
