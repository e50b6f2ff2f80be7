package coordinator

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"net/http"
	"strings"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Who may call the coordinator. Every caller is who its credential says,
// never who its request body says:
//
//   - a sidecar proves its holder and its sidecar name with a projected
//     ServiceAccount token (Authenticator: TokenReview, the pod name is the
//     sidecar name) or a client certificate (CN the sidecar name, an
//     Organization "fencing:holder:<holder>", optionally
//     "fencing:validator:<id>" entries restricting its validators); every
//     sidecar endpoint, the epoch long poll included, checks that the lease
//     or request names exactly that holder and sidecar;
//   - an operator proves who they are with a Kubernetes token
//     (OperatorReviewer: TokenReview, then SubjectAccessReview of the verb
//     against RBAC), the operator token file, or a client certificate with
//     the Organization "fencing:operators" (CN the operator's name). The
//     principal is what history and evidence record; the request's
//     free-text operator is kept only as a comment.
//
// With no sidecar or no operator authentication configured, that API is
// open; Run allows this only on a loopback listener.

// Authenticator checks a sidecar's bearer token (internal/kube's
// TokenReviewAuthenticator in Kubernetes).
type Authenticator interface {
	Authenticate(ctx context.Context, bearerToken string) (fencing.Identity, error)
}

// OperatorReviewer authenticates an operator's bearer token and authorizes
// verb on resource (named name) (internal/kube's OperatorAuthorizer).
type OperatorReviewer interface {
	Authorize(ctx context.Context, bearerToken, verb, resource, name string) (principal string, err error)
}

// Organizations of client certificates.
const (
	certOperators    = "fencing:operators"
	certHolderPrefix = "fencing:holder:"
	certValidatorPfx = "fencing:validator:"
)

func bearer(r *http.Request) string {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return strings.TrimSpace(tok)
}

// clientCert returns the verified client certificate of r, if any.
func clientCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

func hasOrg(c *x509.Certificate, org string) bool {
	for _, o := range c.Subject.Organization {
		if o == org {
			return true
		}
	}
	return false
}

// certSidecar is the sidecar identity a client certificate proves.
func certSidecar(c *x509.Certificate) (fencing.Identity, error) {
	id := fencing.Identity{Subject: "x509:" + c.Subject.CommonName, Sidecar: c.Subject.CommonName}
	for _, o := range c.Subject.Organization {
		if h, ok := strings.CutPrefix(o, certHolderPrefix); ok {
			if id.Holder != "" {
				return fencing.Identity{}, fencing.Errorf(fencing.CodeForbidden, "client certificate %q names two holders; a sidecar certificate names exactly one (O=%s<holder>)", c.Subject.CommonName, certHolderPrefix)
			}
			id.Holder = h
		}
		if v, ok := strings.CutPrefix(o, certValidatorPfx); ok {
			cv, err := fencing.ParseValidatorID(v)
			if err != nil {
				return fencing.Identity{}, fencing.Errorf(fencing.CodeForbidden, "client certificate %q: %v", c.Subject.CommonName, err)
			}
			id.Validators = append(id.Validators, cv)
		}
	}
	if id.Holder == "" || fencing.ValidateSidecar(id.Sidecar) != nil {
		return fencing.Identity{}, fencing.Errorf(fencing.CodeForbidden, "client certificate %q is not a sidecar's: it needs CN=<sidecar name> and O=%s<holder>", c.Subject.CommonName, certHolderPrefix)
	}
	return id, nil
}

// sidecarAuthOn reports whether sidecars must authenticate.
func (s *Server) sidecarAuthOn() bool { return s.auth != nil || s.clientCerts }

