#!/usr/bin/env bash
# `make bench-replicator`: our replicator (at-least-once and exactly-once) vs MirrorMaker 2
# (dedicated mode, tuned; plain and with exactly-once, KIP-618) vs the destination's ingest
# ceiling, on the same two loopback Kafka clusters and the same data: 16 partitions, 1 KiB
# and 100 B records.
#
# Per system and record size: records/s, MB/s and CPU-seconds per GB over the copy window
# (first record landed → last record landed, from the destination's end offsets; process
# CPU from /proc, so start-up is not counted for anyone) — for the copier alone and for the
# copier plus the destination broker (our provenance headers make the broker write more
# bytes) — then p50/p99 replication latency at a fixed rate while caught up (destination
# read time − source timestamp, which every system keeps). For the latency phase MM2 is
# restarted with a latency-tuned consumer (`fetch.min.bytes=1`, the same fetch wait as
# ours; its latency with the volume settings, before the restart, is the row
# `<mm2 run>-volume`), and every system first copies a warm-up (`warm_up`), so no start-up
# is measured.
#
# Fairness: the systems run in the order of BENCH_SYSTEMS at 1 KiB and in the reverse order
# at 100 B. The ceiling is what the destination can ingest: BENCH_CEILING_PRODUCERS (2)
# producer-perf processes at once, measured over the same window as the systems; when a
# system copied faster than that, its rate is the ceiling (the destination showed it can
# ingest it), so a ceiling never sits below a figure it is meant to bound. The ceiling's
# latency row is the floor: the same fixed rate produced straight into the destination.
#
# Ends with one line per delivery mode:
#   replicator-bench: vs_mm2_per_cpu=<x.xx> vs_ceiling=<y.yy> p99_ms=<z> mode=<mode> vs=<mm2 run> ...
# vs_mm2_per_cpu = MM2's CPU-s/GB ÷ ours, copier alone (over both sizes; at-least-once
# against plain MM2, exactly-once against MM2 with exactly-once; `with_broker` the same with
# the destination broker's CPU added); vs_ceiling = our MB/s ÷ the ceiling's MB/s (the
# worse size); p99_ms = the worse size. Exits 1 when a goal is missed:
#   at-least-once (issues 4, 13): vs_ceiling >= 0.8, vs_mm2_per_cpu >= 2.5, p99_ms <= 25
#   exactly-once (issue 13):      vs_ceiling >= 0.8, p99_ms <= 250
#
# Environment: BENCH_RECORDS_1K (default 8000000), BENCH_RECORDS_100B (default 24000000),
# BENCH_LATENCY_SECONDS (10), BENCH_COPY_TIMEOUT (1200 s per copy), BENCH_PORT (39092; uses PORT and PORT+100),
# BENCH_STATE_DIR (default /tmp/tributary-bench; deleted at the end unless BENCH_KEEP=1),
# CARGO_TARGET_DIR (where the release build goes; default <repo>/target),
# BENCH_CEILING_PRODUCERS (2), BENCH_SYSTEMS (default "at-least-once exactly-once mm2
# mm2-eos"; fewer for a quick look: the goals of a mode are checked only when it and its MM2
# run are in the list).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
: "${BENCH_RECORDS_1K:=8000000}"
: "${BENCH_RECORDS_100B:=24000000}"
: "${BENCH_LATENCY_SECONDS:=10}"
: "${BENCH_PORT:=39092}"
: "${BENCH_STATE_DIR:=/tmp/tributary-bench}"
: "${BENCH_SYSTEMS:=at-least-once exactly-once mm2 mm2-eos}"
export TRIBUTARY_STATE_DIR="$BENCH_STATE_DIR"
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms1g -Xmx1g}"
# Copies are only counted, never read back: let the brokers delete them as they go (64 MiB
# per partition) so a run needs disk for the source data only (~12 GB with the defaults).
export KAFKA_EXTRA_PROPS="${KAFKA_EXTRA_PROPS:-log.retention.bytes=67108864
log.segment.bytes=16777216
log.retention.check.interval.ms=5000}"
# shellcheck source=../stack/kafka.sh
source "$REPO/e2e/stack/kafka.sh"

