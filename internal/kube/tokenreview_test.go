package kube

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/validator-fencing/fencing/internal/fencing"
)

const testAudience = "fencing-coordinator"

// fakeJWT builds an unsigned token with the given claims; the fake API server
// below decides what it means.
func fakeJWT(t *testing.T, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + enc.EncodeToString(payload) + ".c2ln"
}

// fakeReviewer is a TokenReview endpoint: tokens maps a token to the status
// the API server returns for it; err, when set, is returned instead.
type fakeReviewer struct {
	mu     sync.Mutex
	tokens map[string]authnv1.TokenReviewStatus
	err    error
	calls  int
	specs  []authnv1.TokenReviewSpec
}

func (f *fakeReviewer) client() *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls++
		tr := action.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		f.specs = append(f.specs, tr.Spec)
		if f.err != nil {
			return true, nil, f.err
		}
		st, ok := f.tokens[tr.Spec.Token]
		if !ok {
			st = authnv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		tr.Status = st
		return true, tr, nil
	})
	return c
}

func (f *fakeReviewer) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// testPod is the pod the fake API server binds authenticated tokens to.
const testPod = "besu-1-0"

func authenticated(user string, audiences ...string) authnv1.TokenReviewStatus {
	return authnv1.TokenReviewStatus{Authenticated: true, Audiences: audiences, User: authnv1.UserInfo{
		Username: user, Extra: map[string]authnv1.ExtraValue{podNameExtra: {testPod}}}}
}

func connRefused() error {
	return &url.Error{Op: "Post", URL: "https://10.0.0.1:443/apis/authentication.k8s.io/v1/tokenreviews",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
}

func TestAuthenticate(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	future := now.Add(time.Hour).Unix()
	bound := fakeJWT(t, map[string]any{"aud": []string{testAudience}, "exp": future, "sub": "system:serviceaccount:validators:besu-1"})
	unbound := fakeJWT(t, map[string]any{"aud": []string{testAudience}, "exp": future, "n": 2})
	user := fakeJWT(t, map[string]any{"aud": []string{testAudience}, "exp": future, "n": 3})
	unconfirmed := fakeJWT(t, map[string]any{"aud": []string{testAudience}, "exp": future, "n": 4})
	wrongAud := fakeJWT(t, map[string]any{"aud": "https://kubernetes.default.svc.cluster.local", "exp": future})
	expired := fakeJWT(t, map[string]any{"aud": []string{testAudience}, "exp": now.Add(-time.Minute).Unix()})
	revoked := fakeJWT(t, map[string]any{"aud": []string{testAudience}, "exp": future, "n": 5})
	podless := fakeJWT(t, map[string]any{"aud": []string{testAudience}, "exp": future, "n": 6})
	noPod := authenticated("system:serviceaccount:validators:besu-1", testAudience)
	noPod.User.Extra = nil

	reviewer := &fakeReviewer{tokens: map[string]authnv1.TokenReviewStatus{
		bound:       authenticated("system:serviceaccount:validators:besu-1", testAudience),
		unbound:     authenticated("system:serviceaccount:validators:other", testAudience),
		user:        authenticated("alice", testAudience),
		unconfirmed: authenticated("system:serviceaccount:validators:besu-1"),
		podless:     noPod,
	}}
	bindings, err := ParseBindings("validators/besu-1=region-a:" + addrLower)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		token    string
		want     fencing.Identity
		wantCode fencing.Code
		wantMsg  string
		apiCall  bool
	}{
		{name: "bound service account", token: bound, apiCall: true,
			want: fencing.Identity{Subject: "system:serviceaccount:validators:besu-1", Holder: "region-a", Sidecar: testPod, Validators: []fencing.ValidatorID{addr}}},
		{name: "Bearer prefix", token: "Bearer " + bound, apiCall: true,
			want: fencing.Identity{Subject: "system:serviceaccount:validators:besu-1", Holder: "region-a", Sidecar: testPod, Validators: []fencing.ValidatorID{addr}}},
		{name: "no token", token: "  ", wantCode: fencing.CodeUnauthorized, wantMsg: "no bearer token"},
		{name: "Bearer without token", token: "Bearer ", wantCode: fencing.CodeUnauthorized, wantMsg: "no bearer token"},
		{name: "not bound", token: unbound, apiCall: true, wantCode: fencing.CodeForbidden,
			wantMsg: "ServiceAccount validators/other is authenticated but not bound to a holder"},
		{name: "not a service account", token: user, apiCall: true, wantCode: fencing.CodeForbidden, wantMsg: "alice is not a ServiceAccount"},
		{name: "audience not confirmed", token: unconfirmed, apiCall: true, wantCode: fencing.CodeUnauthorized, wantMsg: "did not confirm audience"},
		{name: "wrong audience", token: wrongAud, apiCall: true, wantCode: fencing.CodeUnauthorized,
			wantMsg: `wrong audience: the token was issued for ["https://kubernetes.default.svc.cluster.local"], the coordinator accepts only "fencing-coordinator"`},
		{name: "expired", token: expired, apiCall: true, wantCode: fencing.CodeUnauthorized, wantMsg: "the token expired at 2026-01-02T03:03:05Z"},
		{name: "revoked", token: revoked, apiCall: true, wantCode: fencing.CodeUnauthorized, wantMsg: "did not authenticate the token"},
		{name: "not bound to a pod", token: podless, apiCall: true, wantCode: fencing.CodeForbidden, wantMsg: "is not bound to a pod"},
		{name: "garbage", token: "not-a-jwt", apiCall: true, wantCode: fencing.CodeUnauthorized, wantMsg: "not a Kubernetes ServiceAccount token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			lg := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace})
			a := NewTokenReviewAuthenticator(reviewer.client(), testAudience, bindings,
				WithClock(func() time.Time { return now }), WithLogger(lg), WithCacheTTL(0))
			before := reviewer.callCount()
			got, err := a.Authenticate(context.Background(), tt.token)
			if calls := reviewer.callCount() - before; (calls > 0) != tt.apiCall {
				t.Errorf("Authenticate made %d TokenReviews, want API call = %v", calls, tt.apiCall)
			}
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("Authenticate() error = %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("Authenticate() = %+v, want %+v", got, tt.want)
				}
			} else {
				if code := fencing.CodeOf(err); code != tt.wantCode {
					t.Fatalf("Authenticate() = %v, %v; want code %s", got, err, tt.wantCode)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("Authenticate() error %q does not contain %q", err, tt.wantMsg)
				}
			}
			if tok := strings.TrimSpace(strings.TrimPrefix(tt.token, "Bearer ")); tok != "" && strings.Contains(logs.String(), tok) {
				t.Errorf("the token appeared in the logs: %s", logs.String())
			}
		})
	}

	// Every review asked for exactly our audience.
	for _, spec := range reviewer.specs {
		if !reflect.DeepEqual(spec.Audiences, []string{testAudience}) {
			t.Errorf("TokenReview spec.audiences = %q, want [%q]", spec.Audiences, testAudience)
		}
	}
}

