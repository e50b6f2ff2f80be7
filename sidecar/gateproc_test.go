//go:build linux

package sidecar

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/crypto"
)

// helperArgv runs this test binary as a helper process in mode.
func helperArgv(mode string) []string {
	return []string{os.Args[0], "-test.run=^TestGateHelperProcess$", "--", mode}
}

// TestGateHelperProcess is not a test: it is the process the tests below
// start (GATE_TEST_HELPER=1). Modes:
//
//	sleep    block for ever
//	tree     start two sleeping children and an orphaned grandchild, print their pids, block
//	sidecar  start a sleeping client with the gate's launcher, print its pid, block
func TestGateHelperProcess(t *testing.T) {
	if os.Getenv("GATE_TEST_HELPER") != "1" {
		t.Skip("helper process for the gate's process tests")
	}
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	if len(args) < 2 {
		os.Exit(2)
	}
	switch args[1] {
	case "sleep":
	case "tree":
		var pids []string
		for range 2 {
			c := exec.Command(os.Args[0], helperArgv("sleep")[1:]...)
			if err := c.Start(); err != nil {
				os.Exit(3)
			}
			pids = append(pids, strconv.Itoa(c.Process.Pid))
		}
		// A child that leaves an orphan behind: it is reparented to the
		// subreaper and must be reaped there.
		c := exec.Command(os.Args[0], helperArgv("orphaner")[1:]...)
		out, err := c.Output()
		if err != nil {
			os.Exit(4)
		}
		pids = append(pids, strings.TrimSpace(string(out)))
		fmt.Println(strings.Join(pids, " "))
	case "orphaner":
		c := exec.Command(os.Args[0], helperArgv("sleep")[1:]...)
		if err := c.Start(); err != nil {
			os.Exit(5)
		}
		fmt.Println(c.Process.Pid)
		os.Exit(0)
	case "sidecar":
		l, err := newGroupLauncher(helperArgv("sleep"), nil, nil, watchdogOptions{keyFile: os.DevNull + ".absent"})
		if err != nil {
			fmt.Println(err)
			os.Exit(6)
		}
		p, err := l.launch(roleValidator, time.Now().Add(time.Hour))
		if err != nil {
			fmt.Println(err)
			os.Exit(7)
		}
		fmt.Println(p.pid())
	default:
		os.Exit(8)
	}
	select {}
}

// alive says whether pid is a process that is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

func waitDead(t *testing.T, pids []int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still alive after %s", pid, within)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// SIGKILL to the client's group kills and reaps all of it, children and an
// orphaned grandchild included, and gone() then says so.
func TestGroupProcessKillReapsTheWholeGroup(t *testing.T) {
	t.Setenv("GATE_TEST_HELPER", "1")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w // the launcher hands the client the sidecar's stdout
	l, err := newGroupLauncher(helperArgv("tree"), nil, nil, watchdogOptions{keyFile: filepath.Join(t.TempDir(), "key")})
	if err != nil {
		os.Stdout = stdout
		t.Fatal(err)
	}
	p, err := l.launch(roleValidator, time.Now().Add(time.Hour))
	os.Stdout = stdout
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("read the helper's pids: %v", err)
	}
	pids := []int{p.pid()}
	for _, f := range strings.Fields(line) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("helper printed %q", line)
		}
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		if pgid, err := syscall.Getpgid(pid); err != nil || pgid != p.pid() {
			t.Fatalf("process %d in group %d (%v), want the client's group %d", pid, pgid, err, p.pid())
		}
	}
	if gone, err := p.gone(); gone || err != nil {
		t.Fatalf("gone() of a running group = %v, %v", gone, err)
	}
	start := time.Now()
	if err := p.signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGroupGone(t, p.(*groupProcess), "SIGKILL")
	t.Logf("group of %d processes gone %s after SIGKILL", len(pids), time.Since(start).Round(time.Microsecond))
	// The leader is a zombie until the release: the group's id cannot be
	// reused meanwhile.
	if state, _, _, err := procStat(fmt.Sprintf("/proc/%d/stat", p.pid())); err != nil || state != 'Z' {
		t.Errorf("leader %d before the release: state %q (%v), want a zombie", p.pid(), state, err)
	}
	p.release()
	// Then everything is reaped (in the background).
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for {
			err := syscall.Kill(pid, 0)
			if errors.Is(err, syscall.ESRCH) {
				break
			}
			if time.Now().After(deadline) {
				st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
				t.Fatalf("process %d of the group not reaped 10s after the release (kill 0: %v): %.40s", pid, err, st)
			}
			time.Sleep(time.Millisecond)
		}
	}
	select {
	case <-p.exited():
	default:
		t.Error("exited() not closed after the group is gone")
	}
}

