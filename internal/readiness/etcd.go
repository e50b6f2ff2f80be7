package readiness

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// checkEtcd asks each cluster's coordinator for GET /v1/etcd (etcd is
// usually outside the clusters; the coordinators are its only clients).
// A coordinator that cannot be asked is "not checked", a warning, never OK;
// one that answers no_quorum is critical. The etcd cluster is then judged
// on the first answer: every voting member answering with the one leader
// and no alarm, at least three voting members, and no failure domain whose
// loss takes the quorum. Two answers with different cluster IDs mean the
// regions are not fenced against each other at all.
func (r *runner) checkEtcd(ctx context.Context) {
	var answered []*state
	for _, s := range r.states {
		name := s.cluster.name
		src := r.o.Coordinators[name]
		if src == nil {
			r.add(Warn, CheckEtcd, name, "coordinator", "not checked: no coordinator URL was given for this context, so etcd was not asked (the coordinator answers GET /v1/etcd)")
			continue
		}
		sent := r.o.Now()
		st, err := src.Etcd(ctx)
		received := r.o.Now()
		switch {
		case err == nil:
			s.etcd = &st
			s.coordClock = coordinatorSample(st, sent, received)
			answered = append(answered, s)
			r.add(OK, CheckEtcd, name, "coordinator", fmt.Sprintf("answered: etcd cluster %s, %d member(s)", st.ClusterID, len(st.Members)))
		case fencing.CodeOf(err) == fencing.CodeNoQuorum:
			s.etcdErr = err
			r.add(Critical, CheckEtcd, name, "coordinator", fmt.Sprintf("the coordinator cannot read etcd: %v", err))
		case fencing.CodeOf(err) == fencing.CodeForbidden:
			s.etcdErr = err
			r.add(Warn, CheckEtcd, name, "coordinator", fmt.Sprintf("not checked: %v (the operator needs verb get on resource etcd of fencing.validator-fencing.io)", err))
		default:
			s.etcdErr = err
			r.add(Warn, CheckEtcd, name, "coordinator", fmt.Sprintf("not checked: %v", err))
		}
	}
	if len(answered) == 0 {
		r.add(Warn, CheckEtcd, "etcd", "members", "not checked: no coordinator answered GET /v1/etcd")
		return
	}
	if len(answered) == 2 && answered[0].etcd.ClusterID != answered[1].etcd.ClusterID {
		r.add(Critical, CheckEtcd, r.pair(), "cluster ID", fmt.Sprintf("%s's coordinator uses etcd cluster %s, %s's uses %s: the regions are not fenced against each other; point both coordinators (etcd.endpoints) at one etcd cluster", answered[0].cluster.name, answered[0].etcd.ClusterID, answered[1].cluster.name, answered[1].etcd.ClusterID))
	}
	r.rep.Findings = append(r.rep.Findings, etcdFindings(*answered[0].etcd, r.o.EtcdDomains)...)
}

