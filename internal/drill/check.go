package drill

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/validator-fencing/fencing/internal/audit"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// CheckInput is everything a run produced: what the validators received,
// what etcd committed (watched and read back), the coordinator's history and
// the sidecars' local journals.
type CheckInput struct {
	// Mode is the sidecars' mode: "strict" or "lease".
	Mode    string
	Records []Record
	// Addresses maps each validator ID to its key's address.
	Addresses map[string]common.Address
	Epochs    []EpochChange
	// Watermarks are the quorum watermark writes, in commit order.
	Watermarks []WatermarkChange
	// Journal is the quorum journal with the revision of each entry.
	Journal []JournalPut
	// Events is the coordinator's history (fencectl history).
	Events []fencing.Event
	// Local maps a sidecar name to its local journal as the audit reads it.
	Local map[string]audit.LocalJournal
}

// Violation is one broken invariant.
type Violation struct {
	Kind      string      `json:"kind"`
	Validator string      `json:"validator,omitempty"`
	HRS       fencing.HRS `json:"hrs,omitzero"`
	At        time.Time   `json:"at,omitzero"`
	Detail    string      `json:"detail"`
}

func (v Violation) String() string {
	s := v.Kind
	if v.Validator != "" {
		s += " " + short(v.Validator)
	}
	if v.HRS.Step != "" {
		s += " at " + v.HRS.String()
	}
	if !v.At.IsZero() {
		s += " (" + v.At.Format("15:04:05.000") + ")"
	}
	return s + ": " + v.Detail
}

// Violation kinds.
const (
	KindDoubleSign        = "double_sign"          // one (validator, HRS), two digests (inv. 5)
	KindBadSignature      = "bad_signature"        // does not recover to the validator's address
	KindSignedAfterRevoke = "signed_after_revoke"  // strict: requested after the revoke of its epoch committed (inv. 4)
	KindSignedAfterGrant  = "signed_after_grant"   // lease: requested after the next epoch was granted
	KindWrongHolder       = "wrong_holder"         // signed under an epoch held by another region (inv. 1)
	KindUnjournaled       = "unjournaled"          // strict: returned without a quorum journal entry (inv. 4)
	KindJournalAfterFence = "journal_after_revoke" // a quorum entry of epoch N committed after N's revoke
	KindWatermarkBack     = "watermark_backwards"  // a watermark moved down (inv. 6)
	KindNoCodeWord        = "refusal_without_code" // a refusal without its code word (§6)
	KindAuditDisagrees    = "audit_disagrees"      // the journal audit and this checker differ
	KindHistory           = "history_mismatch"     // coordinator history and etcd disagree
)

// CheckReport is the checker's verdict with the counts behind it.
type CheckReport struct {
	Violations []Violation `json:"violations"`
	// Counts by outcome and by refusal code.
	Requests  int                  `json:"requests"`
	Signed    int                  `json:"signed"`
	Refused   map[fencing.Code]int `json:"refused"`
	NoAnswer  int                  `json:"no_answer"`
	Verified  int                  `json:"signatures_verified"`
	SlotsSeen int                  `json:"slots_signed"`
	Grants    int                  `json:"grants"`
	// Audit is the journal audit over the quorum journal and every local
	// journal; AuditLateExplained counts its after-revoke findings that the
	// revisions show were committed before the revoke (see checkAudit).
	Audit              *audit.Report `json:"audit"`
	AuditLateExplained int           `json:"audit_late_explained"`
}

// OK reports a clean run.
func (r *CheckReport) OK() bool { return len(r.Violations) == 0 }

// Summary is one line.
func (r *CheckReport) Summary() string {
	codes := make([]string, 0, len(r.Refused))
	for c, n := range r.Refused {
		codes = append(codes, fmt.Sprintf("%s %d", c, n))
	}
	sort.Strings(codes)
	verdict := "CLEAN"
	if !r.OK() {
		verdict = fmt.Sprintf("%d VIOLATION(S)", len(r.Violations))
	}
	return fmt.Sprintf("%s: %d requests, %d signed (%d verified, %d slots), refused {%s}, %d without an answer, %d grants",
		verdict, r.Requests, r.Signed, r.Verified, r.SlotsSeen, strings.Join(codes, ", "), r.NoAnswer, r.Grants)
}

