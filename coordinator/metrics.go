package coordinator

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/store"
	"github.com/validator-fencing/fencing/internal/version"
)

// Metrics are the coordinator's own series. The per-validator gauges are
// read from etcd at scrape time (stateCollector) so every replica reports the
// same truth; the counters and the bump histogram count what this replica
// did. Transition is the store's OnTransition hook.
type Metrics struct {
	requests     *prometheus.CounterVec
	transitions  *prometheus.CounterVec
	bumpDuration prometheus.Histogram
	// afterGrant, when set, is told of each grant (LeaderPlacement).
	afterGrant atomic.Pointer[func()]
}

// NewMetrics registers the coordinator's counters on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fencing_coordinator_requests_total",
			Help: "API requests handled by this replica, by operation and result (ok or the refusal's code word).",
		}, []string{"op", "result"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fencing_transitions_total",
			Help: "Epoch transitions committed by this replica, by kind (validator_added, revoke_committed, bump_started, fenced, grant_committed) and result (ok).",
		}, []string{"kind", "result"}),
		bumpDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fencing_bump_duration_seconds",
			Help:    "Time from a bump's start (revoke) to its grant, for grants this replica committed.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.transitions, m.bumpDuration, version.Collector("fence-coordinator")} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Transition counts an epoch transition this replica committed.
func (m *Metrics) Transition(ev fencing.Event) {
	m.transitions.WithLabelValues(string(ev.Kind), "ok").Inc()
	if ev.Kind == fencing.EventGrant && !ev.BumpStartedAt.IsZero() {
		m.bumpDuration.Observe(ev.At.Sub(ev.BumpStartedAt).Seconds())
	}
	if f := m.afterGrant.Load(); f != nil && ev.Kind == fencing.EventGrant {
		(*f)()
	}
}

func (m *Metrics) result(op string, code fencing.Code) {
	m.requests.WithLabelValues(op, string(code)).Inc()
}

var (
	epochDesc = prometheus.NewDesc("fencing_validator_epoch", "Current epoch of the validator.", []string{"validator"}, nil)
	stateDesc = prometheus.NewDesc("fencing_validator_epoch_state", "1 for the validator's current epoch state, 0 for the others.", []string{"validator", "state"}, nil)
	leaseDesc = prometheus.NewDesc("fencing_validator_leases", "Live leases of the validator by holder (at most one in all).", []string{"validator", "holder"}, nil)
	bumpDesc  = prometheus.NewDesc("fencing_bump_in_progress", "1 while a bump of the validator is recorded and not yet granted.", []string{"validator"}, nil)
	upDesc    = prometheus.NewDesc("fencing_etcd_up", "1 if the last scrape could read the fencing state from etcd.", nil, nil)
	auditDesc = prometheus.NewDesc("fencing_audit_duplicates", "Duplicate signatures found by the last audit of each kind (journal, chain) recorded in etcd; 0 until one is.", []string{"kind"}, nil)
)

// stateCollector reads every validator from etcd on scrape.
type stateCollector struct {
	st *store.Store
	lg hclog.Logger
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{epochDesc, stateDesc, leaseDesc, bumpDesc, upDesc, auditDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	sts, err := c.st.Statuses(ctx)
	var audits []store.AuditResult
	if err == nil {
		audits, err = c.st.Audits(ctx)
	}
	if err != nil {
		c.lg.Warn("metrics: cannot read fencing state", "error", err)
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1)
	dups := map[string]int{"journal": 0, "chain": 0}
	for _, a := range audits {
		if _, ok := dups[a.Kind]; ok { // readiness results are evidence, not duplicates
			dups[a.Kind] = a.Duplicates
		}
	}
	for kind, n := range dups {
		ch <- prometheus.MustNewConstMetric(auditDesc, prometheus.GaugeValue, float64(n), kind)
	}
	for _, s := range sts {
		ch <- prometheus.MustNewConstMetric(epochDesc, prometheus.GaugeValue, float64(s.Epoch.Epoch), string(s.ID))
		for _, state := range []fencing.State{fencing.StateActive, fencing.StateRevoking, fencing.StateFenced} {
			v := 0.0
			if s.Epoch.State == state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, v, string(s.ID), string(state))
		}
		byHolder := map[string]int{s.Epoch.Holder: 0}
		for _, l := range s.Leases {
			byHolder[l.Holder]++
		}
		for h, n := range byHolder {
			ch <- prometheus.MustNewConstMetric(leaseDesc, prometheus.GaugeValue, float64(n), string(s.ID), h)
		}
		b := 0.0
		if s.Bump != nil {
			b = 1
		}
		ch <- prometheus.MustNewConstMetric(bumpDesc, prometheus.GaugeValue, b, string(s.ID))
	}
}
