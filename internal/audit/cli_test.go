package audit

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/localjournal"
)

func runMain(t *testing.T, journal JournalSource, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb, journal)
	return code, out.String(), errb.String()
}

func TestMainUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		journal    JournalSource
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "no command", args: nil, wantCode: 2, wantStderr: "Usage: fencectl audit"},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantStdout: "Exit codes: 0 clean, 1 duplicates found, 2 incomplete"},
		{name: "unknown command", args: []string{"blocks"}, wantCode: 2, wantStderr: `unknown command "blocks"`},
		{name: "chain help teaches", args: []string{"chain", "--help"}, wantCode: 0, wantStdout: "fencectl audit chain --rpc http://node-a:8545 --rpc http://node-b:8545"},
		{name: "chain help lists flags", args: []string{"chain", "-h"}, wantCode: 0, wantStdout: "-checkpoint"},
		{name: "journal help", args: []string{"journal", "--help"}, wantCode: 0, wantStdout: "--state-dir"},
		{name: "chain without rpc", args: []string{"chain"}, wantCode: 2, wantStderr: "at least one --rpc URL is required"},
		{name: "chain bad number", args: []string{"chain", "--rpc", "http://x", "--from", "ten"}, wantCode: 2, wantStderr: `invalid value "ten" for flag -from`},
		{name: "chain unknown flag", args: []string{"chain", "--rpcs", "http://x"}, wantCode: 2, wantStderr: "flag provided but not defined: -rpcs"},
		{name: "chain bad consensus", args: []string{"chain", "--rpc", "http://x", "--consensus", "pow"}, wantCode: 2, wantStderr: `consensus "pow" is not one of auto, clique, qbft, ibft2`},
		{name: "chain to below from", args: []string{"chain", "--rpc", "http://x", "--from", "5", "--to", "4"}, wantCode: 2, wantStderr: "--to 4 must not be below --from 5"},
		{name: "chain bad batch and concurrency at once", args: []string{"chain", "--rpc", "http://x", "--batch", "0", "--concurrency", "99"}, wantCode: 2, wantStderr: "--concurrency 99 must be between 1 and 64; --batch 0 must be between 1 and 1000"},
		{name: "chain bad timeout", args: []string{"chain", "--rpc", "http://x", "--timeout", "-1s"}, wantCode: 2, wantStderr: "--timeout -1s must be positive"},
		{name: "chain stray argument", args: []string{"chain", "--rpc", "http://x", "extra"}, wantCode: 2, wantStderr: `unexpected argument "extra"`},
		{name: "chain empty rpc", args: []string{"chain", "--rpc", ""}, wantCode: 2, wantStderr: "empty URL"},
		{name: "journal with nothing to read", args: []string{"journal"}, wantCode: 2, wantStderr: "nothing to audit"},
		{name: "journal bad output", args: []string{"journal", "--state-dir", ".", "--output", "xml"}, wantCode: 2, wantStderr: `--output "xml" must be table or json`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runMain(t, tc.journal, tc.args...)
			if code != tc.wantCode {
				t.Errorf("Main(%q) = %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.wantCode, out, errs)
			}
			if tc.wantStdout != "" && !strings.Contains(out, tc.wantStdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantStdout, out)
			}
			if tc.wantStderr != "" && !strings.Contains(errs, tc.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantStderr, errs)
			}
			if tc.wantCode == 2 && tc.wantStderr != "" && tc.args != nil && strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Errorf("bad usage should be one line, got:\n%s", errs)
			}
		})
	}
}

