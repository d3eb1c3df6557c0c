#!/usr/bin/env bash
# Run `molecule test` for each named scenario. Test hosts are removed afterwards whatever
# happened (molecule skips destroy when a testinfra verify fails).
#   scripts/molecule.sh SCENARIO...
# The name `unit` stands for the unit suites (`make unit`): a job like a scenario, so that
# `make test` runs them beside the longest scenario instead of before every scenario.
# MOLECULE_JOBS=N runs up to N scenarios at once (each on its own hosts and network), in
# the order given: name the longest first. Each one's output is then kept in
# .cache/molecule-logs/SCENARIO.log and printed whole when it ends.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0 NO_COLOR=1 PY_COLORS=0

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

# One scenario, output to stdout; its status is the return code.
run_one() {
  local scenario=$1 start result status=0
  start=$(date +%s)
  if [ "$scenario" = unit ]; then
    echo "=== make unit"
    if make --no-print-directory unit; then result=passed; else result=FAILED; status=1; fi
    echo "=== unit suites $result in $(( $(date +%s) - start ))s"
    return $status
  fi
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
  return $status
}

jobs=${MOLECULE_JOBS:-1}
status=0
if [ "$jobs" -le 1 ]; then
  for scenario in "$@"; do
    run_one "$scenario" || status=1
  done
  exit $status
fi

logs=.cache/molecule-logs
mkdir -p "$logs"
declare -A running=()
finish_one() {
  local pid code=0
  wait -n -p pid || code=$?
  local scenario=${running[$pid]}
  unset "running[$pid]"
  cat "$logs/$scenario.log"
  [ "$code" -eq 0 ] || status=1
}
for scenario in "$@"; do
  while [ "${#running[@]}" -ge "$jobs" ]; do finish_one; done
  echo "=== started molecule test -s $scenario (output when it ends: $logs/$scenario.log)"
  run_one "$scenario" >"$logs/$scenario.log" 2>&1 &
  running[$!]=$scenario
done
while [ "${#running[@]}" -gt 0 ]; do finish_one; done
exit $status