type slot struct {
	validator string
	hrs       fencing.HRS
}

// Check verifies the invariants of docs/architecture.md over in.
func Check(in CheckInput) *CheckReport {
	rep := &CheckReport{Refused: map[fencing.Code]int{}, Grants: Grants(in.Epochs)}
	add := func(v Violation) { rep.Violations = append(rep.Violations, v) }
	epochs := indexEpochs(in.Epochs)

	// Every digest seen per slot, with where it was seen.
	digests := map[slot]map[fencing.Digest][]string{}
	see := func(v string, h fencing.HRS, d fencing.Digest, where string) {
		s := slot{canonical(v), h}
		if digests[s] == nil {
			digests[s] = map[fencing.Digest][]string{}
		}
		if len(digests[s][d]) < 4 {
			digests[s][d] = append(digests[s][d], where)
		}
	}
	journaled := map[slot]fencing.Digest{}
	for _, j := range in.Journal {
		journaled[slot{canonical(j.Entry.Validator), j.Entry.HRS}] = j.Entry.Digest
		see(string(j.Entry.Validator), j.Entry.HRS, j.Entry.Digest, fmt.Sprintf("quorum journal rev %d epoch %d by %s", j.Revision, j.Entry.Epoch, j.Entry.Sidecar))
	}
	for name, lj := range in.Local {
		for i, e := range lj.Entries {
			where := name
			if i < len(lj.Lines) {
				where = lj.Lines[i]
			}
			see(string(e.Validator), e.HRS, e.Digest, "local journal "+where)
		}
	}

	for _, r := range in.Records {
		rep.Requests++
		switch r.Outcome {
		case NoAnswer:
			rep.NoAnswer++
			continue
		case Refused:
			rep.Refused[r.Code]++
			if !r.Code.Known() {
				add(Violation{Kind: KindNoCodeWord, Validator: r.Validator, HRS: r.HRS, At: r.Sent, Detail: fmt.Sprintf("%s answered %d without a code word: %s", r.Sidecar, r.HTTPStatus, r.Err)})
			}
			continue
		}
		rep.Signed++
		v := canonical(r.Validator)
		see(v, r.HRS, r.Digest, fmt.Sprintf("signature returned by %s (%s) epoch %d, sent %s", r.Sidecar, r.Region, r.Epoch, r.Sent.Format("15:04:05.000")))
		// The signature must be the validator's, over this digest.
		if pub, err := crypto.SigToPub(r.Digest[:], r.Signature); err != nil {
			add(Violation{Kind: KindBadSignature, Validator: v, HRS: r.HRS, At: r.Sent, Detail: fmt.Sprintf("%s: signature does not recover: %v", r.Sidecar, err)})
		} else if want, ok := in.Addresses[v]; !ok || crypto.PubkeyToAddress(*pub) != want {
			add(Violation{Kind: KindBadSignature, Validator: v, HRS: r.HRS, At: r.Sent, Detail: fmt.Sprintf("%s: signature recovers to %s, not the validator's key %s", r.Sidecar, crypto.PubkeyToAddress(*pub), want)})
		} else {
			rep.Verified++
		}
		hist := epochs[v]
		// The epoch it came with must have been granted to this region.
		if g, ok := hist.granted(r.Epoch); !ok {
			add(Violation{Kind: KindWrongHolder, Validator: v, HRS: r.HRS, At: r.Sent, Detail: fmt.Sprintf("%s signed under epoch %d, which etcd never made active", r.Sidecar, r.Epoch)})
		} else if g.Epoch.Holder != r.Region {
			add(Violation{Kind: KindWrongHolder, Validator: v, HRS: r.HRS, At: r.Sent, Detail: fmt.Sprintf("%s of %s signed under epoch %d, which is held by %s", r.Sidecar, r.Region, r.Epoch, g.Epoch.Holder)})
		}
		switch in.Mode {
		case "lease":
			// Lease mode: nothing may be requested after the next epoch was granted.
			if g, ok := hist.grantAfter(r.Epoch); ok && r.Sent.After(g.Observed) {
				add(Violation{Kind: KindSignedAfterGrant, Validator: v, HRS: r.HRS, At: r.Sent, Detail: fmt.Sprintf("%s signed under epoch %d, requested %s after epoch %d was granted to %s (observed %s, rev %d)",
					r.Sidecar, r.Epoch, r.Sent.Sub(g.Observed).Round(time.Millisecond), g.Epoch.Epoch, g.Epoch.Holder, g.Observed.Format("15:04:05.000"), g.Revision)})
			}
		default:
			// Strict: a request sent after the revoke committed is refused.
			if rv, ok := hist.revoke(r.Epoch); ok && r.Sent.After(rv.Observed) {
				add(Violation{Kind: KindSignedAfterRevoke, Validator: v, HRS: r.HRS, At: r.Sent, Detail: fmt.Sprintf("%s signed under epoch %d, requested %s after its revoke committed (observed %s, rev %d)",
					r.Sidecar, r.Epoch, r.Sent.Sub(rv.Observed).Round(time.Millisecond), rv.Observed.Format("15:04:05.000"), rv.Revision)})
			}
			if d, ok := journaled[slot{v, r.HRS}]; !ok || d != r.Digest {
				add(Violation{Kind: KindUnjournaled, Validator: v, HRS: r.HRS, At: r.Sent, Detail: fmt.Sprintf("%s returned a signature with no quorum journal entry for this digest", r.Sidecar)})
			}
		}
	}

	// Invariant 5 over every source at once.
	for s, ds := range digests {
		if len(ds) > 1 {
			var parts []string
			for d, where := range ds {
				parts = append(parts, fmt.Sprintf("%s [%s]", d.String()[:14], strings.Join(where, "; ")))
			}
			sort.Strings(parts)
			add(Violation{Kind: KindDoubleSign, Validator: s.validator, HRS: s.hrs, Detail: fmt.Sprintf("%d digests: %s", len(ds), strings.Join(parts, " | "))})
		}
	}
	rep.SlotsSeen = len(digests)

	// Quorum journal entries of epoch N must commit before N's revoke.
	for _, j := range in.Journal {
		v := canonical(j.Entry.Validator)
		if rv, ok := epochs[v].revoke(j.Entry.Epoch); ok && j.Revision > rv.Revision {
			add(Violation{Kind: KindJournalAfterFence, Validator: v, HRS: j.Entry.HRS, At: j.Entry.At, Detail: fmt.Sprintf("entry of epoch %d by %s committed at rev %d, after the revoke at rev %d", j.Entry.Epoch, j.Entry.Sidecar, j.Revision, rv.Revision)})
		}
	}

	// Watermarks never move back (inv. 6): the quorum one, and each local
	// journal file in line order.
	last := map[string]WatermarkChange{}
	for _, w := range in.Watermarks {
		v := canonical(w.Validator)
		if p, ok := last[v]; ok && w.Watermark.HRS.Compare(p.Watermark.HRS) < 0 {
			add(Violation{Kind: KindWatermarkBack, Validator: v, HRS: w.Watermark.HRS, At: w.Observed, Detail: fmt.Sprintf("quorum watermark went from %s (rev %d) back to %s (rev %d)", p.Watermark.HRS, p.Revision, w.Watermark.HRS, w.Revision)})
		}
		last[v] = w
	}
	for name, lj := range in.Local {
		top := map[string]fencing.HRS{}
		for i, e := range lj.Entries {
			v := canonical(e.Validator)
			if p, ok := top[v]; ok && e.HRS.Compare(p) < 0 {
				add(Violation{Kind: KindWatermarkBack, Validator: v, HRS: e.HRS, At: e.At, Detail: fmt.Sprintf("local journal of %s goes back from %s to %s at %s", name, p, e.HRS, lineOf(lj, i))})
			}
			if p, ok := top[v]; !ok || e.HRS.Compare(p) > 0 {
				top[v] = e.HRS
			}
		}
	}

	checkHistory(rep, in, epochs)
	checkAudit(rep, in, epochs)
	sort.SliceStable(rep.Violations, func(i, j int) bool { return rep.Violations[i].At.Before(rep.Violations[j].At) })
	return rep
}

