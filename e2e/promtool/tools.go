//go:build tools

// Package tools records the promtool main package this module builds, so `go mod tidy` keeps
// its dependencies in go.mod/go.sum. Build with e2e/stack/k8s.sh (k8s_build).
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
