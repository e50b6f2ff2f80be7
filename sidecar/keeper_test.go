package sidecar

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// slowCoordinator answers acquire and renew only after delay on the fake
// clock, as a coordinator behind a slow network would.
type slowCoordinator struct {
	clock *fakeClock
	delay time.Duration
	mu    sync.Mutex
	lease fencing.Lease
}

var _ Coordinator = (*slowCoordinator)(nil)

func (c *slowCoordinator) Acquire(ctx context.Context, r api.AcquireRequest) (api.GrantResponse, error) {
	c.clock.advance(c.delay)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lease = fencing.Lease{Validator: r.Validator, Epoch: 1, Holder: r.Holder, Sidecar: r.Sidecar, EpochRevision: 1, LeaseRevision: 2, TTLSeconds: r.TTLSeconds}
	return api.GrantResponse{Lease: c.lease}, nil
}

func (c *slowCoordinator) Renew(ctx context.Context, l fencing.Lease, _ *fencing.Watermark) (fencing.Lease, error) {
	c.clock.advance(c.delay)
	return l, nil
}
func (c *slowCoordinator) Release(context.Context, fencing.Lease, *fencing.Watermark) error {
	return nil
}
func (c *slowCoordinator) CheckLease(context.Context, fencing.Lease) error { return nil }
func (c *slowCoordinator) JournalSignature(context.Context, fencing.JournalRequest) (fencing.JournalEntry, error) {
	return fencing.JournalEntry{}, nil
}
func (c *slowCoordinator) JournalBatch(context.Context, []fencing.JournalRequest) ([]fencing.JournalEntry, []error, error) {
	return nil, nil, nil
}
func (c *slowCoordinator) WatchEpoch(ctx context.Context, id fencing.ValidatorID, after int64, wait time.Duration) (fencing.Epoch, int64, error) {
	<-ctx.Done()
	return fencing.Epoch{}, after, ctx.Err()
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Invariant 3: the deadline counts from when the request was sent, so a slow
// answer shortens the time left to sign instead of extending it.
func TestDeadlineFromSendTime(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	coord := &slowCoordinator{clock: clock, delay: 4 * time.Second}
	k := NewLeaseKeeper(coord, KeeperOptions{
		Validator: "val-1", Holder: "region-a", Sidecar: "a-0",
		TTL: 10 * time.Second, Margin: 2 * time.Second, RenewEvery: time.Hour, Now: clock.Now,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for {
		if _, _, err := k.current(); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// Sent at 1000, answered at 1004: the deadline is 1000+10-2 = 1008.
	_, _, rem := k.Status()
	if rem != 4*time.Second {
		t.Fatalf("time left after a 4s answer = %s, want 4s (deadline from the send time, not the answer)", rem)
	}
	clock.advance(3999 * time.Millisecond)
	if _, _, err := k.current(); err != nil {
		t.Fatalf("current() just before the deadline = %v", err)
	}
	clock.advance(time.Millisecond)
	if _, _, err := k.current(); fencing.CodeOf(err) != fencing.CodeFenced {
		t.Fatalf("current() at the deadline = %v, want fenced", err)
	}
}

func TestLoadKeyRefusals(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // not subject to the umask
			t.Fatal(err)
		}
		return p
	}
	hexKey := "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
	cases := []struct {
		name, path, pw, want string
	}{
		{"world readable", write("k1", hexKey, 0o604), "", "accessible to others"},
		{"group writable", write("k0", hexKey, 0o660), "", "writable by its group"},
		{"short", write("k2", "abcd", 0o600), "", "64 hex digits"},
		{"not hex", write("k3", strings.Repeat("z", 64), 0o600), "", "not hex"},
		{"keystore without password", write("k4", `{"version":3}`, 0o600), "", "--password-file"},
		{"hex with password", write("k5", hexKey, 0o600), "pw", "applies only to keystore"},
		{"missing", filepath.Join(dir, "nope"), "", "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadKey(c.path, c.pw)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), hexKey) {
				t.Fatalf("LoadKey = %v, want an error containing %q and no key material", err, c.want)
			}
		})
	}
	if _, err := LoadKey(write("secret", hexKey, 0o440), ""); err != nil {
		t.Fatalf("LoadKey(0440, as Kubernetes mounts a Secret with fsGroup) = %v", err)
	}
	k, err := LoadKey(write("good", "0x"+hexKey+"\n", 0o600), "")
	if err != nil || k.Address.Hex() != "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23" {
		t.Fatalf("LoadKey(good) = %v, %v", k, err)
	}
	if strings.Contains(k.String(), hexKey) {
		t.Fatal("Key.String shows key material")
	}
}
