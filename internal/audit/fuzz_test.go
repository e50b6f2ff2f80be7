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
