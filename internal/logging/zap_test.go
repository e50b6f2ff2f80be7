package logging

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
)

func TestZapWritesThroughHclog(t *testing.T) {
	var buf bytes.Buffer
	lg := hclog.New(&hclog.LoggerOptions{Name: "coordinator", Output: &buf, Level: hclog.Warn})
	z := Zap(lg.Named("etcd")).Named("grpc").With(zap.String("endpoint", "127.0.0.1:2379"))
	z.Info("dropped below the level")
	z.Warn("retrying of unary invoker failed", zap.Int("attempt", 2))
	out := buf.String()
	if strings.Contains(out, "dropped below") {
		t.Errorf("an info line passed a warn-level logger: %q", out)
	}
	for _, want := range []string{"[WARN]", "coordinator.etcd", "retrying of unary invoker failed", "component=grpc", "endpoint=127.0.0.1:2379", "attempt=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}
