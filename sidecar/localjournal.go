package sidecar

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/localjournal"
)

// LocalJournal is one validator's view of the sidecar's local signing
// record: one journal per sidecar in <state-dir>/journal, shared by all its
// validators, each signature appended and fdatasync'd before it leaves the
// process (invariant 6); concurrent signatures of different validators
// share one sync. Format, crash rules and compaction are in the package doc
// of internal/localjournal.
type LocalJournal struct {
	shared    *sharedJournal
	validator fencing.ValidatorID
	once      sync.Once
}

// sharedJournal closes the journal with the last of its views.
type sharedJournal struct {
	*localjournal.Journal
	mu   sync.Mutex
	refs int
}

// OpenLocalJournals opens the sidecar's journal in stateDir and returns a
// view for each of validators, in order. It refuses to open anything but a
// journal that passes every rule (a torn last record is cut, see Opened).
func OpenLocalJournals(stateDir, sidecar string, validators []fencing.ValidatorID) ([]*LocalJournal, error) {
	return openLocalJournals(stateDir, validators, localjournal.Options{Sidecar: sidecar})
}

func openLocalJournals(stateDir string, validators []fencing.ValidatorID, o localjournal.Options) ([]*LocalJournal, error) {
	if len(validators) == 0 {
		return nil, fmt.Errorf("local journal: no validators")
	}
	j, err := localjournal.Open(filepath.Join(stateDir, "journal"), o)
	if err != nil {
		return nil, err
	}
	shared := &sharedJournal{Journal: j, refs: len(validators)}
	out := make([]*LocalJournal, len(validators))
	for i, v := range validators {
		out[i] = &LocalJournal{shared: shared, validator: v}
	}
	return out, nil
}

// Opened says what opening the journal read, and whether it cut a torn
// last record.
func (l *LocalJournal) Opened() localjournal.OpenInfo { return l.shared.Opened() }

// Watermark is the validator's highest durable record, or nil.
func (l *LocalJournal) Watermark() *fencing.Watermark {
	top, ok := l.shared.Top(l.validator)
	if !ok {
		return nil
	}
	return &fencing.Watermark{HRS: top.HRS, Digest: top.Digest, Epoch: top.Epoch, Sidecar: top.Sidecar}
}

// Check decides whether hrs may be signed with digest: strictly above both
// the local watermark and floor (the quorum watermark the lease came with),
// or an HRS already signed with this very digest (idempotent re-sign). It
// reads only durable records, so a signature it allows again was fsynced.
func (l *LocalJournal) Check(hrs fencing.HRS, digest fencing.Digest, floor *fencing.Watermark) (again bool, err error) {
	if err := l.shared.Err(); err != nil {
		return false, fencing.Errorf(fencing.CodeWatermark, "local signing record is unusable (%v); restart the sidecar", err)
	}
	if d, ok := l.shared.Signed(l.validator, hrs); ok {
		if d == digest {
			return true, nil
		}
		return false, &fencing.WatermarkError{Signed: hrs, Requested: hrs, SameHRS: true}
	}
	if top, ok := l.shared.Top(l.validator); ok && hrs.Compare(top.HRS) <= 0 {
		return false, &fencing.WatermarkError{Signed: top.HRS, Requested: hrs}
	}
	if floor != nil {
		switch c := hrs.Compare(floor.HRS); {
		case c == 0 && floor.Digest == digest:
			// Signed before under the quorum (this sidecar crashed between
			// journal and reply, or another one signed it): allowed, and
			// recorded here too (again = false).
			return false, nil
		case c == 0:
			return false, &fencing.WatermarkError{Signed: floor.HRS, Requested: hrs, SameHRS: true, Epoch: floor.Epoch, Sidecar: floor.Sidecar}
		case c < 0:
			return false, &fencing.WatermarkError{Signed: floor.HRS, Requested: hrs, Epoch: floor.Epoch, Sidecar: floor.Sidecar}
		}
	}
	return false, nil
}

// Append records e and returns once it is durable. The journal itself
// refuses an entry at or below the validator's last record, so two
// concurrent signatures of one HRS can never both be recorded. After a
// failed write the journal refuses every later Check and Append (fail
// closed) until the sidecar restarts and rereads it.
func (l *LocalJournal) Append(e fencing.JournalEntry) error {
	if e.Validator != l.validator {
		return fmt.Errorf("local journal of %s asked to record a signature of %s", l.validator, e.Validator)
	}
	return l.shared.Append(e)
}

// Close releases this view; the journal closes with the last one.
func (l *LocalJournal) Close() error {
	var err error
	l.once.Do(func() {
		s := l.shared
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.refs--; s.refs == 0 {
			err = s.Journal.Close()
		}
	})
	return err
}
