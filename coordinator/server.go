package coordinator

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/store"
)

// ServerOptions configure a Server; zero values take defaults.
type ServerOptions struct {
	Logger hclog.Logger
	// Auth authenticates sidecars by bearer token; nil: not by token.
	Auth Authenticator
	// ClientCerts: the listener verifies client certificates (--client-ca);
	// sidecars and operators may authenticate with them (auth.go).
	ClientCerts bool
	// OperatorToken, when set, is a bearer token that authorizes every
	// operator action.
	OperatorToken string
	// OperatorReviewer, when set, authenticates operators' Kubernetes tokens
	// and authorizes each action with RBAC.
	OperatorReviewer  OperatorReviewer
	MaxWatchWait      time.Duration // default 60s
	ReconcileInterval time.Duration // default 2s
	SessionTTL        time.Duration // default 10s
	JournalRetention  uint64        // heights kept below the watermark; 0 keeps all
	Registry          *prometheus.Registry
	// Leaders, when set, keeps the etcd leader in the region holding most
	// active epochs (leader.go).
	Leaders *LeaderPlacement
	// Metrics, registered on Registry, whose Transition the store calls
	// (store.Options.OnTransition); nil registers new ones, which then count
	// no transitions.
	Metrics *Metrics
}

// NewServer returns a server over st; Run its background work with Start.
func NewServer(st *store.Store, o ServerOptions) (*Server, error) {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.MaxWatchWait <= 0 {
		o.MaxWatchWait = 60 * time.Second
	}
	if o.ReconcileInterval <= 0 {
		o.ReconcileInterval = 2 * time.Second
	}
	if o.SessionTTL < 2*time.Second {
		o.SessionTTL = 10 * time.Second
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	m := o.Metrics
	if m == nil {
		var err error
		if m, err = NewMetrics(o.Registry); err != nil {
			return nil, err
		}
	}
	if err := o.Registry.Register(&stateCollector{st: st, lg: o.Logger}); err != nil {
		return nil, err
	}
	s := &Server{
		st: st, journaler: st.NewJournaler(24), reconciler: newReconciler(st, o.Logger.Named("reconciler"), o.ReconcileInterval, int(o.SessionTTL/time.Second)),
		auth: o.Auth, clientCerts: o.ClientCerts, operatorToken: o.OperatorToken, operatorReviewer: o.OperatorReviewer, lg: o.Logger, maxWait: o.MaxWatchWait, metrics: m, gatherer: o.Registry, retention: o.JournalRetention,
	}
	if o.Leaders != nil {
		p := *o.Leaders
		if p.Logger == nil {
			p.Logger = o.Logger.Named("leader")
		}
		s.leaders = newLeaderFollower(p)
		kick := s.leaders.granted
		m.afterGrant.Store(&kick)
	}
	return s, nil
}

// Start runs the journal's group commit and the reconciler until ctx ends;
// the returned channel closes when both stopped.
func (s *Server) Start(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		wg.Go(func() { s.journaler.Run(ctx) })
		wg.Go(func() { s.reconciler.run(ctx) })
		if s.retention > 0 {
			wg.Go(func() { s.pruneJournals(ctx) })
		}
		if s.leaders != nil {
			wg.Go(func() { s.leaders.run(ctx, s.st) })
		}
		wg.Wait()
	}()
	return done
}

// Server serves the coordinator API over one Store.
type Server struct {
	st               *store.Store
	journaler        *store.Journaler
	reconciler       *reconciler
	auth             Authenticator
	clientCerts      bool
	operatorToken    string
	operatorReviewer OperatorReviewer
	lg               hclog.Logger
	maxWait          time.Duration
	metrics          *Metrics
	gatherer         prometheus.Gatherer
	retention        uint64
	leaders          *leaderFollower
}

