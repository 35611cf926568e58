#!/usr/bin/env bash
# `make bench-replicator`: our replicator (at-least-once and exactly-once) vs MirrorMaker 2
# (dedicated mode, tuned; plain and with exactly-once, KIP-618) vs the destination's ingest
# ceiling (producer-perf-test), on the same two loopback Kafka clusters and the same data:
# 16 partitions, 1 KiB and 100 B records.
#
# Per system and record size: records/s, MB/s and CPU-seconds per GB over the copy window
# (first record landed → last record landed; process CPU from /proc, so start-up is not
# counted for anyone), then p50/p99 replication latency at a fixed rate while caught up
# (destination read time − source timestamp, which every system keeps).
#
# Ends with one line per delivery mode:
#   replicator-bench: vs_mm2_per_cpu=<x.xx> vs_ceiling=<y.yy> p99_ms=<z> mode=<mode> vs=<mm2 run>
# vs_mm2_per_cpu = MM2's CPU-s/GB ÷ ours (over both sizes; at-least-once against plain MM2,
# exactly-once against MM2 with exactly-once); vs_ceiling = our MB/s ÷ the ceiling's MB/s
# (the worse size); p99_ms = the worse size. Exits 1 when a goal is missed:
#   at-least-once (issue 4):  vs_ceiling >= 0.8, vs_mm2_per_cpu >= 2, p99_ms <= 250
#   exactly-once (issue 13):  vs_ceiling >= 0.8, p99_ms <= 250
#
# Environment: BENCH_RECORDS_1K (default 8000000), BENCH_RECORDS_100B (default 24000000),
# BENCH_LATENCY_SECONDS (10), BENCH_COPY_TIMEOUT (1200 s per copy), BENCH_PORT (39092; uses PORT and PORT+100),
# BENCH_STATE_DIR (default /tmp/tributary-bench; deleted at the end unless BENCH_KEEP=1),
# CARGO_TARGET_DIR (where the release build goes; default <repo>/target),
# BENCH_SYSTEMS (default "at-least-once exactly-once mm2 mm2-eos"; fewer for a quick look:
# the goals of a mode are checked only when it and its MM2 run are in the list).
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

perf() { # BOOTSTRAP TOPIC RECORDS SIZE RATE -> prints the summary line
  kafka_producer_perf --topic "$2" --num-records "$3" --record-size "$4" --throughput "$5" \
    --producer-props bootstrap.servers="$1" "${BATCH_PROPS[@]}" 2>/dev/null | tail -n 1
}

# Watches DEST_TOPIC until RECORDS are there; records the window and CPU of PID.
measure_copy() { # NAME SIZE RECORDS DEST_TOPIC PID
  local name=$1 size=$2 records=$3 dest=$4 pid=$5 line
  line="$("$PROBE" ends --bootstrap "$DST" --topic "$dest" --target "$records" --pid "$pid" --clk-tck "$CLK_TCK" --timeout "${BENCH_COPY_TIMEOUT:-1200}")"
  log "$name/$size: $line"
  echo "system=$name size=$size records=$records $line" >>"$OUT/copy.result"
}

# Fixed-rate latency while the system is caught up.
measure_latency() { # NAME SIZE SOURCE_TOPIC DEST_TOPIC
  local name=$1 size=$2 src_topic=$3 dest=$4 rate count line
  rate=$(( size >= 1024 ? 10000 : 20000 ))
  count=$(( rate * BENCH_LATENCY_SECONDS ))
  "$PROBE" latency --bootstrap "$DST" --topic "$dest" --count "$count" --timeout 300 >"$OUT/latency.$name.$size" &
  local probe=$!
  for _ in $(seq 1 300); do grep -q ready "$OUT/latency.$name.$size" 2>/dev/null && break; sleep 0.1; done
  sleep 1
  perf "$SRC" "$src_topic" "$count" "$size" "$rate" >/dev/null
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
  measure_latency "$mode" "$size" "lat-$region-$size" "$region.lat-$region-$size"
  kill -TERM "$pid"; wait "$pid" || true
}

