package store

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Holders and presence: what a bump checks before it revokes.
//
//	holders/<holder>                       fencing.HolderRecord, registered by an operator
//	presence/<id>/<holder>/<sidecar>       fencing.Presence, the last report of a sidecar,
//	                                       on the reporting replica's session lease
//
// A holder is known when it is registered or when a sidecar of it reported
// in. Presence records live on the session of the coordinator replica that
// wrote them, so they vanish within PresenceTTL of that replica's death;
// readers also ignore reports older than PresenceTTL.

// PresenceTTL is how long a sidecar's report counts.
const PresenceTTL = 60 * time.Second

func (s *Store) holderKey(h string) string { return s.prefix + "holders/" + h }
func (s *Store) presencePrefix(id fencing.ValidatorID) string {
	return s.prefix + "presence/" + string(id) + "/"
}

// RegisterHolder records holder as a failure domain bumps may target.
func (s *Store) RegisterHolder(ctx context.Context, holder string, c fencing.Change) error {
	if err := fencing.ValidateHolder(holder); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	c.At = s.now().UTC()
	v, err := encode(fencing.HolderRecord{Holder: holder, RegisteredAt: c.At, By: c.By, Reason: c.Reason, Comment: c.Comment})
	if err != nil {
		return err
	}
	evCmp, evOp, err := s.eventOp(fencing.Event{Kind: fencing.EventHolderRegistered, At: c.At, By: c.By, Reason: c.Reason, Comment: c.Comment, Detail: "holder " + holder})
	if err != nil {
		return err
	}
	_, err = s.txn(ctx, "holder_register", []clientv3.Cmp{evCmp}, []clientv3.Op{clientv3.OpPut(s.holderKey(holder), v), evOp}, nil)
	return err
}

// Holders returns every known holder, sorted: registered ones, the holders
// of validators' epochs, and those of sidecars that reported in.
func (s *Store) Holders(ctx context.Context) ([]fencing.HolderRecord, error) {
	tr, err := s.txn(ctx, "holders_list", nil, []clientv3.Op{
		clientv3.OpGet(s.prefix+"holders/", clientv3.WithPrefix()),
		clientv3.OpGet(s.prefix+"presence/", clientv3.WithPrefix()),
	}, nil)
	if err != nil {
		return nil, err
	}
	known := map[string]fencing.HolderRecord{}
	for _, kv := range tr.Responses[0].GetResponseRange().Kvs {
		var h fencing.HolderRecord
		if err := decode(string(kv.Key), kv.Value, &h); err != nil {
			return nil, err
		}
		known[h.Holder] = h
	}
	for _, kv := range tr.Responses[1].GetResponseRange().Kvs {
		var p fencing.Presence
		if err := decode(string(kv.Key), kv.Value, &p); err != nil {
			return nil, err
		}
		if _, ok := known[p.Holder]; !ok {
			known[p.Holder] = fencing.HolderRecord{Holder: p.Holder, LearntFrom: "sidecar " + p.Sidecar}
		}
	}
	sts, err := s.Statuses(ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range sts {
		if _, ok := known[st.Epoch.Holder]; !ok {
			known[st.Epoch.Holder] = fencing.HolderRecord{Holder: st.Epoch.Holder, LearntFrom: "validator " + string(st.ID)}
		}
	}
	out := make([]fencing.HolderRecord, 0, len(known))
	for _, h := range known {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Holder < out[j].Holder })
	return out, nil
}

// RecordPresence keeps p as the last report of its sidecar for id.
func (s *Store) RecordPresence(ctx context.Context, id fencing.ValidatorID, p fencing.Presence) error {
	lease, err := s.presenceLease(ctx)
	if err != nil {
		return err
	}
	p.ReportedAt = s.now().UTC()
	v, err := encode(p)
	if err != nil {
		return err
	}
	return s.op(ctx, "presence_put", func(ctx context.Context) error {
		_, err := s.cli.Put(ctx, s.presencePrefix(id)+leaseName(p.Holder, p.Sidecar), v, clientv3.WithLease(lease))
		return err
	})
}

// Presence returns the reports of id's sidecars younger than PresenceTTL.
func (s *Store) Presence(ctx context.Context, id fencing.ValidatorID) ([]fencing.Presence, error) {
	resp, err := s.get(ctx, "presence_list", s.presencePrefix(id), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []fencing.Presence
	for _, kv := range resp.Kvs {
		var p fencing.Presence
		if err := decode(string(kv.Key), kv.Value, &p); err != nil {
			return nil, err
		}
		if now.Sub(p.ReportedAt) < PresenceTTL {
			out = append(out, p)
		}
	}
	return out, nil
}

// presence holds the session whose lease presence records are put on.
type presence struct {
	mu   sync.Mutex
	sess *concurrency.Session
}

func (s *Store) presenceLease(ctx context.Context) (clientv3.LeaseID, error) {
	s.pres.mu.Lock()
	defer s.pres.mu.Unlock()
	if s.pres.sess != nil {
		select {
		case <-s.pres.sess.Done():
			s.pres.sess = nil
		default:
			return s.pres.sess.Lease(), nil
		}
	}
	id, err := s.grantLease(ctx, int64(PresenceTTL/time.Second))
	if err != nil {
		return 0, err
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithLease(id))
	if err != nil {
		return 0, fencing.Errorf(fencing.CodeNoQuorum, "etcd: cannot keep a lease for presence reports: %v", err)
	}
	s.pres.sess = sess
	return id, nil
}

// Close ends the store's presence session, if any; its reports vanish.
func (s *Store) Close() {
	s.pres.mu.Lock()
	defer s.pres.mu.Unlock()
	if s.pres.sess != nil {
		_ = s.pres.sess.Close()
		s.pres.sess = nil
	}
}

// suggestHolder names the known holder closest to h, for a typo.
func suggestHolder(h string, known []fencing.HolderRecord) string {
	best, bestD := "", len(h)/2+1
	for _, k := range known {
		if d := editDistance(h, k.Holder); d < bestD {
			best, bestD = k.Holder, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// CheckHolderKnown refuses a holder that is neither registered, nor the
// holder of a validator, nor the holder of a sidecar that reported in: a bump
// to it would grant an epoch nobody can use (a typo such as regoin-b).
func (s *Store) CheckHolderKnown(ctx context.Context, holder string) error {
	known, err := s.Holders(ctx)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(known))
	for _, k := range known {
		if k.Holder == holder {
			return nil
		}
		names = append(names, k.Holder)
	}
	hint := ""
	if g := suggestHolder(holder, known); g != "" {
		hint = "; did you mean " + g + "?"
	}
	return fencing.Errorf(fencing.CodeNotFound, "holder %q is unknown (known: %s)%s; a holder is known once one of its sidecars reports in or an operator registers it with fencectl holder add", holder, strings.Join(names, ", "), hint)
}
