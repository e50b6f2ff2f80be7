package sidecar

import (
	"encoding/hex"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/validator-fencing/fencing/internal/api"
	"github.com/validator-fencing/fencing/internal/fencing"
)

// Server is the sidecar's HTTP surface: the signing APIs (for the validator,
// on localhost) and health and metrics.
type Server struct {
	signer   *Signer
	lg       hclog.Logger
	gatherer prometheus.Gatherer
	// listenHost is the signing listener's host when it is not a loopback
	// address: requests addressed to it are accepted too.
	listenHost string
	// bareDigest serves POST /v1/sign/digest (Config.BareDigest).
	bareDigest bool
}

// SignRequest is the native API's request (POST /v1/sign).
type SignRequest struct {
	Validator fencing.ValidatorID `json:"validator"`
	Height    uint64              `json:"height"`
	Round     uint64              `json:"round"`
	Step      fencing.Step        `json:"step"`
	Digest    fencing.Digest      `json:"digest"`
}

// DigestSignRequest is the body of POST /v1/sign/digest: a bare 32-byte
// digest that carries no HRS (the Besu plugin's SecurityModule.sign).
type DigestSignRequest struct {
	Validator fencing.ValidatorID `json:"validator"`
	Digest    fencing.Digest      `json:"digest"`
}

// SignResponse is a signature (65 bytes R‖S‖V hex, V 0 or 1) and its epoch.
type SignResponse struct {
	Signature string `json:"signature"`
	Epoch     uint64 `json:"epoch"`
}

// SigningHandler serves the signing APIs and health endpoints, only to
// requests addressed to this host (localOnly).
func (s *Server) SigningHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/sign", s.sign)
	mux.HandleFunc("POST /v1/sign/digest", s.signDigest)
	s.typedRoutes(mux)
	s.web3signerRoutes(mux)
	s.clefRoutes(mux) // POST / only; the catch-all below answers everything else
	s.healthRoutes(mux)
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, fencing.Errorf(fencing.CodeNotFound, "no endpoint %s %s on the sidecar", r.Method, r.URL.Path))
	})
	return localOnly(mux, s.listenHost)
}

// localOnly refuses what a web page in a browser on this host could send:
// a request addressed to another host name (DNS rebinding: evil.example
// resolving to 127.0.0.1), one carrying an Origin (browsers set it on
// cross-site requests; validator clients do not), and a POST whose body is
// not declared as JSON (a browser sends text/plain or form data cross-site
// without asking first).
func localOnly(h http.Handler, listenHost string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		host = strings.Trim(host, "[]")
		ip := net.ParseIP(host)
		switch {
		case !(host == "localhost" || (ip != nil && ip.IsLoopback()) || (listenHost != "" && host == listenHost)):
			api.WriteError(w, fencing.Errorf(fencing.CodeForbidden, "request addressed to host %.80q: the signing API answers only requests to localhost or its listen address", r.Host))
		case r.Header.Get("Origin") != "":
			api.WriteError(w, fencing.Errorf(fencing.CodeForbidden, "request from a web page (Origin %.80q): the signing API is not for browsers", r.Header.Get("Origin")))
		case r.Method == http.MethodPost && !isJSON(r.Header.Get("Content-Type")):
			api.WriteError(w, fencing.Errorf(fencing.CodeBadRequest, "Content-Type %.80q: send application/json", r.Header.Get("Content-Type")))
		default:
			h.ServeHTTP(w, r)
		}
	})
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// MetricsHandler serves only health and metrics, for a listener that may be
// reachable from outside the pod (Prometheus, kubelet probes).
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	s.healthRoutes(mux)
	mux.Handle("GET /metrics", s.metricsHandler())
	return mux
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{})
}

func (s *Server) healthRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /upcheck", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("OK")) })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /healthcheck", s.healthcheck)
}

// holding reports per validator whether it holds a usable lease.
func (s *Server) holding() (all bool, checks []map[string]string) {
	all = true
	for _, v := range s.signer.Validators() {
		held, epoch, rem := v.Keeper.Status()
		st := "UP"
		if !held {
			st, all = "DOWN", false
		}
		checks = append(checks, map[string]string{"id": string(v.ID), "status": st, "epoch": fmt.Sprint(epoch), "lease_remaining": rem.Round(time.Millisecond).String()})
	}
	return all, checks
}

