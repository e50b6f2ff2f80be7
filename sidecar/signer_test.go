package sidecar

import (
	"context"
	"testing"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// The local append runs while the quorum journal commits (SignHRS steps 3
// and 4): when the quorum refuses, nothing is signed, and the local record
// written meanwhile stays. It only makes the local watermark stricter: the
// same HRS with another digest is refused here even though the quorum
// holds that digest, and the next HRS signs.
func TestQuorumRefusalLeavesLocalRecord(t *testing.T) {
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
	if d, ok := g.journal.shared.Signed(g.id, x); !ok || d != mine {
		t.Fatalf("local record at %s = %v, %v; want the refused digest, recorded while the quorum answered", x, d, ok)
	}
	if _, err := r.signer.SignHRS(ctx, g.id, x, other); fencing.CodeOf(err) != fencing.CodeWatermark {
		t.Fatalf("SignHRS(%s, other) = %v; want a local watermark refusal", x, err)
	}
	next := fencing.HRS{Height: r.height(), Step: fencing.StepCommit}
	if _, err := r.signer.SignHRS(ctx, g.id, next, mine); err != nil {
		t.Fatalf("SignHRS(%s) after the refusal = %v", next, err)
	}
}
