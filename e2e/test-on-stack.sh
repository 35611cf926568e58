#!/usr/bin/env bash
# `make e2e`: every test of the workspace against the running stack (its env sourced), in two
# phases so that the two longest parts overlap instead of queueing:
#   1. the tests that kill a region (the CLI's drill and failover, the e2e suite's
#      region_failure, the operator's e2e_failover) and everything else that is neither
#      Kafka-only nor the operator's. A killed region's brokers would fail a Kafka-only test
#      running beside them, so nothing runs beside this phase.
#   2. the replicator's and the checkpoint sync's tests, which talk only to Kafka (brokers of
#      their own where one must stop), beside the operator's other tests, which wait mostly on
#      Kubernetes: about ten minutes each. The Kafka-only run's output is kept in a log and
#      printed after, so each run's output reads in one piece.
# Every test binary is built first, once; every phase runs even when one before it failed
# (as `cargo test --no-fail-fast` does), and the script fails when any did.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo="${CARGO:-cargo}"
: "${TRIBUTARY_STATE_DIR:?source e2e/.state/env first (make stack-up writes it)}"

kafka_only=(tributary-replicator tributary-checkpoint-sync)
region_killing_operator_tests=(e2e_failover)

failed=()
run() { # name, command...
  local name="$1"; shift
  echo "==> $name: $*"
  "$@" || failed+=("$name")
}

"$cargo" test --workspace --no-run -q || { echo "building the tests failed" >&2; exit 1; }

excludes=(--exclude tributary-operator)
for p in "${kafka_only[@]}"; do excludes+=(--exclude "$p"); done
run "phase 1: the workspace but the operator and the Kafka-only crates" \
  "$cargo" test --workspace "${excludes[@]}" --no-fail-fast
killing=()
for t in "${region_killing_operator_tests[@]}"; do killing+=(--test "$t"); done
run "phase 1: the operator's tests that kill a region" \
  "$cargo" test -p tributary-operator --no-fail-fast "${killing[@]}"
run "phase 1: the operator's doc tests" "$cargo" test -p tributary-operator --doc

# The operator's other targets: its library and binaries, and every tests/*.rs but the
# region-killing ones (a new test file joins by itself).
others=(--lib --bins)
for f in crates/tributary-operator/tests/*.rs; do
  t="$(basename "$f" .rs)"
  [[ " ${region_killing_operator_tests[*]} " == *" $t "* ]] || others+=(--test "$t")
done
packages=()
for p in "${kafka_only[@]}"; do packages+=(-p "$p"); done
kafka_log="$TRIBUTARY_STATE_DIR/logs/test-kafka-only.log"
mkdir -p "$(dirname "$kafka_log")"
echo "==> phase 2: ${kafka_only[*]} (Kafka only; output in $kafka_log, printed after) beside the operator's other tests"
"$cargo" test "${packages[@]}" --no-fail-fast >"$kafka_log" 2>&1 &
kafka_pid=$!
run "phase 2: the operator's other tests" "$cargo" test -p tributary-operator --no-fail-fast "${others[@]}"
kafka_status=0
wait "$kafka_pid" || kafka_status=$?
echo "==> phase 2: ${kafka_only[*]} (exit $kafka_status):"
cat "$kafka_log"
((kafka_status == 0)) || failed+=("phase 2: ${kafka_only[*]}")

if ((${#failed[@]})); then
  printf 'failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
