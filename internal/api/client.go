package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// ClientOptions configure a Client.
type ClientOptions struct {
	// TokenFile, when set, is read before every request and sent as a bearer
	// token (a projected ServiceAccount token rotates in place).
	TokenFile string
	// CAFile verifies https coordinators; empty uses the system roots.
	CAFile string
	// CertFile and KeyFile, when set, are the client certificate presented
	// to an https coordinator that verifies them (--client-ca): a sidecar's
	// (CN its name, O=fencing:holder:<holder>) or an operator's
	// (O=fencing:operators). The key file must not be readable by others.
	CertFile, KeyFile string
	// Timeout bounds each request that has no deadline of its own; default 10s.
	Timeout time.Duration
}

// Client talks to one or more coordinator replicas and uses whichever
// answers: on a connection failure or an unavailable/no_quorum answer it
// tries the next URL (another replica may be on the side of a partition
// that still has quorum).
type Client struct {
	urls  []string
	hc    *http.Client
	opts  ClientOptions
	first atomic.Int32 // index of the URL that answered last

	tokenMu   sync.Mutex
	token     string
	tokenRead time.Time
}

// tokenTTL is how long a token read from TokenFile is reused. Projected
// ServiceAccount tokens are replaced in place well before they expire (at
// 80% of a lifetime of 10 minutes or more), so a short reuse is safe and
// keeps a file read off every signature.
const tokenTTL = 30 * time.Second

// bearer returns the token of TokenFile, read at most every tokenTTL.
func (c *Client) bearer() (string, error) {
	c.tokenMu.Lock()
	defer c.tokenMu.Unlock()
	if c.token != "" && time.Since(c.tokenRead) < tokenTTL {
		return c.token, nil
	}
	tok, err := os.ReadFile(c.opts.TokenFile)
	if err != nil {
		return "", fencing.Errorf(fencing.CodeUnauthorized, "read token file: %v", err)
	}
	c.token, c.tokenRead = strings.TrimSpace(string(tok)), time.Now()
	return c.token, nil
}

// NewClient returns a client for urls (http:// or https://).
func NewClient(urls []string, o ClientOptions) (*Client, error) {
	if len(urls) == 0 {
		return nil, errors.New("no coordinator URL given")
	}
	var clean []string
	for _, u := range urls {
		u = strings.TrimRight(strings.TrimSpace(u), "/")
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("coordinator URL %q must look like http://host:port or https://host:port", u)
		}
		clean = append(clean, u)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("coordinator CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("coordinator CA file %s holds no PEM certificate", o.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, fmt.Errorf("a client certificate needs both its certificate and its key file")
	}
	if o.CertFile != "" {
		if err := CheckSecretFile(o.KeyFile, "client key file"); err != nil {
			return nil, err
		}
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	}
	return &Client{urls: clean, hc: &http.Client{Transport: tr}, opts: o}, nil
}

// do sends method path with body in and decodes a 2xx answer into out. A
// non-2xx answer becomes a *fencing.Error with the server's code word.
func (c *Client) do(ctx context.Context, method, path string, in, out any) (int, error) {
	return c.doWait(ctx, 0, method, path, in, out)
}

// doWait is do for a request the server may hold for wait (a long poll).
// Each URL gets wait plus its share of the rest of the deadline, so an
// unanswering replica (a blackholed connection) cannot use up the whole
// deadline before the next one is tried.
func (c *Client) doWait(ctx context.Context, wait time.Duration, method, path string, in, out any) (int, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return 0, fencing.Errorf(fencing.CodeBadRequest, "encode request: %v", err)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	first := int(c.first.Load())
	var lastErr error
	for i := range c.urls {
		idx := (first + i) % len(c.urls)
		actx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok && i < len(c.urls)-1 {
			share := wait + (time.Until(dl)-wait)/time.Duration(len(c.urls)-i)
			actx, cancel = context.WithTimeout(ctx, share)
		}
		status, err := c.once(actx, c.urls[idx], method, path, body, out)
		cancel()
		if err == nil || !retryElsewhere(err) || ctx.Err() != nil {
			if err == nil || !retryElsewhere(err) {
				c.first.Store(int32(idx))
			}
			return status, err
		}
		lastErr = err
	}
	return 0, lastErr
}

func retryElsewhere(err error) bool {
	switch fencing.CodeOf(err) {
	case fencing.CodeUnavailable, fencing.CodeNoQuorum:
		return true
	}
	return false
}

