#!/usr/bin/env bash
# Kubernetes control plane of the local e2e stack: etcd + kube-apiserver +
# kube-controller-manager as local processes (no kubelet, no Docker).
#
# Meant to be sourced by the stack entrypoint:
#     source e2e/stack/k8s.sh; k8s_up; ...; k8s_down
# or run directly for debugging:
#     bash e2e/stack/k8s.sh {k8s_build|k8s_up|k8s_down|k8s_status|k8s_env}
#
# Binaries are built from pinned Go modules (e2e/k8s, e2e/etcd, e2e/helm, e2e/promtool) and cached
# outside the repo, keyed by version, under ${TRIBUTARY_CACHE:-$HOME/.cache/tributary}.
# Runtime state lives under ${TRIBUTARY_STATE_DIR:-<repo>/e2e/.state}:
#     kubeconfig               admin kubeconfig (CN=admin, O=system:masters), certs embedded
#     logs/<name>.log          process logs (etcd, kube-apiserver, kube-controller-manager)
#     pids/<name>.pid          process ids
#     k8s/pki/                 CA, serving/client certs, service-account key pair
#     k8s/etcd/                etcd data dir (kept across k8s_down unless K8S_WIPE=1)
#
# Tunables (env): K8S_ETCD_PORT (23790), K8S_ETCD_PEER_PORT (23800), K8S_API_PORT (16443),
# K8S_KCM_PORT (16445), K8S_STOP_TIMEOUT (5 s), K8S_UP_TIMEOUT (120 s),
# K8S_APISERVER_EXTRA_ARGS / K8S_KCM_EXTRA_ARGS / K8S_ETCD_EXTRA_ARGS (word-split, appended).
# Everything listens on 127.0.0.1 only.

_K8S_SH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_REPO_ROOT="$(cd "$_K8S_SH_DIR/../.." && pwd)"

