package coordinator

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// testCA issues certificates into dir.
type testCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	n    int64
}

func newTestCA(t *testing.T) *testCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{t: t, dir: t.TempDir(), cert: cert, key: key, n: 1}
	ca.write("ca.pem", "CERTIFICATE", der)
	return ca
}

func (ca *testCA) write(name, typ string, der []byte) string {
	p := filepath.Join(ca.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		ca.t.Fatal(err)
	}
	return p
}

// issue writes a certificate for cn with organizations orgs and returns
// its certificate and key files.
func (ca *testCA) issue(cn string, orgs ...string) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatal(err)
	}
	ca.n++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.n), Subject: pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		ca.t.Fatal(err)
	}
	return ca.write(cn+".pem", "CERTIFICATE", der), ca.write(cn+"-key.pem", "EC PRIVATE KEY", kder)
}

// lockedBuffer collects a logger's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runCoordinator runs the real coordinator with cfg (embedded etcd) and
// returns its https URL.
func runCoordinator(t *testing.T, cfg Config) string {
	t.Helper()
	cfg.EmbeddedEtcd = t.TempDir()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})) }()
	t.Cleanup(func() { cancel(); <-done })
	url := regexp.MustCompile(`url=(https://\S+)`)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(logs.String(), "coordinator ready") {
		if time.Now().After(deadline) {
			t.Fatalf("coordinator not ready after 60s:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return url.FindStringSubmatch(logs.String())[1]
}

// Outside Kubernetes, sidecars and operators authenticate with client
// certificates: the certificate decides holder, sidecar and principal, and
// history records the principal with the free-text operator as a comment.
func TestClientCertificates(t *testing.T) {
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue("coordinator")
	url := runCoordinator(t, Config{
		Listen: "127.0.0.1:0", TLSCert: srvCert, TLSKey: srvKey, ClientCA: filepath.Join(ca.dir, "ca.pem"),
		OperatorAuth: []string{OperatorAuthMTLS}, EtcdPrefix: "/fencing/", EtcdTimeout: 5 * time.Second,
		ReconcileInterval: 100 * time.Millisecond, SessionTTL: 2 * time.Second, MaxWatchWait: 5 * time.Second, LogLevel: "info",
	})
	client := func(cn string, orgs ...string) *api.Client {
		o := api.ClientOptions{CAFile: filepath.Join(ca.dir, "ca.pem")}
		if cn != "" {
			o.CertFile, o.KeyFile = ca.issue(cn, orgs...)
		}
		c, err := api.NewClient([]string{url}, o)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	alice := client("alice", certOperators)
	sidecarA := client("a-0", certHolderPrefix+"region-a")
	sidecarB := client("b-0", certHolderPrefix+"region-b")
	nobody := client("")

	add := api.AddValidatorRequest{Validator: "val-1", Holder: "region-a", Operator: "bob", Reason: "onboard"}
	if _, err := nobody.AddValidator(ctx, add); fencing.CodeOf(err) != fencing.CodeUnauthorized {
		t.Fatalf("AddValidator without a certificate = %v, want unauthorized", err)
	}
	if _, err := sidecarA.AddValidator(ctx, add); fencing.CodeOf(err) != fencing.CodeUnauthorized {
		t.Fatalf("AddValidator with a sidecar's certificate = %v, want unauthorized", err)
	}
	if _, err := alice.AddValidator(ctx, add); err != nil {
		t.Fatalf("AddValidator by alice = %v", err)
	}
	evs, err := alice.Events(ctx, "val-1", 0)
	if err != nil || len(evs) != 1 || evs[0].By != "x509:alice" || evs[0].Comment != "bob" {
		t.Fatalf("history = %+v, %v; want by x509:alice with comment bob", evs, err)
	}

	acquire := api.AcquireRequest{Validator: "val-1", Holder: "region-a", Sidecar: "a-0", TTLSeconds: 10}
	if _, err := nobody.Acquire(ctx, acquire); fencing.CodeOf(err) != fencing.CodeUnauthorized {
		t.Fatalf("Acquire without a certificate = %v, want unauthorized", err)
	}
	if _, err := sidecarB.Acquire(ctx, acquire); fencing.CodeOf(err) != fencing.CodeForbidden {
		t.Fatalf("Acquire in a-0's name with b-0's certificate = %v, want forbidden", err)
	}
	if _, err := alice.Acquire(ctx, acquire); fencing.CodeOf(err) != fencing.CodeForbidden {
		t.Fatalf("Acquire with an operator's certificate = %v, want forbidden", err)
	}
	g, err := sidecarA.Acquire(ctx, acquire)
	if err != nil {
		t.Fatalf("Acquire by a-0 = %v", err)
	}
	if err := sidecarB.CheckLease(ctx, g.Lease); fencing.CodeOf(err) != fencing.CodeForbidden {
		t.Fatalf("CheckLease of a-0's lease by b-0 = %v, want forbidden", err)
	}
	if err := sidecarA.CheckLease(ctx, g.Lease); err != nil {
		t.Fatalf("CheckLease by a-0 = %v", err)
	}
}

// Off a loopback listener the coordinator refuses to start open: it needs
// TLS, sidecar authentication and operator authentication; each mode needs
// its settings. Every problem is reported at once.
func TestConfigRefusesOpenAPIs(t *testing.T) {
	base := func() Config {
		return Config{Listen: "0.0.0.0:7600", EmbeddedEtcd: "/tmp/x", EtcdPrefix: "/fencing/", EtcdTimeout: 5 * time.Second,
			ReconcileInterval: time.Second, SessionTTL: 10 * time.Second, MaxWatchWait: time.Minute, LogLevel: "info"}
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want []string
	}{
		{"open on the network", func(*Config) {}, []string{"serve TLS", "operator API must not be open", "sidecars must authenticate"}},
		{"unknown mode", func(c *Config) { c.Listen = "127.0.0.1:7600"; c.OperatorAuth = []string{"ldap"} }, []string{`--operator-auth "ldap"`}},
		{"kubernetes without namespace", func(c *Config) { c.Listen = "127.0.0.1:7600"; c.OperatorAuth = []string{"kubernetes"} }, []string{"--operator-namespace"}},
		{"token without file", func(c *Config) { c.Listen = "127.0.0.1:7600"; c.OperatorAuth = []string{"token"} }, []string{"--operator-token-file"}},
		{"mtls without CA", func(c *Config) { c.Listen = "127.0.0.1:7600"; c.OperatorAuth = []string{"mtls"} }, []string{"--client-ca"}},
		{"client CA without TLS", func(c *Config) { c.Listen = "127.0.0.1:7600"; c.ClientCA = "ca.pem" }, []string{"--client-ca needs --tls-cert"}},
		{"none with others", func(c *Config) { c.Listen = "127.0.0.1:7600"; c.OperatorAuth = []string{"none", "mtls"} }, []string{"none excludes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mod(&c)
			err := c.Validate()
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to say %q", err, w)
				}
			}
		})
	}
	ok := base()
	ok.Listen = "127.0.0.1:7600"
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate() on loopback with no authentication = %v, want ok (development)", err)
	}
}
