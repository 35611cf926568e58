# shellcheck shell=bash
# Apache Kafka part of the local e2e stack: single-node KRaft clusters as local JVMs.
#
# Source it from the stack entrypoint, or run one function for debugging:
#   bash e2e/stack/kafka.sh kafka_up east-regional 19092
#
# Functions (all return non-zero on failure; none calls `exit` when sourced):
#   kafka_fetch                 jars -> $TRIBUTARY_CACHE/kafka-<version>/lib (idempotent)
#   kafka_up NAME PORT          start (format at first start) + wait until it answers
#   kafka_secure_up NAME PORT   the same for a cluster that also listens with mutual TLS and
#                               SASL/SCRAM-SHA-512 on PORT+2 (certs and the SCRAM user's
#                               password under <cluster dir>/pki, made at first start)
#   kafka_start NAME            restart a stopped cluster, same data and port
#   kafka_stop NAME             SIGTERM, wait, then SIGKILL
#   kafka_kill NAME             SIGKILL now (failure tests)
#   kafka_status NAME           prints "NAME running|stopped port=P [pid=N]"; rc 0 running, 1 not
#   kafka_down_all              stop every cluster under $STATE/kafka
#   kafka_wait NAME [SECS]      wait until the broker answers ApiVersions
#   kafka_port REGION_IDX ROLE  port scheme: ROLE regional|0 / aggregate|1
#   kafka_bootstrap NAME        prints 127.0.0.1:PORT
#   kafka_tool CLASS ARGS...    run a Kafka tool main class (WARN logs to stderr)
#   kafka_mm2 CONFIGFILE [ARGS] MirrorMaker 2 dedicated mode, in the foreground
#
# Environment:
#   KAFKA_VERSION          default 4.2.0
#   TRIBUTARY_CACHE        default ~/.cache/tributary   (jars, outside the repo)
#   TRIBUTARY_STATE_DIR    default <repo>/e2e/.state    (data, pids, logs)
#   KAFKA_HEAP_OPTS        broker heap, default "-Xms128m -Xmx512m"
#   KAFKA_JVM_OPTS         broker JVM flags (GC, metaspace, JIT; see _kafka_jvm_opts)
#   KAFKA_TOOL_HEAP_OPTS   tools/MM2 heap, default "-Xms64m -Xmx512m"
#   KAFKA_START_TIMEOUT    seconds, default 90;  KAFKA_STOP_TIMEOUT seconds, default 30
#   KAFKA_EXTRA_PROPS      extra server.properties lines appended at each start
#   KAFKA_CDS              1 (default): build/use a class-data-sharing archive; 0: off

_KAFKA_SH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_KAFKA_REPO="$(cd "$_KAFKA_SH_DIR/../.." && pwd)"

: "${KAFKA_VERSION:=4.2.0}"

_kafka_cache() { echo "${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/kafka-$KAFKA_VERSION"; }
_kafka_state() { echo "${TRIBUTARY_STATE_DIR:-$_KAFKA_REPO/e2e/.state}"; }
_kafka_dir() { echo "$(_kafka_state)/kafka/$1"; }
_kafka_pidfile() { echo "$(_kafka_state)/pids/kafka-$1.pid"; }
_kafka_logfile() { echo "$(_kafka_state)/logs/kafka-$1.log"; }
_kafka_log() { echo "[kafka] $*" >&2; }
_kafka_err() { echo "[kafka] ERROR: $*" >&2; }