SRC_PORT=$BENCH_PORT
DST_PORT=$((BENCH_PORT + 100))
SRC="127.0.0.1:$SRC_PORT"
DST="127.0.0.1:$DST_PORT"
CLK_TCK="$(getconf CLK_TCK)"
OUT="$BENCH_STATE_DIR/out"
BATCH_PROPS=(acks=all linger.ms=5 batch.size=1048576 compression.type=none enable.idempotence=true)

log() { echo "[bench] $*" >&2; }
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  kafka_stop bench-src >/dev/null 2>&1 || true
  kafka_stop bench-dst >/dev/null 2>&1 || true
  [[ "${BENCH_KEEP:-0}" == 1 ]] || rm -rf "$BENCH_STATE_DIR/kafka"
}
trap cleanup EXIT

log "building (release)"
cargo build -q --release -p tributary-replicator --bin tributary-replicate --example bench_probe
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
BIN="$TARGET/release/tributary-replicate"
PROBE="$TARGET/release/examples/bench_probe"

mkdir -p "$OUT"
rm -f "$OUT"/*.result
kafka_up bench-src "$SRC_PORT"
kafka_up bench-dst "$DST_PORT"

topic() { # BOOTSTRAP NAME [--config K=V]
  kafka_topics --bootstrap-server "$1" --create --if-not-exists --topic "$2" --partitions 16 "${@:3}" >/dev/null
}

perf() { # BOOTSTRAP TOPIC RECORDS SIZE RATE [PRODUCER_PROP...] -> prints the summary line
  kafka_producer_perf --topic "$2" --num-records "$3" --record-size "$4" --throughput "$5" \
    --producer-props bootstrap.servers="$1" "${BATCH_PROPS[@]}" "${@:6}" 2>/dev/null | tail -n 1
}

# Watches DEST_TOPIC until RECORDS are there; records the window and the CPU of PID and of
# the destination broker.
measure_copy() { # NAME SIZE RECORDS DEST_TOPIC PID
  local name=$1 size=$2 records=$3 dest=$4 pid=$5 line
  line="$("$PROBE" ends --bootstrap "$DST" --topic "$dest" --target "$records" --pid "$pid" \
    --broker-pid "$(_kafka_pid bench-dst)" --clk-tck "$CLK_TCK" --timeout "${BENCH_COPY_TIMEOUT:-1200}")"
  log "$name/$size: $line"
  echo "system=$name size=$size records=$records $line" >>"$OUT/copy.result"
}

# The destination's ingest ceiling: BENCH_CEILING_PRODUCERS producer-perf processes at once
# into a fresh topic, over the same window as the systems (the broker's CPU as "copier");
# its latency row is the floor of this machine (no copier).
measure_ceiling() { # SIZE RECORDS
  local size=$1 records=$2 n=${BENCH_CEILING_PRODUCERS:-2} i producers=()
  topic "$DST" "ceiling-$size"
  for i in $(seq 1 "$n"); do
    perf "$DST" "ceiling-$size" "$((records / n))" "$size" -1 >"$OUT/ceiling.$size.$i" &
    producers+=("$!")
  done
  measure_copy ceiling "$size" "$((records / n * n))" "ceiling-$size" "$(_kafka_pid bench-dst)"
  wait "${producers[@]}"
  for i in $(seq 1 "$n"); do log "ceiling producer $i: $(cat "$OUT/ceiling.$size.$i")"; done
  # The latency floor: the same fixed rate produced straight into the destination and read
  # back by the same probe, no copier in between.
  topic "$DST" "floor-$size"
  measure_latency ceiling "$size" "floor-$size" "floor-$size" "$DST"
}

# The system copies a warm-up into the latency topic first, so that it is running, caught up
# and settled when the measured records start: records at a low rate for 10 s, round-robin
# over every partition (a restarted MirrorMaker 2 whose tasks are not all running yet does
# not pass), all copied, then 15 s of quiet.
warm_up() { # SOURCE_TOPIC DEST_TOPIC PID
  local before
  before="$("$PROBE" ends --bootstrap "$DST" --topic "$2" --target 0 --pid "$3" --clk-tck "$CLK_TCK" --timeout 300 |
    sed -n 's/.*records=\([0-9]*\).*/\1/p')"
  perf "$SRC" "$1" 2000 100 200 partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner >/dev/null
  "$PROBE" ends --bootstrap "$DST" --topic "$2" --target "$((before + 2000))" --pid "$3" --clk-tck "$CLK_TCK" --timeout 300 >/dev/null
  sleep 15
}

