#!/usr/bin/env bash
# `make drill TOPOLOGY=per-region`'s setup and region commands, on the local stack's per-region
# topology (`make stack-up TOPOLOGY=per-region`): a Kubernetes cluster per region, the
# active-region Lease on the coordination apiserver.
#
#   per-region.sh setup            the same objects into every region's cluster (namespace
#                                  tributary-drill: a RegionalStream, an AggregateCluster and the
#                                  billing consumers per region, and the billing group over the
#                                  stack's regions), an operator per region, until billing is active
#   per-region.sh region-down R    R's operator killed (it dies with its region), then the stack's
#                                  region-down R
#   per-region.sh region-up R      the stack's region-up R, then R's operator started again
#   per-region.sh operators-stop   every region's operator stopped
#   per-region.sh clean            namespace tributary-drill deleted in every region's cluster (while
#                                  the operators still run, for their finalizers), the Lease on the
#                                  coordination apiserver deleted, then the operators stopped: other
#                                  operators of the stack (the e2e's) would act on the objects
#   per-region.sh drill ARGS...    `kubectl-tributary drill ARGS` ($DRILL_BIN) on this topology:
#                                  every region's kubeconfig, the coordination apiserver's (admin,
#                                  direct: the drill's own view is never cut off), and this
#                                  script's region-down/region-up as the region commands
#
# The objects are examples/three-regions' (the same Kafka addresses, topics and consumers),
# written for the stack's regions: billing's consumers run VerifiableConsumer `--verbose`, the
# events the drill's verdict is made of; fraud-scoring is left out (an ActiveActive group is
# drilled on the stretched topology). FAILOVER=tight: probePeriod 1s, failureThreshold 2,
# leaseDuration 6s (the per-region e2e's; the Lease's fence TTL is a third of it); default: the
# example's own settings.
#
# Each region's operator is `tributary operator --region R --coordination-kubeconfig <R's path>`
# run as a process against R's cluster, as e2e_per_region.rs runs it (the stack's pods are local
# processes either way): pid in e2e/.state/drill/operators/R.pid, log in
# e2e/.state/logs/drill-operator-R.log.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$REPO"
STATE="${TRIBUTARY_STATE_DIR:-$REPO/e2e/.state}"
NS="${DRILL_NAMESPACE:-tributary-drill}"
TAG="${TRIBUTARY_IMAGE_TAG:-dev}"
OPS="$STATE/drill/operators"
die() { echo "per-region.sh: $*" >&2; exit 1; }
say() { printf '==> %s\n' "$*"; }
[[ -f "$STATE/env" ]] || die "no $STATE/env: run make stack-up TOPOLOGY=per-region"
# shellcheck disable=SC1091
source "$STATE/env"
[[ "${TRIBUTARY_TOPOLOGY:-}" == per-region ]] ||
  die "the stack in $STATE is not TOPOLOGY=per-region (TRIBUTARY_TOPOLOGY=${TRIBUTARY_TOPOLOGY:-}): run make stack-up TOPOLOGY=per-region"
IFS=, read -r -a REGIONS <<<"$TRIBUTARY_REGIONS"
# region-up restarts the region's node agent: the one built beside the stack's tributary binary
# (stack.sh looks under CARGO_TARGET_DIR, which a drill's shell may not have set).
export NODE_AGENT_BIN="${NODE_AGENT_BIN:-$(dirname "$TRIBUTARY_BIN")/tributary-node-agent}"

upper() { local u="${1^^}"; echo "${u//-/_}"; }
var() { local n="$1"; [[ -n "${!n:-}" ]] || die "$n is not set in $STATE/env"; echo "${!n}"; }
kubeconfig() { var "TRIBUTARY_KUBECONFIG_$(upper "$1")"; }
coordination_kubeconfig() { var "TRIBUTARY_COORDINATION_KUBECONFIG_$(upper "$1")"; }
K() { local r=$1; shift; "$TRIBUTARY_KUBECTL" --kubeconfig "$(kubeconfig "$r")" "$@"; }
index_of() { local i; for i in "${!REGIONS[@]}"; do [[ "${REGIONS[$i]}" == "$1" ]] && { echo "$i"; return; }; done; die "no region $1 in the stack (${REGIONS[*]})"; }

