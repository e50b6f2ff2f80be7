//go:build !linux

package sidecar

import "errors"

var errGateLinuxOnly = errors.New("--gate-exec needs Linux: process groups, PR_SET_PDEATHSIG and a child subreaper")

func newGroupLauncher(argv, validatorArgs, followerArgs []string) (launcher, error) {
	return nil, errGateLinuxOnly
}

func checkMemoryBacked(dir string) error { return errGateLinuxOnly }
