#!/usr/bin/env bash
# Export the stand-in serving image as a `docker save` archive with its sha256, for the
# tfserving_image role's archive source (molecule scenarios and `make demo`).
#   .cache/standin/tfserving-standin.tar          the archive
#   .cache/standin/tfserving-standin.tar.sha256   its sha256 (hex digits only)
# Rewritten only when the image ID changed.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=$(standin/build-image.sh)
out=.cache/standin/tfserving-standin.tar
id=$(docker image inspect -f '{{.Id}}' "$tag")
mkdir -p "$(dirname "$out")"
if [ -f "$out.id" ] && [ "$(cat "$out.id")" = "$id" ] && [ -f "$out.sha256" ]; then
  echo "standin-archive: $out is current ($id)" >&2
  exit 0
fi
start=$(date +%s)
docker save -o "$out.tmp" "$tag"
sha256sum "$out.tmp" | cut -d' ' -f1 >"$out.sha256"
mv "$out.tmp" "$out"
echo "$id" >"$out.id"
echo "standin-archive: wrote $out ($(du -h "$out" | cut -f1)) in $(( $(date +%s) - start ))s" >&2
