// Package api is the coordinator's HTTP API: the wire types, the strict
// request decoding and error encoding shared by every server here, and the
// client used by the sidecar and fencectl. docs/api.md lists every endpoint.
//
// Every error response is {"code": <code word>, "message": <sentence>} with
// the HTTP status of StatusOf; callers branch on the code.
package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 64 << 10

// ErrorResponse is the body of every non-2xx response.
type ErrorResponse struct {
	Code    fencing.Code `json:"code"`
	Message string       `json:"message"`
}

// AddValidatorRequest registers a validator (POST /v1/validators).
type AddValidatorRequest struct {
	Validator fencing.ValidatorID `json:"validator"`
	Holder    string              `json:"holder"`
	Operator  string              `json:"operator"`
	Reason    string              `json:"reason"`
}

// FreezeRequest revokes the active epoch (POST /v1/validators/{id}/freeze).
type FreezeRequest struct {
	ExpectedEpoch uint64 `json:"expected_epoch,omitempty"`
	Operator      string `json:"operator"`
	Reason        string `json:"reason"`
}

// BumpRequest moves a validator to a new holder (POST /v1/validators/{id}/bump).
type BumpRequest struct {
	// ID, when set (16-64 hex digits), makes the request idempotent: a retry
	// with the same ID (on this or another replica) answers with that bump
	// instead of a conflict, whether it is still running or done.
	ID            string   `json:"id,omitempty"`
	ExpectedEpoch uint64   `json:"expected_epoch,omitempty"`
	To            string   `json:"to"`
	Operator      string   `json:"operator"`
	Reason        string   `json:"reason"`
	Wait          Duration `json:"wait,omitzero"`
	// FirstSignatureWait, after the grant, waits this long more (within
	// Wait) for the new holder's first journaled signature, which the
	// timeline then shows.
	FirstSignatureWait Duration `json:"first_signature_wait,omitzero"`
	// Force bumps although no sidecar of To reported ready (the holder must
	// still be known).
	Force bool `json:"force,omitempty"`
	// DryRun answers the plan and its checks and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// BumpPlan is a bump's dry run: what it would do and what was checked.
type BumpPlan struct {
	Validator fencing.ValidatorID `json:"validator"`
	From      fencing.Epoch       `json:"from"`
	To        string              `json:"to"`
	Leases    []LiveLease         `json:"leases"`
	Checks    []Check             `json:"checks"`
	Steps     []string            `json:"steps"`
	Standbys  []fencing.Presence  `json:"standbys"`
}

// LiveLease is a live lease and the time before etcd expires it.
type LiveLease struct {
	Holder    string   `json:"holder"`
	Sidecar   string   `json:"sidecar"`
	ExpiresIn Duration `json:"expires_in"`
}

// Check is one preflight check of a bump.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// BumpProgress is one line of a bump's progress stream
// (GET /v1/validators/{id}/bumps/{bump}/progress, NDJSON): a timeline step
// as it commits, the leases still draining (about once a second), or the
// end.
type BumpProgress struct {
	Step     *fencing.TimelineEntry `json:"step,omitempty"`
	Draining []LiveLease            `json:"draining,omitempty"`
	Done     *fencing.BumpResult    `json:"done,omitempty"`
	Error    *ErrorResponse         `json:"error,omitempty"`
}

// AbandonRequest declares that the signature at an HRS never reached the
// chain (POST /v1/validators/{id}/abandon).
type AbandonRequest struct {
	Height   uint64       `json:"height"`
	Round    uint64       `json:"round"`
	Step     fencing.Step `json:"step"`
	Operator string       `json:"operator"`
	Reason   string       `json:"reason"`
}

// ChangeRequest is a change with no parameters but who and why
// (DELETE /v1/validators/{id}, POST /v1/holders).
type ChangeRequest struct {
	Holder   string `json:"holder,omitempty"`
	Operator string `json:"operator"`
	Reason   string `json:"reason"`
}

// HoldersResponse lists the known holders (GET /v1/holders).
type HoldersResponse struct {
	Holders []fencing.HolderRecord `json:"holders"`
}

// EpochResponse carries an epoch record and its etcd revision.
type EpochResponse struct {
	Epoch    fencing.Epoch `json:"epoch"`
	Revision int64         `json:"revision,omitempty"`
}

// StatusResponse lists validators (GET /v1/validators).
type StatusResponse struct {
	Validators []fencing.Status `json:"validators"`
}

// EventsResponse is the history (GET /v1/events).
type EventsResponse struct {
	Events []fencing.Event `json:"events"`
}

// JournalListResponse is the quorum journal (GET /v1/journal).
type JournalListResponse struct {
	Entries []fencing.JournalEntry `json:"entries"`
}

// AcquireRequest asks for a lease (POST /v1/leases).
type AcquireRequest struct {
	Validator  fencing.ValidatorID `json:"validator"`
	Holder     string              `json:"holder"`
	Sidecar    string              `json:"sidecar"`
	TTLSeconds int64               `json:"ttl_seconds"`
	// Problems says why the sidecar could not sign if granted now; the
	// coordinator keeps it, with Version, as the sidecar's presence (what a
	// bump's preflight checks), whether or not the lease is granted.
	Problems []string `json:"problems,omitempty"`
	Version  string   `json:"version,omitempty"`
}

// GrantResponse is a granted lease and the quorum watermark to start above.
type GrantResponse struct {
	Lease     fencing.Lease      `json:"lease"`
	Watermark *fencing.Watermark `json:"watermark,omitempty"`
}

// LeaseRequest names a lease to renew, release or check. Watermark is a
// lease-mode sidecar's local watermark: renew and release raise the quorum
// watermark to it (never lower it).
type LeaseRequest struct {
	Lease     fencing.Lease      `json:"lease"`
	Watermark *fencing.Watermark `json:"watermark,omitempty"`
}

// JournalResponse is a committed journal entry.
type JournalResponse struct {
	Entry fencing.JournalEntry `json:"entry"`
}

// MaxJournalBatch bounds the requests of one POST /v1/journal/batch.
const MaxJournalBatch = 256

// JournalBatchRequest carries journal requests of several validators in one
// HTTP request (POST /v1/journal/batch); the coordinator commits them with
// group commit and answers each on its own.
type JournalBatchRequest struct {
	Requests []fencing.JournalRequest `json:"requests"`
}

// JournalResult is one answer of a batch: the entry, or the refusal.
type JournalResult struct {
	Entry *fencing.JournalEntry `json:"entry,omitempty"`
	Error *ErrorResponse        `json:"error,omitempty"`
}

// JournalBatchResponse answers a JournalBatchRequest in its order.
type JournalBatchResponse struct {
	Results []JournalResult `json:"results"`
}

// AuditReport is what fencectl audit posts after a run (POST /v1/audits); it
// sets fencing_audit_duplicates and is kept in the history as evidence.
type AuditReport struct {
	Kind       string `json:"kind"` // "journal" or "chain"
	Duplicates int    `json:"duplicates"`
	Incomplete bool   `json:"incomplete"`
	Operator   string `json:"operator"`
	Detail     string `json:"detail"`
}

// Duration is a time.Duration written as "30s" in JSON.
type Duration struct{ time.Duration }

// MarshalText writes "30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a Go duration such as "30s" or "2m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil || v < 0 {
		return fmt.Errorf("duration %q: want a non-negative Go duration such as 30s or 2m", string(b))
	}
	d.Duration = v
	return nil
}

