#!/usr/bin/env bash
# Smoke test of e2e/stack/kafka.sh: 2 regions x (regional, aggregate) clusters,
# topic create + produce + consume on each, SIGKILL/restart keeps data, RSS report.
# Uses its own state dir (default: a temp dir) and stops everything at the end.
#   bash e2e/kafka/smoke.sh            REGIONS="east west" RECORDS=200000
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../stack/kafka.sh
source "$here/../stack/kafka.sh"

export TRIBUTARY_STATE_DIR="${TRIBUTARY_STATE_DIR:-$(mktemp -d /tmp/tributary-kafka-smoke.XXXXXX)}"
REGIONS=(${REGIONS:-east west})
RECORDS="${RECORDS:-200000}"
names=()
fail() { echo "SMOKE FAIL: $*" >&2; kafka_down_all; exit 1; }
trap 'kafka_down_all' INT TERM

t=$SECONDS; kafka_fetch || fail fetch; echo "fetch: $((SECONDS - t))s"

i=0
for r in "${REGIONS[@]}"; do
  for role in regional aggregate; do
    n="$r-$role"; p="$(kafka_port "$i" "$role")"; names+=("$n")
    t0=$(date +%s.%N)
    kafka_up "$n" "$p" || fail "kafka_up $n"
    echo "start $n (cold, incl. format): $(echo "$(date +%s.%N) - $t0" | bc)s"
  done
  i=$((i + 1))
done

for n in "${names[@]}"; do
  bs="$(kafka_bootstrap "$n")"
  kafka_topics --bootstrap-server "$bs" --create --topic smoke --partitions 3 --replication-factor 1 >/dev/null || fail "create topic on $n"
  kafka_producer_perf --topic smoke --num-records "$RECORDS" --record-size 200 --throughput -1 \
    --producer-props bootstrap.servers="$bs" acks=all linger.ms=5 | tail -1 || fail "produce $n"
  kafka_consumer_perf --bootstrap-server "$bs" --topic smoke --messages "$RECORDS" --group smoke-g \
    --timeout 60000 | tail -1 || fail "consume $n"
done

rss_total=0 pss_total=0
for n in "${names[@]}"; do
  pid="$(_kafka_pid "$n")" || fail "$n not running"
  rss=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
  pss=$(awk '/^Pss:/{print $2}' "/proc/$pid/smaps_rollup")
  rss_total=$((rss_total + rss)); pss_total=$((pss_total + pss))
  echo "memory $n: rss $((rss / 1024)) MiB, pss $((pss / 1024)) MiB"
done
echo "memory total (${#names[@]} brokers): rss $((rss_total / 1024)) MiB, pss $((pss_total / 1024)) MiB"

# failure: SIGKILL then restart; data and committed offsets must survive
victim="${names[0]}"; bs="$(kafka_bootstrap "$victim")"
kafka_kill "$victim"
kafka_status "$victim" && fail "$victim still running after kill"
t0=$(date +%s.%N)
kafka_start "$victim" || fail "restart $victim"
echo "start $victim (warm, after SIGKILL): $(echo "$(date +%s.%N) - $t0" | bc)s"
end="$(kafka_tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$bs" --topic smoke |
  awk -F: '{s += $3} END {print s}')"
[[ "$end" == "$RECORDS" ]] || fail "after restart $victim has $end records, want $RECORDS"
echo "after SIGKILL+restart: $end records in smoke"
kafka_groups --bootstrap-server "$bs" --describe --group smoke-g | grep -q smoke || fail "group offsets lost"
kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$bs" --topic smoke \
  --from-beginning --max-messages 5 --timeout-ms 20000 >/dev/null || fail "re-read after restart"

kafka_stop "$victim"; t0=$(date +%s.%N)
kafka_start "$victim" || fail "restart after clean stop"
echo "start $victim (warm, after clean stop): $(echo "$(date +%s.%N) - $t0" | bc)s"

kafka_down_all
for n in "${names[@]}"; do kafka_status "$n" >/dev/null && fail "$n still running"; done
echo "SMOKE OK (state: $TRIBUTARY_STATE_DIR)"
