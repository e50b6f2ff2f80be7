package sidecar

import (
	"context"
	"testing"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// The local record is written only after the quorum accepted the signature
// (SignHRS steps 3, then 4): a refused attempt leaves no local record, so the
// journal audit, which reads every local record as a signature that may have
// left, never reports a refusal as a duplicate. Written beside the quorum
// write, the refused digest stayed in the local journal, and a new holder
// signing that HRS with its own digest showed up as a duplicate signature.
func TestQuorumRefusalLeavesNoLocalRecord(t *testing.T) {
	r := newSurfaceRig(t, rigOptions{})
	ctx := context.Background()
	g := r.signer.list[0]
	lease, _, err := g.keeper.current()
	if err != nil {
		t.Fatal(err)
	}
	x := fencing.HRS{Height: r.height(), Step: fencing.StepCommit}
	mine, other := fencing.Digest{1}, fencing.Digest{2}
	// The quorum holds x with another digest (as if signed elsewhere under
	// this lease); the local journal does not know it.
	if _, err := r.coord.Client.JournalSignature(ctx, fencing.JournalRequest{Lease: lease, HRS: x, Digest: other}); err != nil {
		t.Fatal(err)
	}
	if res, err := r.signer.SignHRS(ctx, g.id, x, mine); fencing.CodeOf(err) != fencing.CodeWatermark {
		t.Fatalf("SignHRS(%s, mine) = %x, %v; want a watermark refusal from the quorum", x, res.Signature, err)
	}
	if d, ok := g.journal.shared.Signed(g.id, x); ok {
		t.Fatalf("local record at %s = %v after the quorum refused it; want none (the audit would read it as a signature)", x, d)
	}
	next := fencing.HRS{Height: r.height(), Step: fencing.StepCommit}
	if _, err := r.signer.SignHRS(ctx, g.id, next, mine); err != nil {
		t.Fatalf("SignHRS(%s) after the refusal = %v", next, err)
	}
}
