#!/usr/bin/env bash
# Builds the collection tfserving.fleet from this checkout and installs it, with every
# collection its galaxy.yml depends on (and theirs), into the empty collections path DEST.
# Offline: no Galaxy server is asked; the dependencies are installed from the copies the
# `ansible` pip package bundles (its site-packages/ansible_collections), and ansible-galaxy
# checks their versions against the ranges galaxy.yml declares.
#   scripts/install-collection.sh DEST [DIST]
#     DEST  collections path to install into (created; must be empty)
#     DIST  keep the built tarball here (default: a temporary directory, removed)
# Then, with nothing but DEST:
#   ANSIBLE_COLLECTIONS_PATH=DEST ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false \
#     ansible-playbook tfserving.fleet.site -i INVENTORY
# Uses the project's .venv when there is one, else ansible-galaxy on PATH.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 || $1 == -* ]]; then
    sed -n 's/^#   //p' "$0" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
dest=$(cd "$1" && pwd)
if [[ -n $(ls -A "$dest") ]]; then
    echo "install-collection: $dest is not empty" >&2
    exit 1
fi

if [[ -x $root/.venv/bin/ansible-galaxy ]]; then
    bin=$root/.venv/bin
else
    bin=$(dirname "$(command -v ansible-galaxy)")
fi
python=$bin/python3
[[ -x $python ]] || python=python3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dist=${2:-$work/dist}
mkdir -p "$dist"
# Nothing but DEST: not this checkout's ansible.cfg (collections_path = .), not ~/.ansible,
# not the collections on Python's path.
: >"$work/ansible.cfg"
export ANSIBLE_CONFIG=$work/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH=$dest
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
export ANSIBLE_GALAXY_CACHE_DIR=$work/galaxy-cache

"$bin/ansible-galaxy" collection build --force --output-path "$dist" "$root" >/dev/null
tarball=$(ls "$dist"/tfserving-fleet-*.tar.gz)

# The dependency closure, as directories of the bundled copies (one a line).
"$python" - "$tarball" >"$work/sources" <<'EOF'
import importlib.util
import json
import sys
import tarfile
from pathlib import Path

with tarfile.open(sys.argv[1]) as tar:
    manifest = json.load(tar.extractfile("MANIFEST.json"))
spec = importlib.util.find_spec("ansible_collections")
roots = [Path(p) for p in (spec.submodule_search_locations if spec else [])]
pending = list(manifest["collection_info"]["dependencies"])
found = {}
while pending:
    fqcn = pending.pop()
    if fqcn in found:
        continue
    namespace, name = fqcn.split(".")
    copies = [r / namespace / name for r in roots if (r / namespace / name / "MANIFEST.json").exists()]
    if not copies:
        sys.exit(f"install-collection: {fqcn} is not bundled with ansible (looked in {roots})")
    found[fqcn] = copies[0]
    info = json.loads((copies[0] / "MANIFEST.json").read_text())["collection_info"]
    pending.extend(info["dependencies"])
print("\n".join(str(path) for _, path in sorted(found.items())))
EOF
mapfile -t sources <"$work/sources"

"$bin/ansible-galaxy" collection install --offline -p "$dest" "$tarball" "${sources[@]}"
echo "Collections in $dest:"
"$bin/ansible-galaxy" collection list -p "$dest" 2>/dev/null | sed -n "\\|^# $dest/|,/^\$/p"