# Versions come from the helper modules' go.mod files, so bumping a pin changes the cache key.
_k8s_modver() { awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { print $NF; exit }' "$1"; }
K8S_VERSION="$(_k8s_modver "$K8S_REPO_ROOT/e2e/k8s/go.mod" k8s.io/kubernetes)"
ETCD_VERSION="$(_k8s_modver "$K8S_REPO_ROOT/e2e/etcd/go.mod" go.etcd.io/etcd/server/v3)"
HELM_VERSION="$(_k8s_modver "$K8S_REPO_ROOT/e2e/helm/go.mod" helm.sh/helm/v3)"
PROMTOOL_VERSION="$(_k8s_modver "$K8S_REPO_ROOT/e2e/promtool/go.mod" github.com/prometheus/prometheus)"

# (Re)computed at source time and at the start of every public function, so env set after
# sourcing (TRIBUTARY_STATE_DIR, TRIBUTARY_CACHE, K8S_*_PORT) still takes effect.
_k8s_vars() {
  TRIBUTARY_CACHE="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
  K8S_BIN_DIR="$TRIBUTARY_CACHE/k8s-$K8S_VERSION/bin"
  ETCD_BIN="$TRIBUTARY_CACHE/etcd-$ETCD_VERSION/bin/etcd"
  HELM_BIN="$TRIBUTARY_CACHE/helm-$HELM_VERSION/bin/helm"
  PROMTOOL_BIN="$TRIBUTARY_CACHE/promtool-$PROMTOOL_VERSION/bin/promtool"
  KUBECTL="$K8S_BIN_DIR/kubectl"

  K8S_STATE_DIR="${TRIBUTARY_STATE_DIR:-$K8S_REPO_ROOT/e2e/.state}"
  K8S_KUBECONFIG="$K8S_STATE_DIR/kubeconfig"
  K8S_PKI_DIR="$K8S_STATE_DIR/k8s/pki"
  K8S_ETCD_DATA="$K8S_STATE_DIR/k8s/etcd"
  K8S_ETCD_PORT="${K8S_ETCD_PORT:-23790}"
  K8S_ETCD_PEER_PORT="${K8S_ETCD_PEER_PORT:-23800}"
  K8S_API_PORT="${K8S_API_PORT:-16443}"
  K8S_KCM_PORT="${K8S_KCM_PORT:-16445}"
  K8S_API_URL="https://127.0.0.1:$K8S_API_PORT"
  K8S_ETCD_URL="http://127.0.0.1:$K8S_ETCD_PORT"
  K8S_SERVICE_CIDR="10.0.0.0/24"
}
_k8s_vars
K8S_PROCS=(etcd kube-apiserver kube-controller-manager)

_k8s_log() { echo "k8s: $*" >&2; }

# ---------------------------------------------------------------------------- build

# _k8s_go_build <module dir> <package> <output file> [extra -ldflags]
_k8s_go_build() {
  local dir=$1 pkg=$2 out=$3 xld=${4:-} t0=$SECONDS
  [[ -x "$out" ]] && return 0
  _k8s_log "building $(basename "$out") from $pkg (first build is slow) ..."
  mkdir -p "$(dirname "$out")" || return 1
  (cd "$dir" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly \
      go build -trimpath -ldflags="-s -w $xld" -o "$out.tmp.$$" "$pkg") || { rm -f "$out.tmp.$$"; return 1; }
  mv -f "$out.tmp.$$" "$out" || return 1
  _k8s_log "built $out in $((SECONDS - t0))s"
}

# Version stamps that the upstream Makefiles set (a plain `go build` of a module leaves
# "v0.0.0-master+$Format:%H$", which breaks `kubectl version` and helm's kubeVersion checks).
_k8s_version_ldflags() {
  local v=$K8S_VERSION mm pkg out=""
  mm=${v#v}; mm=${mm%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    out+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=${mm%%.*} -X $pkg.gitMinor=${mm#*.}"
    out+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit="
  done
  echo "$out"
}
_k8s_helm_ldflags() {
  local cg mj mn p
  cg="$(cd "$K8S_REPO_ROOT/e2e/helm" && GOTOOLCHAIN=local go list -m -f '{{.Version}}' k8s.io/client-go)" || return 1
  cg=${cg#v}; mj=$(( ${cg%%.*} + 1 )); mn=${cg#*.}; mn=${mn%%.*}   # client-go v0.N.x -> k8s 1.N
  p=helm.sh/helm/v3
  echo "-X $p/internal/version.version=$HELM_VERSION -X $p/internal/version.gitTreeState=clean" \
       "-X $p/pkg/lint/rules.k8sVersionMajor=$mj -X $p/pkg/lint/rules.k8sVersionMinor=$mn" \
       "-X $p/pkg/chartutil.k8sVersionMajor=$mj -X $p/pkg/chartutil.k8sVersionMinor=$mn"
}

# Prometheus's Makefile stamps the version the same way (`promtool --version`).
_k8s_promtool_ldflags() {
  echo "-X github.com/prometheus/common/version.Version=${PROMTOOL_VERSION#v}" \
       "-X github.com/prometheus/common/version.Branch=module"
}

# k8s_build: build (once) and cache etcd, kube-apiserver, kube-controller-manager, kubectl, helm,
# and promtool (the chart's alert rules are unit-tested with `promtool test rules`).
k8s_build() {
  _k8s_vars
  local m="$K8S_REPO_ROOT/e2e" c
  command -v go >/dev/null || { _k8s_log "go not found"; return 1; }
  _k8s_go_build "$m/etcd" . "$ETCD_BIN" || return 1
  for c in kube-apiserver kube-controller-manager kubectl; do
    [[ -x "$K8S_BIN_DIR/$c" ]] && continue
    _k8s_go_build "$m/k8s" "k8s.io/kubernetes/cmd/$c" "$K8S_BIN_DIR/$c" "$(_k8s_version_ldflags)" || return 1
  done
  [[ -x "$HELM_BIN" ]] || _k8s_go_build "$m/helm" helm.sh/helm/v3/cmd/helm "$HELM_BIN" "$(_k8s_helm_ldflags)" || return 1
  [[ -x "$PROMTOOL_BIN" ]] || _k8s_go_build "$m/promtool" github.com/prometheus/prometheus/cmd/promtool \
    "$PROMTOOL_BIN" "$(_k8s_promtool_ldflags)" || return 1
}

# ---------------------------------------------------------------------------- pki

# _k8s_ca <name> <CN>: self-signed CA key + cert in $K8S_PKI_DIR.
_k8s_ca() {
  local d="$K8S_PKI_DIR" name=$1
  printf '%s\n' "[req]" "distinguished_name = dn" "x509_extensions = v3_ca" "prompt = no" \
    "[dn]" "CN = $2" "[v3_ca]" "basicConstraints = critical, CA:TRUE" \
    "keyUsage = critical, keyCertSign, cRLSign, digitalSignature" "subjectKeyIdentifier = hash" > "$d/$name.cnf"
  openssl genrsa -out "$d/$name.key" 2048 2>/dev/null &&
  openssl req -x509 -new -key "$d/$name.key" -config "$d/$name.cnf" -days 3650 -sha256 -out "$d/$name.crt" 2>/dev/null &&
  rm -f "$d/$name.cnf"
}

# _k8s_cert <ca> <name> <subject> <extensions...>: key + cert signed by <ca>, in $K8S_PKI_DIR.
_k8s_cert() {
  local ca=$1 name=$2 subj=$3; shift 3
  local d="$K8S_PKI_DIR"
  printf '%s\n' "basicConstraints = CA:FALSE" "keyUsage = critical, digitalSignature, keyEncipherment" "$@" > "$d/$name.ext"
  openssl genrsa -out "$d/$name.key" 2048 2>/dev/null &&
  openssl req -new -key "$d/$name.key" -subj "$subj" -out "$d/$name.csr" 2>/dev/null &&
  openssl x509 -req -in "$d/$name.csr" -CA "$d/$ca.crt" -CAkey "$d/$ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -days 3650 -sha256 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null &&
  rm -f "$d/$name.csr" "$d/$name.ext"
}

_k8s_have_cert() { [[ -s "$K8S_PKI_DIR/$1.crt" && -s "$K8S_PKI_DIR/$1.key" ]]; }

# _k8s_pki: creates whatever is missing (a new CA re-issues its leaf certs); never rotates
# existing material, so tokens and kubeconfigs stay valid across restarts.
_k8s_pki() {
  local d="$K8S_PKI_DIR" new_ca=0 new_fp=0
  mkdir -p "$d" && chmod 700 "$d" || return 1
  command -v openssl >/dev/null || { _k8s_log "openssl not found"; return 1; }
  if ! _k8s_have_cert ca; then
    _k8s_log "generating PKI in $d"
    _k8s_ca ca tributary-e2e-ca && new_ca=1 || return 1
  fi
  if ! _k8s_have_cert front-proxy-ca; then
    _k8s_ca front-proxy-ca tributary-e2e-front-proxy-ca && new_fp=1 || return 1
  fi
  if [[ $new_ca == 1 ]] || ! _k8s_have_cert apiserver; then
    _k8s_cert ca apiserver "/CN=kube-apiserver" "extendedKeyUsage = serverAuth" \
      "subjectAltName = IP:127.0.0.1, DNS:localhost, IP:10.0.0.1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local" || return 1
  fi
  if [[ $new_ca == 1 ]] || ! _k8s_have_cert admin; then
    _k8s_cert ca admin "/O=system:masters/CN=admin" "extendedKeyUsage = clientAuth" || return 1
    rm -f "$K8S_KUBECONFIG"
  fi
  if [[ $new_ca == 1 ]] || ! _k8s_have_cert kube-controller-manager; then
    _k8s_cert ca kube-controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage = clientAuth" || return 1
  fi
  # The node agents' log endpoint (the kubelet's `containerLogs`, all agents on 127.0.0.1) and
  # the apiserver's client certificate for it: `pods/log` goes through them.
  if [[ $new_ca == 1 ]] || ! _k8s_have_cert node-agent-serving; then
    _k8s_cert ca node-agent-serving "/CN=tributary-node-agent" "extendedKeyUsage = serverAuth" \
      "subjectAltName = IP:127.0.0.1, DNS:localhost" || return 1
  fi
  if [[ $new_ca == 1 ]] || ! _k8s_have_cert apiserver-kubelet-client; then
    _k8s_cert ca apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage = clientAuth" || return 1
  fi
  if [[ $new_fp == 1 ]] || ! _k8s_have_cert front-proxy-client; then
    _k8s_cert front-proxy-ca front-proxy-client "/CN=front-proxy-client" "extendedKeyUsage = clientAuth" || return 1
  fi
  if ! [[ -s "$d/sa.key" && -s "$d/sa.pub" ]]; then
    openssl genrsa -out "$d/sa.key" 2048 2>/dev/null &&
    openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null || return 1
  fi
  chmod 600 "$d"/*.key
}

# _k8s_kubeconfig <file> <user> <cert> <key>: kubeconfig with embedded certs.
_k8s_kubeconfig() {
  local file=$1 user=$2 crt=$3 key=$4 tmp="$1.tmp.$$"
  cat > "$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tributary-e2e
  cluster:
    server: $K8S_API_URL
    certificate-authority-data: $(base64 -w0 < "$K8S_PKI_DIR/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 < "$crt")
    client-key-data: $(base64 -w0 < "$key")
contexts:
- name: tributary-e2e
  context:
    cluster: tributary-e2e
    user: $user
    namespace: default
current-context: tributary-e2e
EOF
  chmod 600 "$tmp" && mv -f "$tmp" "$file"
}

# ---------------------------------------------------------------------------- processes

_k8s_pidfile() { echo "$K8S_STATE_DIR/pids/$1.pid"; }

# _k8s_pid <name>: prints the pid and succeeds if the process is running.
_k8s_pid() {
  local f pid exe
  f="$(_k8s_pidfile "$1")"
  [[ -s "$f" ]] || return 1
  pid="$(cat "$f" 2>/dev/null)"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)"   # guard against pid reuse
  [[ "$(basename "${exe% (deleted)}")" == "$1" ]] || return 1
  echo "$pid"
}

# _k8s_start <name> <binary> <args...>: starts detached (own session), survives the caller.
_k8s_start() {
  local name=$1 bin=$2; shift 2
  local log="$K8S_STATE_DIR/logs/$name.log" pidf
  pidf="$(_k8s_pidfile "$name")"
  mkdir -p "$K8S_STATE_DIR/logs" "$K8S_STATE_DIR/pids" || return 1
  rm -f "$pidf"
  echo "=== $(date -u +%FT%TZ) starting $name" >> "$log"
  setsid nohup bash -c 'echo $$ > "$0"; exec "$@"' "$pidf" "$bin" "$@" >> "$log" 2>&1 < /dev/null &
  local i
  for ((i = 0; i < 50; i++)); do [[ -s "$pidf" ]] && return 0; sleep 0.1; done
  _k8s_log "$name did not start"; return 1
}

# _k8s_wait <seconds> <what> <command...>: retries the command until it succeeds.
_k8s_wait() {
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= end)); then _k8s_log "timed out after ${t}s waiting for $what"; return 1; fi
    sleep 0.25
  done
}

_k8s_etcd_healthy() { curl -fsS --max-time 2 "$K8S_ETCD_URL/health" | grep -q '"health":"true"'; }
_k8s_readyz() {
  curl -fsS --max-time 3 --cacert "$K8S_PKI_DIR/ca.crt" --cert "$K8S_PKI_DIR/admin.crt" \
    --key "$K8S_PKI_DIR/admin.key" "$K8S_API_URL/readyz" 2>/dev/null
}
_k8s_ready() { [[ "$(_k8s_readyz)" == ok ]]; }
_k8s_alive() { _k8s_pid "$1" >/dev/null || { _k8s_log "$1 exited, see $K8S_STATE_DIR/logs/$1.log:"; tail -n 20 "$K8S_STATE_DIR/logs/$1.log" >&2; return 2; }; }
_k8s_default_sa() { _k8s_alive kube-controller-manager || return 0; "$KUBECTL" --kubeconfig "$K8S_KUBECONFIG" -n default get serviceaccount default; }

_k8s_start_etcd() {
  _k8s_pid etcd >/dev/null && return 0
  mkdir -p "$K8S_ETCD_DATA" && chmod 700 "$K8S_ETCD_DATA" || return 1
  # shellcheck disable=SC2086
  _k8s_start etcd "$ETCD_BIN" \
    --name=tributary-e2e \
    --data-dir="$K8S_ETCD_DATA" \
    --listen-client-urls="$K8S_ETCD_URL" \
    --advertise-client-urls="$K8S_ETCD_URL" \
    --listen-peer-urls="http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
    --initial-cluster="tributary-e2e=http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --unsafe-no-fsync=true \
    --quota-backend-bytes=$((1024 * 1024 * 1024)) \
    --log-level=warn \
    ${K8S_ETCD_EXTRA_ARGS:-}
}

_k8s_start_apiserver() {
  _k8s_pid kube-apiserver >/dev/null && return 0
  local p="$K8S_PKI_DIR"
  # --enable-aggregator-routing: webhooks/aggregated APIs are reached at endpoint (pod) IPs,
  # never at a ClusterIP in $K8S_SERVICE_CIDR (nothing routes that range here).
  # --endpoint-reconciler-type=none: the `kubernetes` Service cannot have 127.0.0.1 as an
  # endpoint (loopback is rejected); in-pod clients must use KUBERNETES_SERVICE_HOST=127.0.0.1
  # and KUBERNETES_SERVICE_PORT=$K8S_API_PORT (set by whatever runs the pod).
  # shellcheck disable=SC2086
  _k8s_start kube-apiserver "$K8S_BIN_DIR/kube-apiserver" \
    --advertise-address=127.0.0.1 \
    --bind-address=127.0.0.1 \
    --secure-port="$K8S_API_PORT" \
    --etcd-servers="$K8S_ETCD_URL" \
    --client-ca-file="$p/ca.crt" \
    --tls-cert-file="$p/apiserver.crt" \
    --tls-private-key-file="$p/apiserver.key" \
    --authorization-mode=Node,RBAC \
    --anonymous-auth=true \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$p/sa.pub" \
    --service-account-signing-key-file="$p/sa.key" \
    --service-cluster-ip-range="$K8S_SERVICE_CIDR" \
    --enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,NodeRestriction,DefaultTolerationSeconds,Priority,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ResourceQuota \
    --allow-privileged=true \
    --enable-aggregator-routing=true \
    --endpoint-reconciler-type=none \
    --requestheader-client-ca-file="$p/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$p/front-proxy-client.crt" \
    --proxy-client-key-file="$p/front-proxy-client.key" \
    --kubelet-client-certificate="$p/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$p/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$p/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --profiling=false \
    ${K8S_APISERVER_EXTRA_ARGS:-}
}

_k8s_start_kcm() {
  _k8s_pid kube-controller-manager >/dev/null && return 0
  local p="$K8S_PKI_DIR" kc="$K8S_STATE_DIR/k8s/kube-controller-manager.kubeconfig"
  _k8s_kubeconfig "$kc" system:kube-controller-manager "$p/kube-controller-manager.crt" "$p/kube-controller-manager.key" || return 1
  # shellcheck disable=SC2086
  _k8s_start kube-controller-manager "$K8S_BIN_DIR/kube-controller-manager" \
    --kubeconfig="$kc" \
    --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 \
    --secure-port="$K8S_KCM_PORT" \
    --controllers='*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$p/sa.key" \
    --root-ca-file="$p/ca.crt" \
    --cluster-signing-cert-file="$p/ca.crt" \
    --cluster-signing-key-file="$p/ca.key" \
    --service-cluster-ip-range="$K8S_SERVICE_CIDR" \
    --leader-elect=false \
    --profiling=false \
    ${K8S_KCM_EXTRA_ARGS:-}
}

# k8s_up: build if needed, start etcd, kube-apiserver, kube-controller-manager (no-op for
# those already running), write $K8S_KUBECONFIG, wait for /readyz and the default SA.
k8s_up() {
  _k8s_vars
  local t0=$SECONDS timeout=${K8S_UP_TIMEOUT:-120}
  k8s_build || return 1
  mkdir -p "$K8S_STATE_DIR/logs" "$K8S_STATE_DIR/pids" "$K8S_STATE_DIR/k8s" || return 1
  _k8s_pki || return 1
  [[ -s "$K8S_KUBECONFIG" ]] ||
    _k8s_kubeconfig "$K8S_KUBECONFIG" admin "$K8S_PKI_DIR/admin.crt" "$K8S_PKI_DIR/admin.key" || return 1

  _k8s_start_etcd || return 1
  _k8s_wait "$timeout" "etcd health at $K8S_ETCD_URL" _k8s_etcd_healthy_or_dead || { k8s_status >&2; return 1; }
  _k8s_alive etcd || return 1
  _k8s_start_apiserver || return 1
  _k8s_wait "$timeout" "kube-apiserver /readyz at $K8S_API_URL" _k8s_ready_or_dead || { k8s_status >&2; return 1; }
  _k8s_alive kube-apiserver || return 1
  _k8s_start_kcm || return 1
  _k8s_wait "$timeout" "ServiceAccount default/default (controller-manager)" _k8s_default_sa || { k8s_status >&2; return 1; }
  _k8s_alive kube-controller-manager || return 1
  _k8s_log "up in $((SECONDS - t0))s: $K8S_API_URL, KUBECONFIG=$K8S_KUBECONFIG"
}
# Fail fast (stop waiting) when the process died; otherwise report readiness.
_k8s_etcd_healthy_or_dead() { _k8s_alive etcd || return 0; _k8s_etcd_healthy; }
_k8s_ready_or_dead() { _k8s_alive kube-apiserver || return 0; _k8s_ready; }

# k8s_down: SIGTERM, then SIGKILL after $K8S_STOP_TIMEOUT s. K8S_WIPE=1 also removes the
# etcd data, PKI, kubeconfigs and logs of these processes. Idempotent.
k8s_down() {
  _k8s_vars
  local name pid i t=${K8S_STOP_TIMEOUT:-5}
  for name in kube-controller-manager kube-apiserver etcd; do
    if pid="$(_k8s_pid "$name")"; then
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < t * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        _k8s_log "$name (pid $pid) ignored SIGTERM, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
    fi
    rm -f "$(_k8s_pidfile "$name")"
  done
  if [[ "${K8S_WIPE:-0}" == 1 ]]; then
    rm -rf "$K8S_STATE_DIR/k8s" "$K8S_KUBECONFIG"
    for name in "${K8S_PROCS[@]}"; do rm -f "$K8S_STATE_DIR/logs/$name.log"; done
  fi
  return 0
}

# k8s_status: one line per process, then apiserver readyz. Returns 0 only if all is up
# (so under `set -e` call it as `k8s_status || true` when only printing).
k8s_status() {
  _k8s_vars
  local name pid rss rc=0 r
  for name in "${K8S_PROCS[@]}"; do
    if pid="$(_k8s_pid "$name")"; then
      rss="$(awk '/^VmRSS:/ { printf "%d MiB", $2 / 1024 }' "/proc/$pid/status" 2>/dev/null)"
      printf '%-24s running pid=%s rss=%s\n' "$name" "$pid" "$rss"
    else
      printf '%-24s stopped\n' "$name"; rc=1
    fi
  done
  r="$(_k8s_readyz)" || true; [[ "$r" == ok ]] || { r="not ready${r:+ ($r)}"; rc=1; }
  printf '%-24s %s (%s)\n' "apiserver-readyz" "$r" "$K8S_API_URL"
  return $rc
}

# k8s_env: prints exports for a shell (eval "$(bash e2e/stack/k8s.sh k8s_env)").
k8s_env() {
  _k8s_vars
  printf 'export KUBECONFIG=%q\n' "$K8S_KUBECONFIG"
  printf 'export PATH=%q:%q:%q:"$PATH"\n' "$K8S_BIN_DIR" "$(dirname "$HELM_BIN")" "$(dirname "$ETCD_BIN")"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -uo pipefail
  case "${1:-}" in
    k8s_build | k8s_up | k8s_down | k8s_status | k8s_env) "$@" ;;
    *) echo "usage: $0 {k8s_build|k8s_up|k8s_down|k8s_status|k8s_env}" >&2; exit 2 ;;
  esac
fi
