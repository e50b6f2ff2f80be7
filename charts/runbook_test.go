package charts

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/validator-fencing/fencing/internal/cli"
)

// docs/runbook.md is where every alert's runbook_url lands and what
// operators copy commands from during an incident. TestRunbookAnchors checks
// the alerts' links against the rendered chart, TestRunbookLinks the
// runbook's own links, and TestRunbookCommands its fencectl command lines
// against fencectl's command tree (read from internal/cli's cobra commands).

// repoBlobURL is how the chart's default runbookBaseURL addresses a file of
// this repository (charts/fencing/values.yaml); the rest of the URL, before
// the '#', is the file's path in the repository.
const repoBlobURL = "https://github.com/validator-fencing/fencing/blob/main/"

// Every alert the chart renders (with the default runbookBaseURL, standby
// holders and a coordinator job, so that none is left out) links to a
// heading of the runbook that reads exactly the alert's name, and every
// "## Fencing…" section of the runbook is an alert the chart renders.
func TestRunbookAnchors(t *testing.T) {
	r := renderMinimal
	r.set = []string{
		"metrics.prometheusRule.enabled=true",
		"metrics.prometheusRule.standbyHolders={region-b}",
		"metrics.prometheusRule.coordinatorJob=fence-coordinator",
	}
	pr := find(t, renderObjects(t, r), "PrometheusRule", "")
	groups, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups")
	var alerts []string
	docs := map[string]map[string]string{} // file -> anchor -> heading
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, rule := range rules {
			rm := rule.(map[string]any)
			name, _ := rm["alert"].(string)
			alerts = append(alerts, name)
			u, _, _ := unstructured.NestedString(rm, "annotations", "runbook_url")
			file, anchor, ok := strings.Cut(strings.TrimPrefix(u, repoBlobURL), "#")
			if !strings.HasPrefix(u, repoBlobURL) || !ok || anchor == "" {
				t.Errorf("%s: runbook_url %q is not %s<file>#<anchor>", name, u, repoBlobURL)
				continue
			}
			if docs[file] == nil {
				b, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(file)))
				if err != nil {
					t.Fatalf("%s: runbook_url %q names a file this repository lacks: %v", name, u, err)
				}
				docs[file] = githubAnchors(string(b))
			}
			heading, ok := docs[file][anchor]
			switch {
			case !ok:
				t.Errorf("%s: runbook_url %q: %s has no heading with anchor #%s; add \"## %s\"", name, u, file, anchor, name)
			case heading != name:
				t.Errorf("%s: runbook_url %q resolves to heading %q of %s, want a heading reading exactly %q", name, u, heading, file, name)
			default:
				t.Logf("%s -> %s#%s", name, file, anchor)
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatal("the PrometheusRule renders no alerts")
	}
	for file, anchors := range docs {
		for _, heading := range anchors {
			if strings.HasPrefix(heading, "Fencing") && !strings.Contains(heading, " ") && !slices.Contains(alerts, heading) {
				t.Errorf("%s has a section %q, but the chart renders no such alert (alerts: %v)", file, heading, alerts)
			}
		}
	}
}

