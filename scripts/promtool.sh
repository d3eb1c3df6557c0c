#!/usr/bin/env bash
# Make promtool available to the unit tests (they check the monitoring role's Prometheus
# configuration and run its alert rule tests). Nothing to do when promtool is on PATH or
# already unpacked; otherwise Debian's `prometheus` package is downloaded and only its
# promtool unpacked into .cache/bin (no Prometheus server is installed or started here).
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=.cache/bin/promtool
log() { printf 'promtool: %s\n' "$*" >&2; }

if command -v promtool >/dev/null 2>&1 || [ -x "$DEST" ]; then
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "unpacking promtool from Debian's prometheus package into $DEST"
if ! (cd "$work" && apt-get download -q prometheus >/dev/null 2>&1); then
  apt-get update -q >/dev/null
  (cd "$work" && apt-get download -q prometheus >/dev/null)
fi
dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
mkdir -p "$(dirname "$DEST")"
install -m 0755 "$work/root/usr/bin/promtool" "$DEST"
"$DEST" --version 2>&1 | head -1 >&2
