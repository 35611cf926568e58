#!/usr/bin/env bash
# The local e2e stack's one entrypoint: a real Kubernetes control plane, one node agent per
# region, and two single-node Kafka clusters (regional + aggregate) per region.
#
#   bash e2e/stack/stack.sh up [REGIONS]        default REGIONS=east,west (or $REGIONS)
#   bash e2e/stack/stack.sh status
#   bash e2e/stack/stack.sh down
#   bash e2e/stack/stack.sh region-down REGION  node NotReady + its pods killed + its Kafka killed
#   bash e2e/stack/stack.sh region-up REGION
#   bash e2e/stack/stack.sh env                 print the env file's path
#
# `up` writes $STATE/env (sourced by tests and the demo): KUBECONFIG, TRIBUTARY_REGIONS, and
# TRIBUTARY_KAFKA_<REGION>_{REGIONAL,AGGREGATE} bootstrap servers. Logs: $STATE/logs/.
# COORDINATION=1 (opt-in) also starts the coordination plane (e2e/stack/coordination.sh: a
# kube-apiserver over a three-member etcd, one member per region) and adds its
# TRIBUTARY_COORDINATION_KUBECONFIG to the env; `region-down` then also kills that region's
# etcd member, and `down` stops the plane.
set -euo pipefail

STACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$STACK_DIR/../.." && pwd)"
export TRIBUTARY_STATE_DIR="${TRIBUTARY_STATE_DIR:-$REPO_ROOT/e2e/.state}"
STATE="$TRIBUTARY_STATE_DIR"
CARGO_TARGET="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
TRIBUTARY_BIN="${TRIBUTARY_BIN:-$CARGO_TARGET/debug/tributary}"
NODE_AGENT_BIN="${NODE_AGENT_BIN:-$CARGO_TARGET/debug/tributary-node-agent}"
# The secure Kafka cluster: PLAINTEXT on this port, its controller on +1, SASL_SSL on +2.
SECURE_KAFKA_PORT=19992

# shellcheck source=e2e/stack/k8s.sh
source "$STACK_DIR/k8s.sh"
# shellcheck source=e2e/stack/kafka.sh
source "$STACK_DIR/kafka.sh"
COORDINATION_SH="$STACK_DIR/coordination.sh"
coordination() { bash "$COORDINATION_SH" "$@"; }
# The coordination plane of this state dir was started (its members' regions are recorded).
coordination_initialised() { [[ -s "$STATE/coordination/regions" ]]; }
coordination_has_member() {
  coordination_initialised && tr ',' '\n' <"$STATE/coordination/regions" | grep -qxF -- "$1"
}

log() { echo "[stack] $*" >&2; }
die() { echo "[stack] ERROR: $*" >&2; exit 1; }

regions() { tr ',' ' ' <"$STATE/regions"; }
region_index() {
  local i=0 r
  for r in $(regions); do
    [[ "$r" == "$1" ]] && { echo "$i"; return 0; }
    i=$((i + 1))
  done
  die "unknown region '$1' (stack regions: $(regions))"
}
upper() { tr '[:lower:]-' '[:upper:]_' <<<"$1"; }

agent_pidfile() { echo "$STATE/pids/agent-$1.pid"; }
agent_running() {
  local f pid
  f="$(agent_pidfile "$1")"
  [[ -f "$f" ]] && pid="$(cat "$f")" && kill -0 "$pid" 2>/dev/null
}

agent_start() {
  local region="$1"
  agent_running "$region" && return 0
  [[ -x "$NODE_AGENT_BIN" ]] || die "no node agent at $NODE_AGENT_BIN (run: cargo build -p tributary-node-agent)"
  [[ -x "$TRIBUTARY_BIN" ]] || die "no tributary binary at $TRIBUTARY_BIN (run: cargo build -p tributary)"
  mkdir -p "$STATE/pids" "$STATE/logs" "$STATE/agent-$region" "$STATE/binaries"
  setsid nohup "$NODE_AGENT_BIN" \
    --kubeconfig "$STATE/kubeconfig" \
    --region "$region" \
    --binary "$TRIBUTARY_BIN" \
    --binaries-dir "$STATE/binaries" \
    --image-match tributary \
    --kafka-lib "$(_kafka_cache)/lib" \
    --kafka-log4j "$REPO_ROOT/e2e/kafka/log4j2-tools.properties" \
    --state-dir "$STATE/agent-$region" \
    >>"$STATE/logs/agent-$region.log" 2>&1 </dev/null &
  echo $! >"$(agent_pidfile "$region")"
  local deadline=$((SECONDS + 60))
  until "$KUBECTL" --kubeconfig "$STATE/kubeconfig" get node "tributary-$region" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True; do
    agent_running "$region" || { tail -20 "$STATE/logs/agent-$region.log" >&2; die "node agent $region exited"; }
    ((SECONDS < deadline)) || die "node tributary-$region not Ready after 60s (see $STATE/logs/agent-$region.log)"
    sleep 0.5
  done
}

# SIGTERM is the agent's "stop region": it marks its Node NotReady and kills its pods.
agent_stop() {
  local region="$1" pid
  agent_running "$region" || return 0
  pid="$(cat "$(agent_pidfile "$region")")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$(agent_pidfile "$region")"
}

# One `export KEY='value'` line; values are paths and host:port lists (no single quotes), so
# the file is both valid shell and trivially parsed by the test support crate.
env_line() { printf "export %s='%s'\n" "$1" "$2"; }

