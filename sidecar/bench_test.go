//go:build unix

package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// Benchmarks of the sidecar against the baselines of issue 3, each baseline
// measured in the same run (docs/benchmarks.md has the figures and commands):
//
//	BenchmarkLeaseMode:  native /v1/sign over loopback HTTP in lease mode vs a
//	                     bare HTTP signer that only does crypto.Sign, and the
//	                     same bare signer that also appends the request to a
//	                     file and fsyncs it first (lease mode is that: target
//	                     ≤ 1.2× the bare signer + fsync).
//	BenchmarkLeaseModeC64: the same with 64 validators signing at once, each
//	                     baseline at the same concurrency (target ≥ 50 % of
//	                     the bare signer's throughput: the validators' local
//	                     journal appends share fdatasyncs).
//	BenchmarkStrictModeC1, BenchmarkStrictModeC64: native /v1/sign in strict
//	                     mode vs one bare etcd Txn (one compare, one put) on the
//	                     same embedded etcd, at concurrency 1 (target ≤ 1.3×)
//	                     and with 64 validators signing at once (target ≥ 60 %
//	                     of the Txn throughput at the same concurrency); and,
//	                     as a reference, the quorum journal write alone.
//	BenchmarkStrictRegions: strict mode on three etcd members in three
//	                     regions (regions_bench_test.go; target ≤ 1.2× one
//	                     quorum write from the active region).
//
// Each prints a TARGET line with the ratio to its baseline (make
// bench-signing).

const benchTTL = 15 * time.Second // long enough that renewals stay rare under load

// benchClient keeps a connection per concurrent caller.
var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}

// signOverHTTP posts one native sign request for validator at height and
// fails unless it is signed.
func signOverHTTP(b *testing.B, url, validator string, height uint64) {
	body, _ := json.Marshal(SignRequest{Validator: fencing.ValidatorID(validator), Height: height, Step: fencing.StepCommit, Digest: fencing.Digest{byte(height), byte(height >> 8)}})
	res, err := benchClient.Post(url+"/v1/sign", "application/json", bytes.NewReader(body))
	if err != nil {
		b.Error(err)
		return
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b.Errorf("sign %s at %d = %d %s", validator, height, res.StatusCode, out)
	}
}

// figures are what one benchmark measured in its last (largest) run.
type figures struct {
	usPerOp, sigPerSec, cpuPerOp float64
}

// measure runs op as the sub-benchmark name (see concurrently) and returns
// its figures; zero when -bench left it out.
func measure(b *testing.B, name string, workers int, op func(worker int)) figures {
	var f figures
	b.Run(name, func(b *testing.B) { f = concurrently(b, workers, op) })
	return f
}

// concurrently runs b.N calls of op spread over workers goroutines (worker w
// always uses validator w) and reports the throughput and the CPU time the
// whole process (sidecar, coordinator, etcd, clients) spent per call, which
// depends less on what else the machine runs.
func concurrently(b *testing.B, workers int, op func(worker int)) figures {
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu0 := processCPU(b)
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
	f := figures{
		usPerOp:   float64(b.Elapsed().Microseconds()) / float64(b.N),
		sigPerSec: float64(b.N) / b.Elapsed().Seconds(),
		cpuPerOp:  float64((processCPU(b) - cpu0).Microseconds()) / float64(b.N),
	}
	b.ReportMetric(f.sigPerSec, "sig/s")
	b.ReportMetric(f.cpuPerOp, "cpu-µs/op")
	return f
}

// A target of docs/benchmarks.md: the signing path against its baseline,
// both measured in the same run. A latency target is met when the path's
// µs/op is at most limit times the baseline's; a throughput target when its
// sig/s is at least limit times the baseline's.
type target struct {
	path, baseline string
	throughput     bool
	limit          float64
}

// report prints the target's row: the ratio by wall clock, whether it is
// met, and the same ratio computed from CPU time per operation (what the
// ratio would be if both were bound by this process's CPU alone).
func (t target) report(path, base figures) {
	if path.sigPerSec == 0 || base.sigPerSec == 0 {
		return // left out by -bench
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	if t.throughput {
		r, rc := path.sigPerSec/base.sigPerSec, base.cpuPerOp/path.cpuPerOp
		fmt.Printf("TARGET %-34s %5.0f %% of %s (want >= %.0f %%: %s); %.0f vs %.0f sig/s; cpu %.0f vs %.0f cpu-µs/op (cpu ratio %.0f %%)\n",
			t.path+":", 100*r, t.baseline, 100*t.limit, verdict(r >= t.limit), path.sigPerSec, base.sigPerSec, path.cpuPerOp, base.cpuPerOp, 100*rc)
		return
	}
	r, rc := path.usPerOp/base.usPerOp, path.cpuPerOp/base.cpuPerOp
	fmt.Printf("TARGET %-34s %5.2f× %s (want <= %.1f×: %s); %.0f vs %.0f µs/op; cpu %.0f vs %.0f cpu-µs/op (cpu ratio %.2f×)\n",
		t.path+":", r, t.baseline, t.limit, verdict(r <= t.limit), path.usPerOp, base.usPerOp, path.cpuPerOp, base.cpuPerOp, rc)
}

// processCPU is the user and system time this process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bareSigner is the baseline without fencing: the same request and answer
// over loopback HTTP, and crypto.Sign. With fsync it also appends the request
// to a file and fsyncs it first, as the sidecar's local journal does.
func bareSigner(b *testing.B, fsync bool) *httptest.Server {
	key, err := crypto.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "journal"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req SignRequest
		if err := api.DecodeJSON(w, r, &req); err != nil {
			api.WriteError(w, err)
			return
		}
		if fsync {
			line, _ := json.Marshal(req)
			mu.Lock()
			_, err := f.Write(append(line, '\n'))
			if err == nil {
				err = f.Sync()
			}
			mu.Unlock()
			if err != nil {
				api.WriteError(w, err)
				return
			}
		}
		sig, err := crypto.Sign(req.Digest[:], key)
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, SignResponse{Signature: hexutil.Encode(sig), Epoch: 1})
	}))
	b.Cleanup(hs.Close)
	return hs
}

