package drill

import (
	"crypto/ecdsa"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/validator-fencing/fencing/internal/audit"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// history is a small clean run: epoch 1 on region-a, revoked, fenced, epoch
// 2 granted to region-b; A signs before the revoke, B after the grant.
type history struct {
	key  *ecdsa.PrivateKey
	id   string
	t0   time.Time
	in   CheckInput
	hrsA fencing.HRS
}

func newHistory(t *testing.T) *history {
	t.Helper()
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	id := crypto.PubkeyToAddress(k.PublicKey).Hex()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h := &history{key: k, id: id, t0: t0, hrsA: fencing.HRS{Height: 10, Round: 0, Step: fencing.StepCommit}}
	ep := func(n uint64, st fencing.State, holder string) fencing.Epoch {
		return fencing.Epoch{Epoch: n, State: st, Holder: holder, By: "test", Reason: "test"}
	}
	h.in = CheckInput{
		Mode:      "strict",
		Addresses: map[string]common.Address{id: crypto.PubkeyToAddress(k.PublicKey)},
		Epochs: []EpochChange{
			{Validator: id, Epoch: ep(1, fencing.StateActive, "region-a"), Revision: 10, Observed: t0},
			{Validator: id, Epoch: ep(1, fencing.StateRevoking, "region-a"), Revision: 20, Observed: t0.Add(time.Second)},
			{Validator: id, Epoch: ep(1, fencing.StateFenced, "region-a"), Revision: 21, Observed: t0.Add(1200 * time.Millisecond)},
			{Validator: id, Epoch: ep(2, fencing.StateActive, "region-b"), Revision: 22, Observed: t0.Add(1300 * time.Millisecond)},
		},
		Local: map[string]audit.LocalJournal{},
	}
	h.sign(t, "region-a", 1, h.hrsA, t0.Add(100*time.Millisecond), 15)
	h.sign(t, "region-b", 2, fencing.HRS{Height: 11, Round: 0, Step: fencing.StepProposal}, t0.Add(1500*time.Millisecond), 30)
	h.in.Watermarks = []WatermarkChange{
		{Validator: id, Watermark: fencing.Watermark{HRS: h.hrsA}, Revision: 15},
		{Validator: id, Watermark: fencing.Watermark{HRS: fencing.HRS{Height: 11, Step: fencing.StepProposal}}, Revision: 30},
	}
	h.refuse("region-b", fencing.HRS{Height: 10, Step: fencing.StepCommit}, fencing.CodeFenced, t0.Add(200*time.Millisecond))
	return h
}

// sign adds a signed record (and its quorum journal entry at rev).
func (h *history) sign(t *testing.T, region string, epoch uint64, hrs fencing.HRS, sent time.Time, rev int64) Record {
	t.Helper()
	d := DigestFor(h.id, region, "", hrs)
	sig, err := crypto.Sign(d[:], h.key)
	if err != nil {
		t.Fatal(err)
	}
	r := Record{Validator: h.id, Region: region, Sidecar: "s-" + region, HRS: hrs, Digest: d, Sent: sent, Done: sent.Add(5 * time.Millisecond), Outcome: Signed, HTTPStatus: 200, Signature: sig, Epoch: epoch}
	h.in.Records = append(h.in.Records, r)
	if rev > 0 {
		h.in.Journal = append(h.in.Journal, JournalPut{Entry: fencing.JournalEntry{Validator: fencing.ValidatorID(h.id), HRS: hrs, Digest: d, Epoch: epoch, Sidecar: r.Sidecar, At: sent}, Revision: rev})
	}
	return r
}

func (h *history) refuse(region string, hrs fencing.HRS, code fencing.Code, sent time.Time) {
	h.in.Records = append(h.in.Records, Record{Validator: h.id, Region: region, Sidecar: "s-" + region, HRS: hrs, Digest: DigestFor(h.id, region, "", hrs), Sent: sent, Done: sent, Outcome: Refused, HTTPStatus: 412, Code: code})
}

func TestCheckCleanHistory(t *testing.T) {
	h := newHistory(t)
	rep := Check(h.in)
	if !rep.OK() {
		t.Fatalf("Check(clean) = %v, want no violations", rep.Violations)
	}
	if rep.Signed != 2 || rep.Verified != 2 || rep.Grants != 1 || rep.Refused[fencing.CodeFenced] != 1 {
		t.Errorf("Check(clean) counts = %+v, want 2 signed and verified, 1 grant, 1 fenced", rep)
	}
}

// TestCheckCatchesPlantedViolations is the checker's self-check: each planted
// fault must be reported with its kind.
func TestCheckCatchesPlantedViolations(t *testing.T) {
	tests := []struct {
		name  string
		plant func(t *testing.T, h *history)
		want  string
	}{
		{"double sign across regions", func(t *testing.T, h *history) {
			// B signs A's slot with its own digest (journal entry lost).
			h.sign(t, "region-b", 2, h.hrsA, h.t0.Add(1600*time.Millisecond), 0)
		}, KindDoubleSign},
		{"double sign only in local journals", func(t *testing.T, h *history) {
			h.in.Local["s-region-b"] = audit.LocalJournal{Entries: []fencing.JournalEntry{{Validator: fencing.ValidatorID(h.id), HRS: h.hrsA, Digest: DigestFor(h.id, "region-b", "", h.hrsA), Epoch: 2, At: h.t0.Add(2 * time.Second)}}}
		}, KindDoubleSign},
		{"signature requested after the revoke committed", func(t *testing.T, h *history) {
			h.sign(t, "region-a", 1, fencing.HRS{Height: 10, Round: 1, Step: fencing.StepRoundChange}, h.t0.Add(1100*time.Millisecond), 19)
		}, KindSignedAfterRevoke},
		{"signature by the region that does not hold the epoch", func(t *testing.T, h *history) {
			h.sign(t, "region-b", 1, fencing.HRS{Height: 10, Round: 2, Step: fencing.StepRoundChange}, h.t0.Add(300*time.Millisecond), 16)
		}, KindWrongHolder},
		{"signature without a journal entry", func(t *testing.T, h *history) {
			h.sign(t, "region-b", 2, fencing.HRS{Height: 12, Step: fencing.StepProposal}, h.t0.Add(1700*time.Millisecond), 0)
		}, KindUnjournaled},
		{"signature by another key", func(t *testing.T, h *history) {
			r := h.sign(t, "region-b", 2, fencing.HRS{Height: 12, Step: fencing.StepPrepare}, h.t0.Add(1700*time.Millisecond), 31)
			other, _ := crypto.GenerateKey()
			sig, _ := crypto.Sign(r.Digest[:], other)
			h.in.Records[len(h.in.Records)-1].Signature = sig
		}, KindBadSignature},
		{"journal entry committed after the revoke", func(t *testing.T, h *history) {
			h.in.Journal = append(h.in.Journal, JournalPut{Entry: fencing.JournalEntry{Validator: fencing.ValidatorID(h.id), HRS: fencing.HRS{Height: 10, Round: 3, Step: fencing.StepProposal}, Epoch: 1, At: h.t0}, Revision: 25})
		}, KindJournalAfterFence},
		{"quorum watermark moved back", func(t *testing.T, h *history) {
			h.in.Watermarks = append(h.in.Watermarks, WatermarkChange{Validator: h.id, Watermark: fencing.Watermark{HRS: h.hrsA}, Revision: 40})
		}, KindWatermarkBack},
		{"local journal moved back", func(t *testing.T, h *history) {
			h.in.Local["s-region-a"] = audit.LocalJournal{Entries: []fencing.JournalEntry{
				{Validator: fencing.ValidatorID(h.id), HRS: h.hrsA, Digest: DigestFor(h.id, "region-a", "", h.hrsA), Epoch: 1, At: h.t0},
				{Validator: fencing.ValidatorID(h.id), HRS: fencing.HRS{Height: 9, Step: fencing.StepCommit}, Digest: DigestFor(h.id, "region-a", "", fencing.HRS{Height: 9, Step: fencing.StepCommit}), Epoch: 1, At: h.t0},
			}}
		}, KindWatermarkBack},
		{"refusal without a code word", func(t *testing.T, h *history) {
			h.refuse("region-b", fencing.HRS{Height: 13, Step: fencing.StepProposal}, "", h.t0.Add(2*time.Second))
		}, KindNoCodeWord},
		{"lease mode: signature requested after the next grant", func(t *testing.T, h *history) {
			h.in.Mode = "lease"
			h.sign(t, "region-a", 1, fencing.HRS{Height: 12, Step: fencing.StepCommit}, h.t0.Add(1400*time.Millisecond), 0)
		}, KindSignedAfterGrant},
		{"history names a record etcd never held", func(t *testing.T, h *history) {
			to := fencing.Epoch{Epoch: 3, State: fencing.StateActive, Holder: "region-a"}
			h.in.Events = append(h.in.Events, fencing.Event{Kind: fencing.EventGrant, Validator: fencing.ValidatorID(h.id), To: &to, Revision: 50})
		}, KindHistory},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHistory(t)
			tt.plant(t, h)
			rep := Check(h.in)
			found := false
			for _, v := range rep.Violations {
				if v.Kind == tt.want {
					found = true
				}
			}
			if !found {
				t.Errorf("Check(%s) = %v, want a %s violation", tt.name, rep.Violations, tt.want)
			}
		})
	}
}

func TestDigestsDifferByRegionAndSalt(t *testing.T) {
	h := fencing.HRS{Height: 1, Step: fencing.StepProposal}
	a, b, a2 := DigestFor("v", "region-a", "", h), DigestFor("v", "region-b", "", h), DigestFor("v", "region-a", "restart-1", h)
	if a == b || a == a2 || a != DigestFor("v", "region-a", "", h) {
		t.Errorf("DigestFor: a=%s b=%s a2=%s, want a != b, a != a2 and a stable", a, b, a2)
	}
}
