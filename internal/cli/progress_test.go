package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

func TestCountdown(t *testing.T) {
	lease := func(s string, d time.Duration) api.LiveLease {
		return api.LiveLease{Holder: "region-a", Sidecar: s, ExpiresIn: api.Duration{Duration: d}}
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	v := newProgressView(&bytes.Buffer{}, false)
	defer v.close()
	v.drains["val-1"] = drain{leases: []api.LiveLease{lease("a-0", 10*time.Second)}, at: now.Add(-4 * time.Second)}
	if got, want := v.lockedCountdown(now), "waiting for 1 lease to end: val-1 a-0@region-a expires in 6.0s"; got != want {
		t.Errorf("countdown = %q, want %q", got, want)
	}
	v.drains["val-2"] = drain{leases: []api.LiveLease{lease("a-1", 3*time.Second), lease("a-2", 20*time.Second)}, at: now}
	if got, want := v.lockedCountdown(now.Add(5*time.Second)), "waiting for 3 leases of 2 validators to end: the last, val-2 a-2@region-a, expires in 15.0s"; got != want {
		t.Errorf("countdown = %q, want %q", got, want)
	}
}

// Off a terminal, a bump's steps are lines and the countdown at most one a
// second; a finished bump ends with its handover time.
func TestWriteTimeline(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	r := fencing.BumpResult{
		Bump: fencing.Bump{ID: "b1", FromEpoch: 1, FromHold: "region-a", To: "region-b", By: "alice", Reason: "INC-1"},
		Done: true, Epoch: fencing.Epoch{Epoch: 2, State: fencing.StateActive, Holder: "region-b", UpdatedAt: at.Add(30 * time.Millisecond)},
		Timeline: []fencing.TimelineEntry{{At: at, Step: "revoke_committed"}, {At: at.Add(20 * time.Millisecond), Step: "lease_released", Detail: "a-0"}, {At: at.Add(30 * time.Millisecond), Step: "grant_committed"}},
	}
	var b bytes.Buffer
	WriteTimeline(&b, "val-1", r)
	for _, want := range []string{
		"val-1: bump b1: epoch 1 on region-a -> region-b, by alice: INC-1\n",
		"val-1  2026-12-01T12:00:00.020Z  +0.020s  lease_released    a-0\n",
		"val-1: granted: epoch 2 active on region-b; handover took 0.030s\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("WriteTimeline lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	r.Done, r.Epoch.State = false, fencing.StateRevoking
	WriteTimeline(&b, "val-1", r)
	if !strings.Contains(b.String(), "val-1: still revoking: the bump goes on in the coordinator; follow it: fencectl bump --follow b1 val-1") {
		t.Errorf("WriteTimeline of a bump under way:\n%s", b.String())
	}
}
