package localjournal_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/localjournal"
)

func ExampleOpen() {
	state, _ := os.MkdirTemp("", "sidecar-state")
	defer os.RemoveAll(state)
	dir := filepath.Join(state, "journal")

	j, err := localjournal.Open(dir, localjournal.Options{Sidecar: "validator-0"})
	if err != nil {
		fmt.Println(err)
		return
	}
	at := fencing.HRS{Height: 100, Round: 0, Step: fencing.StepCommit}
	// Append returns once the record is durable: only then may the
	// signature leave the sidecar.
	err = j.Append(fencing.JournalEntry{Validator: "validator-a", HRS: at, Digest: fencing.Digest{0xaa}, Epoch: 3, Sidecar: "validator-0", At: time.Now()})
	fmt.Println("append:", err)
	// The same HRS again is refused, whatever the digest.
	err = j.Append(fencing.JournalEntry{Validator: "validator-a", HRS: at, Digest: fencing.Digest{0xbb}, Epoch: 3, Sidecar: "validator-0", At: time.Now()})
	fmt.Println("again:", err != nil)
	_ = j.Close()

	// After a restart the watermark is where it was.
	j, _ = localjournal.Open(dir, localjournal.Options{Sidecar: "validator-0"})
	defer j.Close()
	top, _ := j.Top("validator-a")
	fmt.Println("watermark:", top.HRS, top.Digest.String()[:6])
	// The audit reads every retained record with the same rules.
	c, err := localjournal.ReadAll(dir)
	fmt.Println("audit:", len(c.Records), filepath.Base(c.Pos[0].File), c.Pos[0].Line, err)
	// Output:
	// append: <nil>
	// again: true
	// watermark: 100/0/commit 0xaa00
	// audit: 1 00000000000000000001.seg 2 <nil>
}
