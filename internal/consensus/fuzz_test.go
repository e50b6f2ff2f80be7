package consensus

import (
	"bytes"
	"testing"

	"github.com/ethereum/go-ethereum/rlp"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/ (real headers and extraData
// from testdata/real, and edge cases). The properties: decoders never panic,
// and what they accept is well-formed and re-encodes to valid RLP that
// decodes to the same values.
func FuzzDecodeQBFTExtra(f *testing.F) {
	f.Add([]byte{0xc0})
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := DecodeQBFTExtra(b)
		if err != nil {
			return
		}
		checkBFTExtra(t, x)
		for _, keep := range []bool{false, true} {
			y, err := DecodeQBFTExtra(x.qbftExtraForHash(keep))
			if err != nil {
				t.Fatalf("hashing form (round kept %v) does not decode: %v", keep, err)
			}
			if len(y.Seals) != 0 || (keep && y.Round != x.Round) || (!keep && y.Round != 0) || len(y.Validators) != len(x.Validators) {
				t.Fatalf("hashing form (round kept %v) = %+v from %+v", keep, y, x)
			}
		}
	})
}

func FuzzDecodeIBFT2Extra(f *testing.F) {
	f.Add([]byte{0xc0})
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := DecodeIBFT2Extra(b)
		if err != nil {
			return
		}
		checkBFTExtra(t, x)
		for _, keep := range []bool{false, true} {
			form := x.ibft2ExtraForHash(keep)
			items, err := rlp.SplitListValues(form)
			if err != nil || len(items) != 3+boolInt(keep) {
				t.Fatalf("hashing form (round kept %v) = %x: %v", keep, form, err)
			}
		}
	})
}

func checkBFTExtra(t *testing.T, x *BFTExtra) {
	t.Helper()
	if x.Round > 0xffffffff {
		t.Fatalf("round %d exceeds 4 bytes", x.Round)
	}
	for _, s := range x.Seals {
		if len(s) != SealLength {
			t.Fatalf("seal of %d bytes", len(s))
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func FuzzDecodeCliqueExtra(f *testing.F) {
	f.Add(make([]byte, 97))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := DecodeCliqueExtra(b)
		if err != nil {
			return
		}
		joined := append(append(bytes.Clone(x.Vanity), signersBytes(x)...), x.Seal...)
		if !bytes.Equal(joined, b) || len(x.Seal) != SealLength {
			t.Fatalf("decoded parts do not rebuild the input")
		}
	})
}

func signersBytes(x *CliqueExtra) []byte {
	var out []byte
	for _, s := range x.Signers {
		out = append(out, s.Bytes()...)
	}
	return out
}

// FuzzHeader feeds eth_getBlockByNumber answers to the decoder and verifier
// under every format: no panic, and an accepted header's hash is the one
// reported.
