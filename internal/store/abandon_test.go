package store

import (
	"context"
	"strings"
	"testing"

	"github.com/validator-fencing/fencing/internal/etcdtest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// A stuck height after a non-cooperative failover: region-a journaled a
// seal at height 8 and died before publishing it; region-b is refused at 8
// for ever. An operator abandons 8 (only while fenced, only a signature of
// an earlier epoch, recorded with who and why) and region-b seals 8 with its
// own digest; nothing below 8 is ever allowed again.
func TestAbandonStuckHeight(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx := context.Background()
	addValidator(t, s, "val-1", "region-a")
	g, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 30)
	if err != nil {
		t.Fatal(err)
	}
	block := func(h uint64) fencing.HRS { return fencing.HRS{Height: h, Step: fencing.StepBlock} }
	for h := uint64(1); h <= 8; h++ {
		if _, err := s.Journal(ctx, fencing.JournalRequest{Lease: g.Lease, HRS: block(h), Digest: fencing.Digest{byte(h)}}); err != nil {
			t.Fatal(err)
		}
	}
	abandon := func() error {
		_, err := s.Abandon(ctx, "val-1", block(8), fencing.Change{By: "alice", Reason: "INC-7: height 8 never published"})
		return err
	}
	wantCode(t, "Abandon while region-a holds its lease", abandon(), fencing.CodeConflict)

	// The failover: region-a's lease ends (here released), region-b gets
	// epoch 2 and is refused at 8.
	if _, err := s.StartBump(ctx, "val-1", 1, "region-b", change, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, g.Lease, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reconcile(ctx, "val-1"); err != nil {
		t.Fatal(err)
	}
	gb, err := s.Acquire(ctx, "val-1", "region-b", "b-0", 30)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Journal(ctx, fencing.JournalRequest{Lease: gb.Lease, HRS: block(8), Digest: fencing.Digest{0xbb}})
	wantCode(t, "region-b at the stuck height", err, fencing.CodeWatermark)
	if !strings.Contains(err.Error(), "by a-0 under epoch 1") || !strings.Contains(err.Error(), "abandons it") {
		t.Fatalf("the stuck height's refusal = %q; want it to name who signed and the way out", err)
	}
	wantCode(t, "Abandon while region-b is active", abandon(), fencing.CodeConflict)

	// freeze, abandon, unfreeze
	if _, err := s.Freeze(ctx, "val-1", 2, change); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, gb.Lease, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reconcile(ctx, "val-1"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Abandon(ctx, "val-1", block(7), change)
	wantCode(t, "Abandon below the watermark", err, fencing.CodeConflict)
	if err := abandon(); err != nil {
		t.Fatalf("Abandon(8) while fenced = %v", err)
	}
	evs, err := s.Events(ctx, "val-1", 1)
	if err != nil || evs[0].Kind != fencing.EventAbandoned || evs[0].By != "alice" || evs[0].Epoch != 1 || evs[0].Sidecar != "a-0" {
		t.Fatalf("history after Abandon = %+v, %v; want hrs_abandoned by alice naming epoch 1 and a-0", evs, err)
	}
	if _, err := s.StartBump(ctx, "val-1", 2, "region-b", change, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reconcile(ctx, "val-1"); err != nil {
		t.Fatal(err)
	}
	g3, err := s.Acquire(ctx, "val-1", "region-b", "b-0", 30)
	if err != nil {
		t.Fatal(err)
	}
	if g3.Watermark == nil || !g3.Watermark.Abandoned || g3.Watermark.HRS != block(8) {
		t.Fatalf("the new lease's floor = %+v, want 8/0/block marked abandoned", g3.Watermark)
	}
	_, err = s.Journal(ctx, fencing.JournalRequest{Lease: g3.Lease, HRS: block(7), Digest: fencing.Digest{0xbb}})
	wantCode(t, "below the abandoned height", err, fencing.CodeWatermark)
	if _, err := s.Journal(ctx, fencing.JournalRequest{Lease: g3.Lease, HRS: block(8), Digest: fencing.Digest{0xbb}}); err != nil {
		t.Fatalf("region-b at the abandoned height = %v", err)
	}
	_, err = s.Journal(ctx, fencing.JournalRequest{Lease: g3.Lease, HRS: block(8), Digest: fencing.Digest{0xcc}})
	wantCode(t, "a third digest at the abandoned height", err, fencing.CodeWatermark)
	if st, err := s.Status(ctx, "val-1"); err != nil || st.Watermark.Abandoned || st.Watermark.Epoch != 3 {
		t.Fatalf("watermark after region-b signed 8 = %+v, %v; want its own, not abandoned", st.Watermark, err)
	}
}

// A removed validator is no longer listed or leased; added again it
// continues at the next epoch above its old watermark.
func TestRemoveAndAddAgain(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx := context.Background()
	addValidator(t, s, "val-1", "region-a")
	g, err := s.Acquire(ctx, "val-1", "region-a", "a-0", 30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := journal(s, g.Lease, 5, 5); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "remove an active validator", s.RemoveValidator(ctx, "val-1", change), fencing.CodeConflict)
	if _, err := s.Freeze(ctx, "val-1", 1, change); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, g.Lease, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reconcile(ctx, "val-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveValidator(ctx, "val-1", change); err != nil {
		t.Fatalf("remove a fenced validator = %v", err)
	}
	if sts, err := s.Statuses(ctx); err != nil || len(sts) != 0 {
		t.Fatalf("Statuses after remove = %+v, %v; want none", sts, err)
	}
	_, err = s.Acquire(ctx, "val-1", "region-a", "a-0", 30)
	wantCode(t, "Acquire of a removed validator", err, fencing.CodeFenced)
	ep, err := s.AddValidator(ctx, "val-1", "region-b", change)
	if err != nil || ep.Epoch != 2 || ep.Holder != "region-b" {
		t.Fatalf("AddValidator again = %+v, %v; want active(2, region-b)", ep, err)
	}
	gb, err := s.Acquire(ctx, "val-1", "region-b", "b-0", 30)
	if err != nil || gb.Watermark == nil || gb.Watermark.Height != 5 {
		t.Fatalf("Acquire after re-adding = %+v, %v; want the old watermark 5", gb, err)
	}
	_, err = s.AddValidator(ctx, "val-1", "region-b", change)
	wantCode(t, "AddValidator of a registered validator", err, fencing.CodeConflict)
}
