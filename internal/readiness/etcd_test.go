package readiness

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// members builds n healthy voting members m0.. on host, following m0.
func members(n int, host func(i int) string) []api.EtcdMember {
	var out []api.EtcdMember
	for i := range n {
		out = append(out, api.EtcdMember{
			ID: fmt.Sprintf("%x", i+1), Name: fmt.Sprintf("m%d", i), Leader: "1", Version: "3.7.3",
			PeerURLs: []string{fmt.Sprintf("https://%s:2380", host(i))}, ClientURLs: []string{fmt.Sprintf("https://%s:2379", host(i))},
		})
	}
	return out
}

func distinctHosts(i int) string { return fmt.Sprintf("etcd-%d.example.com", i) }
func oneHost(int) string         { return "etcd.example.com" }

func TestEtcdFindings(t *testing.T) {
	threeDomains := map[string]string{"m0": "region-a", "m1": "region-b", "m2": "witness"}
	tests := []struct {
		name    string
		members []api.EtcdMember
		domains map[string]string
		want    []want // every other finding must be OK
	}{
		{"healthy over three domains", members(3, distinctHosts), threeDomains, nil},
		{"domains unknown, distinct hosts", members(3, distinctHosts), nil,
			[]want{{Warn, CheckEtcd, "etcd", "spread"}}},
		{"domains unknown, one host", members(3, oneHost), nil,
			[]want{{Critical, CheckEtcd, "etcd", "spread"}}},
		{"two members in one region", members(3, distinctHosts), map[string]string{"m0": "region-a", "m1": "region-a", "m2": "region-b"},
			[]want{{Critical, CheckEtcd, "etcd", "spread"}}},
		{"a member down of three", func() []api.EtcdMember {
			m := members(3, distinctHosts)
			m[2].Error, m[2].Leader = "no status within 5s", ""
			return m
		}(), threeDomains, []want{{Critical, CheckEtcd, "etcd", "member m2"}}},
		{"a member down of five", func() []api.EtcdMember {
			m := members(5, distinctHosts)
			m[4].Error, m[4].Leader = "no status within 5s", ""
			return m
		}(), map[string]string{"m0": "a", "m1": "a", "m2": "b", "m3": "b", "m4": "w"}, []want{{Warn, CheckEtcd, "etcd", "member m4"}}},
		{"quorum lost", func() []api.EtcdMember {
			m := members(3, distinctHosts)
			m[1].Error, m[1].Leader = "refused", ""
			m[2].Leader = ""
			return m
		}(), threeDomains, []want{
			{Critical, CheckEtcd, "etcd", "member m1"},
			{Critical, CheckEtcd, "etcd", "member m2"},
			{Critical, CheckEtcd, "etcd", "quorum"},
		}},
		{"split leaders", func() []api.EtcdMember {
			m := members(3, distinctHosts)
			m[2].Leader = "3"
			return m
		}(), threeDomains, []want{{Critical, CheckEtcd, "etcd", "quorum"}}},
		{"an alarm", func() []api.EtcdMember {
			m := members(3, distinctHosts)
			m[0].Alarms = []string{"NOSPACE"}
			return m
		}(), threeDomains, []want{{Critical, CheckEtcd, "etcd", "member m0"}}},
		{"a learner", func() []api.EtcdMember {
			m := members(4, distinctHosts)
			m[3].Learner = true
			return m
		}(), threeDomains, []want{{Warn, CheckEtcd, "etcd", "member m3"}}},
		{"one member", members(1, distinctHosts), map[string]string{"m0": "a"}, []want{
			{Critical, CheckEtcd, "etcd", "size"},
			{Critical, CheckEtcd, "etcd", "spread"},
		}},
		{"four members", members(4, distinctHosts), map[string]string{"m0": "a", "m1": "b", "m2": "w", "m3": "c"},
			[]want{{Warn, CheckEtcd, "etcd", "size"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := Report{Findings: etcdFindings(api.EtcdStatus{ClusterID: "c", Members: tt.members}, tt.domains)}
			expectOnly(t, rep, tt.want...)
		})
	}
}

// etcdSource answers GET /v1/etcd from a function.
type etcdSource func() (api.EtcdStatus, error)

func (f etcdSource) Etcd(context.Context) (api.EtcdStatus, error) { return f() }

// How a coordinator's answer is judged: no_quorum is critical, anything
// else that is not an answer is "not checked", never OK.
func TestEtcdCoordinatorErrors(t *testing.T) {
	for _, tt := range []struct {
		err error
		sev Severity
	}{
		{fencing.Errorf(fencing.CodeNoQuorum, "etcd: no quorum"), Critical},
		{fencing.Errorf(fencing.CodeForbidden, "alice may not get etcd"), Warn},
		{fencing.Errorf(fencing.CodeUnauthorized, "the operator API needs a token"), Warn},
		{errors.New("coordinator https://fencing.fencing.svc:7600 unreachable"), Warn},
	} {
		a, b := newWorld(t, "region-a", true, ""), newWorld(t, "region-b", false, "")
		ca, _ := fakeCluster("region-a", a, nowFunc())
		cb, _ := fakeCluster("region-b", b, nowFunc())
		o := fakeOptions()
		src := etcdSource(func() (api.EtcdStatus, error) { return api.EtcdStatus{}, tt.err })
		o.Coordinators = map[string]EtcdSource{"region-a": src, "region-b": src}
		rep, err := run(context.Background(), o, []*cluster{ca, cb})
		if err != nil {
			t.Fatal(err)
		}
		expectOnly(t, rep,
			want{tt.sev, CheckEtcd, "region-a", "coordinator"},
			want{tt.sev, CheckEtcd, "region-b", "coordinator"},
			want{Warn, CheckEtcd, "etcd", "members"})
	}
}
