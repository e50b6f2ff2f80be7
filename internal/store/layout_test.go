package store

import "testing"

func TestParseValidatorKey(t *testing.T) {
	for _, tc := range []struct {
		key, kind, id, rest string
		ok                  bool
	}{
		{"/fencing/validators/val-1/journal/00000000000000000001/00000000000000000000/commit", KeyJournal, "val-1", "00000000000000000001/00000000000000000000/commit", true},
		{"/fencing/validators/journal/epoch", KeyEpoch, "journal", "", true},
		{"/fencing/validators/journal/watermark", KeyWatermark, "journal", "", true},
		{"/fencing/validators/val-1/leases/3/region-a/a-0", "leases", "val-1", "3/region-a/a-0", true},
		{"/fencing/events/1-x", "", "", "", false},
		{"/fencing/validators/val-1", "", "", "", false},
		{"/fencing/validators/0x2c7536e3605d9c16a7a3d7b1898e529396a65c23/epoch", "", "", "", false}, // not canonical: no key of the store
	} {
		k, ok := ParseValidatorKey(DefaultPrefix, tc.key)
		if ok != tc.ok || (ok && (k.Kind != tc.kind || string(k.Validator) != tc.id || k.Rest != tc.rest)) {
			t.Errorf("ParseValidatorKey(%q) = %+v, %t; want kind %q id %q rest %q, %t", tc.key, k, ok, tc.kind, tc.id, tc.rest, tc.ok)
		}
	}
}
