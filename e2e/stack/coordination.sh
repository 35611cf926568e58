#!/usr/bin/env bash
# The coordination plane of the local stack: a plain kube-apiserver over a three-member etcd
# cluster, one voting member per region, so that the active-region Leases of
# ConsumerGroupFailovers survive the loss of any one region (docs/coordination.md).
#
#   bash e2e/stack/coordination.sh up [REGIONS]     default: the stack's regions, plus
#                                                   `witness` while their count is even
#   bash e2e/stack/coordination.sh down              stop every process (data kept; COORDINATION_WIPE=1 wipes)
#   bash e2e/stack/coordination.sh status            one line per process, then the apiserver's /readyz
#   bash e2e/stack/coordination.sh member-down REGION   SIGKILL the etcd member of REGION
#   bash e2e/stack/coordination.sh member-up REGION     restart it (it rejoins from its data dir;
#                                                       after a break-glass: re-added, empty)
#   bash e2e/stack/coordination.sh break-glass REGION   the quorum is gone for good: REGION's
#                                                       surviving member becomes the whole cluster
#   bash e2e/stack/coordination.sh env               print the env line(s) (also in $DIR/env)
#   bash e2e/stack/coordination.sh bins              print the etcd and kube-apiserver binaries (for tests)
#   bash e2e/stack/coordination.sh path-kubeconfig FILE URL
#                                                    the operator's identity (as operator.kubeconfig)
#                                                    with server URL: a region's own path to the plane
#
# Separate from the stack's own control plane (e2e/stack/k8s.sh): own ports, PKI, data dirs,
# pid files and logs, all under $DIR = ${COORDINATION_STATE_DIR:-$TRIBUTARY_STATE_DIR/coordination}:
#     kubeconfig              admin (O=system:masters), for tests and people
#     operator.kubeconfig     the operator's identity (CN=tributary-operator): leases only
#     env                     export TRIBUTARY_COORDINATION_KUBECONFIG=<operator.kubeconfig>
#     regions                 the members' regions, in member order
#     pki/ etcd-<region>/ logs/ pids/
# Each etcd member is a process of its own, named `coord-<region>` (--name) with its pid in
# pids/etcd-<region>.pid, so that killing a region can kill exactly its member.
#
# Tunables (env): COORDINATION_ETCD_PORT (23811: member i serves clients on +i),
# COORDINATION_ETCD_PEER_PORT (23821: peers on +i), COORDINATION_API_PORT (16454),
# COORDINATION_UP_TIMEOUT (120 s). Everything listens on 127.0.0.1 only.
set -uo pipefail

_COORD_SH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=e2e/stack/k8s.sh
source "$_COORD_SH_DIR/k8s.sh"

_coord_vars() {
  _k8s_vars
  COORD_DIR="${COORDINATION_STATE_DIR:-$K8S_STATE_DIR/coordination}"
  COORD_PKI="$COORD_DIR/pki"
  COORD_ETCD_PORT="${COORDINATION_ETCD_PORT:-23811}"
  COORD_ETCD_PEER_PORT="${COORDINATION_ETCD_PEER_PORT:-23821}"
  COORD_API_PORT="${COORDINATION_API_PORT:-16454}"
  COORD_API_URL="https://127.0.0.1:$COORD_API_PORT"
  COORD_KUBECONFIG="$COORD_DIR/kubeconfig"
  COORD_OPERATOR_KUBECONFIG="$COORD_DIR/operator.kubeconfig"
}
_coord_vars

_coord_log() { echo "coordination: $*" >&2; }