// Every link of the runbook to another page of docs/ or to a heading (its
// own or another page's) resolves.
func TestRunbookLinks(t *testing.T) {
	b, err := os.ReadFile("../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	pages := map[string]string{"": string(b)}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	checked := 0
	for _, l := range markdownLines(string(b)) {
		if l.block != 0 {
			continue
		}
		for _, m := range link.FindAllStringSubmatch(l.text, -1) {
			target := m[1]
			if strings.Contains(target, "://") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			page, ok := pages[file]
			if !ok {
				pb, err := os.ReadFile(filepath.Join("../docs", filepath.FromSlash(file)))
				if err != nil {
					t.Errorf("docs/runbook.md:%d: link %q: %v", l.n, target, err)
					continue
				}
				page = string(pb)
				pages[file] = page
			}
			if anchor != "" {
				if _, ok := githubAnchors(page)[anchor]; !ok {
					t.Errorf("docs/runbook.md:%d: link %q: no heading with anchor #%s", l.n, target, anchor)
					continue
				}
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("docs/runbook.md has no relative links")
	}
	t.Logf("%d relative links resolve", checked)
}

// githubAnchors returns the anchors GitHub gives the ATX headings ("## …")
// of a Markdown document, each mapped to its heading text: the text is
// lowercased, spaces become '-', every other character but letters, digits,
// '-' and '_' is dropped, and a repeated anchor gets "-1", "-2", … appended.
// Lines in code blocks are not headings; links count by their text.
func githubAnchors(md string) map[string]string {
	anchors := map[string]string{}
	seen := map[string]int{}
	for _, l := range markdownLines(md) {
		trimmed := strings.TrimLeft(l.text, " ")
		if l.block != 0 || len(l.text)-len(trimmed) > 3 {
			continue
		}
		level := len(trimmed) - len(strings.TrimLeft(trimmed, "#"))
		if level == 0 || level > 6 || (len(trimmed) > level && trimmed[level] != ' ') {
			continue
		}
		text := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(trimmed[level:]), "#"))
		text = linkText(text)
		slug := slugify(text)
		anchor := slug
		if n := seen[slug]; n > 0 {
			anchor = fmt.Sprintf("%s-%d", slug, n)
		}
		seen[slug]++
		anchors[anchor] = text
	}
	return anchors
}

// mdLine is a line of a Markdown document: its number (from 1), its text,
// and the fenced code block it is in (numbered from 1; 0 outside). The
// fence lines themselves are left out.
type mdLine struct {
	n     int
	text  string
	block int
}

func markdownLines(md string) []mdLine {
	var out []mdLine
	fence := ""
	blocks := 0
	for i, line := range strings.Split(md, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if f := fenceMarker(trimmed); f != "" && len(line)-len(trimmed) <= 3 && (fence == "" || strings.HasPrefix(f, fence)) {
			if fence == "" {
				fence = f
				blocks++
			} else {
				fence = ""
			}
			continue
		}
		l := mdLine{n: i + 1, text: line}
		if fence != "" {
			l.block = blocks
		}
		out = append(out, l)
	}
	return out
}

// fenceMarker is the run of ``` or ~~~ (three or more) that opens or
// closes a fenced code block at the start of line, or "".
func fenceMarker(line string) string {
	for _, c := range []string{"`", "~"} {
		n := len(line) - len(strings.TrimLeft(line, c))
		if n >= 3 {
			return line[:n]
		}
	}
	return ""
}

// linkText replaces each Markdown link [text](target) by its text.
func linkText(s string) string {
	var b strings.Builder
	for {
		open := strings.Index(s, "[")
		mid := strings.Index(s, "](")
		if open < 0 || mid < open {
			b.WriteString(s)
			return b.String()
		}
		end := strings.Index(s[mid:], ")")
		if end < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:open])
		b.WriteString(s[open+1 : mid])
		s = s[mid+end+1:]
	}
}

func slugify(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestGitHubAnchors(t *testing.T) {
	md := "# Runbook\n" +
		"## FencingEtcdDown\n" +
		"### Step 6. Bump (with its preflight)\n" +
		"## Stuck height after a non-cooperative failover ##\n" +
		"```sh\n# not a heading\n```\n" +
		"    ## indented code, not a heading\n" +
		"#hashtag, not a heading\n" +
		"## `fencectl abandon` and [the chain](clients.md)\n" +
		"## Notes\n## Notes\n"
	want := map[string]string{
		"runbook":                        "Runbook",
		"fencingetcddown":                "FencingEtcdDown",
		"step-6-bump-with-its-preflight": "Step 6. Bump (with its preflight)",
		"stuck-height-after-a-non-cooperative-failover": "Stuck height after a non-cooperative failover",
		"fencectl-abandon-and-the-chain":                "`fencectl abandon` and the chain",
		"notes":                                         "Notes",
		"notes-1":                                       "Notes",
	}
	got := githubAnchors(md)
	if len(got) != len(want) {
		t.Errorf("githubAnchors = %v, want %v", got, want)
	}
	for a, h := range want {
		if got[a] != h {
			t.Errorf("githubAnchors()[%q] = %q, want %q", a, got[a], h)
		}
	}
}

// fencectlCommands is fencectl's command tree as cobra builds it
// (internal/cli): each command that runs (a leaf: "audit chain", not
// "audit") with the flags it takes besides the global ones, and whether
// each flag takes a value. fencectlGlobalFlags are the flags accepted before
// or after any command.
var fencectlCommands, fencectlGlobalFlags = fencectlTree()

func fencectlTree() (map[string]map[string]bool, map[string]bool) {
	root := cli.NewCommand(cli.Env{})
	flags := func(fs *pflag.FlagSet) map[string]bool {
		m := map[string]bool{}
		fs.VisitAll(func(f *pflag.Flag) {
			takesValue := f.NoOptDefVal == "" // a bool flag has one: "true"
			m["--"+f.Name] = takesValue
			if f.Shorthand != "" {
				m["-"+f.Shorthand] = takesValue
			}
		})
		return m
	}
	globals := flags(root.PersistentFlags())
	for _, f := range []string{"--version", "-v", "--help", "-h"} {
		globals[f] = false
	}
	cmds := map[string]map[string]bool{}
	var walk func(c *cobra.Command, path string)
	walk = func(c *cobra.Command, path string) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		if path != "" && !c.HasSubCommands() {
			local := flags(c.LocalFlags())
			delete(local, "--help")
			delete(local, "-h")
			cmds[path] = local
		}
		for _, sub := range c.Commands() {
			walk(sub, strings.TrimSpace(path+" "+sub.Name()))
		}
	}
	walk(root, "")
	return cmds, globals
}