// benchCoordinator runs the benchmarks' coordinator with the production
// reconcile interval (the tests' 100 ms would scan every validator ten times
// a second beside the measurement).
var benchCoordinator = fencetest.Options{ReconcileInterval: 2 * time.Second}

func BenchmarkLeaseMode(b *testing.B) {
	r := newSurfaceRig(b, rigOptions{mode: ModeLease, ttl: benchTTL, coord: benchCoordinator})
	sidecar, _, bareFsync := benchLease(b, r, 1)
	target{path: "lease, 1 caller", baseline: "bare signer + one fsync'd append", limit: 1.2}.report(sidecar, bareFsync)
}

func BenchmarkLeaseModeC64(b *testing.B) {
	r := newSurfaceRig(b, rigOptions{mode: ModeLease, ttl: benchTTL, validators: 64, coord: benchCoordinator})
	sidecar, bare, _ := benchLease(b, r, 64)
	target{path: "lease, 64 validators", baseline: "bare signer throughput at 64", throughput: true, limit: 0.5}.report(sidecar, bare)
}

// benchLease signs with workers validators at once in lease mode, then runs
// the bare signers at the same concurrency.
func benchLease(b *testing.B, r *surfaceRig, workers int) (sidecar, bare, bareFsync figures) {
	bareHS, bareFsyncHS := bareSigner(b, false), bareSigner(b, true)
	var h atomic.Uint64
	sidecar = measure(b, "sidecar", workers, func(w int) { signOverHTTP(b, r.url, r.ids[w], r.height()) })
	bare = measure(b, "bare-signer", workers, func(int) { signOverHTTP(b, bareHS.URL, "bare", h.Add(1)) })
	bareFsync = measure(b, "bare-signer+fsync", workers, func(int) { signOverHTTP(b, bareFsyncHS.URL, "bare", h.Add(1)) })
	return sidecar, bare, bareFsync
}

// bareTxn is one etcd round trip of the journal's shape: create a key if it
// does not exist (one compare, one put).
func bareTxn(b *testing.B, cli *clientv3.Client, worker int, seq uint64) {
	key := fmt.Sprintf("/bench/txn/%d/%020d", worker, seq)
	res, err := cli.Txn(context.Background()).If(clientv3.Compare(clientv3.Version(key), "=", 0)).Then(clientv3.OpPut(key, "x")).Commit()
	if err != nil || !res.Succeeded {
		b.Errorf("txn %s = %v, %v", key, res, err)
	}
}

// The two strict benchmarks each have their own coordinator and etcd, so
// that the 64 validators' lease traffic does not run beside the
// single-validator measurement.

func BenchmarkStrictModeC1(b *testing.B) {
	r := newSurfaceRig(b, rigOptions{ttl: benchTTL, coord: benchCoordinator})
	sidecar, txn := benchStrict(b, r, 1)
	target{path: "strict, 1 caller", baseline: "one bare etcd Txn", limit: 1.3}.report(sidecar, txn)
}

func BenchmarkStrictModeC64(b *testing.B) {
	r := newSurfaceRig(b, rigOptions{ttl: benchTTL, validators: 64, coord: benchCoordinator})
	sidecar, txn := benchStrict(b, r, 64)
	target{path: "strict, 64 validators", baseline: "bare Txn throughput at 64", throughput: true, limit: 0.6}.report(sidecar, txn)
}

// benchStrict signs with workers validators at once, then runs as many bare
// Txns at once on the same etcd.
func benchStrict(b *testing.B, r *surfaceRig, workers int) (sidecar, txn figures) {
	cli := r.coord.Etcd.Client(b)
	var seq atomic.Uint64
	sidecar = measure(b, "sidecar", workers, func(w int) { signOverHTTP(b, r.url, r.ids[w], r.height()) })
	txn = measure(b, "etcd-txn", workers, func(w int) { bareTxn(b, cli, w, seq.Add(1)) })
	// A reference, not a target: the quorum journal write alone, as the
	// sidecar's batcher sends it (HTTP to the coordinator, group commit,
	// etcd), under the sidecar's own leases.
	measure(b, "coordinator-journal", workers, func(w int) {
		lease, _, err := r.signer.list[w].keeper.current()
		if err == nil {
			_, err = r.signer.batcher.journal(context.Background(), fencing.JournalRequest{Lease: lease, HRS: fencing.HRS{Height: r.height(), Step: fencing.StepCommit}, Digest: fencing.Digest{1}})
		}
		if err != nil {
			b.Errorf("journal of %s = %v", r.ids[w], err)
		}
	})
	return sidecar, txn
}
