package api

import (
	"context"
	"net/http"
	"time"
)

// EtcdStatus is the etcd cluster as one coordinator replica sees it
// (GET /v1/etcd, operator verb get on resource etcd): the member list and
// what each member says of itself when asked on its own client URL.
// fencectl readiness uses it to check that etcd is healthy and spread over
// failure domains (docs/readiness.md).
type EtcdStatus struct {
	// ClusterID is the etcd cluster ID in hex; two coordinators that
	// report different IDs use different etcd clusters.
	ClusterID string `json:"cluster_id"`
	// Members as the member list names them, in the order etcd lists them.
	Members []EtcdMember `json:"members"`
	// Asked and At are the coordinator's clock when it began asking etcd
	// and when it had every answer: the caller bounds the clock offset to
	// its own round trip less the time etcd took (readiness compares
	// clocks with them).
	Asked time.Time `json:"asked"`
	At    time.Time `json:"at"`
}

// EtcdMember is one etcd member. The fields after ClientURLs come from the
// member's Status; Error says why it could not be asked, and then they are
// empty.
type EtcdMember struct {
	// ID is the member ID in hex.
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	// Learner is a member that does not vote yet.
	Learner bool `json:"learner,omitempty"`

	// Error is why the member did not answer its Status (unreachable,
	// timed out); empty when it answered.
	Error string `json:"error,omitempty"`
	// Leader is the member ID (hex) this member follows; empty when it
	// knows of no leader.
	Leader    string `json:"leader,omitempty"`
	Version   string `json:"version,omitempty"`
	RaftTerm  uint64 `json:"raft_term,omitempty"`
	RaftIndex uint64 `json:"raft_index,omitempty"`
	DBSize    int64  `json:"db_size,omitempty"`
	// Alarms are the member's own health errors (e.g. "NOSPACE").
	Alarms []string `json:"alarms,omitempty"`
}

// Etcd reads the etcd cluster's members and their health through the
// coordinator (GET /v1/etcd).
func (c *Client) Etcd(ctx context.Context) (EtcdStatus, error) {
	var out EtcdStatus
	_, err := c.do(ctx, http.MethodGet, "/v1/etcd", nil, &out)
	return out, err
}
