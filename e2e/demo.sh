#!/usr/bin/env bash
# `make demo`: Tributary running on the local stack. Three regions (east, west, central), the
# operator installed by its Helm chart, the example setup applied; records produced in every
# region show up in every region's aggregate cluster; then the billing group fails over by
# itself when east is killed and fails back by one edit of spec.activeRegion. The stack stays
# up afterwards to explore.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
STATE="${TRIBUTARY_STATE_DIR:-$REPO/e2e/.state}"
NS=tributary-demo
RECORDS=${DEMO_RECORDS:-5000}

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# shellcheck disable=SC1091
source "$STATE/env"
# shellcheck source=e2e/stack/kafka.sh
source e2e/stack/kafka.sh
K() { "$TRIBUTARY_KUBECTL" "$@"; }

say "Installing the operator with its Helm chart (two replicas, one leader; image local/tributary runs as a local process)"
"$TRIBUTARY_HELM" upgrade --install tributary charts/tributary --namespace tributary-system --create-namespace \
  --set image.repository=local/tributary --set image.tag=dev --set replicaCount=2 --set logFormat=text \
  --wait --timeout 180s >/dev/null
K -n tributary-system get deployment tributary

say "Applying examples/three-regions into namespace $NS"
# A namespace still terminating from an earlier `make demo-clean` would swallow the objects
# ("unchanged") and then vanish with them: wait until it is gone.
if [[ "$(K get namespace "$NS" -o jsonpath='{.status.phase}' 2>/dev/null)" == Terminating ]]; then
  say "Waiting for the previous demo's namespace $NS to finish terminating"
  K wait --for=delete "namespace/$NS" --timeout=180s >/dev/null
fi
K create namespace "$NS" --dry-run=client -o yaml | K apply -f - >/dev/null
K -n "$NS" apply -f examples/three-regions/

say "Waiting for every AggregateCluster to have its 3 routes Ready"
for agg in east west central; do
  K -n "$NS" wait "aggregatecluster/$agg" --for=condition=Ready --timeout=300s >/dev/null
done
K -n "$NS" get tributary
K -n "$NS" get deployments -l app.kubernetes.io/component=replicator

say "Producing $RECORDS records to 'orders' in each region's regional cluster"
for r in east west central; do
  bs_var="TRIBUTARY_KAFKA_${r^^}_REGIONAL"
  kafka_producer_perf --topic orders --num-records "$RECORDS" --record-size 200 --throughput -1 \
    --producer-props "bootstrap.servers=${!bs_var}" acks=all linger.ms=5 2>/dev/null | tail -n 1
done

say "Every aggregate cluster receives every region's records (expect $((3 * RECORDS)) in 'orders')"
total() {
  kafka_tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$1" --topic orders 2>/dev/null |
    awk -F: '{s += $3} END {print s + 0}'
}
deadline=$((SECONDS + 180))
for r in east west central; do
  bs_var="TRIBUTARY_KAFKA_${r^^}_AGGREGATE"
  until n=$(total "${!bs_var}") && ((n >= 3 * RECORDS)); do
    ((SECONDS < deadline)) || { echo "aggregate $r has $n of $((3 * RECORDS)) records" >&2; exit 1; }
    sleep 2
  done
  echo "aggregate $r (${!bs_var}): $n records in orders"
done

say "Status after the copy (lag should be 0)"
sleep 5
K -n "$NS" get aggregateclusters -o wide

cgf() { K -n "$NS" get consumergroupfailover billing -o "jsonpath={$1}"; }
wait_cgf() { # REGION EPOCH: until billing is active there at that epoch
  local deadline=$((SECONDS + 240))
  until [[ "$(cgf .status.activeRegion)/$(cgf .status.epoch)" == "$1/$2" ]]; do
    ((SECONDS < deadline)) || { echo "billing not active in $1 at epoch $2" >&2; K -n "$NS" get cgf billing -o yaml >&2; exit 1; }
    sleep 1
  done
}

say "The billing group (ActivePassive): active in east, consumers only there, standbys kept warm"
wait_cgf east 1
K -n "$NS" get consumergroupfailovers
K -n "$NS" get deployments -l app=billing
K -n "$NS" get jobs
K -n "$NS" get configmap billing-active -o jsonpath='{.data}'; echo

say "Killing region east (make region-down REGION=east): the group moves by itself"
started=$SECONDS
bash e2e/stack/stack.sh region-down east >/dev/null
wait_cgf west 2
echo "billing active in $(cgf .status.activeRegion) at epoch $(cgf .status.epoch) after $((SECONDS - started))s (lastFailover: $(cgf .status.lastFailover.reason), rtoSeconds $(cgf .status.lastFailover.rtoSeconds))"
K -n "$NS" get deployments -l app=billing
K -n "$NS" get events --field-selector involvedObject.name=billing --sort-by=.metadata.creationTimestamp 2>/dev/null | tail -n 6 || true

say "Bringing east back: it becomes a standby (its sync Job follows west), no second move"
bash e2e/stack/stack.sh region-up east >/dev/null
deadline=$((SECONDS + 240))
until [[ "$(K -n "$NS" get consumergroupfailover billing -o jsonpath='{.status.regions[?(@.region=="east")].role}')" == Standby ]]; do
  ((SECONDS < deadline)) || { echo "east not a standby again" >&2; exit 1; }
  sleep 2
done
K -n "$NS" get consumergroupfailovers

say "Failing back by one edit (GitOps): spec.activeRegion: east — a planned switchover"
started=$SECONDS
K -n "$NS" patch consumergroupfailover billing --type merge -p '{"spec":{"activeRegion":"east"}}' >/dev/null
wait_cgf east 3
echo "billing active in east at epoch 3 after $((SECONDS - started))s (lastFailover: $(cgf .status.lastFailover.reason), $(cgf .status.lastFailover.kind))"
K -n "$NS" get deployments -l app=billing

cat <<EOT

The stack keeps running. Explore it:
  source $STATE/env
  \$TRIBUTARY_KUBECTL -n $NS get tributary
  \$TRIBUTARY_KUBECTL -n $NS describe aggregatecluster west
  \$TRIBUTARY_KUBECTL -n $NS get consumergroupfailover billing -o yaml
  make region-down REGION=east   # then watch: \$TRIBUTARY_KUBECTL -n $NS get aggregateclusters -w
  make region-up REGION=east
  make stack-down
EOT