# Fixed-rate latency while the system is caught up (produced into PRODUCE_BOOTSTRAP, the
# source by default).
measure_latency() { # NAME SIZE SOURCE_TOPIC DEST_TOPIC [PRODUCE_BOOTSTRAP]
  local name=$1 size=$2 src_topic=$3 dest=$4 produce=${5:-$SRC} rate count line
  rate=$(( size >= 1024 ? 10000 : 20000 ))
  count=$(( rate * BENCH_LATENCY_SECONDS ))
  "$PROBE" latency --bootstrap "$DST" --topic "$dest" --count "$count" --timeout 300 >"$OUT/latency.$name.$size" &
  local probe=$!
  for _ in $(seq 1 300); do grep -q ready "$OUT/latency.$name.$size" 2>/dev/null && break; sleep 0.1; done
  sleep 1
  perf "$produce" "$src_topic" "$count" "$size" "$rate" >/dev/null
  wait "$probe"
  line="$(grep p50_ms "$OUT/latency.$name.$size")"
  log "$name/$size latency: $line"
  echo "system=$name size=$size $line" >>"$OUT/latency.result"
}

run_ours() { # MODE SIZE RECORDS
  local mode=$1 size=$2 records=$3 region
  region=$([[ $mode == exactly-once ]] && echo eos || echo alo)
  topic "$SRC" "lat-$region-$size"
  "$BIN" --route "bench-$region-$size" --source-region "$region" --dest-region bench \
    --source-bootstrap "$SRC" --dest-bootstrap "$DST" \
    --topics "bench-$size,lat-$region-$size" --topic-naming prefixed --delivery "$mode" \
    --linger-ms 5 --batch-bytes 1048576 --compression none \
    --listen "127.0.0.1:$((BENCH_PORT + 300))" >"$OUT/replicator-$region-$size.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  measure_copy "$mode" "$size" "$records" "$region.bench-$size" "$pid"
  warm_up "lat-$region-$size" "$region.lat-$region-$size" "$pid"
  measure_latency "$mode" "$size" "lat-$region-$size" "$region.lat-$region-$size"
  kill -TERM "$pid"; wait "$pid" || true
}

# Writes MM2's config for PHASE: `copy` tuned for volume (big batches, linger, big
# fetches, more tasks, per the high-volume guidance), `latency` with a latency-tuned consumer
# (fetch.min.bytes=1 and the fetch wait of ours) and otherwise the same.
mm2_config() { # NAME SIZE ALIAS PHASE FILE
  local name=$1 size=$2 alias=$3 phase=$4 eos_props="" fetch_props
  if [[ $name == mm2-eos ]]; then
    # KIP-618 (dedicated mode since Kafka 3.5): transactional source tasks on the target,
    # a read_committed source consumer; one transaction per 100 ms like ours.
    eos_props="exactly.once.source.support = enabled
dst.exactly.once.source.support = enabled
$alias->dst.exactly.once.support = requested
$alias->dst.transaction.boundary = interval
$alias->dst.transaction.boundary.interval.ms = ${BENCH_MM2_TXN_MS:-100}
$alias.consumer.isolation.level = read_committed"
  fi
  if [[ $phase == copy ]]; then
    fetch_props="$alias.consumer.fetch.min.bytes = 1048576
$alias.consumer.fetch.max.wait.ms = 100
$alias.consumer.max.partition.fetch.bytes = 4194304
$alias.consumer.fetch.max.bytes = 67108864
$alias.consumer.max.poll.records = 5000"
  else
    fetch_props="$alias.consumer.fetch.min.bytes = 1
$alias.consumer.fetch.max.wait.ms = 100"
  fi
  cat >"$5" <<EOF
clusters = $alias, dst
$alias.bootstrap.servers = $SRC
dst.bootstrap.servers = $DST
$alias->dst.enabled = true
dst->$alias.enabled = false
$alias->dst.topics = bench-$size|lat-$name-$size
$eos_props
tasks.max = 4
replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset-syncs.topic.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
config.storage.replication.factor = 1
sync.topic.acls.enabled = false
refresh.topics.interval.seconds = 5
dst.producer.batch.size = 1048576
dst.producer.linger.ms = 5
dst.producer.compression.type = none
dst.producer.acks = all
dst.producer.buffer.memory = 134217728
$fetch_props
EOF
}

