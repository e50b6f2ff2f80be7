package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/validator-fencing/fencing/internal/consensus"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// ChainConfig configures AuditChain. Zero values take the defaults below.
type ChainConfig struct {
	// Endpoints are JSON-RPC URLs (http, https, ws, wss or an IPC path), for
	// example one node in each region.
	Endpoints []string
	// From is the first height audited. The genesis (0) has no seal; its
	// hash is still checked.
	From uint64
	// To is the last height audited when HasTo is set; otherwise the lowest
	// head among the endpoints, so that every height is compared on every
	// endpoint.
	To    uint64
	HasTo bool
	// Consensus is the sealing format, ConsensusAuto by default.
	Consensus consensus.Consensus
	// Checkpoint, when set, is a file where progress and findings are saved
	// after every window of heights; a run with the same endpoints, format
	// and range resumes from it.
	Checkpoint string
	// Concurrency is the number of batch requests (and header
	// verifications) in flight at once (default 4).
	Concurrency int
	// Batch is the number of headers asked for in one JSON-RPC batch
	// (default 100).
	Batch int
	// Timeout bounds one request (default 30s).
	Timeout time.Duration
	// Retries is how many times a failed request is retried (default 3),
	// waiting Backoff (default 500ms), then twice as long each time up to 10s.
	Retries int
	Backoff time.Duration
	// MaxFailures is the number of consecutive failed batches after which an
	// endpoint is given up for the rest of the run (default 3).
	MaxFailures int
	// Progress, when set, is called after every window.
	Progress func(Progress)
	// HTTPClient is used for http(s) endpoints (default: a new client).
	HTTPClient *http.Client
}

// Progress is reported after every window of heights.
type Progress struct {
	Done, Total uint64
	Headers     int64
	Duplicates  int
	Elapsed     time.Duration
}

const (
	defaultConcurrency = 4
	defaultBatch       = 100
	defaultTimeout     = 30 * time.Second
	defaultRetries     = 3
	defaultBackoff     = 500 * time.Millisecond
	maxBackoff         = 10 * time.Second
	defaultMaxFailures = 3
	maxForkWarnings    = 50
)

// DefaultChainConfig is the configuration a zero ChainConfig runs with
// (for a command line to show its defaults).
func DefaultChainConfig() ChainConfig { return ChainConfig{}.withDefaults() }

