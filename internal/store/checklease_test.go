package store

import (
	"context"
	"testing"

	"github.com/validator-fencing/fencing/internal/etcdtest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// CheckLease is strict mode's check before a signature that has no HRS (a
// bare digest: Web3Signer eth1 data, Clef, the Besu plugin's every
// signature): it succeeds only while this very lease is held under the active
// epoch, so a sidecar that has not yet heard of a freeze, a release or a newer
// lease of its own is refused by etcd.
func TestCheckLease(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx := context.Background()
	addValidator(t, s, "val-1", "region-a")

	first, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 5)
	if err != nil {
		t.Fatalf("Acquire = %v", err)
	}
	if err := s.CheckLease(ctx, first.Lease); err != nil {
		t.Fatalf("CheckLease(held lease) = %v, want nil", err)
	}
	if err := s.Release(ctx, first.Lease, nil); err != nil {
		t.Fatalf("Release = %v", err)
	}
	wantCode(t, "CheckLease(released lease)", s.CheckLease(ctx, first.Lease), fencing.CodeFenced)

	second, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 5)
	if err != nil {
		t.Fatalf("Acquire again = %v", err)
	}
	wantCode(t, "CheckLease(the sidecar's earlier lease)", s.CheckLease(ctx, first.Lease), fencing.CodeFenced)
	if err := s.CheckLease(ctx, second.Lease); err != nil {
		t.Fatalf("CheckLease(new lease) = %v, want nil", err)
	}

	if _, err := s.Freeze(ctx, "val-1", 1, change); err != nil {
		t.Fatalf("Freeze = %v", err)
	}
	wantCode(t, "CheckLease after freeze", s.CheckLease(ctx, second.Lease), fencing.CodeStaleEpoch)
}
