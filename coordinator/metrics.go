package coordinator

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/store"
)

// metrics are the coordinator's own series; the per-validator gauges are read
// from etcd at scrape time so every replica reports the same truth.
type metrics struct {
	transitions     *prometheus.CounterVec
	auditDuplicates *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer, st *store.Store, lg hclog.Logger) (*metrics, error) {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fencing_transitions_total",
			Help: "Epoch transitions and sidecar operations handled by this replica, by kind and result code (ok or a code word).",
		}, []string{"kind", "result"}),
		auditDuplicates: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fencing_audit_duplicates",
			Help: "Duplicate signatures found by the last audit reported to this replica, by kind (journal, chain).",
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.transitions, m.auditDuplicates, &stateCollector{st: st, lg: lg}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) result(kind string, code fencing.Code) {
	m.transitions.WithLabelValues(kind, string(code)).Inc()
}

var (
	epochDesc = prometheus.NewDesc("fencing_epoch", "Current epoch of the validator.", []string{"validator"}, nil)
	stateDesc = prometheus.NewDesc("fencing_epoch_state", "1 for the validator's current epoch state, 0 for the others.", []string{"validator", "state"}, nil)
	leaseDesc = prometheus.NewDesc("fencing_leases_live", "Live leases of the validator by holder.", []string{"validator", "holder"}, nil)
	bumpDesc  = prometheus.NewDesc("fencing_bump_in_progress", "1 while a bump of the validator is recorded and not yet granted.", []string{"validator"}, nil)
	upDesc    = prometheus.NewDesc("fencing_etcd_up", "1 if the last scrape could read the fencing state from etcd.", nil, nil)
)

// stateCollector reads every validator from etcd on scrape.
type stateCollector struct {
	st *store.Store
	lg hclog.Logger
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{epochDesc, stateDesc, leaseDesc, bumpDesc, upDesc} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	sts, err := c.st.Statuses(ctx)
	if err != nil {
		c.lg.Warn("metrics: cannot read fencing state", "error", err)
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1)
	for _, s := range sts {
		ch <- prometheus.MustNewConstMetric(epochDesc, prometheus.GaugeValue, float64(s.Epoch.Epoch), s.ID)
		for _, state := range []fencing.State{fencing.StateActive, fencing.StateRevoking, fencing.StateFenced} {
			v := 0.0
			if s.Epoch.State == state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, v, s.ID, string(state))
		}
		byHolder := map[string]int{s.Epoch.Holder: 0}
		for _, l := range s.Leases {
			byHolder[l.Holder]++
		}
		for h, n := range byHolder {
			ch <- prometheus.MustNewConstMetric(leaseDesc, prometheus.GaugeValue, float64(n), s.ID, h)
		}
		b := 0.0
		if s.Bump != nil {
			b = 1
		}
		ch <- prometheus.MustNewConstMetric(bumpDesc, prometheus.GaugeValue, b, s.ID)
	}
}
