// Package sidecar is fence-sidecar: it holds a validator's key beside the
// validator and signs on localhost only while it holds a lease under the
// validator's fencing epoch, failing closed on any doubt. See Signer.SignHRS
// for the order of the checks and LeaseKeeper for the lease.
//
// # Metrics
//
//	fencing_sidecar_lease_held{validator}               1 while a usable lease is held
//	fencing_sidecar_lease_epoch{validator}              epoch of the held lease (0: none)
//	fencing_sidecar_lease_seconds_remaining{validator}  time to the local deadline
//	fencing_sidecar_ready{validator}                    1 while it could sign if granted (standbys too)
//	fencing_sidecar_signatures_total{validator,result}  signed, or the refusal code word
//	fencing_sidecar_sign_duration_seconds               request to signature
//	fencing_sidecar_journal_duration_seconds            quorum journal round trip (strict)
//	fencing_sidecar_gate_state{validator,state}         1 for the process gate's current state (gate mode)
//	fencing_sidecar_gate_head{validator}                the client's head as the gate last read it
//	fencing_sidecar_gate_floor{validator}               the height the client must reach before the key is released
//	fencing_sidecar_gate_kills_total{validator,reason}  validator clients the gate killed, by reason
//	fencing_build_info{binary,version,goversion}        1
//
// In gate mode (--gate-exec) the sidecar runs the validator client itself
// and fences its process: see Gate and docs/gate.md.
package sidecar

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/flagenv"
)

// Config is fence-sidecar's configuration.
type Config struct {
	Coordinator   flagenv.List
	CoordinatorCA string
	ClientCert    string
	ClientKey     string
	TokenFile     string
	Holder        string
	Name          string
	Keys          flagenv.List
	PasswordFile  string
	Validators    flagenv.List
	Listen        string
	MetricsListen string
	StateDir      string
	Mode          string
	LeaseTTL      time.Duration
	RenewInterval time.Duration
	SafetyMargin  time.Duration
	BareDigest    bool
	LogJSON       bool
	LogLevel      string

	// Gate mode (Gate): the sidecar runs the validator client.
	GateExec          string
	GateValidatorArgs string
	GateStandbyArgs   string
	GateKeyFile       string
	GateKeyFormat     string
	GatePasswordFile  string
	GateRPC           string
	GateKillBefore    time.Duration
	GatePoll          time.Duration
	GateStopTimeout   time.Duration
	GateHeadStale     time.Duration
}

