package audit

import (
	"bytes"
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Signature is one signature (or signature intent, for a journal entry) seen
// by a source. The detector compares signatures of one validator in one slot;
// it never checks them cryptographically (the header decoder did).
type Signature struct {
	// Validator is the EIP-55 address or name of the signer.
	Validator string
	// HRS is the slot. Chain seals use step "block" (Clique) or "commit"
	// (QBFT, IBFT 2.0 committed seals) with the round from extraData.
	HRS fencing.HRS
	// Digest identifies what was signed for: the block hash for a chain
	// seal, the signed digest for a journal entry.
	Digest fencing.Digest
	// SignedHash is the hash the signature covers when it differs from
	// Digest (Clique seal hash, BFT committed-seal hash); zero otherwise.
	SignedHash fencing.Digest
	// Signature is R ‖ S ‖ V, absent for journal entries.
	Signature []byte
	// Proposer is the block's proposer (chain only).
	Proposer string
	// Epoch, Sidecar and At come from a journal entry.
	Epoch   uint64
	Sidecar string
	At      time.Time
	// Source names where the signature was seen: an RPC endpoint, "quorum
	// journal", or file:line of a local journal.
	Source string
}

// Scope says which part of the HRS a slot compares.
type Scope int

const (
	// ScopeHRS compares signatures with equal height, round and step: the
	// journal's rule (invariant 5).
	ScopeHRS Scope = iota
	// ScopeHeight compares signatures with equal height and step whatever
	// the round: a validator's seal on two different blocks at one height is
	// equivocation even across rounds, because an honest BFT validator that
	// committed a block is locked on it and the block hash excludes the
	// round.
	ScopeHeight
)

// Detector finds validators that signed two different digests in one slot.
// It is pure: it holds what it was fed and nothing else, and is not safe for
// concurrent use (feed it from one goroutine).
type Detector struct {
	scope map[fencing.Step]Scope
	slots map[slotKey]*slot
}

type slotKey struct {
	validator string
	height    uint64
	round     uint64
	step      fencing.Step
}

type slot struct {
	variants map[fencing.Digest]*variant
}

type variant struct {
	sig     Signature
	rounds  map[uint64]struct{}
	sources map[string]struct{}
}

// NewDetector returns a detector that compares steps listed in heightScoped
// per height (ScopeHeight) and every other step per exact HRS (ScopeHRS).
func NewDetector(heightScoped ...fencing.Step) *Detector {
	d := &Detector{scope: map[fencing.Step]Scope{}, slots: map[slotKey]*slot{}}
	for _, s := range heightScoped {
		d.scope[s] = ScopeHeight
	}
	return d
}

// Add records one signature.
func (d *Detector) Add(s Signature) {
	k := slotKey{validator: s.Validator, height: s.HRS.Height, round: s.HRS.Round, step: s.HRS.Step}
	if d.scope[s.HRS.Step] == ScopeHeight {
		k.round = 0
	}
	sl := d.slots[k]
	if sl == nil {
		sl = &slot{variants: map[fencing.Digest]*variant{}}
		d.slots[k] = sl
	}
	v := sl.variants[s.Digest]
	if v == nil {
		v = &variant{sig: s, rounds: map[uint64]struct{}{}, sources: map[string]struct{}{}}
		sl.variants[s.Digest] = v
	} else if lessSig(s, v.sig) {
		// Keep a deterministic representative whatever the feeding order.
		v.sig = s
	}
	v.rounds[s.HRS.Round] = struct{}{}
	v.sources[s.Source] = struct{}{}
}

// lessSig orders representatives of one variant: lowest round, then source,
// then signature bytes.
func lessSig(a, b Signature) bool {
	if a.HRS.Round != b.HRS.Round {
		return a.HRS.Round < b.HRS.Round
	}
	if a.Source != b.Source {
		return a.Source < b.Source
	}
	return bytes.Compare(a.Signature, b.Signature) < 0
}

// Len is the number of slots held.
func (d *Detector) Len() int { return len(d.slots) }

// Drain returns every slot with two or more digests, in a stable order
// (validator, height, round, step), and forgets everything it was fed.
func (d *Detector) Drain() []Duplicate {
	var out []Duplicate
	for k, sl := range d.slots {
		if len(sl.variants) < 2 {
			continue
		}
		dup := Duplicate{Validator: k.validator, Height: k.height, Round: k.round, Step: k.step}
		for digest, v := range sl.variants {
			dup.Variants = append(dup.Variants, v.evidence(digest))
		}
		slices.SortFunc(dup.Variants, func(a, b Evidence) int { return bytes.Compare(a.Digest[:], b.Digest[:]) })
		if d.scope[k.step] == ScopeHeight {
			dup.Round = dup.Variants[0].Round
			for _, v := range dup.Variants {
				dup.Round = min(dup.Round, v.Round)
				if v.Round != dup.Variants[0].Round || len(v.Rounds) > 1 {
					dup.CrossRound = true
				}
			}
		}
		out = append(out, dup)
	}
	SortDuplicates(out)
	d.slots = map[slotKey]*slot{}
	return out
}

// SortDuplicates orders duplicates by validator, height, round and step.
func SortDuplicates(ds []Duplicate) {
	slices.SortFunc(ds, func(a, b Duplicate) int {
		return cmp.Or(
			strings.Compare(a.Validator, b.Validator),
			cmp.Compare(a.Height, b.Height),
			cmp.Compare(a.Round, b.Round),
			cmp.Compare(a.Step.Rank(), b.Step.Rank()),
			strings.Compare(string(a.Step), string(b.Step)),
		)
	})
}

func (v *variant) evidence(digest fencing.Digest) Evidence {
	e := Evidence{
		Digest:   digest,
		Round:    v.sig.HRS.Round,
		Proposer: v.sig.Proposer,
		Epoch:    v.sig.Epoch,
		Sidecar:  v.sig.Sidecar,
	}
	if v.sig.SignedHash != (fencing.Digest{}) {
		sh := v.sig.SignedHash
		e.SignedHash = &sh
	}
	if len(v.sig.Signature) > 0 {
		e.Signature = hexutil.Bytes(bytes.Clone(v.sig.Signature))
	}
	if !v.sig.At.IsZero() {
		at := v.sig.At
		e.At = &at
	}
	for s := range v.sources {
		e.Sources = append(e.Sources, s)
	}
	slices.Sort(e.Sources)
	if len(v.rounds) > 1 {
		for r := range v.rounds {
			e.Rounds = append(e.Rounds, r)
		}
		slices.Sort(e.Rounds)
	}
	return e
}

// Duplicate is one validator signing two or more different digests in one
// slot: the evidence of an equivocation.
type Duplicate struct {
	Validator string       `json:"validator"`
	Height    uint64       `json:"height"`
	Round     uint64       `json:"round"`
	Step      fencing.Step `json:"step"`
	// CrossRound is set when the variants were signed in different rounds
	// (height-scoped slots only).
	CrossRound bool `json:"cross_round,omitempty"`
	// Variants holds one entry per distinct digest, ordered by digest.
	Variants []Evidence `json:"variants"`
}

// Evidence is one of the conflicting signatures of a Duplicate.
type Evidence struct {
	// Digest is the block hash (chain) or signed digest (journal).
	Digest fencing.Digest `json:"digest"`
	// SignedHash is the hash the signature covers, when not Digest.
	SignedHash *fencing.Digest `json:"signed_hash,omitempty"`
	Signature  hexutil.Bytes   `json:"signature,omitempty"`
	Round      uint64          `json:"round"`
	// Rounds lists every round this digest was signed in, when more than
	// one.
	Rounds   []uint64   `json:"rounds,omitempty"`
	Proposer string     `json:"proposer,omitempty"`
	Epoch    uint64     `json:"epoch,omitempty"`
	Sidecar  string     `json:"sidecar,omitempty"`
	At       *time.Time `json:"at,omitempty"`
	// Sources are the endpoints or journals that served it.
	Sources []string `json:"sources"`
}
