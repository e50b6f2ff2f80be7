package kube

import (
	"time"

	"github.com/hashicorp/go-hclog"
)

// Option configures a TokenReviewAuthenticator or an EventRecorder. Each
// option says which of the two it applies to; the other ignores it.
type Option func(*options)

type options struct {
	logger    hclog.Logger
	now       func() time.Time
	timeout   time.Duration
	cacheTTL  time.Duration
	cacheSize int
	queueSize int
	regarding *ObjectRef
	instance  string
}

func defaultOptions() options {
	return options{
		logger:    hclog.NewNullLogger(),
		now:       time.Now,
		timeout:   5 * time.Second,
		cacheTTL:  30 * time.Second,
		cacheSize: 1024,
		queueSize: 128,
	}
}

func applyOptions(opts []Option) options {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithLogger sets the logger (both). The default discards everything.
func WithLogger(lg hclog.Logger) Option {
	return func(o *options) {
		if lg != nil {
			o.logger = lg
		}
	}
}

// WithClock sets the wall clock used for cache expiry and event times (both).
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithTimeout bounds each API call: a TokenReview, or the creation of one
// Event (both). Default 5 s.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithCacheTTL sets how long a successful TokenReview is reused
// (authenticator). Default 30 s; 0 or less disables the cache. A cached
// identity is never used past the token's own expiry.
func WithCacheTTL(d time.Duration) Option {
	return func(o *options) { o.cacheTTL = d }
}

// WithCacheSize bounds the number of cached reviews (authenticator). Default
// 1024.
func WithCacheSize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.cacheSize = n
		}
	}
}

// WithQueueSize bounds the number of events waiting to be created
// (recorder). Default 128; when full, new events are dropped and logged.
func WithQueueSize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.queueSize = n
		}
	}
}

// ObjectRef names the object Events are about.
type ObjectRef struct {
	APIVersion string
	Kind       string
	Name       string
	UID        string
}

// WithRegarding sets the object Events are recorded on (recorder), in the
// recorder's namespace. The default is the Pod named by the host name, which
// inside Kubernetes is the coordinator's own Pod; the chart also passes
// POD_NAME and POD_UID so a caller can set the UID (see PodFromEnv).
func WithRegarding(ref ObjectRef) Option {
	return func(o *options) { o.regarding = &ref }
}

// WithReportingInstance sets the Event's reportingInstance (recorder),
// default the regarding object's name.
func WithReportingInstance(name string) Option {
	return func(o *options) { o.instance = name }
}
