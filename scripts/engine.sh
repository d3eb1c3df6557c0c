#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine.
# - nothing to do when `docker info` already works;
# - otherwise install the engine from the OS packages when dockerd is missing,
#   start it with systemd when systemd is PID 1, else run dockerd in the background
#   with its log in $DOCKERD_LOG, and wait for the socket.
set -euo pipefail

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKER_WAIT_SECONDS=${DOCKER_WAIT_SECONDS:-60}

log() { printf 'engine: %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "dockerd not found: installing docker.io from the OS packages"
  if [ "$(id -u)" -ne 0 ]; then
    log "ERROR: installing the engine needs root (run as root or install docker.io yourself)"
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q docker.io >/dev/null
fi

if [ "$(cat /proc/1/comm 2>/dev/null)" = "systemd" ]; then
  log "starting docker.service with systemd"
  systemctl start docker.service
else
  log "systemd is not PID 1: starting dockerd in the background (log: $DOCKERD_LOG)"
  # A stale pid file from an engine that is gone would make dockerd refuse to start.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  # Its own session: the engine outlives the shell (and process group) that started it.
  setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
fi

for _ in $(seq "$DOCKER_WAIT_SECONDS"); do
  if docker info >/dev/null 2>&1; then
    log "engine is up ($(docker info --format '{{.ServerVersion}} {{.Driver}}'))"
    exit 0
  fi
  sleep 1
done
log "ERROR: the Docker engine did not answer within ${DOCKER_WAIT_SECONDS}s; last lines of $DOCKERD_LOG:"
tail -n 20 "$DOCKERD_LOG" >&2 || true
exit 1
