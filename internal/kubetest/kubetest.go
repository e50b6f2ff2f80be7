// Package kubetest starts a real kube-apiserver for tests, backed by an
// embedded etcd (go.etcd.io/etcd/server/v3/embed) in t.TempDir(), on
// 127.0.0.1 only.
//
// The kube-apiserver binary is built by hack/kube-apiserver/build.sh
// (k8s.io/kubernetes v1.37.2, 7 to 40 minutes on 2 cores, cached). Tests find
// it through FENCE_KUBE_APISERVER or, failing that, in build.sh's default
// cache directory; when neither has it the test is skipped with a message
// saying how to build it. FENCE_KUBE_APISERVER set to a path that is not an
// executable fails the test instead.
//
// The server runs with RBAC authorization, a static token for an admin in
// system:masters (APIServer.Config), a service-account key pair generated in
// the test's temporary directory, and no controllers: Deployments and
// StatefulSets get no Pods, and their status never changes.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/validator-fencing/fencing/internal/etcdtest"
)

// Version is the kube-apiserver version build.sh builds.
const Version = "v1.37.2"

// EnvBinary names the environment variable holding the kube-apiserver path.
const EnvBinary = "FENCE_KUBE_APISERVER"

// Issuer is the service-account token issuer of the test API server.
const Issuer = "https://kubernetes.default.svc.cluster.local"

// APIServer is a running kube-apiserver.
type APIServer struct {
	// URL is the https address of the API server.
	URL string
	// Config authenticates as an admin in system:masters.
	Config *rest.Config
	// Client is a clientset for Config.
	Client kubernetes.Interface
	// Dir holds the etcd data, keys, certificates and the server's log.
	Dir string

	adminToken string
	caFile     string
}

// Binary returns the kube-apiserver to use, or skips t when none is
// available and FENCE_KUBE_APISERVER is unset.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvBinary); p != "" {
		if !isExecutable(p) {
			t.Fatalf("%s=%s is not an executable file; unset it or point it at the output of hack/kube-apiserver/build.sh", EnvBinary, p)
		}
		return p
	}
	p := defaultBinary()
	if p != "" && isExecutable(p) {
		return p
	}
	t.Skipf("kube-apiserver %s not found (%s is unset and %s does not exist): run `%s=$(hack/kube-apiserver/build.sh)` (7 to 40 minutes once on 2 cores, then cached) to run this test",
		Version, EnvBinary, p, EnvBinary)
	return ""
}

