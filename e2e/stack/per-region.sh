# shellcheck shell=bash
# The per-region topology of the local stack (`stack.sh up` with TOPOLOGY=per-region): every
# region has a Kubernetes control plane of its own (k8s.sh's functions, run with the region's
# state dir and ports), its own node agent (stack.sh), and its own path to the coordination
# apiserver: a TCP forwarder (socat) on a port of the region's, which `region-isolate`
# black-holes with nftables so that one region can be cut off from the coordination plane alone.
#
# Sourced by e2e/stack/stack.sh, after k8s.sh and with its STATE, log, die, regions and
# region_index. Region i (0-based, in REGIONS order) uses, on 127.0.0.1:
#   etcd clients 23840+10i, peers 23841+10i; kube-apiserver 16460+10i;
#   kube-controller-manager 16461+10i; coordination path 16462+10i -> coordination apiserver.
# State of region r, laid out by k8s.sh under $STATE/regions/<r>/:
#   kubeconfig (admin), k8s/pki/, k8s/etcd/, logs/<process>.log, pids/<process>.pid,
#   and the forwarder's logs/coordination-path.log, pids/coordination-path.pid.
# The coordination kubeconfig of r's path: $STATE/coordination/operator-<r>.kubeconfig.

# Region i's ports are a base + 10i.
PR_PORT_STRIDE=10
PR_ETCD_PORT=23840   # etcd clients; its peers on +1
PR_API_PORT=16460    # kube-apiserver; kube-controller-manager on +1, coordination path on +2

pr_dir() { echo "$STATE/regions/$1"; }
pr_kubeconfig() { echo "$STATE/regions/$1/kubeconfig"; }
pr_path_port() { echo $((PR_API_PORT + 2 + PR_PORT_STRIDE * $(region_index "$1"))); }
pr_coordination_kubeconfig() { echo "$STATE/coordination/operator-$1.kubeconfig"; }

# pr_k8s REGION FUNCTION [ARGS]: runs a k8s.sh function on REGION's own control plane (its
# state dir and ports), in a subshell so that the stack's own K8S_* settings stay untouched.
pr_k8s() {
  local r=$1 off; shift
  off=$((PR_PORT_STRIDE * $(region_index "$r")))
  (
    export TRIBUTARY_STATE_DIR="$STATE/regions/$r"
    export K8S_ETCD_PORT=$((PR_ETCD_PORT + off)) K8S_ETCD_PEER_PORT=$((PR_ETCD_PORT + 1 + off))
    export K8S_API_PORT=$((PR_API_PORT + off)) K8S_KCM_PORT=$((PR_API_PORT + 1 + off))
    _k8s_vars
    "$@"
  )
}

