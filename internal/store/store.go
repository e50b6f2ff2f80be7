// Package store is the etcd side of validator fencing: the only code that
// reads or writes the fencing keys. Every state change is one compare-and-swap
// transaction that checks, inside the transaction, what the change depends on
// (fence inside the write: docs/architecture.md); nothing here reads then writes
// without a compare on what it read.
//
// # Key layout (below a configurable prefix, default /fencing/)
//
//	registry/<id>                             "" (lists validators without scanning journals)
//	validators/<id>/epoch                     fencing.Epoch
//	validators/<id>/bump                      fencing.Bump while a bump is under way
//	validators/<id>/bump-lock/…               concurrency.Mutex of the replica driving it
//	validators/<id>/leases/<epoch>/<holder>/<sidecar>   fencing.LeaseRecord, attached to an etcd lease; at most one per epoch
//	validators/<id>/lessees/<epoch>/<holder>/<sidecar>  fencing.LeaseRecord, every lease ever granted under <epoch>
//	validators/<id>/drained/<epoch>/<holder>/<sidecar>  fencing.Drained, how each lease of <epoch> ended
//	validators/<id>/watermark                 fencing.Watermark (quorum watermark)
//	validators/<id>/watermark-hrs             fencing.HRS.SortKey of the watermark
//	validators/<id>/journal/<h>/<r>/<step>    fencing.JournalEntry
//	events/<unix-nanos>-<random>              fencing.Event, append-only
//
// # Metrics
//
//	fencing_etcd_request_duration_seconds{op}  histogram of etcd round trips
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// DefaultPrefix is where the keys live unless Options.Prefix says otherwise.
const DefaultPrefix = "/fencing/"

// Options configure a Store; zero values take the defaults.
type Options struct {
	// Prefix of every key; default DefaultPrefix. Must end in '/'.
	Prefix string
	// Logger; default a null logger.
	Logger hclog.Logger
	// Now is the wall clock written into records; default time.Now.
	Now func() time.Time
	// RequestTimeout bounds each etcd round trip; default 5s. A write that
	// cannot commit within it fails with no_quorum.
	RequestTimeout time.Duration
	// Registerer receives the store's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// OnTransition, if set, is called after each epoch transition this store
	// committed (not those of other replicas), e.g. to record a Kubernetes
	// Event. It must not block.
	OnTransition func(fencing.Event)
}

// Store reads and writes fencing state in etcd.
type Store struct {
	cli     *clientv3.Client
	prefix  string
	lg      hclog.Logger
	now     func() time.Time
	timeout time.Duration
	latency *prometheus.HistogramVec
	onTrans func(fencing.Event)
	pres    presence
}

// New returns a Store using cli. It never closes cli.
func New(cli *clientv3.Client, o Options) (*Store, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		return nil, fmt.Errorf("etcd prefix %q must end in '/'", o.Prefix)
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	s := &Store{
		cli: cli, prefix: o.Prefix, lg: o.Logger, now: o.Now, timeout: o.RequestTimeout,
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fencing_etcd_request_duration_seconds",
			Help:    "Latency of the coordinator's etcd round trips by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"op"}),
		onTrans: o.OnTransition,
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(s.latency); err != nil {
			return nil, fmt.Errorf("register store metrics: %w", err)
		}
	}
	return s, nil
}

// keys

func (s *Store) registryKey(id fencing.ValidatorID) string {
	return s.prefix + "registry/" + string(id)
}
func (s *Store) vkey(id fencing.ValidatorID, rest string) string {
	return s.prefix + "validators/" + string(id) + "/" + rest
}
func (s *Store) epochKey(id fencing.ValidatorID) string      { return s.vkey(id, "epoch") }
func (s *Store) bumpKey(id fencing.ValidatorID) string       { return s.vkey(id, "bump") }
func (s *Store) bumpLockKey(id fencing.ValidatorID) string   { return s.vkey(id, "bump-lock") }
func (s *Store) watermarkKey(id fencing.ValidatorID) string  { return s.vkey(id, "watermark") }
func (s *Store) hrsKey(id fencing.ValidatorID) string        { return s.vkey(id, "watermark-hrs") }
func (s *Store) journalPrefix(id fencing.ValidatorID) string { return s.vkey(id, "journal/") }
func (s *Store) eventsPrefix() string                        { return s.prefix + "events/" }

