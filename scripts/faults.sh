#!/usr/bin/env bash
# The fault cases of every backend (broker restarts under a consumer and a
# producer, black-holed and reset connections, consumers SIGKILLed, slow
# receivers), with the figures each prints, as a table.
#
#   scripts/faults.sh          # the cases as CI runs them (5000 events)
#   scripts/faults.sh --long   # the soak: 50000 events per restart case
#
# Needs what scripts/setup.sh installs (tansu, pulsar-lite, redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--long" ]]; then
  export EVENT_BUS_FAULT_EVENTS="${EVENT_BUS_FAULT_EVENTS:-50000}"
fi
log="$(mktemp -t event-bus-faults.XXXXXX)"
trap 'rm -f "$log"' EXIT
run() {
  local what="$1"; shift
  echo "faults: $what" >&2
  # Figures are printed by the cases on stderr; failures fail the script.
  if ! cargo test --all-features "$@" -- --nocapture --test-threads 1 > >(sed "s/^/[$what] /" >> "$log") 2>&1; then
    grep -E "panicked|FAILED|fault figures" "$log" | tail -20 >&2
    echo "faults: FAILED: $what" >&2
    exit 1
  fi
}
run sqlite -p event-bus-sqlite --test conformance through_broker
run sqlite-slow -p event-bus-sqlite --test conformance slow_receiver
run redis -p event-bus-redis --test conformance faults_case::
run kafka -p event-bus-kafka --test conformance restart_case::
run pulsar -p event-bus-pulsar --test conformance restart::
run killed-consumers -p event-bus-cli --test killed_consumers
echo
echo "| backend | case | sent | handled | duplicates | lost | longest stall (ms) |"
echo "|---|---|---|---|---|---|---|"
grep -o '^\[[a-z-]*\] .*fault figures: .*' "$log" | while IFS= read -r line; do
  backend="${line%%]*}"; backend="${backend#[}"
  b="$(grep -o 'backend=[a-z]*' <<<"$line" | cut -d= -f2 || true)"
  [[ -n "$b" ]] && backend="$b"
  case="$(sed -E 's/.*case=(.*) sent=.*/\1/' <<<"$line")"
  field() { local v; v="$(grep -o " $1=[0-9]*" <<<"$line" | head -1 | cut -d= -f2 || true)"; echo "${v:--}"; }
  echo "| ${backend%-slow} | $case | $(field sent) | $(field handled) | $(field duplicates) | $(field lost) | $(field longest_stall_ms) |"
done
