package localjournal

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// BenchmarkOpen: the start of a sidecar whose journal holds a full segment
// after its checkpoint (the most Open ever reads but one segment).
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	j := open(b, dir, Options{})
	var wg sync.WaitGroup
	for v := range 64 {
		wg.Go(func() {
			id := fmt.Sprintf("0x%040x", v+1)
			for h := range uint64(DefaultSegmentSize / 330 / 64) {
				e := ent(valA, h+1, byte(v))
				e.Validator = fencing.MustParseValidatorID(id)
				if err := j.Append(e); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	closeJ(b, j)
	b.ResetTimer()
	for b.Loop() {
		j := open(b, dir, Options{})
		b.ReportMetric(float64(j.Opened().Records), "records")
		closeJ(b, j)
	}
}

// BenchmarkAppend: the journal alone, one appender and 64 at once (each its
// own validator), against a bare append of the same line to a file followed
// by an fsync, under a mutex, at the same concurrency. syncs/op shows the
// appends sharing an fdatasync.
func BenchmarkAppend(b *testing.B) {
	for _, workers := range []int{1, 64} {
		b.Run(fmt.Sprintf("journal-c%d", workers), func(b *testing.B) {
			j := open(b, b.TempDir(), Options{})
			defer closeJ(b, j)
			var syncs atomic.Int64
			j.syncFile = func(f *os.File) error { syncs.Add(1); return fdatasync(f) }
			heights := make([]atomic.Uint64, workers)
			appendConcurrently(b, workers, func(w int) {
				e := ent(valA, heights[w].Add(1), byte(w))
				e.Validator = fencing.MustParseValidatorID(fmt.Sprintf("0x%040x", w+1))
				if err := j.Append(e); err != nil {
					b.Error(err)
				}
			})
			b.ReportMetric(float64(syncs.Load())/float64(b.N), "syncs/op")
		})
		b.Run(fmt.Sprintf("bare-fsync-c%d", workers), func(b *testing.B) {
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "bare"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			var mu sync.Mutex
			var h atomic.Uint64
			appendConcurrently(b, workers, func(w int) {
				line, _ := appendRecord(nil, Record{Seq: h.Add(1), JournalEntry: ent(valA, h.Load(), byte(w))})
				mu.Lock()
				defer mu.Unlock()
				if _, err := f.Write(line); err != nil {
					b.Error(err)
				}
				if err := f.Sync(); err != nil {
					b.Error(err)
				}
			})
		})
	}
}

// appendConcurrently runs b.N calls of op over workers goroutines and
// reports appends per second.
func appendConcurrently(b *testing.B, workers int, op func(worker int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) && !b.Failed() {
				op(w)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}