func (s *Store) leasePrefix(id fencing.ValidatorID, epoch uint64) string {
	return s.vkey(id, "leases/"+strconv.FormatUint(epoch, 10)+"/")
}

// A lease is named by its holder and sidecar: the keys of a lease under
// leases/, lessees/ and drained/ end in <epoch>/<holder>/<sidecar>, so a
// compare on a lease key compares who holds it (docs/architecture.md,
// invariant 1).
func leaseName(holder, sidecar string) string { return holder + "/" + sidecar }

// splitLeaseName is the inverse of leaseName on the tail of a lease key.
func splitLeaseName(key string) (holder, sidecar string) {
	i := strings.LastIndexByte(key, '/')
	j := strings.LastIndexByte(key[:max(i, 0)], '/')
	return key[j+1 : max(i, 0)], key[i+1:]
}

func (s *Store) leaseKey(id fencing.ValidatorID, epoch uint64, holder, sidecar string) string {
	return s.leasePrefix(id, epoch) + leaseName(holder, sidecar)
}
func (s *Store) lesseePrefix(id fencing.ValidatorID, epoch uint64) string {
	return s.vkey(id, "lessees/"+strconv.FormatUint(epoch, 10)+"/")
}
func (s *Store) drainedPrefix(id fencing.ValidatorID, epoch uint64) string {
	return s.vkey(id, "drained/"+strconv.FormatUint(epoch, 10)+"/")
}
func (s *Store) tokenKey(l fencing.Lease) string {
	return s.leaseKey(l.Validator, l.Epoch, l.Holder, l.Sidecar)
}
func (s *Store) journalKey(id fencing.ValidatorID, h fencing.HRS) string {
	return s.journalPrefix(id) + h.JournalPath()
}

// eventOp appends ev to the history: a fresh key that the transaction also
// compares as absent, so an event is never overwritten.
func (s *Store) eventOp(ev fencing.Event) (clientv3.Cmp, clientv3.Op, error) {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	key := fmt.Sprintf("%s%020d-%s", s.eventsPrefix(), ev.At.UnixNano(), hex.EncodeToString(rnd[:]))
	v, err := encode(ev)
	if err != nil {
		return clientv3.Cmp{}, clientv3.Op{}, err
	}
	return clientv3.Compare(clientv3.CreateRevision(key), "=", 0), clientv3.OpPut(key, v), nil
}

// noLeases is true inside a transaction only while no lease key of epoch
// exists (a range compare: every key in the range must match, an empty range
// matches).
func (s *Store) noLeases(id fencing.ValidatorID, epoch uint64) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(s.leasePrefix(id, epoch)), "=", 0).WithPrefix()
}

// round trips

// op runs fn with the request timeout and a require-leader context, records
// its latency and turns etcd failures into no_quorum errors. A caller's own
// cancellation is returned as is.
func (s *Store) op(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	rctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), s.timeout)
	defer cancel()
	start := time.Now()
	err := fn(rctx)
	s.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", name, ctx.Err())
	}
	var fe *fencing.Error
	if errors.As(err, &fe) {
		return err
	}
	// A write that timed out was not committed yet, but its proposal may
	// sit in a member's log and commit when quorum returns: callers treat it
	// as not done (a sidecar does not sign) and must re-read before acting
	// again.
	return fencing.Errorf(fencing.CodeNoQuorum, "etcd: no quorum or unreachable, %s not confirmed: it did not commit in time and may still commit when etcd regains quorum; re-read before acting again: %v", name, err)
}

func (s *Store) txn(ctx context.Context, name string, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	var resp *clientv3.TxnResponse
	err := s.op(ctx, name, func(ctx context.Context) error {
		var err error
		resp, err = s.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
		return err
	})
	return resp, err
}

func (s *Store) get(ctx context.Context, name, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	var resp *clientv3.GetResponse
	err := s.op(ctx, name, func(ctx context.Context) error {
		var err error
		resp, err = s.cli.Get(ctx, key, opts...)
		return err
	})
	return resp, err
}

// encode marshals a record; it fails only on a clock outside years 0-9999.
func encode(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fencing.Errorf(fencing.CodeInternal, "encode %T: %v", v, err)
	}
	return string(b), nil
}

// decode parses a stored record; a record that does not parse is corrupt
// state, reported as internal so that callers fail closed.
func decode(key string, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fencing.Errorf(fencing.CodeInternal, "corrupt record at %s: %v", key, err)
	}
	return nil
}
