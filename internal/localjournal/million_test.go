package localjournal

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// sidecarMemoryLimit is the sidecar container's limit in the chart
// (charts/fencing/values.yaml, sidecar.resources.limits.memory: 128Mi).
const sidecarMemoryLimit = 128 << 20

// A million records through the real writer (default segment size and
// retention, 256 validators appending at once), then Open in a fresh
// process: it reads the checkpoint and at most two segments, and its peak
// memory stays far below the sidecar's limit; the journal on disk stays
// bounded, and the audit still reads every retained record.
func TestMillionRecordsBoundedStart(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a million records (about 20 s)")
	}
	dir := t.TempDir()
	j := open(t, dir, Options{})
	const validators, each = 256, 3907 // 1,000,192 records
	start := time.Now()
	var wg sync.WaitGroup
	for v := range validators {
		wg.Go(func() {
			id := fmt.Sprintf("0x%040x", v+1)
			for h := range uint64(each) {
				e := ent(valA, h+1, byte(v))
				e.Validator = fencing.MustParseValidatorID(id)
				if err := j.Append(e); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	closeJ(t, j)
	if t.Failed() {
		return
	}
	t.Logf("wrote %d records in %s", validators*each, time.Since(start).Round(time.Millisecond))

	var onDisk int64
	for _, s := range segments(t, dir) {
		fi, _ := os.Stat(s)
		onDisk += fi.Size()
	}
	if n := len(segments(t, dir)); n > DefaultRetainSegments {
		t.Errorf("%d segments on disk, want at most %d", n, DefaultRetainSegments)
	}
	c, err := ReadAll(dir)
	if err != nil {
		t.Fatalf("ReadAll = %v", err)
	}
	if last := c.Records[len(c.Records)-1].Seq; last != validators*each {
		t.Fatalf("last seq %d, want %d", last, validators*each)
	}
	t.Logf("on disk: %d segments, %d MiB; the audit reads %d retained records", len(segments(t, dir)), onDisk>>20, len(c.Records))

	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenMemoryChild$")
	cmd.Env = append(os.Environ(), "LOCALJOURNAL_MEASURE="+dir)
	out, err := cmd.CombinedOutput()
	_, line, found := strings.Cut(string(out), "MEASURE ")
	line, _, _ = strings.Cut(line, "\n")
	var m openMeasure
	if err != nil || !found {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	cp, _ := os.Stat(filepath.Join(dir, checkpointName))
	t.Logf("Open of a journal of %d records: %s; read %d records, %d bytes in %d files; peak heap objects %.1f MiB (sampled), heap from the OS %.1f MiB, peak RSS %.1f MiB (limit %d MiB)",
		validators*each, time.Duration(m.OpenNanos).Round(time.Millisecond), m.Records, m.Bytes, m.Files, mib(m.PeakHeap), mib(m.HeapSys), mib(m.PeakRSS), sidecarMemoryLimit>>20)
	if m.Bytes > 2*DefaultSegmentSize+cp.Size() || m.Files > 3 {
		t.Errorf("Open read %d bytes in %d files, want at most the checkpoint and two segments", m.Bytes, m.Files)
	}
	for name, v := range map[string]int64{"peak heap": m.PeakHeap, "heap from the OS": m.HeapSys, "peak RSS": m.PeakRSS} {
		if v <= 0 || v >= sidecarMemoryLimit {
			t.Errorf("%s at Open = %d bytes, want under the sidecar's limit %d", name, v, sidecarMemoryLimit)
		}
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

type openMeasure struct {
	OpenNanos int64
	Records   int
	Bytes     int64
	Files     int
	PeakHeap  int64 // highest sampled /memory/classes/heap/objects:bytes
	HeapSys   int64 // runtime.MemStats.HeapSys after Open: heap memory taken from the OS
	PeakRSS   int64 // VmHWM of the process
}

// TestOpenMemoryChild is the measuring process of
// TestMillionRecordsBoundedStart: it opens the journal named by
// LOCALJOURNAL_MEASURE and prints what it took.
func TestOpenMemoryChild(t *testing.T) {
	dir := os.Getenv("LOCALJOURNAL_MEASURE")
	if dir == "" {
		t.Skip("run by TestMillionRecordsBoundedStart")
	}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			metrics.Read(sample)
			peak = max(peak, int64(sample[0].Value.Uint64()))
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	start := time.Now()
	j, err := Open(dir, Options{Sidecar: testSidecar})
	took := time.Since(start)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	info := j.Opened()
	m := openMeasure{OpenNanos: took.Nanoseconds(), Records: info.Records, Bytes: info.Bytes, Files: len(info.Files), PeakHeap: peak, HeapSys: int64(ms.HeapSys), PeakRSS: peakRSS(t)}
	b, _ := json.Marshal(m)
	fmt.Printf("MEASURE %s\n", b)
}

// peakRSS is the process's VmHWM from /proc/self/status.
func peakRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}