// Flags registers every setting on fs with its default.
func (c *Config) Flags(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	fs.String("config", "", "YAML or JSON file of settings keyed by flag name (under FENCE_* and flags)")
	fs.Var(&c.Coordinator, "coordinator", "coordinator URL(s), comma-separated; the sidecar uses whichever answers (required)")
	fs.StringVar(&c.CoordinatorCA, "coordinator-ca", "", "CA bundle of an https coordinator")
	fs.StringVar(&c.ClientCert, "client-cert", "", "client certificate for a coordinator with --client-ca: CN this sidecar's --name, O=fencing:holder:<holder> (outside Kubernetes)")
	fs.StringVar(&c.ClientKey, "client-key", "", "key of --client-cert (mode 0600)")
	fs.StringVar(&c.TokenFile, "token-file", "", "bearer token sent to the coordinator (a projected ServiceAccount token)")
	fs.StringVar(&c.Holder, "holder", "", "this sidecar's failure domain, e.g. region-a (required)")
	fs.StringVar(&c.Name, "name", strings.ToLower(host), "this sidecar's name in leases (default: the host name, i.e. the pod name)")
	fs.Var(&c.Keys, "key", "key file: keystore V3 JSON or one hex private key, mode 0600 (required; repeat for several validators)")
	fs.StringVar(&c.PasswordFile, "password-file", "", "password of keystore key files")
	fs.Var(&c.Validators, "validator", "validator IDs of the keys, in --key order (default: each key's address)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:7700", "signing API address; keep it on localhost (port 0 picks one)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "optional second address serving only /metrics and health (for Prometheus and probes)")
	fs.StringVar(&c.StateDir, "state-dir", "", "directory of the local signing record (required; never share it between sidecars)")
	fs.StringVar(&c.Mode, "mode", string(ModeStrict), "strict: journal every signature in etcd first; lease: sign while the lease deadline is ahead (weaker)")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", 15*time.Second, "lease TTL in whole seconds; a partitioned region stops signing within it")
	fs.DurationVar(&c.RenewInterval, "renew-interval", 0, "how often to renew (default: a third of --lease-ttl)")
	fs.DurationVar(&c.SafetyMargin, "safety-margin", 2*time.Second, "the local deadline is renewal send time + TTL - margin; covers clock rate drift")
	fs.BoolVar(&c.BareDigest, "bare-digest", false, "serve POST /v1/sign/digest: any 32-byte digest under the epoch fence alone, no HRS or watermark (for the Besu plugin, docs/besu-plugin.md)")
	fs.StringVar(&c.GateExec, "gate-exec", "", "gate mode: the validator client's command line, run by the sidecar (words, or a JSON array of strings); for clients that sign in process (docs/gate.md)")
	fs.StringVar(&c.GateValidatorArgs, "gate-validator-args", "", "gate mode: arguments added while the client is the validator (mining, the key file)")
	fs.StringVar(&c.GateStandbyArgs, "gate-standby-args", "", "gate mode: arguments added while the client follows (its own node key, no mining)")
	fs.StringVar(&c.GateKeyFile, "gate-key-file", "", "gate mode: where the validator key is written while the client is the validator (mode 0400, on a memory-backed volume)")
	fs.StringVar(&c.GateKeyFormat, "gate-key-format", KeyFormatHex, "gate mode: hex (Besu --node-private-key-file) or keystore (geth --keystore, needs --gate-password-file)")
	fs.StringVar(&c.GatePasswordFile, "gate-password-file", "", "gate mode: the password the keystore key file is encrypted with (give the client the same file)")
	fs.StringVar(&c.GateRPC, "gate-rpc", "", "gate mode: the client's JSON-RPC URL, for its head (eth_blockNumber)")
	fs.DurationVar(&c.GateKillBefore, "gate-kill-before", time.Second, "gate mode: kill the validator this long before the lease's local deadline")
	fs.DurationVar(&c.GatePoll, "gate-poll", 500*time.Millisecond, "gate mode: how often to read the client's head")
	fs.DurationVar(&c.GateStopTimeout, "gate-stop-timeout", time.Minute, "gate mode: how long a follower gets after SIGTERM before SIGKILL")
	fs.DurationVar(&c.GateHeadStale, "gate-head-stale", time.Minute, "gate mode: kill a validator whose RPC answered no head for this long")
	fs.BoolVar(&c.LogJSON, "log-json", false, "log JSON lines")
	fs.StringVar(&c.LogLevel, "log-level", "info", "trace, debug, info, warn or error")
}

// Logging says how to log.
func (c *Config) Logging() (json bool, level string) { return c.LogJSON, c.LogLevel }

// Validate fills derived defaults and reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Coordinator) == 0 {
		errs = append(errs, errors.New("--coordinator is required"))
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		errs = append(errs, errors.New("--client-cert and --client-key go together"))
	}
	for _, u := range c.Coordinator {
		if err := checkCoordinatorURL(u); err != nil {
			errs = append(errs, err)
		}
	}
	if err := fencing.ValidateHolder(c.Holder); err != nil {
		errs = append(errs, fmt.Errorf("--holder: %v", msg(err)))
	}
	if err := fencing.ValidateSidecar(c.Name); err != nil {
		errs = append(errs, fmt.Errorf("--name: %v", msg(err)))
	}
	if len(c.Keys) == 0 {
		errs = append(errs, errors.New("--key is required"))
	}
	// Checked here too (LoadKey checks again when it reads them) so that a
	// key file open to others is a configuration error before anything
	// listens.
	for _, k := range c.Keys {
		if err := api.CheckSecretFile(k, "--key file"); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ClientKey != "" {
		if err := api.CheckSecretFile(c.ClientKey, "--client-key file"); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.Validators) > 0 && len(c.Validators) != len(c.Keys) {
		errs = append(errs, fmt.Errorf("--validator names %d validators for %d keys; give one per --key, in order, or none", len(c.Validators), len(c.Keys)))
	}
	for _, v := range c.Validators {
		if _, err := fencing.ParseValidatorID(v); err != nil {
			errs = append(errs, fmt.Errorf("--validator: %v", msg(err)))
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q must be host:port", c.Listen))
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-listen %q must be host:port", c.MetricsListen))
		}
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("--state-dir is required"))
	}
	if c.Mode != string(ModeStrict) && c.Mode != string(ModeLease) {
		errs = append(errs, fmt.Errorf("--mode %q must be strict or lease", c.Mode))
	}
	if c.LeaseTTL%time.Second != 0 || c.LeaseTTL < 2*time.Second || c.LeaseTTL > 300*time.Second {
		errs = append(errs, fmt.Errorf("--lease-ttl (%s) must be whole seconds between 2s and 300s", c.LeaseTTL))
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = c.LeaseTTL / 3
	}
	if floor := MinSafetyMargin(c.LeaseTTL); c.SafetyMargin < floor {
		errs = append(errs, fmt.Errorf("--safety-margin (%s) must be at least %s for a %s lease: it covers clock rate differences between this host and the etcd leader over one TTL (max(1s, TTL/20))", c.SafetyMargin, floor, c.LeaseTTL))
	}
	if c.RenewInterval <= 0 || c.RenewInterval+c.SafetyMargin >= c.LeaseTTL {
		errs = append(errs, fmt.Errorf("lease TTL (%s) must exceed renew interval (%s) plus safety margin (%s)", c.LeaseTTL, c.RenewInterval, c.SafetyMargin))
	}
	errs = append(errs, c.gateProblems()...)
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q must be trace, debug, info, warn or error", c.LogLevel))
	}
	return flagenv.Problems(errs)
}

func msg(err error) string {
	var fe *fencing.Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	return err.Error()
}

// MinSafetyMargin is the smallest --safety-margin accepted for a lease of
// ttl: max(1s, ttl/20) (docs/architecture.md, invariant 3).
func MinSafetyMargin(ttl time.Duration) time.Duration {
	return max(time.Second, ttl/20)
}

// checkCoordinatorURL refuses a coordinator this sidecar could not
// authenticate: an answer (a lease, a journal commit) over plain HTTP from
// another host could come from anyone on the path, so off this host it must
// be https (verified with --coordinator-ca or the system roots).
func checkCoordinatorURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--coordinator %q must be an http(s)://host:port URL", raw)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); u.Scheme == "http" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--coordinator %s is plain HTTP to another host: the sidecar must not trust an unauthenticated answer; use https:// (with --coordinator-ca)", raw)
	}
	return nil
}
