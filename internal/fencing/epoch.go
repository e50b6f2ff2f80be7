package fencing

import (
	"encoding/hex"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/sha3"
)

// State is the state of a validator's current epoch.
type State string

// The three states of docs/architecture.md (the epoch state machine).
const (
	StateActive   State = "active"
	StateRevoking State = "revoking"
	StateFenced   State = "fenced"
)

// Epoch is the record stored at validators/<id>/epoch.
type Epoch struct {
	Epoch     uint64    `json:"epoch"`
	State     State     `json:"state"`
	Holder    string    `json:"holder"`
	UpdatedAt time.Time `json:"updated_at"`
	By        string    `json:"by"`
	Reason    string    `json:"reason"`
	Comment   string    `json:"comment,omitempty"`
}

// Change says who asks for a transition and why; both are required. By is
// the authenticated principal when the operator API authenticates; Comment
// is then the operator's own free-text name, kept but never trusted.
type Change struct {
	By      string    `json:"by"`
	Reason  string    `json:"reason"`
	Comment string    `json:"comment,omitempty"`
	At      time.Time `json:"at"`
}

// Validate reports a missing operator or reason.
func (c Change) Validate() error {
	var missing []string
	if strings.TrimSpace(c.By) == "" {
		missing = append(missing, "operator (who asks)")
	}
	if strings.TrimSpace(c.Reason) == "" {
		missing = append(missing, "reason (why)")
	}
	if len(missing) > 0 {
		return Errorf(CodeBadRequest, "%s must not be empty", strings.Join(missing, " and "))
	}
	if len(c.By) > 256 || len(c.Comment) > 256 || len(c.Reason) > 1024 {
		return Errorf(CodeBadRequest, "operator must be at most 256 and reason at most 1024 characters")
	}
	return nil
}

// NewEpoch is T1: the first epoch of a new validator, active on holder.
func NewEpoch(holder string, c Change) (Epoch, error) {
	if err := ValidateHolder(holder); err != nil {
		return Epoch{}, err
	}
	if err := c.Validate(); err != nil {
		return Epoch{}, err
	}
	return Epoch{Epoch: 1, State: StateActive, Holder: holder, UpdatedAt: c.At, By: c.By, Reason: c.Reason, Comment: c.Comment}, nil
}

// Freeze is T2: active(N) -> revoking(N). From then on no lease of N is
// granted or renewed and no journal write under N succeeds.
func (e Epoch) Freeze(c Change) (Epoch, error) {
	if err := c.Validate(); err != nil {
		return Epoch{}, err
	}
	if e.State != StateActive {
		return Epoch{}, Errorf(CodeConflict, "epoch %d is %s, only an active epoch can be frozen", e.Epoch, e.State)
	}
	return e.with(StateRevoking, c), nil
}

// Fence is T3: revoking(N) -> fenced(N), once every lease of N is gone. The
// store commits it only with a compare that no lease key of N exists.
func (e Epoch) Fence(c Change) (Epoch, error) {
	if e.State != StateRevoking {
		return Epoch{}, Errorf(CodeConflict, "epoch %d is %s, only a revoking epoch can become fenced", e.Epoch, e.State)
	}
	return e.with(StateFenced, c), nil
}

// Grant is T4: fenced(N) -> active(N+1, holder).
func (e Epoch) Grant(holder string, c Change) (Epoch, error) {
	if err := ValidateHolder(holder); err != nil {
		return Epoch{}, err
	}
	if e.State != StateFenced {
		return Epoch{}, Errorf(CodeConflict, "epoch %d is %s, only a fenced epoch can be granted to a new holder", e.Epoch, e.State)
	}
	n := e.with(StateActive, c)
	n.Epoch = e.Epoch + 1
	n.Holder = holder
	return n, nil
}

func (e Epoch) with(s State, c Change) Epoch {
	e.State = s
	e.UpdatedAt = c.At
	e.By = c.By
	e.Reason = c.Reason
	e.Comment = c.Comment
	return e
}

// AllowsLease reports whether a sidecar of holder may hold a lease under e
// (invariant 1): e is active and held by holder. The error says which.
func (e Epoch) AllowsLease(holder string) error {
	if e.State != StateActive {
		return Errorf(CodeFenced, "epoch %d is %s: no lease is granted until an operator grants a new epoch", e.Epoch, e.State)
	}
	if e.Holder != holder {
		return Errorf(CodeFenced, "epoch %d is held by %s, not %s", e.Epoch, e.Holder, holder)
	}
	return nil
}

// Validate checks a record read back from the store.
func (e Epoch) Validate() error {
	switch e.State {
	case StateActive, StateRevoking, StateFenced:
	default:
		return Errorf(CodeInternal, "epoch record has unknown state %q", e.State)
	}
	if e.Epoch == 0 {
		return Errorf(CodeInternal, "epoch record has epoch 0")
	}
	return ValidateHolder(e.Holder)
}

