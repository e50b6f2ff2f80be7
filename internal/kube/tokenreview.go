package kube

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/validator-fencing/fencing/internal/fencing"
)

const serviceAccountPrefix = "system:serviceaccount:"

// podNameExtra is where a TokenReview of a pod-bound ServiceAccount token
// names the pod.
const podNameExtra = "authentication.kubernetes.io/pod-name"

// TokenReviewAuthenticator authenticates sidecars by their projected
// ServiceAccount token with the Kubernetes TokenReview API and maps the
// ServiceAccount to a fencing.Identity through its Binding. It is safe for
// concurrent use.
type TokenReviewAuthenticator struct {
	client   kubernetes.Interface
	audience string
	bindings map[string]Binding // by Binding.Subject()
	lg       hclog.Logger
	now      func() time.Time
	timeout  time.Duration
	ttl      time.Duration
	max      int

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cachedIdentity // by SHA-256 of the token
}

type cachedIdentity struct {
	id    fencing.Identity
	until time.Time
}

// NewTokenReviewAuthenticator returns an authenticator that accepts tokens
// the API server authenticates for audience and whose ServiceAccount is one
// of bindings. Options: WithLogger, WithClock, WithTimeout, WithCacheTTL,
// WithCacheSize. Bindings should come from ParseBindings or
// ParseBindingsFile, which validate them.
func NewTokenReviewAuthenticator(client kubernetes.Interface, audience string, bindings []Binding, opts ...Option) *TokenReviewAuthenticator {
	o := applyOptions(opts)
	a := &TokenReviewAuthenticator{
		client:   client,
		audience: audience,
		bindings: make(map[string]Binding, len(bindings)),
		lg:       o.logger,
		now:      o.now,
		timeout:  o.timeout,
		ttl:      o.cacheTTL,
		max:      o.cacheSize,
		cache:    make(map[[sha256.Size]byte]cachedIdentity),
	}
	for _, b := range bindings {
		a.bindings[b.Subject()] = b
	}
	return a
}

// Audience is the audience tokens must have been issued for.
func (a *TokenReviewAuthenticator) Audience() string { return a.audience }

// Authenticate returns the identity of the sidecar that sent bearerToken (the
// bare token or "Bearer <token>"). Errors are *fencing.Error:
//   - unauthorized: no token, or the API server did not authenticate it for
//     this audience (wrong audience, expired, its Pod or ServiceAccount gone,
//     not a Kubernetes token); the message says which;
//   - forbidden: authenticated, but not a ServiceAccount or not bound;
//   - unavailable: the API server could not be asked, or refused to let the
//     coordinator review tokens (its RBAC); retry later.
//
// The token is never logged, returned or kept; the cache holds its SHA-256.
func (a *TokenReviewAuthenticator) Authenticate(ctx context.Context, bearerToken string) (fencing.Identity, error) {
	token := strings.TrimSpace(bearerToken)
	if scheme, rest, ok := strings.Cut(token, " "); ok && strings.EqualFold(scheme, "bearer") {
		token = strings.TrimSpace(rest)
	} else if strings.EqualFold(token, "bearer") {
		token = ""
	}
	if token == "" {
		return fencing.Identity{}, fencing.Errorf(fencing.CodeUnauthorized,
			"no bearer token: the sidecar must send its projected ServiceAccount token (audience %q) as Authorization: Bearer <token>", a.audience)
	}
	key := sha256.Sum256([]byte(token))
	now := a.now()
	if id, ok := a.lookup(key, now); ok {
		return id, nil
	}

	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	review, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{a.audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		// Whatever went wrong here is the coordinator's side (API server down,
		// or its own ServiceAccount may not create TokenReviews), not the
		// sidecar's: the sidecar should retry, so unavailable.
		fe := classify(err, "coordinator cannot review the sidecar's token")
		return fencing.Identity{}, fencing.Errorf(fencing.CodeUnavailable, "%s", fe.Message)
	}
	st := review.Status
	if !st.Authenticated {
		return fencing.Identity{}, fencing.Errorf(fencing.CodeUnauthorized, "%s", a.explainRefusal(token, st.Error, now))
	}
	// An audience-aware API server returns the audiences it checked; one
	// that does not would have accepted a token for any audience.
	if !slices.Contains(st.Audiences, a.audience) {
		return fencing.Identity{}, fencing.Errorf(fencing.CodeUnauthorized,
			"the API server authenticated the token but did not confirm audience %q (it confirmed %q); refusing because a token for another audience must not be accepted", a.audience, st.Audiences)
	}
	user := st.User.Username
	ns, sa, ok := splitServiceAccount(user)
	if !ok {
		return fencing.Identity{}, fencing.Errorf(fencing.CodeForbidden,
			"%s is not a ServiceAccount; only sidecars with a projected ServiceAccount token may lease", user)
	}
	b, ok := a.bindings[user]
	if !ok {
		return fencing.Identity{}, fencing.Errorf(fencing.CodeForbidden,
			"ServiceAccount %s/%s is authenticated but not bound to a holder; add %s/%s=<holder>[:<validators>] to the coordinator's auth bindings", ns, sa, ns, sa)
	}
	// The sidecar's name is the pod its token is bound to: a projected
	// ServiceAccount token names it, and the API server confirmed it.
	pod := st.User.Extra[podNameExtra]
	if len(pod) != 1 || fencing.ValidateSidecar(pod[0]) != nil {
		return fencing.Identity{}, fencing.Errorf(fencing.CodeForbidden,
			"the token of ServiceAccount %s/%s is not bound to a pod (extra %s = %q); the sidecar must send the projected ServiceAccount token of its pod, whose name is its sidecar name", ns, sa, podNameExtra, pod)
	}
	id := fencing.Identity{Subject: user, Holder: b.Holder, Sidecar: pod[0]}
	for _, v := range b.Validators {
		id.Validators = append(id.Validators, fencing.ValidatorID(v)) // canonical since ParseBindings
	}

	until := now.Add(a.ttl)
	if c, err := unverifiedClaims(token); err == nil && c.Exp > 0 {
		// The API server verified the signature; exp is trustworthy now.
		if exp := time.Unix(c.Exp, 0); exp.Before(until) {
			until = exp
		}
	}
	cached := id
	cached.Validators = slices.Clone(id.Validators) // the caller owns id
	a.store(key, cachedIdentity{id: cached, until: until}, now)
	a.lg.Debug("sidecar authenticated", "subject", user, "holder", b.Holder, "sidecar", id.Sidecar)
	return id, nil
}

