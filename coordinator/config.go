// Package coordinator is fence-coordinator: the only etcd client. It serves
// the sidecar API (leases, epoch watch, journal) and the operator API
// (validators, freeze, bump, history, journal, audits), drives epoch
// transitions with a store.Reconciler, and exports metrics.
//
// # Metrics
//
//	fencing_validator_epoch{validator}              current epoch number
//	fencing_validator_epoch_state{validator,state}  1 for the current state, 0 for the others
//	fencing_validator_leases{validator,holder}      live leases by holder
//	fencing_bump_in_progress{validator}             1 while a bump is recorded
//	fencing_bump_duration_seconds                   revoke to grant, for grants this replica committed
//	fencing_transitions_total{kind,result}          epoch transitions this replica committed
//	fencing_coordinator_requests_total{op,result}   API requests by operation and result code
//	fencing_audit_duplicates{kind}                  duplicates found by the last audit of each kind (kept in etcd)
//	fencing_etcd_up                                 1 if the last scrape could read etcd
//	fencing_etcd_request_duration_seconds{op}       etcd latency (from internal/store)
//	fencing_build_info{binary,version,goversion}    1
package coordinator

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/validator-fencing/fencing/internal/flagenv"
)

// Config is fence-coordinator's configuration.
type Config struct {
	// Listen is the API's host:port (--listen; default DefaultListen,
	// loopback). Off loopback, TLS and authentication are required
	// (validateAuth).
	Listen string
	// EmbeddedEtcd runs a single-node etcd in this directory (development,
	// drills); it excludes EtcdEndpoints.
	EmbeddedEtcd string
	// EtcdEndpoints are the etcd client URLs (production: 3 or 5 members in
	// three failure domains).
	EtcdEndpoints flagenv.List
	// EtcdCACert, EtcdCert and EtcdKey are the etcd client's TLS files.
	EtcdCACert, EtcdCert, EtcdKey string
	// EtcdPrefix is the key prefix of all fencing state (default /fencing/).
	EtcdPrefix string
	// EtcdTimeout bounds each etcd round trip (default 5s); a write not
	// committed by then fails closed with no_quorum.
	EtcdTimeout time.Duration
	// EtcdMemberHolders maps etcd member names to holders
	// (member=holder,...): the coordinator then moves the etcd leader to a
	// member of the holder with the most active epochs, so a signature
	// costs one quorum write from where it is signed (empty: never moves).
	EtcdMemberHolders string
	// TLSCert and TLSKey serve HTTPS (required off loopback).
	TLSCert, TLSKey string
	// LogJSON logs JSON lines; LogLevel is trace, debug, info (default),
	// warn or error.
	LogJSON  bool
	LogLevel string
	// ReconcileInterval is how often a replica looks for bumps to resume
	// (default 2s).
	ReconcileInterval time.Duration
	// SessionTTL is the TTL of the replica's etcd session that holds bump
	// locks (default 10s; at least 2s).
	SessionTTL time.Duration
	// MaxWatchWait is the longest epoch long poll a sidecar may ask for
	// (default 60s).
	MaxWatchWait time.Duration
	// JournalRetention keeps each validator's journal this many heights below
	// its watermark (0, the default, keeps everything).
	JournalRetention uint64
	// OperatorTokenFile holds a bearer token that authorizes every operator
	// action (--operator-auth token; mode 0600, at least 16 characters).
	OperatorTokenFile string
	// OperatorAuth lists how operators authenticate: kubernetes, token, mtls
	// or none (default: token with OperatorTokenFile, else none, which only
	// a loopback listener allows).
	OperatorAuth flagenv.List
	// OperatorNamespace is the namespace in which --operator-auth
	// kubernetes asks RBAC (SubjectAccessReview).
	OperatorNamespace string
	// ClientCA verifies client certificates of sidecars and operators
	// (needs TLSCert).
	ClientCA string
	// AuthAudience, with AuthBindings or AuthBindingsFile, authenticates
	// sidecars by their projected ServiceAccount tokens (TokenReview) and
	// binds each ServiceAccount to a holder and validators.
	AuthAudience     string
	AuthBindings     string
	AuthBindingsFile string
	// Kubeconfig is used for TokenReview, SubjectAccessReview and Events
	// (default: in-cluster).
	Kubeconfig string
	// EventsNamespace records a Kubernetes Event of each epoch transition in
	// this namespace (empty: none).
	EventsNamespace string
}

// DefaultListen is where the coordinator and fencectl meet by default.
const DefaultListen = "127.0.0.1:7600"

