package flagenv

import (
	"flag"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		env      map[string]string
		wantPos  string
		wantTTL  string
		wantList string
	}{
		{"defaults", nil, nil, "", "15", ""},
		{"env fills", nil, map[string]string{"FENCE_LEASE_TTL": "20", "FENCE_KEY": "a,b"}, "", "20", "a,b"},
		{"flag beats env", []string{"--lease-ttl", "30"}, map[string]string{"FENCE_LEASE_TTL": "20"}, "", "30", ""},
		{"interspersed", []string{"v1", "--lease-ttl=5", "v2", "--key", "k"}, nil, "v1,v2", "5", "k"},
		{"double dash", []string{"--", "--lease-ttl"}, nil, "--lease-ttl", "15", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			ttl := fs.String("lease-ttl", "15", "")
			var keys List
			fs.Var(&keys, "key", "")
			pos, err := Parse(fs, c.args, func(k string) string { return c.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(pos, ","); got != c.wantPos || *ttl != c.wantTTL || keys.String() != c.wantList {
				t.Fatalf("Parse(%q) = pos %q ttl %q keys %q; want %q %q %q", c.args, got, *ttl, keys.String(), c.wantPos, c.wantTTL, c.wantList)
			}
		})
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Int("n", 1, "")
	if _, err := Parse(fs, nil, func(string) string { return "many" }); err == nil || !strings.Contains(err.Error(), "FENCE_N") {
		t.Fatalf("a bad environment value must name its variable, got %v", err)
	}
}
