package kube

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// syncBuffer is a log sink safe for the recorder's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger() (hclog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Trace}), buf
}

func transition(kind fencing.EventKind, at time.Time) fencing.Event {
	from := &fencing.Epoch{Epoch: 3, State: fencing.StateFenced, Holder: "region-a"}
	to := &fencing.Epoch{Epoch: 4, State: fencing.StateActive, Holder: "region-b", By: "alice", Reason: "region A lost"}
	switch kind {
	case fencing.EventFreeze:
		from = &fencing.Epoch{Epoch: 3, State: fencing.StateActive, Holder: "region-a"}
		to = &fencing.Epoch{Epoch: 3, State: fencing.StateRevoking, Holder: "region-a", By: "alice", Reason: "region A lost"}
	case fencing.EventFenced:
		from = &fencing.Epoch{Epoch: 3, State: fencing.StateRevoking, Holder: "region-a"}
		to = &fencing.Epoch{Epoch: 3, State: fencing.StateFenced, Holder: "region-a", By: "alice", Reason: "region A lost"}
	}
	return fencing.Event{Kind: kind, Validator: addr, At: at, From: from, To: to, BumpID: "b-7f3a"}
}

func waitEvents(t *testing.T, c *fake.Clientset, ns string, n int) []eventsv1.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := c.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) >= n || time.Now().After(deadline) {
			if len(l.Items) != n {
				t.Fatalf("%d events in %s, want %d", len(l.Items), ns, n)
			}
			return l.Items
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRecordCreatesEvents(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		kind       fencing.EventKind
		wantAction string
		wantType   string
		wantNote   string
	}{
		{fencing.EventFreeze, "Revoke", corev1.EventTypeWarning,
			"validator " + addr + ": epoch 3 active on region-a -> epoch 3 revoking on region-a; by alice: region A lost (bump b-7f3a)"},
		{fencing.EventFenced, "Fence", corev1.EventTypeWarning,
			"validator " + addr + ": epoch 3 revoking on region-a -> epoch 3 fenced on region-a; by alice: region A lost (bump b-7f3a)"},
		{fencing.EventGrant, "Grant", corev1.EventTypeNormal,
			"validator " + addr + ": epoch 3 fenced on region-a -> epoch 4 active on region-b; by alice: region A lost (bump b-7f3a)"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			c := fake.NewClientset()
			lg, logs := testLogger()
			r := NewEventRecorder(c, "fencing", WithLogger(lg),
				WithRegarding(ObjectRef{APIVersion: "v1", Kind: "Pod", Name: "fencing-7d9f-abcde", UID: "uid-1"}))
			defer r.Close(context.Background())
			r.Record(context.Background(), transition(tt.kind, at))
			ev := waitEvents(t, c, "fencing", 1)[0]
			checks := []struct{ field, got, want string }{
				{"reason", ev.Reason, string(tt.kind)},
				{"action", ev.Action, tt.wantAction},
				{"type", ev.Type, tt.wantType},
				{"note", ev.Note, tt.wantNote},
				{"reportingController", ev.ReportingController, ReportingController},
				{"reportingInstance", ev.ReportingInstance, "fencing-7d9f-abcde"},
				{"regarding.name", ev.Regarding.Name, "fencing-7d9f-abcde"},
				{"regarding.uid", string(ev.Regarding.UID), "uid-1"},
				{"regarding.namespace", ev.Regarding.Namespace, "fencing"},
				{"label validator", ev.Labels[LabelValidator], addr},
				{"label kind", ev.Labels[LabelKind], string(tt.kind)},
				{"annotation validator", ev.Annotations[AnnotationValidator], addr},
				{"eventTime", ev.EventTime.UTC().Format(time.RFC3339), "2026-01-02T03:04:05Z"},
			}
			for _, ch := range checks {
				if ch.got != ch.want {
					t.Errorf("event %s = %q, want %q", ch.field, ch.got, ch.want)
				}
			}
			if !strings.HasPrefix(ev.Name, "fencing-7d9f-abcde.") {
				t.Errorf("event name %q, want prefix fencing-7d9f-abcde.", ev.Name)
			}
			if strings.Contains(logs.String(), "[ERROR]") {
				t.Errorf("unexpected error log: %s", logs)
			}
		})
	}
}

func TestRecordIgnoresOtherKinds(t *testing.T) {
	c := fake.NewClientset()
	r := NewEventRecorder(c, "fencing")
	for _, k := range []fencing.EventKind{fencing.EventValidatorAdded, fencing.EventBumpStarted, fencing.EventLeaseReleased, fencing.EventLeaseExpired, fencing.EventAudit} {
		r.Record(context.Background(), fencing.Event{Kind: k, Validator: "v"})
	}
	r.Record(context.Background(), transition(fencing.EventGrant, time.Now()))
	r.Close(context.Background()) // drains the queue
	waitEvents(t, c, "fencing", 1)
}

func TestRecordAPIErrorsAreLogged(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantLog string
	}{
		{name: "API server down", err: connRefused(), wantLog: "code=unavailable"},
		{name: "forbidden", err: forbidden("events"), wantLog: "code=forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientset()
			c.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, tt.err
			})
			lg, logs := testLogger()
			r := NewEventRecorder(c, "fencing", WithLogger(lg))
			r.Record(context.Background(), transition(fencing.EventGrant, time.Now()))
			r.Close(context.Background())
			out := logs.String()
			if !strings.Contains(out, "kubernetes event not recorded") || !strings.Contains(out, tt.wantLog) || !strings.Contains(out, "validator="+addr) {
				t.Errorf("logs %q lack the failure (%s)", out, tt.wantLog)
			}
		})
	}
}

