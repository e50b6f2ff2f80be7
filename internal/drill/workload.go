package drill

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// Outcome is how one signature request ended, as the validator saw it.
type Outcome string

// Outcomes.
const (
	// Signed: 200 with a signature.
	Signed Outcome = "signed"
	// Refused: an HTTP error answer; Code holds its code word (empty when
	// the answer carried none, which the checker reports).
	Refused Outcome = "refused"
	// NoAnswer: no HTTP answer (connection refused or reset, timeout): the
	// sidecar was stopped, killed or not started.
	NoAnswer Outcome = "no_answer"
)

// Record is one signature request through a sidecar's native API and what
// came back.
type Record struct {
	Validator  string         `json:"validator"`
	Region     string         `json:"region"`  // holder of the sidecar asked
	Sidecar    string         `json:"sidecar"` // its name
	HRS        fencing.HRS    `json:"hrs"`
	Digest     fencing.Digest `json:"digest"`
	Sent       time.Time      `json:"sent"`
	Done       time.Time      `json:"done"`
	Outcome    Outcome        `json:"outcome"`
	HTTPStatus int            `json:"http_status,omitempty"`
	Code       fencing.Code   `json:"code,omitempty"`
	Signature  []byte         `json:"signature,omitempty"`
	Epoch      uint64         `json:"epoch,omitempty"`
	Err        string         `json:"error,omitempty"`
}

func (r Record) String() string {
	s := fmt.Sprintf("%s %s %s@%s %s digest %s: %s", r.Sent.Format("15:04:05.000"), short(r.Validator), r.Sidecar, r.Region, r.HRS, r.Digest.String()[:10], r.Outcome)
	switch r.Outcome {
	case Signed:
		s += fmt.Sprintf(" epoch %d", r.Epoch)
	case Refused:
		s += fmt.Sprintf(" %d %s", r.HTTPStatus, r.Code)
	case NoAnswer:
		s += " (" + r.Err + ")"
	}
	return s + fmt.Sprintf(" after %s", r.Done.Sub(r.Sent).Round(time.Millisecond))
}

func short(id string) string {
	if len(id) == 42 && strings.HasPrefix(id, "0x") {
		return id[:8] + "…" + id[38:]
	}
	return id
}

// Recorder keeps every Record; it is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	records []Record
	changed chan struct{}
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{changed: make(chan struct{})} }

// Add appends r.
func (rc *Recorder) Add(r Record) {
	rc.mu.Lock()
	rc.records = append(rc.records, r)
	close(rc.changed)
	rc.changed = make(chan struct{})
	rc.mu.Unlock()
}

// Records returns a copy of everything recorded.
func (rc *Recorder) Records() []Record {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Record(nil), rc.records...)
}

// WaitFor waits until pred holds for some record added from index from on,
// and returns that record.
func (rc *Recorder) WaitFor(ctx context.Context, from int, pred func(Record) bool) (Record, error) {
	for {
		rc.mu.Lock()
		for i := from; i < len(rc.records); i++ {
			if pred(rc.records[i]) {
				r := rc.records[i]
				rc.mu.Unlock()
				return r, nil
			}
		}
		from = len(rc.records)
		ch := rc.changed
		rc.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Record{}, ctx.Err()
		}
	}
}

// Len is the number of records so far.
func (rc *Recorder) Len() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.records)
}

// DigestFor is the digest a validator in region proposes at hrs: regions
// propose different digests for one HRS, so any double signature shows as
// two digests. salt changes the proposal (a validator that restarted and
// built another block).
func DigestFor(validator, region, salt string, hrs fencing.HRS) fencing.Digest {
	var d fencing.Digest
	copy(d[:], crypto.Keccak256([]byte("fencing-drill"), []byte(validator), []byte(region), []byte(salt), []byte(hrs.String())))
	return d
}

