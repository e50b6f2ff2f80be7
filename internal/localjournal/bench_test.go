package localjournal

import (
	"fmt"
	"sync"
	"testing"
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
				e.Validator = id
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
