package kubetest

import "syscall"

// sysProcAttr kills the API server when the test process dies without
// running its cleanups (a panic, a timeout, kill -9).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
