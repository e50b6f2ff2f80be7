package store

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Abandon is an operator's recorded decision that the signature journaled
// at hrs (the quorum watermark) never reached the chain, so the validator
// may sign that HRS again, with any digest, and nothing below it. It is the
// way out of a stuck height after a non-cooperative failover: the old holder
// journaled a seal (or a commit) and died before anyone saw it, and the
// watermark refuses every other digest at that HRS for ever.
//
// It is refused unless the validator is fenced (no lease is live, so no
// holder can be signing) and the signature at hrs was made under an earlier
// epoch than the current one (a holder's own signature is never abandoned
// behind its back). The journal entry moves to abandoned/, the watermark
// becomes hrs marked abandoned, and the decision, who and why, goes to the
// history; the next grant's floor carries it to the new holder.
func (s *Store) Abandon(ctx context.Context, id fencing.ValidatorID, hrs fencing.HRS, c fencing.Change) (fencing.Watermark, error) {
	if err := id.Required(); err != nil {
		return fencing.Watermark{}, err
	}
	if err := hrs.Validate(); err != nil {
		return fencing.Watermark{}, err
	}
	if err := c.Validate(); err != nil {
		return fencing.Watermark{}, err
	}
	st, err := s.Status(ctx, id)
	if err != nil {
		return fencing.Watermark{}, err
	}
	if st.Epoch.State != fencing.StateFenced || st.Bump != nil {
		return fencing.Watermark{}, fencing.Errorf(fencing.CodeConflict, "validator %s is %s (epoch %d on %s): an HRS is abandoned only while the validator is fenced, so that nobody signs meanwhile: fencectl freeze %s, then abandon, then fencectl unfreeze %s", id, st.Epoch.State, st.Epoch.Epoch, st.Epoch.Holder, id, id)
	}
	wm := st.Watermark
	if wm == nil || wm.HRS.Compare(hrs) != 0 {
		return fencing.Watermark{}, fencing.Errorf(fencing.CodeConflict, "validator %s: %s is not its watermark (%s); only the highest signed HRS can be abandoned", id, hrs, wmString(wm))
	}
	if wm.Abandoned {
		return *wm, nil
	}
	jk := s.journalKey(id, hrs)
	jr, err := s.get(ctx, "abandon_read", jk)
	if err != nil {
		return fencing.Watermark{}, err
	}
	var entry fencing.JournalEntry
	var entryCmp clientv3.Cmp
	if len(jr.Kvs) > 0 {
		if err := decode(jk, jr.Kvs[0].Value, &entry); err != nil {
			return fencing.Watermark{}, err
		}
		entryCmp = clientv3.Compare(clientv3.ModRevision(jk), "=", jr.Kvs[0].ModRevision)
	} else {
		// Lease mode reports watermarks without journal entries.
		entry = fencing.JournalEntry{Validator: id, HRS: wm.HRS, Digest: wm.Digest, Epoch: wm.Epoch, Sidecar: wm.Sidecar}
		entryCmp = clientv3.Compare(clientv3.CreateRevision(jk), "=", 0)
	}
	if entry.Epoch >= st.Epoch.Epoch {
		return fencing.Watermark{}, fencing.Errorf(fencing.CodeConflict, "validator %s: %s was signed under the current epoch %d by %s; only a signature of an earlier, drained epoch can be abandoned", id, hrs, entry.Epoch, entry.Sidecar)
	}
	c.At = s.now().UTC()
	next := *wm
	next.Abandoned = true
	nv, err := encode(next)
	if err != nil {
		return fencing.Watermark{}, err
	}
	av, err := encode(entry)
	if err != nil {
		return fencing.Watermark{}, err
	}
	evCmp, evOp, err := s.eventOp(fencing.Event{
		Kind: fencing.EventAbandoned, Validator: id, At: c.At, By: c.By, Reason: c.Reason, Comment: c.Comment, Epoch: entry.Epoch, Sidecar: entry.Sidecar,
		Detail: fmt.Sprintf("%s signed with %s under epoch %d by %s declared never published; the validator may sign %s again, nothing below", hrs, entry.Digest, entry.Epoch, entry.Sidecar, hrs),
	})
	if err != nil {
		return fencing.Watermark{}, err
	}
	tr, err := s.txn(ctx, "abandon",
		[]clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(s.epochKey(id)), "=", st.Revision),
			clientv3.Compare(clientv3.Value(s.hrsKey(id)), "=", hrs.SortKey()),
			clientv3.Compare(clientv3.CreateRevision(s.bumpKey(id)), "=", 0),
			s.noLeases(id, st.Epoch.Epoch),
			entryCmp, evCmp,
		},
		[]clientv3.Op{
			clientv3.OpDelete(jk),
			clientv3.OpPut(s.vkey(id, "abandoned/")+hrs.JournalPath(), av),
			clientv3.OpPut(s.watermarkKey(id), nv),
			// The journal compares watermark-hrs < new: the abandoned HRS
			// itself passes again, nothing below it does.
			clientv3.OpPut(s.hrsKey(id), hrs.AbandonedSortKey()),
			evOp,
		}, nil)
	if err != nil {
		return fencing.Watermark{}, err
	}
	if !tr.Succeeded {
		return fencing.Watermark{}, fencing.Errorf(fencing.CodeConflict, "validator %s changed while %s was being abandoned; nothing was changed, re-read fencectl status", id, hrs)
	}
	s.lg.Warn("HRS abandoned by an operator", "validator", id, "hrs", hrs.String(), "epoch", entry.Epoch, "sidecar", entry.Sidecar, "by", c.By, "reason", c.Reason)
	return next, nil
}

func wmString(w *fencing.Watermark) string {
	if w == nil {
		return "none"
	}
	return w.HRS.String()
}