# The members' regions: given, else remembered, else the stack's; a witness region is added
# while the count is even (an even-sized quorum tolerates no more failures than one smaller).
_coord_regions() {
  local want="${1:-}" r n
  if [[ -z "$want" && -s "$COORD_DIR/regions" ]]; then cat "$COORD_DIR/regions"; return 0; fi
  [[ -z "$want" && -f "$K8S_STATE_DIR/regions" ]] && want="$(cat "$K8S_STATE_DIR/regions")"
  want="${want:-east,west}"
  n=$(tr ',' '\n' <<<"$want" | grep -c .)
  ((n % 2 == 0)) && want="$want,witness" && n=$((n + 1))
  ((n >= 3)) || { _coord_log "the coordination plane needs at least 3 members (regions: $want)"; return 1; }
  for r in $(tr ',' ' ' <<<"$want"); do
    [[ "$r" =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]] || { _coord_log "bad region name '$r'"; return 1; }
  done
  echo "$want"
}
_coord_members() { tr ',' ' ' <"$COORD_DIR/regions"; }
_coord_index() {
  local i=0 r
  for r in $(_coord_members); do
    [[ "$r" == "$1" ]] && { echo "$i"; return 0; }
    i=$((i + 1))
  done
  _coord_log "no coordination member in region '$1' (members: $(_coord_members))"; return 1
}
_coord_client_url() { echo "http://127.0.0.1:$((COORD_ETCD_PORT + $1))"; }
_coord_peer_url() { echo "http://127.0.0.1:$((COORD_ETCD_PEER_PORT + $1))"; }
_coord_initial_cluster() {
  local i=0 r out=""
  for r in $(_coord_members); do out+="${out:+,}coord-$r=$(_coord_peer_url "$i")"; i=$((i + 1)); done
  echo "$out"
}
_coord_etcd_servers() {
  local i=0 r out=""
  for r in $(_coord_members); do out+="${out:+,}$(_coord_client_url "$i")"; i=$((i + 1)); done
  echo "$out"
}

# ---------------------------------------------------------------------------- processes

_coord_pidfile() { echo "$COORD_DIR/pids/$1.pid"; }

# _coord_pid <name> <marker>: prints the pid if the process runs and its command line holds
# <marker> (guards against pid reuse and against another stack's process of the same binary).
_coord_pid() {
  local f pid
  f="$(_coord_pidfile "$1")"
  [[ -s "$f" ]] || return 1
  pid="$(cat "$f" 2>/dev/null)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
  echo "$pid"
}
_coord_etcd_pid() { _coord_pid "etcd-$1" "--name=coord-$1 "; }
_coord_api_pid() { _coord_pid kube-apiserver "--secure-port=$COORD_API_PORT "; }

# _coord_start <name> <binary> <args...>: detached (own session), survives the caller.
_coord_start() {
  local name=$1 bin=$2; shift 2
  local log="$COORD_DIR/logs/$name.log" pidf i
  pidf="$(_coord_pidfile "$name")"
  mkdir -p "$COORD_DIR/logs" "$COORD_DIR/pids" || return 1
  rm -f "$pidf"
  echo "=== $(date -u +%FT%TZ) starting $name" >>"$log"
  setsid nohup bash -c 'echo $$ > "$0"; exec "$@"' "$pidf" "$bin" "$@" >>"$log" 2>&1 </dev/null &
  for ((i = 0; i < 50; i++)); do [[ -s "$pidf" ]] && return 0; sleep 0.1; done
  _coord_log "$name did not start"; return 1
}

# _coord_stop <pid> <name>: SIGTERM, SIGKILL after 5 s.
_coord_stop() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  _coord_log "$2 (pid $pid) ignored SIGTERM, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

# _coord_start_member REGION [EXTRA_ETCD_FLAGS...]. $COORD_JOIN (the members' initial-cluster
# string) starts an empty member joining a running cluster (--initial-cluster-state=existing).
_coord_start_member() {
  local r=$1 i data; shift
  _coord_etcd_pid "$r" >/dev/null && return 0
  i="$(_coord_index "$r")" || return 1
  data="$COORD_DIR/etcd-$r"
  mkdir -p "$data" && chmod 700 "$data" || return 1
  # A member with data rejoins from it (the --initial-* flags are then ignored). Heartbeat and
  # election timeouts are raised from 100/1000 ms: two shared cores must not cause elections.
  # The trailing space in "--name=coord-$r " is what _coord_etcd_pid matches on.
  _coord_start "etcd-$r" "$ETCD_BIN" \
    --name="coord-$r" \
    --data-dir="$data" \
    --listen-client-urls="$(_coord_client_url "$i")" \
    --advertise-client-urls="$(_coord_client_url "$i")" \
    --listen-peer-urls="$(_coord_peer_url "$i")" \
    --initial-advertise-peer-urls="$(_coord_peer_url "$i")" \
    --initial-cluster="${COORD_JOIN:-$(_coord_initial_cluster)}" \
    --initial-cluster-token=tributary-coordination \
    --initial-cluster-state="$([[ -n "${COORD_JOIN:-}" ]] && echo existing || echo new)" \
    "$@" \
    --heartbeat-interval=200 \
    --election-timeout=2000 \
    --unsafe-no-fsync=true \
    --quota-backend-bytes=$((256 * 1024 * 1024)) \
    --log-level=warn
}

