package flagenv

import (
	"flag"
	"os"
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

func TestConfigFile(t *testing.T) {
	newFS := func() (*flag.FlagSet, *string, *List, *bool) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.String("config", "", "")
		ttl := fs.String("lease-ttl", "15s", "")
		var keys List
		fs.Var(&keys, "key", "")
		j := fs.Bool("log-json", false, "")
		return fs, ttl, &keys, j
	}
	write := func(content string) string {
		p := t.TempDir() + "/c.yaml"
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("lease-ttl: 20s\nkey: [a, b]\nlog-json: true\n")
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		ttl     string
		keys    string
		wantErr string
	}{
		{"file", []string{"--config", good}, nil, "20s", "a,b", ""},
		{"env over file", []string{"--config", good}, map[string]string{"FENCE_LEASE_TTL": "30s"}, "30s", "a,b", ""},
		{"flag over file", []string{"--config", good, "--lease-ttl", "40s"}, nil, "40s", "a,b", ""},
		{"file from env", nil, map[string]string{"FENCE_CONFIG": good}, "20s", "a,b", ""},
		{"unknown key", []string{"--config", write("lease-tll: 5s\n")}, nil, "", "", "unknown key(s) lease-tll"},
		{"not a mapping", []string{"--config", write("- a\n- b\n")}, nil, "", "", "not a YAML or JSON mapping"},
		{"bad value", []string{"--config", write("lease-ttl: {a: 1}\n")}, nil, "", "", "must be a string"},
		{"missing file", []string{"--config", "/nonexistent/c.yaml"}, nil, "", "", "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs, ttl, keys, _ := newFS()
			_, err := Parse(fs, c.args, func(k string) string { return c.env[k] })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Parse = %v, want an error containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil || *ttl != c.ttl || keys.String() != c.keys {
				t.Fatalf("Parse = ttl %q keys %q err %v; want %q %q", *ttl, keys.String(), err, c.ttl, c.keys)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("lease-ttl: 20s\nkey: [a, b]\n"))
	f.Add([]byte(`{"log-json": true}`))
	f.Add([]byte("- x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.String("lease-ttl", "", "")
		fs.Bool("log-json", false, "")
		var keys List
		fs.Var(&keys, "key", "")
		vals, err := ParseConfig(fs, data)
		if err != nil {
			return
		}
		for k := range vals {
			if fs.Lookup(k) == nil {
				t.Fatalf("ParseConfig accepted unknown key %q", k)
			}
		}
	})
}

// --config and --version come only from the command line: neither
// FENCE_VERSION nor a config file's "version" key asks for the version.
func TestCommandLineOnly(t *testing.T) {
	newFS := func() (*flag.FlagSet, *bool) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.String("config", "", "")
		fs.String("holder", "", "")
		return fs, fs.Bool("version", false, "")
	}
	fs, v := newFS()
	if _, err := Parse(fs, nil, func(k string) string { return map[string]string{"FENCE_VERSION": "true"}[k] }); err != nil || *v {
		t.Errorf("Parse with FENCE_VERSION=true: version %t, err %v; want false, nil", *v, err)
	}
	p := t.TempDir() + "/c.yaml"
	if err := os.WriteFile(p, []byte("version: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs, v = newFS()
	if _, err := Parse(fs, []string{"--config", p}, nil); err == nil || !strings.Contains(err.Error(), "unknown key(s) version; known keys are the flag names: holder") || *v {
		t.Errorf("Parse of a config file with version: err %v, version %t; want an unknown key", err, *v)
	}
	fs, v = newFS()
	if _, err := Parse(fs, []string{"--version"}, nil); err != nil || !*v {
		t.Errorf("Parse(--version) = %v, version %t", err, *v)
	}
}
