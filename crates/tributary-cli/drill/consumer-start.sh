#!/usr/bin/env bash
# Where the seconds between "consumers scaled up" and "first record consumed" go: starts
# MEMBERS VerifiableConsumers at once (the JVM options the node agent gives the drill's
# consumer pods) on a fresh group of a topic that holds records, and prints per run the time
# from the launch to the JVM's startup_complete, to the first partitions_assigned and to the
# first record_data, for both group protocols (classic, consumer = KIP-848).
#   bash crates/tributary-cli/drill/consumer-start.sh [RUNS] [MEMBERS]   (the stack's env sourced)
set -euo pipefail
RUNS="${1:-3}"
MEMBERS="${2:-2}"
: "${TRIBUTARY_KAFKA_EAST_AGGREGATE:?source e2e/.state/env first}"
BOOT="$TRIBUTARY_KAFKA_EAST_AGGREGATE"
LIB="${TRIBUTARY_DRILL_KAFKA_CLASSPATH:-$HOME/.cache/tributary/kafka-4.2.0/lib/*}"
JVM=(-Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -XX:+PerfDisableSharedMem
  -Djava.awt.headless=true -Xlog:disable -Xlog:all=warning:stderr)
LOG4J="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/e2e/kafka/log4j2-tools.properties"
TOPIC="consumer-start-$$"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
java -cp "$LIB" "${JVM[@]}" org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOT" \
  --create --topic "$TOPIC" --partitions 4 --replication-factor 1 >/dev/null 2>&1
java -cp "$LIB" "${JVM[@]}" -Dlog4j2.configurationFile="$LOG4J" org.apache.kafka.tools.VerifiableProducer \
  --bootstrap-server "$BOOT" --topic "$TOPIC" --max-messages 400 --acks -1 >/dev/null 2>&1
now_ms() { date +%s%3N; }
first() { { grep -m1 "\"name\":\"$2\"" "$1" || true; } | sed -n 's/.*"timestamp":\([0-9]*\).*/\1/p'; }
printf '%-9s %-4s %-8s %-10s %-10s %-10s\n' protocol run member startup_s assigned_s first_rec_s
for protocol in classic consumer; do
  for run in $(seq 1 "$RUNS"); do
    group="cs-$protocol-$run-$$"
    start="$(now_ms)"
    pids=()
    for m in $(seq 1 "$MEMBERS"); do
      java -cp "$LIB" "${JVM[@]}" -Dlog4j2.configurationFile="$LOG4J" org.apache.kafka.tools.VerifiableConsumer \
        --bootstrap-server "$BOOT" --topic "$TOPIC" --group-id "$group" --group-protocol "$protocol" \
        --reset-policy earliest --verbose --max-messages 400 >"$WORK/$group-$m.log" 2>/dev/null &
      pids+=($!)
    done
    sleep 20
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    for m in $(seq 1 "$MEMBERS"); do
      f="$WORK/$group-$m.log"
      s="$(first "$f" startup_complete)"; a="$(first "$f" partitions_assigned)"; r="$(first "$f" record_data)"
      secs() { [[ -n "$1" ]] && awk -v a="$1" -v b="$start" 'BEGIN{printf "%.2f", (a-b)/1000}' || echo -; }
      printf '%-9s %-4s %-8s %-10s %-10s %-10s\n' "$protocol" "$run" "$m" "$(secs "$s")" "$(secs "$a")" "$(secs "$r")"
    done
  done
done