func (c *Client) once(ctx context.Context, base, method, path string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return 0, fencing.Errorf(fencing.CodeBadRequest, "build request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.opts.TokenFile != "" {
		tok, err := c.bearer()
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fencing.Errorf(fencing.CodeUnavailable, "coordinator %s unreachable: %v", base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, fencing.Errorf(fencing.CodeUnavailable, "coordinator %s: reading the answer: %v", base, err)
	}
	if resp.StatusCode >= 300 {
		var er ErrorResponse
		if json.Unmarshal(data, &er) != nil || !er.Code.Known() {
			return resp.StatusCode, fencing.Errorf(fencing.CodeUnavailable, "coordinator %s answered %s without a code word: %.200s", base, resp.Status, data)
		}
		if resp.StatusCode == http.StatusAccepted && out != nil {
			// 202 carries a body too (a bump still in progress).
			_ = json.Unmarshal(data, out)
		}
		return resp.StatusCode, &fencing.Error{Code: er.Code, Message: er.Message}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fencing.Errorf(fencing.CodeUnavailable, "coordinator %s answered %s with an unreadable body: %v", base, resp.Status, err)
		}
	}
	return resp.StatusCode, nil
}

// AddValidator registers a validator with epoch 1 active on holder.
func (c *Client) AddValidator(ctx context.Context, r AddValidatorRequest) (fencing.Epoch, error) {
	var out EpochResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/validators", r, &out)
	return out.Epoch, err
}

// Statuses lists every validator.
func (c *Client) Statuses(ctx context.Context) ([]fencing.Status, error) {
	var out StatusResponse
	_, err := c.do(ctx, http.MethodGet, "/v1/validators", nil, &out)
	return out.Validators, err
}

// Status reads one validator.
func (c *Client) Status(ctx context.Context, id fencing.ValidatorID) (fencing.Status, error) {
	var out fencing.Status
	_, err := c.do(ctx, http.MethodGet, "/v1/validators/"+url.PathEscape(string(id)), nil, &out)
	return out, err
}

// Freeze revokes id's active epoch.
func (c *Client) Freeze(ctx context.Context, id fencing.ValidatorID, r FreezeRequest) (fencing.Epoch, error) {
	var out EpochResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/validators/"+url.PathEscape(string(id))+"/freeze", r, &out)
	return out.Epoch, err
}

// Abandon records that the signature at r's HRS never reached the chain
// (only while id is fenced); it returns the watermark, marked abandoned.
func (c *Client) Abandon(ctx context.Context, id fencing.ValidatorID, r AbandonRequest) (fencing.Watermark, error) {
	var out fencing.Watermark
	_, err := c.do(ctx, http.MethodPost, "/v1/validators/"+url.PathEscape(string(id))+"/abandon", r, &out)
	return out, err
}

// Unfreeze grants a frozen id's next epoch back to its holder and waits up
// to r.Wait for the grant (r.To empty).
func (c *Client) Unfreeze(ctx context.Context, id fencing.ValidatorID, r BumpRequest) (fencing.BumpResult, error) {
	return c.grant(ctx, id, "unfreeze", r)
}

// Bump moves id to r.To and waits up to r.Wait for the grant. A bump still
// draining when the wait ends returns its progress with an in_progress error.
func (c *Client) Bump(ctx context.Context, id fencing.ValidatorID, r BumpRequest) (fencing.BumpResult, error) {
	return c.grant(ctx, id, "bump", r)
}

// grant posts r to id's verb (bump, unfreeze), which answers once the next
// epoch is granted or r.Wait has passed.
func (c *Client) grant(ctx context.Context, id fencing.ValidatorID, verb string, r BumpRequest) (fencing.BumpResult, error) {
	var out fencing.BumpResult
	ctx, cancel := context.WithTimeout(ctx, r.Wait.Duration+c.opts.Timeout)
	defer cancel()
	_, err := c.doWait(ctx, r.Wait.Duration, http.MethodPost, "/v1/validators/"+url.PathEscape(string(id))+"/"+verb, r, &out)
	return out, err
}

