#!/usr/bin/env bash
# The local e2e stack's one entrypoint: a real Kubernetes control plane, one node agent per
# region, and two single-node Kafka clusters (regional + aggregate) per region.
#
#   bash e2e/stack/stack.sh up [REGIONS]        default REGIONS=east,west (or $REGIONS)
#   bash e2e/stack/stack.sh status
#   bash e2e/stack/stack.sh down                stops every process of either topology
#   bash e2e/stack/stack.sh region-down REGION  node NotReady + its pods killed + its Kafka killed
#   bash e2e/stack/stack.sh region-up REGION
#   bash e2e/stack/stack.sh region-isolate REGION   per-region only: cut REGION's coordination path
#   bash e2e/stack/stack.sh region-heal REGION      per-region only: restore it
#   bash e2e/stack/stack.sh env                 print the env file's path
#
# `up` writes $STATE/env (sourced by tests and the demo): KUBECONFIG, TRIBUTARY_TOPOLOGY,
# TRIBUTARY_REGIONS, and TRIBUTARY_KAFKA_<REGION>_{REGIONAL,AGGREGATE} bootstrap servers.
# Logs: $STATE/logs/.
# COORDINATION=1 (opt-in) also starts the coordination plane (e2e/stack/coordination.sh: a
# kube-apiserver over a three-member etcd, one member per region) and adds its
# TRIBUTARY_COORDINATION_KUBECONFIG to the env; `region-down` then also kills that region's
# etcd member, and `down` stops the plane.
# TOPOLOGY=per-region (e2e/stack/per-region.sh): a control plane and node agent per region,
# the coordination plane always, and a path of each region's own to it; the env adds
# TRIBUTARY_KUBECONFIG_<REGION> and TRIBUTARY_COORDINATION_KUBECONFIG_<REGION>. `region-down`
# there also kills the region's control plane and path. The default, TOPOLOGY=stretched, is one
# control plane for every region. Changing the topology or the regions wipes the old stack.
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
# shellcheck source=e2e/stack/per-region.sh
source "$STACK_DIR/per-region.sh"
COORDINATION_SH="$STACK_DIR/coordination.sh"
coordination() { bash "$COORDINATION_SH" "$@"; }
# The coordination plane of this state dir was started (its members' regions are recorded).
coordination_initialised() { [[ -s "$STATE/coordination/regions" ]]; }
coordination_has_member() {
  coordination_initialised && tr ',' '\n' <"$STATE/coordination/regions" | grep -qxF -- "$1"
}

log() { echo "[stack] $*" >&2; }
die() { echo "[stack] ERROR: $*" >&2; exit 1; }

# The recorded topology (a state dir from before topologies is stretched).
topology() { if [[ -s "$STATE/topology" ]]; then cat "$STATE/topology"; else echo stretched; fi; }
per_region() { [[ "$(topology)" == per-region ]]; }
# The regions, comma-separated, in a file: per-region keeps each region's control plane under
# regions/<region>/, so its list is regions/list there.
regions_file() { if per_region; then echo "$STATE/regions/list"; else echo "$STATE/regions"; fi; }
regions() { tr ',' ' ' <"$(regions_file)"; }
# The admin kubeconfig of the cluster that REGION's node belongs to.
region_kubeconfig() { if per_region; then pr_kubeconfig "$1"; else echo "$STATE/kubeconfig"; fi; }
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
  # The PKI of the region's cluster (its apiserver reads pod logs from the agent's endpoint).
  local pki="$STATE/k8s/pki"
  if per_region; then pki="$(pr_dir "$region")/k8s/pki"; fi
  setsid nohup "$NODE_AGENT_BIN" \
    --kubeconfig "$(region_kubeconfig "$region")" \
    --region "$region" \
    --binary "$TRIBUTARY_BIN" \
    --binaries-dir "$STATE/binaries" \
    --image-match tributary \
    --kafka-lib "$(_kafka_cache)/lib" \
    --kafka-log4j "$REPO_ROOT/e2e/kafka/log4j2-tools.properties" \
    --state-dir "$STATE/agent-$region" \
    --tls-cert-file "$pki/node-agent-serving.crt" \
    --tls-private-key-file "$pki/node-agent-serving.key" \
    --client-ca-file "$pki/ca.crt" \
    >>"$STATE/logs/agent-$region.log" 2>&1 </dev/null &
  echo $! >"$(agent_pidfile "$region")"
  local deadline=$((SECONDS + 60))
  until "$KUBECTL" --kubeconfig "$(region_kubeconfig "$region")" get node "tributary-$region" \
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
    if per_region; then
      # Every region has its own cluster: KUBECONFIG is the first region's, for people; tests
      # take TRIBUTARY_KUBECONFIG_<REGION>.
      env_line KUBECONFIG "$(pr_kubeconfig "$(regions | awk '{ print $1 }')")"
    else
      env_line KUBECONFIG "$STATE/kubeconfig"
    fi
    env_line TRIBUTARY_TOPOLOGY "$(topology)"
    env_line TRIBUTARY_STATE_DIR "$STATE"
    env_line TRIBUTARY_REGIONS "$(cat "$(regions_file)")"
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
    if per_region; then
      env_line TRIBUTARY_COORDINATION_ADMIN_KUBECONFIG "$STATE/coordination/kubeconfig"
      for r in $(regions); do
        env_line "TRIBUTARY_KUBECONFIG_$(upper "$r")" "$(pr_kubeconfig "$r")"
        env_line "TRIBUTARY_COORDINATION_KUBECONFIG_$(upper "$r")" "$(pr_coordination_kubeconfig "$r")"
      done
    fi
  } >"$f.tmp"
  mv "$f.tmp" "$f"
  log "env written to $f"
}

