package coordinator

import (
	"net/http"
	"strconv"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/store"
)

// etcdStatus answers GET /v1/etcd: the etcd members as this replica's
// client sees them and each member's own Status, for fencectl readiness
// (docs/readiness.md). It changes nothing; a member list that cannot be
// read at all is no_quorum.
func (s *Server) etcdStatus(w http.ResponseWriter, r *http.Request) {
	m, err := s.st.Members(r.Context())
	if err != nil {
		s.fail(w, r, "etcd", err)
		return
	}
	s.ok(w, "etcd", http.StatusOK, etcdStatusOf(m))
}

// etcdStatusOf is the wire form of m: IDs in hex, errors as sentences.
func etcdStatusOf(m store.EtcdMembers) api.EtcdStatus {
	out := api.EtcdStatus{ClusterID: hexID(m.ClusterID), Asked: m.Asked, At: m.At, Members: make([]api.EtcdMember, 0, len(m.Members))}
	for _, mm := range m.Members {
		am := api.EtcdMember{
			ID: hexID(mm.ID), Name: mm.Name, PeerURLs: mm.PeerURLs, ClientURLs: mm.ClientURLs, Learner: mm.Learner,
			Version: mm.Version, RaftTerm: mm.RaftTerm, RaftIndex: mm.RaftIndex, DBSize: mm.DBSize, Alarms: mm.Alarms,
		}
		if mm.Leader != 0 {
			am.Leader = hexID(mm.Leader)
		}
		if mm.Err != nil {
			am.Error = mm.Err.Error()
		}
		out.Members = append(out.Members, am)
	}
	return out
}

// hexID writes an etcd ID as etcdctl does.
func hexID(id uint64) string { return strconv.FormatUint(id, 16) }
