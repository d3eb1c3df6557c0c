#!/usr/bin/python
"""Install a package repository's signing key only after its fingerprint checks out.

The key is fetched to a temporary file beside the destination, listed with
``gpg --show-keys``, and moved into place only when it holds exactly the pinned primary
key. A wrong key, or a file that carries another key besides the pinned one, fails the
task and leaves the installed keyring byte-for-byte as it was.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: signing_key
short_description: Install a repository signing key after checking its pinned fingerprint
author: tfserving-fleet maintainers (!UNKNOWN)
description:
  - Fetches the key from O(url) into a temporary file next to O(dest), lists it with
    C(gpg --show-keys --with-colons) and installs it at O(dest) only when the file holds
    exactly one primary key and that key has the fingerprint O(fingerprint).
  - A key with another fingerprint, a file with more than one primary key, or a file with
    no key fails the task; O(dest) is then left unchanged (byte-identical), so a wrong key
    never replaces a trusted keyring.
  - The file is stored as fetched, so an armored key belongs in a C(.asc) file and a binary
    one in a C(.gpg) file (apt's C(Signed-By) tells them apart by the extension).
  - Reports a change only when the verified key differs from what O(dest) holds.
  - Needs C(gpg) on the host.
options:
  url:
    description:
      - Where the key comes from, C(https://), C(http://) or C(file://) URL, or an absolute
        path on the host.
    type: str
    required: true
  dest:
    description: Keyring file to install, for example C(/etc/apt/keyrings/docker.asc).
    type: path
    required: true
  fingerprint:
    description:
      - The pinned fingerprint of the key's primary key, 40 hex digits (spaces allowed,
        case ignored).
    type: str
    required: true
  timeout:
    description: Seconds to wait for the download.
    type: int
    default: 30
notes:
  - O(mode), O(owner) and O(group) apply to O(dest) as with M(ansible.builtin.copy); the
    default mode is C(0644).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - plugin: community.crypto.gpg_fingerprint
    plugin_type: filter
    description: >-
      Returns the fingerprint of the first key in the file only, so it cannot refuse a key file
      that carries other keys besides the pinned one; this module checks every primary key.
"""

EXAMPLES = r"""
- name: Install Docker's signing key (pinned)
  tfserving.fleet.signing_key:
    url: https://download.docker.com/linux/debian/gpg
    dest: /etc/apt/keyrings/docker.asc
    fingerprint: 9DC858229FC7DD38854AE2D88D81803C0EBFCD88
"""

RETURN = r"""
fingerprint:
  description: Fingerprint of the installed key (upper case, no spaces).
  type: str
  returned: success
  sample: 9DC858229FC7DD38854AE2D88D81803C0EBFCD88
dest:
  description: The keyring file.
  type: str
  returned: always
found:
  description: Fingerprints of the primary keys the fetched file holds.
  type: list
  elements: str
  returned: always
"""

import os
import re
import shutil
import tempfile
from collections.abc import Callable

_FINGERPRINT_RE = re.compile(r"^[0-9A-F]{40}$")


class KeyRefused(Exception):
    """The fetched key may not be installed; the message says why."""

    def __init__(self, message: str, found: list[str] | None = None) -> None:
        super().__init__(message)
        self.found = found or []


def normalize_fingerprint(text: str) -> str:
    """'9DC8 5822 ...' or '9dc8...' -> '9DC8...'; raises ValueError unless 40 hex digits."""
    value = re.sub(r"\s+", "", str(text)).upper()
    if not _FINGERPRINT_RE.match(value):
        raise ValueError(f"not a 40 hex digit OpenPGP fingerprint: {text!r}")
    return value


def primary_fingerprints(colons: str) -> list[str]:
    """Fingerprints of the primary keys in `gpg --show-keys --with-colons` output.

    Each primary key is a ``pub`` record followed by its ``fpr`` record; subkeys (``sub``,
    each with its own ``fpr``) are part of their primary key and are not listed.
    """
    found: list[str] = []
    expect_primary_fpr = False
    for line in colons.splitlines():
        fields = line.split(":")
        kind = fields[0]
        if kind == "pub":
            expect_primary_fpr = True
        elif kind == "fpr" and expect_primary_fpr:
            found.append(fields[9].upper())
            expect_primary_fpr = False
        elif kind in ("sub", "sec", "ssb"):
            expect_primary_fpr = False
    return found


