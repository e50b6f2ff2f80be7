package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/validator-fencing/fencing/internal/fencing"
)

func sig(v string, h, r uint64, step fencing.Step, d byte, src string) Signature {
	return Signature{Validator: v, HRS: fencing.HRS{Height: h, Round: r, Step: step}, Digest: dg(d), Signature: []byte{d, byte(r)}, Source: src}
}

func TestDetector(t *testing.T) {
	tests := []struct {
		name         string
		heightScoped []fencing.Step
		in           []Signature
		want         []string // validator/height/round/step/variants/crossRound
	}{
		{
			name: "same digest from many sources is one variant",
			in:   []Signature{sig("a", 1, 0, fencing.StepBlock, 1, "x"), sig("a", 1, 0, fencing.StepBlock, 1, "y")},
		},
		{
			name: "two digests in one HRS",
			in:   []Signature{sig("a", 1, 0, fencing.StepCommit, 1, "x"), sig("a", 1, 0, fencing.StepCommit, 2, "y")},
			want: []string{"a/1/0/commit/2/false"},
		},
		{
			name: "different rounds are different slots under HRS scope",
			in:   []Signature{sig("a", 1, 0, fencing.StepCommit, 1, "x"), sig("a", 1, 1, fencing.StepCommit, 2, "y")},
		},
		{
			name:         "different rounds are one slot under height scope",
			heightScoped: []fencing.Step{fencing.StepCommit},
			in:           []Signature{sig("a", 1, 1, fencing.StepCommit, 1, "x"), sig("a", 1, 0, fencing.StepCommit, 2, "y")},
			want:         []string{"a/1/0/commit/2/true"},
		},
		{
			name: "different validators or steps never conflict",
			in: []Signature{sig("a", 1, 0, fencing.StepPrepare, 1, "x"), sig("b", 1, 0, fencing.StepPrepare, 2, "x"),
				sig("a", 1, 0, fencing.StepCommit, 3, "x")},
		},
		{
			name: "three digests, ordered output",
			in: []Signature{sig("b", 2, 0, fencing.StepBlock, 3, "x"), sig("b", 2, 0, fencing.StepBlock, 1, "y"),
				sig("b", 2, 0, fencing.StepBlock, 2, "z"), sig("a", 9, 0, fencing.StepBlock, 1, "x"), sig("a", 9, 0, fencing.StepBlock, 2, "y")},
			want: []string{"a/9/0/block/2/false", "b/2/0/block/3/false"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDetector(tc.heightScoped...)
			for _, s := range tc.in {
				d.Add(s)
			}
			var got []string
			for _, dup := range d.Drain() {
				got = append(got, fmt.Sprintf("%s/%d/%d/%s/%d/%v", dup.Validator, dup.Height, dup.Round, dup.Step, len(dup.Variants), dup.CrossRound))
				for i := 1; i < len(dup.Variants); i++ {
					if bytes.Compare(dup.Variants[i-1].Digest[:], dup.Variants[i].Digest[:]) >= 0 {
						t.Errorf("variants not ordered by digest: %+v", dup.Variants)
					}
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("Drain() = %v, want %v", got, tc.want)
			}
			if d.Len() != 0 {
				t.Errorf("Len() after Drain = %d", d.Len())
			}
		})
	}
}

// TestDetectorDeterministic feeds the same signatures in many orders and
// expects byte-identical JSON evidence.
func TestDetectorDeterministic(t *testing.T) {
	var in []Signature
	for v := range 3 {
		for h := range uint64(5) {
			for src := range 3 {
				d := byte(h)
				if src == 2 && h%2 == 0 {
					d++ // a second digest from one source
				}
				in = append(in, sig(fmt.Sprintf("v%d", v), h, uint64(src%2), fencing.StepCommit, d, fmt.Sprintf("s%d", src)))
			}
		}
	}
	var first []byte
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		rng.Shuffle(len(in), func(a, b int) { in[a], in[b] = in[b], in[a] })
		d := NewDetector(fencing.StepCommit)
		for _, s := range in {
			d.Add(s)
		}
		b, err := json.Marshal(d.Drain())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = b
			if !bytes.Contains(b, []byte(`"variants"`)) {
				t.Fatalf("no duplicates found: %s", b)
			}
		} else if !bytes.Equal(b, first) {
			t.Fatalf("order %d gave different evidence:\n%s\nwant\n%s", i, b, first)
		}
	}
}

func TestReportExitAndOutput(t *testing.T) {
	dup := Duplicate{Validator: "0xA", Height: 7, Step: fencing.StepBlock, Variants: []Evidence{
		{Digest: dg(1), Signature: []byte{1}, Sources: []string{"http://a"}},
		{Digest: dg(2), Signature: []byte{2}, Sources: []string{"http://b"}},
	}}
	un := Unaudited{Endpoint: "http://b", From: u64(3), To: u64(4), Reason: "timeout"}
	tests := []struct {
		name     string
		r        Report
		wantExit int
		wantText string
	}{
		{"clean", Report{Kind: "chain"}, ExitClean, "CLEAN"},
		{"duplicates", Report{Kind: "chain", Duplicates: []Duplicate{dup}}, ExitDuplicates, "DUPLICATES FOUND"},
		{"incomplete", Report{Kind: "chain", Unaudited: []Unaudited{un}}, ExitIncomplete, "INCOMPLETE"},
		{"duplicates win over incomplete", Report{Kind: "chain", Duplicates: []Duplicate{dup}, Unaudited: []Unaudited{un}}, ExitDuplicates, "UNAUDITED"},
		{"late write", Report{Kind: "journal", AfterRevoke: []LateEntry{{Validator: "v", Epoch: 1}}}, ExitDuplicates, "AFTER REVOKE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.ExitCode(); got != tc.wantExit {
				t.Errorf("ExitCode() = %d, want %d", got, tc.wantExit)
			}
			var tbl, js bytes.Buffer
			if err := tc.r.WriteTable(&tbl); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(tbl.String(), tc.wantText) {
				t.Errorf("table lacks %q:\n%s", tc.wantText, tbl.String())
			}
			if err := tc.r.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			var back Report
			if err := json.Unmarshal(js.Bytes(), &back); err != nil {
				t.Fatalf("JSON does not parse: %v\n%s", err, js.String())
			}
			if back.ExitCode() != tc.wantExit || back.Duplicates == nil || back.Unaudited == nil {
				t.Errorf("round-tripped report %+v", back)
			}
		})
	}
}

func TestMergeUnaudited(t *testing.T) {
	in := []Unaudited{
		{Endpoint: "b", From: u64(5), To: u64(5), Reason: "x"},
		{Endpoint: "a", From: u64(3), To: u64(4), Reason: "x"},
		{Endpoint: "a", From: u64(1), To: u64(2), Reason: "x"},
		{Endpoint: "a", From: u64(6), To: u64(9), Reason: "x"},
		{Endpoint: "a", From: u64(7), To: u64(7), Reason: "y"},
		{Endpoint: "q", Reason: "down"},
		{Endpoint: "q", Reason: "down"},
	}
	var got []string
	for _, u := range mergeUnaudited(in) {
		if u.From == nil {
			got = append(got, u.Endpoint+":"+u.Reason)
			continue
		}
		got = append(got, fmt.Sprintf("%s:%d-%d:%s", u.Endpoint, *u.From, *u.To, u.Reason))
	}
	want := "a:1-4:x a:6-9:x a:7-7:y b:5-5:x q:down"
	if strings.Join(got, " ") != want {
		t.Errorf("merged = %v, want %s", got, want)
	}
}
