package sidecar

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Mode says how much the sidecar asks the quorum before each signature.
type Mode string

const (
	// ModeStrict journals every HRS signature in etcd first (invariant 4);
	// bare digests need a quorum lease check. The default.
	ModeStrict Mode = "strict"
	// ModeLease signs while the local lease deadline is in the future; it
	// relies on bounded clock rate drift and is weaker (docs/architecture.md).
	ModeLease Mode = "lease"
)

// SignResult is a signature and the epoch it was made under.
type SignResult struct {
	Signature []byte // 65 bytes R‖S‖V, V 0 or 1
	Epoch     uint64
}

// Signer signs for the validators whose keys this sidecar holds, and only
// through the gate of each: lease, watermark, journal, fsync, sign.
type Signer struct {
	mode       Mode
	coord      Coordinator
	batcher    *journalBatcher
	sidecar    string
	validators map[fencing.ValidatorID]*validatorGate // by canonical ID and by canonical (EIP-55) address
	list       []*validatorGate
	m          *signerMetrics
	now        func() time.Time // the clock of records and latencies
}

type validatorGate struct {
	id      fencing.ValidatorID
	key     *Key
	keeper  *LeaseKeeper
	journal *LocalJournal
}

// Validator describes one validator of the sidecar.
type Validator struct {
	ID     fencing.ValidatorID
	Key    *Key
	Keeper *LeaseKeeper
}

// Validators lists the sidecar's validators in configuration order.
func (s *Signer) Validators() []Validator {
	out := make([]Validator, 0, len(s.list))
	for _, g := range s.list {
		out = append(out, Validator{ID: g.id, Key: g.key, Keeper: g.keeper})
	}
	return out
}

func (s *Signer) gate(validator fencing.ValidatorID) (*validatorGate, error) {
	if g, ok := s.validators[validator]; ok {
		return g, nil
	}
	ids := make([]string, 0, len(s.list))
	for _, g := range s.list {
		ids = append(ids, string(g.id))
	}
	sort.Strings(ids)
	return nil, fencing.Errorf(fencing.CodeBadRequest, "this sidecar has no key for validator %q (it signs for %s)", validator, strings.Join(ids, ", "))
}

// SignHRS signs digest as validator's signature at hrs. It returns only
// after every check passed, in this order, under the validator's signing
// lock (which a lease release waits for):
//
//  1. the lease is held, not revoked, and its local deadline is ahead (inv. 3);
//  2. hrs is above the local watermark and the quorum watermark the lease
//     came with, or was signed before with this very digest (inv. 5, 6);
//  3. strict mode: the journal entry is committed in etcd by a transaction
//     that also checks the epoch and the lease (inv. 4);
//  4. the entry is appended to the local journal and fsynced (inv. 6);
//  5. the deadline is checked again, then the digest is signed.
//
// Step 4 follows step 3 and does not overlap it: the local record is
// written only for a signature the quorum accepted, so that every local
// record is one that may have left and the journal audit never reads a
// refused attempt as a signature (an overlap was measured: its gain is
// within the run-to-run spread, docs/benchmarks.md).
//
// Any failure refuses with its code word and signs nothing (inv. 7).
func (s *Signer) SignHRS(ctx context.Context, validator fencing.ValidatorID, hrs fencing.HRS, digest fencing.Digest) (SignResult, error) {
	start := s.now()
	g, err := s.gate(validator)
	if err != nil {
		return SignResult{}, err
	}
	if err := hrs.Validate(); err != nil {
		return SignResult{}, s.m.refused(g.id, err)
	}
	g.keeper.signing.Lock()
	defer g.keeper.signing.Unlock()
	lease, floor, err := g.keeper.current() // 1
	if err != nil {
		return SignResult{}, s.m.refused(g.id, err)
	}
	if floor != nil && floor.Abandoned && hrs.Compare(floor.HRS) == 0 {
		floor = nil // an operator abandoned this HRS: it may be signed again (Store.Abandon)
	}
	again, err := g.journal.Check(hrs, digest, floor) // 2
	if err != nil {
		return SignResult{}, s.m.refused(g.id, err)
	}
	if s.mode == ModeStrict { // 3
		jstart := s.now()
		_, err := s.batcher.journal(ctx, fencing.JournalRequest{Lease: lease, HRS: hrs, Digest: digest})
		s.m.journal.Observe(s.now().Sub(jstart).Seconds())
		if err != nil {
			return SignResult{}, s.m.refused(g.id, quorumRefusal("journal", err))
		}
	}
	if !again { // 4
		e := fencing.JournalEntry{Validator: g.id, HRS: hrs, Digest: digest, Epoch: lease.Epoch, Sidecar: s.sidecar, At: s.now().UTC()}
		if err := g.journal.Append(e); err != nil {
			return SignResult{}, s.m.refused(g.id, fencing.Errorf(fencing.CodeWatermark, "local signing record not written, nothing signed: %v", err))
		}
	}
	return s.finish(g, lease, digest, start) // 5
}