// readyz: ready only while every validator holds a lease.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if ok, checks := s.holding(); !ok {
		api.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"code": fencing.CodeFenced, "message": "not every validator holds a lease", "checks": checks})
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// healthcheck is Web3Signer's: 200 {"status":"UP"} or 503 while fenced.
func (s *Server) healthcheck(w http.ResponseWriter, r *http.Request) {
	ok, checks := s.holding()
	status, code := "UP", http.StatusOK
	if !ok {
		status, code = "DOWN", http.StatusServiceUnavailable
	}
	api.WriteJSON(w, code, map[string]any{"status": status, "checks": checks, "outcome": status})
}

func (s *Server) sign(w http.ResponseWriter, r *http.Request) {
	var req SignRequest
	if err := api.DecodeJSON(w, r, &req); err != nil {
		api.WriteError(w, err)
		return
	}
	res, err := s.signer.SignHRS(r.Context(), req.Validator, fencing.HRS{Height: req.Height, Round: req.Round, Step: req.Step}, req.Digest)
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, SignResponse{Signature: "0x" + hex.EncodeToString(res.Signature), Epoch: res.Epoch})
}

// signDigest signs a bare digest under the epoch fence alone
// (Signer.SignDigest): no HRS, so no watermark and no journal entry. It lets
// a localhost client sign any digest, including a seal's that /v1/sign and
// the typed helpers would send through the watermark, so it answers only
// when the sidecar was started with --bare-digest.
func (s *Server) signDigest(w http.ResponseWriter, r *http.Request) {
	if !s.bareDigest {
		api.WriteError(w, fencing.Errorf(fencing.CodeForbidden, "bare digest signing is off on this sidecar; start fence-sidecar with --bare-digest to serve the Besu plugin (docs/besu-plugin.md)"))
		return
	}
	var req DigestSignRequest
	if err := api.DecodeJSON(w, r, &req); err != nil {
		api.WriteError(w, err)
		return
	}
	if req.Digest == (fencing.Digest{}) {
		api.WriteError(w, fencing.Errorf(fencing.CodeBadRequest, `request body needs "digest": the 32-byte hash to sign as 0x-hex, not zero`))
		return
	}
	res, err := s.signer.SignDigest(r.Context(), req.Validator, req.Digest)
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, signResponse(res))
}

// refuse answers a refused signature with its code word (412 for fencing
// refusals, 400 for bad input).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	s.lg.Debug("signature refused", "path", r.URL.Path, "code", fencing.CodeOf(err), "error", err)
	api.WriteError(w, err)
}

// leaseCollector reports each validator's lease at scrape time.
type leaseCollector struct{ signer *Signer }

var (
	leaseHeldDesc = prometheus.NewDesc("fencing_sidecar_lease_held", "1 while the sidecar holds a usable lease for the validator.", []string{"validator"}, nil)
	leaseEpochDes = prometheus.NewDesc("fencing_sidecar_lease_epoch", "Epoch of the lease the sidecar holds (0: none).", []string{"validator"}, nil)
	leaseRemDesc  = prometheus.NewDesc("fencing_sidecar_lease_seconds_remaining", "Seconds until the local lease deadline.", []string{"validator"}, nil)
	readyDesc     = prometheus.NewDesc("fencing_sidecar_ready", "1 while the sidecar could sign for the validator if granted: its key is loaded and the coordinator answered within one lease TTL (a standby reports it too).", []string{"validator"}, nil)
)

func (c leaseCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- leaseHeldDesc
	ch <- leaseEpochDes
	ch <- leaseRemDesc
	ch <- readyDesc
}

func (c leaseCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c.signer.Validators() {
		held, epoch, rem := v.Keeper.Status()
		h := 0.0
		if held {
			h = 1
		}
		ch <- prometheus.MustNewConstMetric(leaseHeldDesc, prometheus.GaugeValue, h, string(v.ID))
		ch <- prometheus.MustNewConstMetric(leaseEpochDes, prometheus.GaugeValue, float64(epoch), string(v.ID))
		ch <- prometheus.MustNewConstMetric(leaseRemDesc, prometheus.GaugeValue, rem.Seconds(), string(v.ID))
		r := 0.0
		if v.Keeper.Ready() {
			r = 1
		}
		ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, r, string(v.ID))
	}
}
