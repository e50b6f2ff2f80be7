//go:build tools

// Package tools pins k8s.io/kubernetes/cmd/kube-apiserver in this module's
// go.mod; build.sh builds that command.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