# pr_k8s_down_all: stops every per-region control plane found in the state dir, also of
# regions no longer listed (what runs is stopped, whatever the recorded regions say).
pr_k8s_down_all() {
  local d
  for d in "$STATE"/regions/*/; do
    [[ -d "$d/pids" ]] || continue
    (export TRIBUTARY_STATE_DIR="${d%/}"; _k8s_vars; k8s_down) || true
  done
}

# _pr_k8s_kill (under pr_k8s): SIGKILL to the control plane's processes, as a region's loss
# would end them (etcd's data survives: a killed process loses nothing the kernel has).
_pr_k8s_kill() {
  local name pid
  for name in "${K8S_PROCS[@]}"; do
    if pid="$(_k8s_pid "$name")"; then
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    fi
    rm -f "$(_k8s_pidfile "$name")"
  done
}

# pr_crds REGION: the repo's CRDs on REGION's apiserver, applied as the e2e support crate does
# (server-side, field manager tributary-e2e), and Established.
pr_crds() {
  local kc
  kc="$(pr_kubeconfig "$1")"
  "$KUBECTL" --kubeconfig "$kc" apply --server-side --force-conflicts --field-manager=tributary-e2e \
    -f "$REPO_ROOT/crds/" >/dev/null || return 1
  "$KUBECTL" --kubeconfig "$kc" wait --for=condition=Established crd --all --timeout=60s >/dev/null
}

# ---------------------------------------------------------------------------- coordination path

_pr_path_pidfile() { echo "$STATE/regions/$1/pids/coordination-path.pid"; }

# pr_path_pid REGION: the forwarder's pid, if it runs (its command line names its port, which
# guards against pid reuse and against another stack's forwarder).
pr_path_pid() {
  local f pid
  f="$(_pr_path_pidfile "$1")"
  [[ -s "$f" ]] || return 1
  pid="$(cat "$f" 2>/dev/null)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "TCP-LISTEN:$(pr_path_port "$1")," || return 1
  echo "$pid"
}

# pr_path_start REGION: 127.0.0.1:<path port> -> the coordination apiserver, one socat child per
# connection (TLS passes through: the apiserver's certificate has 127.0.0.1 in its SANs), and
# the region's coordination kubeconfig pointing at it.
pr_path_start() {
  local r=$1 port
  command -v socat >/dev/null || die "socat not found (run: bash e2e/prereqs.sh)"
  port="$(pr_path_port "$r")"
  bash "$COORDINATION_SH" path-kubeconfig "$(pr_coordination_kubeconfig "$r")" "https://127.0.0.1:$port" ||
    die "could not write $(pr_coordination_kubeconfig "$r") (is the coordination plane initialised?)"
  pr_path_pid "$r" >/dev/null && return 0
  pr_k8s "$r" _k8s_start coordination-path socat \
    "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork,backlog=128" \
    "TCP:127.0.0.1:${COORDINATION_API_PORT:-16454},nodelay" ||
    die "the coordination path of $r did not start (see $(pr_dir "$r")/logs/coordination-path.log)"
  local deadline=$((SECONDS + 10))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    pr_path_pid "$r" >/dev/null || die "the coordination path of $r exited (see $(pr_dir "$r")/logs/coordination-path.log)"
    ((SECONDS < deadline)) || die "the coordination path of $r does not listen on 127.0.0.1:$port after 10s"
    sleep 0.1
  done
}

# pr_path_stop REGION: SIGKILL to the forwarder and its connections (its process group), as a
# region's loss would end them.
pr_path_stop() {
  local pid
  if pid="$(pr_path_pid "$1")"; then
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  fi
  rm -f "$(_pr_path_pidfile "$1")"
}

# Isolation: one nftables table per region that drops every packet to and from its path's port
# on loopback, both directions, so new connections hang in their handshake and open ones stop
# mid-stream: a partition, not a refusal. The rules belong to the network namespace the stack
# runs in.
_pr_isolation_table() { echo "tributary_isolate_${1//-/_}"; }
pr_isolated() { nft list table inet "$(_pr_isolation_table "$1")" >/dev/null 2>&1; }

pr_isolate() {
  local r=$1 port
  command -v nft >/dev/null || die "nft not found (run: bash e2e/prereqs.sh)"
  port="$(pr_path_port "$r")"
  pr_isolated "$r" && { log "region $r is already isolated from the coordination apiserver"; return 0; }
  nft -f - <<EOF || die "nft refused the isolation rules for $r (is nf_tables available in this network namespace?)"
table inet $(_pr_isolation_table "$r") {
  chain input {
    type filter hook input priority -10; policy accept;
    iifname "lo" tcp dport $port drop
    iifname "lo" tcp sport $port drop
  }
}
EOF
  log "region $r isolated: packets to and from its coordination path 127.0.0.1:$port are dropped"
}

pr_heal() {
  local r=$1
  if pr_isolated "$r"; then
    nft delete table inet "$(_pr_isolation_table "$r")" || die "could not delete nft table $(_pr_isolation_table "$r")"
    log "region $r healed: its coordination path 127.0.0.1:$(pr_path_port "$r") passes again"
  else
    log "region $r is not isolated"
  fi
}

# pr_heal_all: removes every isolation table of this stack's kind (stack-down).
pr_heal_all() {
  command -v nft >/dev/null || return 0
  local t
  for t in $(nft list tables inet 2>/dev/null | awk '$3 ~ /^tributary_isolate_/ { print $3 }'); do
    nft delete table inet "$t" || true
  done
}

pr_path_status() {
  local r=$1 pid state
  if pid="$(pr_path_pid "$r")"; then
    state="running pid=$pid"
  else
    state=stopped
  fi
  pr_isolated "$r" && state="$state ISOLATED (make region-heal REGION=$r)"
  printf '%-24s %s (127.0.0.1:%s -> coordination apiserver)\n' "coordination-path-$r" "$state" "$(pr_path_port "$r")"
  [[ "$state" == running* ]]
}

# pr_path_stop_all: every forwarder with a pid file in this state dir (stack-down).
pr_path_stop_all() {
  local f pid
  for f in "$STATE"/regions/*/pids/coordination-path.pid; do
    [[ -s "$f" ]] || continue
    pid="$(cat "$f" 2>/dev/null)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q '^socat TCP-LISTEN:'; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

# ---------------------------------------------------------------------------- commands

# pr_up REGIONS: everything of the topology. The control planes, the Kafka clusters and the
# coordination plane start side by side; then each region gets its CRDs, its coordination
# path and its node agent.
pr_up() {
  local want=$1 r i k jobs=() what=()
  i=0
  for r in $(regions); do
    mkdir -p "$(pr_dir "$r")"
    pr_k8s "$r" k8s_up & jobs+=($!); what+=("the control plane of $r (see $(pr_dir "$r")/logs/)")
    kafka_up "$r-regional" "$(kafka_port "$i" regional)" & jobs+=($!); what+=("Kafka $r-regional (see $STATE/logs/)")
    kafka_up "$r-aggregate" "$(kafka_port "$i" aggregate)" & jobs+=($!); what+=("Kafka $r-aggregate (see $STATE/logs/)")
    i=$((i + 1))
  done
  kafka_secure_up secure "$SECURE_KAFKA_PORT" & jobs+=($!); what+=("Kafka secure (see $STATE/logs/)")
  # Member i of the plane is in region i (coordination.sh keeps the order; witness last).
  coordination up "$want" & jobs+=($!); what+=("the coordination plane (see $STATE/coordination/logs/)")
  for k in "${!jobs[@]}"; do wait "${jobs[$k]}" || die "${what[$k]} did not start"; done
  for r in $(regions); do
    pr_crds "$r" || die "the CRDs of crds/ did not become Established on $r's apiserver (see $(pr_dir "$r")/logs/kube-apiserver.log)"
    pr_path_start "$r"
    agent_start "$r"
  done
}

pr_status() {
  local r rc=0
  for r in $(regions); do
    echo "== region $r (kubeconfig $(pr_kubeconfig "$r"))"
    pr_k8s "$r" k8s_status || rc=1
    if agent_running "$r"; then echo "agent-$r running pid=$(cat "$(agent_pidfile "$r")")"; else echo "agent-$r stopped"; rc=1; fi
    kafka_status "$r-regional" || rc=1
    kafka_status "$r-aggregate" || rc=1
    pr_path_status "$r" || rc=1
  done
  echo "== shared"
  kafka_status secure || rc=1
  coordination status || rc=1
  return $rc
}

# The node agent goes first, while the region's apiserver still answers: it kills its pods
# and marks its Node NotReady there (what the region's own cluster shows once it is back).
# Everything else is SIGKILLed.
pr_region_down() {
  local r=$1
  agent_stop "$r"
  pr_path_stop "$r"
  kafka_kill "$r-regional" || true
  kafka_kill "$r-aggregate" || true
  coordination member-down "$r" || true
  pr_k8s "$r" _pr_k8s_kill
  log "region $r down: its control plane, node agent and pods, Kafka clusters, coordination etcd member and path"
}

pr_region_up() {
  local r=$1 a b c
  pr_k8s "$r" k8s_up & a=$!
  kafka_start "$r-regional" & b=$!
  kafka_start "$r-aggregate" & c=$!
  wait "$a" || die "the control plane of $r did not restart (see $(pr_dir "$r")/logs/)"
  wait "$b" && wait "$c" || die "Kafka of region $r did not restart (see $STATE/logs/)"
  coordination member-up "$r" || die "the coordination etcd member of $r did not restart (see $STATE/coordination/logs/etcd-$r.log)"
  pr_path_start "$r"
  agent_start "$r"
  log "region $r up"
}
