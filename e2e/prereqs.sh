#!/usr/bin/env bash
# Installs what building and testing Tributary needs beyond the base toolchains (Rust, Go,
# Java, Maven, cmake): Debian packages and Rust components. Idempotent and quiet when done.
set -euo pipefail

# libcurl4-openssl-dev: librdkafka 2.12 includes <curl/curl.h> (header only) even when built without curl.
# socat, nftables: the per-region stack's coordination paths and their isolation (e2e/stack/per-region.sh).
need_pkgs=()
for pkg in pkg-config libssl-dev zlib1g-dev openssl cmake util-linux procps iproute2 libcurl4-openssl-dev socat nftables; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$pkg")
done
if ((${#need_pkgs[@]})); then
  echo "[prereqs] installing ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

for tool in go java javac jar mvn cargo; do
  command -v "$tool" >/dev/null || { echo "[prereqs] $tool is missing: install it (see README: what a fresh machine needs)" >&2; exit 1; }
done

installed="$(rustup component list --installed 2>/dev/null || true)"
for comp in rustfmt clippy; do
  grep -q "^$comp" <<<"$installed" || rustup component add "$comp"
done