// Events reads the history of id (all validators when empty).
func (c *Client) Events(ctx context.Context, id fencing.ValidatorID, limit int) ([]fencing.Event, error) {
	q := url.Values{}
	if id != "" {
		q.Set("validator", string(id))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out EventsResponse
	_, err := c.do(ctx, http.MethodGet, "/v1/events?"+q.Encode(), nil, &out)
	return out.Events, err
}

// JournalEntries reads the quorum journal of id (all when empty).
func (c *Client) JournalEntries(ctx context.Context, id fencing.ValidatorID) ([]fencing.JournalEntry, error) {
	q := url.Values{}
	if id != "" {
		q.Set("validator", string(id))
	}
	var out JournalListResponse
	_, err := c.do(ctx, http.MethodGet, "/v1/journal?"+q.Encode(), nil, &out)
	return out.Entries, err
}

// Journal is the audit's view of the quorum journal: every entry and the
// history.
func (c *Client) Journal(ctx context.Context) ([]fencing.JournalEntry, []fencing.Event, error) {
	entries, err := c.JournalEntries(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	evs, err := c.Events(ctx, "", 0)
	return entries, evs, err
}

// ReportAudit records an audit result.
func (c *Client) ReportAudit(ctx context.Context, r AuditReport) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/audits", r, nil)
	return err
}

// Acquire asks for a lease.
func (c *Client) Acquire(ctx context.Context, r AcquireRequest) (GrantResponse, error) {
	var out GrantResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/leases", r, &out)
	return out, err
}

// Renew extends a lease; wm (lease mode) raises the quorum watermark.
func (c *Client) Renew(ctx context.Context, l fencing.Lease, wm *fencing.Watermark) (fencing.Lease, error) {
	var out LeaseRequest
	_, err := c.do(ctx, http.MethodPost, "/v1/leases/renew", LeaseRequest{Lease: l, Watermark: wm}, &out)
	return out.Lease, err
}

// Release ends a lease at once; wm (lease mode) raises the quorum watermark.
func (c *Client) Release(ctx context.Context, l fencing.Lease, wm *fencing.Watermark) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/leases/release", LeaseRequest{Lease: l, Watermark: wm}, nil)
	return err
}

// CheckLease succeeds only while l is valid in etcd at the time of the call.
func (c *Client) CheckLease(ctx context.Context, l fencing.Lease) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/leases/check", LeaseRequest{Lease: l}, nil)
	return err
}

// WatchEpoch returns id's epoch as soon as its revision is above after, or
// after wait with the current one.
func (c *Client) WatchEpoch(ctx context.Context, id fencing.ValidatorID, after int64, wait time.Duration) (fencing.Epoch, int64, error) {
	q := url.Values{"after": {strconv.FormatInt(after, 10)}, "wait": {wait.String()}}
	ctx, cancel := context.WithTimeout(ctx, wait+c.opts.Timeout)
	defer cancel()
	var out EpochResponse
	_, err := c.doWait(ctx, wait, http.MethodGet, "/v1/validators/"+url.PathEscape(string(id))+"/epoch?"+q.Encode(), nil, &out)
	return out.Epoch, out.Revision, err
}

// JournalSignature commits one signature intent.
func (c *Client) JournalSignature(ctx context.Context, r fencing.JournalRequest) (fencing.JournalEntry, error) {
	var out JournalResponse
	_, err := c.do(ctx, http.MethodPost, "/v1/journal", r, &out)
	return out.Entry, err
}

// JournalBatch commits several signature intents in one request; each result
// is the entry or that request's refusal (as a *fencing.Error).
func (c *Client) JournalBatch(ctx context.Context, reqs []fencing.JournalRequest) ([]fencing.JournalEntry, []error, error) {
	var out JournalBatchResponse
	if _, err := c.do(ctx, http.MethodPost, "/v1/journal/batch", JournalBatchRequest{Requests: reqs}, &out); err != nil {
		return nil, nil, err
	}
	if len(out.Results) != len(reqs) {
		return nil, nil, fencing.Errorf(fencing.CodeUnavailable, "coordinator answered %d results for %d journal requests", len(out.Results), len(reqs))
	}
	entries := make([]fencing.JournalEntry, len(reqs))
	errs := make([]error, len(reqs))
	for i, r := range out.Results {
		switch {
		case r.Error != nil:
			errs[i] = &fencing.Error{Code: r.Error.Code, Message: r.Error.Message}
		case r.Entry != nil:
			entries[i] = *r.Entry
		default:
			errs[i] = fencing.Errorf(fencing.CodeUnavailable, "coordinator answered an empty journal result")
		}
	}
	return entries, errs, nil
}

// RegisterHolder makes holder known to the coordinator (a bump's target
// must be known).
func (c *Client) RegisterHolder(ctx context.Context, r ChangeRequest) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/holders", r, nil)
	return err
}

// Holders lists the known holders.
func (c *Client) Holders(ctx context.Context) ([]fencing.HolderRecord, error) {
	var out HoldersResponse
	_, err := c.do(ctx, http.MethodGet, "/v1/holders", nil, &out)
	return out.Holders, err
}

