package fencing

import "time"

// Records that travel over the API: pure data, read from and written to the
// store by internal/store, encoded as JSON by internal/api.

// LeaseRecord describes one lease: live ones come from leases/, past ones
// from lessees/ and drained/.
type LeaseRecord struct {
	Sidecar    string    `json:"sidecar"`
	Holder     string    `json:"holder"`
	Epoch      uint64    `json:"epoch"`
	AcquiredAt time.Time `json:"acquired_at"`
	RenewedAt  time.Time `json:"renewed_at,omitzero"`
	TTLSeconds int64     `json:"ttl_seconds"`
}

// Drained says how a lease of a revoked epoch ended.
type Drained struct {
	Sidecar string    `json:"sidecar"`
	Holder  string    `json:"holder"`
	Epoch   uint64    `json:"epoch"`
	How     string    `json:"how"` // "released" or "expired"
	At      time.Time `json:"at"`
}

// How a lease ended.
const (
	DrainReleased = "released"
	DrainExpired  = "expired"
)

// Status is everything the operator sees of one validator, read in one
// consistent snapshot.
type Status struct {
	ID        ValidatorID   `json:"validator"`
	Epoch     Epoch         `json:"epoch"`
	Revision  int64         `json:"revision"`
	Leases    []LeaseRecord `json:"leases"`
	Watermark *Watermark    `json:"watermark,omitempty"`
	Bump      *Bump         `json:"bump,omitempty"`
}

// JournalRequest asks to record one signature intent under a lease.
type JournalRequest struct {
	Lease  Lease  `json:"lease"`
	HRS    HRS    `json:"hrs"`
	Digest Digest `json:"digest"`
}

// Validate reports a request that can never be journaled.
func (r JournalRequest) Validate() error {
	if err := r.Lease.Validate(); err != nil {
		return err
	}
	return r.HRS.Validate()
}

// TimelineEntry is one step of a bump as the operator sees it.
type TimelineEntry struct {
	At     time.Time `json:"at"`
	Step   string    `json:"step"`
	Detail string    `json:"detail,omitempty"`
}

// BumpResult is what a bump shows when it finished or the caller stopped
// waiting.
type BumpResult struct {
	Bump     Bump            `json:"bump"`
	Done     bool            `json:"done"`
	Epoch    Epoch           `json:"epoch"`
	Timeline []TimelineEntry `json:"timeline"`
}

// HolderRecord is a known holder: registered by an operator (By, Reason),
// or learnt from a validator or a sidecar (LearntFrom).
type HolderRecord struct {
	Holder       string    `json:"holder"`
	RegisteredAt time.Time `json:"registered_at,omitzero"`
	By           string    `json:"by,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	Comment      string    `json:"comment,omitempty"`
	LearntFrom   string    `json:"learnt_from,omitempty"`
}

// Presence is a sidecar's report of itself for one validator, sent with
// every lease request, held or not: a standby reports that it could take
// over.
type Presence struct {
	Holder  string `json:"holder"`
	Sidecar string `json:"sidecar"`
	// Problems lists why it could not sign if granted now (its local
	// journal refuses, ...); empty means ready.
	Problems   []string  `json:"problems,omitempty"`
	Version    string    `json:"version,omitempty"`
	ReportedAt time.Time `json:"reported_at"`
}

// Ready reports whether p says its sidecar could sign if granted.
func (p Presence) Ready() bool { return len(p.Problems) == 0 }