// The kernel kills the client when the sidecar that started it dies
// (kill -9, the OOM killer): PR_SET_PDEATHSIG from the locked thread.
func TestGroupProcessDiesWithTheSidecar(t *testing.T) {
	cmd := exec.Command(os.Args[0], helperArgv("sidecar")[1:]...)
	cmd.Env = append(os.Environ(), "GATE_TEST_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the client's pid: %v", err)
	}
	client, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper sidecar printed %q", line)
	}
	t.Cleanup(func() { _ = syscall.Kill(client, syscall.SIGKILL) }) // if the test fails
	if !alive(client) {
		t.Fatalf("client %d not running", client)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDead(t, []int{client}, 10*time.Second)
}

// launchWatched starts the sleep helper as a validator under its watchdog,
// with the kill time killAt and a key file for the watchdog to remove.
func launchWatched(t *testing.T, killAt time.Time) (*groupProcess, string) {
	t.Helper()
	t.Setenv("GATE_TEST_HELPER", "1")
	key := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(key, []byte("key"), 0o400); err != nil {
		t.Fatal(err)
	}
	l, err := newGroupLauncher(helperArgv("sleep"), nil, nil, watchdogOptions{keyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.launch(roleValidator, killAt)
	if err != nil {
		t.Fatal(err)
	}
	gp := p.(*groupProcess)
	t.Cleanup(func() {
		_ = gp.signal(syscall.SIGKILL)
		gp.release()
	})
	return gp, key
}

// waitGroupGone waits for p's whole group to be gone, the watchdog and
// the client it started.
func waitGroupGone(t *testing.T, p *groupProcess, why string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		gone, err := p.gone()
		if gone {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %d not gone 30s after %s (%v)", p.pid(), why, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// A sidecar that gives its validator's watchdog no later kill time (it is
// stopped or wedged: here it simply does not) has the client killed and
// the key file removed by the watchdog, not before the kill time.
func TestWatchdogKillsWithoutTheSidecar(t *testing.T) {
	// Time enough for the watchdog and its client to start on a busy
	// machine: the check below needs both running before the kill time.
	killAt := time.Now().Add(3 * time.Second)
	p, key := launchWatched(t, killAt)
	var members []member
	for len(members) < 2 {
		var err error
		if members, err = p.members(); err != nil {
			t.Fatal(err)
		}
		if !time.Now().Before(killAt) {
			t.Fatalf("group of the watched validator at the kill time: %+v, want the watchdog and the client", members)
		}
		time.Sleep(time.Millisecond)
	}
	// The client does not hold the watchdog's pipe (it could read the
	// kill times meant for the watchdog).
	pipe, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/3", p.pid()))
	if err != nil || !strings.HasPrefix(pipe, "pipe:") {
		t.Fatalf("the watchdog's fd 3 = %q (%v), want its pipe", pipe, err)
	}
	for _, m := range members {
		if m.pid == p.pid() {
			continue
		}
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", m.pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fd); l == pipe {
				t.Errorf("the client %d holds the watchdog's pipe as %s", m.pid, fd)
			}
		}
	}
	waitGroupGone(t, p, "its kill time")
	if now := time.Now(); now.Before(killAt) {
		t.Fatalf("group gone at %s, before the kill time %s", now.Format("15:04:05.000"), killAt.Format("15:04:05.000"))
	}
	if _, err := os.Lstat(key); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key file after the watchdog fired: %v, want it removed", err)
	}
	t.Logf("group of %d gone %s after the kill time", len(members), time.Since(killAt).Round(time.Millisecond))
}

// A kill time moved later keeps the client running past the first one,
// and an earlier one that arrives after it (out of order) does not move it
// back; the pipe closed (the sidecar exited) kills at once.
func TestWatchdogExtendedThenOrphaned(t *testing.T) {
	first := time.Now().Add(3 * time.Second)
	p, key := launchWatched(t, first)
	for _, at := range []time.Time{time.Now().Add(time.Hour), first.Add(-time.Second)} {
		if err := p.extend(at); err != nil {
			t.Fatal(err)
		}
	}
	for time.Now().Before(first.Add(time.Second)) {
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-p.exited():
		t.Fatal("the watchdog fired at its first kill time although it was moved an hour later (a time that arrived after that, earlier than the first, must not move it back)")
	default:
	}
	if gone, err := p.gone(); gone || err != nil {
		t.Fatalf("group gone = %v (%v) after the kill time was moved later", gone, err)
	}
	closed := time.Now()
	p.mu.Lock()
	p.watchdog.Close()
	p.mu.Unlock()
	waitGroupGone(t, p, "its pipe closed")
	if _, err := os.Lstat(key); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key file after the pipe closed: %v, want it removed", err)
	}
	t.Logf("group gone %s after the pipe closed", time.Since(closed).Round(time.Millisecond))
}

