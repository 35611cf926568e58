# Tributary — every command of the README is a target here.
# `make test` installs what it needs (idempotently), lints, runs the unit tests, checks the
# generated files, unit-tests the chart's alerts with promtool, brings up the local stack
# (real kube-apiserver + Kafka) and runs the e2e tests.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

REGIONS ?= east,west
REGION ?=
# COORDINATION=1: `stack-up` also starts the coordination plane (opt-in; docs/coordination.md).
COORDINATION ?= 0
# TOPOLOGY=per-region: a control plane per region, the coordination plane and a path of each
# region's own to it (docs/coordination.md, "Local stack"); stretched (default): one control plane.
TOPOLOGY ?= stretched
STACK := bash e2e/stack/stack.sh
COORDINATION_SH := bash e2e/stack/coordination.sh
STATE_DIR ?= $(CURDIR)/e2e/.state
ENV_FILE := $(STATE_DIR)/env
# Built by `make tools` from e2e/helm (pinned), cached under ~/.cache/tributary.
HELM = $(shell source e2e/stack/k8s.sh >/dev/null && _k8s_vars && echo $$HELM_BIN)
CARGO ?= cargo
# Where cargo puts its builds (CARGO_TARGET_DIR when set).
CARGO_TARGET := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: prereqs
prereqs: ## Install system packages and Rust components the build needs (idempotent).
	@bash e2e/prereqs.sh

.PHONY: tools
tools: prereqs ## Build/fetch the stack's pinned tools (etcd, kube-apiserver, kube-controller-manager, kubectl, helm, promtool, Kafka) into ~/.cache/tributary.
	@bash e2e/stack/k8s.sh k8s_build
	@bash e2e/stack/kafka.sh kafka_fetch

.PHONY: build
build: prereqs ## Build every crate (debug).
	$(CARGO) build --workspace --all-targets

.PHONY: crds
crds: ## Regenerate crds/ and the chart's copy from the API types.
	$(CARGO) run -q -p tributary -- crd --dir crds --dir charts/tributary/crds

