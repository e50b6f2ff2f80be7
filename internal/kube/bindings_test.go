package kube

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const (
	addrLower = "0x5b38da6a701c568545dcfcb03fcb875f56beddc4"
	addr      = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"
)

func TestParseBindings(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Binding
		wantErr []string // substrings of the error; nil means no error
	}{
		{name: "empty", in: "", want: nil},
		{name: "blank entries", in: " ; \n ;", want: nil},
		{
			name: "one without validators",
			in:   "validators/besu-1=region-a",
			want: []Binding{{Namespace: "validators", ServiceAccount: "besu-1", Holder: "region-a"}},
		},
		{
			name: "two with validators, spaces, canonical address",
			in:   " validators/besu-1 = region-a : " + addrLower + " , val-2 ;\nother/sa.x=region-b",
			want: []Binding{
				{Namespace: "validators", ServiceAccount: "besu-1", Holder: "region-a", Validators: []string{addr, "val-2"}},
				{Namespace: "other", ServiceAccount: "sa.x", Holder: "region-b"},
			},
		},
		{name: "missing equals", in: "validators/besu-1", wantErr: []string{"entry 1", "missing '='"}},
		{name: "missing slash", in: "besu-1=region-a", wantErr: []string{"missing '/'"}},
		{name: "bad holder", in: "validators/besu-1=Region_A", wantErr: []string{`holder "Region_A"`, "DNS label"}},
		{name: "bad namespace", in: "Validators/besu-1=region-a", wantErr: []string{`namespace "Validators"`}},
		{name: "bad serviceaccount", in: "validators/=region-a", wantErr: []string{`serviceaccount ""`}},
		{name: "bad validator", in: "validators/besu-1=region-a:0xzz!", wantErr: []string{`validator "0xzz!"`}},
		{name: "validator twice", in: "validators/besu-1=region-a:" + addr + "," + addrLower, wantErr: []string{"listed twice"}},
		{
			name:    "serviceaccount bound twice",
			in:      "validators/besu-1=region-a;validators/besu-1=region-b",
			wantErr: []string{"validators/besu-1 is bound twice", "region-a", "region-b"},
		},
		{
			name:    "every problem at once",
			in:      "a/b;c/d=BAD;e/f=region-a",
			wantErr: []string{"entry 1", "entry 2", "missing '='", `holder "BAD"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseBindings(tt.in)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ParseBindings(%q) = %v, want an error", tt.in, got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("ParseBindings(%q) error %q does not contain %q", tt.in, err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBindings(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseBindings(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			// The inline form round-trips.
			again, err := ParseBindings(FormatBindings(got))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("ParseBindings(FormatBindings(%v)) = %v, %v", got, again, err)
			}
		})
	}
}

func TestDecodeBindings(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Binding
		wantErr string
	}{
		{
			name: "yaml",
			in: `bindings:
  - namespace: validators
    serviceAccount: besu-1
    holder: region-a
    validators: ["` + addrLower + `"]
  - namespace: validators
    serviceAccount: besu-2
    holder: region-b
`,
			want: []Binding{
				{Namespace: "validators", ServiceAccount: "besu-1", Holder: "region-a", Validators: []string{addr}},
				{Namespace: "validators", ServiceAccount: "besu-2", Holder: "region-b"},
			},
		},
		{
			name: "json",
			in:   `{"bindings":[{"namespace":"v","serviceAccount":"s","holder":"region-a"}]}`,
			want: []Binding{{Namespace: "v", ServiceAccount: "s", Holder: "region-a"}},
		},
		{name: "misspelt field", in: "bindings:\n  - namespace: v\n    serviceAcount: s\n    holder: region-a\n", wantErr: `unknown field "serviceAcount"`},
		{name: "not a list", in: "bindings: yes\n", wantErr: "want a YAML or JSON object"},
		{name: "bad holder", in: "bindings:\n  - {namespace: v, serviceAccount: s, holder: A}\n", wantErr: `bindings[0] (v/s): holder "A"`},
		{name: "twice", in: "bindings:\n  - {namespace: v, serviceAccount: s, holder: a}\n  - {namespace: v, serviceAccount: s, holder: b}\n", wantErr: "bound twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeBindings([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DecodeBindings() = %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeBindings(): %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeBindings() = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestParseBindingsFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "bindings.yaml")
	if err := os.WriteFile(good, []byte("bindings:\n  - {namespace: v, serviceAccount: s, holder: region-a}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ParseBindingsFile(good)
	if err != nil || len(got) != 1 || got[0].Subject() != "system:serviceaccount:v:s" {
		t.Errorf("ParseBindingsFile(%s) = %v, %v", good, got, err)
	}
	missing := filepath.Join(dir, "nope.yaml")
	if _, err := ParseBindingsFile(missing); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("ParseBindingsFile(%s) error = %v, want one naming the file", missing, err)
	}
}