// memoryDir is a directory on tmpfs for key files.
func memoryDir(t *testing.T) string {
	t.Helper()
	if checkMemoryBacked("/dev/shm") != nil {
		t.Skip("/dev/shm is not a tmpfs here")
	}
	d, err := os.MkdirTemp("/dev/shm", "gate-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// The key file in each format: mode 0400, the client's format, written
// whole and removed; a directory on a disk is refused.
func TestKeyFile(t *testing.T) {
	hexPath, addr := testKey(t)
	key, err := LoadKey(hexPath, "")
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := memoryDir(t)
	for _, tc := range []struct{ name, format string }{
		{"hex", KeyFormatHex},
		{"keystore", KeyFormatKeystore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			kf, err := newKeyFile(path, tc.format, key, pw)
			if err != nil {
				t.Fatal(err)
			}
			if err := kf.write(); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil || st.Mode().Perm() != 0o400 {
				t.Fatalf("key file mode = %v (%v), want 0400", st.Mode(), err)
			}
			data, _ := os.ReadFile(path)
			var got string
			if tc.format == KeyFormatHex {
				k, err := crypto.HexToECDSA(strings.TrimSpace(string(data)))
				if err != nil {
					t.Fatalf("hex key file does not parse: %v", err)
				}
				got = crypto.PubkeyToAddress(k.PublicKey).Hex()
			} else {
				k, err := keystore.DecryptKey(data, "s3cret")
				if err != nil {
					t.Fatalf("keystore key file does not decrypt: %v", err)
				}
				got = k.Address.Hex()
			}
			if got != addr {
				t.Fatalf("key file holds %s, want %s", got, addr)
			}
			// Written again over itself (a restart), then removed twice.
			if err := kf.write(); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := kf.remove(); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("key file still there after remove: %v", err)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "."+filepath.Base(path)+"*")); len(left) > 0 {
				t.Fatalf("temporary files left: %v", left)
			}
		})
	}
	disk := t.TempDir()
	if checkMemoryBacked(disk) == nil {
		t.Skipf("%s is on tmpfs here: the refusal of a disk cannot be checked", disk)
	}
	if _, err := newKeyFile(filepath.Join(disk, "key"), KeyFormatHex, key, ""); err == nil || !strings.Contains(err.Error(), "memory-backed") {
		t.Fatalf("newKeyFile on a disk = %v, want a refusal naming memory-backed", err)
	}
}
