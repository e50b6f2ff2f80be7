package coordinator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/fencing"
)

type testCoordinator struct {
	url string
	cli *clientv3.Client
	api *api.Client
}

func newTestCoordinator(t *testing.T) *testCoordinator {
	t.Helper()
	c := fencetest.Start(t, fencetest.Options{})
	return &testCoordinator{url: c.URL, cli: c.Etcd.Client(t), api: c.Client}
}

// snapshot is every key with its mod revision: equal snapshots mean nothing
// was written. Presence reports are left out: a standby's refused acquire
// is a valid request, and its report is what a bump's preflight reads.
func (tc *testCoordinator) snapshot(t *testing.T) string {
	t.Helper()
	resp, err := tc.cli.Get(context.Background(), "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key), "/presence/") {
			continue
		}
		fmt.Fprintf(&b, "%s@%d\n", kv.Key, kv.ModRevision)
	}
	return b.String()
}

// Behaviour 6: bad input everywhere gets 400/404/409/412 with a code word and
// a sentence; nothing panics; the store is unchanged.
func TestBadInput(t *testing.T) {
	tc := newTestCoordinator(t)
	ctx := context.Background()
	if _, err := tc.api.AddValidator(ctx, api.AddValidatorRequest{Validator: "val-1", Holder: "region-a", Operator: "alice", Reason: "setup"}); err != nil {
		t.Fatal(err)
	}
	g, err := tc.api.Acquire(ctx, api.AcquireRequest{Validator: "val-1", Holder: "region-a", Sidecar: "a-0", TTLSeconds: 30})
	if err != nil {
		t.Fatal(err)
	}
	lease, _ := json.Marshal(g.Lease)
	before := tc.snapshot(t)

	huge := `{"validator":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     fencing.Code
	}{
		{"not JSON", "POST", "/v1/validators", `{`, 400, fencing.CodeBadRequest},
		{"empty body", "POST", "/v1/validators", ``, 400, fencing.CodeBadRequest},
		{"unknown field", "POST", "/v1/validators", `{"validator":"v","holder":"region-a","operator":"o","reason":"r","x":1}`, 400, fencing.CodeBadRequest},
		{"two objects", "POST", "/v1/validators", `{"validator":"v","holder":"region-a","operator":"o","reason":"r"}{}`, 400, fencing.CodeBadRequest},
		{"huge body", "POST", "/v1/validators", huge, 400, fencing.CodeBadRequest},
		{"wrong type", "POST", "/v1/validators", `{"validator":7}`, 400, fencing.CodeBadRequest},
		{"bad holder", "POST", "/v1/validators", `{"validator":"v","holder":"Region A","operator":"o","reason":"r"}`, 400, fencing.CodeBadRequest},
		{"empty operator", "POST", "/v1/validators", `{"validator":"v","holder":"region-a","operator":"","reason":"r"}`, 400, fencing.CodeBadRequest},
		{"blank reason", "POST", "/v1/validators", `{"validator":"v","holder":"region-a","operator":"o","reason":"  "}`, 400, fencing.CodeBadRequest},
		{"bad validator", "POST", "/v1/validators", `{"validator":"../etc","holder":"region-a","operator":"o","reason":"r"}`, 400, fencing.CodeBadRequest},
		{"existing validator", "POST", "/v1/validators", `{"validator":"val-1","holder":"region-a","operator":"o","reason":"r"}`, 409, fencing.CodeConflict},
		{"unknown validator", "GET", "/v1/validators/nope", ``, 404, fencing.CodeNotFound},
		{"freeze unknown", "POST", "/v1/validators/nope/freeze", `{"operator":"o","reason":"r"}`, 404, fencing.CodeNotFound},
		{"freeze wrong epoch", "POST", "/v1/validators/val-1/freeze", `{"expected_epoch":7,"operator":"o","reason":"r"}`, 409, fencing.CodeConflict},
		{"freeze epoch not a number", "POST", "/v1/validators/val-1/freeze", `{"expected_epoch":"x","operator":"o","reason":"r"}`, 400, fencing.CodeBadRequest},
		{"freeze no reason", "POST", "/v1/validators/val-1/freeze", `{"operator":"o"}`, 400, fencing.CodeBadRequest},
		{"bump wrong epoch", "POST", "/v1/validators/val-1/bump", `{"expected_epoch":2,"to":"region-b","operator":"o","reason":"r"}`, 409, fencing.CodeConflict},
		{"bump bad holder", "POST", "/v1/validators/val-1/bump", `{"to":"REGION","operator":"o","reason":"r"}`, 400, fencing.CodeBadRequest},
		{"bump bad wait", "POST", "/v1/validators/val-1/bump", `{"to":"region-b","operator":"o","reason":"r","wait":"forever"}`, 400, fencing.CodeBadRequest},
		{"bump no operator", "POST", "/v1/validators/val-1/bump", `{"to":"region-b","reason":"r"}`, 400, fencing.CodeBadRequest},
		{"lease for other holder", "POST", "/v1/leases", `{"validator":"val-1","holder":"region-b","sidecar":"b-0","ttl_seconds":5}`, 412, fencing.CodeFenced},
		{"lease zero ttl", "POST", "/v1/leases", `{"validator":"val-1","holder":"region-a","sidecar":"a-1","ttl_seconds":0}`, 400, fencing.CodeBadRequest},
		{"lease bad sidecar", "POST", "/v1/leases", `{"validator":"val-1","holder":"region-a","sidecar":"A 1","ttl_seconds":5}`, 400, fencing.CodeBadRequest},
		{"renew empty lease", "POST", "/v1/leases/renew", `{"lease":{}}`, 400, fencing.CodeBadRequest},
		{"renew forged lease", "POST", "/v1/leases/renew", strings.Replace(`{"lease":L}`, "L", strings.Replace(string(lease), `"lease_revision":`, `"lease_revision":9`, 1), 1), 412, fencing.CodeFenced},
		{"journal short digest", "POST", "/v1/journal", `{"lease":` + string(lease) + `,"hrs":{"height":1,"round":0,"step":"commit"},"digest":"0x12"}`, 400, fencing.CodeBadRequest},
		{"journal non-hex digest", "POST", "/v1/journal", `{"lease":` + string(lease) + `,"hrs":{"height":1,"round":0,"step":"commit"},"digest":"0x` + strings.Repeat("zz", 32) + `"}`, 400, fencing.CodeBadRequest},
		{"journal bad step", "POST", "/v1/journal", `{"lease":` + string(lease) + `,"hrs":{"height":1,"round":0,"step":"vote"},"digest":"0x` + strings.Repeat("11", 32) + `"}`, 400, fencing.CodeBadRequest},
		{"journal negative height", "POST", "/v1/journal", `{"lease":` + string(lease) + `,"hrs":{"height":-1,"round":0,"step":"commit"},"digest":"0x` + strings.Repeat("11", 32) + `"}`, 400, fencing.CodeBadRequest},
		{"watch bad wait", "GET", "/v1/validators/val-1/epoch?wait=abc", ``, 400, fencing.CodeBadRequest},
		{"watch bad after", "GET", "/v1/validators/val-1/epoch?after=-3", ``, 400, fencing.CodeBadRequest},
		{"watch unknown", "GET", "/v1/validators/nope/epoch?wait=0s", ``, 404, fencing.CodeNotFound},
		{"events bad limit", "GET", "/v1/events?limit=-1", ``, 400, fencing.CodeBadRequest},
		{"audit bad kind", "POST", "/v1/audits", `{"kind":"x","duplicates":0,"operator":"o","detail":""}`, 400, fencing.CodeBadRequest},
		{"no such endpoint", "GET", "/v1/nope", ``, 404, fencing.CodeNotFound},
		{"wrong method", "DELETE", "/v1/validators", ``, 404, fencing.CodeNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, tc.url+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var er api.ErrorResponse
			if err := json.Unmarshal(body, &er); err != nil {
				t.Fatalf("%s %s: body %q is not an error response: %v", c.method, c.path, body, err)
			}
			if resp.StatusCode != c.status || er.Code != c.code || len(er.Message) < 10 {
				t.Fatalf("%s %s = %d %s %q, want %d %s and a sentence", c.method, c.path, resp.StatusCode, er.Code, er.Message, c.status, c.code)
			}
		})
	}
	if after := tc.snapshot(t); after != before {
		t.Fatalf("bad requests changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// The sidecar API end to end over HTTP: acquire, journal, watch sees the
// revoke, renew and journal then fail with stale_epoch.
func TestSidecarAPIOverHTTP(t *testing.T) {
	tc := newTestCoordinator(t)
	ctx := context.Background()
	if _, err := tc.api.AddValidator(ctx, api.AddValidatorRequest{Validator: "val-1", Holder: "region-a", Operator: "alice", Reason: "setup"}); err != nil {
		t.Fatal(err)
	}
	g, err := tc.api.Acquire(ctx, api.AcquireRequest{Validator: "val-1", Holder: "region-a", Sidecar: "a-0", TTLSeconds: 30})
	if err != nil {
		t.Fatal(err)
	}
	req := fencing.JournalRequest{Lease: g.Lease, HRS: fencing.HRS{Height: 10, Step: fencing.StepCommit}, Digest: fencing.Digest{1}}
	if _, err := tc.api.JournalSignature(ctx, req); err != nil {
		t.Fatalf("JournalSignature = %v", err)
	}
	ep, rev, err := tc.api.WatchEpoch(ctx, "val-1", 0, time.Second)
	if err != nil || ep.State != fencing.StateActive {
		t.Fatalf("WatchEpoch = %+v, %v", ep, err)
	}
	watched := make(chan fencing.Epoch, 1)
	go func() {
		ep, _, err := tc.api.WatchEpoch(ctx, "val-1", rev, 5*time.Second)
		if err != nil {
			t.Errorf("WatchEpoch = %v", err)
		}
		watched <- ep
	}()
	if _, err := tc.api.Freeze(ctx, "val-1", api.FreezeRequest{Operator: "alice", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if ep := <-watched; ep.State == fencing.StateActive {
		t.Fatalf("watch returned %+v after the freeze, want revoking or fenced", ep)
	}
	req.HRS.Height = 11
	if _, err := tc.api.JournalSignature(ctx, req); fencing.CodeOf(err) != fencing.CodeStaleEpoch {
		t.Fatalf("JournalSignature after freeze = %v, want stale_epoch", err)
	}
	if _, err := tc.api.Renew(ctx, g.Lease, nil); fencing.CodeOf(err) != fencing.CodeStaleEpoch {
		t.Fatalf("Renew after freeze = %v, want stale_epoch", err)
	}
	if err := tc.api.Release(ctx, g.Lease, nil); err != nil {
		t.Fatalf("Release = %v", err)
	}
}

// A journal batch answers each request on its own: one validator's refusal
// does not fail the others; bad batches are refused whole.
func TestJournalBatch(t *testing.T) {
	tc := newTestCoordinator(t)
	ctx := context.Background()
	var reqs []fencing.JournalRequest
	for _, id := range []fencing.ValidatorID{"val-1", "val-2", "val-3"} {
		if _, err := tc.api.AddValidator(ctx, api.AddValidatorRequest{Validator: id, Holder: "region-a", Operator: "o", Reason: "r"}); err != nil {
			t.Fatal(err)
		}
		g, err := tc.api.Acquire(ctx, api.AcquireRequest{Validator: id, Holder: "region-a", Sidecar: "a-0", TTLSeconds: 30})
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, fencing.JournalRequest{Lease: g.Lease, HRS: fencing.HRS{Height: 5, Step: fencing.StepCommit}, Digest: fencing.Digest{1}})
	}
	if _, err := tc.api.Freeze(ctx, "val-2", api.FreezeRequest{Operator: "o", Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	entries, errs, err := tc.api.JournalBatch(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || errs[2] != nil || entries[0].HRS.Height != 5 || entries[2].Validator != "val-3" {
		t.Fatalf("batch results = %+v, %v; want val-1 and val-3 journaled", entries, errs)
	}
	if fencing.CodeOf(errs[1]) != fencing.CodeStaleEpoch {
		t.Fatalf("frozen val-2 in a batch = %v, want stale_epoch", errs[1])
	}
	if _, _, err := tc.api.JournalBatch(ctx, nil); fencing.CodeOf(err) != fencing.CodeBadRequest {
		t.Fatalf("empty batch = %v, want bad_request", err)
	}
	if _, _, err := tc.api.JournalBatch(ctx, make([]fencing.JournalRequest, api.MaxJournalBatch+1)); fencing.CodeOf(err) != fencing.CodeBadRequest {
		t.Fatalf("oversized batch = %v, want bad_request", err)
	}
}

// With an operator token, the operator API refuses requests without it;
// sidecar and health endpoints are unaffected.
func TestOperatorToken(t *testing.T) {
	c := fencetest.Start(t, fencetest.Options{OperatorToken: "0123456789abcdef0123"})
	ctx := context.Background()
	if _, err := c.Client.AddValidator(ctx, api.AddValidatorRequest{Validator: "val-1", Holder: "region-a", Operator: "o", Reason: "r"}); fencing.CodeOf(err) != fencing.CodeUnauthorized {
		t.Fatalf("AddValidator without the token = %v, want unauthorized", err)
	}
	tokenFile := t.TempDir() + "/token"
	for _, tok := range []string{"wrong-token-of-some-length", "0123456789abcdef0123"} {
		if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		withToken, err := api.NewClient([]string{c.URL}, api.ClientOptions{TokenFile: tokenFile})
		if err != nil {
			t.Fatal(err)
		}
		_, err = withToken.AddValidator(ctx, api.AddValidatorRequest{Validator: "val-1", Holder: "region-a", Operator: "o", Reason: "r"})
		if ok := tok == "0123456789abcdef0123"; (err == nil) != ok {
			t.Fatalf("AddValidator with token %q = %v, want ok=%t", tok, err, ok)
		}
	}
	if _, err := c.Client.Acquire(ctx, api.AcquireRequest{Validator: "val-1", Holder: "region-a", Sidecar: "a-0", TTLSeconds: 5}); err != nil {
		t.Fatalf("sidecar Acquire without the operator token = %v (sidecars are not operators)", err)
	}
}