run_mm2() { # NAME SIZE RECORDS   NAME: mm2 (at-least-once) or mm2-eos (exactly-once, KIP-618)
  local name=$1 size=$2 records=$3 cfg="$OUT/$1-$2.properties" pid="" alias eos_props=""
  # Its own source alias per run: the alias prefixes the copies' topics and names MM2's
  # internal topics, so the two runs do not share a destination topic or connector state.
  alias=$([[ $name == mm2-eos ]] && echo srceos || echo src)
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
  topic "$SRC" "lat-$name-$size"
  # Tuned per the high-volume guidance: big batches, linger, big fetches, more tasks.
  cat >"$cfg" <<EOF
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
$alias.consumer.fetch.min.bytes = 1048576
$alias.consumer.fetch.max.wait.ms = 100
$alias.consumer.max.partition.fetch.bytes = 4194304
$alias.consumer.fetch.max.bytes = 67108864
$alias.consumer.max.poll.records = 5000
EOF
  KAFKA_TOOL_HEAP_OPTS="-Xms1g -Xmx1g" kafka_mm2 "$cfg" >"$OUT/$name-$size.log" 2>&1 &
  local shell_pid=$!
  PIDS+=("$shell_pid")
  for _ in $(seq 1 100); do
    pid="$(pgrep -n -f "connect.mirror.MirrorMaker $cfg" || true)"
    [[ -n "$pid" ]] && break
    sleep 0.1
  done
  [[ -n "$pid" ]] || { log "MirrorMaker 2 did not start (see $OUT/$name-$size.log)"; return 1; }
  PIDS+=("$pid")
  measure_copy "$name" "$size" "$records" "$alias.bench-$size" "$pid"
  measure_latency "$name" "$size" "lat-$name-$size" "$alias.lat-$name-$size"
  kill -TERM "$pid"; wait "$shell_pid" || true
}

for spec in "1024:$BENCH_RECORDS_1K" "100:$BENCH_RECORDS_100B"; do
  size=${spec%%:*}; records=${spec##*:}
  log "=== $records records of $size B, 16 partitions ==="
  topic "$SRC" "bench-$size" --config retention.bytes=-1 --config segment.bytes=1073741824
  log "loading the source: $(perf "$SRC" "bench-$size" "$records" "$size" -1)"
  topic "$DST" "ceiling-$size"
  line="$(perf "$DST" "ceiling-$size" "$records" "$size" -1)"
  log "ceiling: $line"
  echo "system=ceiling size=$size records=$records $line" >>"$OUT/copy.result"
  for system in $BENCH_SYSTEMS; do
    case $system in
      at-least-once|exactly-once) run_ours "$system" "$size" "$records" ;;
      mm2|mm2-eos) run_mm2 "$system" "$size" "$records" ;;
      *) log "unknown system in BENCH_SYSTEMS: $system"; exit 2 ;;
    esac
  done
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
    if system == "ceiling":
        m = re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\)", line)
        rps, mbps = float(m.group(1)), float(m.group(2))
        copy[(system, size)] = dict(rps=rps, mbps=mbps, cpu=None, gb=gb)
        continue
    secs = (int(kv["done_ms"]) - int(kv["first_ms"])) / 1000
    cpu = float(kv["cpu_done"]) - float(kv["cpu_first"])
    copy[(system, size)] = dict(rps=records / secs, mbps=records * size / secs / 2**20, cpu=cpu, gb=gb)
lat = {}
for line in open(f"{out}/latency.result"):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    lat[(kv["system"], int(kv["size"]))] = (int(kv["p50_ms"]), int(kv["p99_ms"]))

print("\n| system | record size | records/s | MB/s | CPU-s per GB | p50 ms | p99 ms |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for (system, size), r in sorted(copy.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
    cpu = f"{r['cpu'] / r['gb']:.2f}" if r["cpu"] is not None else "–"
    p50, p99 = lat.get((system, size), ("–", "–"))
    print(f"| {system} | {size} B | {r['rps']:,.0f} | {r['mbps']:.1f} | {cpu} | {p50} | {p99} |")
print()
sizes = sorted({s for (_, s) in copy})
# (mode, the MM2 run it is compared with, its goals: min vs_ceiling, min vs_mm2_per_cpu, max p99)
goals = [("at-least-once", "mm2", 0.8, 2.0, 250), ("exactly-once", "mm2-eos", 0.8, None, 250)]
missed = []
ran = {system for (system, _) in copy}
for mode, anchor, min_ceiling, min_vs_mm2, max_p99 in goals:
    if mode not in ran:
        continue
    ratios = {s: copy[(mode, s)]["mbps"] / copy[("ceiling", s)]["mbps"] for s in sizes}
    vs_ceiling = min(ratios.values())
    p99 = max(lat[(mode, s)][1] for s in sizes)
    line = f"vs_ceiling={vs_ceiling:.2f} p99_ms={p99} mode={mode}"
    vs_mm2 = None
    if anchor in ran:
        ours_cpu = sum(copy[(mode, s)]["cpu"] for s in sizes) / sum(copy[(mode, s)]["gb"] for s in sizes)
        mm2_cpu = sum(copy[(anchor, s)]["cpu"] for s in sizes) / sum(copy[(anchor, s)]["gb"] for s in sizes)
        vs_mm2 = mm2_cpu / ours_cpu
        line = f"vs_mm2_per_cpu={vs_mm2:.2f} {line} vs={anchor}"
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
