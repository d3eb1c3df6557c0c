"""Render a role's templates with Ansible's own templating, for tests of what roles write."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def render(role: str, template: str, **variables: object) -> str:
    """roles/ROLE/templates/TEMPLATE rendered with the given variables."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    source = (ROOT / "roles" / role / "templates" / template).read_text()
    templar = Templar(loader=DataLoader(), variables={"ansible_managed": "managed", **variables})
    return templar.template(trust_as_template(source))