cmd_up() {
  local want="${1:-${REGIONS:-east,west}}" topo="${TOPOLOGY:-stretched}" t0=$SECONDS r i pids=() had
  case "$topo" in stretched | per-region) ;; *) die "unknown TOPOLOGY '$topo' (stretched or per-region)" ;; esac
  mkdir -p "$STATE"
  had="$(topology) $(cat "$(regions_file)" 2>/dev/null || true)"
  if [[ -e "$STATE/regions" && "$had" != "$topo $want" ]]; then
    # Other regions or another topology mean other nodes and clusters: start from a clean slate
    # rather than keep objects bound to nodes and brokers that no longer exist.
    log "stack changes from $had to $topo $want: wiping the old stack first"
    cmd_down
    K8S_WIPE=1 k8s_down || true
    rm -rf "$STATE/kafka" "$STATE"/agent-* "$STATE/regions" "$STATE/topology" "$STATE/coordination"
  fi
  echo "$topo" >"$STATE/topology"
  if per_region; then mkdir -p "$STATE/regions"; fi
  echo "$want" >"$(regions_file)"
  k8s_build
  kafka_fetch
  if per_region; then
    [[ "${COORDINATION:-0}" == 0 ]] || log "TOPOLOGY=per-region always runs the coordination plane (COORDINATION is ignored)"
    pr_up "$want"
    write_env
    log "stack up (topology per-region, regions $want) in $((SECONDS - t0))s"
    return 0
  fi
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

# What a pid file of $STATE/pids names: agent-<region>.pid -> <region>.
agent_regions() {
  local f r
  for f in "$STATE"/pids/agent-*.pid; do
    [[ -e "$f" ]] || continue
    r="${f##*/agent-}"; echo "${r%.pid}"
  done
}

# Stops every process of either topology that this state dir started, whatever is recorded.
cmd_down() {
  local r
  for r in $(agent_regions); do agent_stop "$r"; done
  pr_path_stop_all
  pr_heal_all
  kafka_down_all || true
  coordination down || true
  k8s_down || true
  pr_k8s_down_all
  rm -f "$STATE/env"
  log "stack down"
}

cmd_status() {
  [[ -f "$(regions_file)" ]] || { echo "stack: not initialised (run make stack-up)"; return 1; }
  local r rc=0
  if per_region; then pr_status; return; fi
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
  if per_region; then pr_region_down "$r"; return; fi
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
  if per_region; then pr_region_up "$r"; return; fi
  kafka_start "$r-regional" & local a=$!
  kafka_start "$r-aggregate" & local b=$!
  wait "$a" && wait "$b" || die "Kafka of region $r did not restart"
  if coordination_has_member "$r"; then
    coordination member-up "$r" || die "the coordination etcd member of $r did not restart"
  fi
  agent_start "$r"
  log "region $r up"
}

# Only the per-region topology has a path of each region's own to the coordination apiserver.
cmd_region_isolation() {
  local what=$1 r="${2:?REGION}"
  [[ -f "$(regions_file)" ]] || die "the stack is not initialised (run: make stack-up TOPOLOGY=per-region)"
  per_region || die "region-$what needs TOPOLOGY=per-region: the $(topology) topology has no path of a region's own to a coordination apiserver (run: make stack-up TOPOLOGY=per-region)"
  region_index "$r" >/dev/null
  if [[ "$what" == isolate ]]; then pr_isolate "$r"; else pr_heal "$r"; fi
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  region-down) shift; cmd_region_down "$@" ;;
  region-up) shift; cmd_region_up "$@" ;;
  region-isolate) shift; cmd_region_isolation isolate "$@" ;;
  region-heal) shift; cmd_region_isolation heal "$@" ;;
  env) echo "$STATE/env" ;;
  # After rebuilding the node agent: every region's agent restarted (its pods are restarted).
  agents-restart) for r in $(regions); do agent_stop "$r"; agent_start "$r"; done ;;
  *) sed -n '2,25p' "$0" >&2; exit 2 ;;
esac