// defaultBinary is where build.sh puts the binary without FENCE_KUBE_CACHE:
// $(go env GOCACHE)/../fencing-kube-apiserver/<version>/kube-apiserver.
func defaultBinary() string {
	cache := os.Getenv("FENCE_KUBE_CACHE")
	if cache == "" {
		gocache := os.Getenv("GOCACHE")
		if gocache == "" {
			out, err := exec.Command("go", "env", "GOCACHE").Output()
			if err != nil {
				return ""
			}
			gocache = strings.TrimSpace(string(out))
		}
		if gocache == "" || gocache == "off" {
			return ""
		}
		cache = filepath.Join(filepath.Dir(gocache), "fencing-kube-apiserver")
	}
	return filepath.Join(cache, Version, "kube-apiserver")
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Start starts etcd and a kube-apiserver, waits until /readyz answers ok, and
// stops both when t ends (the API server first). It skips t like Binary.
func Start(t testing.TB) *APIServer {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	// Embedded etcd, stopped when t ends, after the API server (cleanups run
	// last-registered first).
	etcdURL := etcdtest.New(t, 1).Endpoints()[0]

	s := &APIServer{Dir: dir, adminToken: randomHex(t, 16)}
	saKey := filepath.Join(dir, "sa.key")
	writeServiceAccountKey(t, saKey)
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(s.adminToken+`,fencing-test-admin,fencing-test-admin,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(dir, "certs")
	s.caFile = filepath.Join(certDir, "apiserver.crt")

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		s.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
		args := []string{
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", port),
			"--cert-dir=" + certDir,
			"--endpoint-reconciler-type=none",
			"--service-cluster-ip-range=10.0.0.0/24",
			"--service-account-issuer=" + Issuer,
			"--service-account-key-file=" + saKey,
			"--service-account-signing-key-file=" + saKey,
			"--token-auth-file=" + tokens,
			"--authorization-mode=RBAC",
			"--enable-priority-and-fairness=false",
			"--profiling=false",
			"--v=1",
		}
		logPath := filepath.Join(dir, fmt.Sprintf("kube-apiserver-%d.log", attempt))
		lastErr = s.run(t, bin, args, logPath)
		if lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errPortInUse) {
			break
		}
	}
	t.Fatalf("kube-apiserver did not start: %v", lastErr)
	return nil
}

var errPortInUse = errors.New("port in use")

// run starts the binary and waits for it to be ready; on failure the process
// is gone when run returns.
func (s *APIServer) run(t testing.TB, bin string, args []string, logPath string) error {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", bin, err)
	}
	var waitErr error
	exited := make(chan struct{}) // closed when the process is gone; waitErr is set before
	go func() {
		waitErr = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	stop := func() {
		select {
		case <-exited:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := s.waitReady(ctx, exited, &waitErr); err != nil {
		stop()
		tail := logTail(logPath, 40)
		if strings.Contains(tail, "address already in use") {
			return fmt.Errorf("%w: %v", errPortInUse, err)
		}
		return fmt.Errorf("%v\n--- last lines of %s ---\n%s", err, logPath, tail)
	}
	t.Logf("kube-apiserver %s ready at %s in %v (log: %s)", Version, s.URL, time.Since(start).Round(time.Millisecond), logPath)
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", logPath, logTail(logPath, 30))
		}
	})
	return nil
}

// waitReady waits for the serving certificate, then for /readyz.
func (s *APIServer) waitReady(ctx context.Context, exited <-chan struct{}, waitErr *error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-exited:
			return fmt.Errorf("kube-apiserver exited: %v", *waitErr)
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after 90s: %v", lastErr)
		case <-tick.C:
		}
		if s.Client == nil {
			if _, err := os.Stat(s.caFile); err != nil {
				lastErr = err
				continue
			}
			s.Config = &rest.Config{
				Host:            s.URL,
				BearerToken:     s.adminToken,
				TLSClientConfig: rest.TLSClientConfig{CAFile: s.caFile},
				QPS:             100,
				Burst:           200,
				Timeout:         30 * time.Second,
			}
			c, err := kubernetes.NewForConfig(s.Config)
			if err != nil {
				return err
			}
			s.Client = c
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		body, err := s.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err == nil && bytes.Equal(bytes.TrimSpace(body), []byte("ok")) {
			return nil
		}
		lastErr = fmt.Errorf("/readyz: %v %s", err, bytes.TrimSpace(body))
	}
}

// ConfigAs is an admin config that impersonates user (for example
// system:serviceaccount:fencing:fence-coordinator) with groups, to check what
// RBAC lets that user do.
func (s *APIServer) ConfigAs(user string, groups ...string) *rest.Config {
	c := rest.CopyConfig(s.Config)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return c
}

// ServiceAccountConfig is ConfigAs for a ServiceAccount, with the groups the
// API server gives ServiceAccounts.
func (s *APIServer) ServiceAccountConfig(namespace, name string) *rest.Config {
	return s.ConfigAs("system:serviceaccount:"+namespace+":"+name,
		"system:serviceaccounts", "system:serviceaccounts:"+namespace, "system:authenticated")
}

// Kubeconfig writes a kubeconfig file with one admin context per name, each
// defaulting to namespace, and returns its path. The first name is the
// current context.
func (s *APIServer) Kubeconfig(t testing.TB, namespace string, contexts ...string) string {
	t.Helper()
	ca, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: s.URL, CertificateAuthorityData: ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: s.adminToken}
	for _, name := range contexts {
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin", Namespace: namespace}
	}
	if len(contexts) > 0 {
		cfg.CurrentContext = contexts[0]
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeServiceAccountKey(t testing.TB, path string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Eventually retries f until it succeeds or timeout passes: RBAC and
// ServiceAccount changes reach the API server's authorizer and authenticator
// caches asynchronously.
func Eventually(t testing.TB, what string, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Token returns a token of ServiceAccount ns/sa (created if missing) for
// audience aud (empty: the API server's own), bound to the pod <sa>-0
// (created if missing) as a projected token volume's is; with pod false, a
// token bound to nothing, as `kubectl create token` makes.
func Token(ctx context.Context, t testing.TB, c kubernetes.Interface, ns, sa, aud string, pod bool) string {
	t.Helper()
	if _, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, sa, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("ServiceAccount %s/%s: %v", ns, sa, err)
		}
	}
	exp := int64(600)
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}
	if aud != "" {
		tr.Spec.Audiences = []string{aud}
	}
	if pod {
		name := sa + "-0"
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			automount := false
			p, err = c.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.PodSpec{ServiceAccountName: sa, AutomountServiceAccountToken: &automount,
					Containers: []corev1.Container{{Name: "validator", Image: "example.invalid/validator:1"}}},
			}, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatalf("pod %s/%s: %v", ns, name, err)
		}
		tr.Spec.BoundObjectRef = &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID}
	}
	out, err := c.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, tr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	return out.Status.Token
}
