#!/usr/bin/env bash
# `make drill`'s setup: the operator installed by its chart (as `make demo` does) and
# examples/three-regions applied into namespace tributary-drill, with one change: the billing
# consumers run VerifiableConsumer with `--verbose` (one `record_data` event per record), the
# events the drill's verdict is made of. FAILOVER=tight sets billing's failover to
# probePeriod 1s, failureThreshold 2, leaseDuration 5s (the issue's RTO goal); default: the
# example's own settings. DRILL_GROUP=fraud-scoring (the example's ActiveActive group, which
# names no workloads) also gets VerifiableConsumer Deployments fraud-scoring-<region> (one
# replica each, --verbose) as its workloadRefs, so that the drill sees every region consume.
# STANDBY=warm (billing): every region keeps its two consumer pods running behind the active
# gate (`standbyReplicas: 2`; the `tributary active-gate` sidecar and the gate agent in the
# VerifiableConsumer's JVM, docs/active-gate.md "Warm standby"); default: scaled from 0.
# CONSUMER_HEARTBEAT_MS=N (billing): the consumers' `heartbeat.interval.ms` (a ConfigMap
# billing-consumer-config passed with --command-config); default: the client's (3000).
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
CONSUMER_CONFIG=/etc/billing-consumer/consumer.properties
for f in examples/three-regions/*.yaml; do
  if [[ "$f" == */consumers.yaml ]]; then
    extra='"--verbose",'
    [[ -z "${CONSUMER_HEARTBEAT_MS:-}" ]] || extra+=" \"--command-config\", \"$CONSUMER_CONFIG\","
    sed "s|\"--reset-policy\", \"earliest\",|\"--reset-policy\", \"earliest\", $extra|" "$f"
  else
    cat "$f"
  fi
  echo "---"
done | K -n "$NS" apply -f - >/dev/null
GROUP="${DRILL_GROUP:-billing}"
if [[ -n "${CONSUMER_HEARTBEAT_MS:-}" ]]; then
  say "billing's consumers: heartbeat.interval.ms=$CONSUMER_HEARTBEAT_MS"
  K -n "$NS" create configmap billing-consumer-config \
    --from-literal=consumer.properties="heartbeat.interval.ms=$CONSUMER_HEARTBEAT_MS" \
    --dry-run=client -o yaml | K -n "$NS" apply -f - >/dev/null
  for r in east west central; do
    K -n "$NS" patch deployment "billing-$r" --type strategic -p '{"spec": {"template": {"spec": {
      "volumes": [{"name": "consumer-config", "configMap": {"name": "billing-consumer-config"}}],
      "containers": [{"name": "consumer", "volumeMounts": [
        {"name": "consumer-config", "mountPath": "'"$(dirname "$CONSUMER_CONFIG")"'", "readOnly": true}]}]}}}}' >/dev/null
  done
fi
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
if [[ "${STANDBY:-cold}" == warm && "$GROUP" == billing ]]; then
  AGENT_JAR="$(bash crates/tributary-active-gate/agent/build.sh)"
  say "warm standby: billing's consumers wait behind the active gate ($AGENT_JAR), standbyReplicas 2"
  K -n "$NS" apply -f examples/active-gate/rbac.yaml >/dev/null
  for r in east west central; do
    # The local stack's pods share the host's network: the gate listens on a free port and
    # the agent reads its file.
    K -n "$NS" patch deployment "billing-$r" --type strategic -p "$(cat <<JSON
{"spec": {"template": {"spec": {
  "serviceAccountName": "billing-consumer",
  "volumes": [{"name": "active", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
              {"name": "gate-agent", "hostPath": {"path": "$(dirname "$AGENT_JAR")", "type": "Directory"}}],
  "containers": [
    {"name": "consumer",
     "env": [{"name": "KAFKA_OPTS", "value": "-javaagent:/opt/tributary/tributary-gate-agent.jar=file=/var/run/tributary/active.json"}],
     "volumeMounts": [{"name": "active", "mountPath": "/var/run/tributary", "readOnly": true},
                      {"name": "gate-agent", "mountPath": "/opt/tributary", "readOnly": true}]},
    {"name": "active-gate", "image": "local/tributary:$TAG",
     "args": ["active-gate", "--configmap=billing-active", "--region=$r", "--port=0", "--file=/var/run/tributary/active.json"],
     "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
     "volumeMounts": [{"name": "active", "mountPath": "/var/run/tributary"}]}]}}}}
JSON
)" >/dev/null
  done
  K -n "$NS" patch consumergroupfailover billing --type json -p '[
    {"op": "add", "path": "/spec/regions/0/workloadRef/standbyReplicas", "value": 2},
    {"op": "add", "path": "/spec/regions/1/workloadRef/standbyReplicas", "value": 2},
    {"op": "add", "path": "/spec/regions/2/workloadRef/standbyReplicas", "value": 2}]' >/dev/null
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
