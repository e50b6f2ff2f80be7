package store

import (
	"strings"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// What a key below validators/<id>/ holds (the key layout in the package
// doc), for readers outside the store that watch etcd directly, such as the
// drill's invariant observer.
const (
	KeyEpoch     = "epoch"
	KeyWatermark = "watermark"
	KeyJournal   = "journal"
)

// ValidatorKey is a key of the layout below validators/: the validator, what
// the key holds (KeyEpoch, KeyWatermark, KeyJournal or another element of
// the layout) and the rest of the key after it.
type ValidatorKey struct {
	Validator fencing.ValidatorID
	Kind      string
	Rest      string
}

// ParseValidatorKey reads key as a key below prefix+"validators/". A
// validator name never contains '/', so the parts are exact: a validator
// named "journal" is not a journal key.
func ParseValidatorKey(prefix, key string) (ValidatorKey, bool) {
	rest, ok := strings.CutPrefix(key, prefix+"validators/")
	if !ok {
		return ValidatorKey{}, false
	}
	id, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return ValidatorKey{}, false
	}
	vid, err := fencing.ParseValidatorID(id)
	if err != nil || string(vid) != id {
		return ValidatorKey{}, false
	}
	kind, rest, _ := strings.Cut(rest, "/")
	return ValidatorKey{Validator: vid, Kind: kind, Rest: rest}, true
}