// checkHistory compares the coordinator's history with what etcd committed:
// each revoke and grant event names an epoch change the watch saw.
func checkHistory(rep *CheckReport, in CheckInput, epochs map[string]*epochHistory) {
	if len(in.Events) == 0 {
		return
	}
	for _, ev := range in.Events {
		if ev.Kind != fencing.EventFreeze && ev.Kind != fencing.EventGrant {
			continue
		}
		v := canonical(ev.Validator)
		h := epochs[v]
		if h == nil || ev.To == nil {
			continue
		}
		found := false
		for _, c := range h.changes {
			if c.Epoch.Epoch == ev.To.Epoch && c.Epoch.State == ev.To.State && c.Epoch.Holder == ev.To.Holder {
				found = true
				break
			}
		}
		if !found {
			rep.Violations = append(rep.Violations, Violation{Kind: KindHistory, Validator: v, At: ev.At, Detail: fmt.Sprintf("history has %s to epoch %d %s on %s (rev %d) but etcd never held that record", ev.Kind, ev.To.Epoch, ev.To.State, ev.To.Holder, ev.Revision)})
		}
	}
}

// checkAudit runs the journal audit (internal/audit) over the quorum journal
// and every local journal and compares: it must find exactly the duplicates
// this checker found. Its after-revoke findings compare wall-clock times,
// which are taken before a transaction commits (the revoke's) or after it (a
// local append), so an entry in flight at the revoke can look late; each is
// accepted only when the revisions show its quorum entry committed before
// the revoke.
func checkAudit(rep *CheckReport, in CheckInput, epochs map[string]*epochHistory) {
	var entries []fencing.JournalEntry
	for _, j := range in.Journal {
		entries = append(entries, j.Entry)
	}
	sets := []audit.JournalSet{{Source: "quorum journal", Entries: entries}}
	names := make([]string, 0, len(in.Local))
	for n := range in.Local {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sets = append(sets, audit.JournalSet{Source: n, Entries: in.Local[n].Entries, Lines: in.Local[n].Lines})
	}
	ar := audit.AuditJournal(in.Events, sets...)
	rep.Audit = ar
	mine := 0
	for _, v := range rep.Violations {
		if v.Kind == KindDoubleSign {
			mine++
		}
	}
	// The audit also compares signatures it never sees (those only returned
	// to a validator), so it can find fewer, never more.
	journalOnly := countJournalDuplicates(sets)
	if ar.DuplicateCount() != journalOnly {
		rep.Violations = append(rep.Violations, Violation{Kind: KindAuditDisagrees, Detail: fmt.Sprintf("journal audit found %d duplicate slot(s), the checker %d over the same journals (%d counting returned signatures)", ar.DuplicateCount(), journalOnly, mine)})
	}
	commit := map[slot]JournalPut{}
	for _, j := range in.Journal {
		commit[slot{canonical(j.Entry.Validator), j.Entry.HRS}] = j
	}
	for _, late := range ar.AfterRevoke {
		v := canonical(late.Validator)
		rv, ok := epochs[v].revoke(late.Epoch)
		j, jok := commit[slot{v, late.HRS}]
		if in.Mode == "lease" && late.Source != "quorum journal" {
			// Lease mode journals locally only; signing under the lease
			// after the revoke is its documented weakness, bounded by the
			// grant check above.
			rep.AuditLateExplained++
			continue
		}
		if ok && jok && j.Entry.Digest == late.Digest && j.Revision < rv.Revision {
			rep.AuditLateExplained++
			continue
		}
		rep.Violations = append(rep.Violations, Violation{Kind: KindAuditDisagrees, Validator: v, HRS: late.HRS, At: late.EntryAt, Detail: fmt.Sprintf("journal audit: entry of epoch %d in %s written %s after the revoke, with no quorum entry committed before it", late.Epoch, late.Source, late.After)})
	}
}

