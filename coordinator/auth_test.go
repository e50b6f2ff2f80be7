package coordinator_test

import (
	"context"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// tokens is a hand-written sidecar authenticator: a bearer token is the
// identity it maps to.
type tokens map[string]fencing.Identity

func (ts tokens) Authenticate(_ context.Context, tok string) (fencing.Identity, error) {
	if id, ok := ts[tok]; ok {
		return id, nil
	}
	return fencing.Identity{}, fencing.Errorf(fencing.CodeUnauthorized, "unknown token")
}

// Finding 3: a lease is bound to the authenticated caller. A region-b
// sidecar that learnt region-a's lease token (it is not a secret) can
// neither journal under it (a height near 2^62 would block region-a for
// ever), nor release it (shortening the drain), nor renew it, nor acquire in
// region-a's name; whatever the token or request body says about holder and
// sidecar, the credential decides.
func TestLeaseBoundToAuthenticatedCaller(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{Auth: tokens{
		"token-a": {Subject: "sa:a", Holder: "region-a", Sidecar: "a-0"},
		"token-b": {Subject: "sa:b", Holder: "region-b", Sidecar: "b-0"},
	}})
	ctx := context.Background()
	c.AddValidator(t, "val-1", "region-a")
	a, b := c.ClientWithToken(t, "token-a"), c.ClientWithToken(t, "token-b")
	g, err := a.Acquire(ctx, api.AcquireRequest{Validator: "val-1", Holder: "region-a", Sidecar: "a-0", TTLSeconds: 30})
	if err != nil {
		t.Fatal(err)
	}
	high := fencing.HRS{Height: 1 << 62, Step: fencing.StepCommit}

	// The token as issued, and rewritten to name B's holder and/or sidecar.
	forged := map[string]fencing.Lease{"as issued": g.Lease}
	for _, f := range []struct{ name, holder, sidecar string }{
		{"holder region-b", "region-b", "a-0"},
		{"sidecar b-0", "region-a", "b-0"},
		{"holder and sidecar of b", "region-b", "b-0"},
	} {
		l := g.Lease
		l.Holder, l.Sidecar = f.holder, f.sidecar
		forged[f.name] = l
	}
	for name, l := range forged {
		if _, err := b.JournalSignature(ctx, fencing.JournalRequest{Lease: l, HRS: high, Digest: fencing.Digest{9}}); err == nil {
			t.Errorf("B journaled %s under A's lease (token %s)", high, name)
		}
		if _, errs, err := b.JournalBatch(ctx, []fencing.JournalRequest{{Lease: l, HRS: high, Digest: fencing.Digest{9}}}); err == nil && errs[0] == nil {
			t.Errorf("B journaled (batch) %s under A's lease (token %s)", high, name)
		}
		if _, err := b.Renew(ctx, l, nil); err == nil {
			t.Errorf("B renewed A's lease (token %s)", name)
		}
		if err := b.Release(ctx, l, &fencing.Watermark{HRS: high}); err == nil {
			t.Errorf("B released A's lease (token %s)", name)
		}
		if err := b.CheckLease(ctx, l); err == nil {
			t.Errorf("B's lease check passed with A's lease (token %s)", name)
		}
	}
	if _, err := b.Acquire(ctx, api.AcquireRequest{Validator: "val-1", Holder: "region-a", Sidecar: "a-0", TTLSeconds: 30}); fencing.CodeOf(err) != fencing.CodeForbidden {
		t.Errorf("B acquired in A's name: %v, want forbidden", err)
	}

	// A's lease is intact, its watermark untouched, and A still journals.
	if err := a.CheckLease(ctx, g.Lease); err != nil {
		t.Fatalf("A's lease after B's attempts: %v", err)
	}
	st, err := c.Store.Status(ctx, "val-1")
	if err != nil || st.Watermark != nil {
		t.Fatalf("watermark after B's attempts = %+v, %v; want none", st.Watermark, err)
	}
	if _, err := a.JournalSignature(ctx, fencing.JournalRequest{Lease: g.Lease, HRS: fencing.HRS{Height: 1, Step: fencing.StepCommit}, Digest: fencing.Digest{1}}); err != nil {
		t.Fatalf("A's journal after B's attempts: %v", err)
	}

	// The epoch long poll needs a credential too.
	if _, _, err := c.Client.WatchEpoch(ctx, "val-1", 0, time.Millisecond); fencing.CodeOf(err) != fencing.CodeUnauthorized {
		t.Errorf("WatchEpoch without a token = %v, want unauthorized", err)
	}
	if _, _, err := b.WatchEpoch(ctx, "val-1", 0, time.Millisecond); err != nil {
		t.Errorf("WatchEpoch by the standby = %v", err)
	}
}
