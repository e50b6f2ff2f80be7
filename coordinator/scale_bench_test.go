//go:build linux

package coordinator_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// BenchmarkCoordinatorScale: one fence-coordinator process on one fence-etcd
// process (both built from this repository), driven by simulated sidecars of
// N validators (FENCE_SCALE_VALIDATORS, default 1000), one sidecar each, as
// the chart runs them: each holds a lease (TTL 15 s, renewed every 5 s),
// keeps an epoch long poll open (30 s) and journals RATE strict-mode
// signatures a second (FENCE_SCALE_RATE, default 1) for DURATION
// (FENCE_SCALE_DURATION, default 60s) after a warm-up of 10 s, with
// --journal-retention RETENTION (FENCE_SCALE_RETENTION, default 1000
// heights). Run it once:
//
//	go test ./coordinator -run '^$' -bench CoordinatorScale -benchtime 1x -timeout 30m
//
// It reports the signatures journaled a second against those asked for,
// the journal round trip as the sidecars saw it, the CPU of each process
// (in cores), the coordinator's etcd requests a second by kind, and what
// etcd wrote: WAL bytes a second and per day, and its database size at the
// end. The simulated sidecars run in the test process (their CPU is not the
// coordinator's).
func BenchmarkCoordinatorScale(b *testing.B) {
	n := envInt(b, "FENCE_SCALE_VALIDATORS", 1000)
	rate := envFloat(b, "FENCE_SCALE_RATE", 1)
	retention := envInt(b, "FENCE_SCALE_RETENTION", 1000)
	dur, err := time.ParseDuration(envString("FENCE_SCALE_DURATION", "60s"))
	if err != nil {
		b.Fatalf("FENCE_SCALE_DURATION: %v", err)
	}
	bin := buildBinaries(b, "./coordinator/cmd/fence-coordinator", "./e2e/cmd/fence-etcd")
	dir := b.TempDir()
	clientURL, peerURL := freeURL(b), freeURL(b)
	etcd := startProc(b, filepath.Join(bin, "fence-etcd"), regexp.MustCompile(`^ready$`),
		"--name", "etcd-0", "--data-dir", filepath.Join(dir, "etcd"), "--listen-client", strings.TrimPrefix(clientURL, "http://"),
		"--listen-peer", strings.TrimPrefix(peerURL, "http://"), "--advertise-client", clientURL, "--advertise-peer", peerURL, "--fast-elections=false")
	coord := startProc(b, filepath.Join(bin, "fence-coordinator"), regexp.MustCompile(`listening: addr=([0-9.]+:[0-9]+)`),
		"--listen", "127.0.0.1:0", "--etcd-endpoints", clientURL, "--journal-retention", strconv.Itoa(retention), "--log-level", "info")
	url := "http://" + coord.match[1]
	cli, err := api.NewClient([]string{url}, api.ClientOptions{Timeout: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waitReady(b, url)
	if err := cli.RegisterHolder(ctx, api.ChangeRequest{Holder: "region-a", Operator: "bench", Reason: "bench"}); err != nil {
		b.Fatal(err)
	}
	leases := make([]fencing.Lease, n)
	parallel(b, n, 16, func(i int) error {
		id := fencing.ValidatorID(fmt.Sprintf("val-%04d", i))
		if _, err := cli.AddValidator(ctx, api.AddValidatorRequest{Validator: id, Holder: "region-a", Operator: "bench", Reason: "bench"}); err != nil {
			return err
		}
		g, err := cli.Acquire(ctx, api.AcquireRequest{Validator: id, Holder: "region-a", Sidecar: fmt.Sprintf("sidecar-%04d", i), TTLSeconds: 15})
		leases[i] = g.Lease
		return err
	})

	// The simulated sidecars: one client each (its own connections).
	var signed, refused atomic.Int64
	var latMu sync.Mutex
	var lat []time.Duration
	measuring := atomic.Bool{}
	var wg sync.WaitGroup
	for i := range n {
		sc, err := api.NewClient([]string{url}, api.ClientOptions{Timeout: 30 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		l := leases[i]
		wg.Go(func() { // renewals every 5 s
			l := l // the renewed token; journal requests keep the first (the compares do not involve the etcd lease)
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				if nl, err := sc.Renew(ctx, l, nil); err == nil {
					l = nl
				}
			}
		})
		wg.Go(func() { // the epoch long poll
			var rev int64
			for ctx.Err() == nil {
				_, r, err := sc.WatchEpoch(ctx, l.Validator, rev, 30*time.Second)
				if err == nil {
					rev = r
				}
			}
		})
		wg.Go(func() { // signatures
			every := time.Duration(float64(time.Second) / rate)
			time.Sleep(time.Duration(i) * every / time.Duration(n)) // spread the validators over the interval
			t := time.NewTicker(every)
			defer t.Stop()
			for h := uint64(1); ; h++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				start := time.Now()
				_, err := sc.JournalSignature(ctx, fencing.JournalRequest{Lease: l, HRS: fencing.HRS{Height: h, Step: fencing.StepCommit}, Digest: fencing.Digest{byte(h), byte(h >> 8), byte(i)}})
				if !measuring.Load() {
					continue
				}
				if err != nil {
					refused.Add(1)
					continue
				}
				signed.Add(1)
				latMu.Lock()
				lat = append(lat, time.Since(start))
				latMu.Unlock()
			}
		})
	}
	time.Sleep(10 * time.Second) // warm-up: connections, long polls, first journal keys
	m0c, m0e := scrape(b, url), scrape(b, clientURL)
	cpu0c, cpu0e, cpu0s := procCPU(b, coord.pid), procCPU(b, etcd.pid), procCPU(b, os.Getpid())
	measuring.Store(true)
	b.ResetTimer()
	start := time.Now()
	time.Sleep(dur)
	measuring.Store(false)
	elapsed := time.Since(start).Seconds()
	b.StopTimer()
	cpu1c, cpu1e, cpu1s := procCPU(b, coord.pid), procCPU(b, etcd.pid), procCPU(b, os.Getpid())
	m1c, m1e := scrape(b, url), scrape(b, clientURL)
	cancel()
	wg.Wait()
	entryBytes := journalEntryBytes(b, clientURL)

	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	walPerSec := (m1e.sum("etcd_disk_wal_write_bytes_total") - m0e.sum("etcd_disk_wal_write_bytes_total")) / elapsed
	b.ReportMetric(float64(signed.Load())/elapsed, "sig/s")
	b.ReportMetric(float64(n)*rate, "asked-sig/s")
	b.ReportMetric(float64(refused.Load())/elapsed, "refused/s")
	b.ReportMetric(pct(0.5), "journal-p50-ms")
	b.ReportMetric(pct(0.99), "journal-p99-ms")
	b.ReportMetric((cpu1c-cpu0c).Seconds()/elapsed, "coord-cores")
	b.ReportMetric((cpu1e-cpu0e).Seconds()/elapsed, "etcd-cores")
	b.ReportMetric((cpu1s-cpu0s).Seconds()/elapsed, "sidecars-cores")
	b.ReportMetric(walPerSec/1e3, "wal-kB/s")
	b.ReportMetric(walPerSec*86400/1e9, "wal-GB/day")
	b.ReportMetric(m1e.sum("etcd_mvcc_db_total_size_in_bytes")/1e6, "db-MB")
	b.ReportMetric(m1e.sum("etcd_mvcc_db_total_size_in_use_in_bytes")/1e6, "db-in-use-MB")
	b.ReportMetric(entryBytes, "entry-B")
	b.ReportMetric(m1c.sum("process_resident_memory_bytes")/1e6, "coord-rss-MB")
	b.ReportMetric(m1e.sum("process_resident_memory_bytes")/1e6, "etcd-rss-MB")
	ops := m1c.byLabel("fencing_etcd_request_duration_seconds_count", "op")
	before := m0c.byLabel("fencing_etcd_request_duration_seconds_count", "op")
	sums, sums0 := m1c.byLabel("fencing_etcd_request_duration_seconds_sum", "op"), m0c.byLabel("fencing_etcd_request_duration_seconds_sum", "op")
	var total float64
	var parts []string
	for op, v := range ops {
		d := (v - before[op]) / elapsed
		total += d
		if d >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.1f/s (mean %.1f ms)", op, d, 1000*(sums[op]-sums0[op])/(v-before[op])))
		}
	}
	slices.Sort(parts)
	b.ReportMetric(total, "etcd-req/s")
	fmt.Printf("SCALE %d validators, %.2g sig/s each, retention %d: coordinator's etcd requests by kind: %s\n", n, rate, retention, strings.Join(parts, ", "))
}

// journalEntryBytes is the mean key and value size of one validator's
// journal entries in etcd (what --journal-retention keeps of each).
func journalEntryBytes(b *testing.B, endpoint string) float64 {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(context.Background(), "/fencing/validators/val-0000/journal/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) == 0 {
		b.Fatalf("read val-0000's journal: %v (%d entries)", err, len(resp.Kvs))
	}
	var n int
	for _, kv := range resp.Kvs {
		n += len(kv.Key) + len(kv.Value)
	}
	return float64(n) / float64(len(resp.Kvs))
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(b *testing.B, name string, def int) int {
	v, err := strconv.Atoi(envString(name, strconv.Itoa(def)))
	if err != nil || v <= 0 {
		b.Fatalf("%s must be a positive integer", name)
	}
	return v
}

func envFloat(b *testing.B, name string, def float64) float64 {
	v, err := strconv.ParseFloat(envString(name, strconv.FormatFloat(def, 'g', -1, 64)), 64)
	if err != nil || v <= 0 {
		b.Fatalf("%s must be a positive number", name)
	}
	return v
}

// buildBinaries builds pkgs (paths from the repository root) into one
// directory; the go command caches the work.
func buildBinaries(b *testing.B, pkgs ...string) string {
	dir := b.TempDir()
	args := append([]string{"build", "-o", dir + "/"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %v: %v\n%s", pkgs, err, out)
	}
	return dir
}

func freeURL(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String()
}

type proc struct {
	pid   int
	match []string
}

// startProc starts bin and waits for a line of its output matching want.
func startProc(b *testing.B, bin string, want *regexp.Regexp, args ...string) proc {
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	found := make(chan []string, 1)
	var tail []string
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := want.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m:
				default:
				}
			}
			if len(tail) < 20 {
				tail = append(tail, sc.Text())
			}
		}
		close(found)
	}()
	select {
	case m, ok := <-found:
		if !ok {
			b.Fatalf("%s exited before %s", filepath.Base(bin), want)
		}
		return proc{pid: cmd.Process.Pid, match: m}
	case <-time.After(60 * time.Second):
		b.Fatalf("%s did not print %s within 60s", filepath.Base(bin), want)
	}
	return proc{}
}

func waitReady(b *testing.B, url string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(url + "/readyz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("coordinator %s not ready within 30s", url)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// parallel runs do(0..n-1) on workers goroutines and fails on the first
// error.
func parallel(b *testing.B, n, workers int, do func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := do(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// procCPU is the user and system time of process pid.
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	const ticks = 100 // USER_HZ
	return time.Duration((utime + stime) / ticks * float64(time.Second))
}

// metrics is a scrape: every sample line as name{labels} -> value.
type metrics map[string]float64

func scrape(b *testing.B, base string) metrics {
	res, err := http.Get(base + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		b.Fatal(err)
	}
	m := metrics{}
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// sum adds the samples of name, whatever their labels.
func (m metrics) sum(name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// byLabel sums the samples of name by the value of label.
func (m metrics) byLabel(name, label string) map[string]float64 {
	re := regexp.MustCompile(label + `="([^"]*)"`)
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, name+"{") {
			if lm := re.FindStringSubmatch(k); lm != nil {
				out[lm[1]] += v
			}
		}
	}
	return out
}