func countJournalDuplicates(sets []audit.JournalSet) int {
	seen := map[slot]map[fencing.Digest]bool{}
	for _, s := range sets {
		for _, e := range s.Entries {
			k := slot{canonical(e.Validator), e.HRS}
			if seen[k] == nil {
				seen[k] = map[fencing.Digest]bool{}
			}
			seen[k][e.Digest] = true
		}
	}
	n := 0
	for _, ds := range seen {
		if len(ds) > 1 {
			n++
		}
	}
	return n
}

func lineOf(lj audit.LocalJournal, i int) string {
	if i < len(lj.Lines) {
		return lj.Lines[i]
	}
	return fmt.Sprintf("entry %d", i+1)
}

// canonical is the one name of a validator, however a record spells it
// (the workload's requests, the observer's records and the journals).
func canonical[T ~string](id T) string {
	if c, err := fencing.ParseValidatorID(string(id)); err == nil {
		return string(c)
	}
	return string(id)
}

// epochHistory is one validator's epoch records in commit order.
type epochHistory struct{ changes []EpochChange }

func indexEpochs(es []EpochChange) map[string]*epochHistory {
	out := map[string]*epochHistory{}
	for _, e := range es {
		v := canonical(e.Validator)
		if out[v] == nil {
			out[v] = &epochHistory{}
		}
		out[v].changes = append(out[v].changes, e)
	}
	for _, h := range out {
		sort.SliceStable(h.changes, func(i, j int) bool { return h.changes[i].Revision < h.changes[j].Revision })
	}
	return out
}

