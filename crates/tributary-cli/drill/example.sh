#!/usr/bin/env bash
# `make drill`'s setup: the operator installed by its chart (as `make demo` does) and
# examples/three-regions applied into namespace tributary-drill, with one change: the billing
# consumers run VerifiableConsumer with `--verbose` (one `record_data` event per record), the
# events the drill's verdict is made of. FAILOVER=tight sets billing's failover to
# probePeriod 1s, failureThreshold 2, leaseDuration 5s (the issue's RTO goal); default: the
# example's own settings. DRILL_GROUP=fraud-scoring (the example's ActiveActive group, which
# names no workloads) also gets VerifiableConsumer Deployments fraud-scoring-<region> (one
# replica each, --verbose) as its workloadRefs, so that the drill sees every region consume.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$REPO"
STATE="${TRIBUTARY_STATE_DIR:-$REPO/e2e/.state}"
NS="${DRILL_NAMESPACE:-tributary-drill}"
TAG="${TRIBUTARY_IMAGE_TAG:-dev}"
# shellcheck disable=SC1091
source "$STATE/env"
K() { "$TRIBUTARY_KUBECTL" "$@"; }
say() { printf '==> %s\n' "$*"; }

if K get namespace tributary-demo >/dev/null 2>&1; then
  echo "namespace tributary-demo exists: its billing group is the same Kafka group as the drill's; run 'make demo-clean' first" >&2
  exit 1
fi

say "operator: chart charts/tributary, image local/tributary:$TAG, two replicas"
"$TRIBUTARY_HELM" upgrade --install tributary charts/tributary --namespace tributary-system --create-namespace \
  --set image.repository=local/tributary --set image.tag="$TAG" --set replicaCount=2 --set logFormat=text \
  --set leaderElection.leaseDuration="${LEADER_LEASE:-15s}" --wait --timeout 180s >/dev/null

if [[ "$(K get namespace "$NS" -o jsonpath='{.status.phase}' 2>/dev/null)" == Terminating ]]; then
  K wait --for=delete "namespace/$NS" --timeout=180s >/dev/null
fi
K create namespace "$NS" --dry-run=client -o yaml | K apply -f - >/dev/null
say "examples/three-regions into $NS (billing's consumers with --verbose)"
for f in examples/three-regions/*.yaml; do
  if [[ "$f" == */consumers.yaml ]]; then
    sed 's/"--reset-policy", "earliest",/"--reset-policy", "earliest", "--verbose",/' "$f"
  else
    cat "$f"
  fi
  echo "---"
done | K -n "$NS" apply -f - >/dev/null
GROUP="${DRILL_GROUP:-billing}"
if [[ "$GROUP" == fraud-scoring ]]; then
  say "fraud-scoring (ActiveActive): VerifiableConsumer workloads in every region"
  sed -e 's/billing-\(east\|west\|central\)/fraud-scoring-\1/' -e 's/app: billing/app: fraud-scoring/g' \
    -e 's/"--group-id", "billing"/"--group-id", "fraud-scoring"/' \
    -e 's/"--reset-policy", "earliest",/"--reset-policy", "earliest", "--verbose",/' \
    examples/three-regions/consumers.yaml | K -n "$NS" apply -f - >/dev/null
  K -n "$NS" patch consumergroupfailover fraud-scoring --type merge -p '{"spec":{"regions":[
    {"region":"west","aggregateCluster":"west","workloadRef":{"kind":"Deployment","name":"fraud-scoring-west","replicas":1}},
    {"region":"east","aggregateCluster":"east","workloadRef":{"kind":"Deployment","name":"fraud-scoring-east","replicas":1}},
    {"region":"central","aggregateCluster":"central","workloadRef":{"kind":"Deployment","name":"fraud-scoring-central","replicas":1}}]}}' >/dev/null
fi
if [[ "${FAILOVER:-example}" == tight ]]; then
  K -n "$NS" patch consumergroupfailover "$GROUP" --type merge \
    -p '{"spec":{"failover":{"probePeriod":"1s","failureThreshold":2,"leaseDuration":"5s"}}}' >/dev/null
fi
grep -q -- '"--verbose"' <(K -n "$NS" get deployment billing-east -o jsonpath='{.spec.template.spec.containers[0].args}') ||
  { echo "billing-east does not run VerifiableConsumer --verbose" >&2; exit 1; }

say "waiting for every AggregateCluster Ready and $GROUP active"
for agg in east west central; do
  K -n "$NS" wait "aggregatecluster/$agg" --for=condition=Ready --timeout=300s >/dev/null
done
K -n "$NS" wait "consumergroupfailover/$GROUP" --for=condition=Ready --timeout=300s >/dev/null
K -n "$NS" get consumergroupfailovers