_coord_member_healthy() {
  local i
  i="$(_coord_index "$1")" || return 1
  curl -fsS --max-time 2 "$(_coord_client_url "$i")/health" | grep -q '"health":"true"'
}

_coord_readyz() {
  curl -fsS --max-time 3 --cacert "$COORD_PKI/ca.crt" --cert "$COORD_PKI/admin.crt" \
    --key "$COORD_PKI/admin.key" "$COORD_API_URL/readyz" 2>/dev/null
}
_coord_ready() { [[ "$(_coord_readyz)" == ok ]]; }
_coord_ready_or_dead() { _coord_api_pid >/dev/null || return 0; _coord_ready; }
# Every member healthy (a member reports healthy only once the cluster has a leader).
_coord_quorum_or_dead() {
  local r
  for r in $(_coord_members); do
    _coord_etcd_pid "$r" >/dev/null || return 0
    _coord_member_healthy "$r" || return 1
  done
}

_coord_start_apiserver() {
  _coord_api_pid >/dev/null && return 0
  local p="$COORD_PKI"
  # Only Leases live here: no controller-manager, no nodes, no pods. --request-timeout: without
  # an etcd quorum a request fails (504 Timeout) in 10 s rather than the default 60 s. The
  # trailing space in "--secure-port=$COORD_API_PORT " is what _coord_api_pid matches on.
  _coord_start kube-apiserver "$K8S_BIN_DIR/kube-apiserver" \
    --secure-port="$COORD_API_PORT" \
    --advertise-address=127.0.0.1 \
    --bind-address=127.0.0.1 \
    --etcd-servers="$(_coord_etcd_servers)" \
    --client-ca-file="$p/ca.crt" \
    --tls-cert-file="$p/apiserver.crt" \
    --tls-private-key-file="$p/apiserver.key" \
    --authorization-mode=RBAC \
    --anonymous-auth=false \
    --service-account-issuer=https://coordination.tributary.invalid \
    --service-account-key-file="$p/sa.pub" \
    --service-account-signing-key-file="$p/sa.key" \
    --service-cluster-ip-range=10.0.1.0/24 \
    --endpoint-reconciler-type=none \
    --enable-priority-and-fairness=false \
    --request-timeout=10s \
    --profiling=false
}

# ---------------------------------------------------------------------------- pki, kubeconfigs

