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

// TestChainReportJSON audits two nodes that disagree at height 6 and checks
// the JSON evidence an operator keeps (fencectl audit chain -o json), and
// that a checkpointed run resumes with the same findings.
func TestChainReportJSON(t *testing.T) {
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

	t.Run("clean", func(t *testing.T) {
		r, err := AuditChain(context.Background(), ChainConfig{Endpoints: []string{urlA}, From: 1, To: 12, HasTo: true})
		if err != nil || r.ExitCode() != ExitClean {
			t.Fatalf("AuditChain(one node) = %v, %v; want clean", r, err)
		}
	})
	t.Run("duplicates as json evidence", func(t *testing.T) {
		r, err := AuditChain(context.Background(), ChainConfig{Endpoints: []string{urlA, urlB}, From: 1, Batch: 5, Concurrency: 2})
		if err != nil || r.ExitCode() != ExitDuplicates {
			t.Fatalf("AuditChain = %v, %v; want duplicates", r, err)
		}
		var buf bytes.Buffer
		if err := r.WriteJSON(&buf); err != nil {
			t.Fatal(err)
		}
		var back Report
		if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
			t.Fatalf("WriteJSON is not JSON: %v\n%s", err, buf.String())
		}
		if len(back.Duplicates) != 1 || back.Duplicates[0].Height != 6 || back.Duplicates[0].Validator != addr(keys[0]).Hex() {
			t.Fatalf("duplicates = %+v", back.Duplicates)
		}
		for _, v := range back.Duplicates[0].Variants {
			if len(v.Signature) != 65 || len(v.Sources) != 1 {
				t.Errorf("evidence %+v", v)
			}
		}
	})
	t.Run("checkpoint", func(t *testing.T) {
		ckpt := filepath.Join(t.TempDir(), "c.json")
		for i := range 2 {
			r, err := AuditChain(context.Background(), ChainConfig{Endpoints: []string{urlA, urlB}, From: 1, Checkpoint: ckpt})
			if err != nil || r.DuplicateCount() != 1 || r.Resumed != (i == 1) {
				t.Fatalf("run %d: %v, %v; want 1 duplicate, resumed %t", i, r, err, i == 1)
			}
		}
	})
}

func TestDefaultChainConfig(t *testing.T) {
	d := DefaultChainConfig()
	if d.Concurrency != defaultConcurrency || d.Batch != defaultBatch || d.Timeout != defaultTimeout || d.Retries != defaultRetries || d.Consensus == "" {
		t.Errorf("DefaultChainConfig() = %+v", d)
	}
	if err := (ChainConfig{Endpoints: []string{"http://x"}, Concurrency: d.Concurrency, Batch: d.Batch, Timeout: d.Timeout, Retries: d.Retries}).Validate(); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
}

func TestRunJournalAuditSources(t *testing.T) {
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
		r := RunJournalAudit(context.Background(), nil, state)
		// Entries at 12:05:10 under epoch 2 have no revoke without the
		// quorum history: clean, with the torn record as a warning.
		if r.ExitCode() != ExitClean || !strings.Contains(strings.Join(r.Warnings, "\n"), "last record is torn") {
			t.Errorf("RunJournalAudit = exit %d, warnings %q", r.ExitCode(), r.Warnings)
		}
	})
	t.Run("quorum and state dir", func(t *testing.T) {
		r := RunJournalAudit(context.Background(), quorum, state)
		if r.ExitCode() != ExitDuplicates || len(r.Duplicates) != 1 || r.Duplicates[0].Height != 100 {
			t.Fatalf("RunJournalAudit = exit %d, duplicates %+v", r.ExitCode(), r.Duplicates)
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
		r := RunJournalAudit(context.Background(), nil, dir)
		var out bytes.Buffer
		_ = r.WriteTable(&out)
		if r.ExitCode() != ExitIncomplete || !strings.Contains(out.String(), seg+":2") || !strings.Contains(out.String(), "checksum mismatch") {
			t.Errorf("exit %d\n%s", r.ExitCode(), out.String())
		}
	})
	t.Run("a file of the old format is incomplete", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "x.jsonl"), []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := RunJournalAudit(context.Background(), nil, dir)
		var out bytes.Buffer
		_ = r.WriteTable(&out)
		if r.ExitCode() != ExitIncomplete || !strings.Contains(out.String(), "old one-file-per-validator format") {
			t.Errorf("exit %d\n%s", r.ExitCode(), out.String())
		}
	})
}

func ExampleRunJournalAudit() {
	dir, _ := os.MkdirTemp("", "audit-example")
	defer os.RemoveAll(dir)
	// A sidecar's local journal says validator-a signed 0x11… at 7/0/commit,
	j, _ := localjournal.Open(filepath.Join(dir, "journal"), localjournal.Options{Sidecar: "validator-0"})
	at := fencing.HRS{Height: 7, Round: 0, Step: fencing.StepCommit}
	_ = j.Append(fencing.JournalEntry{Validator: "validator-a", HRS: at, Digest: fencing.Digest{0x11}, Epoch: 1, Sidecar: "validator-0", At: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)})
	_ = j.Close()
	// the quorum journal that the other region's sidecar signed 0x22… there.
	quorum := &fakeJournal{entries: []fencing.JournalEntry{{Validator: "validator-a", HRS: at, Digest: fencing.Digest{0x22}, Epoch: 2, Sidecar: "validator-0.b", At: time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)}}}
	r := RunJournalAudit(context.Background(), quorum, dir)
	fmt.Println(r.ExitCode(), r.Verdict())
	// Output: 1 DUPLICATES FOUND: 1 duplicate signature(s), 0 journal write(s) after revoke
}