func TestAuthenticateAPIErrors(t *testing.T) {
	gr := schema.GroupResource{Group: "authentication.k8s.io", Resource: "tokenreviews"}
	token := "a.b.c"
	tests := []struct {
		name    string
		err     error
		wantMsg string
	}{
		{name: "API server down", err: connRefused(), wantMsg: "cannot reach the Kubernetes API server"},
		{name: "coordinator lacks RBAC", err: apierrors.NewForbidden(gr, "", errors.New(`User "system:serviceaccount:fencing:fencing" cannot create resource "tokenreviews"`)),
			wantMsg: "forbidden by the API server (RBAC)"},
		{name: "timeout", err: apierrors.NewTimeoutError("request timed out", 1), wantMsg: "failed to answer"},
		{name: "context deadline", err: context.DeadlineExceeded, wantMsg: "cannot reach"},
		{name: "coordinator credentials rejected", err: apierrors.NewUnauthorized("token expired"), wantMsg: "did not accept our credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &fakeReviewer{err: tt.err}
			a := NewTokenReviewAuthenticator(r.client(), testAudience, nil)
			_, err := a.Authenticate(context.Background(), token)
			if code := fencing.CodeOf(err); code != fencing.CodeUnavailable {
				t.Fatalf("Authenticate() error = %v, want code unavailable", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), "coordinator cannot review the sidecar's token") {
				t.Errorf("Authenticate() error %q does not contain %q", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("Authenticate() error %q contains the token", err)
			}
		})
	}
}