// pruneJournals applies the journal retention every minute. Replicas may
// prune at once: deleting an already deleted range is harmless.
func (s *Server) pruneJournals(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sts, err := s.st.Statuses(ctx)
		if err != nil {
			continue
		}
		for _, st := range sts {
			if n, err := s.st.PruneJournal(ctx, st.ID, s.retention); err != nil {
				s.lg.Warn("journal retention failed", "validator", st.ID, "error", err)
			} else if n > 0 {
				s.lg.Debug("journal pruned", "validator", st.ID, "entries", n)
			}
		}
	}
}

// Handler returns the HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// operator API
	// operator API: each endpoint is one RBAC verb on one resource (auth.go)
	mux.HandleFunc("GET /v1/validators", s.operator("list", "validators", s.listValidators))
	mux.HandleFunc("POST /v1/validators", s.operator("create", "validators", handle(s, "add_validator", http.StatusCreated, s.addValidator)))
	mux.HandleFunc("GET /v1/validators/{id}", s.operator("get", "validators", s.getValidator))
	mux.HandleFunc("POST /v1/validators/{id}/freeze", s.operator("freeze", "validators", handle(s, "freeze", http.StatusOK, s.freeze)))
	mux.HandleFunc("DELETE /v1/validators/{id}", s.operator("delete", "validators", handle(s, "remove_validator", http.StatusNoContent, s.removeValidator)))
	mux.HandleFunc("POST /v1/validators/{id}/bump", s.operator("bump", "validators", s.bump))
	mux.HandleFunc("POST /v1/validators/{id}/unfreeze", s.operator("unfreeze", "validators", s.unfreeze))
	mux.HandleFunc("GET /v1/validators/{id}/bumps/{bump}/progress", s.operator("get", "validators", s.progress))
	mux.HandleFunc("POST /v1/validators/{id}/abandon", s.operator("abandon", "validators", handle(s, "abandon", http.StatusOK, s.abandon)))
	mux.HandleFunc("GET /v1/holders", s.operator("list", "holders", s.listHolders))
	mux.HandleFunc("POST /v1/holders", s.operator("create", "holders", handle(s, "register_holder", http.StatusNoContent, s.registerHolder)))
	mux.HandleFunc("GET /v1/events", s.operator("list", "events", s.events))
	mux.HandleFunc("GET /v1/journal", s.operator("list", "events", s.journalList))
	mux.HandleFunc("POST /v1/audits", s.operator("create", "audits", handle(s, "audit", http.StatusNoContent, s.audit)))
	mux.HandleFunc("GET /v1/etcd", s.operator("get", "etcd", s.etcdStatus))
	// sidecar API
	mux.HandleFunc("POST /v1/leases", handle(s, "acquire", http.StatusOK, s.acquire))
	mux.HandleFunc("POST /v1/leases/renew", handle(s, "renew", http.StatusOK, s.renew))
	mux.HandleFunc("POST /v1/leases/release", handle(s, "release", http.StatusNoContent, s.release))
	mux.HandleFunc("POST /v1/leases/check", handle(s, "check", http.StatusNoContent, s.checkLease))
	mux.HandleFunc("GET /v1/validators/{id}/epoch", s.watchEpoch)
	mux.HandleFunc("POST /v1/journal", handle(s, "journal", http.StatusOK, s.journal))
	mux.HandleFunc("POST /v1/journal/batch", s.journalBatch)
	// health
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, fencing.Errorf(fencing.CodeNotFound, "no endpoint %s %s; see docs/api.md", r.Method, r.URL.Path))
	})
	return s.recoverer(mux)
}

