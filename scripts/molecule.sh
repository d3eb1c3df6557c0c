#!/usr/bin/env bash
# Run `molecule test` for each named scenario, one after the other. Test hosts are removed
# afterwards whatever happened (molecule skips destroy when a testinfra verify fails).
#   scripts/molecule.sh SCENARIO...
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0 NO_COLOR=1 PY_COLORS=0
# TF Serving's test models: the path conftest.py computes, for prepare playbooks too.
TFSERVING_TESTDATA=$(python -c 'from conftest import TESTDATA; print(TESTDATA)')
export TFSERVING_TESTDATA

# Remove the test hosts (and their volumes and network) of one scenario, found by their labels.
cleanup() {
  local filter="label=molecule-scenario=$1" ids
  ids=$(docker ps -aq --filter label=owner=molecule --filter "$filter")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  ids=$(docker volume ls -q --filter label=owner=molecule --filter "$filter")
  [ -n "$ids" ] && docker volume rm -f $ids >/dev/null
  ids=$(docker network ls -q --filter label=owner=molecule --filter "$filter")
  [ -n "$ids" ] && docker network rm $ids >/dev/null
  return 0
}
trap 'for s in "$@"; do cleanup "$s"; done' EXIT

status=0
for scenario in "$@"; do
  start=$(date +%s)
  echo "=== molecule test -s $scenario"
  if molecule test -s "$scenario"; then
    result=passed
  else
    result=FAILED
    status=1
    molecule destroy -s "$scenario" >/dev/null 2>&1 || true
  fi
  echo "=== molecule scenario $scenario $result in $(( $(date +%s) - start ))s"
  cleanup "$scenario"
done
exit $status
