package readiness

import (
	"net/http"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/api"
)

func nowFunc() func() time.Time { return time.Now }

func TestClockJudge(t *testing.T) {
	const m = 2 * time.Second
	for _, tt := range []struct {
		name   string
		lo, hi time.Duration
		want   Severity
	}{
		{"in sync", -300 * time.Millisecond, 700 * time.Millisecond, OK},
		{"at the margin", 1 * time.Second, 2 * time.Second, OK},
		{"certainly ahead", 2100 * time.Millisecond, 3 * time.Second, Critical},
		{"certainly behind", -10 * time.Second, -9 * time.Second, Critical},
		{"probably ahead", 1800 * time.Millisecond, 2800 * time.Millisecond, Warn},
		{"probably behind", -2900 * time.Millisecond, -1900 * time.Millisecond, Warn},
	} {
		sev, detail := clockSample{lo: tt.lo, hi: tt.hi}.judge(m, "the clocks")
		if sev != tt.want {
			t.Errorf("%s: judge([%v, %v]) = %v (%s), want %v", tt.name, tt.lo, tt.hi, sev, detail, tt.want)
		}
	}
	if sev, d := (clockSample{missing: "no Date header"}).judge(m, "x"); sev != Warn || d != "not checked: no Date header" {
		t.Errorf("judge(missing) = %v %q", sev, d)
	}
}

func TestDateSample(t *testing.T) {
	local := time.Date(2026, 12, 1, 9, 0, 0, 400e6, time.UTC)
	// The server's clock is 5 s ahead; its Date header cuts to the second.
	date := local.Add(5 * time.Second).Format(http.TimeFormat)
	s := dateSample(date, local, local.Add(100*time.Millisecond))
	if s.missing != "" || s.lo > 5*time.Second || s.hi < 5*time.Second || s.hi-s.lo > 1100*time.Millisecond {
		t.Errorf("dateSample(%s) = [%v, %v] %q, want an interval of at most 1.1s around 5s", date, s.lo, s.hi, s.missing)
	}
	for _, bad := range []string{"", "yesterday"} {
		if s := dateSample(bad, local, local); s.missing == "" {
			t.Errorf("dateSample(%q) = %+v, want it missing", bad, s)
		}
	}
	// Two such samples bound the difference of two remote clocks.
	d := dateSample(date, local, local).minus(dateSample(local.Format(http.TimeFormat), local, local))
	if d.lo > 5*time.Second || d.hi < 5*time.Second {
		t.Errorf("minus = [%v, %v], want it to hold 5s", d.lo, d.hi)
	}
}

// The coordinator's answer is bounded NTP style: however long etcd took
// (Asked to At), only the network round trip widens the bounds.
func TestCoordinatorSample(t *testing.T) {
	sent := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	received := sent.Add(5*time.Second + 20*time.Millisecond)
	skew := 3 * time.Second
	st := api.EtcdStatus{Asked: sent.Add(10*time.Millisecond + skew), At: received.Add(-10*time.Millisecond + skew)}
	s := coordinatorSample(st, sent, received)
	if s.lo > skew || s.hi < skew || s.hi-s.lo > 20*time.Millisecond {
		t.Errorf("coordinatorSample = [%v, %v], want at most 20ms around %v", s.lo, s.hi, skew)
	}
	// An answer without Asked (older coordinator) falls back to At alone.
	s = coordinatorSample(api.EtcdStatus{At: st.At}, sent, received)
	if s.lo > skew || s.hi < skew {
		t.Errorf("coordinatorSample(no Asked) = [%v, %v], want it to hold %v", s.lo, s.hi, skew)
	}
}