// granted is the record that made epoch n active.
func (h *epochHistory) granted(n uint64) (EpochChange, bool) {
	if h == nil {
		return EpochChange{}, false
	}
	for _, c := range h.changes {
		if c.Epoch.Epoch == n && c.Epoch.State == fencing.StateActive {
			return c, true
		}
	}
	return EpochChange{}, false
}

// revoke is the first record after which epoch n is no longer active.
func (h *epochHistory) revoke(n uint64) (EpochChange, bool) {
	if h == nil {
		return EpochChange{}, false
	}
	for _, c := range h.changes {
		if c.Epoch.Epoch > n || (c.Epoch.Epoch == n && c.Epoch.State != fencing.StateActive) {
			return c, true
		}
	}
	return EpochChange{}, false
}

// grantAfter is the record that granted the first epoch above n.
func (h *epochHistory) grantAfter(n uint64) (EpochChange, bool) {
	if h == nil {
		return EpochChange{}, false
	}
	for _, c := range h.changes {
		if c.Epoch.Epoch > n && c.Epoch.State == fencing.StateActive {
			return c, true
		}
	}
	return EpochChange{}, false
}

// Around returns the records and epoch changes of validator within window of
// at, oldest first, as lines for a violation report.
func Around(in CheckInput, validator string, at time.Time, window time.Duration) []string {
	type line struct {
		t time.Time
		s string
	}
	var ls []line
	v := canonical(validator)
	for _, r := range in.Records {
		if canonical(r.Validator) == v && r.Sent.After(at.Add(-window)) && r.Sent.Before(at.Add(window)) {
			ls = append(ls, line{r.Sent, "request   " + r.String()})
		}
	}
	for _, e := range in.Epochs {
		if canonical(e.Validator) == v && e.Observed.After(at.Add(-window)) && e.Observed.Before(at.Add(window)) {
			ls = append(ls, line{e.Observed, fmt.Sprintf("etcd      %s rev %d: epoch %d %s on %s (by %s: %s), observed", e.Observed.Format("15:04:05.000"), e.Revision, e.Epoch.Epoch, e.Epoch.State, e.Epoch.Holder, e.Epoch.By, e.Epoch.Reason)})
		}
	}
	for _, ev := range in.Events {
		if canonical(ev.Validator) == v && ev.At.After(at.Add(-window)) && ev.At.Before(at.Add(window)) {
			ls = append(ls, line{ev.At, fmt.Sprintf("history   %s rev %d: %s %s", ev.At.Format("15:04:05.000"), ev.Revision, ev.Kind, ev.Detail)})
		}
	}
	sort.SliceStable(ls, func(i, j int) bool { return ls[i].t.Before(ls[j].t) })
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.s
	}
	return out
}
