package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/etcdtest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// TestJournalerHammer: the group commit (batches of 4, several in flight)
// answers every request of many batches exactly as one transaction each
// would. 8 validators; 16 callers send batches (JournalAll) that mix every
// validator, height by height, and for each (validator, HRS) half of them
// ask for one digest and half for another. Per (validator, HRS) exactly one
// digest is committed; every caller told "journaled" asked for that digest;
// the others got a watermark refusal. A request with a stale lease in a
// batch fails alone, and an invalid one never reaches the group commit.
func TestJournalerHammer(t *testing.T) {
	s := newStore(t, etcdtest.New(t, 1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	j := s.NewJournaler(4) // batches of 4 of the 8 validators: full batches run concurrently
	done := make(chan struct{})
	go func() { j.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	const validators, heights, callers = 8, 12, 16
	leases := make([]fencing.Lease, validators)
	for v := range validators {
		id := fencing.ValidatorID(fmt.Sprintf("val-%d", v))
		addValidator(t, s, id, "region-a")
		g, err := s.Acquire(ctx, id, "region-a", "a-0", 30)
		if err != nil {
			t.Fatalf("Acquire(%s) = %v", id, err)
		}
		leases[v] = g.Lease
	}
	type key struct {
		v int
		h uint64
	}
	type answer struct {
		digest byte
		err    error
	}
	var mu sync.Mutex
	answers := map[key][]answer{}
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for h := uint64(1); h <= heights; h++ {
				var rs []ValidJournalRequest
				var keys []key
				var digests []byte
				for v := range validators {
					d := byte(1 + (c+v)%2) // callers disagree: digest 1 or 2
					r, err := ValidateJournalRequest(fencing.JournalRequest{Lease: leases[v], HRS: fencing.HRS{Height: h, Step: fencing.StepCommit}, Digest: fencing.Digest{d}})
					if err != nil {
						t.Errorf("ValidateJournalRequest = %v", err)
						return
					}
					rs, keys, digests = append(rs, r), append(keys, key{v, h}), append(digests, d)
				}
				_, errs := j.JournalAll(ctx, rs)
				mu.Lock()
				for i, k := range keys {
					answers[k] = append(answers[k], answer{digests[i], errs[i]})
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	entries, err := s.JournalEntries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	committed := map[key]byte{}
	for _, e := range entries {
		var v int
		if _, err := fmt.Sscanf(string(e.Validator), "val-%d", &v); err != nil {
			t.Fatalf("journal entry of %s", e.Validator)
		}
		k := key{v, e.HRS.Height}
		if _, dup := committed[k]; dup {
			t.Fatalf("two journal entries at %v", k)
		}
		committed[k] = e.Digest[0]
	}
	if len(committed) != validators*heights {
		t.Fatalf("journal entries = %d, want %d (one per validator and height)", len(committed), validators*heights)
	}
	for k, as := range answers {
		if len(as) != callers {
			t.Fatalf("%v answered %d times, want %d", k, len(as), callers)
		}
		for _, a := range as {
			switch {
			case a.err == nil && a.digest != committed[k]:
				t.Errorf("%v digest %d journaled, but %d is committed", k, a.digest, committed[k])
			case a.err != nil && a.digest == committed[k]:
				t.Errorf("%v digest %d refused (%v), but it is the one committed", k, a.digest, a.err)
			case a.err != nil && fencing.CodeOf(a.err) != fencing.CodeWatermark:
				t.Errorf("%v digest %d = %v, want a watermark refusal", k, a.digest, a.err)
			}
		}
	}

	// Refused alone: a request whose lease is not current, in a batch with
	// a good one.
	bad := leases[0]
	bad.LeaseRevision++
	good, _ := ValidateJournalRequest(fencing.JournalRequest{Lease: leases[1], HRS: fencing.HRS{Height: heights + 1, Step: fencing.StepCommit}, Digest: fencing.Digest{9}})
	wrong, _ := ValidateJournalRequest(fencing.JournalRequest{Lease: bad, HRS: fencing.HRS{Height: heights + 1, Step: fencing.StepCommit}, Digest: fencing.Digest{9}})
	_, errs := j.JournalAll(ctx, []ValidJournalRequest{wrong, good})
	if errs[0] == nil || errs[1] != nil {
		t.Errorf("JournalAll(stale lease, good) = %v; want a refusal and a success", errs)
	}
	if _, err := ValidateJournalRequest(fencing.JournalRequest{Lease: leases[1], HRS: fencing.HRS{Height: 1, Step: "nonsense"}}); fencing.CodeOf(err) != fencing.CodeBadRequest {
		t.Errorf("ValidateJournalRequest(bad step) = %v, want bad_request", err)
	}
}
