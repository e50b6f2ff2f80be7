package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// WriteOutput writes v to w as format: "json" (indented), "yaml" (the JSON
// form as YAML, so both carry the same field names), or "table", which
// calls table.
func WriteOutput(w io.Writer, format string, v any, table func(io.Writer) error) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return table(w)
}

// print writes v in the chosen output format to stdout.
func (a *app) print(v any, table func(io.Writer) error) error {
	if err := WriteOutput(a.Stdout, a.g.output, v, table); err != nil {
		return &exitError{code: ExitUsage, err: fmt.Errorf("write output: %w", err)}
	}
	return nil
}

// progressOut is where lines about work under way go: stdout for a table
// (they are the output), stderr with -o json or yaml (stdout holds one
// document).
func (a *app) progressOut() io.Writer {
	if a.g.output == "table" {
		return a.Stdout
	}
	return a.Stderr
}

// interactive reports whether a person can answer a prompt.
func (a *app) interactive() bool { return a.IsTerminal(a.Stdin) && a.IsTerminal(a.Stderr) }

// confirm asks question on stderr and reads the answer; only y or yes goes
// ahead. Off a terminal there is nobody to ask: the command needs --yes
// (what names the flag's effect in the message).
func (a *app) confirm(yes bool, what, question string) error {
	if yes {
		return nil
	}
	if !a.interactive() {
		return usageError("%s needs --yes when not run on a terminal (nobody can confirm here)", what)
	}
	fmt.Fprintf(a.Stderr, "%s [y/N] ", question)
	line, err := bufio.NewReader(a.Stdin).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(a.Stderr)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return &exitError{code: ExitRefused, err: fmt.Errorf("%s not confirmed: nothing changed", what)}
}

// ts formats a record's time for a table: UTC with milliseconds.
func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