MM2_PID=""
start_mm2() { # CONFIG LOG -> MM2_PID (the JVM)
  local cfg=$1 shell_pid
  KAFKA_TOOL_HEAP_OPTS="-Xms1g -Xmx1g" kafka_mm2 "$cfg" >"$2" 2>&1 &
  shell_pid=$!
  PIDS+=("$shell_pid")
  MM2_PID=""
  for _ in $(seq 1 100); do
    MM2_PID="$(pgrep -n -f "connect.mirror.MirrorMaker $cfg" || true)"
    [[ -n "$MM2_PID" ]] && break
    sleep 0.1
  done
  [[ -n "$MM2_PID" ]] || { log "MirrorMaker 2 did not start (see $2)"; return 1; }
  PIDS+=("$MM2_PID")
}

stop_mm2() {
  kill -TERM "$MM2_PID"
  while kill -0 "$MM2_PID" 2>/dev/null; do sleep 0.2; done
}

run_mm2() { # NAME SIZE RECORDS   NAME: mm2 (at-least-once) or mm2-eos (exactly-once, KIP-618)
  local name=$1 size=$2 records=$3 alias
  # Its own source alias per run: the alias prefixes the copies' topics and names MM2's
  # internal topics, so the two runs do not share a destination topic or connector state.
  alias=$([[ $name == mm2-eos ]] && echo srceos || echo src)
  topic "$SRC" "lat-$name-$size"
  mm2_config "$name" "$size" "$alias" copy "$OUT/$name-$size.properties"
  start_mm2 "$OUT/$name-$size.properties" "$OUT/$name-$size.log"
  measure_copy "$name" "$size" "$records" "$alias.bench-$size" "$MM2_PID"
  # Also its latency with the volume settings (no restart): the row `<name>-volume`.
  warm_up "lat-$name-$size" "$alias.lat-$name-$size" "$MM2_PID"
  measure_latency "$name-volume" "$size" "lat-$name-$size" "$alias.lat-$name-$size"
  stop_mm2
  mm2_config "$name" "$size" "$alias" latency "$OUT/$name-$size-latency.properties"
  start_mm2 "$OUT/$name-$size-latency.properties" "$OUT/$name-$size-latency.log"
  warm_up "lat-$name-$size" "$alias.lat-$name-$size" "$MM2_PID"
  measure_latency "$name" "$size" "lat-$name-$size" "$alias.lat-$name-$size"
  stop_mm2
}

