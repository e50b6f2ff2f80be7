package readiness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencetest"
	"github.com/validator-fencing/fencing/internal/kubetest"
)

// twoClusters is a kubeconfig with contexts region-a and region-b on two
// real kube-apiservers.
type twoClusters struct {
	a, b       *kubetest.APIServer
	kubeconfig string
}

func startTwoClusters(t *testing.T) *twoClusters {
	t.Helper()
	a := kubetest.Start(t)
	b := kubetest.Start(t)
	merged := clientcmdapi.NewConfig()
	for ctxName, s := range map[string]*kubetest.APIServer{"region-a": a, "region-b": b} {
		cfg, err := clientcmd.LoadFromFile(s.Kubeconfig(t, "", ctxName))
		if err != nil {
			t.Fatal(err)
		}
		c := cfg.Contexts[ctxName]
		merged.Clusters[ctxName] = cfg.Clusters[c.Cluster]
		merged.AuthInfos[ctxName] = cfg.AuthInfos[c.AuthInfo]
		merged.Contexts[ctxName] = &clientcmdapi.Context{Cluster: ctxName, AuthInfo: ctxName}
	}
	merged.CurrentContext = "region-a"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*merged, path); err != nil {
		t.Fatal(err)
	}
	return &twoClusters{a: a, b: b, kubeconfig: path}
}

// want is a finding a test expects: its severity, check and cluster, and a
// part of its subject.
type want struct {
	sev     Severity
	check   string
	cluster string
	subject string
}

func (w want) matches(f Finding) bool {
	return f.Severity == w.sev && f.Check == w.check && f.Cluster == w.cluster && strings.Contains(f.Subject, w.subject)
}

// expectOnly fails unless every want matches a finding and every finding
// not matched by a want is OK.
func expectOnly(t *testing.T, rep Report, wants ...want) {
	t.Helper()
	for _, w := range wants {
		if !slices.ContainsFunc(rep.Findings, w.matches) {
			t.Errorf("no finding %s %s %s %q", w.sev, w.check, w.cluster, w.subject)
		}
	}
	for _, f := range rep.Findings {
		if f.Severity != OK && !slices.ContainsFunc(wants, func(w want) bool { return w.matches(f) }) {
			t.Errorf("unexpected finding: %s %s %s %q: %s", f.Severity, f.Check, f.Cluster, f.Subject, f.Detail)
		}
	}
	if t.Failed() {
		var b bytes.Buffer
		_ = rep.WriteTable(&b)
		t.Logf("report:\n%s", b.String())
	}
}

