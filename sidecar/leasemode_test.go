package sidecar

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// cutCoordinator is the coordinator seen through a link the test can cut
// (a partition): once cut, every call fails as unreachable. It remembers the
// watermark each successful renewal reported and when that renewal was sent.
type cutCoordinator struct {
	Coordinator
	cut atomic.Bool

	mu         sync.Mutex
	reported   *fencing.Watermark // by the last successful renewal
	reportedAt time.Time          // when that renewal was sent
	failedAt   time.Time          // when the first renewal failed
}

var errCut = fencing.Errorf(fencing.CodeUnavailable, "partitioned by the test")

func (c *cutCoordinator) Renew(ctx context.Context, l fencing.Lease, wm *fencing.Watermark) (fencing.Lease, error) {
	sent := time.Now()
	if c.cut.Load() {
		c.mu.Lock()
		if c.failedAt.IsZero() {
			c.failedAt = time.Now()
		}
		c.mu.Unlock()
		return fencing.Lease{}, errCut
	}
	nl, err := c.Coordinator.Renew(ctx, l, wm)
	if err == nil {
		c.mu.Lock()
		c.reported, c.reportedAt = wm, sent
		c.mu.Unlock()
	}
	return nl, err
}

func (c *cutCoordinator) Release(ctx context.Context, l fencing.Lease, wm *fencing.Watermark) error {
	if c.cut.Load() {
		return errCut
	}
	return c.Coordinator.Release(ctx, l, wm)
}

func (c *cutCoordinator) WatchEpoch(ctx context.Context, id fencing.ValidatorID, after int64, wait time.Duration) (fencing.Epoch, int64, error) {
	if c.cut.Load() {
		<-ctx.Done()
		return fencing.Epoch{}, 0, errCut
	}
	return c.Coordinator.WatchEpoch(ctx, id, after, wait)
}

