package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/validator-fencing/fencing/internal/consensus"
)

// checkpointVersion changes when the file format does.
const checkpointVersion = 1

// checkpoint is what a chain audit saves after every window: its parameters,
// the next height to audit, and everything found so far. Heights below Next
// were audited on every endpoint still in use, so a resumed run loses
// nothing.
type checkpoint struct {
	Version    int                         `json:"version"`
	Endpoints  []string                    `json:"endpoints"`
	Consensus  consensus.Consensus         `json:"consensus"`
	From       uint64                      `json:"from"`
	To         uint64                      `json:"to"`
	Next       uint64                      `json:"next"`
	Headers    int64                       `json:"headers"`
	Signatures int64                       `json:"signatures"`
	Formats    map[consensus.Consensus]int `json:"formats"`
	Duplicates []Duplicate                 `json:"duplicates"`
	Unaudited  []Unaudited                 `json:"unaudited"`
	Warnings   []string                    `json:"warnings"`
}

func newCheckpoint(cfg ChainConfig, from, to, next uint64, r *Report) *checkpoint {
	eps := slices.Clone(cfg.Endpoints)
	slices.Sort(eps)
	r.Unaudited = mergeUnaudited(r.Unaudited)
	return &checkpoint{
		Version: checkpointVersion, Endpoints: eps, Consensus: cfg.Consensus,
		From: from, To: to, Next: next,
		Headers: r.Headers, Signatures: r.Signatures, Formats: r.Formats,
		Duplicates: r.Duplicates, Unaudited: r.Unaudited, Warnings: r.Warnings,
	}
}

// compatible reports whether cp was written by an audit with the same
// endpoints, format and range as cfg.
func (cp *checkpoint) compatible(cfg ChainConfig) error {
	eps := slices.Clone(cfg.Endpoints)
	slices.Sort(eps)
	var diffs []string
	if !slices.Equal(eps, cp.Endpoints) {
		diffs = append(diffs, fmt.Sprintf("endpoints %v, not %v", cp.Endpoints, eps))
	}
	if cp.Consensus != cfg.Consensus {
		diffs = append(diffs, fmt.Sprintf("consensus %s, not %s", cp.Consensus, cfg.Consensus))
	}
	if cp.From != cfg.From {
		diffs = append(diffs, fmt.Sprintf("--from %d, not %d", cp.From, cfg.From))
	}
	if cfg.HasTo && cp.To != cfg.To {
		diffs = append(diffs, fmt.Sprintf("--to %d, not %d", cp.To, cfg.To))
	}
	if cp.Next < cp.From || (cp.To >= cp.From && cp.Next > cp.To+1) {
		diffs = append(diffs, fmt.Sprintf("next height %d outside %d..%d", cp.Next, cp.From, cp.To))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("checkpoint %s belongs to another audit (%s): remove it or pass another --checkpoint", cfg.Checkpoint, joinSemi(diffs))
	}
	return nil
}

func (cp *checkpoint) restore(r *Report) {
	r.Resumed = true
	r.Headers, r.Signatures = cp.Headers, cp.Signatures
	for c, n := range cp.Formats {
		r.Formats[c] += n
	}
	r.Duplicates = append(r.Duplicates, cp.Duplicates...)
	// Ranges at or above Next were projected by an endpoint given up in the
	// interrupted run; this run tries those heights again.
	for _, u := range cp.Unaudited {
		if u.From != nil && u.To != nil {
			if *u.From >= cp.Next {
				continue
			}
			if *u.To >= cp.Next {
				u.To = u64(cp.Next - 1)
			}
		}
		r.Unaudited = append(r.Unaudited, u)
	}
	r.Warnings = append(r.Warnings, cp.Warnings...)
}

// loadCheckpoint reads path; a missing file (or no path) is no checkpoint.
func loadCheckpoint(path string) (*checkpoint, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	var cp checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("checkpoint %s is not a chain audit checkpoint (%v): remove it or pass another --checkpoint", path, err)
	}
	if cp.Version != checkpointVersion {
		return nil, fmt.Errorf("checkpoint %s has version %d, this audit writes version %d: remove it", path, cp.Version, checkpointVersion)
	}
	return &cp, nil
}

// saveCheckpoint writes cp atomically: a temporary file in the same
// directory, fsynced, then renamed over path.
func saveCheckpoint(path string, cp *checkpoint) error {
	b, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable where the platform allows
		d.Close()
	}
	return nil
}

func joinSemi(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "; "
		}
		out += x
	}
	return out
}