# The operator's pid when it runs (its command line names its region: no stale or foreign pid).
operator_pid() {
  local f="$OPS/$1.pid" pid
  [[ -s "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--region=$1 " || return 1
  echo "$pid"
}

operator_start() {
  local r=$1 i log
  operator_pid "$r" >/dev/null && return 0
  i="$(index_of "$r")"
  mkdir -p "$OPS" "$STATE/logs"
  log="$STATE/logs/drill-operator-$r.log"
  echo "---- $(date -u +%FT%TZ) start" >>"$log"
  KUBECONFIG="$(kubeconfig "$r")" RUST_LOG=info,tributary_operator=debug TRIBUTARY_IMAGE="local/tributary:$TAG" \
    setsid "$TRIBUTARY_BIN" operator --leader-election=false --listen="127.0.0.1:$((18480 + i))" \
    --probe-interval=1s "--region=$r" "--coordination-kubeconfig=$(coordination_kubeconfig "$r")" \
    </dev/null >>"$log" 2>&1 &
  echo $! >"$OPS/$r.pid"
  sleep 0.5
  operator_pid "$r" >/dev/null || die "the operator of $r exited at once (see $log)"
}

# SIGKILL, as the region's loss would end it.
operator_stop() {
  local pid
  if pid="$(operator_pid "$1")"; then
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  fi
  rm -f "$OPS/$1.pid"
}

manifests() {
  local r u regional aggregate
  for r in "${REGIONS[@]}"; do
    u="$(upper "$r")"
    regional="$(var "TRIBUTARY_KAFKA_${u}_REGIONAL")"
    aggregate="$(var "TRIBUTARY_KAFKA_${u}_AGGREGATE")"
    cat <<EOF
---
apiVersion: tributary.dev/v1alpha1
kind: RegionalStream
metadata: {name: $r, labels: {tributary.dev/region: $r}}
spec:
  region: $r
  kafka: {bootstrapServers: ["$regional"]}
  manageTopics: true
  topics:
    - {name: orders, partitions: 4, replicationFactor: 1, config: {retention.ms: "604800000"}}
    - {name: payments, partitions: 2, replicationFactor: 1}
---
apiVersion: tributary.dev/v1alpha1
kind: AggregateCluster
metadata: {name: $r}
spec:
  region: $r
  kafka: {bootstrapServers: ["$aggregate"]}
  topicNaming: Identity
  replicator:
    replicas: 1
    delivery: AtLeastOnce
    batching: {lingerMs: 5, batchBytes: 1048576, compression: Lz4}
    resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 256Mi}}
  checkpoints: {interval: 1s, topic: tributary.checkpoints, retention: 168h}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: billing-$r, labels: {app: billing, region: $r}}
spec:
  replicas: 0
  selector: {matchLabels: {app: billing, region: $r}}
  template:
    metadata: {labels: {app: billing, region: $r}}
    spec:
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions: [{key: topology.kubernetes.io/region, operator: In, values: [$r]}]
      terminationGracePeriodSeconds: 10
      containers:
        - name: consumer
          image: apache/kafka:4.2.0
          command: ["/opt/kafka/bin/kafka-verifiable-consumer.sh"]
          args: ["--bootstrap-server", "$aggregate", "--topic", "orders", "--group-id", "billing",
                 "--reset-policy", "earliest", "--verbose", "--session-timeout", "10000"]
          resources: {requests: {cpu: 50m, memory: 128Mi}, limits: {memory: 384Mi}}
