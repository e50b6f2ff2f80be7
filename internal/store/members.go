package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdMembers is the etcd cluster as this store's client sees it: the member
// list and each member's own Status.
type EtcdMembers struct {
	ClusterID uint64
	Members   []EtcdMember
	// Asked and At are the store's clock before the first question and
	// after the last answer: a caller bounds the clock offset with them.
	Asked, At time.Time
}

// EtcdMember is one member of the list and what it said of itself when
// asked on its first client URL. Err is why it did not answer; the Status
// fields are then zero.
type EtcdMember struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	Learner    bool

	Err       error
	Leader    uint64 // 0: it knows of no leader
	Version   string
	RaftTerm  uint64
	RaftIndex uint64
	DBSize    int64
	Alarms    []string // the member's Status errors, e.g. "NOSPACE"
}

// Members lists the etcd members and asks each for its Status on its own
// client URL, all at once, each within the request timeout.
//
// The list is read serializably (from whichever member the client talks
// to, without a round through the leader), so a cluster without quorum
// still answers and each member's Status shows which are down. Only a
// member list that cannot be read at all is an error (no_quorum, like
// every etcd failure here).
func (s *Store) Members(ctx context.Context) (EtcdMembers, error) {
	asked := s.now().UTC()
	var ml *clientv3.MemberListResponse
	err := s.opAnyLeader(ctx, "member_list", func(ctx context.Context) error {
		var err error
		ml, err = s.cli.MemberList(ctx, clientv3.WithSerializable())
		return err
	})
	if err != nil {
		return EtcdMembers{}, err
	}
	out := EtcdMembers{ClusterID: ml.Header.GetClusterId(), Members: make([]EtcdMember, len(ml.Members))}
	var wg sync.WaitGroup
	for i, m := range ml.Members {
		out.Members[i] = EtcdMember{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, Learner: m.IsLearner}
		if len(m.ClientURLs) == 0 {
			// A member added but never started has no client URL yet.
			out.Members[i].Err = errNoClientURL
			continue
		}
		wg.Go(func() {
			mm := &out.Members[i]
			sctx, cancel := context.WithTimeout(ctx, s.timeout)
			defer cancel()
			st, err := s.cli.Status(sctx, m.ClientURLs[0])
			if err != nil {
				mm.Err = fmt.Errorf("no status from %s within %v: %w", m.ClientURLs[0], s.timeout, err)
				return
			}
			mm.Leader, mm.Version, mm.RaftTerm, mm.RaftIndex, mm.DBSize, mm.Alarms = st.Leader, st.Version, st.RaftTerm, st.RaftIndex, st.DbSize, st.Errors
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return EtcdMembers{}, fmt.Errorf("member status: %w", err)
	}
	out.Asked, out.At = asked, s.now().UTC()
	return out, nil
}

type memberError string

func (e memberError) Error() string { return string(e) }

const errNoClientURL = memberError("the member has no client URL (added but never started)")

// opAnyLeader is op without the require-leader context: the member list
// must be readable when there is no leader, which is what it is asked to
// find out.
func (s *Store) opAnyLeader(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	return s.op(ctx, name, func(rctx context.Context) error {
		dl, _ := rctx.Deadline() // op's timeout, without its require-leader metadata
		lctx, cancel := context.WithDeadline(ctx, dl)
		defer cancel()
		return fn(lctx)
	})
}
