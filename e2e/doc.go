// Package e2e is the end-to-end fault suite: the built binaries run as
// separate processes in a hot-warm topology, faults are injected from a
// seeded random schedule, and an invariant checker (internal/drill) goes over
// every answer the validators received.
//
// Topology (everything on 127.0.0.1; every arrow crosses a faultproxy that
// knows which region each process belongs to):
//
//	region-a:  fence-etcd etcd-a, fence-coordinator coord-a, fence-sidecar vN-a (active)
//	region-b:  fence-etcd etcd-b, fence-coordinator coord-b, fence-sidecar vN-b (standby)
//	region-c:  fence-etcd etcd-c (witness)
//	operator:  this test process (workload, observer) and fencectl
//
// The tests live in _test.go files: TestChaos and TestChaosLeaseMode (the
// fault schedule in strict and lease mode; make soak runs one of them long),
// TestPausedSidecarIsFenced and TestKilledSidecarKeepsWatermark (issue 3,
// behaviours 3 and 4). docs/drill.md describes faults and checks. Environment:
//
//	FENCE_E2E_SEED       seed of the fault schedule (default: random, printed)
//	FENCE_E2E_DURATION   run TestChaos this long instead of until 200 rounds
//	FENCE_E2E_LANES      run only these lanes of the schedule (comma-separated)
//	FENCE_E2E_KEEP       keep the binaries' build directory (for debugging)
package e2e
