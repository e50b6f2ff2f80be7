package coordinator_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// askedReviewer authorizes one token and records what it was asked.
type askedReviewer struct {
	token string
	mu    sync.Mutex
	asked []string
}

func (r *askedReviewer) Authorize(_ context.Context, tok, verb, resource, name string) (string, error) {
	r.mu.Lock()
	r.asked = append(r.asked, verb+" "+resource)
	r.mu.Unlock()
	if tok != r.token {
		return "", fencing.Errorf(fencing.CodeUnauthorized, "unknown token")
	}
	return "alice", nil
}

// GET /v1/etcd lists the members of the real three-member cluster with
// each member's own status, is an operator endpoint (verb get on resource
// etcd), and names a member that is down with the reason.
func TestEtcdEndpoint(t *testing.T) {
	rev := &askedReviewer{token: "op-token"}
	c := fencetest.Start(t, fencetest.Options{Members: 3, OperatorReviewer: rev})
	ctx := context.Background()

	if _, err := c.Client.Etcd(ctx); fencing.CodeOf(err) != fencing.CodeUnauthorized {
		t.Fatalf("Etcd() without a token = %v, want unauthorized", err)
	}
	op := c.ClientWithToken(t, "op-token")
	before := time.Now()
	st, err := op.Etcd(ctx)
	if err != nil {
		t.Fatalf("Etcd() = %v", err)
	}
	if st.ClusterID == "" || len(st.Members) != 3 || st.Asked.Before(before.Add(-time.Second)) || st.At.Before(st.Asked) || st.At.After(time.Now().Add(time.Second)) {
		t.Fatalf("Etcd() = %+v, want a cluster ID, 3 members and the coordinator's time", st)
	}
	leaders := map[string]bool{}
	for _, m := range st.Members {
		t.Logf("member %s id=%s leader=%s version=%s peer=%v client=%v error=%q", m.Name, m.ID, m.Leader, m.Version, m.PeerURLs, m.ClientURLs, m.Error)
		if m.Error != "" || m.Leader == "" || m.Version == "" || m.ID == "" || len(m.PeerURLs) == 0 {
			t.Errorf("member %+v: want it answering with a leader", m)
		}
		leaders[m.Leader] = true
	}
	if len(leaders) != 1 {
		t.Errorf("members follow leaders %v, want one", leaders)
	}
	rev.mu.Lock()
	asked := rev.asked
	rev.mu.Unlock()
	if len(asked) != 1 || asked[0] != "get etcd" {
		t.Errorf("the reviewer was asked %q, want [get etcd]", asked)
	}

	c.Etcd.Stop(2)
	st, err = op.Etcd(ctx)
	if err != nil {
		t.Fatalf("Etcd() with member m2 down = %v", err)
	}
	j, _ := json.MarshalIndent(st, "", "  ")
	t.Logf("GET /v1/etcd with m2 down:\n%s", j)
	for _, m := range st.Members {
		if down := m.Name == "m2"; down != (m.Error != "") {
			t.Errorf("with m2 down, member %s says error %q", m.Name, m.Error)
		}
	}
}
