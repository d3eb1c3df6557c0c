#!/usr/bin/env bash
# Build the local test-host base images: Debian root filesystems made with debootstrap
# (systemd, python3, sudo, openssh-server, iproute2, ca-certificates, plus this machine's
# extra CA certificates) turned into images with `docker import`.
#
#   scripts/base-images.sh [SUITE...]     default: bookworm trixie
#
# Tags: local/debian-systemd:12 (bookworm) and local/debian-systemd:13 (trixie), and
# local/debian-systemd-docker:12 and :13: the same with Debian's docker.io already installed,
# for scenarios that do not test the docker role (the role then finds the engine present).
# Each image carries the content hash of its recipe in the label `recipe`; an image whose
# label matches is kept, so a second call is quick. Where a registry is reachable, a
# scenario's platform can name a pulled image instead (see molecule/README.md).
set -euo pipefail

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=systemd,systemd-sysv,dbus,python3,sudo,openssh-server,iproute2,ca-certificates,procps
REPO_TAG=local/debian-systemd

log() { printf 'base-images: %s\n' "$*" >&2; }

suite_version() {
  case "$1" in
    bookworm) echo 12 ;;
    trixie) echo 13 ;;
    *) log "ERROR: unknown suite '$1' (supported: bookworm trixie)"; exit 1 ;;
  esac
}

# The recipe: this script, the package list, the mirror and the extra CA certificates.
recipe_hash() {
  {
    printf '%s\n' "$1" "$PACKAGES" "$MIRROR"
    cat "${BASH_SOURCE[0]}"
    cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true
  } | sha256sum | cut -c1-16
}

build_one() {
  local suite=$1 version tag hash have rootfs
  version=$(suite_version "$suite")
  tag="$REPO_TAG:$version"
  hash=$(recipe_hash "$suite")
  have=$(docker image inspect -f '{{ index .Config.Labels "recipe" }}' "$tag" 2>/dev/null || true)
  if [ "$have" = "$hash" ]; then
    log "$tag is current (recipe $hash)"
    return 0
  fi
  command -v debootstrap >/dev/null 2>&1 || {
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
  }
  rootfs=$(mktemp -d /var/tmp/rootfs-"$suite".XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  log "debootstrap $suite into $rootfs"
  debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$rootfs" "$MIRROR" \
    >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  fi
  # A container has no consoles or kernel tunables to manage: keep boot quiet and fast.
  for unit in getty.target systemd-logind.service console-getty.service \
      systemd-udevd.service systemd-modules-load.service sys-kernel-config.mount \
      systemd-sysctl.service systemd-remount-fs.service; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  # /proc/sys is read-only in these hosts, so a nested engine (Docker >= 26) cannot switch
  # IPv6 off on its containers' interfaces; let it go on (IPv6 is already off here).
  mkdir -p "$rootfs/etc/systemd/system/docker.service.d"
  printf '[Service]\nEnvironment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\n' \
    >"$rootfs/etc/systemd/system/docker.service.d/test-host.conf"
  # No host keys in the image: every host would share them. The create step generates a
  # host's own keys (ssh-keygen -A) and only then starts sshd.
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  printf 'container\n' >"$rootfs/etc/hostname"
  : >"$rootfs/etc/machine-id"
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/*
  log "importing $tag"
  tar -C "$rootfs" -c . | docker import \
    --change "LABEL recipe=$hash" \
    --change "LABEL org.opencontainers.image.description=\"Debian $version with systemd for test hosts\"" \
    --change 'ENV container=docker' \
    --change 'CMD ["/lib/systemd/systemd"]' \
    - "$tag" >/dev/null
  log "$tag built (recipe $hash)"
}

# The engine variant: docker.io installed on top of the base image by `docker build`.
build_engine() {
  local version=$1 base="$REPO_TAG:$1" tag="$REPO_TAG-docker:$1" hash have context
  hash=$( { docker image inspect -f '{{.Id}}' "$base"; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-16)
  have=$(docker image inspect -f '{{ index .Config.Labels "recipe" }}' "$tag" 2>/dev/null || true)
  if [ "$have" = "$hash" ]; then
    log "$tag is current (recipe $hash)"
    return 0
  fi
  log "building $tag"
  context=$(mktemp -d)
  trap 'rm -rf "$context"' RETURN
  cat >"$context/Dockerfile" <<DOCKERFILE
FROM $base
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io \\
      python3-requests \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
LABEL recipe=$hash
DOCKERFILE
  docker build -q -t "$tag" "$context" >/dev/null
  log "$tag built (recipe $hash)"
}

if [ "$#" -eq 0 ]; then set -- bookworm trixie; fi
for suite in "$@"; do
  build_one "$suite"
  build_engine "$(suite_version "$suite")"
done
