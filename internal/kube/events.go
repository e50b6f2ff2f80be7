package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Labels and annotations put on every Event the recorder creates.
const (
	// ReportingController is the Event's reportingController.
	ReportingController = "fencing.validator-fencing.io/coordinator"
	// LabelValidator holds the validator ID when it is a valid label value
	// (addresses always are); AnnotationValidator always holds it.
	LabelValidator      = "fencing.validator-fencing.io/validator"
	AnnotationValidator = "fencing.validator-fencing.io/validator"
	// LabelKind holds the event kind, e.g. grant_committed.
	LabelKind = "fencing.validator-fencing.io/kind"
)

// recorded are the event kinds that become Kubernetes Events, with their
// action and type.
var recorded = map[fencing.EventKind]struct{ action, typ string }{
	fencing.EventFreeze: {"Revoke", corev1.EventTypeWarning},
	fencing.EventFenced: {"Fence", corev1.EventTypeWarning},
	fencing.EventGrant:  {"Grant", corev1.EventTypeNormal},
}

// EventRecorder creates events.k8s.io/v1 Events for epoch transitions. Record
// never blocks: it queues the event, and one goroutine, started by
// NewEventRecorder and ended by Close, creates them one by one with a timeout.
type EventRecorder struct {
	client    kubernetes.Interface
	namespace string
	regarding corev1.ObjectReference
	instance  string
	lg        hclog.Logger
	now       func() time.Time
	timeout   time.Duration

	queue  chan fencing.Event
	ctx    context.Context // ends the worker's API calls on Close
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex // guards closed and sends on queue
	closed bool
}

// NewEventRecorder starts a recorder that creates Events in namespace, on the
// object set by WithRegarding (default: the Pod named by the host name).
// Options: WithLogger, WithClock, WithTimeout, WithQueueSize, WithRegarding,
// WithReportingInstance. Call Close when done.
func NewEventRecorder(client kubernetes.Interface, namespace string, opts ...Option) *EventRecorder {
	o := applyOptions(opts)
	ref := ObjectRef{APIVersion: "v1", Kind: "Pod"}
	if o.regarding != nil {
		ref = *o.regarding
	} else if h, err := os.Hostname(); err == nil {
		ref.Name = h
	}
	instance := o.instance
	if instance == "" {
		instance = ref.Name
	}
	if instance == "" {
		instance = "fence-coordinator"
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &EventRecorder{
		client:    client,
		namespace: namespace,
		regarding: corev1.ObjectReference{
			APIVersion: ref.APIVersion,
			Kind:       ref.Kind,
			Namespace:  namespace,
			Name:       ref.Name,
			UID:        types.UID(ref.UID),
		},
		instance: clipTo(instance, 128),
		lg:       o.logger,
		now:      o.now,
		timeout:  o.timeout,
		queue:    make(chan fencing.Event, o.queueSize),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	go r.run()
	return r
}

// PodFromEnv is the coordinator's own Pod as the chart describes it through
// the downward API: POD_NAME (falling back to HOSTNAME) and POD_UID. Pass
// os.Getenv.
func PodFromEnv(getenv func(string) string) ObjectRef {
	name := getenv("POD_NAME")
	if name == "" {
		name = getenv("HOSTNAME")
	}
	return ObjectRef{APIVersion: "v1", Kind: "Pod", Name: name, UID: getenv("POD_UID")}
}

// Record queues an Event for ev if ev is an epoch transition
// (revoke_committed, fenced, grant_committed) and ignores other kinds. It
// returns at once; ctx is not used for the creation, which outlives the
// caller's request. When the queue is full or the recorder is closed the
// event is dropped and logged.
func (r *EventRecorder) Record(ctx context.Context, ev fencing.Event) {
	if _, ok := recorded[ev.Kind]; !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.lg.Warn("kubernetes event dropped: recorder closed", "kind", ev.Kind, "validator", ev.Validator)
		return
	}
	select {
	case r.queue <- ev:
	default:
		r.lg.Warn("kubernetes event dropped: queue full (API server slow or down?)", "kind", ev.Kind, "validator", ev.Validator, "queue", cap(r.queue))
	}
}

// Close stops accepting events, gives the queued ones until ctx ends (at
// most the recorder's timeout, so that a shutdown never waits for an API
// server that does not answer) to be created, then stops the worker and
// returns. Events still queued are dropped and counted in one log line.
func (r *EventRecorder) Close(ctx context.Context) {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.queue)
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	select {
	case <-r.done:
		return
	case <-ctx.Done():
	}
	r.cancel()
	<-r.done
}

