"""What the tfserving_registry role writes to the registry's config.yml."""

from __future__ import annotations

import role_templates
import yaml


def test_registry_serves_tls_and_asks_for_htpasswd_credentials() -> None:
    config = yaml.safe_load(
        role_templates.render(
            "tfserving_registry",
            "config.yml.j2",
            tfserving_registry_port=5000,
            tfserving_registry_storage_dir="/var/lib/docker-registry",
        )
    )
    assert config["http"]["addr"] == ":5000"
    assert config["http"]["tls"] == {
        "certificate": "/etc/docker/registry/tls/server.crt",
        "key": "/etc/docker/registry/tls/server.key",
    }
    assert config["auth"] == {
        "htpasswd": {"realm": "tfserving-fleet", "path": "/etc/docker/registry/htpasswd"}
    }
    assert config["storage"]["filesystem"]["rootdirectory"] == "/var/lib/docker-registry"