// Bump is the intent of a bump, stored at validators/<id>/bump from the freeze
// until the grant deletes it in the same transaction. Any coordinator replica
// that finds one resumes it.
type Bump struct {
	ID        string    `json:"id"`
	FromEpoch uint64    `json:"from_epoch"`
	FromHold  string    `json:"from_holder"`
	To        string    `json:"to"`
	By        string    `json:"by"`
	Reason    string    `json:"reason"`
	Comment   string    `json:"comment,omitempty"`
	StartedAt time.Time `json:"started_at"`
}

// Lease is the token a sidecar carries. It is a fencing token, not a secret:
// EpochRevision pins the epoch record (epoch, state and holder) as it was when
// the lease was granted, LeaseRevision pins this lease key's incarnation, and
// Holder and Sidecar name the key (the coordinator checks that they are the
// authenticated caller's). Every transaction that uses the lease compares
// all of them. EtcdLease is the etcd lease the key is attached to since the
// last renewal; a renewal compares it too and returns a token with the new
// one.
type Lease struct {
	Validator     ValidatorID `json:"validator"`
	Epoch         uint64      `json:"epoch"`
	Holder        string      `json:"holder"`
	Sidecar       string      `json:"sidecar"`
	EpochRevision int64       `json:"epoch_revision"`
	LeaseRevision int64       `json:"lease_revision"`
	EtcdLease     int64       `json:"etcd_lease"`
	TTLSeconds    int64       `json:"ttl_seconds"`
}

// Validate reports a token that cannot have been issued by a coordinator.
func (l Lease) Validate() error {
	if err := l.Validator.Required(); err != nil {
		return err
	}
	if err := ValidateHolder(l.Holder); err != nil {
		return err
	}
	if err := ValidateSidecar(l.Sidecar); err != nil {
		return err
	}
	if l.Epoch == 0 || l.EpochRevision <= 0 || l.LeaseRevision <= 0 || l.EtcdLease == 0 {
		return Errorf(CodeBadRequest, "lease token must carry epoch, epoch_revision, lease_revision and etcd_lease from the acquire or last renew response")
	}
	return nil
}

// Watermark is the highest HRS signed for a validator, with its digest.
type Watermark struct {
	HRS
	Digest  Digest `json:"digest"`
	Epoch   uint64 `json:"epoch"`
	Sidecar string `json:"sidecar"`
	// Abandoned: an operator declared the signature at HRS never published
	// (Store.Abandon); HRS may be signed again with any digest, nothing
	// below it.
	Abandoned bool `json:"abandoned,omitempty"`
}

// JournalEntry is one signature intent committed before the signature leaves
// the sidecar (strict mode), stored at validators/<id>/journal/<h>/<r>/<step>.
type JournalEntry struct {
	Validator ValidatorID `json:"validator"`
	HRS       HRS         `json:"hrs"`
	Digest    Digest      `json:"digest"`
	Epoch     uint64      `json:"epoch"`
	Sidecar   string      `json:"sidecar"`
	At        time.Time   `json:"at"`
	// Revision is the etcd revision that committed the entry, set when it is
	// read from the quorum journal (0 in a sidecar's local journal).
	Revision int64 `json:"revision,omitempty"`
}

// EventKind names an entry of the append-only history.
type EventKind string

// Event kinds; Transition events carry From and To.
const (
	EventValidatorAdded   EventKind = "validator_added"
	EventFreeze           EventKind = "revoke_committed"
	EventFenced           EventKind = "fenced"
	EventGrant            EventKind = "grant_committed"
	EventBumpStarted      EventKind = "bump_started"
	EventLeaseReleased    EventKind = "lease_released"
	EventLeaseExpired     EventKind = "lease_expired"
	EventLateWatermark    EventKind = "late_watermark"
	EventHolderRegistered EventKind = "holder_registered"
	EventAbandoned        EventKind = "hrs_abandoned"
	EventRemoved          EventKind = "validator_removed"
	EventAudit            EventKind = "audit"
)

// Event is one entry of events/: who did what, when, why, from and to.
type Event struct {
	Kind      EventKind   `json:"kind"`
	Validator ValidatorID `json:"validator,omitempty"`
	At        time.Time   `json:"at"`
	By        string      `json:"by,omitempty"`
	Reason    string      `json:"reason,omitempty"`
	Comment   string      `json:"comment,omitempty"`
	From      *Epoch      `json:"from,omitempty"`
	To        *Epoch      `json:"to,omitempty"`
	Sidecar   string      `json:"sidecar,omitempty"`
	Epoch     uint64      `json:"epoch,omitempty"`
	BumpID    string      `json:"bump_id,omitempty"`
	// BumpStartedAt is when the bump began, on its grant event.
	BumpStartedAt time.Time `json:"bump_started_at,omitzero"`
	Detail        string    `json:"detail,omitempty"`
	// Revision is the etcd revision that committed the event; it orders the
	// history across coordinator replicas whose clocks may disagree.
	Revision int64 `json:"revision,omitempty"`
}