func TestFencectlTree(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"status":    {"--watch", "--check-holder"},
		"bump":      {"--from", "--to", "--reason", "--dry-run", "--force", "--yes", "--timeout", "--first-signature-wait", "--follow"},
		"abandon":   {"--height", "--round", "--step", "--reason"},
		"readiness": {"--context", "--namespace", "--kubeconfig"},
	} {
		for _, f := range flags {
			if _, ok := fencectlCommands[cmd][f]; !ok {
				t.Errorf("fencectl %s has no flag %s (tree: %v)", cmd, f, fencectlCommands[cmd])
			}
		}
	}
	if fencectlCommands["bump"]["--dry-run"] || !fencectlCommands["bump"]["--to"] || !fencectlGlobalFlags["-o"] || fencectlGlobalFlags["--version"] {
		t.Errorf("flags that take a value: bump %v, globals %v", fencectlCommands["bump"], fencectlGlobalFlags)
	}
	for _, c := range []string{"validator add", "validator remove", "holder add", "holder list", "freeze", "unfreeze", "history", "evidence", "audit journal", "audit chain", "completion bash"} {
		if _, ok := fencectlCommands[c]; !ok {
			t.Errorf("fencectl has no command %q (commands: %s)", c, commandList())
		}
	}
	if _, ok := fencectlCommands["audit"]; ok {
		t.Errorf("a command group (audit) is listed as a command")
	}
}