// Flags registers every setting on fs with its default.
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.String("config", "", "YAML or JSON file of settings keyed by flag name (under FENCE_* and flags)")
	fs.StringVar(&c.Listen, "listen", DefaultListen, "address to serve the API on (port 0 picks one; the first log line says which)")
	fs.StringVar(&c.EmbeddedEtcd, "embedded-etcd", "", "run a single-node etcd in this directory (development, quickstart, drills)")
	fs.Var(&c.EtcdEndpoints, "etcd-endpoints", "etcd client URLs, comma-separated or repeated (production: 3 or 5 members in 3 failure domains)")
	fs.StringVar(&c.EtcdCACert, "etcd-cacert", "", "CA bundle that signed the etcd server certificates")
	fs.StringVar(&c.EtcdCert, "etcd-cert", "", "client certificate for etcd")
	fs.StringVar(&c.EtcdKey, "etcd-key", "", "client key for etcd")
	fs.StringVar(&c.EtcdPrefix, "etcd-prefix", "/fencing/", "key prefix of all fencing state in etcd")
	fs.DurationVar(&c.EtcdTimeout, "etcd-timeout", 5*time.Second, "bound on each etcd round trip; a write not committed by then fails closed")
	fs.StringVar(&c.EtcdMemberHolders, "etcd-member-holders", "", "which holder (region) each etcd member is in, member=holder,... (etcd member names): after grants the coordinator moves the etcd leader to a member of the holder with the most active epochs, so a strict-mode signature costs one quorum write from where it is signed; empty: the leader is never moved")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (needed where traffic leaves the pod)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "key of --tls-cert")
	fs.BoolVar(&c.LogJSON, "log-json", false, "log JSON lines instead of text")
	fs.StringVar(&c.LogLevel, "log-level", "info", "trace, debug, info, warn or error")
	fs.DurationVar(&c.ReconcileInterval, "reconcile-interval", 2*time.Second, "how often to look for bumps to resume (a replica that died mid-bump)")
	fs.DurationVar(&c.SessionTTL, "session-ttl", 10*time.Second, "TTL of this replica's etcd session that holds bump locks")
	fs.DurationVar(&c.MaxWatchWait, "max-watch-wait", 60*time.Second, "longest epoch watch (long poll) a sidecar may ask for")
	fs.Uint64Var(&c.JournalRetention, "journal-retention", 0, "keep each validator's journal this many heights below its watermark (0: keep everything; the audit looks back only as far)")
	fs.StringVar(&c.OperatorTokenFile, "operator-token-file", "", "a bearer token (the file's content, mode 0600, at least 16 characters) that authorizes every operator action (--operator-auth token)")
	fs.Var(&c.OperatorAuth, "operator-auth", "how operators authenticate, comma-separated: kubernetes (TokenReview, then SubjectAccessReview of each verb against RBAC), token (--operator-token-file), mtls (--client-ca, O=fencing:operators), none (open; loopback listeners only). Default: token if --operator-token-file is set, else none")
	fs.StringVar(&c.OperatorNamespace, "operator-namespace", "", "namespace in which --operator-auth kubernetes asks RBAC (the coordinator's own)")
	fs.StringVar(&c.ClientCA, "client-ca", "", "verify client certificates signed by this CA bundle (needs --tls-cert): sidecars (CN=<sidecar>, O=fencing:holder:<holder>) and operators (O=fencing:operators)")
	fs.StringVar(&c.AuthAudience, "auth-audience", "", "require sidecars to present a Kubernetes ServiceAccount token for this audience (checked with TokenReview)")
	fs.StringVar(&c.AuthBindings, "auth-bindings", "", "ServiceAccount to holder bindings: ns/sa=holder[:validator,...];... (see docs/kubernetes.md)")
	fs.StringVar(&c.AuthBindingsFile, "auth-bindings-file", "", "the same bindings as a YAML or JSON file")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig for TokenReview and Events (default: in-cluster)")
	fs.StringVar(&c.EventsNamespace, "events-namespace", "", "record Kubernetes Events of epoch transitions in this namespace (empty: do not)")
}