def check_key(found: list[str], pinned: str, url: str, dest: str) -> None:
    """Raise KeyRefused unless `found` is exactly the pinned primary key."""
    kept = f"{dest} was left as it was"
    if not found:
        raise KeyRefused(f"{url} holds no OpenPGP public key; {kept}.", found)
    if found == [pinned]:
        return
    if pinned in found:
        others = ", ".join(fpr for fpr in found if fpr != pinned)
        raise KeyRefused(
            f"{url} holds the pinned key {pinned} and {len(found) - 1} other key(s) ({others});"
            f" a keyring may hold only the pinned key, so {kept}.",
            found,
        )
    raise KeyRefused(
        f"{url} holds the key {', '.join(found)}, not the pinned fingerprint {pinned}; {kept}.",
        found,
    )


def install_key(
    fetch: Callable[[str], None],
    show_keys: Callable[[str], str],
    url: str,
    dest: str,
    fingerprint: str,
    replace: Callable[[str, str], None],
    check_mode: bool = False,
) -> tuple[bool, list[str]]:
    """Fetch into a temporary file beside `dest`, verify, then replace `dest`.

    `fetch(path)` writes the key to path, `show_keys(path)` returns gpg's colon listing,
    `replace(src, dest)` moves the verified file into place. Returns (changed, found).
    """
    pinned = normalize_fingerprint(fingerprint)
    directory = os.path.dirname(dest) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    handle, candidate = tempfile.mkstemp(prefix=".signing-key-", dir=directory)
    os.close(handle)
    try:
        fetch(candidate)
        found = primary_fingerprints(show_keys(candidate))
        check_key(found, pinned, url, dest)
        with open(candidate, "rb") as new:
            content = new.read()
        current = None
        if os.path.exists(dest):
            with open(dest, "rb") as old:
                current = old.read()
        if current == content:
            return False, found
        if not check_mode:
            replace(candidate, dest)
        return True, found
    finally:
        if os.path.exists(candidate):
            os.unlink(candidate)


def main() -> None:
    from ansible.module_utils.basic import AnsibleModule
    from ansible.module_utils.urls import fetch_url

    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "dest": {"type": "path", "required": True},
            "fingerprint": {"type": "str", "required": True},
            "timeout": {"type": "int", "default": 30},
        },
        add_file_common_args=True,
        supports_check_mode=True,
    )
    url: str = module.params["url"]
    dest: str = module.params["dest"]
    try:
        normalize_fingerprint(module.params["fingerprint"])
    except ValueError as error:
        module.fail_json(msg=f"fingerprint: {error}", dest=dest, found=[])
    gpg = module.get_bin_path("gpg", required=True)

    def fetch(path: str) -> None:
        local = url[len("file://") :] if url.startswith("file://") else url
        if local.startswith("/"):
            try:
                shutil.copyfile(local, path)
            except OSError as error:
                raise KeyRefused(f"cannot read the key {url}: {error}") from error
            return
        response, info = fetch_url(module, url, timeout=module.params["timeout"])
        if info.get("status") != 200 or response is None:
            raise KeyRefused(f"cannot download the key {url}: {info.get('msg', info)}")
        with open(path, "wb") as out:
            shutil.copyfileobj(response, out)

    def show_keys(path: str) -> str:
        home = tempfile.mkdtemp(prefix="signing-key-gnupg-")
        try:
            rc, out, err = module.run_command(
                [gpg, "--batch", "--homedir", home, "--with-colons", "--show-keys", path],
                environ_update={"LC_ALL": "C"},
            )
        finally:
            shutil.rmtree(home, ignore_errors=True)
        if rc != 0 and "pub:" not in out:
            raise KeyRefused(f"{url} holds no OpenPGP public key gpg can read: {err.strip()}")
        return out

    def replace(src: str, target: str) -> None:
        module.atomic_move(src, target)

    try:
        changed, found = install_key(
            fetch, show_keys, url, dest, module.params["fingerprint"], replace, module.check_mode
        )
    except KeyRefused as error:
        module.fail_json(msg=str(error), dest=dest, found=error.found)
    params = dict(module.params)
    if params.get("mode") is None:
        params["mode"] = "0644"
    if os.path.exists(dest):
        file_args = module.load_file_common_arguments(params, path=dest)
        changed = module.set_fs_attributes_if_different(file_args, changed)
    module.exit_json(
        changed=changed,
        dest=dest,
        fingerprint=normalize_fingerprint(module.params["fingerprint"]),
        found=found,
    )


if __name__ == "__main__":
    main()