// Every fencectl command line in a code block of the runbook names a
// subcommand fencectl has and only flags that subcommand takes.
func TestRunbookCommands(t *testing.T) {
	b, err := os.ReadFile("../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := shellLines(string(b))
	used := map[string]int{}
	for _, l := range lines {
		for _, words := range fencectlInvocations(l.text) {
			cmd, err := checkFencectl(words)
			if err != nil {
				t.Errorf("docs/runbook.md:%d: %v\n\t%s", l.line, err, l.text)
				continue
			}
			used[cmd]++
		}
	}
	if len(used) == 0 {
		t.Fatal("docs/runbook.md shows no fencectl command in its code blocks")
	}
	t.Logf("fencectl command lines checked, by subcommand: %v", used)
}

// shellLine is one logical line of a code block: lines ending in '\' are
// joined with the next.
type shellLine struct {
	line int // where it starts in the file, from 1
	text string
}

// shellLines returns the logical lines of every fenced code block of md.
func shellLines(md string) []shellLine {
	var out []shellLine
	var cur *shellLine
	block := 0
	for _, l := range markdownLines(md) {
		if cur != nil && l.block != block {
			out = append(out, *cur)
			cur = nil
		}
		block = l.block
		if l.block == 0 {
			continue
		}
		if cur == nil {
			cur = &shellLine{line: l.n}
		} else {
			cur.text += " "
		}
		text, continued := strings.CutSuffix(strings.TrimRight(l.text, " "), `\`)
		cur.text += text
		if !continued {
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out
}

// fencectlInvocations splits a shell line into words (quotes and
// backslashes as the shell reads them; '|', ';', '&', '<', '>', '(' and ')'
// end a command; '#' starts a comment) and returns, for each word that is
// fencectl (or bin/fencectl), the words after it up to the end of its
// command. A quoted word never counts: "run fencectl status" is text.
func fencectlInvocations(line string) [][]string {
	type word struct {
		text       string
		op, quoted bool
	}
	var words []word
	var cur strings.Builder
	inWord, quoted := false, false
	var quote rune
	flush := func() {
		if inWord {
			words = append(words, word{text: cur.String(), quoted: quoted})
			cur.Reset()
			inWord, quoted = false, false
		}
	}
	rs := []rune(line)
scan:
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else if r == '\\' && quote == '"' && i+1 < len(rs) {
				i++
				cur.WriteRune(rs[i])
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord, quoted = r, true, true
		case r == '\\' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			inWord = true
		case r == ' ' || r == '\t':
			flush()
		case r == '#' && !inWord:
			break scan
		case strings.ContainsRune("|;&<>()", r):
			flush()
			words = append(words, word{text: string(r), op: true})
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	flush()
	var out [][]string
	for i, w := range words {
		if w.op || w.quoted || (w.text != "fencectl" && !strings.HasSuffix(w.text, "bin/fencectl")) {
			continue
		}
		var args []string
		for _, a := range words[i+1:] {
			if a.op {
				break
			}
			args = append(args, a.text)
		}
		out = append(out, args)
	}
	return out
}

// checkFencectl checks fencectl's arguments (without the program name)
// against fencectlCommands and returns the subcommand they name.
func checkFencectl(args []string) (string, error) {
	var path []string
	var flags map[string]bool
	cmd := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			if cmd == "" {
				path = append(path, a)
				if _, ok := fencectlCommands[strings.Join(path, " ")]; ok {
					cmd = strings.Join(path, " ")
					flags = fencectlCommands[cmd]
				} else if !isCommandGroup(path) {
					return "", fmt.Errorf("fencectl has no command %q (commands: %s)", strings.Join(path, " "), commandList())
				}
			}
			continue
		}
		name, _, hasValue := strings.Cut(a, "=")
		takesValue, global := fencectlGlobalFlags[name]
		if !global {
			if cmd == "" {
				return "", fmt.Errorf("flag %s before the command: only global flags may come first", name)
			}
			var ok bool
			if takesValue, ok = flags[name]; !ok {
				return "", fmt.Errorf("fencectl %s has no flag %s", cmd, name)
			}
		}
		if takesValue && !hasValue {
			if i+1 >= len(args) {
				return "", fmt.Errorf("flag %s needs a value", name)
			}
			i++
		}
	}
	if cmd == "" {
		if len(path) == 0 && (slices.Contains(args, "--version") || slices.Contains(args, "--help")) {
			return "--version", nil
		}
		return "", fmt.Errorf("incomplete fencectl command %q (commands: %s)", strings.Join(path, " "), commandList())
	}
	return cmd, nil
}

// isCommandGroup reports whether path is the start of a two-word command
// ("audit" of "audit chain").
func isCommandGroup(path []string) bool {
	prefix := strings.Join(path, " ") + " "
	for c := range fencectlCommands {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

func commandList() string {
	var cs []string
	for c := range fencectlCommands {
		cs = append(cs, c)
	}
	slices.Sort(cs)
	return strings.Join(cs, ", ")
}

func TestCheckFencectl(t *testing.T) {
	for _, tc := range []struct {
		line    string
		want    []string // the subcommands found
		wantErr string
	}{
		{line: `fencectl bump --from region-a --to region-b --reason "INC-42 region A lost" --dry-run -o json | tee plan.json`, want: []string{"bump"}},
		{line: `$ fencectl --coordinator https://localhost:7600 status --check-holder region-a; echo "exit $?"`, want: []string{"status"}},
		{line: `kubectl exec besu-0 -c fence-sidecar -- fencectl audit journal --state-dir /var/lib/fencing -o json > a.json`, want: []string{"audit journal"}},
		{line: `fencectl bump --follow 0123abcd 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4`, want: []string{"bump"}},
		{line: `fencectl abandon "$V" --height=13 --step block --reason 'INC-42 # not a comment'  # a comment`, want: []string{"abandon"}},
		{line: `fencectl --version`, want: []string{"--version"}},
		{line: `echo "run fencectl status first"`},
		{line: `fencectl: bump 0x5B38…: conflict: a bump is already in progress`},
		{line: `fencectl drill --partition`, wantErr: `fencectl has no command "drill"`},
		{line: `fencectl validator rename x`, wantErr: `fencectl has no command "validator rename"`},
		{line: `fencectl audit`, wantErr: `incomplete fencectl command "audit"`},
		{line: `fencectl bump --from region-a --to region-b --operator alice --reason r`, wantErr: "fencectl bump has no flag --operator"},
		{line: `fencectl --reason r freeze v`, wantErr: "flag --reason before the command"},
		{line: `fencectl status --check-holder`, wantErr: "flag --check-holder needs a value"},
	} {
		var got []string
		var errs []string
		for _, args := range fencectlInvocations(tc.line) {
			cmd, err := checkFencectl(args)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			got = append(got, cmd)
		}
		if tc.wantErr != "" {
			if len(errs) != 1 || !strings.Contains(errs[0], tc.wantErr) {
				t.Errorf("check %q: errors %q, want one containing %q", tc.line, errs, tc.wantErr)
			}
			continue
		}
		if len(errs) > 0 || !slices.Equal(got, tc.want) {
			t.Errorf("check %q = %q, errors %q; want %q", tc.line, got, errs, tc.want)
		}
	}
}

func TestShellLines(t *testing.T) {
	md := "text fencectl status\n```sh\nfencectl bump v \\\n  --to region-b \\\n  --reason r\nfencectl status\n```\n"
	got := shellLines(md)
	want := []shellLine{{line: 3, text: "fencectl bump v    --to region-b    --reason r"}, {line: 6, text: "fencectl status"}}
	if !slices.Equal(got, want) {
		t.Errorf("shellLines = %+v, want %+v", got, want)
	}
}