// A hung API server must not block Record: the queue absorbs what it can,
// the rest is dropped and logged, and Close gives up when its context ends.
func TestRecordNeverBlocks(t *testing.T) {
	c := fake.NewClientset()
	release := make(chan struct{})
	c.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-release
		return true, nil, context.DeadlineExceeded
	})
	defer close(release)
	lg, logs := testLogger()
	r := NewEventRecorder(c, "fencing", WithLogger(lg), WithQueueSize(2), WithTimeout(time.Hour))
	start := time.Now()
	for i := 0; i < 50; i++ {
		r.Record(context.Background(), transition(fencing.EventGrant, time.Now()))
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("50 Record calls took %v with a hung API server, want immediate", d)
	}
	if !strings.Contains(logs.String(), "queue full") {
		t.Errorf("no 'queue full' log: %s", logs)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	closed := make(chan struct{})
	go func() {
		// The fake's reactor ignores the context, so the worker only returns
		// once the reactor does; release it when Close has given up.
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond)
		release <- struct{}{}
	}()
	go func() { r.Close(ctx); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after its context ended")
	}
	if !strings.Contains(logs.String(), "dropped on close") {
		t.Errorf("no 'dropped on close' log: %s", logs)
	}
	// Record after Close drops and logs instead of panicking on a closed queue.
	r.Record(context.Background(), transition(fencing.EventGrant, time.Now()))
	if !strings.Contains(logs.String(), "recorder closed") {
		t.Errorf("no 'recorder closed' log: %s", logs)
	}
}

func TestEventNote(t *testing.T) {
	tests := []struct {
		name string
		ev   fencing.Event
		want string
	}{
		{name: "no epochs", ev: fencing.Event{Kind: fencing.EventFenced, Validator: "v1", Epoch: 7, By: "bob", Reason: "drill"},
			want: "validator v1: epoch 7; by bob: drill"},
		{name: "to only", ev: fencing.Event{Kind: fencing.EventGrant, Validator: "v1", To: &fencing.Epoch{Epoch: 2, State: fencing.StateActive, Holder: "b", By: "op", Reason: "r"}},
			want: "validator v1: epoch 2 active on b; by op: r"},
		{name: "detail", ev: fencing.Event{Kind: fencing.EventFenced, Validator: "v1", Epoch: 1, Detail: "2 leases expired"},
			want: "validator v1: epoch 1; 2 leases expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EventNote(tt.ev); got != tt.want {
				t.Errorf("EventNote() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEventLimits(t *testing.T) {
	r := &EventRecorder{namespace: "ns", regarding: corev1.ObjectReference{Name: strings.Repeat("p", 300)}, now: time.Now}
	long := fencing.Event{Kind: fencing.EventGrant, Validator: fencing.ValidatorID(strings.Repeat("V", 64)), Reason: strings.Repeat("é", 1000)}
	e := r.event(long)
	if len(e.Note) > 1024 {
		t.Errorf("note has %d bytes, want at most 1024", len(e.Note))
	}
	if !strings.HasSuffix(e.Note, "é") && !strings.HasSuffix(e.Note, ")") {
		t.Errorf("note ends in a split rune: %q", e.Note[len(e.Note)-4:])
	}
	if len(e.Name) > 253 {
		t.Errorf("name has %d bytes, want at most 253", len(e.Name))
	}
	if _, ok := e.Labels[LabelValidator]; ok {
		t.Errorf("a 64-character validator ID was put in a label (limit 63)")
	}
	if e.Annotations[AnnotationValidator] != string(long.Validator) {
		t.Errorf("annotation = %q, want the validator ID", e.Annotations[AnnotationValidator])
	}
}

func TestPodFromEnv(t *testing.T) {
	env := map[string]string{"POD_NAME": "c-1", "POD_UID": "u", "HOSTNAME": "h"}
	if got := PodFromEnv(func(k string) string { return env[k] }); got != (ObjectRef{APIVersion: "v1", Kind: "Pod", Name: "c-1", UID: "u"}) {
		t.Errorf("PodFromEnv() = %+v", got)
	}
	delete(env, "POD_NAME")
	if got := PodFromEnv(func(k string) string { return env[k] }); got.Name != "h" {
		t.Errorf("PodFromEnv() without POD_NAME = %+v, want name h", got)
	}
}

// Close never waits longer than the recorder's timeout, even with a
// context that never ends and an API server that never answers.
func TestCloseIsBounded(t *testing.T) {
	c := fake.NewClientset()
	release := make(chan struct{})
	defer close(release)
	c.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-release
		return true, nil, context.DeadlineExceeded
	})
	r := NewEventRecorder(c, "fencing", WithTimeout(200*time.Millisecond))
	for i := 0; i < 3; i++ {
		r.Record(context.Background(), transition(fencing.EventGrant, time.Now()))
	}
	done := make(chan struct{})
	go func() {
		// The fake ignores contexts; unblock the reactor once Close gave up.
		time.Sleep(400 * time.Millisecond)
		release <- struct{}{}
	}()
	start := time.Now()
	go func() { r.Close(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close(context.Background()) did not return")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v, want about the 200ms timeout", d)
	}
}
