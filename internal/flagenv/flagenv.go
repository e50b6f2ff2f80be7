// Package flagenv parses command lines the way every binary here does:
// defaults, then a config file (--config, if the binary has that flag), then
// FENCE_<NAME> environment variables, then flags (flags win), with flags
// allowed before and after positional arguments.
package flagenv

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// EnvName is the environment variable of a flag: --lease-ttl is
// FENCE_LEASE_TTL.
func EnvName(flagName string) string {
	return "FENCE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// commandLineOnly are flags that neither the environment nor a config file
// sets: --config names the file, --version asks a question.
func commandLineOnly(name string) bool { return name == "config" || name == "version" }

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
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	// The config file comes under the environment: read it first, then let
	// the environment overwrite what it set.
	fromFile := map[string]string{}
	if cf := fs.Lookup("config"); cf != nil {
		path := cf.Value.String()
		if !set["config"] && getenv(EnvName("config")) != "" {
			path = getenv(EnvName("config"))
		}
		if path != "" {
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("config file: %w", err)
			}
			if fromFile, err = ParseConfig(fs, data); err != nil {
				return nil, fmt.Errorf("config file %s: %w", path, err)
			}
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil || commandLineOnly(f.Name) {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment %s=%q: %v", EnvName(f.Name), v, e)
			}
			return
		}
		if v, ok := fromFile[f.Name]; ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("config key %q: %v", f.Name, e)
			}
		}
	})
	return pos, err
}

// ParseConfig reads a YAML or JSON mapping from flag names to values
// (strings, numbers, booleans, or lists for repeatable flags) and returns
// each as the string the flag would be given. Unknown keys are errors that
// list the known ones.
func ParseConfig(fs *flag.FlagSet, data []byte) (map[string]string, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("not a YAML or JSON mapping of flag names to values: %v", err)
	}
	out := map[string]string{}
	var unknown []string
	for k, v := range raw {
		if fs.Lookup(k) == nil || commandLineOnly(k) {
			unknown = append(unknown, k)
			continue
		}
		s, err := configValue(v)
		if err != nil {
			return nil, fmt.Errorf("key %q: %v", k, err)
		}
		out[k] = s
	}
	if len(unknown) > 0 {
		var known []string
		fs.VisitAll(func(f *flag.Flag) {
			if !commandLineOnly(f.Name) {
				known = append(known, f.Name)
			}
		})
		sort.Strings(unknown)
		return nil, fmt.Errorf("unknown key(s) %s; known keys are the flag names: %s", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return out, nil
}

func configValue(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, err := configValue(e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	case nil:
		return "", errors.New("has no value")
	default:
		return "", fmt.Errorf("must be a string, number, boolean or list, not %T", v)
	}
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
