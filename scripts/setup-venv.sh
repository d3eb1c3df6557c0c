#!/usr/bin/env bash
# Create or refresh the project virtualenv at .venv from the pinned requirements.txt and
# install the client package into it. Quick when nothing changed: the hash of the inputs is
# stored in .venv/.setup-hash.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
hash=$(cat requirements.txt client/pyproject.toml | sha256sum | cut -c1-16)

if [ -f .venv/.setup-hash ] && [ "$(cat .venv/.setup-hash)" = "$hash" ]; then
  exit 0
fi
echo "setup-venv: installing pinned dependencies into .venv" >&2
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# (This machine's pip configuration names local package folders that may be absent; pip
# warns once per package about them, which says nothing about the install.)
quiet() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
quiet .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
quiet .venv/bin/pip install -q --disable-pip-version-check --no-deps -e client
echo "$hash" > .venv/.setup-hash
echo "setup-venv: done ($(.venv/bin/ansible --version | head -1))" >&2