// RemoveValidator deletes a fenced validator with no bump in progress.
func (c *Client) RemoveValidator(ctx context.Context, id fencing.ValidatorID, r ChangeRequest) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/validators/"+url.PathEscape(string(id)), r, nil)
	return err
}

// PlanBump is a bump's dry run: r with DryRun set, answered with the plan
// and its checks; nothing changes.
func (c *Client) PlanBump(ctx context.Context, id fencing.ValidatorID, r BumpRequest) (BumpPlan, error) {
	r.DryRun = true
	var out BumpPlan
	_, err := c.do(ctx, http.MethodPost, "/v1/validators/"+url.PathEscape(string(id))+"/bump", r, &out)
	return out, err
}

// BumpProgress streams bump bumpID of id (GET .../bumps/{bump}/progress)
// and calls fn with each line until the stream ends, fn returns an error,
// or ctx ends. firstWait (at most 1m) asks the coordinator to wait that long
// after the grant for the new holder's first signature. The stream has no
// deadline of its own: ctx bounds it. A connection that fails before the
// stream starts is tried on the next URL; one that breaks during the stream
// returns an unavailable error, and the caller may call again (the stream
// starts over with every step so far).
func (c *Client) BumpProgress(ctx context.Context, id fencing.ValidatorID, bumpID string, firstWait time.Duration, fn func(BumpProgress) error) error {
	path := "/v1/validators/" + url.PathEscape(string(id)) + "/bumps/" + url.PathEscape(bumpID) + "/progress"
	if firstWait > 0 {
		path += "?" + url.Values{"first_signature_wait": {firstWait.String()}}.Encode()
	}
	first := int(c.first.Load())
	var lastErr error
	for i := range c.urls {
		base := c.urls[(first+i)%len(c.urls)]
		err := c.stream(ctx, base, path, fn)
		if err == nil || !retryElsewhere(err) || ctx.Err() != nil {
			return err
		}
		lastErr = err
	}
	return lastErr
}

// stream GETs base+path and decodes its NDJSON body line by line into fn.
// The answer's headers must arrive within the client's Timeout (an
// unanswering replica is left for the next); the body then streams for as
// long as ctx lasts.
func (c *Client) stream(ctx context.Context, base, path string, fn func(BumpProgress) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return fencing.Errorf(fencing.CodeBadRequest, "build request: %v", err)
	}
	if c.opts.TokenFile != "" {
		tok, err := c.bearer()
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	headers := time.AfterFunc(c.opts.Timeout, cancel)
	resp, err := c.hc.Do(req)
	if !headers.Stop() {
		if err == nil {
			resp.Body.Close()
		}
		return fencing.Errorf(fencing.CodeUnavailable, "coordinator %s did not answer within %s", base, c.opts.Timeout)
	}
	if err != nil {
		return fencing.Errorf(fencing.CodeUnavailable, "coordinator %s unreachable: %v", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var er ErrorResponse
		if json.Unmarshal(data, &er) != nil || !er.Code.Known() {
			return fencing.Errorf(fencing.CodeUnavailable, "coordinator %s answered %s without a code word: %.200s", base, resp.Status, data)
		}
		return &fencing.Error{Code: er.Code, Message: er.Message}
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var p BumpProgress
		if err := dec.Decode(&p); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fencing.Errorf(fencing.CodeUnavailable, "coordinator %s: bump progress stream broke: %v", base, err)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
}

// MinTokenLength is the shortest bearer token an operator's token file may
// hold; the coordinator's --operator-token-file has the same floor.
const MinTokenLength = 16

// CheckSecretFile reports a file holding a secret (what names it in the
// error: "key file", "token file") that is missing, accessible to others or
// writable by its group. Group read is allowed: a Kubernetes Secret mounted
// for a non-root container with fsGroup arrives as 0440 (kubernetes#57923).
func CheckSecretFile(path, what string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if st.Mode().Perm()&0o027 != 0 {
		return fmt.Errorf("%s %s is accessible to others or writable by its group (mode %04o); run chmod 600 %s (0440 is fine for a Secret mounted with fsGroup)", what, path, st.Mode().Perm(), path)
	}
	return nil
}

// CheckTokenFile reports a token file that must not be used as an
// operator's credential: CheckSecretFile's refusals, or fewer than
// MinTokenLength characters. The error names the file, never its content.
func CheckTokenFile(path string) error {
	if err := CheckSecretFile(path, "token file"); err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	defer clear(b)
	if n := len(bytes.TrimSpace(b)); n < MinTokenLength {
		return fmt.Errorf("token file %s holds %d characters, fewer than %d: is it the whole token?", path, n, MinTokenLength)
	}
	return nil
}