_kafka_check_name() {
  [[ "${1:-}" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || { _kafka_err "bad cluster name '${1:-}'"; return 1; }
}

_kafka_java() {
  local j="${JAVA:-}"
  [[ -z "$j" && -n "${JAVA_HOME:-}" ]] && j="$JAVA_HOME/bin/java"
  [[ -z "$j" ]] && j="$(command -v java 2>/dev/null)"
  [[ -x "$j" ]] || { _kafka_err "java not found (need Java 17+)"; return 1; }
  echo "$j"
}

# ---------------------------------------------------------------------------
# fetch

# Marker content: version + hash of the pom, so editing the pom re-fetches.
_kafka_marker_want() {
  echo "kafka=$KAFKA_VERSION pom=$(sha256sum "$_KAFKA_REPO/e2e/kafka/pom.xml" | cut -c1-16)"
}

_kafka_fetched() {
  [[ -f "$(_kafka_cache)/.complete" && "$(cat "$(_kafka_cache)/.complete")" == "$(_kafka_marker_want)" ]]
}

# CDS archive present, disabled, or known not to build with this JVM
_kafka_cds_settled() {
  [[ "${KAFKA_CDS:-1}" == 0 ]] && return 0
  local jid
  jid="$(_kafka_java_id)" || return 0
  [[ -s "$(_kafka_cache)/cds/kafka-$jid.jsa" || -f "$(_kafka_cache)/cds/failed-$jid" ]]
}

kafka_fetch() {
  local cache
  cache="$(_kafka_cache)"
  [[ -f "$_KAFKA_REPO/e2e/kafka/pom.xml" ]] || { _kafka_err "missing e2e/kafka/pom.xml"; return 1; }
  _kafka_fetched && _kafka_cds_settled && return 0
  mkdir -p "$cache" || return 1
  (
    # one fetch at a time (several kafka_up may run in parallel)
    flock 9
    if ! _kafka_fetched; then
      command -v mvn >/dev/null || { _kafka_err "mvn not found"; exit 1; }
      _kafka_log "fetching Apache Kafka $KAFKA_VERSION jars with Maven into $cache/lib"
      rm -rf "$cache/lib.tmp" "$cache/.complete"
      t0=$SECONDS
      if ! mvn -q -B -f "$_KAFKA_REPO/e2e/kafka/pom.xml" \
          -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime \
          -DoutputDirectory="$cache/lib.tmp" \
          dependency:copy-dependencies >"$cache/fetch.log" 2>&1; then
        tail -n 40 "$cache/fetch.log" >&2
        _kafka_err "maven fetch of Kafka $KAFKA_VERSION failed (full log: $cache/fetch.log)"
        exit 1
      fi
      ls "$cache/lib.tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { _kafka_err "no kafka_2.13 jar fetched"; exit 1; }
      rm -rf "$cache/lib" "$cache/cds" && mv "$cache/lib.tmp" "$cache/lib" || exit 1
      _kafka_marker_want >"$cache/.complete"
      _kafka_log "fetched $(ls "$cache/lib" | wc -l) jars in $((SECONDS - t0))s"
    fi
    if ! _kafka_cds_settled; then
      if ! _kafka_cds_build; then
        _kafka_log "warning: no class-data-sharing archive (only makes JVM starts slower)"
        mkdir -p "$cache/cds" && touch "$cache/cds/failed-$(_kafka_java_id)"
      fi
    fi
  ) 9>"$cache/.lock"
}

# ---------------------------------------------------------------------------
# class-data sharing: one static AppCDS archive for broker + tools, built once per
# (Kafka version, JVM) from the classes a short training run loads. Cuts a broker
# start from ~3.5s to ~2.2s and a tool start from ~1s to ~0.5s; mapped read-only,
# so the brokers share those pages.

_kafka_java_id() {
  if [[ -z "${_KAFKA_JAVA_ID:-}" ]]; then
    local java
    java="$(_kafka_java)" || return 1
    _KAFKA_JAVA_ID="$({ readlink -f "$java"; "$java" -Xshare:off -version 2>&1; } | sha256sum | cut -c1-12)"
  fi
  echo "$_KAFKA_JAVA_ID"
}

# path of the usable archive, or fail
_kafka_cds_file() {
  [[ "${KAFKA_CDS:-1}" == 0 ]] && return 1
  local f
  f="$(_kafka_cache)/cds/kafka-$(_kafka_java_id).jsa"
  [[ -s "$f" ]] && echo "$f"
}

_kafka_cds_opts() {
  local f
  # JVM warnings to stderr (never stdout: tools' stdout gets parsed)
  if f="$(_kafka_cds_file)"; then
    echo "-XX:SharedArchiveFile=$f -Xshare:auto -Xlog:disable -Xlog:all=warning:stderr"
  else
    echo "-Xlog:disable -Xlog:all=warning:stderr"
  fi
}

# Called from kafka_fetch with the lock held. Runs a throwaway broker and the common
# tools with -XX:DumpLoadedClassList, then dumps the archive. Non-fatal on failure.
_kafka_cds_build() {
  local cache java jid tmp port lists=() pid rc=1 t0=$SECONDS
  cache="$(_kafka_cache)"; java="$(_kafka_java)" || return 1
  jid="$(_kafka_java_id)" || return 1
  tmp="$cache/cds.tmp"
  rm -rf "$tmp"; mkdir -p "$tmp" "$cache/cds" || return 1
  _kafka_log "building class-data-sharing archive (one-time training run)"
  for port in $(shuf -i 30000-39990 -n 20); do
    _kafka_tcp_open "$port" || _kafka_tcp_open $((port + 1)) || break
  done
  local cp="$cache/lib/*" l4t="$_KAFKA_REPO/e2e/kafka/log4j2-tools.properties"
  local bs="127.0.0.1:$port"
  # the training cluster uses the same config generator, in a private state dir
  (
    export TRIBUTARY_STATE_DIR="$tmp/state"
    mkdir -p "$(_kafka_dir cds)/data" "$TRIBUTARY_STATE_DIR/logs" "$TRIBUTARY_STATE_DIR/pids"
    echo "$port" >"$(_kafka_dir cds)/port"
    _kafka_write_config cds "$port"
  ) || return 1
  local cfg="$tmp/state/kafka/cds/server.properties" log="$tmp/train.log"
  _kafka_cds_train() { # NAME CLASS ARGS...
    local n="$1"; shift
    lists+=("$tmp/$n.lst")
    timeout 120 "$java" -Xshare:off -XX:DumpLoadedClassList="$tmp/$n.lst" -Xlog:disable \
      -cp "$cp" -Dlog4j2.configurationFile="$l4t" "$@" >>"$log" 2>&1
  }
  _kafka_cds_train storage kafka.tools.StorageTool format --config "$cfg" \
    --cluster-id "$(_kafka_random_uuid)" --standalone || { tail -n 20 "$log" >&2; return 1; }
  lists+=("$tmp/broker.lst")
  "$java" -Xshare:off -XX:DumpLoadedClassList="$tmp/broker.lst" -Xlog:disable \
    $(_kafka_jvm_opts | sed 's/-Xlog:[^ ]*//g') -Dtributary.kafka=cds-training \
    -Dlog4j2.configurationFile="$_KAFKA_REPO/e2e/kafka/log4j2-broker.properties" \
    -cp "$cp" kafka.Kafka "$cfg" </dev/null >>"$log" 2>&1 &
  pid=$!
  local deadline=$((SECONDS + 90))
  until _kafka_api_versions_ok "$port" && grep -q 'Kafka Server started' "$log"; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
      kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
      tail -n 30 "$log" >&2; return 1
    fi
    sleep 0.3
  done
  _kafka_cds_train topics org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" --create \
    --topic cds --partitions 2 --replication-factor 1 &&
  _kafka_cds_train ppt org.apache.kafka.tools.ProducerPerformance --topic cds --num-records 2000 \
    --record-size 100 --throughput -1 --producer-props bootstrap.servers="$bs" &&
  _kafka_cds_train cpt org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$bs" --topic cds \
    --messages 2000 --group cds-g --timeout 30000 &&
  _kafka_cds_train groups org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
    --bootstrap-server "$bs" --describe --group cds-g &&
  _kafka_cds_train cons org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$bs" \
    --topic cds --from-beginning --max-messages 10 --timeout-ms 20000 &&
  _kafka_cds_train offsets org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$bs" --topic cds &&
  rc=0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  if ((rc != 0)); then tail -n 30 "$log" >&2; return 1; fi
  # union of the class lists, first occurrence order
  awk '!seen[$0]++' "${lists[@]}" >"$tmp/all.lst" || return 1
  if ! "$java" -Xshare:dump -XX:SharedClassListFile="$tmp/all.lst" \
      -XX:SharedArchiveFile="$tmp/kafka.jsa" -cp "$cp" >>"$tmp/dump.log" 2>&1; then
    tail -n 20 "$tmp/dump.log" >&2; return 1
  fi
  mv "$tmp/kafka.jsa" "$cache/cds/kafka-$jid.jsa" || return 1
  rm -rf "$tmp"
  _kafka_log "class-data-sharing archive built in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------
# JVM options

_kafka_jvm_opts() {
  # Small footprint, fast start: serial GC (no GC threads, compact), C1 only,
  # capped metaspace / code cache / direct memory, small thread stacks.
  echo "${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}" \
    "${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:MaxMetaspaceSize=160m -XX:ReservedCodeCacheSize=64m -XX:MaxDirectMemorySize=128m -Xss512k -XX:+ExitOnOutOfMemoryError -XX:-OmitStackTraceInFastThrow -XX:+PerfDisableSharedMem -Djava.awt.headless=true -Dnetworkaddress.cache.ttl=10}" \
    "$(_kafka_cds_opts)"
}

_kafka_tool_jvm_opts() {
  echo "${KAFKA_TOOL_HEAP_OPTS:--Xms64m -Xmx512m}" \
    "${KAFKA_TOOL_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -XX:+PerfDisableSharedMem -Djava.awt.headless=true}" \
    "$(_kafka_cds_opts)"
}

# ---------------------------------------------------------------------------
# process helpers

# pid of the running broker NAME, or fail. Checks the pid really is our JVM.
_kafka_pid() {
  local pf pid
  pf="$(_kafka_pidfile "$1")"
  [[ -f "$pf" ]] || return 1
  pid="$(cat "$pf" 2>/dev/null)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-Dtributary.kafka=$1 " || return 1
  # zombie (killed, not yet reaped by its parent) counts as dead
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
  echo "$pid"
}

_kafka_port_of() {
  local f
  f="$(_kafka_dir "$1")/port"
  [[ -f "$f" ]] || return 1
  cat "$f"
}

_kafka_tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Real Kafka round trip without a JVM: ApiVersionsRequest v0 (api_key 18,
# correlation id 1, null client id); the broker answers only once it serves requests.
# Response begins: int32 size, int32 correlation id (=1), int16 error code (=0).
_kafka_api_versions_ok() {
  local port="$1" hex
  hex="$(timeout 3 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\xff\xff" >&3
    head -c 10 <&3 | od -An -tx1 | tr -d " \n"
  ' _ "$port" 2>/dev/null)" || return 1
  [[ "${hex:8:12}" == "000000010000" ]]
}

_kafka_tail_log() {
  local log
  log="$(_kafka_logfile "$1")"
  if [[ -f "$log" ]]; then
    echo "----- last lines of $log -----" >&2
    tail -n "${2:-40}" "$log" >&2
    echo "-----" >&2
  fi
}

# ---------------------------------------------------------------------------
# lifecycle

_kafka_write_config() {
  local name="$1" port="$2" dir cport
  dir="$(_kafka_dir "$name")"
  cport=$((port + 1))
  cat >"$dir/server.properties" <<EOF
# generated by e2e/stack/kafka.sh for cluster '$name' (rewritten at every start)
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data

# single node: every internal topic at replication factor 1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
num.partitions=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
# after a SIGKILL the restarted controller refuses the broker's re-registration until
# the old session expires (default 9s); keep that short but safe on a busy machine
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000

# small footprint
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
log.segment.bytes=134217728
log.retention.hours=24
log.retention.check.interval.ms=60000
socket.send.buffer.bytes=1048576
socket.receive.buffer.bytes=1048576
EOF
  if [[ -f "$dir/secure" ]]; then
    local sport=$((port + 2)) pki="$dir/pki"
    # Clients under test use SASL_SSL (mutual TLS + SCRAM); PLAINTEXT stays for the broker
    # itself and for the stack's own setup.
    sed -i \
      -e "s|^listeners=.*|listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_SSL://127.0.0.1:$sport|" \
      -e "s|^advertised.listeners=.*|advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport|" \
      -e "s|^listener.security.protocol.map=.*|listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL|" \
      "$dir/server.properties"
    cat >>"$dir/server.properties" <<EOF

# SASL_SSL listener: mutual TLS (certs by kafka_secure_pki) and SCRAM-SHA-512
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location=$pki/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$pki/ca.crt
EOF
  fi
  if [[ -n "${KAFKA_EXTRA_PROPS:-}" ]]; then
    printf '\n# KAFKA_EXTRA_PROPS\n%s\n' "$KAFKA_EXTRA_PROPS" >>"$dir/server.properties"
  fi
}

# Certificates for a secure cluster (idempotent): a CA, the broker's key+chain in one PEM
# (SAN 127.0.0.1 and localhost), a client certificate for `tributary`, and the SCRAM user's
# password. Files: ca.crt, broker.pem, client.crt, client.key, tributary.password.
kafka_secure_pki() {
  local pki="$1"
  [[ -s "$pki/tributary.password" ]] && return 0
  command -v openssl >/dev/null || { _kafka_err "openssl not found"; return 1; }
  rm -rf "$pki.tmp" && mkdir -p "$pki.tmp" && (
    cd "$pki.tmp" || exit 1
    set -e
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tributary-e2e-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out broker.key 2>/dev/null
    openssl req -new -key broker.key -subj "/CN=localhost" -out broker.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile broker.ext -out broker.crt 2>/dev/null
    cat broker.key broker.crt ca.crt >broker.pem
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out client.key 2>/dev/null
    openssl req -new -key client.key -subj "/CN=tributary" -out client.csr 2>/dev/null
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -out client.crt 2>/dev/null
    head -c 18 /dev/urandom | base64 | tr '+/' '-_' >tributary.password
    rm -f ./*.csr broker.ext ca.srl
  ) || { rm -rf "$pki.tmp"; _kafka_err "making the secure cluster's certificates failed"; return 1; }
  rm -rf "$pki" && mv "$pki.tmp" "$pki"
}

kafka_secure_up() {
  local name="${1:-}" port="${2:-}" dir
  _kafka_check_name "$name" || return 1
  dir="$(_kafka_dir "$name")"
  mkdir -p "$dir" || return 1
  kafka_secure_pki "$dir/pki" || return 1
  touch "$dir/secure"
  kafka_up "$name" "$port"
}

# Kafka Uuid string: 16 random bytes, base64url without padding, not starting with '-'.
_kafka_random_uuid() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* && "$id" != AAAAAAAAAAAAAAAAAAAAA* ]] && break
  done
  echo "$id"
}

kafka_up() {
  local name="${1:-}" port="${2:-}"
  _kafka_check_name "$name" || return 1
  [[ "$port" =~ ^[0-9]+$ ]] || { _kafka_err "usage: kafka_up NAME PORT"; return 1; }
  local dir pf log java cache old pid
  dir="$(_kafka_dir "$name")"; pf="$(_kafka_pidfile "$name")"; log="$(_kafka_logfile "$name")"

  if old="$(_kafka_port_of "$name")" && [[ "$old" != "$port" ]]; then
    _kafka_err "cluster '$name' was created with port $old, not $port (rm -rf $dir to recreate)"
    return 1
  fi
  if pid="$(_kafka_pid "$name")"; then
    _kafka_log "$name already running (pid $pid, port $port)"
    return 0
  fi

  kafka_fetch || return 1
  java="$(_kafka_java)" || return 1
  cache="$(_kafka_cache)"
  mkdir -p "$dir/data" "$(dirname "$pf")" "$(dirname "$log")" || return 1

  local p ports=("$port" $((port + 1)))
  [[ -f "$dir/secure" ]] && ports+=($((port + 2)))
  for p in "${ports[@]}"; do
    if _kafka_tcp_open "$p"; then
      _kafka_err "port $p is already in use by another process (cluster '$name')"
      return 1
    fi
  done

  echo "$port" >"$dir/port"
  _kafka_write_config "$name" "$port" || return 1

  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local cid
    cid="$(cat "$dir/cluster.id" 2>/dev/null || true)"
    [[ -n "$cid" ]] || { cid="$(_kafka_random_uuid)" && echo "$cid" >"$dir/cluster.id"; }
    _kafka_log "formatting $name (cluster id $cid)"
    local scram=()
    if [[ -f "$dir/secure" ]]; then
      scram=(--add-scram "SCRAM-SHA-512=[name=tributary,password=$(cat "$dir/pki/tributary.password")]")
    fi
    # shellcheck disable=SC2046
    if ! "$java" $(_kafka_tool_jvm_opts) -cp "$cache/lib/*" \
        -Dlog4j2.configurationFile="$_KAFKA_REPO/e2e/kafka/log4j2-tools.properties" \
        kafka.tools.StorageTool format --config "$dir/server.properties" \
        --cluster-id "$cid" --standalone --ignore-formatted "${scram[@]}" >>"$log" 2>&1; then
      _kafka_tail_log "$name" 20
      _kafka_err "formatting storage of '$name' failed"
      return 1
    fi
  fi

  _kafka_log "starting $name on 127.0.0.1:$port (controller $((port + 1)))"
  echo "===== $(date -Is) kafka_up $name port=$port =====" >>"$log"
  # setsid: own session, survives the calling shell; the inner bash writes its own
  # pid and then execs java, so the pid file holds the JVM's pid.
  # shellcheck disable=SC2046
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pf" \
    "$java" $(_kafka_jvm_opts) \
    "-Dtributary.kafka=$name" \
    -Dlog4j2.configurationFile="$_KAFKA_REPO/e2e/kafka/log4j2-broker.properties" \
    -Dkafka.logs.dir="$(dirname "$log")" \
    -cp "$cache/lib/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$log" 2>&1 &
  disown 2>/dev/null || true

  kafka_wait "$name" "${KAFKA_START_TIMEOUT:-90}"
}

# Wait until NAME's broker answers an ApiVersions request and has logged
# "Kafka Server started" since the last kafka_up marker.
kafka_wait() {
  local name="${1:-}" timeout="${2:-${KAFKA_START_TIMEOUT:-90}}"
  _kafka_check_name "$name" || return 1
  local port log pid deadline
  port="$(_kafka_port_of "$name")" || { _kafka_err "unknown cluster '$name'"; return 1; }
  log="$(_kafka_logfile "$name")"
  deadline=$((SECONDS + timeout))
  # give the launcher a moment to write the pid file
  while ! pid="$(_kafka_pid "$name")"; do
    if ((SECONDS >= deadline)) || { [[ -f "$(_kafka_pidfile "$name")" ]] && ! _kafka_pid_alive_any "$name"; }; then
      _kafka_tail_log "$name"
      _kafka_err "broker '$name' is not running (log: $log)"
      return 1
    fi
    sleep 0.2
  done
  while :; do
    if ! kill -0 "$pid" 2>/dev/null || ! _kafka_pid "$name" >/dev/null; then
      _kafka_tail_log "$name"
      _kafka_err "broker '$name' exited during startup (log: $log)"
      return 1
    fi
    if _kafka_started_logged "$log" && _kafka_api_versions_ok "$port"; then
      _kafka_log "$name is up on 127.0.0.1:$port (pid $pid)"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      _kafka_tail_log "$name"
      _kafka_err "broker '$name' did not answer on 127.0.0.1:$port within ${timeout}s (log: $log)"
      return 1
    fi
    sleep 0.3
  done
}

# pid file names a live process at all (the JVM may not have exec'd yet)
_kafka_pid_alive_any() {
  local pid
  pid="$(cat "$(_kafka_pidfile "$1")" 2>/dev/null)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

_kafka_started_logged() {
  # only look after the last start marker
  awk '/^===== .* kafka_up /{f=0} /Kafka Server started/{f=1} END{exit !f}' "$1" 2>/dev/null
}

kafka_start() {
  local name="${1:-}" port
  _kafka_check_name "$name" || return 1
  port="$(_kafka_port_of "$name")" || { _kafka_err "cluster '$name' was never created (use kafka_up NAME PORT)"; return 1; }
  kafka_up "$name" "$port"
}

kafka_stop() {
  local name="${1:-}" pid timeout="${KAFKA_STOP_TIMEOUT:-30}" deadline
  _kafka_check_name "$name" || return 1
  if ! pid="$(_kafka_pid "$name")"; then
    rm -f "$(_kafka_pidfile "$name")"
    return 0
  fi
  _kafka_log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  while _kafka_pid "$name" >/dev/null; do
    if ((SECONDS >= deadline)); then
      _kafka_log "$name did not stop within ${timeout}s, killing"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$(_kafka_pidfile "$name")"
}

kafka_kill() {
  local name="${1:-}" pid
  _kafka_check_name "$name" || return 1
  if pid="$(_kafka_pid "$name")"; then
    _kafka_log "killing $name (pid $pid) with SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    local i
    for i in $(seq 50); do _kafka_pid "$name" >/dev/null || break; sleep 0.1; done
    # A dying process releases its memory (and its cmdline) before its sockets: wait until
    # the listener is gone too, so "killed" means "refuses connections".
    local port
    if port="$(_kafka_port_of "$name")"; then
      for i in $(seq 50); do _kafka_tcp_open "$port" || break; sleep 0.1; done
    fi
  fi
  rm -f "$(_kafka_pidfile "$name")"
}

kafka_status() {
  local name="${1:-}" port pid
  _kafka_check_name "$name" || return 1
  port="$(_kafka_port_of "$name" 2>/dev/null || echo '?')"
  if pid="$(_kafka_pid "$name")"; then
    echo "$name running port=$port pid=$pid"
    return 0
  fi
  echo "$name stopped port=$port"
  return 1
}

# names of all clusters ever created in this state dir
kafka_list() {
  local d
  for d in "$(_kafka_state)"/kafka/*/; do
    [[ -f "$d/port" ]] && basename "$d"
  done
  return 0
}

kafka_down_all() {
  local n pids=() rc=0
  for n in $(kafka_list); do
    kafka_stop "$n" &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || rc=1; done
  return $rc
}

# Port scheme: region index i (0,1,2...), role regional=0 / aggregate=1:
#   PORT = 19092 + 200*i + 100*role; controller on PORT+1.
kafka_port() {
  local i="${1:?region index}" role="${2:?role}"
  case "$role" in regional) role=0 ;; aggregate) role=1 ;; 0 | 1) ;; *)
    _kafka_err "role must be regional|aggregate"; return 1 ;; esac
  echo $((19092 + 200 * i + 100 * role))
}

kafka_bootstrap() {
  local port
  port="$(_kafka_port_of "${1:-}")" || { _kafka_err "unknown cluster '${1:-}'"; return 1; }
  echo "127.0.0.1:$port"
}

# ---------------------------------------------------------------------------
# tools

# kafka_tool MAINCLASS ARGS...  e.g.
#   kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:19092 --list
kafka_tool() {
  local cls="${1:-}"
  [[ -n "$cls" ]] || { _kafka_err "usage: kafka_tool MAINCLASS ARGS..."; return 1; }
  shift
  kafka_fetch || return 1
  local java
  java="$(_kafka_java)" || return 1
  # shellcheck disable=SC2046
  "$java" $(_kafka_tool_jvm_opts) -cp "$(_kafka_cache)/lib/*" \
    -Dlog4j2.configurationFile="$_KAFKA_REPO/e2e/kafka/log4j2-tools.properties" \
    "$cls" "$@"
}

# MirrorMaker 2, dedicated mode, in the foreground (background it yourself).
kafka_mm2() {
  local cfg="${1:-}"
  [[ -f "$cfg" ]] || { _kafka_err "usage: kafka_mm2 CONFIGFILE [--clusters A B]"; return 1; }
  shift
  kafka_tool org.apache.kafka.connect.mirror.MirrorMaker "$cfg" "$@"
}

# Shortcuts for the common tools (class names as of Kafka 4.x).
kafka_topics() { kafka_tool org.apache.kafka.tools.TopicCommand "$@"; }
kafka_groups() { kafka_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@"; }
kafka_producer_perf() { kafka_tool org.apache.kafka.tools.ProducerPerformance "$@"; }
kafka_consumer_perf() { kafka_tool org.apache.kafka.tools.ConsumerPerformance "$@"; }

# ---------------------------------------------------------------------------

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -uo pipefail
  if [[ $# -lt 1 ]] || ! declare -F "$1" >/dev/null; then
    echo "usage: bash $0 {kafka_fetch|kafka_up NAME PORT|kafka_start NAME|kafka_stop NAME|kafka_kill NAME|kafka_status NAME|kafka_down_all|kafka_list|kafka_wait NAME|kafka_port I ROLE|kafka_bootstrap NAME|kafka_tool CLASS ARGS...|kafka_mm2 CONFIG}" >&2
    exit 2
  fi
  "$@"
fi
