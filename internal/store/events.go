package store

import (
	"context"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Events returns the history in commit order (etcd revision), of validator id
// or of all validators when id is empty; limit > 0 keeps the newest limit.
func (s *Store) Events(ctx context.Context, id string, limit int) ([]fencing.Event, error) {
	if id != "" {
		cid, err := fencing.CanonicalValidatorID(id)
		if err != nil {
			return nil, err
		}
		id = cid
	}
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

// RecordEvent appends an event that is not a transition (an audit result).
func (s *Store) RecordEvent(ctx context.Context, ev fencing.Event) error {
	ev.At = s.now().UTC()
	cmp, op, err := s.eventOp(ev)
	if err != nil {
		return err
	}
	_, err = s.txn(ctx, "record_event", []clientv3.Cmp{cmp}, []clientv3.Op{op}, nil)
	return err
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

// Ping is one linearizable read: it succeeds only while etcd has a leader and
// answers.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.get(ctx, "ping", s.prefix+"registry/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	return err
}