order=($BENCH_SYSTEMS)
for spec in "1024:$BENCH_RECORDS_1K" "100:$BENCH_RECORDS_100B"; do
  size=${spec%%:*}; records=${spec##*:}
  log "=== $records records of $size B, 16 partitions; order: ${order[*]} ==="
  topic "$SRC" "bench-$size" --config retention.bytes=-1 --config segment.bytes=1073741824
  log "loading the source: $(perf "$SRC" "bench-$size" "$records" "$size" -1)"
  measure_ceiling "$size" "$records"
  for system in "${order[@]}"; do
    case $system in
      at-least-once|exactly-once) run_ours "$system" "$size" "$records" ;;
      mm2|mm2-eos) run_mm2 "$system" "$size" "$records" ;;
      *) log "unknown system in BENCH_SYSTEMS: $system"; exit 2 ;;
    esac
  done
  # The next size runs them in the reverse order.
  reversed=(); for ((i = ${#order[@]} - 1; i >= 0; i--)); do reversed+=("${order[i]}"); done
  order=("${reversed[@]}")
done

python3 - "$OUT" <<'PY'
import re, sys
out = sys.argv[1]
copy = {}
for line in open(f"{out}/copy.result"):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    size, system = int(kv["size"]), kv["system"]
    records = int(kv["records"])
    gb = records * size / 1e9
    secs = (int(kv["done_ms"]) - int(kv["first_ms"])) / 1000
    broker = float(kv["broker_cpu_done"]) - float(kv["broker_cpu_first"])
    # The ceiling's "copier" is the broker itself: no CPU of its own to compare.
    cpu = None if system == "ceiling" else float(kv["cpu_done"]) - float(kv["cpu_first"])
    copy[(system, size)] = dict(rps=records / secs, mbps=records * size / secs / 2**20,
                                cpu=cpu, broker=broker, gb=gb)
lat = {}
for line in open(f"{out}/latency.result"):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    lat[(kv["system"], int(kv["size"]))] = (int(kv["p50_ms"]), int(kv["p99_ms"]))

print("\n| system | record size | records/s | MB/s | CPU-s per GB | + dst broker | p50 ms | p99 ms |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for (system, size), r in sorted(copy.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
    cpu = f"{r['cpu'] / r['gb']:.2f}" if r["cpu"] is not None else "–"
    both = f"{((r['cpu'] or 0) + r['broker']) / r['gb']:.2f}"
    p50, p99 = lat.get((system, size), ("–", "–"))
    print(f"| {system} | {size} B | {r['rps']:,.0f} | {r['mbps']:.1f} | {cpu} | {both} | {p50} | {p99} |")
for (system, size), (p50, p99) in sorted(lat.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
    if (system, size) not in copy:  # a latency-only row (MM2 with its volume settings)
        print(f"| {system} | {size} B | – | – | – | – | {p50} | {p99} |")
print()
sizes = sorted({s for (_, s) in copy})
# The ceiling bounds every figure: a system that copied faster showed the destination
# ingesting at its rate.
ceiling = {}
for s in sizes:
    best = max((r["mbps"], system) for (system, size), r in copy.items() if size == s)
    ceiling[s] = best[0]
    if best[1] != "ceiling":
        print(f"replicator-bench: at {s} B {best[1]} copied faster ({best[0]:.1f} MB/s) than producer-perf "
              f"({copy[('ceiling', s)]['mbps']:.1f} MB/s): its rate is the ceiling")
# (mode, the MM2 run it is compared with, its goals: min vs_ceiling, min vs_mm2_per_cpu, max p99)
goals = [("at-least-once", "mm2", 0.8, 2.5, 25), ("exactly-once", "mm2-eos", 0.8, None, 250)]
missed = []
ran = {system for (system, _) in copy}
def per_gb(system, with_broker):
    cpu = sum(copy[(system, s)]["cpu"] + (copy[(system, s)]["broker"] if with_broker else 0) for s in sizes)
    return cpu / sum(copy[(system, s)]["gb"] for s in sizes)
for mode, anchor, min_ceiling, min_vs_mm2, max_p99 in goals:
    if mode not in ran:
        continue
    ratios = {s: copy[(mode, s)]["mbps"] / ceiling[s] for s in sizes}
    vs_ceiling = min(ratios.values())
    p99 = max(lat[(mode, s)][1] for s in sizes)
    line = f"vs_ceiling={vs_ceiling:.2f} p99_ms={p99} mode={mode}"
    vs_mm2 = None
    if anchor in ran:
        vs_mm2 = per_gb(anchor, False) / per_gb(mode, False)
        with_broker = per_gb(anchor, True) / per_gb(mode, True)
        line = f"vs_mm2_per_cpu={vs_mm2:.2f} {line} vs={anchor} vs_mm2_per_cpu_with_broker={with_broker:.2f}"
    per_size = " ".join(f"vs_ceiling_{s}B={r:.2f}" for s, r in sorted(ratios.items()))
    print(f"replicator-bench: {line} {per_size}")
    if vs_ceiling < min_ceiling:
        missed.append(f"{mode}: vs_ceiling {vs_ceiling:.2f} < {min_ceiling}")
    if min_vs_mm2 is not None and vs_mm2 is not None and vs_mm2 < min_vs_mm2:
        missed.append(f"{mode}: vs_mm2_per_cpu {vs_mm2:.2f} < {min_vs_mm2}")
    if p99 > max_p99:
        missed.append(f"{mode}: p99_ms {p99} > {max_p99}")
for m in missed:
    print(f"replicator-bench: goal missed: {m}")
if missed:
    sys.exit(1)
if not all(m in ran and a in ran for m, a, *_ in goals):
    print("replicator-bench: not every system ran (BENCH_SYSTEMS): the goals are not all checked")
    sys.exit(2)
PY