// IsZero lets omitzero drop an unset duration.
func (d Duration) IsZero() bool { return d.Duration == 0 }

// DecodeJSON reads exactly one JSON object of at most MaxBodyBytes into v,
// rejecting unknown fields and trailing data, and returns a bad_request
// error that says what to fix.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fencing.Errorf(fencing.CodeBadRequest, "request body must hold exactly one JSON object; found more after it")
	}
	return nil
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var fe *fencing.Error
	switch {
	case errors.As(err, &mbe):
		return fencing.Errorf(fencing.CodeBadRequest, "request body is larger than %d bytes", MaxBodyBytes)
	case errors.Is(err, io.EOF):
		return fencing.Errorf(fencing.CodeBadRequest, "request body is empty; send a JSON object")
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return fencing.Errorf(fencing.CodeBadRequest, "request body is not valid JSON: %v", err)
	case errors.As(err, &te):
		return fencing.Errorf(fencing.CodeBadRequest, "request body field %q must be a %s, not %s", te.Field, te.Type, te.Value)
	case errors.As(err, &fe):
		return fe
	default:
		// Unknown fields and text-unmarshal errors (digests, durations) land
		// here with a message naming the field.
		return fencing.Errorf(fencing.CodeBadRequest, "request body: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
}

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		WriteError(w, fencing.Errorf(fencing.CodeInternal, "encode response: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// WriteError writes err as an ErrorResponse with its code's status. Errors
// without a code are internal: their text is sent (it never holds secrets),
// and the caller logs them.
func WriteError(w http.ResponseWriter, err error) {
	body := ErrorBody(err)
	WriteJSON(w, StatusOf(body.Code), body)
}

// ErrorBody is err as it travels: its code word and its sentence.
func ErrorBody(err error) ErrorResponse {
	msg := err.Error()
	var fe *fencing.Error
	if errors.As(err, &fe) {
		msg = fe.Message
	}
	return ErrorResponse{Code: fencing.CodeOf(err), Message: msg}
}

// StatusOf is the HTTP status a response carrying code c uses.
func StatusOf(c fencing.Code) int {
	switch c {
	case fencing.CodeBadRequest:
		return http.StatusBadRequest
	case fencing.CodeUnauthorized:
		return http.StatusUnauthorized
	case fencing.CodeForbidden:
		return http.StatusForbidden
	case fencing.CodeNotFound:
		return http.StatusNotFound
	case fencing.CodeConflict, fencing.CodeLeaseHeld, fencing.CodeNotReady:
		return http.StatusConflict
	case fencing.CodeFenced, fencing.CodeStaleEpoch, fencing.CodeWatermark, fencing.CodeJournal:
		return http.StatusPreconditionFailed
	case fencing.CodeInProgress:
		return http.StatusAccepted
	case fencing.CodeNoQuorum, fencing.CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