func (c ChainConfig) withDefaults() ChainConfig {
	if c.Consensus == "" {
		c.Consensus = consensus.ConsensusAuto
	}
	if c.Concurrency == 0 {
		c.Concurrency = defaultConcurrency
	}
	if c.Batch == 0 {
		c.Batch = defaultBatch
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.Retries == 0 {
		c.Retries = defaultRetries
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	if c.Backoff == 0 {
		c.Backoff = defaultBackoff
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = defaultMaxFailures
	}
	return c
}

// Validate reports every problem of the configuration at once.
func (c ChainConfig) Validate() error {
	var errs []string
	if len(c.Endpoints) == 0 {
		errs = append(errs, "at least one --rpc endpoint is required")
	}
	seen := map[string]bool{}
	for _, e := range c.Endpoints {
		if strings.TrimSpace(e) == "" {
			errs = append(errs, "an --rpc endpoint is empty")
		} else if seen[e] {
			errs = append(errs, fmt.Sprintf("--rpc %s is given twice", e))
		}
		seen[e] = true
	}
	if _, err := consensus.ParseConsensus(string(c.Consensus)); c.Consensus != "" && err != nil {
		errs = append(errs, err.Error())
	}
	if c.HasTo && c.To < c.From {
		errs = append(errs, fmt.Sprintf("--to (%d) must not be below --from (%d)", c.To, c.From))
	}
	if c.Concurrency < 0 || c.Concurrency > 64 {
		errs = append(errs, fmt.Sprintf("--concurrency (%d) must be between 1 and 64", c.Concurrency))
	}
	if c.Batch < 0 || c.Batch > 1000 {
		errs = append(errs, fmt.Sprintf("--batch (%d) must be between 1 and 1000", c.Batch))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Sprintf("--timeout (%s) must be positive", c.Timeout))
	}
	if c.Retries > 20 {
		errs = append(errs, fmt.Sprintf("--retries (%d) must be at most 20", c.Retries))
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// batchCaller is what the audit needs of an RPC client; *rpc.Client has it.
type batchCaller interface {
	BatchCallContext(ctx context.Context, b []rpc.BatchElem) error
	CallContext(ctx context.Context, result any, method string, args ...any) error
	Close()
}

var _ batchCaller = (*rpc.Client)(nil)

type endpoint struct {
	url      string
	client   batchCaller
	failures int    // consecutive failed batches (window loop only)
	gaveUp   string // reason, once given up
	bad      int    // bad headers served
}

// headerResult is the outcome of one (endpoint, height).
type headerResult struct {
	ep     *endpoint
	height uint64
	sealed *consensus.SealedHeader
	err    error
	// transport is set when err is a request failure (timeout, garbage,
	// JSON-RPC error) rather than a bad or missing header.
	transport bool
}

// AuditChain reads headers from every endpoint, verifies their hashes and
// seals, and reports every validator that sealed two different blocks at one
// height. Endpoint failures do not fail the run: they are reported as
// unaudited ranges. The error is for a bad configuration, an unusable
// checkpoint file, or a cancelled context.
func AuditChain(ctx context.Context, cfg ChainConfig) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	a := &chainAudit{cfg: cfg, cache: map[common.Hash]common.Address{}}
	for _, u := range cfg.Endpoints {
		opts := []rpc.ClientOption{}
		if cfg.HTTPClient != nil {
			opts = append(opts, rpc.WithHTTPClient(cfg.HTTPClient))
		}
		dctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		c, err := rpc.DialOptions(dctx, u, opts...)
		cancel()
		ep := &endpoint{url: u}
		if err != nil {
			ep.gaveUp = "cannot connect: " + err.Error()
		} else {
			ep.client = c
			defer c.Close()
		}
		a.eps = append(a.eps, ep)
	}
	return a.run(ctx)
}

type chainAudit struct {
	cfg    ChainConfig
	eps    []*endpoint
	report *Report

	forks       int  // fork warnings written
	forksCapped bool // further forks not listed

	mu    sync.Mutex
	cache map[common.Hash]common.Address // keccak(hash ‖ sig) -> signer
}

func (a *chainAudit) run(ctx context.Context) (*Report, error) {
	cfg := a.cfg
	r := &Report{Kind: "chain", Consensus: cfg.Consensus, Formats: map[consensus.Consensus]int{}}
	for _, ep := range a.eps {
		r.Endpoints = append(r.Endpoints, ep.url)
	}
	a.report = r
	cp, err := loadCheckpoint(cfg.Checkpoint)
	if err != nil {
		return nil, err
	}
	from, to, next := cfg.From, cfg.To, cfg.From
	if cp != nil {
		if err := cp.compatible(cfg); err != nil {
			return nil, err
		}
		to, next = cp.To, cp.Next
		cp.restore(r)
	} else if !cfg.HasTo {
		var ok bool
		to, ok = a.resolveHead(ctx, from)
		if !ok {
			r.From, r.To = u64(from), nil
			return a.finish()
		}
	}
	r.From, r.To = u64(from), u64(to)
	for _, ep := range a.eps {
		if ep.gaveUp != "" {
			a.unaudited(ep, next, to, ep.gaveUp)
		}
	}
	start := time.Now()
	window := uint64(cfg.Batch) * uint64(cfg.Concurrency)
	for next <= to {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !a.anyActive() {
			// Every endpoint is given up and its remaining range is already
			// marked unaudited. The checkpoint keeps the last finished
			// window, so a rerun tries these heights again.
			break
		}
		end := min(to, next+window-1)
		if end < next { // overflow
			end = to
		}
		a.window(ctx, next, end)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		next = end + 1
		if cfg.Checkpoint != "" {
			if err := saveCheckpoint(cfg.Checkpoint, newCheckpoint(cfg, from, to, next, r)); err != nil {
				return nil, err
			}
		}
		if cfg.Progress != nil {
			cfg.Progress(Progress{Done: next - from, Total: to - from + 1, Headers: r.Headers, Duplicates: len(r.Duplicates), Elapsed: time.Since(start)})
		}
		if end == to {
			break
		}
	}
	return a.finish()
}

func (a *chainAudit) anyActive() bool {
	for _, ep := range a.eps {
		if ep.gaveUp == "" {
			return true
		}
	}
	return false
}

func (a *chainAudit) finish() (*Report, error) {
	for _, ep := range a.eps {
		if ep.bad > 0 {
			a.report.Warnings = append(a.report.Warnings, fmt.Sprintf("%s served %d bad header(s) (hash or seal does not verify); treat that node as untrustworthy", ep.url, ep.bad))
		}
	}
	a.report.normalize()
	return a.report, nil
}

// resolveHead asks every endpoint for its head and returns the lowest.
func (a *chainAudit) resolveHead(ctx context.Context, from uint64) (uint64, bool) {
	var (
		lowest uint64
		found  bool
		heads  []string
	)
	for _, ep := range a.eps {
		if ep.gaveUp != "" {
			continue
		}
		var head hexutil.Uint64
		err := a.retry(ctx, func(cctx context.Context) error {
			return ep.client.CallContext(cctx, &head, "eth_blockNumber")
		})
		if err != nil {
			ep.gaveUp = "cannot read head (eth_blockNumber): " + err.Error()
			continue
		}
		heads = append(heads, fmt.Sprintf("%s=%d", ep.url, uint64(head)))
		if !found || uint64(head) < lowest {
			lowest = uint64(head)
		}
		found = true
	}
	if !found {
		for _, ep := range a.eps {
			a.report.Unaudited = append(a.report.Unaudited, Unaudited{Endpoint: ep.url, From: u64(from), Reason: ep.gaveUp})
		}
		return 0, false
	}
	if len(heads) > 1 {
		a.report.Warnings = append(a.report.Warnings, fmt.Sprintf("no --to given: auditing up to the lowest head %d (heads: %s)", lowest, strings.Join(heads, ", ")))
	}
	if lowest < from {
		a.report.Warnings = append(a.report.Warnings, fmt.Sprintf("lowest head %d is below --from %d: nothing to audit", lowest, from))
	}
	return lowest, lowest >= from
}

// retry runs call with a per-attempt timeout, retrying with backoff.
func (a *chainAudit) retry(ctx context.Context, call func(context.Context) error) error {
	var err error
	delay := a.cfg.Backoff
	for attempt := 0; attempt <= a.cfg.Retries; attempt++ {
		if attempt > 0 {
			if !sleep(ctx, delay) {
				return ctx.Err()
			}
			delay = min(2*delay, maxBackoff)
		}
		cctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
		err = call(cctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
	return fmt.Errorf("after %d attempt(s): %w", a.cfg.Retries+1, err)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// window audits heights from..to on every endpoint still in use.
func (a *chainAudit) window(ctx context.Context, from, to uint64) {
	type job struct {
		ep       *endpoint
		from, to uint64
	}
	var jobs []job
	for _, ep := range a.eps {
		if ep.gaveUp != "" {
			continue
		}
		for b := from; b <= to; b += uint64(a.cfg.Batch) {
			jobs = append(jobs, job{ep: ep, from: b, to: min(to, b+uint64(a.cfg.Batch)-1)})
			if b+uint64(a.cfg.Batch) < b {
				break
			}
		}
	}
	jobc := make(chan job)
	resc := make(chan []headerResult)
	var wg sync.WaitGroup
	for range min(a.cfg.Concurrency, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobc {
				resc <- a.fetch(ctx, j.ep, j.from, j.to)
			}
		}()
	}
	go func() {
		defer close(jobc)
		for _, j := range jobs {
			select {
			case jobc <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(resc) }()

	// Collect on this goroutine only: the detector and the report are not
	// shared with the workers.
	d := NewDetector(fencing.StepBlock, fencing.StepCommit)
	seen := map[uint64]map[common.Hash][]string{}
	batchFailed := map[*endpoint][]bool{}
	for batch := range resc {
		allTransport := len(batch) > 0
		for _, res := range batch {
			if !res.transport {
				allTransport = false
			}
			a.collect(d, seen, res)
		}
		if len(batch) > 0 {
			batchFailed[batch[0].ep] = append(batchFailed[batch[0].ep], allTransport)
		}
	}
	a.report.Duplicates = append(a.report.Duplicates, d.Drain()...)
	a.forkWarnings(seen)
	for ep, fails := range batchFailed {
		for _, f := range fails {
			if f {
				ep.failures++
			} else {
				ep.failures = 0
			}
		}
		if ep.failures >= a.cfg.MaxFailures && to < *a.report.To {
			ep.gaveUp = fmt.Sprintf("given up after %d consecutive failed batches", ep.failures)
			a.unaudited(ep, to+1, *a.report.To, ep.gaveUp)
		}
	}
	// Signer recoveries are looked up within a window only; bound memory.
	a.mu.Lock()
	clear(a.cache)
	a.mu.Unlock()
}

func (a *chainAudit) collect(d *Detector, seen map[uint64]map[common.Hash][]string, res headerResult) {
	r := a.report
	if res.err != nil {
		reason := res.err.Error()
		var hm *consensus.HashMismatchError
		switch {
		case errors.As(res.err, &hm):
			res.ep.bad++
			reason = "bad header: " + reason
		case errors.Is(res.err, consensus.ErrNoBlock):
		case !res.transport:
			res.ep.bad++
			reason = "bad header: " + reason
		}
		a.unaudited(res.ep, res.height, res.height, reason)
		return
	}
	sh := res.sealed
	r.Headers++
	r.Formats[sh.Consensus]++
	if seen[sh.Number] == nil {
		seen[sh.Number] = map[common.Hash][]string{}
	}
	seen[sh.Number][sh.Hash] = append(seen[sh.Number][sh.Hash], res.ep.url)
	step, round := fencing.StepCommit, sh.Round
	if sh.Consensus == consensus.ConsensusClique {
		step, round = fencing.StepBlock, 0
	}
	proposer := ""
	if sh.Proposer != (common.Address{}) {
		proposer = sh.Proposer.Hex()
	}
	for _, s := range sh.Seals {
		r.Signatures++
		d.Add(Signature{
			Validator:  s.Signer.Hex(),
			HRS:        fencing.HRS{Height: sh.Number, Round: round, Step: step},
			Digest:     fencing.Digest(sh.Hash),
			SignedHash: fencing.Digest(s.SignedHash),
			Signature:  s.Signature,
			Proposer:   proposer,
			Source:     res.ep.url,
		})
	}
}

// forkWarnings names heights where endpoints serve different blocks. That is
// not equivocation by itself (Clique reorganises; different signers may seal
// siblings), but an operator wants to know.
func (a *chainAudit) forkWarnings(seen map[uint64]map[common.Hash][]string) {
	var heights []uint64
	for h, hashes := range seen {
		if len(hashes) > 1 {
			heights = append(heights, h)
		}
	}
	slices.Sort(heights)
	for _, h := range heights {
		if a.forks >= maxForkWarnings {
			if !a.forksCapped {
				a.report.Warnings = append(a.report.Warnings, "further heights where endpoints disagree are not listed")
				a.forksCapped = true
			}
			return
		}
		var parts []string
		for hash, eps := range seen[h] {
			slices.Sort(eps)
			parts = append(parts, fmt.Sprintf("%s on %s", hash.Hex(), strings.Join(eps, ",")))
		}
		slices.Sort(parts)
		a.report.Warnings = append(a.report.Warnings, fmt.Sprintf("endpoints disagree at height %d: %s", h, strings.Join(parts, "; ")))
		a.forks++
	}
}

func (a *chainAudit) unaudited(ep *endpoint, from, to uint64, reason string) {
	if to < from {
		return
	}
	a.report.Unaudited = append(a.report.Unaudited, Unaudited{Endpoint: ep.url, From: u64(from), To: u64(to), Reason: reason})
}

// fetch reads heights from..to from ep in one batch, retrying the elements
// that failed, and verifies each header.
func (a *chainAudit) fetch(ctx context.Context, ep *endpoint, from, to uint64) []headerResult {
	pending := make([]uint64, 0, to-from+1)
	for h := from; h <= to; h++ {
		pending = append(pending, h)
		if h == to {
			break
		}
	}
	var (
		out     []headerResult
		lastErr = map[uint64]error{}
		delay   = a.cfg.Backoff
	)
	for attempt := 0; attempt <= a.cfg.Retries && len(pending) > 0; attempt++ {
		if attempt > 0 {
			if !sleep(ctx, delay) {
				break
			}
			delay = min(2*delay, maxBackoff)
		}
		elems := make([]rpc.BatchElem, len(pending))
		raws := make([]json.RawMessage, len(pending))
		for i, h := range pending {
			elems[i] = rpc.BatchElem{Method: "eth_getBlockByNumber", Args: []any{hexutil.EncodeUint64(h), false}, Result: &raws[i]}
		}
		cctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
		err := ep.client.BatchCallContext(cctx, elems)
		cancel()
		if err != nil {
			for _, h := range pending {
				lastErr[h] = err
			}
			continue
		}
		var still []uint64
		for i, h := range pending {
			if elems[i].Error != nil {
				lastErr[h] = elems[i].Error
				still = append(still, h)
				continue
			}
			out = append(out, a.verify(ep, h, raws[i]))
		}
		pending = still
	}
	for _, h := range pending {
		err := lastErr[h]
		if err == nil {
			err = ctx.Err()
		}
		out = append(out, headerResult{ep: ep, height: h, transport: true,
			err: fmt.Errorf("request failed after %d attempt(s): %v", a.cfg.Retries+1, err)})
	}
	return out
}

// verify decodes and checks one served header.
func (a *chainAudit) verify(ep *endpoint, height uint64, raw json.RawMessage) headerResult {
	res := headerResult{ep: ep, height: height}
	h, reported, err := consensus.DecodeHeaderJSON(raw)
	if err != nil {
		res.err = err
		return res
	}
	if n := h.Number.Uint64(); n != height {
		res.err = fmt.Errorf("asked for block %d, got block %d (hash %s)", height, n, reported.Hex())
		return res
	}
	res.sealed, res.err = consensus.VerifyHeaderWith(h, reported, a.cfg.Consensus, a.recoverCached)
	return res
}

// recoverCached memoises signer recovery: several endpoints usually serve
// the same header, and recovery is the expensive part.
func (a *chainAudit) recoverCached(hash common.Hash, sig []byte) (common.Address, error) {
	key := crypto.Keccak256Hash(hash[:], sig)
	a.mu.Lock()
	addr, ok := a.cache[key]
	a.mu.Unlock()
	if ok {
		return addr, nil
	}
	addr, err := consensus.RecoverSigner(hash, sig)
	if err != nil {
		return addr, err
	}
	a.mu.Lock()
	a.cache[key] = addr
	a.mu.Unlock()
	return addr, nil
}
