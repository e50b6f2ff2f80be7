package logging

import (
	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Zap returns a zap logger (what etcd's client and server log to) that
// writes through lg, at lg's level: etcd's warnings land in the binary's own
// log with its format and name instead of being dropped.
func Zap(lg hclog.Logger) *zap.Logger {
	return zap.New(&zapCore{lg: lg})
}

// zapCore is a zapcore.Core over an hclog.Logger.
type zapCore struct {
	lg     hclog.Logger
	fields []zapcore.Field
}

func (c *zapCore) Enabled(l zapcore.Level) bool {
	switch {
	case l >= zapcore.ErrorLevel:
		return c.lg.IsError()
	case l == zapcore.WarnLevel:
		return c.lg.IsWarn()
	case l == zapcore.InfoLevel:
		return c.lg.IsInfo()
	default:
		return c.lg.IsDebug()
	}
}

func (c *zapCore) With(fs []zapcore.Field) zapcore.Core {
	return &zapCore{lg: c.lg, fields: append(append([]zapcore.Field(nil), c.fields...), fs...)}
}

func (c *zapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range append(append([]zapcore.Field(nil), c.fields...), fs...) {
		f.AddTo(enc)
	}
	args := make([]any, 0, 2*len(enc.Fields)+2)
	if e.LoggerName != "" {
		args = append(args, "component", e.LoggerName)
	}
	for k, v := range enc.Fields {
		args = append(args, k, v)
	}
	switch {
	case e.Level >= zapcore.ErrorLevel:
		c.lg.Error(e.Message, args...)
	case e.Level == zapcore.WarnLevel:
		c.lg.Warn(e.Message, args...)
	case e.Level == zapcore.InfoLevel:
		c.lg.Info(e.Message, args...)
	default:
		c.lg.Debug(e.Message, args...)
	}
	return nil
}

func (c *zapCore) Sync() error { return nil }