_coord_pki() {
  # k8s.sh's helpers write into $K8S_PKI_DIR: point it at this plane's own PKI.
  local K8S_PKI_DIR="$COORD_PKI" new_ca=0
  mkdir -p "$COORD_PKI" && chmod 700 "$COORD_PKI" || return 1
  if ! _k8s_have_cert ca; then
    _coord_log "generating PKI in $COORD_PKI"
    _k8s_ca ca tributary-coordination-ca && new_ca=1 || return 1
  fi
  if [[ $new_ca == 1 ]] || ! _k8s_have_cert apiserver; then
    _k8s_cert ca apiserver "/CN=tributary-coordination" "extendedKeyUsage = serverAuth" \
      "subjectAltName = IP:127.0.0.1, DNS:localhost" || return 1
  fi
  if [[ $new_ca == 1 ]] || ! _k8s_have_cert admin; then
    _k8s_cert ca admin "/O=system:masters/CN=admin" "extendedKeyUsage = clientAuth" || return 1
    rm -f "$COORD_KUBECONFIG"
  fi
  if [[ $new_ca == 1 ]] || ! _k8s_have_cert operator; then
    _k8s_cert ca operator "/CN=tributary-operator" "extendedKeyUsage = clientAuth" || return 1
    rm -f "$COORD_OPERATOR_KUBECONFIG"
  fi
  if ! [[ -s "$COORD_PKI/sa.key" && -s "$COORD_PKI/sa.pub" ]]; then
    openssl genrsa -out "$COORD_PKI/sa.key" 2048 2>/dev/null &&
      openssl rsa -in "$COORD_PKI/sa.key" -pubout -out "$COORD_PKI/sa.pub" 2>/dev/null || return 1
  fi
  chmod 600 "$COORD_PKI"/*.key
}

_coord_kubeconfigs() {
  local K8S_PKI_DIR="$COORD_PKI" K8S_API_URL="$COORD_API_URL"
  [[ -s "$COORD_KUBECONFIG" ]] ||
    _k8s_kubeconfig "$COORD_KUBECONFIG" admin "$COORD_PKI/admin.crt" "$COORD_PKI/admin.key" || return 1
  [[ -s "$COORD_OPERATOR_KUBECONFIG" ]] ||
    _k8s_kubeconfig "$COORD_OPERATOR_KUBECONFIG" tributary-operator "$COORD_PKI/operator.crt" "$COORD_PKI/operator.key" || return 1
  # Readable by the operator's non-root pod user when mounted from a Secret (the Secret's
  # mode applies there); here it is a plain file of the state dir.
  chmod 600 "$COORD_KUBECONFIG" "$COORD_OPERATOR_KUBECONFIG"
}

# What the operator's identity may do here: exactly the Lease verbs of docs/operator.md.
_coord_rbac() {
  "$KUBECTL" --kubeconfig "$COORD_KUBECONFIG" apply -f - >/dev/null <<'EOF'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: tributary-coordination}
rules:
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, create, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: tributary-coordination}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tributary-coordination}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: tributary-operator}
EOF
}

# coordination_path_kubeconfig FILE URL: operator.kubeconfig's identity (CN=tributary-operator)
# with another server URL, e.g. a forwarder on 127.0.0.1 (the serving certificate's SANs are
# 127.0.0.1 and localhost, so the URL's host must be one of them).
coordination_path_kubeconfig() {
  _coord_vars
  local file="${1:?FILE}" url="${2:?URL}"
  [[ -s "$COORD_PKI/operator.crt" && -s "$COORD_PKI/operator.key" ]] || { _coord_log "no operator certificate in $COORD_PKI (run: bash e2e/stack/coordination.sh up)"; return 1; }
  local K8S_PKI_DIR="$COORD_PKI" K8S_API_URL="$url"
  _k8s_kubeconfig "$file" tributary-operator "$COORD_PKI/operator.crt" "$COORD_PKI/operator.key"
}

_coord_write_env() {
  printf "export TRIBUTARY_COORDINATION_KUBECONFIG='%s'\n" "$COORD_OPERATOR_KUBECONFIG" >"$COORD_DIR/env.tmp" &&
    mv -f "$COORD_DIR/env.tmp" "$COORD_DIR/env"
}

# ---------------------------------------------------------------------------- commands

coordination_up() {
  _coord_vars
  local t0=$SECONDS timeout=${COORDINATION_UP_TIMEOUT:-120} regions r
  k8s_build || return 1
  mkdir -p "$COORD_DIR" || return 1
  regions="$(_coord_regions "${1:-}")" || return 1
  if [[ -s "$COORD_DIR/regions" && "$(cat "$COORD_DIR/regions")" != "$regions" ]]; then
    _coord_log "members change from $(cat "$COORD_DIR/regions") to $regions: wiping the old plane"
    coordination_down
    rm -rf "$COORD_DIR"/etcd-* "$COORD_KUBECONFIG" "$COORD_OPERATOR_KUBECONFIG"
  fi
  echo "$regions" >"$COORD_DIR/regions"
  _coord_pki && _coord_kubeconfigs || return 1
  for r in $(_coord_members); do
    [[ -f "$COORD_DIR/removed-$r" ]] || _coord_start_member "$r" || return 1
  done
  _k8s_wait "$timeout" "a coordination etcd quorum ($(_coord_etcd_servers))" _coord_quorum_or_dead || { coordination_status >&2; return 1; }
  # Members removed by a break-glass come back re-added, once the others have a quorum.
  for r in $(_coord_members); do
    [[ -f "$COORD_DIR/removed-$r" ]] || continue
    _coord_rejoin "$r" || return 1
    _k8s_wait "$timeout" "etcd member $r healthy" _coord_member_healthy "$r" || return 1
  done
  for r in $(_coord_members); do
    _coord_etcd_pid "$r" >/dev/null || { _coord_log "etcd member $r exited:"; tail -n 20 "$COORD_DIR/logs/etcd-$r.log" >&2; return 1; }
  done
  _coord_start_apiserver || return 1
  _k8s_wait "$timeout" "coordination kube-apiserver /readyz at $COORD_API_URL" _coord_ready_or_dead || { coordination_status >&2; return 1; }
  _coord_api_pid >/dev/null || { _coord_log "kube-apiserver exited:"; tail -n 20 "$COORD_DIR/logs/kube-apiserver.log" >&2; return 1; }
  _coord_rbac || return 1
  _coord_write_env || return 1
  _coord_log "up in $((SECONDS - t0))s: $COORD_API_URL over etcd members $(_coord_members | tr ' ' ','); kubeconfig $COORD_KUBECONFIG"
}

coordination_down() {
  _coord_vars
  local pid r
  if pid="$(_coord_api_pid)"; then _coord_stop "$pid" kube-apiserver; fi
  rm -f "$(_coord_pidfile kube-apiserver)"
  if [[ -s "$COORD_DIR/regions" ]]; then
    for r in $(_coord_members); do
      if pid="$(_coord_etcd_pid "$r")"; then _coord_stop "$pid" "etcd-$r"; fi
      rm -f "$(_coord_pidfile "etcd-$r")"
    done
  fi
  rm -f "$COORD_DIR/env"
  [[ "${COORDINATION_WIPE:-0}" == 1 ]] && rm -rf "$COORD_DIR"
  return 0
}

# Returns 0 only when every member and the apiserver run and /readyz says ok.
coordination_status() {
  _coord_vars
  [[ -s "$COORD_DIR/regions" ]] || { echo "coordination: not initialised (bash e2e/stack/coordination.sh up)"; return 1; }
  local r pid rss rc=0 h
  for r in $(_coord_members); do
    if pid="$(_coord_etcd_pid "$r")"; then
      rss="$(awk '/^VmRSS:/ { printf "%d MiB", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null)"
      h=unhealthy; _coord_member_healthy "$r" && h=healthy
      printf '%-24s running pid=%s rss=%s %s (%s)\n' "coord-etcd-$r" "$pid" "$rss" "$h" "$(_coord_client_url "$(_coord_index "$r")")"
    else
      printf '%-24s stopped\n' "coord-etcd-$r"; rc=1
    fi
  done
  if pid="$(_coord_api_pid)"; then
    rss="$(awk '/^VmRSS:/ { printf "%d MiB", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null)"
    printf '%-24s running pid=%s rss=%s\n' "coord-kube-apiserver" "$pid" "$rss"
  else
    printf '%-24s stopped\n' "coord-kube-apiserver"; rc=1
  fi
  h="$(_coord_readyz)" || true; [[ "$h" == ok ]] || { h="not ready${h:+ ($h)}"; rc=1; }
  printf '%-24s %s (%s)\n' "coord-apiserver-readyz" "$h" "$COORD_API_URL"
  return $rc
}

# member-down: SIGKILL, as a region's loss would (no graceful leave: the member stays in the
# cluster's configuration and the others keep the quorum without it).
coordination_member_down() {
  _coord_vars
  local r="${1:?REGION}" pid
  [[ -s "$COORD_DIR/regions" ]] || { _coord_log "not initialised"; return 1; }
  _coord_index "$r" >/dev/null || return 1
  if pid="$(_coord_etcd_pid "$r")"; then
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  fi
  rm -f "$(_coord_pidfile "etcd-$r")"
  _coord_log "etcd member of $r down"
}

coordination_member_up() {
  _coord_vars
  local r="${1:?REGION}"
  [[ -s "$COORD_DIR/regions" ]] || { _coord_log "not initialised"; return 1; }
  if [[ -f "$COORD_DIR/removed-$r" ]]; then
    _coord_rejoin "$r" || return 1
  else
    _coord_start_member "$r" || return 1
  fi
  _k8s_wait "${COORDINATION_UP_TIMEOUT:-120}" "etcd member $r healthy" _coord_member_healthy "$r" || return 1
  _coord_log "etcd member of $r up"
}

# The members not removed by a break-glass, as etcd's initial-cluster string.
_coord_current_cluster() {
  local i=0 r out=""
  for r in $(_coord_members); do
    [[ -f "$COORD_DIR/removed-$r" ]] || out+="${out:+,}coord-$r=$(_coord_peer_url "$i")"
    i=$((i + 1))
  done
  echo "$out"
}

# _coord_rejoin REGION: a member removed by a break-glass comes back as a new member: a running
# member adds its peer URL (etcd's member-add, through the v3 JSON gateway), and it starts with
# an empty data dir, joining the cluster as it is now (its old data belongs to the old cluster).
_coord_rejoin() {
  local r=$1 i live="" m out
  i="$(_coord_index "$r")" || return 1
  for m in $(_coord_members); do
    [[ -f "$COORD_DIR/removed-$m" ]] && continue
    _coord_member_healthy "$m" && { live=$m; break; }
  done
  [[ -n "$live" ]] || { _coord_log "no healthy member to re-add $r to"; return 1; }
  # etcd refuses a member-add for a few seconds after a member started ("unhealthy cluster").
  local deadline=$((SECONDS + 60))
  until out="$(curl -sS --max-time 10 -X POST "$(_coord_client_url "$(_coord_index "$live")")/v3/cluster/member/add" \
    -d "{\"peerURLs\":[\"$(_coord_peer_url "$i")\"]}" 2>&1)" && [[ "$out" == *'"member"'* ]]; do
    ((SECONDS < deadline)) || { _coord_log "member-add of $r via $live failed: $out"; return 1; }
    sleep 1
  done
  rm -rf "$COORD_DIR/etcd-$r"
  rm -f "$COORD_DIR/removed-$r"
  COORD_JOIN="$(_coord_current_cluster)" _coord_start_member "$r" || return 1
  _coord_log "etcd member of $r re-added (via $live) with an empty data dir"
}

# break-glass REGION: a majority of the members is gone for good and REGION's member survives:
# it becomes a one-member cluster from its own data (etcd --force-new-cluster), so that the
# Lease can be read and moved again; every other member is removed and comes back through
# `member-up` (re-added, empty). Refused while another member runs: that is no lost quorum,
# and forcing one member out of a live cluster would split it in two.
coordination_break_glass() {
  _coord_vars
  local r="${1:?REGION}" m pid
  [[ -s "$COORD_DIR/regions" ]] || { _coord_log "not initialised"; return 1; }
  _coord_index "$r" >/dev/null || return 1
  pid="$(_coord_etcd_pid "$r")" || { _coord_log "the member of $r does not run: nothing to recover from"; return 1; }
  for m in $(_coord_members); do
    [[ "$m" == "$r" ]] && continue
    _coord_etcd_pid "$m" >/dev/null && { _coord_log "the member of $m runs: break-glass is for a quorum that is gone (stop it, or let it rejoin)"; return 1; }
  done
  _coord_stop "$pid" "etcd-$r"
  _coord_start_member "$r" --force-new-cluster || return 1
  _k8s_wait "${COORDINATION_UP_TIMEOUT:-120}" "etcd member $r healthy on its own" _coord_member_healthy "$r" || return 1
  # Restarted without the flag, which would otherwise drop re-added members at every start.
  pid="$(_coord_etcd_pid "$r")" && _coord_stop "$pid" "etcd-$r"
  for m in $(_coord_members); do [[ "$m" == "$r" ]] || touch "$COORD_DIR/removed-$m"; done
  _coord_start_member "$r" || return 1
  _k8s_wait "${COORDINATION_UP_TIMEOUT:-120}" "etcd member $r healthy" _coord_member_healthy "$r" || return 1
  _coord_log "break-glass: the member of $r is the whole cluster now; the others rejoin with member-up"
}

coordination_env() {
  _coord_vars
  [[ -s "$COORD_DIR/env" ]] || { _coord_log "not up (no $COORD_DIR/env)"; return 1; }
  cat "$COORD_DIR/env"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  case "${1:-}" in
    up) shift; coordination_up "$@" ;;
    down) coordination_down ;;
    status) coordination_status ;;
    member-down) shift; coordination_member_down "$@" ;;
    member-up) shift; coordination_member_up "$@" ;;
    break-glass) shift; coordination_break_glass "$@" ;;
    env) coordination_env ;;
    bins) printf '%s\n' "$ETCD_BIN" "$K8S_BIN_DIR/kube-apiserver" ;;
    path-kubeconfig) shift; coordination_path_kubeconfig "$@" ;;
    *) sed -n '2,19p' "$0" >&2; exit 2 ;;
  esac
fi
