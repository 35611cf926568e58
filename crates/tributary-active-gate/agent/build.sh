#!/usr/bin/env bash
# Builds tributary-gate-agent.jar (the warm-standby Java agent, docs/active-gate.md) into
# OUT_DIR (default: the cargo target dir's gate-agent/); prints the jar's path. Rebuilds only
# when a source is newer than the jar. Needs a JDK (javac, jar; 11 or later).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
OUT="${1:-${CARGO_TARGET_DIR:-$REPO/target}/gate-agent}"
JAR="$OUT/tributary-gate-agent.jar"
if [[ -f "$JAR" ]] && [[ -z "$(find "$HERE/src" "$HERE/MANIFEST.MF" -newer "$JAR" -print -quit)" ]]; then
  echo "$JAR"
  exit 0
fi
command -v javac >/dev/null && command -v jar >/dev/null ||
  { echo "building the gate agent needs a JDK (javac and jar on PATH)" >&2; exit 1; }
CLASSES="$(mktemp -d)"
trap 'rm -rf "$CLASSES"' EXIT
mkdir -p "$OUT"
javac --release 11 -Xlint:all -Werror -d "$CLASSES" $(find "$HERE/src" -name '*.java')
jar --create --file "$JAR.tmp" --manifest "$HERE/MANIFEST.MF" -C "$CLASSES" .
mv "$JAR.tmp" "$JAR"
echo "$JAR"
