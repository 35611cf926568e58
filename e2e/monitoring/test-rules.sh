#!/usr/bin/env bash
# Unit tests of the chart's alerts: renders the PrometheusRule exactly as `helm install` would
# (release `tributary` in `tributary-system`, default thresholds), takes its rule groups, and
# runs `promtool check rules` and `promtool test rules` with e2e/monitoring/rules-test.yaml;
# then checks that every query of the chart's Grafana dashboard parses.
# helm and promtool are the pinned builds of `make tools` (e2e/helm, e2e/promtool).
#     bash e2e/monitoring/test-rules.sh [extra promtool test rules flags, e.g. --debug]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=../stack/k8s.sh
source "$repo/e2e/stack/k8s.sh" >/dev/null
_k8s_vars
for bin in "$HELM_BIN" "$PROMTOOL_BIN"; do
  [[ -x "$bin" ]] || { echo "monitoring-test: $bin is missing: run 'make tools'" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$HELM_BIN" template tributary "$repo/charts/tributary" --namespace tributary-system \
  --set metrics.prometheusRule.enabled=true --show-only templates/prometheusrule.yaml > "$work/rule.yaml"
# The PrometheusRule's `spec:` is its last key: its body, one level out, is a rule file.
awk 'body { sub(/^  /, ""); print } /^spec:$/ { body = 1 }' "$work/rule.yaml" > "$work/rules.yaml"
head -1 "$work/rules.yaml" | grep -qx 'groups:' || {
  echo "monitoring-test: the rendered PrometheusRule has no spec.groups as its last key:" >&2
  cat "$work/rule.yaml" >&2; exit 1; }
cp "$here/rules-test.yaml" "$work/"
# The optional values (alert labels, runbook links, other thresholds) render valid rules too.
"$HELM_BIN" template tributary "$repo/charts/tributary" --namespace tributary-system \
  --set metrics.prometheusRule.enabled=true --set metrics.prometheusRule.alertLabels.team=kafka \
  --set metrics.prometheusRule.runbookUrl=https://runbooks.example/tributary \
  --set metrics.prometheusRule.routeLagFor=1h --set-json metrics.prometheusRule.standbySyncAgeSeconds=12.5 \
  --show-only templates/prometheusrule.yaml |
  awk 'body { sub(/^  /, ""); print } /^spec:$/ { body = 1 }' > "$work/rules-options.yaml"
"$PROMTOOL_BIN" check rules "$work/rules-options.yaml"
grep -q 'runbook_url: https://runbooks.example/tributary#tributaryregiondown' "$work/rules-options.yaml" || {
  echo "monitoring-test: runbookUrl does not reach the alerts" >&2; exit 1; }

cd "$work"
"$PROMTOOL_BIN" check rules rules.yaml
"$PROMTOOL_BIN" test rules "$@" rules-test.yaml

# Every query of the dashboard parses as PromQL: each `"expr"` of the JSON (one line each) as a
# recording rule, with Grafana's variables replaced by values of their kind.
"$HELM_BIN" template tributary "$repo/charts/tributary" --namespace tributary-system \
  --set metrics.grafanaDashboard.enabled=true --show-only templates/grafana-dashboard.yaml > "$work/dashboard.yaml"
exprs="$(grep -oE '"expr": "([^"\\]|\\.)*"' "$work/dashboard.yaml" | sed -E 's/^"expr": "//; s/"$//; s/\\"/"/g; s/\\\\/\\/g' |
  sed -E 's/\$__rate_interval/1m/g; s/\$__range/1h/g; s/\$(namespace|failover)/.*/g')"
[[ -n "$exprs" ]] || { echo "monitoring-test: no queries found in the rendered dashboard" >&2; exit 1; }
{ echo "groups:"; echo "  - name: dashboard"; echo "    rules:"
  q="'" n=0; while IFS= read -r e; do n=$((n + 1))
    printf "      - record: dashboard:query:%d\n        expr: '%s'\n" "$n" "${e//$q/$q$q}"
  done <<<"$exprs"; } > "$work/dashboard-queries.yaml"
"$PROMTOOL_BIN" check rules --lint=none "$work/dashboard-queries.yaml"

# Every alert of the chart has at least one test case.
alerts="$(grep -oE '^ +- alert: [A-Za-z]+' rules.yaml | awk '{print $3}' | sort -u)"
tested="$(grep -oE 'alertname: [A-Za-z]+' rules-test.yaml | awk '{print $2}' | sort -u)"
untested="$(comm -23 <(echo "$alerts") <(echo "$tested"))"
[[ -z "$untested" ]] || { echo "monitoring-test: alerts without a promtool test: $untested" >&2; exit 1; }
echo "monitoring-test: $(echo "$alerts" | wc -l) alerts, $(grep -c 'alertname:' rules-test.yaml) alert checks in $(grep -c '^  - name:' rules-test.yaml) promtool test cases, $(echo "$exprs" | wc -l) dashboard queries: all green"
