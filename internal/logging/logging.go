// Package logging builds the hclog loggers of the binaries: text or JSON
// lines on stderr, a level, and stable keys. Key material and tokens are never
// passed to a logger anywhere in this repository.
package logging

import (
	"io"

	"github.com/hashicorp/go-hclog"
)

// New returns a logger named name writing to w.
func New(name string, w io.Writer, json bool, level string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Output:     w,
		JSONFormat: json,
		Level:      hclog.LevelFromString(level),
		TimeFormat: "2006-01-02T15:04:05.000Z07:00",
	})
}