// SignDigest signs a bare 32-byte digest that carries no HRS (Web3Signer
// eth1, Clef data and transactions). Only the epoch fence applies: the lease
// must be held with its deadline ahead, and in strict mode the coordinator
// must confirm the lease in etcd at this moment.
func (s *Signer) SignDigest(ctx context.Context, validator fencing.ValidatorID, digest fencing.Digest) (SignResult, error) {
	start := s.now()
	g, err := s.gate(validator)
	if err != nil {
		return SignResult{}, err
	}
	g.keeper.signing.Lock()
	defer g.keeper.signing.Unlock()
	lease, _, err := g.keeper.current()
	if err != nil {
		return SignResult{}, s.m.refused(g.id, err)
	}
	if s.mode == ModeStrict {
		jstart := s.now()
		err := s.coord.CheckLease(ctx, lease)
		s.m.journal.Observe(s.now().Sub(jstart).Seconds())
		if err != nil {
			return SignResult{}, s.m.refused(g.id, quorumRefusal("lease check", err))
		}
	}
	return s.finish(g, lease, digest, start)
}

// finish re-checks the deadline and signs.
func (s *Signer) finish(g *validatorGate, lease fencing.Lease, digest fencing.Digest, start time.Time) (SignResult, error) {
	if _, _, err := g.keeper.current(); err != nil {
		return SignResult{}, s.m.refused(g.id, err)
	}
	sig, err := g.key.sign(digest[:])
	if err != nil {
		return SignResult{}, s.m.refused(g.id, fencing.Errorf(fencing.CodeBadRequest, "sign: %v", err))
	}
	s.m.signatures.WithLabelValues(string(g.id), "signed").Inc()
	s.m.sign.Observe(s.now().Sub(start).Seconds())
	return SignResult{Signature: sig, Epoch: lease.Epoch}, nil
}

// quorumRefusal keeps the coordinator's fencing codes and turns everything
// else (unreachable, no quorum, internal) into the journal code: the quorum
// did not confirm, so nothing is signed.
func quorumRefusal(what string, err error) error {
	var we *fencing.WatermarkError
	if errors.As(err, &we) {
		return err
	}
	switch c := fencing.CodeOf(err); c {
	case fencing.CodeFenced, fencing.CodeStaleEpoch, fencing.CodeWatermark, fencing.CodeBadRequest:
		return err
	default:
		return fencing.Errorf(fencing.CodeJournal, "quorum %s failed, nothing signed: %v", what, err)
	}
}

// signerMetrics are the sidecar's signing series.
type signerMetrics struct {
	signatures *prometheus.CounterVec
	sign       prometheus.Histogram
	journal    prometheus.Histogram
}

func newSignerMetrics(reg prometheus.Registerer) (*signerMetrics, error) {
	m := &signerMetrics{
		signatures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fencing_sidecar_signatures_total",
			Help: "Signature requests by validator and result: signed, or the refusal code word.",
		}, []string{"validator", "result"}),
		sign: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fencing_sidecar_sign_duration_seconds", Help: "Time from request to signature, for signed requests.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		journal: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fencing_sidecar_journal_duration_seconds", Help: "Round trip of the quorum journal write (or lease check) in strict mode.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	for _, c := range []prometheus.Collector{m.signatures, m.sign, m.journal} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *signerMetrics) refused(validator fencing.ValidatorID, err error) error {
	m.signatures.WithLabelValues(string(validator), string(fencing.CodeOf(err))).Inc()
	return err
}