// recoverer turns a handler panic into a 500 with a code word; the panic is a
// bug, logged with its request.
func (s *Server) recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.lg.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
				api.WriteError(w, fencing.Errorf(fencing.CodeInternal, "internal error; see the coordinator log"))
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// fail writes err and logs it when it is not the caller's fault.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	if r.Context().Err() != nil {
		// The caller went away (a long poll it cancelled): nobody to answer.
		s.lg.Debug("request abandoned by the caller", "op", op, "path", r.URL.Path)
		return
	}
	code := fencing.CodeOf(err)
	s.metrics.result(op, code)
	switch code {
	case fencing.CodeInternal, fencing.CodeNoQuorum, fencing.CodeUnavailable:
		s.lg.Error("request failed", "op", op, "path", r.URL.Path, "code", code, "error", err)
	default:
		s.lg.Debug("request refused", "op", op, "path", r.URL.Path, "code", code, "error", err)
	}
	api.WriteError(w, err)
}

func (s *Server) ok(w http.ResponseWriter, op string, status int, v any) {
	s.metrics.result(op, "ok")
	if v == nil {
		w.WriteHeader(status)
		return
	}
	api.WriteJSON(w, status, v)
}

func (s *Server) listValidators(w http.ResponseWriter, r *http.Request) {
	sts, err := s.st.Statuses(r.Context())
	if err != nil {
		s.fail(w, r, "status", err)
		return
	}
	if sts == nil {
		sts = []fencing.Status{}
	}
	api.WriteJSON(w, http.StatusOK, api.StatusResponse{Validators: sts})
}

func (s *Server) getValidator(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, "status", err)
		return
	}
	st, err := s.st.Status(r.Context(), id)
	if err != nil {
		s.fail(w, r, "status", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, st)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.fail(w, r, "events", fencing.Errorf(fencing.CodeBadRequest, "limit %q must be a non-negative integer", v))
			return
		}
		limit = n
	}
	id, err := queryID(r)
	if err != nil {
		s.fail(w, r, "events", err)
		return
	}
	evs, err := s.st.Events(r.Context(), id, limit)
	if err != nil {
		s.fail(w, r, "events", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, api.EventsResponse{Events: evs})
}

func (s *Server) journalList(w http.ResponseWriter, r *http.Request) {
	id, err := queryID(r)
	if err != nil {
		s.fail(w, r, "journal_list", err)
		return
	}
	entries, err := s.st.JournalEntries(r.Context(), id)
	if err != nil {
		s.fail(w, r, "journal_list", err)
		return
	}
	if entries == nil {
		entries = []fencing.JournalEntry{}
	}
	api.WriteJSON(w, http.StatusOK, api.JournalListResponse{Entries: entries})
}

// watchEpoch is the sidecar's long poll: ?after=REV&wait=30s.
func (s *Server) watchEpoch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after int64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.fail(w, r, "watch", fencing.Errorf(fencing.CodeBadRequest, "after %q must be a non-negative revision", v))
			return
		}
		after = n
	}
	wait := 30 * time.Second
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			s.fail(w, r, "watch", fencing.Errorf(fencing.CodeBadRequest, "wait %q must be a non-negative duration such as 30s", v))
			return
		}
		wait = d
	}
	// A client cannot know this replica's limit: a longer wait is cut to it.
	wait = min(wait, s.maxWait)
	if id, ok, err := s.sidecar(r); err != nil {
		s.fail(w, r, "watch", err)
		return
	} else if ok {
		vid, err := pathID(r)
		if err == nil {
			err = id.PermitsValidator(vid)
		}
		if err != nil {
			s.fail(w, r, "watch", err)
			return
		}
	}
	extendWrite(w, wait)
	vid, err := pathID(r)
	if err != nil {
		s.fail(w, r, "watch", err)
		return
	}
	ep, rev, err := s.st.WatchEpoch(r.Context(), vid, after, wait)
	if err != nil {
		s.fail(w, r, "watch", err)
		return
	}
	api.WriteJSON(w, http.StatusOK, api.EpochResponse{Epoch: ep, Revision: rev})
}

