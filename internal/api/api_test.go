package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
)

func decode(body string, v any) error {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	return DecodeJSON(httptest.NewRecorder(), r, v)
}

func TestDecodeJSON(t *testing.T) {
	cases := []struct {
		name, body string
		ok         bool
	}{
		{"valid", `{"to":"region-b","operator":"o","reason":"r","wait":"30s"}`, true},
		{"empty", ``, false},
		{"unknown field", `{"to":"x","nope":1}`, false},
		{"trailing", `{"to":"x"} {}`, false},
		{"trailing garbage", `{"to":"x"} x`, false},
		{"wrong type", `{"expected_epoch":"3"}`, false},
		{"negative epoch", `{"expected_epoch":-3}`, false},
		{"bad duration", `{"wait":"soon"}`, false},
		{"huge", `{"reason":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, false},
		{"array", `[]`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var req BumpRequest
			err := decode(c.body, &req)
			if (err == nil) != c.ok {
				t.Fatalf("DecodeJSON(%.40q) = %v, want ok=%t", c.body, err, c.ok)
			}
			if err != nil && fencing.CodeOf(err) != fencing.CodeBadRequest {
				t.Fatalf("DecodeJSON(%.40q) = %v, want a bad_request", c.body, err)
			}
		})
	}
}

// FuzzDecodeJSON feeds every request type of the API: decoding never panics
// and every failure is a bad_request.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"validator":"v","holder":"region-a","operator":"o","reason":"r"}`,
		`{"expected_epoch":3,"to":"region-b","operator":"o","reason":"r","wait":"30s"}`,
		`{"lease":{"validator":"v","epoch":1,"holder":"region-a","sidecar":"a-0","epoch_revision":2,"lease_revision":3,"ttl_seconds":5},"watermark":{"height":1,"round":0,"step":"commit","digest":"0x00"}}`,
		`{"lease":{},"hrs":{"height":1,"round":0,"step":"commit"},"digest":"0x1111111111111111111111111111111111111111111111111111111111111111"}`,
		`{"kind":"chain","duplicates":1}`, `{`, `null`, `{"wait":"-1s"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, v := range []any{&AddValidatorRequest{}, &FreezeRequest{}, &BumpRequest{}, &AcquireRequest{}, &LeaseRequest{}, &fencing.JournalRequest{}, &AuditReport{}} {
			if err := decode(body, v); err != nil && fencing.CodeOf(err) != fencing.CodeBadRequest {
				t.Fatalf("DecodeJSON(%q into %T) = %v, want bad_request", body, v, err)
			}
		}
	})
}

// A replica that accepts the connection but never answers (a blackholed
// region) must not use up the whole deadline: the next URL gets its share.
func TestClientFailsOverFromBlackhole(t *testing.T) {
	release := make(chan struct{})
	hole := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hole.Close()
	defer close(release)
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, StatusResponse{Validators: []fencing.Status{{ID: "val-1"}}})
	}))
	defer good.Close()
	c, err := NewClient([]string{hole.URL, good.URL}, ClientOptions{Timeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sts, err := c.Statuses(context.Background())
	if err != nil || len(sts) != 1 {
		t.Fatalf("Statuses with a blackholed first replica = %v, %v; want the second replica's answer", sts, err)
	}
	// The replica that answered is tried first next time.
	if got := c.first.Load(); got != 1 {
		t.Fatalf("first URL index after failover = %d, want 1", got)
	}
}

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		code fencing.Code
		want int
	}{
		{fencing.CodeFenced, 412}, {fencing.CodeStaleEpoch, 412}, {fencing.CodeWatermark, 412}, {fencing.CodeJournal, 412},
		{fencing.CodeBadRequest, 400}, {fencing.CodeUnauthorized, 401}, {fencing.CodeForbidden, 403}, {fencing.CodeNotFound, 404},
		{fencing.CodeConflict, 409}, {fencing.CodeLeaseHeld, 409}, {fencing.CodeNotReady, 409}, {fencing.CodeInProgress, 202},
		{fencing.CodeNoQuorum, 503}, {fencing.CodeUnavailable, 503}, {fencing.CodeInternal, 500},
	} {
		if got := StatusOf(tc.code); got != tc.want {
			t.Errorf("StatusOf(%s) = %d, want %d", tc.code, got, tc.want)
		}
	}
}