EOF
  done
  # Two regions fail over by themselves only with a witness: the coordination plane's third
  # etcd member, `witness` on the local stack (e2e/stack/coordination.sh).
  local witness=""
  ((${#REGIONS[@]} >= 3)) || witness=", witness: witness"
  local failover="{automatic: true, probePeriod: 5s, failureThreshold: 3, leaseDuration: 15s, maxSyncAge: 30s$witness}"
  [[ "${FAILOVER:-example}" != tight ]] ||
    failover="{automatic: true, probePeriod: 1s, failureThreshold: 2, leaseDuration: 6s, maxSyncAge: 30s$witness}"
  cat <<EOF
---
apiVersion: tributary.dev/v1alpha1
kind: ConsumerGroupFailover
metadata: {name: billing}
spec:
  groupId: billing
  topics: [orders, payments]
  mode: ActivePassive
  regions:
EOF
  for r in "${REGIONS[@]}"; do
    echo "    - {region: $r, aggregateCluster: $r, workloadRef: {kind: Deployment, name: billing-$r, replicas: 2}}"
  done
  cat <<EOF
  failover: $failover
  sync: {interval: 1s}
EOF
}

cmd_setup() {
  local r yaml
  for r in "${REGIONS[@]}"; do operator_stop "$r"; done
  yaml="$(manifests)"
  for r in "${REGIONS[@]}"; do
    if [[ "$(K "$r" get namespace "$NS" -o jsonpath='{.status.phase}' 2>/dev/null)" == Terminating ]]; then
      K "$r" wait --for=delete "namespace/$NS" --timeout=180s >/dev/null
    fi
    K "$r" create namespace "$NS" --dry-run=client -o yaml | K "$r" apply -f - >/dev/null
    say "$r's cluster: the objects of every region into $NS (billing's consumers with --verbose)"
    K "$r" -n "$NS" apply -f - <<<"$yaml" >/dev/null
  done
  say "the coordination apiserver: namespace $NS (the group's Lease is kept there)"
  "$TRIBUTARY_KUBECTL" --kubeconfig "$(var TRIBUTARY_COORDINATION_ADMIN_KUBECONFIG)" create namespace "$NS" \
    --dry-run=client -o yaml | "$TRIBUTARY_KUBECTL" --kubeconfig "$(var TRIBUTARY_COORDINATION_ADMIN_KUBECONFIG)" apply -f - >/dev/null
  for r in "${REGIONS[@]}"; do
    say "$r's operator: tributary operator --region $r (log: $STATE/logs/drill-operator-$r.log)"
    operator_start "$r"
  done
  say "waiting for every region's AggregateCluster Ready (in its own cluster) and billing Ready in every cluster"
  for r in "${REGIONS[@]}"; do
    K "$r" -n "$NS" wait "aggregatecluster/$r" --for=condition=Ready --timeout=300s >/dev/null
  done
  for r in "${REGIONS[@]}"; do
    K "$r" -n "$NS" wait consumergroupfailover/billing --for=condition=Ready --timeout=300s >/dev/null
    printf '%s: ' "$r"
    K "$r" -n "$NS" get consumergroupfailover billing --no-headers
  done
}

case "${1:-}" in
  setup) cmd_setup ;;
  region-down)
    [[ -n "${2:-}" ]] || die "usage: per-region.sh region-down REGION"
    index_of "$2" >/dev/null
    operator_stop "$2"
    bash e2e/stack/stack.sh region-down "$2"
    ;;
  region-up)
    [[ -n "${2:-}" ]] || die "usage: per-region.sh region-up REGION"
    bash e2e/stack/stack.sh region-up "$2"
    operator_start "$2"
    ;;
  operators-stop) for r in "${REGIONS[@]}"; do operator_stop "$r"; done ;;
  clean)
    for r in "${REGIONS[@]}"; do
      K "$r" delete namespace "$NS" --ignore-not-found --wait=false >/dev/null || echo "warning: $r's cluster did not take the delete" >&2
    done
    for r in "${REGIONS[@]}"; do
      K "$r" wait --for=delete "namespace/$NS" --timeout=180s >/dev/null 2>&1 || echo "warning: namespace $NS in $r is not gone after 180s" >&2
    done
    # Only the Lease: the coordination apiserver runs no namespace controller, so a deleted
    # namespace would stay Terminating there and refuse the next setup's Lease.
    "$TRIBUTARY_KUBECTL" --kubeconfig "$(var TRIBUTARY_COORDINATION_ADMIN_KUBECONFIG)" -n "$NS" delete lease billing-active \
      --ignore-not-found >/dev/null || echo "warning: could not delete Lease $NS/billing-active on the coordination apiserver" >&2
    for r in "${REGIONS[@]}"; do operator_stop "$r"; done
    ;;
  drill)
    shift
    kubeconfigs=()
    for r in "${REGIONS[@]}"; do kubeconfigs+=("--region-kubeconfig=$r=$(kubeconfig "$r")"); done
    self="bash crates/tributary-cli/drill/per-region.sh"
    exec "${DRILL_BIN:-kubectl-tributary}" --kubeconfig "$(kubeconfig "${REGIONS[0]}")" -n "$NS" drill \
      "${kubeconfigs[@]}" --coordination-kubeconfig "$(var TRIBUTARY_COORDINATION_ADMIN_KUBECONFIG)" \
      --region-down-cmd "$self region-down {region}" --region-up-cmd "$self region-up {region}" "$@"
    ;;
  *) die "usage: per-region.sh setup | region-down REGION | region-up REGION | operators-stop | clean | drill ARGS..." ;;
esac
