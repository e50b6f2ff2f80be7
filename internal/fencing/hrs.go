package fencing

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"strings"
)

// Step is the consensus step of a signature.
type Step string

// Steps in the order they are signed within one (height, round): a round
// change names the round it moves to, so it comes before that round's
// proposal; a Clique block seal is the only step at its height.
const (
	StepRoundChange Step = "round-change"
	StepProposal    Step = "proposal"
	StepPrepare     Step = "prepare"
	StepCommit      Step = "commit"
	StepBlock       Step = "block"
)

// Rank orders steps within one (height, round); 0 means unknown.
func (s Step) Rank() int {
	switch s {
	case StepRoundChange:
		return 1
	case StepProposal:
		return 2
	case StepPrepare:
		return 3
	case StepCommit:
		return 4
	case StepBlock:
		return 5
	}
	return 0
}

// ParseStep returns the step named s or a bad_request error listing the
// accepted names.
func ParseStep(s string) (Step, error) {
	st := Step(s)
	if st.Rank() == 0 {
		return "", Errorf(CodeBadRequest, "step %q is not one of round-change, proposal, prepare, commit, block", s)
	}
	return st, nil
}

// HRS is the height, round and step of one consensus signature.
type HRS struct {
	Height uint64 `json:"height"`
	Round  uint64 `json:"round"`
	Step   Step   `json:"step"`
}

func (h HRS) String() string { return fmt.Sprintf("%d/%d/%s", h.Height, h.Round, h.Step) }

// Compare orders HRS by height, then round, then step rank: -1, 0 or +1.
func (h HRS) Compare(o HRS) int {
	switch {
	case h.Height != o.Height:
		return cmp.Compare(h.Height, o.Height)
	case h.Round != o.Round:
		return cmp.Compare(h.Round, o.Round)
	default:
		return cmp.Compare(h.Step.Rank(), o.Step.Rank())
	}
}

// Validate reports a bad step.
func (h HRS) Validate() error {
	_, err := ParseStep(string(h.Step))
	return err
}

// SortKey encodes h so that byte order equals HRS order. The store keeps it
// beside the watermark so that a transaction can compare it with
// Compare(Value(key), "<", …) instead of reading the watermark first.
func (h HRS) SortKey() string {
	return fmt.Sprintf("%020d/%020d/%d", h.Height, h.Round, h.Step.Rank())
}

// AbandonedSortKey is the largest sort key below h: a watermark there lets
// h itself be signed again and nothing below it (an abandoned HRS).
func (h HRS) AbandonedSortKey() string {
	return fmt.Sprintf("%020d/%020d/%d", h.Height, h.Round, h.Step.Rank()-1)
}

// ZeroSortKey is below every real HRS; it is the watermark of a validator
// that never signed.
var ZeroSortKey = HRS{}.SortKey()

// JournalPath is the key suffix of h's journal entry:
// <height>/<round>/<step>, zero-padded so keys list in signing order.
func (h HRS) JournalPath() string {
	return fmt.Sprintf("%020d/%020d/%s", h.Height, h.Round, h.Step)
}

// ParseJournalPath is the inverse of JournalPath.
func ParseJournalPath(p string) (HRS, error) {
	parts := strings.Split(p, "/")
	if len(parts) != 3 {
		return HRS{}, fmt.Errorf("journal key %q: want <height>/<round>/<step>", p)
	}
	var h HRS
	if _, err := fmt.Sscanf(parts[0]+" "+parts[1], "%d %d", &h.Height, &h.Round); err != nil {
		return HRS{}, fmt.Errorf("journal key %q: %v", p, err)
	}
	st, err := ParseStep(parts[2])
	if err != nil {
		return HRS{}, fmt.Errorf("journal key %q: %v", p, err)
	}
	h.Step = st
	return h, nil
}

// Digest is the 32-byte hash a signature covers.
type Digest [32]byte

// ParseDigest accepts 64 hex digits with or without 0x.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	t := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(t) != 64 {
		return d, Errorf(CodeBadRequest, "digest must be 32 bytes (64 hex digits), got %d characters", len(t))
	}
	if _, err := hex.Decode(d[:], []byte(t)); err != nil {
		return d, Errorf(CodeBadRequest, "digest is not hex: %v", err)
	}
	return d, nil
}

func (d Digest) String() string { return "0x" + hex.EncodeToString(d[:]) }

// MarshalText writes 0x-prefixed hex.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