// TestReadinessOnTwoAPIServers applies the committed chart renders of
// region A (active) and region B (standby) to two real kube-apiservers,
// checks that the clean pair is all OK, then plants one drift or failure
// at a time and checks that it, and only it, is reported with its
// severity. etcd is a real three-member cluster behind a real coordinator.
func TestReadinessOnTwoAPIServers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two kube-apiservers and three-member etcd clusters")
	}
	tc := startTwoClusters(t)
	shared := fencetest.Start(t, fencetest.Options{Members: 3})
	domains := map[string]string{"m0": "region-a", "m1": "region-b", "m2": "witness"}
	ctx := context.Background()

	n := 0
	// setup applies the two regions, after plant edits them, and returns
	// the options that check them.
	setup := func(t *testing.T, plant func(a, b *world)) Options {
		t.Helper()
		n++
		suffix := fmt.Sprintf("-%d", n)
		a, b := newWorld(t, "region-a", true, suffix), newWorld(t, "region-b", false, suffix)
		if plant != nil {
			plant(a, b)
		}
		a.apply(ctx, t, tc.a.Client)
		b.apply(ctx, t, tc.b.Client)
		return Options{
			Kubeconfig: tc.kubeconfig, Contexts: []string{"region-a", "region-b"},
			Namespace: a.validatorsNS, CoordinatorNamespace: a.fencingNS,
			Coordinators: map[string]EtcdSource{"region-a": shared.Client, "region-b": shared.Client},
			EtcdDomains:  domains,
		}
	}
	check := func(t *testing.T, o Options) Report {
		t.Helper()
		rep, err := Check(ctx, o)
		if err != nil {
			t.Fatalf("Check() = %v", err)
		}
		var b bytes.Buffer
		if err := rep.WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		t.Logf("fencectl readiness --context region-a --context region-b:\n%s", b.String())
		return rep
	}

	t.Run("clean", func(t *testing.T) {
		rep := check(t, setup(t, nil))
		expectOnly(t, rep)
		if rep.ExitCode() != ExitOK || rep.Worst() != OK {
			t.Errorf("ExitCode() = %d, Worst() = %v, want 0 and ok", rep.ExitCode(), rep.Worst())
		}
		for _, c := range checkOrder {
			if !slices.ContainsFunc(rep.Findings, func(f Finding) bool { return f.Check == c }) {
				t.Errorf("no finding of check %s: it did not run", c)
			}
		}
		j, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(j, []byte(`"severity":"ok"`)) || !bytes.Contains(j, []byte(`"worst":"ok","exit_code":0`)) {
			t.Errorf("JSON %s: want severities and the worst as words", j[:min(len(j), 300)])
		}
		t.Logf("Summary(): %s", rep.Summary())
	})

	t.Run("image tag", func(t *testing.T) {
		rep := check(t, setup(t, func(a, b *world) {
			for _, s := range b.sets {
				editContainer(&s.Spec.Template.Spec, sidecarContainer, func(c *corev1.Container) { c.Image = "ghcr.io/validator-fencing/fencing:0.1.1" })
			}
		}))
		expectOnly(t, rep, want{Warn, CheckImages, "region-a vs region-b", "besu-validator-1/fence-sidecar"})
		if rep.ExitCode() != ExitWarn {
			t.Errorf("ExitCode() = %d, want %d", rep.ExitCode(), ExitWarn)
		}
		// The gate's fence-sidecar comes from an image volume.
		rep = check(t, setup(t, func(a, b *world) {
			for _, s := range b.sets {
				for i := range s.Spec.Template.Spec.Volumes {
					if v := &s.Spec.Template.Spec.Volumes[i]; v.Image != nil {
						v.Image.Reference = "ghcr.io/validator-fencing/fencing:0.1.1"
					}
				}
			}
		}))
		expectOnly(t, rep, want{Warn, CheckImages, "region-a vs region-b", "besu-validator-1/volume/fence-bin"})
	})

	t.Run("missing key Secret", func(t *testing.T) {
		rep := check(t, setup(t, func(a, b *world) {
			b.secrets = slices.DeleteFunc(b.secrets, func(s *corev1.Secret) bool { return s.Name == "besu-validator-1-key" })
		}))
		expectOnly(t, rep, want{Critical, CheckSecrets, "region-b", "/besu-validator-1-key"})
		if rep.ExitCode() != ExitCritical {
			t.Errorf("ExitCode() = %d, want %d", rep.ExitCode(), ExitCritical)
		}
	})

	t.Run("standby sidecar not running", func(t *testing.T) {
		rep := check(t, setup(t, func(a, b *world) {
			p := b.pod(t, "besu-validator-1-0")
			for i := range p.Status.ContainerStatuses {
				if p.Status.ContainerStatuses[i].Name == sidecarContainer {
					p.Status.ContainerStatuses[i].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 5m0s restarting failed container"}}
					p.Status.ContainerStatuses[i].RestartCount = 7
				}
			}
		}))
		expectOnly(t, rep, want{Critical, CheckSidecar, "region-b", "besu-validator-1-0"})
	})

	t.Run("different key address", func(t *testing.T) {
		rep := check(t, setup(t, func(a, b *world) {
			b.sidecarArgs(func(args []string) []string { return setArg(args, "validator", otherValidator) })
		}))
		expectOnly(t, rep, want{Critical, CheckKeyAddress, "region-a vs region-b", "besu-validator-1"})
	})

	t.Run("key Secret annotated with another address", func(t *testing.T) {
		rep := check(t, setup(t, func(a, b *world) {
			for _, w := range []*world{a, b} {
				for _, s := range w.secrets {
					if s.Name == "besu-validator-1-key" {
						addr := exampleValidator
						if w == b {
							addr = otherValidator
						}
						s.Annotations = map[string]string{keyAddressAnnotate: addr}
					}
				}
			}
		}))
		expectOnly(t, rep, want{Critical, CheckKeyAddress, "region-a vs region-b", "besu-validator-1"})
	})

	t.Run("coordinator replicas in one zone", func(t *testing.T) {
		rep := check(t, setup(t, func(a, b *world) {
			for _, p := range b.pods {
				if strings.HasPrefix(p.Name, "fencing-") {
					p.Spec.NodeName = b.nodes[0].Name
				}
			}
		}))
		expectOnly(t, rep, want{Warn, CheckCoordinator, "region-b", "fencing spread"})
	})

	t.Run("strict mode in the standby", func(t *testing.T) {
		rep := check(t, setup(t, func(a, b *world) {
			b.sidecarArgs(func(args []string) []string { return setArg(setArg(args, "mode", "strict"), "lease-ttl", "30s") })
		}))
		expectOnly(t, rep,
			want{Critical, CheckValues, "region-a vs region-b", "besu-validator-1 --mode"},
			want{Warn, CheckValues, "region-a vs region-b", "besu-validator-1 --lease-ttl"})
	})

	t.Run("skewed local clock", func(t *testing.T) {
		o := setup(t, nil)
		o.Now = func() time.Time { return time.Now().Add(10 * time.Second) }
		rep := check(t, o)
		expectOnly(t, rep,
			want{Critical, CheckClock, "region-a", "api-server"},
			want{Critical, CheckClock, "region-b", "api-server"},
			want{Critical, CheckClock, "region-a", "coordinator"},
			want{Critical, CheckClock, "region-b", "coordinator"})
	})

	t.Run("standby scaled to zero", func(t *testing.T) {
		rep := check(t, setup(t, func(a, b *world) {
			b.sets[0].Spec.Replicas = ptrTo(int32(0))
			b.pods = slices.DeleteFunc(b.pods, func(p *corev1.Pod) bool { return strings.HasPrefix(p.Name, "besu-validator-1-") })
		}))
		expectOnly(t, rep, want{Warn, CheckSidecar, "region-b", "besu-validator-1"})
	})

	t.Run("two etcd clusters", func(t *testing.T) {
		o := setup(t, nil)
		other := fencetest.Start(t, fencetest.Options{})
		o.Coordinators = map[string]EtcdSource{"region-a": shared.Client, "region-b": other.Client}
		rep := check(t, o)
		expectOnly(t, rep, want{Critical, CheckEtcd, "region-a vs region-b", "cluster ID"})
	})

	t.Run("etcd member down", func(t *testing.T) {
		o := setup(t, nil)
		own := fencetest.Start(t, fencetest.Options{Members: 3})
		own.Etcd.Stop(2)
		waitEtcd(t, own, func(st api.EtcdStatus) bool {
			for _, m := range st.Members {
				if (m.Name == "m2") != (m.Error != "") || (m.Name != "m2" && m.Leader == "") {
					return false
				}
			}
			return true
		})
		o.Coordinators = map[string]EtcdSource{"region-a": own.Client, "region-b": own.Client}
		rep := check(t, o)
		expectOnly(t, rep, want{Critical, CheckEtcd, "etcd", "member m2"})
	})
}

// waitEtcd waits until c's GET /v1/etcd satisfies ok (an election after a
// member stopped takes a moment).
func waitEtcd(t *testing.T, c *fencetest.Coordinator, ok func(api.EtcdStatus) bool) {
	t.Helper()
	kubetest.Eventually(t, "etcd settles", 30*time.Second, func() error {
		st, err := c.Client.Etcd(context.Background())
		if err != nil {
			return err
		}
		if !ok(st) {
			return fmt.Errorf("not yet: %+v", st.Members)
		}
		return nil
	})
}
