package readiness

import (
	"fmt"
	"net/http"
	"time"

	"github.com/validator-fencing/fencing/internal/api"
)

// clockSample bounds a remote clock's offset from this machine's: remote
// minus local lies in [lo, hi]. missing says why there is no sample.
type clockSample struct {
	lo, hi  time.Duration
	missing string
}

// dateSample bounds the offset from an HTTP Date header: the server wrote
// its clock, cut to the second, between sent and received (local times).
func dateSample(date string, sent, received time.Time) clockSample {
	if date == "" {
		return clockSample{missing: "the API server sent no Date header"}
	}
	d, err := http.ParseTime(date)
	if err != nil {
		return clockSample{missing: fmt.Sprintf("the API server's Date header %q does not parse", date)}
	}
	return clockSample{lo: d.Sub(received), hi: d.Add(time.Second).Sub(sent)}
}

// coordinatorSample bounds a coordinator's offset from the times of its
// GET /v1/etcd answer, NTP style: it asked etcd no earlier than the request
// was sent and answered no later than it was received, so the offset lies
// in [At - received, Asked - sent], however long etcd took.
func coordinatorSample(st api.EtcdStatus, sent, received time.Time) *clockSample {
	asked := st.Asked
	if asked.IsZero() || asked.After(st.At) {
		asked = st.At
	}
	return &clockSample{lo: st.At.Sub(received), hi: asked.Sub(sent)}
}

// minus bounds a's offset from b's.
func (a clockSample) minus(b clockSample) clockSample {
	return clockSample{lo: a.lo - b.hi, hi: a.hi - b.lo}
}

// judge grades an offset against margin: critical when it is certainly
// beyond the margin, a warning when the middle of its bounds is (the Date
// header has whole seconds, so a sample is up to a second wide), OK
// otherwise.
func (c clockSample) judge(margin time.Duration, what string) (Severity, string) {
	if c.missing != "" {
		return Warn, "not checked: " + c.missing
	}
	mid := (c.lo + c.hi) / 2
	between := fmt.Sprintf("between %v and %v", c.lo.Round(time.Millisecond), c.hi.Round(time.Millisecond))
	switch {
	case c.lo > margin || c.hi < -margin:
		return Critical, fmt.Sprintf("%s differ by about %v (%s), beyond the %v margin: fix the clock (NTP) of whichever host is wrong", what, mid.Round(time.Millisecond), between, margin)
	case mid > margin || mid < -margin:
		return Warn, fmt.Sprintf("%s probably differ by about %v (%s), beyond the %v margin; check NTP", what, mid.Round(time.Millisecond), between, margin)
	}
	return OK, fmt.Sprintf("%s agree within %v (offset %s)", what, margin, between)
}

// checkClocks compares each API server's clock (its Date header) and each
// coordinator's (the time in its GET /v1/etcd answer) with this machine's,
// and the two clusters' with each other. A check that cannot tell whose
// clock is wrong says so; it only knows they disagree.
func (r *runner) checkClocks() {
	m := r.o.SafetyMargin
	for _, s := range r.states {
		if s.apiClock != nil {
			sev, d := s.apiClock.judge(m, "the API server's clock and this machine's")
			r.add(sev, CheckClock, s.cluster.name, "api-server", d)
		}
		if s.coordClock != nil {
			sev, d := s.coordClock.judge(m, "the coordinator's clock and this machine's")
			r.add(sev, CheckClock, s.cluster.name, "coordinator", d)
		}
	}
	a, b := r.states[0], r.states[1]
	if a.apiClock != nil && b.apiClock != nil && a.apiClock.missing == "" && b.apiClock.missing == "" {
		sev, d := a.apiClock.minus(*b.apiClock).judge(m, "the two API servers' clocks")
		r.add(sev, CheckClock, r.pair(), "api-servers", d)
	}
	if a.coordClock != nil && b.coordClock != nil {
		sev, d := a.coordClock.minus(*b.coordClock).judge(m, "the two coordinators' clocks")
		r.add(sev, CheckClock, r.pair(), "coordinators", d)
	}
}
