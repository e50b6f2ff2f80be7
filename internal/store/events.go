package store

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Events returns the history in commit order (etcd revision), of validator id
// or of all validators when id is empty; limit > 0 keeps the newest limit.
func (s *Store) Events(ctx context.Context, id fencing.ValidatorID, limit int) ([]fencing.Event, error) {
	resp, err := s.get(ctx, "events_list", s.eventsPrefix(), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	out := []fencing.Event{}
	for _, kv := range resp.Kvs {
		var ev fencing.Event
		if err := decode(string(kv.Key), kv.Value, &ev); err != nil {
			return nil, err
		}
		if id != "" && ev.Validator != id {
			continue
		}
		ev.Revision = kv.ModRevision
		out = append(out, ev)
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// AuditResult is the last audit of one kind, kept at audits/<kind> so that
// its result (and the alert on it) survives coordinator restarts.
type AuditResult struct {
	Kind       string    `json:"kind"`
	Duplicates int       `json:"duplicates"`
	Incomplete bool      `json:"incomplete"`
	At         time.Time `json:"at"`
	By         string    `json:"by"`
}

// RecordAudit keeps r as the last audit of its kind and appends ev (the
// audit's event) to the history, in one transaction.
func (s *Store) RecordAudit(ctx context.Context, r AuditResult, ev fencing.Event) error {
	ev.At = s.now().UTC()
	r.At = ev.At
	cmp, op, err := s.eventOp(ev)
	if err != nil {
		return err
	}
	v, err := encode(r)
	if err != nil {
		return err
	}
	_, err = s.txn(ctx, "record_audit", []clientv3.Cmp{cmp}, []clientv3.Op{op, clientv3.OpPut(s.prefix+"audits/"+r.Kind, v)}, nil)
	return err
}

// Audits returns the last audit of each kind that was recorded.
func (s *Store) Audits(ctx context.Context) ([]AuditResult, error) {
	resp, err := s.get(ctx, "audits_list", s.prefix+"audits/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make([]AuditResult, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r AuditResult
		if err := decode(string(kv.Key), kv.Value, &r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Ping is one linearizable read: it succeeds only while etcd has a leader and
// answers.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.get(ctx, "ping", s.prefix+"registry/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	return err
}
