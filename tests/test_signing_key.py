"""The signing_key module: a repository key is installed only when it is exactly the pinned
key, and a refused key leaves the installed keyring byte-identical. Real gpg, real keys."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from ansible_run import run_playbook
from plugin_files import load_plugin

signing_key = load_plugin("modules", "signing_key")


def _gpg(home: Path, *args: str) -> str:
    return subprocess.run(
        ["gpg", "--batch", "--homedir", str(home), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


class Keys:
    """Two throwaway signing keys: the pinned one and another, and key files of them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        fingerprints = []
        for name in ("pinned", "other"):
            home = root / f"gnupg-{name}"
            home.mkdir(mode=0o700)
            _gpg(home, "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.invalid>",
                 "ed25519", "sign", "never")  # fmt: skip
            (root / f"{name}.asc").write_text(_gpg(home, "--armor", "--export"))
            listing = _gpg(home, "--with-colons", "--list-keys")
            fingerprints.append(signing_key.primary_fingerprints(listing)[0])
        self.pinned, self.other = fingerprints
        both = (root / "pinned.asc").read_text() + (root / "other.asc").read_text()
        (root / "both.asc").write_text(both)

    def file(self, name: str) -> Path:
        return self.root / f"{name}.asc"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    if shutil.which("gpg") is None:
        pytest.fail("gpg is needed for these tests (apt-get install gpg)")
    return Keys(tmp_path_factory.mktemp("keys"))


def _show_keys(path: str) -> str:
    home = Path(path).parent / ".gnupg-show"
    home.mkdir(mode=0o700, exist_ok=True)
    return _gpg(home, "--with-colons", "--show-keys", path)


def _install(source: Path, dest: Path, fingerprint: str) -> tuple[bool, list[str]]:
    return signing_key.install_key(
        fetch=lambda path: shutil.copyfile(source, path),
        show_keys=_show_keys,
        url=f"file://{source}",
        dest=str(dest),
        fingerprint=fingerprint,
        replace=os.replace,
    )


def test_fingerprints_are_normalised_and_checked() -> None:
    assert signing_key.normalize_fingerprint(
        "9dc8 5822 9fc7 dd38 854a  e2d8 8d81 803c 0ebf cd88"
    ) == ("9DC858229FC7DD38854AE2D88D81803C0EBFCD88")
    with pytest.raises(ValueError, match="40 hex digit"):
        signing_key.normalize_fingerprint("9DC85822")


def test_subkeys_are_part_of_their_primary_key() -> None:
    listing = "\n".join(
        [
            "pub:-:4096:1:8D81803C0EBFCD88:1487788586:::-:::scESA::::::23::0:",
            "fpr:::::::::9DC858229FC7DD38854AE2D88D81803C0EBFCD88:",
            "uid:-::::1487792064::A::Docker Release (CE deb) <docker@docker.com>::::::::::0:",
            "sub:-:4096:1:7EA0A9C3F273FCD8:1487788586::::::s::::::23:",
            "fpr:::::::::D3306A018370199E527AE7317EA0A9C3F273FCD8:",
        ]
    )
    assert signing_key.primary_fingerprints(listing) == ["9DC858229FC7DD38854AE2D88D81803C0EBFCD88"]


def test_the_pinned_key_is_installed_once(keys: Keys, tmp_path: Path) -> None:
    dest = tmp_path / "keyrings" / "repo.asc"
    assert _install(keys.file("pinned"), dest, keys.pinned) == (True, [keys.pinned])
    assert dest.read_bytes() == keys.file("pinned").read_bytes()
    assert _install(keys.file("pinned"), dest, keys.pinned) == (False, [keys.pinned])
    left = sorted(p.name for p in dest.parent.iterdir() if not p.name.startswith(".gnupg"))
    assert left == ["repo.asc"]  # no temporary file left behind


def test_a_wrong_key_fails_naming_both_fingerprints_and_keeps_the_keyring(
    keys: Keys, tmp_path: Path
) -> None:
    dest = tmp_path / "repo.asc"
    _install(keys.file("pinned"), dest, keys.pinned)
    before = dest.read_bytes()
    with pytest.raises(signing_key.KeyRefused) as refused:
        _install(keys.file("other"), dest, keys.pinned)
    assert keys.other in str(refused.value)
    assert keys.pinned in str(refused.value)
    assert dest.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".gnupg")) == [
        "repo.asc"
    ]  # no temporary file left behind


def test_a_key_file_with_another_key_besides_the_pinned_one_is_refused(
    keys: Keys, tmp_path: Path
) -> None:
    dest = tmp_path / "repo.asc"
    _install(keys.file("pinned"), dest, keys.pinned)
    before = dest.read_bytes()
    with pytest.raises(signing_key.KeyRefused, match="may hold only the pinned key"):
        _install(keys.file("both"), dest, keys.pinned)
    assert dest.read_bytes() == before


def test_the_module_refuses_a_wrong_key_through_ansible(keys: Keys, tmp_path: Path) -> None:
    dest = tmp_path / "keyrings" / "repo.asc"
    dest.parent.mkdir()
    shutil.copyfile(keys.file("pinned"), dest)
    before = dest.read_bytes()
    playbook = tmp_path / "key.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "name": "Keys",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Install the pinned key again",
                            "tfserving.fleet.signing_key": {
                                "url": f"file://{keys.file('pinned')}",
                                "dest": str(dest),
                                "fingerprint": keys.pinned,
                            },
                            "register": "same",
                        },
                        {
                            "name": "Report",
                            "ansible.builtin.debug": {"msg": "same-changed={{ same.changed }}"},
                        },
                        {
                            "name": "Offer another key",
                            "tfserving.fleet.signing_key": {
                                "url": f"file://{keys.file('other')}",
                                "dest": str(dest),
                                "fingerprint": keys.pinned,
                            },
                        },
                    ],
                }
            ]
        )
    )
    result = run_playbook(playbook)
    output = " ".join((result.stdout + result.stderr).split())
    assert "same-changed=False" in output, output[-3000:]
    assert result.returncode != 0
    assert f"holds the key {keys.other}, not the pinned fingerprint {keys.pinned}" in output
    assert dest.read_bytes() == before
