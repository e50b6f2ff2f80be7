package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/store"
)

// LeaderPlacement keeps the etcd leader in the region that signs. A
// strict-mode signature is one etcd write from the active region; it costs
// one quorum round trip from there only when the leader is there too (a
// leader in the other region adds a round trip to it and back on every
// write). The coordinator knows which member is in which region from
// --etcd-member-holders (member name → holder).
//
// After each grant this replica commits (settled for a moment, so that a
// batch of bumps moves the leader once) and every Interval (grants of other
// replicas, elections after a member restart), it counts the active epochs
// of each holder and, when the leader is not a member of the holder with
// the most, asks the leader to hand leadership to that holder's member
// (clientv3 Maintenance.MoveLeader). Moving leadership is always safe for
// etcd (the transferee catches up first; writes pause for about one
// election at most); a failure is logged and tried again at the next
// trigger. Replicas compute the same placement from the same etcd state,
// so they agree.
type LeaderPlacement struct {
	// Holders maps etcd member names to the holder (region) they are in;
	// members not named are never chosen.
	Holders map[string]string
	// Dial returns a client of one etcd endpoint (with the coordinator's
	// TLS settings): MoveLeader must be sent to the leader itself.
	Dial func(endpoint string) (*clientv3.Client, error)
	// Interval between checks without a grant; default 1m.
	Interval time.Duration
	// Settle is how long after a grant to wait for more; default 1s.
	Settle time.Duration
	// Logger; default none.
	Logger hclog.Logger
}

// ParseMemberHolders reads --etcd-member-holders: name=holder,... (every
// problem at once).
func ParseMemberHolders(v string) (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	for _, kv := range strings.Split(v, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		name, holder, ok := strings.Cut(kv, "=")
		name, holder = strings.TrimSpace(name), strings.TrimSpace(holder)
		switch {
		case !ok || name == "":
			errs = append(errs, fmt.Errorf("--etcd-member-holders entry %q must be member=holder, e.g. etcd-0=region-a", kv))
			continue
		case fencing.ValidateHolder(holder) != nil:
			errs = append(errs, fmt.Errorf("--etcd-member-holders entry %q: %v", kv, fencing.ValidateHolder(holder)))
			continue
		}
		if prev, dup := out[name]; dup && prev != holder {
			errs = append(errs, fmt.Errorf("--etcd-member-holders names member %q twice (%s and %s)", name, prev, holder))
			continue
		}
		out[name] = holder
	}
	return out, errors.Join(errs...)
}

// leaderFollower runs a LeaderPlacement.
type leaderFollower struct {
	p    LeaderPlacement
	kick chan struct{}
}

func newLeaderFollower(p LeaderPlacement) *leaderFollower {
	if p.Interval <= 0 {
		p.Interval = time.Minute
	}
	if p.Settle <= 0 {
		p.Settle = time.Second
	}
	if p.Logger == nil {
		p.Logger = hclog.NewNullLogger()
	}
	return &leaderFollower{p: p, kick: make(chan struct{}, 1)}
}

// granted asks for a check soon; it never blocks (the store's transition
// hook calls it).
func (f *leaderFollower) granted() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// run checks after grants and every Interval until ctx ends.
func (f *leaderFollower) run(ctx context.Context, st *store.Store) {
	t := time.NewTicker(f.p.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.kick:
			select { // let a batch of grants finish
			case <-ctx.Done():
				return
			case <-time.After(f.p.Settle):
			}
		}
		sts, err := st.Statuses(ctx)
		if err != nil {
			f.p.Logger.Warn("etcd leader placement: cannot read the epochs", "error", err)
			continue
		}
		if moved, err := f.place(ctx, st, activeHolders(sts)); err != nil {
			f.p.Logger.Warn("etcd leader placement failed; trying again after the next grant", "error", err)
		} else if moved != "" {
			f.p.Logger.Info("etcd leader moved to the signing region", "member", moved)
		}
	}
}

// activeHolders counts the active epochs of each holder.
func activeHolders(sts []fencing.Status) map[string]int {
	n := map[string]int{}
	for _, st := range sts {
		if st.Epoch.State == fencing.StateActive {
			n[st.Epoch.Holder]++
		}
	}
	return n
}

// place moves the leader to a member of the holder with the most active
// epochs when it is not on one, and returns the member it moved to ("" when
// nothing had to move). The members and the leader are the store's
// (Store.Members); MoveLeader must be sent to the leader itself.
func (f *leaderFollower) place(ctx context.Context, st *store.Store, active map[string]int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ms, err := st.Members(ctx)
	if err != nil {
		return "", fmt.Errorf("list etcd members: %w", err)
	}
	var leader uint64
	for _, m := range ms.Members {
		if m.Err == nil && m.Leader != 0 {
			leader = m.Leader
			break
		}
	}
	i := slices.IndexFunc(ms.Members, func(m store.EtcdMember) bool { return m.ID == leader })
	if leader == 0 || i < 0 || len(ms.Members[i].ClientURLs) == 0 {
		return "", fmt.Errorf("no etcd member says who leads, or the leader %x has no client URL", leader)
	}
	leaderEP := ms.Members[i].ClientURLs[0]
	byHolder := map[string][]*memberInfo{}
	var leaderHolder string
	for _, m := range ms.Members {
		h, ok := f.p.Holders[m.Name]
		if !ok {
			continue
		}
		byHolder[h] = append(byHolder[h], &memberInfo{id: m.ID, name: m.Name})
		if m.ID == leader {
			leaderHolder = h
		}
	}
	want := busiestHolder(active, byHolder, leaderHolder)
	if want == "" || want == leaderHolder {
		return "", nil
	}
	to := byHolder[want][0]
	cli, err := f.p.Dial(leaderEP)
	if err != nil {
		return "", fmt.Errorf("connect to the etcd leader at %s: %w", leaderEP, err)
	}
	defer cli.Close()
	if _, err := cli.MoveLeader(ctx, to.id); err != nil {
		return "", fmt.Errorf("move the etcd leader to %s (%s, %d active epochs): %w", to.name, want, active[want], err)
	}
	return to.name, nil
}

type memberInfo struct {
	id   uint64
	name string
}

// busiestHolder is the holder with the most active epochs among those with
// a member; a tie keeps the leader's holder, else the first by name.
func busiestHolder(active map[string]int, withMember map[string][]*memberInfo, leaderHolder string) string {
	holders := make([]string, 0, len(withMember))
	for h := range withMember {
		holders = append(holders, h)
	}
	sort.Strings(holders)
	best := ""
	for _, h := range holders {
		switch {
		case active[h] == 0:
		case best == "" || active[h] > active[best]:
			best = h
		case active[h] == active[best] && h == leaderHolder:
			best = h
		}
	}
	return best
}
