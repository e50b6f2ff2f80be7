// Package embedetcd starts real etcd members in this process with
// go.etcd.io/etcd/server/v3/embed: the single-node etcd behind
// fence-coordinator --embedded-etcd and the drill, and the members of test
// clusters. It is real etcd (raft, WAL, fsync), not a mock.
package embedetcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Member is one running etcd member.
type Member struct {
	Name      string
	Dir       string
	ClientURL string
	PeerURL   string

	mu     sync.Mutex
	e      *embed.Etcd
	closed bool
}

// Spec describes a member to start.
type Spec struct {
	Name string
	Dir  string
	// ClientURL and PeerURL are advertised, and listened on unless
	// ListenClientURL / ListenPeerURL say otherwise (a member behind a
	// proxy listens on one address and advertises the proxy's).
	ClientURL       string
	PeerURL         string
	ListenClientURL string
	ListenPeerURL   string
	// InitialCluster is name=peerURL,… for all members; empty for one member.
	InitialCluster string
	// ReadyTimeout bounds Start's wait for the member to serve; default 30s.
	ReadyTimeout time.Duration
	// FastElections shortens heartbeat and election timeouts for tests.
	FastElections bool
	// Logger receives etcd's own log; default silent (its failures reach
	// the caller as client errors, and at shutdown it reports closed
	// listeners as errors).
	Logger *zap.Logger
}

// Start starts the member of spec and waits until it serves clients (for a
// cluster member: until a quorum formed).
func Start(spec Spec) (*Member, error) {
	m, err := Launch(spec)
	if err != nil {
		return nil, err
	}
	timeout := spec.ReadyTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := m.WaitReady(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Launch starts the member of spec without waiting for it to serve; its
// listeners are open when Launch returns.
func Launch(spec Spec) (*Member, error) {
	cfg := embed.NewConfig()
	cfg.Name = spec.Name
	cfg.Dir = spec.Dir
	lg := spec.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	cfg.AutoCompactionMode = "revision"
	cfg.AutoCompactionRetention = "100000"
	urls := map[string]string{"client": spec.ClientURL, "peer": spec.PeerURL, "client listen": spec.ListenClientURL, "peer listen": spec.ListenPeerURL}
	if urls["client listen"] == "" {
		urls["client listen"] = spec.ClientURL
	}
	if urls["peer listen"] == "" {
		urls["peer listen"] = spec.PeerURL
	}
	parsed := map[string]url.URL{}
	for what, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("etcd %s URL %q must be http://host:port", what, raw)
		}
		parsed[what] = *u
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{parsed["client listen"]}, []url.URL{parsed["client"]}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{parsed["peer listen"]}, []url.URL{parsed["peer"]}
	cfg.InitialCluster = spec.InitialCluster
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = spec.Name + "=" + spec.PeerURL
	}
	cfg.InitialClusterToken = "fencing"
	if spec.FastElections {
		cfg.TickMs, cfg.ElectionMs = 50, 500
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd member %s in %s: %w", spec.Name, spec.Dir, err)
	}
	return &Member{Name: spec.Name, Dir: spec.Dir, ClientURL: spec.ClientURL, PeerURL: spec.PeerURL, e: e}, nil
}

// WaitReady waits until the member serves clients (for a cluster member:
// until a quorum formed), it fails, or ctx ends.
func (m *Member) WaitReady(ctx context.Context) error {
	select {
	case <-m.e.Server.ReadyNotify():
		return nil
	case err := <-m.e.Err():
		return fmt.Errorf("etcd member %s failed: %w", m.Name, err)
	case <-ctx.Done():
		return fmt.Errorf("etcd member %s not ready: %w (no quorum?)", m.Name, ctx.Err())
	}
}

// Err reports a failure of the running member.
func (m *Member) Err() <-chan error { return m.e.Err() }

// ClientAddr and PeerAddr are the addresses the member listens on (with the
// ports chosen when the spec asked for port 0).
func (m *Member) ClientAddr() string { return m.e.Clients[0].Addr().String() }

// PeerAddr: see ClientAddr.
func (m *Member) PeerAddr() string { return m.e.Peers[0].Listener.Addr().String() }

// Close stops the member; it is safe to call more than once.
func (m *Member) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.closed = true
	m.e.Close()
}

// FreeURL returns http://127.0.0.1:<port> for a port free right now. Ports
// come from below Linux's default ephemeral range (32768-60999), so a member
// that is stopped and restarted finds its port still free: outgoing
// connections take their ports from that range.
func FreeURL() (string, error) {
	for range 100 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		_ = l.Close()
		return fmt.Sprintf("http://127.0.0.1:%d", port), nil
	}
	return "", errors.New("no free port between 20000 and 32000 on 127.0.0.1")
}

// ports is remembered in a single node's data directory so a restart reuses
// the URLs the member was bootstrapped with.
type ports struct {
	ClientURL string `json:"client_url"`
	PeerURL   string `json:"peer_url"`
}

// StartSingle starts (or restarts) a one-member etcd in dir on loopback
// ports chosen on first start and kept in dir/fencing-embedded.json.
func StartSingle(dir string) (*Member, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded etcd directory: %w", err)
	}
	pf := filepath.Join(dir, "fencing-embedded.json")
	var p ports
	b, err := os.ReadFile(pf)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &p); err != nil || !strings.HasPrefix(p.ClientURL, "http://127.0.0.1:") || !strings.HasPrefix(p.PeerURL, "http://127.0.0.1:") {
			return nil, fmt.Errorf("%s is corrupt (want {\"client_url\",\"peer_url\"} on 127.0.0.1); fix or remove it only if the etcd data in %s is disposable", pf, dir)
		}
	case errors.Is(err, os.ErrNotExist):
		if p.ClientURL, err = FreeURL(); err != nil {
			return nil, err
		}
		if p.PeerURL, err = FreeURL(); err != nil {
			return nil, err
		}
		b, _ := json.Marshal(p)
		if err := os.WriteFile(pf, b, 0o600); err != nil {
			return nil, fmt.Errorf("embedded etcd: %w", err)
		}
	default:
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	return Start(Spec{Name: "fencing", Dir: filepath.Join(dir, "member"), ClientURL: p.ClientURL, PeerURL: p.PeerURL})
}
