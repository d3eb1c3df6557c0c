#!/usr/bin/env bash
# Build the TF Serving stand-in image (tfserving-standin:local) from files/standin.
#
#   files/standin/build-image.sh        prints the image tag on stdout
#
# The image carries a `recipe` label: a hash of everything that goes into it (this script,
# the Dockerfile, the entrypoint, the Python package) plus the base image ID. An image with
# the same label is reused, so a second call only re-tags. Environment:
#   STANDIN_TAG  tag to build (default tfserving-standin:local)
#   BASE_IMAGE   base image (default local/debian-systemd:12, from scripts/base-images.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tag=${STANDIN_TAG:-tfserving-standin:local}
base=${BASE_IMAGE:-local/debian-systemd:12}

log() { printf 'standin-image: %s\n' "$*" >&2; }

base_id=$(docker image inspect -f '{{.Id}}' "$base" 2>/dev/null) || {
  log "ERROR: base image $base not found (build it with scripts/base-images.sh)"
  exit 1
}

recipe=$(
  cd "$here"
  {
    printf '%s\n' "$base_id"
    for f in build-image.sh Dockerfile .dockerignore tf_serving_entrypoint.sh pyproject.toml \
        $(find tfs_standin -name '*.py' -type f | LC_ALL=C sort); do
      printf '%s\n' "$f"
      cat "$f"
    done
  } | sha256sum | cut -c1-16
)

existing=$(docker image ls -q --filter "label=recipe=$recipe" | head -n1)
if [ -n "$existing" ]; then
  docker tag "$existing" "$tag"
  log "$tag is current (recipe $recipe)"
else
  log "building $tag (recipe $recipe, base $base)"
  start=$(date +%s)
  docker build --build-arg "BASE_IMAGE=$base" --build-arg "RECIPE=$recipe" -t "$tag" "$here" >&2
  log "built $tag in $(( $(date +%s) - start ))s"
fi
printf '%s\n' "$tag"