// Finding 5: after a partition, a lease-mode sidecar stops signing at its
// first failed renewal, long before its deadline, so what the next holder's
// floor can miss is what was signed between the last successful renewal's
// report and that failure (at most one renew interval plus two renewal
// timeouts, docs/architecture.md), not TTL - margin of signatures. The test
// measures that window and the signatures in it.
func TestLeaseModeStopsAtFirstFailedRenewal(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	key, addr := testKey(t)
	c.AddValidator(t, addr, "region-a")
	link := &cutCoordinator{Coordinator: c.Client}
	cfg := Config{
		Holder: "region-a", Name: "a-0", Keys: []string{key}, StateDir: t.TempDir(), Mode: string(ModeLease),
		LeaseTTL: 10 * time.Second, RenewInterval: 500 * time.Millisecond, SafetyMargin: time.Second,
	}
	a, err := NewSigner(cfg, link, prometheus.NewRegistry(), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitHeld(t, a)

	type signed struct {
		height uint64
		at     time.Time
	}
	var sigs []signed
	height := uint64(0)
	sign := func() error {
		height++
		_, err := a.SignHRS(ctx, fencing.ValidatorID(addr), fencing.HRS{Height: height, Step: fencing.StepCommit}, fencing.Digest{byte(height), 1})
		if err == nil {
			sigs = append(sigs, signed{height, time.Now()})
		}
		return err
	}
	// Sign until two renewals have carried a report, then cut the link and
	// go on signing until refused.
	for {
		if err := sign(); err != nil {
			t.Fatalf("sign before the partition: %v", err)
		}
		link.mu.Lock()
		ok := link.reported != nil && link.reported.Height > 5
		link.mu.Unlock()
		if ok {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	link.cut.Store(true)
	var refusal error
	for refusal == nil {
		refusal = sign()
		time.Sleep(time.Millisecond)
	}
	_, _, left := a.Validators()[0].Keeper.Status()
	if fencing.CodeOf(refusal) != fencing.CodeFenced || left <= 0 {
		t.Fatalf("first refusal after the partition = %v with %s left before the deadline; want fenced while the deadline is still ahead (signing stops at the first failed renewal, not at the deadline)", refusal, left)
	}

	// The standby takes over once region-a's lease expires in etcd; its
	// floor is the last reported watermark.
	c.Bump(t, addr, "region-b")
	g, err := c.Client.Acquire(context.Background(), api.AcquireRequest{Validator: fencing.ValidatorID(addr), Holder: "region-b", Sidecar: "b-0", TTLSeconds: 10})
	if err != nil {
		t.Fatal(err)
	}
	link.mu.Lock()
	reportedAt, failedAt := link.reportedAt, link.failedAt
	link.mu.Unlock()
	var missed []signed
	for _, s := range sigs {
		if g.Watermark == nil || s.height > g.Watermark.Height {
			missed = append(missed, s)
		}
	}
	last := sigs[len(sigs)-1]
	t.Logf("region-a signed %d (last at height %d); region-b's floor %v misses %d signatures, signed over %s after the last reported renewal was sent; the first failed renewal came %s after it; the deadline had %s left",
		len(sigs), last.height, g.Watermark, len(missed), last.at.Sub(reportedAt).Round(time.Millisecond), failedAt.Sub(reportedAt).Round(time.Millisecond), left.Round(time.Millisecond))
	for _, s := range missed {
		if s.at.Before(reportedAt) {
			t.Fatalf("signature at height %d, made before the last successful renewal reported its watermark, is missing from region-b's floor %v", s.height, g.Watermark)
		}
	}
}

// A validator named by an address signs only with that address's key: a
// wrong key mounted for it (the right Secret name, another key) is refused
// at start, not signed with under that validator's lease.
func TestValidatorAddressMustMatchItsKey(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{})
	key, _ := testKey(t)
	_, other := testKey(t)
	_, err := NewSigner(Config{Holder: "region-a", Name: "a-0", Keys: []string{key}, Validators: []string{other}, StateDir: t.TempDir(), Mode: string(ModeStrict),
		LeaseTTL: 3 * time.Second, RenewInterval: time.Second, SafetyMargin: time.Second}, c.Client, prometheus.NewRegistry(), hclog.NewNullLogger())
	if err == nil || !strings.Contains(err.Error(), "is the key of") {
		t.Fatalf("NewSigner with another address's key = %v, want a refusal naming the key's address", err)
	}
	// A name is not an address: any key may serve it.
	if _, err := NewSigner(Config{Holder: "region-a", Name: "a-0", Keys: []string{key}, Validators: []string{"val-1"}, StateDir: t.TempDir(), Mode: string(ModeStrict),
		LeaseTTL: 3 * time.Second, RenewInterval: time.Second, SafetyMargin: time.Second}, c.Client, prometheus.NewRegistry(), hclog.NewNullLogger()); err != nil {
		t.Fatalf("NewSigner for a named validator = %v", err)
	}
}

// A keeper whose local deadline passed while the coordinator was
// unreachable (a partition, a pause) holds a lease again once the
// coordinator answers. Before, every renewal after the deadline was made
// with an already expired context and failed without being sent: the
// sidecar never signed again (found by the chaos suite: "holder region-a did
// not sign within 60s").
func TestKeeperRecoversAfterItsDeadlinePassed(t *testing.T) {
	for _, mode := range []Mode{ModeStrict, ModeLease} {
		t.Run(string(mode), func(t *testing.T) {
			c := fencetest.Start(t, fencetest.Options{})
			key, addr := testKey(t)
			c.AddValidator(t, addr, "region-a")
			link := &cutCoordinator{Coordinator: c.Client}
			s, err := NewSigner(Config{Holder: "region-a", Name: "a-0", Keys: []string{key}, StateDir: t.TempDir(), Mode: string(mode),
				LeaseTTL: 3 * time.Second, RenewInterval: time.Second, SafetyMargin: time.Second}, link, prometheus.NewRegistry(), hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			waitHeld(t, s)
			link.cut.Store(true)
			k := s.Validators()[0].Keeper
			for {
				if _, _, left := k.Status(); left == 0 {
					break // the deadline passed
				}
				time.Sleep(20 * time.Millisecond)
			}
			link.cut.Store(false)
			waitHeld(t, s)
			if _, err := s.SignHRS(ctx, fencing.ValidatorID(addr), fencing.HRS{Height: 1, Step: fencing.StepCommit}, fencing.Digest{1}); err != nil {
				t.Fatalf("sign after the coordinator came back = %v", err)
			}
		})
	}
}
