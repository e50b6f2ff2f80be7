package audit

import (
	"testing"

	"github.com/validator-fencing/fencing/internal/consensus"
)

func FuzzHeader(f *testing.F) {
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, reported, err := consensus.DecodeHeaderJSON(b)
		if err != nil {
			return
		}
		for _, c := range []consensus.Consensus{consensus.ConsensusAuto, consensus.ConsensusClique, consensus.ConsensusQBFT, consensus.ConsensusIBFT2} {
			sh, err := consensus.VerifyHeader(h, reported, c)
			if err != nil {
				continue
			}
			if sh.Hash != reported {
				t.Fatalf("verified hash %s, reported %s", sh.Hash, reported)
			}
			if got, err := consensus.BlockHash(h, sh.Consensus); err != nil || got != reported {
				t.Fatalf("consensus.BlockHash(%s) = %s, %v; reported %s", sh.Consensus, got, err, reported)
			}
		}
	})
}

// FuzzJournalLine: a local journal line either parses into a valid entry or
// is an error; never a panic.
func FuzzJournalLine(f *testing.F) {
	f.Add([]byte(`{"validator":"v","hrs":{"height":1,"round":0,"step":"block"},"digest":"0x0000000000000000000000000000000000000000000000000000000000000000","epoch":1,"at":"2026-03-01T12:00:00Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseEntry(b)
		if err != nil {
			return
		}
		if e.Validator == "" || e.At.IsZero() || e.HRS.Validate() != nil {
			t.Fatalf("accepted an invalid entry %+v", e)
		}
	})
}