// Chain is one validator's consensus position: the HRS it is asked to sign
// now. It advances on every Tick; both regions' validators follow it, as both
// would follow the real chain head.
type Chain struct {
	mu      sync.Mutex
	cur     fencing.HRS
	history []fencing.HRS // newest last, bounded
	rnd     *rand.Rand
	changed chan struct{}
}

// NewChain starts at height start.
func NewChain(start uint64, seed uint64) *Chain {
	return &Chain{cur: fencing.HRS{Height: start, Round: 0, Step: fencing.StepProposal}, rnd: rand.New(rand.NewPCG(seed, 0x6472696c6c)), changed: make(chan struct{})}
}

// Current returns the HRS to sign now and a channel closed at the next step.
func (c *Chain) Current() (fencing.HRS, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur, c.changed
}

// Recent returns the HRS k steps back (k >= 1), if remembered.
func (c *Chain) Recent(k int) (fencing.HRS, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k < 1 || k > len(c.history) {
		return fencing.HRS{}, false
	}
	return c.history[len(c.history)-k], true
}

// Tick moves to the next step: proposal, prepare, commit at round 0, and now
// and then a round change into round 1 first.
func (c *Chain) Tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.history = append(c.history, c.cur)
	if len(c.history) > 32 {
		c.history = c.history[1:]
	}
	h := c.cur
	switch h.Step {
	case fencing.StepRoundChange:
		h.Step = fencing.StepProposal
	case fencing.StepProposal:
		h.Step = fencing.StepPrepare
	case fencing.StepPrepare:
		h.Step = fencing.StepCommit
	default:
		h.Height++
		h.Round, h.Step = 0, fencing.StepProposal
		if c.rnd.IntN(10) == 0 {
			h.Round, h.Step = 1, fencing.StepRoundChange
		}
	}
	c.cur = h
	close(c.changed)
	c.changed = make(chan struct{})
}

// Run ticks every interval until ctx ends.
func (c *Chain) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Tick()
		}
	}
}

// Driver is one region's validator for one validator identity: it asks its
// sidecar to sign each new HRS of the chain, the way a validator client
// would, and records every answer. Now and then it re-requests an older HRS
// (a validator catching up after a restart) or repeats its last request (a
// retry after a lost answer), which the sidecar must refuse or answer
// idempotently.
type Driver struct {
	Validator string
	Region    string
	Sidecar   string
	// URL returns the sidecar's base URL now (it changes when the sidecar
	// restarts on another port); empty means "not running".
	URL     func() string
	Chain   *Chain
	Rec     *Recorder
	Timeout time.Duration // per request; default 2s
	// Replay and Retry are probabilities (0..1) of re-requesting an older
	// HRS and of repeating the last request.
	Replay, Retry float64
	Seed          uint64

	mu      sync.Mutex
	salt    string
	paused  bool
	busy    bool
	resumed chan struct{}
}

// SetSalt changes the digests this driver proposes from now on.
func (d *Driver) SetSalt(s string) {
	d.mu.Lock()
	d.salt = s
	d.mu.Unlock()
}