// journalBatch journals the requests of several validators at once (one
// sidecar's batch): the caller is authenticated once, each request is
// validated and authorized once, here at the edge, and the valid ones go to
// the Journaler's group commit together; each is answered in order.
func (s *Server) journalBatch(w http.ResponseWriter, r *http.Request) {
	var req api.JournalBatchRequest
	if err := api.DecodeJSON(w, r, &req); err != nil {
		s.fail(w, r, "journal", err)
		return
	}
	if n := len(req.Requests); n == 0 || n > api.MaxJournalBatch {
		s.fail(w, r, "journal", fencing.Errorf(fencing.CodeBadRequest, "a journal batch holds 1 to %d requests, got %d", api.MaxJournalBatch, n))
		return
	}
	id, authOn, err := s.sidecar(r)
	if err != nil {
		s.fail(w, r, "journal", err)
		return
	}
	entries, errs := s.journalAll(r.Context(), id, authOn, req.Requests)
	out := api.JournalBatchResponse{Results: make([]api.JournalResult, len(req.Requests))}
	for i, err := range errs {
		if err != nil {
			s.metrics.result("journal", fencing.CodeOf(err))
			body := api.ErrorBody(err)
			out.Results[i].Error = &body
			continue
		}
		s.metrics.result("journal", "ok")
		out.Results[i].Entry = &entries[i]
	}
	api.WriteJSON(w, http.StatusOK, out)
}

// journalAll journals rs for the sidecar id (when authentication is on):
// each request must be valid and its lease id's own (Identity.Permits); the
// others are refused alone and never reach the store.
func (s *Server) journalAll(ctx context.Context, id fencing.Identity, authOn bool, rs []fencing.JournalRequest) ([]fencing.JournalEntry, []error) {
	entries, errs := make([]fencing.JournalEntry, len(rs)), make([]error, len(rs))
	valid := make([]store.ValidJournalRequest, 0, len(rs))
	at := make([]int, 0, len(rs))
	for i, jr := range rs {
		if authOn {
			if errs[i] = id.Permits(jr.Lease.Holder, jr.Lease.Sidecar, jr.Lease.Validator); errs[i] != nil {
				continue
			}
		}
		v, err := store.ValidateJournalRequest(jr)
		if errs[i] = err; err != nil {
			continue
		}
		valid, at = append(valid, v), append(at, i)
	}
	if len(valid) == 0 {
		return entries, errs
	}
	es, jerrs := s.journaler.JournalAll(ctx, valid)
	for k, i := range at {
		entries[i], errs[i] = es[k], jerrs[k]
	}
	return entries, errs
}

// Server timeouts (Run): a request's headers and body must arrive within
// these, and a response must be written within writeTimeout, except where a
// handler extends it for a long poll or a bump it waits for.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
)

// extendWrite lets a handler that waits up to wait answer after it.
func extendWrite(w http.ResponseWriter, wait time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + writeTimeout))
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.st.Ping(ctx); err != nil {
		api.WriteError(w, err)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// handle serves a JSON endpoint: decode the body into Req, run do, and
// answer its result with status (nothing with 204) or its refusal.
func handle[Req any](s *Server, op string, status int, do func(r *http.Request, req Req) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := api.DecodeJSON(w, r, &req); err != nil {
			s.fail(w, r, op, err)
			return
		}
		res, err := do(r, req)
		if err != nil {
			s.fail(w, r, op, err)
			return
		}
		if status == http.StatusNoContent {
			res = nil
		}
		s.ok(w, op, status, res)
	}
}

func (s *Server) addValidator(r *http.Request, req api.AddValidatorRequest) (any, error) {
	ep, err := s.st.AddValidator(r.Context(), req.Validator, req.Holder, change(r, req.Operator, req.Reason))
	return api.EpochResponse{Epoch: ep}, err
}

func (s *Server) freeze(r *http.Request, req api.FreezeRequest) (any, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, err
	}
	ep, err := s.st.Freeze(r.Context(), id, req.ExpectedEpoch, change(r, req.Operator, req.Reason))
	if err == nil {
		s.reconciler.kick(id)
	}
	return api.EpochResponse{Epoch: ep}, err
}

