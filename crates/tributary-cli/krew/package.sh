#!/usr/bin/env bash
# Builds the krew archive of `kubectl tributary` and renders its manifest:
#   bash crates/tributary-cli/krew/package.sh [OUT_DIR] [URI]
# OUT_DIR (default dist/krew) gets kubectl-tributary-linux-amd64.tar.gz and tributary.yaml
# with the archive's sha256; URI (default: the archive's file:// path) is where the release
# serves it. Install from the two files without an index:
#   kubectl krew install --manifest=dist/krew/tributary.yaml --archive=dist/krew/kubectl-tributary-linux-amd64.tar.gz
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
OUT="${1:-$REPO/dist/krew}"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cargo build --release -p tributary-cli --manifest-path "$REPO/Cargo.toml"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
cp "$TARGET/release/kubectl-tributary" "$STAGE/"
# Apache-2.0, as Cargo.toml declares; krew wants the licence in the archive.
if [[ -f "$REPO/LICENSE" ]]; then cp "$REPO/LICENSE" "$STAGE/"; else
  printf 'Apache License 2.0: https://www.apache.org/licenses/LICENSE-2.0\n' >"$STAGE/LICENSE"; fi
ARCHIVE="$OUT/kubectl-tributary-linux-amd64.tar.gz"
tar -C "$STAGE" -czf "$ARCHIVE" kubectl-tributary LICENSE
SHA256="$(sha256sum "$ARCHIVE" | cut -d' ' -f1)"
URI="${2:-file://$ARCHIVE}"
sed -e "s|\${VERSION}|$VERSION|" -e "s|\${URI}|$URI|" -e "s|\${SHA256}|$SHA256|" \
  "$REPO/crates/tributary-cli/krew/tributary.yaml" >"$OUT/tributary.yaml"
echo "$OUT/tributary.yaml ($VERSION, sha256 $SHA256)"