func TestAuthenticateCache(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mk := func(n int, exp time.Time) string {
		return fakeJWT(t, map[string]any{"aud": []string{testAudience}, "exp": exp.Unix(), "n": n})
	}
	long := mk(1, now.Add(time.Hour))
	other1, other2 := mk(3, now.Add(time.Hour)), mk(4, now.Add(time.Hour))
	unbound := mk(5, now.Add(time.Hour))
	sa := "system:serviceaccount:v:s"
	r := &fakeReviewer{tokens: map[string]authnv1.TokenReviewStatus{
		long:   authenticated(sa, testAudience),
		other1: authenticated(sa, testAudience), other2: authenticated(sa, testAudience),
		unbound: authenticated("system:serviceaccount:v:nobody", testAudience),
	}}
	bindings := []Binding{{Namespace: "v", ServiceAccount: "s", Holder: "region-a"}}
	a := NewTokenReviewAuthenticator(r.client(), testAudience, bindings, WithClock(func() time.Time { return now }), WithCacheSize(2))

	auth := func(tok string) error {
		t.Helper()
		_, err := a.Authenticate(context.Background(), tok)
		return err
	}
	step := func(name, tok string, advance time.Duration, wantCalls int, wantErr bool) {
		t.Helper()
		now = now.Add(advance)
		before := r.callCount()
		err := auth(tok)
		if (err != nil) != wantErr {
			t.Fatalf("%s: Authenticate() error = %v, want error %v", name, err, wantErr)
		}
		if got := r.callCount() - before; got != wantCalls {
			t.Errorf("%s: %d TokenReviews, want %d", name, got, wantCalls)
		}
	}
	step("first use reviews", long, 0, 1, false)
	step("second use is cached", long, 10*time.Second, 0, false)
	step("after the TTL it reviews again", long, 25*time.Second, 1, false)
	short := mk(2, now.Add(5*time.Second))
	r.mu.Lock()
	r.tokens[short] = authenticated(sa, testAudience)
	r.mu.Unlock()
	step("short-lived token reviews", short, 0, 1, false)
	step("cached before its expiry", short, 4*time.Second, 0, false)
	step("not cached past its expiry", short, 2*time.Second, 1, false)
	step("refusals are not cached (1)", unbound, 0, 1, true)
	step("refusals are not cached (2)", unbound, 0, 1, true)

	// Bounded: with room for 2, adding more never grows the cache past 2.
	for _, tok := range []string{other1, other2, long} {
		if err := auth(tok); err != nil {
			t.Fatal(err)
		}
	}
	a.mu.Lock()
	size := len(a.cache)
	a.mu.Unlock()
	if size > 2 {
		t.Errorf("cache holds %d entries, want at most 2", size)
	}
}

func TestAuthenticateConcurrent(t *testing.T) {
	tok := fakeJWT(t, map[string]any{"aud": []string{testAudience}, "exp": time.Now().Add(time.Hour).Unix()})
	r := &fakeReviewer{tokens: map[string]authnv1.TokenReviewStatus{tok: authenticated("system:serviceaccount:v:s", testAudience)}}
	a := NewTokenReviewAuthenticator(r.client(), testAudience, []Binding{{Namespace: "v", ServiceAccount: "s", Holder: "region-a", Validators: []string{"x"}}})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := a.Authenticate(context.Background(), tok)
			if err == nil && (id.Holder != "region-a" || len(id.Validators) != 1) {
				err = fmt.Errorf("identity %+v", id)
			}
			if err == nil {
				id.Validators[0] = "mutated" // must not leak into the cache
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	id, err := a.Authenticate(context.Background(), tok)
	if err != nil || id.Validators[0] != "x" {
		t.Errorf("Authenticate() after mutation = %+v, %v; want validators [x]", id, err)
	}
}

func TestUnverifiedClaims(t *testing.T) {
	tests := []struct {
		name    string
		token   string
		want    tokenClaims
		wantErr bool
	}{
		{name: "aud string", token: fakeJWT(t, map[string]any{"aud": "a", "exp": 5}), want: tokenClaims{Aud: []string{"a"}, Exp: 5}},
		{name: "aud list", token: fakeJWT(t, map[string]any{"aud": []string{"a", "b"}}), want: tokenClaims{Aud: []string{"a", "b"}}},
		{name: "two parts", token: "a.b", wantErr: true},
		{name: "bad base64", token: "a.!!.c", wantErr: true},
		{name: "bad aud", token: fakeJWT(t, map[string]any{"aud": 7}), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := unverifiedClaims(tt.token)
			if (err != nil) != tt.wantErr {
				t.Fatalf("unverifiedClaims() error = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("unverifiedClaims() = %+v, want %+v", got, tt.want)
			}
		})
	}
}
