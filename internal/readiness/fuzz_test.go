package readiness

import (
	"strings"
	"testing"
)

// parseFlags reads Pod template args, which any user of the chart can set
// (extraArgs): it must never panic, and every --name=value it is given must
// come back (repeated names joined by commas).
func FuzzParseFlags(f *testing.F) {
	f.Add("--mode=strict\x00--lease-ttl=15s\x00--name=$(POD_NAME)")
	f.Add("--key=/a\x00--key=/b\x00positional\x00--\x00--=x")
	f.Add("--log-json\x00-v\x00--validator=0x5B38Da6a701c568545dCfcB03FcB875f56beddC4")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		fl := parseFlags(args)
		for _, a := range args {
			name, ok := strings.CutPrefix(a, "--")
			if !ok || name == "" || strings.HasPrefix(name, "=") {
				if !strings.Contains(fl[""], a) {
					t.Fatalf("parseFlags(%q) lost positional %q: %v", args, a, fl)
				}
				continue
			}
			k, v, hasValue := strings.Cut(name, "=")
			if !hasValue {
				v = "true"
			}
			if got, ok := fl[k]; !ok || !strings.Contains(got, v) {
				t.Fatalf("parseFlags(%q)[%q] = %q, want it to hold %q", args, k, got, v)
			}
		}
	})
}
