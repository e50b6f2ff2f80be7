// Package flagenv parses command lines the way every binary here does:
// defaults, then FENCE_<NAME> environment variables, then flags (flags win),
// with flags allowed before and after positional arguments.
package flagenv

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// EnvName is the environment variable of a flag: --lease-ttl is
// FENCE_LEASE_TTL.
func EnvName(flagName string) string {
	return "FENCE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, then fills every flag not given on the command
// line from its FENCE_ variable (getenv, usually os.Getenv). It returns the
// positional arguments, which may stand anywhere among the flags ("--" ends
// flags).
//
// fs reports nothing itself: an error comes back as one line for the caller
// to print, and -h/--help as flag.ErrHelp (print Usage then).
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil || getenv == nil {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment %s=%q: %v", EnvName(f.Name), v, e)
			}
		}
	})
	return pos, err
}

// List is a flag that may be repeated or given as a comma-separated list.
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Set appends each comma-separated part of v.
func (l *List) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// Problems joins every configuration problem into one error of one line, or
// returns nil when there are none.
func Problems(errs []error) error {
	var msgs []string
	for _, e := range errs {
		if e != nil {
			msgs = append(msgs, e.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

// Usage prints usage then the flags of fs to w, for --help.
func Usage(w io.Writer, fs *flag.FlagSet, usage string) {
	fmt.Fprint(w, usage)
	fs.SetOutput(w)
	fs.PrintDefaults()
}