// etcdFindings judges one view of the etcd cluster. domains maps member
// names to failure domains; a member without one is placed by its peer
// URL's host, which can show a bad spread but never prove a good one.
func etcdFindings(st api.EtcdStatus, domains map[string]string) []Finding {
	var out []Finding
	add := func(sev Severity, subject, detail string) {
		out = append(out, Finding{Severity: sev, Check: CheckEtcd, Cluster: "etcd", Subject: subject, Detail: detail})
	}
	members := slices.Clone(st.Members)
	slices.SortFunc(members, func(a, b api.EtcdMember) int { return strings.Compare(memberName(a), memberName(b)) })
	var voting []api.EtcdMember
	for _, m := range members {
		if !m.Learner {
			voting = append(voting, m)
		}
	}
	n := len(voting)
	quorum := n/2 + 1
	healthy := 0
	leaders := map[string]bool{}
	for _, m := range voting {
		if memberProblem(m) == "" {
			healthy++
			leaders[m.Leader] = true
		}
	}
	// Losing a member with no tolerance left takes the quorum: critical.
	tolerance := healthy - quorum
	for _, m := range members {
		sub := "member " + memberName(m)
		p := memberProblem(m)
		switch {
		case m.Learner:
			add(Warn, sub, "a learner: it does not vote; promote it (etcdctl member promote) or remove it")
		case p == "":
			add(OK, sub, fmt.Sprintf("answers, follows leader %s, version %s, raft index %d", m.Leader, m.Version, m.RaftIndex))
		case tolerance > 0:
			add(Warn, sub, p+fmt.Sprintf("; %d more member(s) may fail before the quorum is lost", tolerance))
		default:
			add(Critical, sub, p+"; with it down, one more failure (or none) takes the quorum: every lease renewal and signature stops")
		}
	}
	switch {
	case healthy < quorum:
		add(Critical, "quorum", fmt.Sprintf("%d of %d voting members answer with a leader, %d needed: no lease can be granted or renewed", healthy, n, quorum))
	case len(leaders) > 1:
		add(Critical, "quorum", fmt.Sprintf("the members follow different leaders (%s): a split or an election in progress; check again", strings.Join(slices.Sorted(maps.Keys(leaders)), ", ")))
	default:
		add(OK, "quorum", fmt.Sprintf("%d of %d voting members answer with one leader (quorum %d)", healthy, n, quorum))
	}
	switch {
	case n < 3:
		add(Critical, "size", fmt.Sprintf("%d voting member(s): a single failure takes the quorum; run 3 or 5 members over three failure domains", n))
	case n%2 == 0:
		add(Warn, "size", fmt.Sprintf("%d voting members tolerate as few failures as %d do; run 3 or 5", n, n-1))
	}
	add(spread(voting, quorum, domains))
	return out
}

// memberProblem says why m is not healthy, or "".
func memberProblem(m api.EtcdMember) string {
	switch {
	case m.Error != "":
		return "does not answer: " + m.Error
	case m.Leader == "":
		return "answers but knows no leader"
	case len(m.Alarms) > 0:
		return "raises alarms " + strings.Join(m.Alarms, ", ")
	}
	return ""
}

func memberName(m api.EtcdMember) string {
	if m.Name == "" {
		return m.ID + " (unstarted)"
	}
	return m.Name
}

// spread checks that no one failure domain holds enough voting members to
// take the quorum with it.
func spread(voting []api.EtcdMember, quorum int, domains map[string]string) (Severity, string, string) {
	in := map[string][]string{} // domain -> members
	var guessed []string
	for _, m := range voting {
		d, ok := domains[m.Name]
		if !ok {
			d = "host " + peerHost(m)
			guessed = append(guessed, m.Name)
		}
		in[d] = append(in[d], memberName(m))
	}
	var lost []string
	for _, d := range slices.Sorted(maps.Keys(in)) {
		if len(voting)-len(in[d]) < quorum {
			lost = append(lost, fmt.Sprintf("%s (%s)", d, strings.Join(in[d], ", ")))
		}
	}
	where := describeDomains(in)
	switch {
	case len(lost) > 0:
		return Critical, "spread", fmt.Sprintf("losing %s takes the quorum with it; place the members in three failure domains (e.g. region A, region B and a witness). Members by domain: %s", strings.Join(lost, " or "), where)
	case len(guessed) > 0:
		return Warn, "spread", fmt.Sprintf("not checked: the failure domains of %s are not known, and distinct hosts do not prove distinct failure domains; give each member's domain. Members by host or domain: %s", strings.Join(guessed, ", "), where)
	}
	return OK, "spread", fmt.Sprintf("losing any one failure domain keeps the quorum: %s", where)
}

func describeDomains(in map[string][]string) string {
	var out []string
	for _, d := range slices.Sorted(maps.Keys(in)) {
		out = append(out, fmt.Sprintf("%s: %s", d, strings.Join(in[d], ", ")))
	}
	return strings.Join(out, "; ")
}

// peerHost is the host of m's first peer URL.
func peerHost(m api.EtcdMember) string {
	if len(m.PeerURLs) == 0 {
		return "unknown"
	}
	u, err := url.Parse(m.PeerURLs[0])
	if err != nil || u.Hostname() == "" {
		return m.PeerURLs[0]
	}
	return u.Hostname()
}