write_env() {
  local f="$STATE/env" r
  {
    echo "# Written by e2e/stack/stack.sh up; source it."
    env_line KUBECONFIG "$STATE/kubeconfig"
    env_line TRIBUTARY_STATE_DIR "$STATE"
    env_line TRIBUTARY_REGIONS "$(cat "$STATE/regions")"
    env_line TRIBUTARY_BIN "$TRIBUTARY_BIN"
    env_line TRIBUTARY_KAFKA_LIB "$(_kafka_cache)/lib"
    env_line TRIBUTARY_KUBECTL "$KUBECTL"
    env_line TRIBUTARY_HELM "$HELM_BIN"
    for r in $(regions); do
      env_line "TRIBUTARY_KAFKA_$(upper "$r")_REGIONAL" "$(kafka_bootstrap "$r-regional")"
      env_line "TRIBUTARY_KAFKA_$(upper "$r")_AGGREGATE" "$(kafka_bootstrap "$r-aggregate")"
    done
    # The secure cluster: SASL_SSL (mutual TLS + SCRAM-SHA-512, user `tributary`) for
    # clients under test, PLAINTEXT for setup; certificates and the password under _PKI.
    env_line TRIBUTARY_KAFKA_SECURE "127.0.0.1:$((SECURE_KAFKA_PORT + 2))"
    env_line TRIBUTARY_KAFKA_SECURE_PLAINTEXT "127.0.0.1:$SECURE_KAFKA_PORT"
    env_line TRIBUTARY_KAFKA_SECURE_PKI "$STATE/kafka/secure/pki"
    if [[ -s "$STATE/coordination/env" ]]; then cat "$STATE/coordination/env"; fi
  } >"$f.tmp"
  mv "$f.tmp" "$f"
  log "env written to $f"
}

cmd_up() {
  local want="${1:-${REGIONS:-east,west}}" t0=$SECONDS r i pids=()
  mkdir -p "$STATE"
  if [[ -f "$STATE/regions" && "$(cat "$STATE/regions")" != "$want" ]]; then
    # Other regions mean other nodes and clusters: start from a clean slate rather than keep
    # objects bound to nodes and brokers that no longer exist.
    log "regions change from $(cat "$STATE/regions") to $want: wiping the old stack first"
    cmd_down
    K8S_WIPE=1 k8s_down || true
    rm -rf "$STATE/kafka" "$STATE"/agent-*
  fi
  echo "$want" >"$STATE/regions"
  k8s_build
  kafka_fetch
  k8s_up
  i=0
  for r in $(regions); do
    kafka_up "$r-regional" "$(kafka_port "$i" regional)" & pids+=($!)
    kafka_up "$r-aggregate" "$(kafka_port "$i" aggregate)" & pids+=($!)
    i=$((i + 1))
  done
  # One cluster with mutual TLS + SASL/SCRAM beside the regions' plaintext ones, for the
  # security e2e tests (it serves as a regional and an aggregate cluster at once).
  kafka_secure_up secure "$SECURE_KAFKA_PORT" & pids+=($!)
  for p in "${pids[@]}"; do wait "$p" || die "a Kafka cluster did not start (see $STATE/logs/)"; done
  for r in $(regions); do agent_start "$r"; done
  if [[ "${COORDINATION:-0}" == 1 ]]; then
    coordination up || die "the coordination plane did not start (see $STATE/coordination/logs/)"
  fi
  write_env
  log "stack up (regions $want) in $((SECONDS - t0))s"
}

cmd_down() {
  local r
  if [[ -f "$STATE/regions" ]]; then
    for r in $(regions); do agent_stop "$r"; done
  fi
  kafka_down_all || true
  coordination down || true
  k8s_down || true
  rm -f "$STATE/env"
  log "stack down"
}

cmd_status() {
  [[ -f "$STATE/regions" ]] || { echo "stack: not initialised (run make stack-up)"; return 1; }
  local r rc=0
  k8s_status || rc=1
  kafka_status secure || rc=1
  for r in $(regions); do
    kafka_status "$r-regional" || rc=1
    kafka_status "$r-aggregate" || rc=1
    if agent_running "$r"; then echo "agent-$r running pid=$(cat "$(agent_pidfile "$r")")"; else echo "agent-$r stopped"; rc=1; fi
  done
  if coordination_initialised; then coordination status || rc=1; fi
  return $rc
}

cmd_region_down() {
  local r="${1:?REGION}"
  region_index "$r" >/dev/null
  agent_stop "$r"
  kafka_kill "$r-regional" || true
  kafka_kill "$r-aggregate" || true
  if coordination_has_member "$r"; then
    coordination member-down "$r" || true
  fi
  log "region $r down"
}

cmd_region_up() {
  local r="${1:?REGION}"
  region_index "$r" >/dev/null
  kafka_start "$r-regional" & local a=$!
  kafka_start "$r-aggregate" & local b=$!
  wait "$a" && wait "$b" || die "Kafka of region $r did not restart"
  if coordination_has_member "$r"; then
    coordination member-up "$r" || die "the coordination etcd member of $r did not restart"
  fi
  agent_start "$r"
  log "region $r up"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  region-down) shift; cmd_region_down "$@" ;;
  region-up) shift; cmd_region_up "$@" ;;
  env) echo "$STATE/env" ;;
  # After rebuilding the node agent: every region's agent restarted (its pods are restarted).
  agents-restart) for r in $(regions); do agent_stop "$r"; agent_start "$r"; done ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
