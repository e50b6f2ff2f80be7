package fencing

import (
	"errors"
	"fmt"
)

// Code is the word that travels over the wire with every refusal. Callers
// branch on the code, never on the message.
type Code string

// The code words of docs/api.md.
const (
	// CodeFenced: no lease, or the epoch is not this holder's.
	CodeFenced Code = "fenced"
	// CodeStaleEpoch: the request names an epoch that is no longer active.
	CodeStaleEpoch Code = "stale_epoch"
	// CodeWatermark: the HRS is at or below the watermark with another digest.
	CodeWatermark Code = "watermark"
	// CodeJournal: the quorum journal write failed.
	CodeJournal Code = "journal"
	// CodeBadRequest: the request itself is malformed.
	CodeBadRequest Code = "bad_request"
	// CodeNotFound: the named validator (or lease) does not exist.
	CodeNotFound Code = "not_found"
	// CodeConflict: the expected epoch or state did not match, or another
	// operation on the same validator is in progress.
	CodeConflict Code = "conflict"
	// CodeLeaseHeld: another lease of the epoch is live (at most one sidecar
	// holds a lease at a time); retry once it is released or expired.
	CodeLeaseHeld Code = "lease_held"
	// CodeNotReady: a bump's preflight found no ready sidecar of the target
	// holder; nothing changed (force it, or fix the standby).
	CodeNotReady Code = "not_ready"
	// CodeNoQuorum: etcd could not commit (no leader, no quorum, timeout).
	CodeNoQuorum Code = "no_quorum"
	// CodeUnavailable: the coordinator or another dependency is unreachable.
	CodeUnavailable Code = "unavailable"
	// CodeUnauthorized: the caller did not prove who it is.
	CodeUnauthorized Code = "unauthorized"
	// CodeForbidden: the caller is known but may not do this.
	CodeForbidden Code = "forbidden"
	// CodeInProgress: the operation was accepted and continues in the
	// background (a bump still draining when the caller stopped waiting).
	CodeInProgress Code = "in_progress"
	// CodeInternal: a bug; the message says what.
	CodeInternal Code = "internal"
)

// Known reports whether c is one of the code words above.
func (c Code) Known() bool {
	switch c {
	case CodeFenced, CodeStaleEpoch, CodeWatermark, CodeJournal, CodeBadRequest,
		CodeNotFound, CodeConflict, CodeLeaseHeld, CodeNotReady, CodeNoQuorum, CodeUnavailable, CodeUnauthorized,
		CodeForbidden, CodeInProgress, CodeInternal:
		return true
	}
	return false
}

// Error is a refusal with its code word and a sentence an operator can act on.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Is makes errors.Is(err, ErrFenced) true for any *Error with the same code.
func (e *Error) Is(target error) bool {
	var t *Error
	return errors.As(target, &t) && t.Code == e.Code && t.Message == ""
}

// Errorf returns an *Error with the given code.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Sentinels to branch on with errors.Is; they match any *Error of their code.
// (Code words without a sentinel are branched on with CodeOf.)
var (
	ErrFenced    = &Error{Code: CodeFenced}
	ErrWatermark = &Error{Code: CodeWatermark}
	ErrConflict  = &Error{Code: CodeConflict}
)

// CodeOf returns the code word of err: its own for an *Error (anywhere in the
// chain), CodeInternal otherwise.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	var w *WatermarkError
	if errors.As(err, &w) {
		return CodeWatermark
	}
	return CodeInternal
}

// WatermarkError is a refusal because the requested HRS is not above the
// signed watermark (or equals it with another digest).
type WatermarkError struct {
	Signed    HRS
	Requested HRS
	// SameHRS is true when Requested equals Signed but the digest differs.
	SameHRS bool
	// Epoch and Sidecar say who signed Signed, when known.
	Epoch   uint64
	Sidecar string
}

func (e *WatermarkError) Error() string {
	by := ""
	if e.Sidecar != "" {
		by = fmt.Sprintf(" (by %s under epoch %d)", e.Sidecar, e.Epoch)
	}
	if e.SameHRS {
		return fmt.Sprintf("watermark: %s was already signed with a different digest%s; if that signature never reached the chain (its signer died before publishing it), the height stays blocked until an operator abandons it: docs/runbook.md, stuck height", e.Requested, by)
	}
	return fmt.Sprintf("watermark: %s is not above the signed watermark %s%s", e.Requested, e.Signed, by)
}

// Is makes errors.Is(err, ErrWatermark) true.
func (e *WatermarkError) Is(target error) bool { return target == ErrWatermark }