// Pause stops new requests until Resume, and waits (up to the request
// timeout and a second) until the request in flight, if any, has ended.
func (d *Driver) Pause() {
	d.mu.Lock()
	if !d.paused {
		d.paused = true
		d.resumed = make(chan struct{})
	}
	d.mu.Unlock()
	deadline := time.Now().Add(d.timeout() + time.Second)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		busy := d.busy
		d.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (d *Driver) timeout() time.Duration {
	if d.Timeout == 0 {
		return 2 * time.Second
	}
	return d.Timeout
}

// Resume lets requests flow again.
func (d *Driver) Resume() {
	d.mu.Lock()
	if d.paused {
		d.paused = false
		close(d.resumed)
	}
	d.mu.Unlock()
}

// gate marks the driver busy unless it is paused.
func (d *Driver) gate() (salt string, wait <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.paused {
		return "", d.resumed
	}
	d.busy = true
	return d.salt, nil
}

func (d *Driver) idle() {
	d.mu.Lock()
	d.busy = false
	d.mu.Unlock()
}

// Run signs until ctx ends.
func (d *Driver) Run(ctx context.Context) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2, DisableCompression: true}}
	defer hc.CloseIdleConnections()
	rnd := rand.New(rand.NewPCG(d.Seed, 0x64726976))
	var last fencing.HRS
	var lastDigest fencing.Digest
	for ctx.Err() == nil {
		salt, wait := d.gate()
		if wait != nil {
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return
			}
		}
		cur, next := d.Chain.Current()
		hrs, digest := cur, DigestFor(d.Validator, d.Region, salt, cur)
		switch p := rnd.Float64(); {
		case p < d.Replay:
			if old, ok := d.Chain.Recent(1 + rnd.IntN(6)); ok {
				hrs, digest = old, DigestFor(d.Validator, d.Region, salt, old)
			}
		case p < d.Replay+d.Retry && last.Step != "":
			hrs, digest = last, lastDigest
		case cur == last:
			d.idle()
			select {
			case <-next:
			case <-ctx.Done():
				return
			}
			continue
		}
		d.Sign(ctx, hc, hrs, digest)
		d.idle()
		if hrs == cur {
			last, lastDigest = hrs, digest
		}
	}
}

// Sign sends one request and records it; hc nil uses a fresh client.
func (d *Driver) Sign(ctx context.Context, hc *http.Client, hrs fencing.HRS, digest fencing.Digest) Record {
	if hc == nil {
		hc = &http.Client{}
	}
	r := Record{Validator: d.Validator, Region: d.Region, Sidecar: d.Sidecar, HRS: hrs, Digest: digest}
	base := d.URL()
	r.Sent = time.Now()
	if base == "" {
		r.Outcome, r.Err, r.Done = NoAnswer, "sidecar not running", r.Sent
		d.Rec.Add(r)
		return r
	}
	body, _ := json.Marshal(map[string]any{"validator": d.Validator, "height": hrs.Height, "round": hrs.Round, "step": hrs.Step, "digest": digest})
	rctx, cancel := context.WithTimeout(ctx, d.timeout())
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodPost, base+"/v1/sign", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		r.Done, r.Outcome, r.Err = time.Now(), NoAnswer, errText(err)
		if ctx.Err() == nil {
			d.Rec.Add(r)
		}
		return r
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	r.Done, r.HTTPStatus = time.Now(), resp.StatusCode
	switch {
	case err != nil:
		r.Outcome, r.Err = NoAnswer, errText(err)
	case resp.StatusCode == http.StatusOK:
		var sr struct {
			Signature string `json:"signature"`
			Epoch     uint64 `json:"epoch"`
		}
		if jerr := json.Unmarshal(data, &sr); jerr != nil {
			r.Outcome, r.Err = Refused, fmt.Sprintf("200 with an unreadable body: %.100s", data)
			break
		}
		sig, herr := hex.DecodeString(strings.TrimPrefix(sr.Signature, "0x"))
		if herr != nil {
			r.Outcome, r.Err = Refused, fmt.Sprintf("200 with a signature that is not hex: %.100s", sr.Signature)
			break
		}
		r.Outcome, r.Signature, r.Epoch = Signed, sig, sr.Epoch
	default:
		r.Outcome = Refused
		var er api.ErrorResponse
		if json.Unmarshal(data, &er) == nil && er.Code.Known() {
			r.Code = er.Code
		}
		r.Err = fmt.Sprintf("%.200s", data)
	}
	d.Rec.Add(r)
	return r
}

func errText(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "connection reset"), strings.Contains(err.Error(), "EOF"):
		return "connection reset"
	}
	return err.Error()
}

// Digest is the digest this driver proposes at hrs now (with its salt).
func (d *Driver) Digest(hrs fencing.HRS) fencing.Digest {
	d.mu.Lock()
	salt := d.salt
	d.mu.Unlock()
	return DigestFor(d.Validator, d.Region, salt, hrs)
}
