//go:build !linux

package sidecar

import "errors"

var errGateLinuxOnly = errors.New("--gate-exec needs Linux: process groups, PR_SET_PDEATHSIG and a child subreaper")

type watchdogOptions struct {
	logJSON bool
	keyFile string
}

func newGroupLauncher(argv, validatorArgs, followerArgs []string, wd watchdogOptions) (launcher, error) {
	return nil, errGateLinuxOnly
}

// GateWatchdog is Linux's only: ok is always false here.
func GateWatchdog(args []string) (code int, ok bool) { return 0, false }

func checkMemoryBacked(dir string) error { return errGateLinuxOnly }