func (r *EventRecorder) run() {
	defer close(r.done)
	dropped := 0
	for ev := range r.queue {
		if r.ctx.Err() != nil {
			dropped++
			continue
		}
		r.create(ev)
	}
	if dropped > 0 {
		r.lg.Warn("kubernetes events dropped on close", "count", dropped)
	}
	r.cancel()
}

func (r *EventRecorder) create(ev fencing.Event) {
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	e := r.event(ev)
	if _, err := r.client.EventsV1().Events(r.namespace).Create(ctx, e, metav1.CreateOptions{}); err != nil {
		fe := classify(err, "create event")
		r.lg.Error("kubernetes event not recorded", "kind", ev.Kind, "validator", ev.Validator, "code", fe.Code, "error", fe.Message)
		return
	}
	r.lg.Debug("kubernetes event recorded", "kind", ev.Kind, "validator", ev.Validator, "event", e.Name)
}

// event builds the Event for ev.
func (r *EventRecorder) event(ev fencing.Event) *eventsv1.Event {
	meta := recorded[ev.Kind]
	at := ev.At
	if at.IsZero() {
		at = r.now()
	}
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	base := r.regarding.Name
	if base == "" {
		base = "fencing"
	}
	name := clipTo(strings.TrimRight(base, "."), 253-17) + "." + hex.EncodeToString(suffix[:])

	labels := map[string]string{LabelKind: string(ev.Kind)}
	if len(validation.IsValidLabelValue(string(ev.Validator))) == 0 && ev.Validator != "" {
		labels[LabelValidator] = string(ev.Validator)
	}
	return &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   r.namespace,
			Labels:      labels,
			Annotations: map[string]string{AnnotationValidator: string(ev.Validator)},
		},
		EventTime:           metav1.NewMicroTime(at),
		ReportingController: ReportingController,
		ReportingInstance:   r.instance,
		Action:              meta.action,
		Reason:              string(ev.Kind),
		Regarding:           r.regarding,
		Note:                clipTo(EventNote(ev), 1024),
		Type:                meta.typ,
	}
}

// EventNote is the human sentence of an Event for ev, for example
// "validator 0xAb…: epoch 3 active on region-a -> epoch 3 revoking on
// region-a; by alice: failover to region-b (bump 7f3a)".
func EventNote(ev fencing.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "validator %s: ", ev.Validator)
	switch {
	case ev.From != nil && ev.To != nil:
		fmt.Fprintf(&b, "%s -> %s", epochText(*ev.From), epochText(*ev.To))
	case ev.To != nil:
		b.WriteString(epochText(*ev.To))
	case ev.From != nil:
		fmt.Fprintf(&b, "from %s", epochText(*ev.From))
	default:
		fmt.Fprintf(&b, "epoch %d", ev.Epoch)
	}
	by, reason := ev.By, ev.Reason
	if by == "" && ev.To != nil {
		by = ev.To.By
	}
	if reason == "" && ev.To != nil {
		reason = ev.To.Reason
	}
	if by != "" {
		fmt.Fprintf(&b, "; by %s", by)
	}
	if reason != "" {
		fmt.Fprintf(&b, ": %s", reason)
	}
	if ev.BumpID != "" {
		fmt.Fprintf(&b, " (bump %s)", ev.BumpID)
	}
	if ev.Detail != "" {
		fmt.Fprintf(&b, "; %s", ev.Detail)
	}
	return b.String()
}

func epochText(e fencing.Epoch) string {
	return fmt.Sprintf("epoch %d %s on %s", e.Epoch, e.State, e.Holder)
}

// clipTo shortens s to at most n bytes without splitting a UTF-8 sequence.
func clipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