// explainRefusal says why the API server did not authenticate a token. It
// reads the token's claims without verifying them, only to word the refusal:
// the decision was the API server's.
func (a *TokenReviewAuthenticator) explainRefusal(token, apiError string, now time.Time) string {
	said := ""
	if apiError != "" {
		said = " (the API server said: " + apiError + ")"
	}
	c, err := unverifiedClaims(token)
	if err != nil {
		return "the bearer token is not a Kubernetes ServiceAccount token" + said
	}
	if !slices.Contains(c.Aud, a.audience) {
		return fmt.Sprintf("wrong audience: the token was issued for %q, the coordinator accepts only %q; set the projected token volume's audience to %q%s",
			c.Aud, a.audience, a.audience, said)
	}
	if c.Exp > 0 && !now.Before(time.Unix(c.Exp, 0)) {
		return fmt.Sprintf("the token expired at %s; the sidecar must re-read its projected token file, which the kubelet refreshes%s",
			time.Unix(c.Exp, 0).UTC().Format(time.RFC3339), said)
	}
	return "the API server did not authenticate the token (its Pod or ServiceAccount may be gone, or another cluster issued it)" + said
}

func splitServiceAccount(user string) (namespace, name string, ok bool) {
	rest, ok := strings.CutPrefix(user, serviceAccountPrefix)
	if !ok {
		return "", "", false
	}
	namespace, name, ok = strings.Cut(rest, ":")
	if !ok || namespace == "" || name == "" || strings.Contains(name, ":") {
		return "", "", false
	}
	return namespace, name, true
}

func (a *TokenReviewAuthenticator) lookup(key [sha256.Size]byte, now time.Time) (fencing.Identity, bool) {
	if a.ttl <= 0 {
		return fencing.Identity{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[key]
	if !ok {
		return fencing.Identity{}, false
	}
	if !now.Before(c.until) {
		delete(a.cache, key)
		return fencing.Identity{}, false
	}
	id := c.id
	id.Validators = slices.Clone(c.id.Validators)
	return id, true
}

func (a *TokenReviewAuthenticator) store(key [sha256.Size]byte, c cachedIdentity, now time.Time) {
	if a.ttl <= 0 || !now.Before(c.until) {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= a.max {
		a.lockedEvict(now)
	}
	a.cache[key] = c
}

// lockedEvict drops expired entries and, if the cache is still full, the
// entry that expires first. a.mu must be held.
func (a *TokenReviewAuthenticator) lockedEvict(now time.Time) {
	var (
		first    [sha256.Size]byte
		firstAt  time.Time
		hasFirst bool
	)
	for k, c := range a.cache {
		if !now.Before(c.until) {
			delete(a.cache, k)
			continue
		}
		if !hasFirst || c.until.Before(firstAt) {
			first, firstAt, hasFirst = k, c.until, true
		}
	}
	if len(a.cache) >= a.max && hasFirst {
		delete(a.cache, first)
	}
}

// tokenClaims are the JWT claims used to explain a refusal and to bound the
// cache lifetime.
type tokenClaims struct {
	Aud []string
	Exp int64
}

// unverifiedClaims decodes a JWT's payload without checking its signature.
func unverifiedClaims(token string) (tokenClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return tokenClaims{}, fmt.Errorf("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return tokenClaims{}, fmt.Errorf("JWT payload: %w", err)
	}
	var raw struct {
		Aud json.RawMessage `json:"aud"`
		Exp json.Number     `json:"exp"`
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return tokenClaims{}, fmt.Errorf("JWT payload: %w", err)
	}
	var c tokenClaims
	if len(raw.Aud) > 0 {
		var one string
		if err := json.Unmarshal(raw.Aud, &one); err == nil {
			c.Aud = []string{one}
		} else if err := json.Unmarshal(raw.Aud, &c.Aud); err != nil {
			return tokenClaims{}, fmt.Errorf("JWT aud: %w", err)
		}
	}
	if raw.Exp != "" {
		exp, err := raw.Exp.Int64()
		if err != nil {
			return tokenClaims{}, fmt.Errorf("JWT exp: %w", err)
		}
		c.Exp = exp
	}
	return c, nil
}