// Logging says how to log.
func (c *Config) Logging() (json bool, level string) { return c.LogJSON, c.LogLevel }

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q must be host:port, e.g. 127.0.0.1:7600", c.Listen))
	}
	switch {
	case c.EmbeddedEtcd == "" && len(c.EtcdEndpoints) == 0:
		errs = append(errs, errors.New("give --embedded-etcd DIR (development) or --etcd-endpoints URL,... (production)"))
	case c.EmbeddedEtcd != "" && len(c.EtcdEndpoints) > 0:
		errs = append(errs, errors.New("--embedded-etcd and --etcd-endpoints exclude each other; pick one"))
	}
	for _, ep := range c.EtcdEndpoints {
		if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
			errs = append(errs, fmt.Errorf("--etcd-endpoints %q must start with http:// or https://", ep))
		}
	}
	if c.EtcdMemberHolders != "" {
		if _, err := ParseMemberHolders(c.EtcdMemberHolders); err != nil {
			errs = append(errs, err)
		}
		if c.EmbeddedEtcd != "" {
			errs = append(errs, errors.New("--etcd-member-holders needs --etcd-endpoints: the embedded etcd is one member, whose leader cannot move"))
		}
	}
	if (c.EtcdCert == "") != (c.EtcdKey == "") {
		errs = append(errs, errors.New("--etcd-cert and --etcd-key go together"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if !strings.HasPrefix(c.EtcdPrefix, "/") || !strings.HasSuffix(c.EtcdPrefix, "/") {
		errs = append(errs, fmt.Errorf("--etcd-prefix %q must start and end with '/'", c.EtcdPrefix))
	}
	if c.EtcdTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--etcd-timeout (%s) must be at least 100ms", c.EtcdTimeout))
	}
	if c.ReconcileInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("--reconcile-interval (%s) must be at least 10ms", c.ReconcileInterval))
	}
	if c.SessionTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("--session-ttl (%s) must be at least 2s", c.SessionTTL))
	}
	if c.MaxWatchWait < time.Second {
		errs = append(errs, fmt.Errorf("--max-watch-wait (%s) must be at least 1s", c.MaxWatchWait))
	}
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q must be trace, debug, info, warn or error", c.LogLevel))
	}
	errs = append(errs, c.validateAuth()...)
	if c.AuthAudience != "" && c.AuthBindings == "" && c.AuthBindingsFile == "" {
		errs = append(errs, errors.New("--auth-audience needs --auth-bindings or --auth-bindings-file (which ServiceAccount may act for which holder)"))
	}
	if c.AuthAudience == "" && (c.AuthBindings != "" || c.AuthBindingsFile != "") {
		errs = append(errs, errors.New("--auth-bindings needs --auth-audience (the audience of the sidecars' projected tokens)"))
	}
	return flagenv.Problems(errs)
}

// Operator authentication modes (--operator-auth).
const (
	OperatorAuthKubernetes = "kubernetes"
	OperatorAuthToken      = "token"
	OperatorAuthMTLS       = "mtls"
	OperatorAuthNone       = "none"
)

// operatorModes returns the operator authentication modes, defaults
// applied.
func (c *Config) operatorModes() []string {
	if len(c.OperatorAuth) > 0 {
		return c.OperatorAuth
	}
	if c.OperatorTokenFile != "" {
		return []string{OperatorAuthToken}
	}
	return []string{OperatorAuthNone}
}

// validateAuth checks the authentication settings: every mode has what it
// needs, and nothing is open to the network. Off a loopback listener the
// coordinator serves only TLS, authenticates sidecars (--auth-audience or
// --client-ca) and operators (--operator-auth other than none).
func (c *Config) validateAuth() []error {
	var errs []error
	modes := c.operatorModes()
	for _, m := range modes {
		switch m {
		case OperatorAuthKubernetes:
			if c.OperatorNamespace == "" {
				errs = append(errs, errors.New("--operator-auth kubernetes needs --operator-namespace (the namespace whose RBAC decides; the chart sets the coordinator's own)"))
			}
		case OperatorAuthToken:
			if c.OperatorTokenFile == "" {
				errs = append(errs, errors.New("--operator-auth token needs --operator-token-file"))
			} else if _, err := readOperatorToken(c.OperatorTokenFile); err != nil {
				errs = append(errs, err)
			}
		case OperatorAuthMTLS:
			if c.ClientCA == "" {
				errs = append(errs, errors.New("--operator-auth mtls needs --client-ca"))
			}
		case OperatorAuthNone:
			if len(modes) > 1 {
				errs = append(errs, errors.New("--operator-auth none excludes the other modes"))
			}
		default:
			errs = append(errs, fmt.Errorf("--operator-auth %q must be kubernetes, token, mtls or none", m))
		}
	}
	if c.OperatorTokenFile != "" && !slices.Contains(modes, OperatorAuthToken) {
		errs = append(errs, errors.New("--operator-token-file is set but --operator-auth does not include token"))
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--client-ca needs --tls-cert (client certificates are verified in the TLS handshake)"))
	}
	if host, _, err := net.SplitHostPort(c.Listen); err == nil && !isLoopback(host) {
		if c.TLSCert == "" {
			errs = append(errs, fmt.Errorf("--listen %s leaves this host: serve TLS (--tls-cert, --tls-key), or listen on 127.0.0.1", c.Listen))
		}
		if slices.Contains(modes, OperatorAuthNone) {
			errs = append(errs, fmt.Errorf("--listen %s leaves this host: the operator API must not be open; set --operator-auth (kubernetes, token or mtls)", c.Listen))
		}
		if c.AuthAudience == "" && c.ClientCA == "" {
			errs = append(errs, fmt.Errorf("--listen %s leaves this host: sidecars must authenticate; set --auth-audience with --auth-bindings (Kubernetes) or --client-ca (certificates)", c.Listen))
		}
	}
	return errs
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
