package sidecar

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Configuration problems are refused before anything listens, all at once,
// each in words that say what to fix.
func TestConfigRefusals(t *testing.T) {
	key, _ := testKey(t)
	base := func() Config {
		return Config{Coordinator: []string{"http://127.0.0.1:7600"}, Holder: "region-a", Name: "a-0", Keys: []string{key},
			Listen: "127.0.0.1:0", StateDir: t.TempDir(), Mode: string(ModeStrict), LeaseTTL: 15 * time.Second, SafetyMargin: 2 * time.Second, LogLevel: "info"}
	}
	open := filepath.Join(t.TempDir(), "open.key")
	b, _ := os.ReadFile(key)
	if err := os.WriteFile(open, b, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"margin below the floor", func(c *Config) { c.SafetyMargin = 500 * time.Millisecond }, "--safety-margin (500ms) must be at least 1s"},
		{"margin floor grows with the TTL", func(c *Config) { c.LeaseTTL = 60 * time.Second; c.SafetyMargin = 2 * time.Second }, "must be at least 3s"},
		{"plain HTTP to another host", func(c *Config) { c.Coordinator = []string{"http://coordinator.fencing:7600"} }, "plain HTTP to another host"},
		{"not a URL", func(c *Config) { c.Coordinator = []string{"coordinator:7600"} }, "must be an http(s)://host:port URL"},
		{"client key without certificate", func(c *Config) { c.ClientKey = "k.pem" }, "--client-cert and --client-key go together"},
		{"key open to others", func(c *Config) { c.Keys = []string{open} }, "0644"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mod(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want it to say %q", err, tt.want)
			}
		})
	}
	for _, ok := range []func(*Config){
		func(*Config) {},
		func(c *Config) { c.Coordinator = []string{"https://coordinator.fencing:7600"} },
		func(c *Config) { c.Coordinator = []string{"http://localhost:7600", "http://[::1]:7600"} },
	} {
		c := base()
		ok(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("Validate() = %v, want ok", err)
		}
	}
}
