//go:build tools

// Package tools records the main packages this module builds, so `go mod tidy` keeps
// their dependencies in go.mod/go.sum. Build with e2e/stack/k8s.sh (k8s_build).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