.PHONY: check-generated
check-generated: crds ## Fail when crds/ or charts/tributary/crds differ from the generated output.
	@git diff --exit-code -- crds charts/tributary/crds || { echo "generated CRDs are stale: run 'make crds' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- crds charts/tributary/crds)" || { echo "untracked generated files under crds/: commit them" >&2; git status --porcelain -- crds charts/tributary/crds; exit 1; }

.PHONY: fmt
fmt: ## Format the code.
	$(CARGO) fmt --all

.PHONY: lint
lint: prereqs tools ## cargo fmt --check, clippy -D warnings, helm lint.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(HELM) lint --strict charts/tributary

.PHONY: monitoring-test
monitoring-test: tools ## The chart's monitoring: helm lint with it on, promtool check + test of every alert as the chart renders it.
	$(HELM) lint --strict charts/tributary --set metrics.serviceMonitor.enabled=true,metrics.podMonitor.enabled=true,metrics.prometheusRule.enabled=true,metrics.grafanaDashboard.enabled=true
	bash e2e/monitoring/test-rules.sh

.PHONY: unit-test
unit-test: prereqs ## Unit and property tests only (tests that need the stack say SKIPPED).
	TRIBUTARY_SKIP_E2E=1 $(CARGO) test --workspace

.PHONY: stack-up
stack-up: tools ## Start the local stack: REGIONS=east,west (default) or east,west,central; COORDINATION=1 adds the coordination plane; TOPOLOGY=per-region a control plane per region.
	$(CARGO) build -p tributary -p tributary-node-agent
	COORDINATION=$(COORDINATION) TOPOLOGY=$(TOPOLOGY) $(STACK) up $(REGIONS)

.PHONY: coordination-up
coordination-up: tools ## Start only the coordination plane: a kube-apiserver over a three-member etcd, one member per region (e2e/.state/coordination/).
	$(COORDINATION_SH) up

.PHONY: coordination-status
coordination-status: ## Show the coordination plane's etcd members and apiserver.
	$(COORDINATION_SH) status

.PHONY: coordination-break-glass
coordination-break-glass: ## The coordination quorum is gone for good: REGION=east's surviving etcd member becomes the whole cluster (docs/coordination.md, "Break-glass"); the others rejoin with region-up.
	@test -n "$(REGION)" || { echo "usage: make coordination-break-glass REGION=east" >&2; exit 2; }
	$(COORDINATION_SH) break-glass $(REGION)

.PHONY: coordination-down
coordination-down: ## Stop the coordination plane (data kept under e2e/.state/coordination).
	$(COORDINATION_SH) down

.PHONY: coordination-test
coordination-test: coordination-up ## The coordination plane on real processes: the Lease survives one etcd member's loss, not two; the operator (in the running stack) keeps and renews its Lease there.
	eval "$$($(COORDINATION_SH) env)" && \
	  $(CARGO) test -p tributary-e2e --test coordination_quorum -- --ignored
	source $(ENV_FILE) && eval "$$($(COORDINATION_SH) env)" && \
	  $(CARGO) test -p tributary-operator --test e2e_coordination -- --ignored

.PHONY: stack-status
stack-status: ## Show every process of the local stack.
	$(STACK) status

.PHONY: stack-down
stack-down: ## Stop the local stack (data is kept under e2e/.state).
	@# `make drill TOPOLOGY=per-region` runs an operator process per region: they go first.
	@if ls $(STATE_DIR)/drill/operators/*.pid >/dev/null 2>&1; then bash crates/tributary-cli/drill/per-region.sh operators-stop || true; fi
	$(STACK) down

.PHONY: region-down
region-down: ## Kill one region: REGION=east (node NotReady, its pods and Kafka clusters killed).
	@test -n "$(REGION)" || { echo "usage: make region-down REGION=east" >&2; exit 2; }
	$(STACK) region-down $(REGION)

.PHONY: region-up
region-up: ## Bring one region back: REGION=east.
	@test -n "$(REGION)" || { echo "usage: make region-up REGION=east" >&2; exit 2; }
	$(STACK) region-up $(REGION)

.PHONY: region-isolate
region-isolate: ## TOPOLOGY=per-region: cut only REGION=east's path to the coordination apiserver (packets dropped); the region keeps running.
	@test -n "$(REGION)" || { echo "usage: make region-isolate REGION=east" >&2; exit 2; }
	$(STACK) region-isolate $(REGION)

.PHONY: region-heal
region-heal: ## TOPOLOGY=per-region: restore REGION=east's path to the coordination apiserver.
	@test -n "$(REGION)" || { echo "usage: make region-heal REGION=east" >&2; exit 2; }
	$(STACK) region-heal $(REGION)

.PHONY: per-region-test
per-region-test: ## Bring up TOPOLOGY=per-region (REGIONS=east,west): the stack's own test on its real processes, then per-region operators failing over through the shared Lease (the short drill on it is per-region-drill, not part of make test: CI's time budget).
	$(MAKE) stack-up TOPOLOGY=per-region REGIONS=$(REGIONS)
	source $(ENV_FILE) && $(CARGO) test -p tributary-e2e --test per_region_stack -- --ignored --test-threads=1 --nocapture
	source $(ENV_FILE) && $(CARGO) test -p tributary-operator --test e2e_per_region -- --ignored

.PHONY: per-region-drill
per-region-drill: ## On a running TOPOLOGY=per-region stack, the short drill (after per-region-test, or alone): region-isolate then region-down at the tight settings; fails on any failed verdict; the drill's namespace and operators removed after.
	$(CARGO) build -q -p tributary-cli
	FAILOVER=tight bash crates/tributary-cli/drill/per-region.sh setup
	@mkdir -p $(STATE_DIR)/drill
	rc=0; DRILL_BIN=$(CARGO_TARGET)/debug/kubectl-tributary bash crates/tributary-cli/drill/per-region.sh drill --group billing \
	  --drills 2 --faults region-isolate,region-down --in-order --seed 1 --report $(STATE_DIR)/drill/per-region-drill.json || rc=$$?; \
	  bash crates/tributary-cli/drill/per-region.sh clean; exit $$rc

.PHONY: e2e
e2e: stack-up demo-clean ## Every test of the workspace (unit, property, e2e) against the running stack; the Kafka-only crates' tests beside the operator's (e2e/test-on-stack.sh); bench_reconcile with a 1-minute window (bench-reconcile: the full one).
	source $(ENV_FILE) && TRIBUTARY_BENCH_WINDOW_SECS=$${TRIBUTARY_BENCH_WINDOW_SECS:-60} CARGO=$(CARGO) bash e2e/test-on-stack.sh

.PHONY: bench-reconcile
bench-reconcile: stack-up demo-clean ## The operator's steady-state cost (bench_reconcile) with its full 1-minute warm-up and 2-minute window; results in BENCHMARKS.md.
	source $(ENV_FILE) && $(CARGO) test -p tributary-operator --test bench_reconcile -- --nocapture

.PHONY: test
test: lint check-generated monitoring-test e2e per-region-test ## Everything: lint, generated files, alert rule tests, unit and e2e tests on the real stack, then the per-region topology (TOPOLOGY=per-region) and its failover test.
	@echo "make test: all green"

.PHONY: demo
demo: ## Tributary on a three-region local stack: chart installed, examples applied, records replicated.
	$(MAKE) stack-up REGIONS=east,west,central
	bash e2e/demo.sh

.PHONY: demo-clean
demo-clean: ## Remove what `make demo` installed (the e2e tests install operators of their own).
	@# The namespace goes first and is waited for, while the operator still runs: a stream with
	@# deletionPolicy Delete needs it for its finalizer, and a `make demo` right after must not
	@# find the namespace still terminating.
	@if [ -f $(ENV_FILE) ]; then source $(ENV_FILE); \
	  "$$TRIBUTARY_KUBECTL" delete namespace tributary-demo --ignore-not-found --timeout=180s >/dev/null; \
	  "$$TRIBUTARY_HELM" uninstall tributary --namespace tributary-system --ignore-not-found --wait >/dev/null; fi

DRILLS ?= 10
SEED ?= 1
# GROUP=fraud-scoring drills the example's ActiveActive group (its fault: primary-kill), with
# --force: its manifest sets activeRegion (kubectl apply owns the field), which the drill
# re-points at the new primary after each restore.
GROUP ?= billing
ACTIVE_PASSIVE_FAULTS := region-down,switchover,failback
# TOPOLOGY=per-region: a cluster and an operator per region; region-isolate (the active
# region cut off from the coordination apiserver) is one of its default faults.
PER_REGION_FAULTS := region-down,switchover,failback,region-isolate
FAULTS ?= $(if $(filter fraud-scoring,$(GROUP)),primary-kill,$(if $(filter per-region,$(TOPOLOGY)),$(PER_REGION_FAULTS),$(ACTIVE_PASSIVE_FAULTS)))
# A broker restarted by a fault can load members of the group that nothing owns and never
# expires (docs/failover.md, "StandbyHasMembers"): the drill restarts it cleanly and reports it.
STANDBY_MEMBERS_REPAIR := bash e2e/stack/kafka.sh kafka_stop {region}-aggregate && bash e2e/stack/kafka.sh kafka_start {region}-aggregate
DRILL_ARGS = --drills $(DRILLS) --faults $(FAULTS) --seed $(SEED) \
  --report $(STATE_DIR)/drill/report.json --timeline $(STATE_DIR)/drill/timeline.svg
.PHONY: drill
drill: demo-clean ## DR drills on the three-region example: DRILLS=10 random faults (FAULTS=region-down,switchover,failback, SEED=1; FAILOVER=tight for 1s/2/5s; STANDBY=warm: consumers wait behind the active gate (standbyReplicas); GROUP=fraud-scoring: the ActiveActive group, FAULTS=primary-kill; TOPOLOGY=per-region: a cluster and an operator per region, REGIONS=east,west, FAULTS also region-isolate); report and timeline in e2e/.state/drill/ (docs/drill.md).
ifeq ($(TOPOLOGY),per-region)
	$(MAKE) stack-up TOPOLOGY=per-region REGIONS=$(REGIONS)
	$(CARGO) build -q -p tributary-cli
	bash crates/tributary-cli/drill/per-region.sh setup
	@mkdir -p $(STATE_DIR)/drill
	DRILL_BIN=$(CARGO_TARGET)/debug/kubectl-tributary bash crates/tributary-cli/drill/per-region.sh drill --group billing $(DRILL_ARGS)
else
	$(MAKE) stack-up REGIONS=east,west,central
	$(CARGO) build -q -p tributary-cli
	DRILL_GROUP=$(GROUP) bash crates/tributary-cli/drill/example.sh
	@mkdir -p $(STATE_DIR)/drill
	source $(ENV_FILE) && $(CARGO_TARGET)/debug/kubectl-tributary -n $${DRILL_NAMESPACE:-tributary-drill} drill --group $(GROUP) \
	  $(DRILL_ARGS) $(if $(filter fraud-scoring,$(GROUP)),--force) \
	  --standby-members-repair-cmd '$(STANDBY_MEMBERS_REPAIR)'
endif

.PHONY: bench-translate
bench-translate: ## Offset translation benchmark: 1000 partitions x 3 sources over a day of 1 s checkpoints; fails above 50 ms (median) or 64 MiB of index.
	$(CARGO) bench -q -p tributary-core --bench translate

.PHONY: bench-failover-plan
bench-failover-plan: stack-up ## Failover plan at scale: a week of checkpoints for 1000 partitions x 3 sources, cold --once --final to verified commit (release build); fails above 2 s or when not exact.
	$(CARGO) build -q --release -p tributary-checkpoint-sync --bin tributary-checkpoint-sync
	source $(ENV_FILE) && TRIBUTARY_SYNC_BIN=$(CARGO_TARGET)/release/tributary-checkpoint-sync \
	  $(CARGO) test -q -p tributary-checkpoint-sync --test failover_plan -- --ignored --nocapture

.PHONY: bench-failover
bench-failover: stack-up demo-clean ## Failover benchmark: automatic RTO over RUNS=5 region losses at default and tight settings, planned switchover; results in BENCHMARKS.md.
	source $(ENV_FILE) && RUNS=$${RUNS:-5} $(CARGO) test -q -p tributary-operator --test bench_failover -- --ignored --nocapture

.PHONY: bench-replicator
bench-replicator: ## Replicator benchmark: ours (both modes) vs MirrorMaker 2 vs producer-perf ceiling; results in BENCHMARKS.md.
	bash e2e/bench/replicator.sh
