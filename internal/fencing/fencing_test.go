package fencing

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"
)

var ch = Change{By: "alice", Reason: "test", At: time.Unix(1, 0)}

func TestTransitions(t *testing.T) {
	e, err := NewEpoch("region-a", ch)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func(Epoch) (Epoch, error)
		want Epoch // zero: want a conflict
	}{
		{"fence active", func(e Epoch) (Epoch, error) { return e.Fence(ch) }, Epoch{}},
		{"grant active", func(e Epoch) (Epoch, error) { return e.Grant("region-b", ch) }, Epoch{}},
		{"freeze", func(e Epoch) (Epoch, error) { return e.Freeze(ch) }, Epoch{Epoch: 1, State: StateRevoking, Holder: "region-a"}},
		{"freeze revoking", func(e Epoch) (Epoch, error) { return e.Freeze(ch) }, Epoch{}},
		{"grant revoking", func(e Epoch) (Epoch, error) { return e.Grant("region-b", ch) }, Epoch{}},
		{"fence", func(e Epoch) (Epoch, error) { return e.Fence(ch) }, Epoch{Epoch: 1, State: StateFenced, Holder: "region-a"}},
		{"grant", func(e Epoch) (Epoch, error) { return e.Grant("region-b", ch) }, Epoch{Epoch: 2, State: StateActive, Holder: "region-b"}},
	}
	for _, st := range steps {
		next, err := st.do(e)
		if st.want.Epoch == 0 {
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("%s from %+v = %+v, %v; want conflict", st.name, e, next, err)
			}
			continue
		}
		if err != nil || next.Epoch != st.want.Epoch || next.State != st.want.State || next.Holder != st.want.Holder {
			t.Fatalf("%s from %+v = %+v, %v; want %+v", st.name, e, next, err, st.want)
		}
		e = next
	}
}

func TestAllowsLease(t *testing.T) {
	cases := []struct {
		name   string
		e      Epoch
		holder string
		ok     bool
	}{
		{"holder while active", Epoch{Epoch: 3, State: StateActive, Holder: "region-a"}, "region-a", true},
		{"other holder", Epoch{Epoch: 3, State: StateActive, Holder: "region-a"}, "region-b", false},
		{"revoking", Epoch{Epoch: 3, State: StateRevoking, Holder: "region-a"}, "region-a", false},
		{"fenced", Epoch{Epoch: 3, State: StateFenced, Holder: "region-a"}, "region-a", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.e.AllowsLease(c.holder)
			if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrFenced)) {
				t.Fatalf("AllowsLease(%s) on %+v = %v, want ok=%t or fenced", c.holder, c.e, err, c.ok)
			}
		})
	}
}

func TestHRSOrderMatchesSortKey(t *testing.T) {
	steps := []Step{StepRoundChange, StepProposal, StepPrepare, StepCommit, StepBlock}
	var all []HRS
	for _, h := range []uint64{0, 1, 9, 10, 1 << 40} {
		for _, r := range []uint64{0, 1, 10} {
			for _, s := range steps {
				all = append(all, HRS{h, r, s})
			}
		}
	}
	for _, a := range all {
		for _, b := range all {
			byKey := 0
			switch {
			case a.SortKey() < b.SortKey():
				byKey = -1
			case a.SortKey() > b.SortKey():
				byKey = 1
			}
			if a.Compare(b) != byKey {
				t.Fatalf("Compare(%s, %s) = %d but sort keys order %d", a, b, a.Compare(b), byKey)
			}
		}
		if p, err := ParseJournalPath(a.JournalPath()); err != nil || p != a {
			t.Fatalf("ParseJournalPath(JournalPath(%s)) = %s, %v", a, p, err)
		}
	}
	if ZeroSortKey >= (HRS{Step: StepRoundChange}).SortKey() {
		t.Fatal("ZeroSortKey is not below every real HRS")
	}
}

func TestNames(t *testing.T) {
	cases := []struct {
		name, in, want string
		ok             bool
	}{
		{"address checksummed", "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23", "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23", true},
		{"name kept", "val-1", "val-1", true},
		{"path traversal", "../x", "", false},
		{"slash", "a/b", "", false},
		{"empty", "", "", false},
		{"too long", string(make([]byte, 70)), "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseValidatorID(c.in)
			if (err == nil) != c.ok || string(got) != c.want {
				t.Fatalf("ParseValidatorID(%q) = %q, %v; want %q ok=%t", c.in, got, err, c.want, c.ok)
			}
			var fromJSON struct{ V ValidatorID }
			err = json.Unmarshal([]byte(`{"V":`+strconv.Quote(c.in)+`}`), &fromJSON)
			if (err == nil) != c.ok || string(fromJSON.V) != c.want {
				t.Fatalf("JSON %q = %q, %v; want %q ok=%t", c.in, fromJSON.V, err, c.want, c.ok)
			}
		})
	}
	for _, h := range []string{"Region-A", "-a", "a_b", ""} {
		if ValidateHolder(h) == nil {
			t.Errorf("ValidateHolder(%q) = nil, want an error", h)
		}
	}
}

func TestCodeOf(t *testing.T) {
	werr := error(&WatermarkError{Signed: HRS{Height: 2}, Requested: HRS{Height: 1}})
	if CodeOf(werr) != CodeWatermark || !errors.Is(werr, ErrWatermark) {
		t.Fatalf("CodeOf(WatermarkError) = %s", CodeOf(werr))
	}
	if CodeOf(errors.New("x")) != CodeInternal {
		t.Fatal("an error without a code must be internal")
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add("0x1111111111111111111111111111111111111111111111111111111111111111")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			return
		}
		if again, err := ParseDigest(d.String()); err != nil || again != d {
			t.Fatalf("round trip of %q: %v", s, err)
		}
	})
}

func FuzzParseJournalPath(f *testing.F) {
	f.Add(HRS{Height: 5, Round: 1, Step: StepCommit}.JournalPath())
	f.Add("1/2")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseJournalPath(s)
		if err == nil && h.Validate() != nil {
			t.Fatalf("ParseJournalPath(%q) accepted an invalid step", s)
		}
	})
}
