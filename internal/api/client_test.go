package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// A replica that never answers the progress request is left for the next
// after the client's timeout; the next one's stream is read line by line.
func TestBumpProgressFailsOver(t *testing.T) {
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(stuck.Close)
	var path string
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.String()
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		_ = enc.Encode(BumpProgress{Step: &fencing.TimelineEntry{Step: "revoke_committed"}})
		_ = enc.Encode(BumpProgress{Draining: []LiveLease{{Holder: "region-a", Sidecar: "a-0", ExpiresIn: Duration{Duration: 3 * time.Second}}}})
		_ = enc.Encode(BumpProgress{Done: &fencing.BumpResult{Done: true}})
	}))
	t.Cleanup(good.Close)
	c, err := NewClient([]string{stuck.URL, good.URL}, ClientOptions{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var got []BumpProgress
	err = c.BumpProgress(context.Background(), "val-1", "0123456789abcdef", 5*time.Second, func(p BumpProgress) error {
		got = append(got, p)
		return nil
	})
	if err != nil || len(got) != 3 || got[0].Step == nil || len(got[1].Draining) != 1 || got[2].Done == nil {
		t.Fatalf("BumpProgress = %v, %+v; want three lines from the second replica", err, got)
	}
	if path != "/v1/validators/val-1/bumps/0123456789abcdef/progress?first_signature_wait=5s" {
		t.Errorf("path %q", path)
	}
	// A refusal is the coordinator's code word; fn's error ends the stream.
	missing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, fencing.Errorf(fencing.CodeNotFound, "no bump"))
	}))
	t.Cleanup(missing.Close)
	c2, _ := NewClient([]string{missing.URL}, ClientOptions{})
	if err := c2.BumpProgress(context.Background(), "val-1", "x", 0, func(BumpProgress) error { return nil }); fencing.CodeOf(err) != fencing.CodeNotFound {
		t.Errorf("BumpProgress of an unknown bump = %v, want not_found", err)
	}
	stop := errors.New("stop")
	if err := c.BumpProgress(context.Background(), "val-1", "x", 0, func(BumpProgress) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("BumpProgress with fn failing = %v, want fn's error", err)
	}
}

func TestCheckTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const tok = "0123456789abcdef"
	for _, tc := range []struct {
		name, path, want string
	}{
		{"good", write("a", tok+"\n", 0o600), ""},
		{"Secret with fsGroup", write("b", tok, 0o440), ""},
		{"others may read", write("c", tok, 0o604), "accessible to others"},
		{"group may write", write("d", tok, 0o660), "writable by its group"},
		{"short", write("e", " abc \n", 0o600), "holds 3 characters"},
		{"missing", filepath.Join(dir, "none"), "no such file"},
	} {
		err := CheckTokenFile(tc.path)
		if (tc.want == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tok))) {
			t.Errorf("%s: CheckTokenFile = %v, want %q and never the token", tc.name, err, tc.want)
		}
	}
}
