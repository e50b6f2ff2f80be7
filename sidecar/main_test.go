package sidecar

import (
	"os"
	"testing"
)

// TestMain lets the gate's process tests start this test binary as a
// validator's watchdog, as fence-sidecar's main does.
func TestMain(m *testing.M) {
	if code, ok := GateWatchdog(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}
