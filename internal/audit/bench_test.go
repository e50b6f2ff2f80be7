package audit

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/validator-fencing/fencing/internal/consensus"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// recordHeaders builds n distinct sealed headers as eth_getBlockByNumber
// JSON, the form the audit reads them in.
func recordHeaders(b *testing.B, c consensus.Consensus, n int) []json.RawMessage {
	b.Helper()
	keys := []*ecdsa.PrivateKey{testKey(b, 1), testKey(b, 2), testKey(b, 3), testKey(b, 4)}
	vals := []common.Address{addr(keys[0]), addr(keys[1]), addr(keys[2]), addr(keys[3])}
	out := make([]json.RawMessage, 0, n)
	var parent common.Hash
	for i := 1; i <= n; i++ {
		var raw json.RawMessage
		if c == consensus.ConsensusClique {
			h, hash := cliqueHeader(b, uint64(i), parent, 0, keys[i%3])
			raw, parent = headerJSON(h, hash), hash
		} else {
			h, hash := bftHeader(b, c, uint64(i), parent, 0, 0, vals, vals[i%4], keys[:3])
			raw, parent = headerJSON(h, hash), hash
		}
		out = append(out, raw)
	}
	return out
}

// auditRecorded runs the detector pipeline on recorded headers: decode,
// verify the hash, recover every seal (on all cores), feed the detector.
func auditRecorded(b *testing.B, raws []json.RawMessage, c consensus.Consensus) (headers, seals int) {
	workers := runtime.GOMAXPROCS(0)
	type res struct {
		sh  *consensus.SealedHeader
		err error
	}
	results := make([]res, len(raws))
	var wg sync.WaitGroup
	next := make(chan int, len(raws))
	for i := range raws {
		next <- i
	}
	close(next)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				h, reported, err := consensus.DecodeHeaderJSON(raws[i])
				if err != nil {
					results[i] = res{err: err}
					continue
				}
				sh, err := consensus.VerifyHeader(h, reported, c)
				results[i] = res{sh: sh, err: err}
			}
		}()
	}
	wg.Wait()
	d := NewDetector(fencing.StepBlock, fencing.StepCommit)
	for _, r := range results {
		if r.err != nil {
			b.Fatal(r.err)
		}
		for _, s := range r.sh.Seals {
			d.Add(Signature{Validator: s.Signer.Hex(), HRS: fencing.HRS{Height: r.sh.Number, Round: r.sh.Round, Step: fencing.StepCommit},
				Digest: fencing.Digest(r.sh.Hash), Signature: s.Signature, Source: "recorded"})
			seals++
		}
		headers++
	}
	if dups := d.Drain(); len(dups) != 0 {
		b.Fatalf("unexpected duplicates %v", dups)
	}
	return headers, seals
}

// BenchmarkDetector measures headers/s of the detector pipeline on recorded
// headers; it is bound by ecrecover (one per Clique header, one per committed
// seal).
func BenchmarkDetector(b *testing.B) {
	for _, tc := range []struct {
		name string
		c    consensus.Consensus
	}{{"clique", consensus.ConsensusClique}, {"qbft-3-seals", consensus.ConsensusQBFT}, {"ibft2-3-seals", consensus.ConsensusIBFT2}} {
		b.Run(tc.name, func(b *testing.B) {
			raws := recordHeaders(b, tc.c, 2000)
			var headers, seals int
			start, cpu0 := time.Now(), cpuTime()
			for b.Loop() {
				h, s := auditRecorded(b, raws, consensus.ConsensusAuto)
				headers += h
				seals += s
			}
			el := time.Since(start).Seconds()
			b.ReportMetric(float64(headers)/el, "headers/s")
			b.ReportMetric(float64(seals)/el, "seals/s")
			b.ReportMetric(float64(headers)/(cpuTime()-cpu0).Seconds(), "headers/cpu-s")
		})
	}
}

// BenchmarkChainAudit measures a full chain audit of 2000 Clique headers
// against local go-ethereum JSON-RPC servers (two endpoints serving one
// chain, the usual two-region setup).
func BenchmarkChainAudit(b *testing.B) {
	raws := recordHeaders(b, consensus.ConsensusClique, 2000)
	svc := newChainService()
	for i, r := range raws {
		svc.put(uint64(i+1), r)
	}
	for _, eps := range []int{1, 2} {
		b.Run(map[int]string{1: "one-endpoint", 2: "two-endpoints"}[eps], func(b *testing.B) {
			var urls []string
			for range eps {
				urls = append(urls, serve(b, svc))
			}
			var headers int64
			start, cpu0 := time.Now(), cpuTime()
			for b.Loop() {
				r, err := AuditChain(context.Background(), ChainConfig{Endpoints: urls, From: 1, To: 2000, HasTo: true, Batch: 100, Concurrency: 4})
				if err != nil || r.ExitCode() != ExitClean {
					b.Fatalf("AuditChain = %+v, %v", r, err)
				}
				headers += r.Headers
			}
			b.ReportMetric(float64(headers)/time.Since(start).Seconds(), "headers/s")
			b.ReportMetric(float64(headers)/(cpuTime()-cpu0).Seconds(), "headers/cpu-s")
		})
	}
}

// cpuTime is the CPU time (user + system) this process has used: on a
// shared machine it shows the cost per header independent of load.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