func TestMainChain(t *testing.T) {
	keys := []*ecdsa.PrivateKey{testKey(t, 1), testKey(t, 2)}
	a, b := newChainService(), newChainService()
	var p common.Hash
	for n := uint64(1); n <= 12; n++ {
		h, hash := cliqueHeader(t, n, p, 0, keys[n%2])
		a.put(n, headerJSON(h, hash))
		if n == 6 {
			hb, hashB := cliqueHeader(t, n, p, 7, keys[n%2])
			b.put(n, headerJSON(hb, hashB))
		} else {
			b.put(n, headerJSON(h, hash))
		}
		p = hash
	}
	urlA, urlB := serve(t, a), serve(t, b)

	t.Run("clean table", func(t *testing.T) {
		code, out, errs := runMain(t, nil, "chain", "--rpc", urlA, "--from", "1", "--to", "12")
		if code != 0 || !strings.Contains(out, "CLEAN") || errs != "" {
			t.Errorf("code %d\nstdout %s\nstderr %q", code, out, errs)
		}
	})
	t.Run("duplicates as json evidence", func(t *testing.T) {
		code, out, errs := runMain(t, nil, "chain", "--rpc", urlA, "--rpc", urlB, "--output", "json", "--batch", "5", "--concurrency", "2")
		if code != 1 {
			t.Fatalf("code %d, want 1\nstderr %s", code, errs)
		}
		if errs != "" {
			t.Errorf("stderr is not a terminal but got %q", errs)
		}
		var r Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, out)
		}
		if len(r.Duplicates) != 1 || r.Duplicates[0].Height != 6 || r.Duplicates[0].Validator != addr(keys[0]).Hex() {
			t.Fatalf("duplicates = %+v", r.Duplicates)
		}
		for _, v := range r.Duplicates[0].Variants {
			if len(v.Signature) != 65 || len(v.Sources) != 1 {
				t.Errorf("evidence %+v", v)
			}
		}
	})
	t.Run("Run returns the report", func(t *testing.T) {
		var out bytes.Buffer
		r, code := Run(context.Background(), []string{"chain", "--rpc", urlA, "--rpc", urlB}, &out, &out, nil)
		if code != 1 || r == nil || r.DuplicateCount() != 1 {
			t.Errorf("Run = %v, %d", r, code)
		}
	})
	t.Run("unreachable endpoint is incomplete", func(t *testing.T) {
		code, out, _ := runMain(t, nil, "chain", "--rpc", "http://127.0.0.1:1", "--to", "3", "--timeout", "200ms", "--retries", "0")
		if code != 2 || !strings.Contains(out, "UNAUDITED") {
			t.Errorf("code %d\n%s", code, out)
		}
	})
	t.Run("checkpoint flag", func(t *testing.T) {
		ckpt := filepath.Join(t.TempDir(), "c.json")
		for i := range 2 {
			code, out, errs := runMain(t, nil, "chain", "--rpc", urlA, "--rpc", urlB, "--checkpoint", ckpt, "--output", "json")
			if code != 1 {
				t.Fatalf("run %d: code %d %s", i, code, errs)
			}
			var r Report
			_ = json.Unmarshal([]byte(out), &r)
			if len(r.Duplicates) != 1 || r.Resumed != (i == 1) {
				t.Errorf("run %d: duplicates %d resumed %v", i, len(r.Duplicates), r.Resumed)
			}
		}
	})
}

