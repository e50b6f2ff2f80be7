// Package version says which build a binary is: its version (set at link
// time with -ldflags "-X github.com/validator-fencing/fencing/internal/version.Version=v1.2.3",
// otherwise the module version or "dev") and the Go toolchain, for
// --version and the fencing_build_info metric.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version is set at link time; empty means the module's version, if any.
var Version string

// String is the version of this build.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Line is what --version prints for binary.
func Line(binary string) string {
	return fmt.Sprintf("%s %s (%s %s/%s)", binary, String(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Collector is the fencing_build_info{binary,version,goversion} gauge,
// always 1.
func Collector(binary string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "fencing_build_info",
		Help:        "1, labelled with the binary, its version and the Go toolchain it was built with.",
		ConstLabels: prometheus.Labels{"binary": binary, "version": String(), "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}