func (s *Server) audit(r *http.Request, req api.AuditReport) (any, error) {
	if req.Kind != "journal" && req.Kind != "chain" && req.Kind != "readiness" {
		return nil, fencing.Errorf(fencing.CodeBadRequest, "audit kind %q must be journal, chain or readiness", req.Kind)
	}
	if req.Duplicates < 0 || len(req.Detail) > 16<<10 {
		return nil, fencing.Errorf(fencing.CodeBadRequest, "duplicates must be >= 0 and detail at most 16 KiB")
	}
	c := change(r, req.Operator, req.Kind+" audit")
	ev := fencing.Event{
		Kind: fencing.EventAudit, By: c.By, Comment: c.Comment, Reason: c.Reason,
		Detail: fmt.Sprintf("%d duplicates, incomplete=%t; %s", req.Duplicates, req.Incomplete, req.Detail),
	}
	return nil, s.st.RecordAudit(r.Context(), store.AuditResult{Kind: req.Kind, Duplicates: req.Duplicates, Incomplete: req.Incomplete, By: c.By}, ev)
}

func (s *Server) acquire(r *http.Request, req api.AcquireRequest) (any, error) {
	if err := s.authorizeLease(r, req.Holder, req.Sidecar, req.Validator); err != nil {
		return nil, err
	}
	if len(req.Problems) > 16 || len(req.Version) > 64 {
		return nil, fencing.Errorf(fencing.CodeBadRequest, "acquire request: at most 16 problems and a version of at most 64 characters")
	}
	g, err := s.st.Acquire(r.Context(), req.Validator, req.Holder, req.Sidecar, req.TTLSeconds)
	switch fencing.CodeOf(err) {
	case fencing.CodeFenced, fencing.CodeLeaseHeld, fencing.CodeStaleEpoch:
	default:
		if err != nil {
			return nil, err
		}
	}
	// The request was valid: keep it as the sidecar's presence, which a
	// bump's preflight reads. It is advisory: a failure to record it does not
	// refuse the lease.
	if perr := s.st.RecordPresence(r.Context(), req.Validator, fencing.Presence{Holder: req.Holder, Sidecar: req.Sidecar, Problems: req.Problems, Version: req.Version}); perr != nil {
		s.lg.Warn("could not record a sidecar's presence", "validator", req.Validator, "sidecar", req.Sidecar, "error", perr)
	}
	return api.GrantResponse{Lease: g.Lease, Watermark: g.Watermark}, err
}

func (s *Server) renew(r *http.Request, req api.LeaseRequest) (any, error) {
	if err := s.authorizeLease(r, req.Lease.Holder, req.Lease.Sidecar, req.Lease.Validator); err != nil {
		return nil, err
	}
	l, err := s.st.Renew(r.Context(), req.Lease, req.Watermark)
	return api.LeaseRequest{Lease: l}, err
}

func (s *Server) release(r *http.Request, req api.LeaseRequest) (any, error) {
	if err := s.authorizeLease(r, req.Lease.Holder, req.Lease.Sidecar, req.Lease.Validator); err != nil {
		return nil, err
	}
	return nil, s.st.Release(r.Context(), req.Lease, req.Watermark)
}

func (s *Server) checkLease(r *http.Request, req api.LeaseRequest) (any, error) {
	if err := s.authorizeLease(r, req.Lease.Holder, req.Lease.Sidecar, req.Lease.Validator); err != nil {
		return nil, err
	}
	return nil, s.st.CheckLease(r.Context(), req.Lease)
}

func (s *Server) journal(r *http.Request, req fencing.JournalRequest) (any, error) {
	id, authOn, err := s.sidecar(r)
	if err != nil {
		return nil, err
	}
	es, errs := s.journalAll(r.Context(), id, authOn, []fencing.JournalRequest{req})
	return api.JournalResponse{Entry: es[0]}, errs[0]
}