// sidecar returns the identity r's credential proves; ok is false when
// sidecar authentication is off.
func (s *Server) sidecar(r *http.Request) (id fencing.Identity, ok bool, err error) {
	if !s.sidecarAuthOn() {
		return fencing.Identity{}, false, nil
	}
	if c := clientCert(r); c != nil && s.clientCerts {
		id, err := certSidecar(c)
		return id, true, err
	}
	if s.auth == nil {
		return fencing.Identity{}, true, fencing.Errorf(fencing.CodeUnauthorized, "no client certificate: the sidecar must present one signed by the coordinator's --client-ca")
	}
	tok := bearer(r)
	if tok == "" {
		return fencing.Identity{}, true, fencing.Errorf(fencing.CodeUnauthorized, "missing bearer token: the sidecar must send its projected ServiceAccount token (--token-file)")
	}
	id, err = s.auth.Authenticate(r.Context(), tok)
	return id, true, err
}

// authorizeLease checks that r comes from the sidecar that holder, sidecar
// and validator name (a lease token or an acquire request).
func (s *Server) authorizeLease(r *http.Request, holder, sidecar string, validator fencing.ValidatorID) error {
	id, ok, err := s.sidecar(r)
	if err != nil || !ok {
		return err
	}
	return id.Permits(holder, sidecar, validator)
}

// pathID is the validator a request's path names, parsed once here.
func pathID(r *http.Request) (fencing.ValidatorID, error) {
	return fencing.ParseValidatorID(r.PathValue("id"))
}

// queryID is the validator ?validator= names; empty when absent.
func queryID(r *http.Request) (fencing.ValidatorID, error) {
	v := r.URL.Query().Get("validator")
	if v == "" {
		return "", nil
	}
	return fencing.ParseValidatorID(v)
}

type principalKey struct{}

// principal is who an authorized operator request comes from, or "" when
// the operator API is open.
func principal(ctx context.Context) string {
	p, _ := ctx.Value(principalKey{}).(string)
	return p
}

// operatorAuthOn reports whether operators must authenticate.
func (s *Server) operatorAuthOn() bool {
	return s.operatorToken != "" || s.operatorReviewer != nil || s.clientCerts
}

// authorizeOperator returns who r comes from if they may do verb on
// resource (named name).
func (s *Server) authorizeOperator(r *http.Request, verb, resource, name string) (string, error) {
	if c := clientCert(r); c != nil && s.clientCerts && hasOrg(c, certOperators) {
		return "x509:" + c.Subject.CommonName, nil
	}
	tok := bearer(r)
	if s.operatorToken != "" && tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.operatorToken)) == 1 {
		return "operator-token", nil
	}
	if s.operatorReviewer != nil && tok != "" {
		return s.operatorReviewer.Authorize(r.Context(), tok, verb, resource, name)
	}
	var how []string
	if s.operatorReviewer != nil {
		how = append(how, "a Kubernetes token (fencectl --token-file)")
	}
	if s.operatorToken != "" {
		how = append(how, "the operator token (fencectl --token-file FILE or FENCE_TOKEN_FILE)")
	}
	if s.clientCerts {
		how = append(how, "a client certificate with O="+certOperators)
	}
	return "", fencing.Errorf(fencing.CodeUnauthorized, "the operator API needs %s", strings.Join(how, " or "))
}

// operator guards an operator endpoint: the caller must be authorized for
// verb on resource (the path's validator, if any); the principal travels in
// the request's context.
func (s *Server) operator(verb, resource string, h http.HandlerFunc) http.HandlerFunc {
	if !s.operatorAuthOn() {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("id")
		if id, err := pathID(r); err == nil {
			name = string(id) // RBAC rules name the canonical form
		}
		p, err := s.authorizeOperator(r, verb, resource, name)
		if err != nil {
			s.fail(w, r, "operator_auth", err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

// change is who asks for a transition and why: the authenticated principal
// when there is one, with the request's free-text operator as a comment;
// the free text itself when the operator API is open.
func change(r *http.Request, operator, reason string) fencing.Change {
	p := principal(r.Context())
	if p == "" {
		return fencing.Change{By: operator, Reason: reason}
	}
	c := fencing.Change{By: p, Reason: reason}
	if operator != "" && operator != p {
		c.Comment = operator
	}
	return c
}