var (
	holderRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	sidecarRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,125}[a-z0-9])?$`)
	validatorRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$`)
	addressRE   = regexp.MustCompile(`^0[xX][0-9a-fA-F]{40}$`)
)

// ValidateHolder accepts a DNS label such as region-a.
func ValidateHolder(h string) error {
	if !holderRE.MatchString(h) {
		return Errorf(CodeBadRequest, "holder %q must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters), e.g. region-a", clip(h))
	}
	return nil
}

// ValidateSidecar accepts a DNS subdomain of at most 127 characters, such as
// a pod name.
func ValidateSidecar(s string) error {
	if !sidecarRE.MatchString(s) {
		return Errorf(CodeBadRequest, "sidecar name %q must be lowercase a-z, 0-9, '-' or '.', at most 127 characters, e.g. validator-0", clip(s))
	}
	return nil
}

// ValidatorID is a validator's one name: an address (0x + 40 hex digits) in
// its EIP-55 form, or an operator-given name of letters, digits, '.', '_'
// and '-' (at most 64). Parse it once where it enters (an HTTP path or body,
// a CLI argument, a configuration value) with ParseValidatorID; nothing
// inside takes a plain string, so one validator has one key in etcd however
// its address was spelled. It decodes from JSON and text through
// ParseValidatorID.
type ValidatorID string

// ParseValidatorID validates s and returns its canonical form.
func ParseValidatorID(s string) (ValidatorID, error) {
	if !validatorRE.MatchString(s) {
		return "", Errorf(CodeBadRequest, "validator %q must be an address (0x + 40 hex digits) or a name of letters, digits, '.', '_', '-' (at most 64)", clip(s))
	}
	if addressRE.MatchString(s) {
		return ValidatorID(checksumAddress(s[2:])), nil
	}
	return ValidatorID(s), nil
}

// MustParseValidatorID is ParseValidatorID for constants in tests and
// examples; it panics on a bad name.
func MustParseValidatorID(s string) ValidatorID {
	id, err := ParseValidatorID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func (v ValidatorID) String() string { return string(v) }

// UnmarshalText parses a validator ID (canonicalising an address).
func (v *ValidatorID) UnmarshalText(b []byte) error {
	id, err := ParseValidatorID(string(b))
	if err != nil {
		return err
	}
	*v = id
	return nil
}

// Required reports a missing validator (the zero ValidatorID).
func (v ValidatorID) Required() error {
	if v == "" {
		return Errorf(CodeBadRequest, "validator is required: an address (0x + 40 hex digits) or a name")
	}
	return nil
}

// checksumAddress is EIP-55 over 40 hex digits.
func checksumAddress(hexDigits string) string {
	lower := strings.ToLower(hexDigits)
	h := sha3.NewLegacyKeccak256()
	h.Write([]byte(lower))
	sum := hex.EncodeToString(h.Sum(nil))
	out := []byte(lower)
	for i, c := range out {
		if c >= 'a' && c <= 'f' && sum[i] >= '8' {
			out[i] = c - 32
		}
	}
	return "0x" + string(out)
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Identity is who an authenticated sidecar request comes from, as its
// credential proves, and what it may lease. Validators empty means any
// validator.
type Identity struct {
	Subject string `json:"subject"`
	Holder  string `json:"holder"`
	// Sidecar is the sidecar name the credential proves: the pod name a
	// projected ServiceAccount token is bound to, or a client certificate's
	// common name.
	Sidecar    string        `json:"sidecar"`
	Validators []ValidatorID `json:"validators,omitempty"`
}

// Permits reports whether id may use a lease of validator held by holder
// and sidecar (invariant 1: the caller is who its credential says, never who
// its request body says). Every name compares exactly.
func (id Identity) Permits(holder, sidecar string, validator ValidatorID) error {
	if id.Holder != holder {
		return Errorf(CodeForbidden, "%s may act only for holder %s, not %s", id.Subject, id.Holder, clip(holder))
	}
	if id.Sidecar != sidecar {
		return Errorf(CodeForbidden, "%s is sidecar %s, not %s: a sidecar acts only under its own name", id.Subject, id.Sidecar, clip(sidecar))
	}
	return id.PermitsValidator(validator)
}

// PermitsValidator reports whether id may act for validator at all (watch
// its epoch).
func (id Identity) PermitsValidator(validator ValidatorID) error {
	if len(id.Validators) == 0 || slices.Contains(id.Validators, validator) {
		return nil
	}
	return Errorf(CodeForbidden, "%s may not act for validator %s", id.Subject, validator)
}
