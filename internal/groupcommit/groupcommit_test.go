package groupcommit

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Items queued while a commit is in flight are taken together, and each
// caller gets its own answer.
func TestBatchesWhatQueued(t *testing.T) {
	q := New[int, int](16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batches := make(chan int, 16)
	gate := make(chan struct{})
	go func() {
		for {
			it, ok := q.Next(ctx)
			if !ok {
				return
			}
			<-gate // the first commit is "in flight" until released
			batch := []*Item[int, int]{it}
			for {
				more, ok := q.TryNext()
				if !ok {
					break
				}
				batch = append(batch, more)
			}
			batches <- len(batch)
			for _, b := range batch {
				if b.Req < 0 {
					b.Finish(0, errors.New("negative"))
				} else {
					b.Finish(b.Req*2, nil)
				}
			}
		}
	}()
	var wg sync.WaitGroup
	results := make([]int, 5)
	errs := make([]error, 5)
	for i := range 5 {
		wg.Go(func() { results[i], errs[i] = q.Do(ctx, []int{1, 2, 3, 4, -1}[i]) })
	}
	for len(q.ch) < 4 { // the first is taken; the other four queued behind the gate
		runtime.Gosched()
	}
	close(gate)
	wg.Wait()
	total := 0
	for len(batches) > 0 {
		total += <-batches
	}
	if total != 5 {
		t.Fatalf("items committed = %d, want 5", total)
	}
	for i, want := range []int{2, 4, 6, 8} {
		if results[i] != want || errs[i] != nil {
			t.Errorf("Do(%d) = %d, %v; want %d", i+1, results[i], errs[i], want)
		}
	}
	if errs[4] == nil {
		t.Error("the refused item got no error")
	}
}

func TestDoHonoursContext(t *testing.T) {
	q := New[int, int](1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := q.Do(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do with no committer = %v, want the deadline", err)
	}
}

// DoAll's requests reach the committer together and each gets its own
// answer, in order.
func TestDoAllSubmitsTogether(t *testing.T) {
	q := New[int, int](16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sizes := make(chan int, 1)
	go func() {
		it, ok := q.Next(ctx)
		if !ok {
			return
		}
		for len(q.ch) < 4 { // the rest of the group is queued
			runtime.Gosched()
		}
		batch := []*Item[int, int]{it}
		for {
			more, ok := q.TryNext()
			if !ok {
				break
			}
			batch = append(batch, more)
		}
		sizes <- len(batch)
		for _, b := range batch {
			if b.Req < 0 {
				b.Finish(0, errors.New("negative"))
			} else {
				b.Finish(b.Req*10, nil)
			}
		}
	}()
	res, errs := q.DoAll(ctx, []int{1, 2, -3, 4, 5})
	if n := <-sizes; n != 5 {
		t.Fatalf("committed in a batch of %d, want 5", n)
	}
	for i, want := range []int{10, 20, 0, 40, 50} {
		if res[i] != want || (errs[i] != nil) != (i == 2) {
			t.Errorf("DoAll result %d = %d, %v; want %d", i, res[i], errs[i], want)
		}
	}
}

func TestDoAllHonoursContext(t *testing.T) {
	q := New[int, int](2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, errs := q.DoAll(ctx, []int{1, 2, 3}) // no committer; the third does not fit
	for i, err := range errs {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("DoAll with no committer: result %d = %v, want the deadline", i, err)
		}
	}
}
