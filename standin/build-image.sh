#!/usr/bin/env bash
# Build the TF Serving stand-in image (tfserving-standin:local) from standin/.
#
#   standin/build-image.sh        prints the image tag on stdout
#
# The image carries a `recipe` label: a hash of everything that goes into it (this script,
# the Dockerfile, the entrypoint and the stand-in package, its linked config protos
# included) plus the base image ID. An image with
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

# The build context. tfs_standin/config_protos.py is a link: cp copies what it points to.
context_files() {
  (cd "$here" && printf '%s\n' build-image.sh Dockerfile tf_serving_entrypoint.sh pyproject.toml \
    && find tfs_standin -name '*.py' \( -type f -o -type l \) | LC_ALL=C sort) | sed "s|^|$here/|"
}

recipe=$(
  {
    printf '%s\n' "$base_id"
    context_files | while read -r f; do
      printf '%s\n' "${f#"$here/"}"
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
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
  context_files | while read -r f; do
    dest="$context/${f#"$here/"}"
    mkdir -p "$(dirname "$dest")"
    cp "$f" "$dest"
  done
  docker build --build-arg "BASE_IMAGE=$base" --build-arg "RECIPE=$recipe" -t "$tag" "$context" >&2
  log "built $tag in $(( $(date +%s) - start ))s"
fi
printf '%s\n' "$tag"