func TestMainJournal(t *testing.T) {
	// The local journal of the new holder's sidecar, its last write torn.
	state := t.TempDir()
	local := func(h uint64, d byte, sec int) fencing.JournalEntry {
		return fencing.JournalEntry{Validator: "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf", HRS: fencing.HRS{Height: h, Step: fencing.StepCommit},
			Digest: fencing.Digest{d}, Epoch: 2, Sidecar: "validator-0.b", At: time.Date(2026, 3, 1, 12, 5, sec, 0, time.UTC)}
	}
	seg := writeLocal(t, state, "validator-0.b", local(99, 0x99, 0), local(100, 0xbb, 5), local(101, 0x01, 10))
	damage(t, seg, func(b []byte) []byte { return append(b, `{"seq":4,"validator":"0x7e5f`...) })
	quorum := &fakeJournal{
		entries: []fencing.JournalEntry{{
			Validator: "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf",
			HRS:       fencing.HRS{Height: 100, Round: 0, Step: fencing.StepCommit},
			Digest:    fencing.Digest{0xaa}, Epoch: 1, Sidecar: "validator-0",
			At: time.Date(2026, 3, 1, 12, 4, 0, 0, time.UTC),
		}},
		events: []fencing.Event{revokeEvent("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf", 2, time.Date(2026, 3, 1, 12, 5, 7, 0, time.UTC), 88)},
	}
	t.Run("state dir only", func(t *testing.T) {
		code, out, errs := runMain(t, nil, "journal", "--state-dir", state)
		// Entries at 12:05:10 under epoch 2 have no revoke without the
		// quorum history: clean, with the torn record as a warning.
		if code != 0 || !strings.Contains(out, "last record is torn") || errs != "" {
			t.Errorf("code %d\n%s\n%s", code, out, errs)
		}
	})
	t.Run("quorum and state dir", func(t *testing.T) {
		code, out, _ := runMain(t, quorum, "journal", "--state-dir", state, "--output", "json")
		if code != 1 {
			t.Fatalf("code %d, want 1\n%s", code, out)
		}
		var r Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Duplicates) != 1 || r.Duplicates[0].Height != 100 {
			t.Errorf("duplicates = %+v", r.Duplicates)
		}
		// 101 at 12:05:10 was written under epoch 2 after its revoke at
		// 12:05:07 (the torn record after it is skipped).
		if len(r.AfterRevoke) != 1 || r.AfterRevoke[0].HRS.Height != 101 || r.AfterRevoke[0].After != "3s" {
			t.Errorf("after revoke = %+v", r.AfterRevoke)
		}
	})
	t.Run("corrupt line is incomplete", func(t *testing.T) {
		dir := t.TempDir()
		seg := writeLocal(t, dir, "validator-0.b", local(99, 0x99, 0), local(100, 0xbb, 5))
		damage(t, seg, func(b []byte) []byte { return flipIn(b, 2) })
		code, out, _ := runMain(t, nil, "journal", "--state-dir", dir)
		if code != 2 || !strings.Contains(out, seg+":2") || !strings.Contains(out, "checksum mismatch") {
			t.Errorf("code %d\n%s", code, out)
		}
	})
	t.Run("a file of the old format is incomplete", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "x.jsonl"), []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, _ := runMain(t, nil, "journal", "--state-dir", dir)
		if code != 2 || !strings.Contains(out, "old one-file-per-validator format") {
			t.Errorf("code %d\n%s", code, out)
		}
	})
}

func TestIsTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(w) || isTerminal(&bytes.Buffer{}) {
		t.Error("a pipe or a buffer is not a terminal")
	}
}

func ExampleMain() {
	dir, _ := os.MkdirTemp("", "audit-example")
	defer os.RemoveAll(dir)
	// A sidecar's local journal says validator-a signed 0x11… at 7/0/commit,
	j, _ := localjournal.Open(filepath.Join(dir, "journal"), localjournal.Options{Sidecar: "validator-0"})
	at := fencing.HRS{Height: 7, Round: 0, Step: fencing.StepCommit}
	_ = j.Append(fencing.JournalEntry{Validator: "validator-a", HRS: at, Digest: fencing.Digest{0x11}, Epoch: 1, Sidecar: "validator-0", At: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)})
	_ = j.Close()
	// the quorum journal that the other region's sidecar signed 0x22… there.
	quorum := &fakeJournal{entries: []fencing.JournalEntry{{Validator: "validator-a", HRS: at, Digest: fencing.Digest{0x22}, Epoch: 2, Sidecar: "validator-0.b", At: time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)}}}
	var out bytes.Buffer
	code := Main(context.Background(), []string{"journal", "--state-dir", dir}, &out, os.Stderr, quorum)
	first, _, _ := strings.Cut(out.String(), "\n")
	fmt.Println(code, first)
	// Output: 1 DUPLICATES FOUND: 1 duplicate signature(s), 0 journal write(s) after revoke
}
