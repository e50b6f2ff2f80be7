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
//	                     of the Txn throughput at the same concurrency).

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

// concurrently runs b.N calls of op spread over workers goroutines (worker w
// always uses validator w) and reports the throughput and the CPU time the
// whole process (sidecar, coordinator, etcd, clients) spent per call, which
// depends less on what else the machine runs.
func concurrently(b *testing.B, workers int, op func(worker int)) {
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
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sig/s")
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
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

func BenchmarkLeaseMode(b *testing.B) {
	benchLease(b, newSurfaceRig(b, rigOptions{mode: ModeLease, ttl: benchTTL}), 1)
}

func BenchmarkLeaseModeC64(b *testing.B) {
	benchLease(b, newSurfaceRig(b, rigOptions{mode: ModeLease, ttl: benchTTL, validators: 64}), 64)
}

// benchLease signs with workers validators at once in lease mode, then runs
// the bare signers at the same concurrency.
func benchLease(b *testing.B, r *surfaceRig, workers int) {
	bare, bareFsync := bareSigner(b, false), bareSigner(b, true)
	var h atomic.Uint64
	b.Run("sidecar", func(b *testing.B) {
		concurrently(b, workers, func(w int) { signOverHTTP(b, r.url, r.ids[w], r.height()) })
	})
	b.Run("bare-signer", func(b *testing.B) {
		concurrently(b, workers, func(int) { signOverHTTP(b, bare.URL, "bare", h.Add(1)) })
	})
	b.Run("bare-signer+fsync", func(b *testing.B) {
		concurrently(b, workers, func(int) { signOverHTTP(b, bareFsync.URL, "bare", h.Add(1)) })
	})
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
	r := newSurfaceRig(b, rigOptions{ttl: benchTTL})
	benchStrict(b, r, 1)
}

func BenchmarkStrictModeC64(b *testing.B) {
	r := newSurfaceRig(b, rigOptions{ttl: benchTTL, validators: 64})
	benchStrict(b, r, 64)
}

// benchStrict signs with workers validators at once, then runs as many bare
// Txns at once on the same etcd.
func benchStrict(b *testing.B, r *surfaceRig, workers int) {
	cli := r.coord.Etcd.Client(b)
	var seq atomic.Uint64
	b.Run("sidecar", func(b *testing.B) {
		concurrently(b, workers, func(w int) { signOverHTTP(b, r.url, r.ids[w], r.height()) })
	})
	b.Run("etcd-txn", func(b *testing.B) {
		concurrently(b, workers, func(w int) { bareTxn(b, cli, w, seq.Add(1)) })
	})
}
