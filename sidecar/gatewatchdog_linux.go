package sidecar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// The watchdog is the validator client's parent and the leader of its
// process group: the sidecar starts it (fence-sidecar --gate-watchdog ...)
// instead of the client, and it starts the client. It holds a kill time on
// the host's monotonic clock: the sidecar moves it later after each renewal,
// over a pipe (fd 3). When the kill time passes with no later one received,
// or the pipe closes (the sidecar exited), it removes the key file and kills
// its whole process group, itself included. So a sidecar that is stopped
// (SIGSTOP), wedged or starved cannot leave the client signing past the
// lease: the watchdog needs neither the sidecar nor the coordinator to kill.
// The kill time it holds is --gate-kill-before/2 later than the gate's own,
// so a working gate always kills first (after its last head poll), and
// still --gate-kill-before/2 before the local deadline.
//
// What it cannot do: run when the whole container is frozen (a cgroup
// freeze or a paused VM stops the client as well, and on thaw the client
// runs until the watchdog's timer fires, a few milliseconds). docs/gate.md.

// gateWatchdogArg is the first argument of a watchdog process:
//
//	fence-sidecar --gate-watchdog KILL-AT-NS text|json KEY-FILE -- PATH ARGV...
const gateWatchdogArg = "--gate-watchdog"

// monoNow reads CLOCK_MONOTONIC: the clock Go's timers use, and one that
// every process of the host shares (time.Time's monotonic reading is
// private to its process).
func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err)) // cannot fail on Linux
	}
	return ts.Nano()
}

// monoAt converts t to CLOCK_MONOTONIC nanoseconds.
func monoAt(t time.Time) int64 { return monoNow() + int64(time.Until(t)) }

// GateWatchdog runs the watchdog when args (the command line without the
// program name) start with --gate-watchdog; ok is false otherwise. The
// sidecar's main calls it before anything else.
func GateWatchdog(args []string) (code int, ok bool) {
	if len(args) == 0 || args[0] != gateWatchdogArg {
		return 0, false
	}
	if len(args) < 7 || args[4] != "--" {
		fmt.Fprintf(os.Stderr, "fence-sidecar %s: the sidecar starts the watchdog itself; it takes KILL-AT-NS text|json KEY-FILE -- PATH ARGV...\n", gateWatchdogArg)
		return 2, true
	}
	at, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fence-sidecar %s: kill time %q: %v\n", gateWatchdogArg, args[1], err)
		return 2, true
	}
	lg := hclog.New(&hclog.LoggerOptions{Name: "fence-sidecar.gate", Output: os.Stderr, JSONFormat: args[2] == "json", TimeFormat: "2006-01-02T15:04:05.000Z07:00"})
	w := &watchdog{at: at, keyFile: args[3], lg: lg}
	syscall.CloseOnExec(3) // the client does not get the pipe
	return w.run(os.NewFile(3, "gate-watchdog-pipe"), args[5], args[6:]), true
}

type watchdog struct {
	at      int64 // CLOCK_MONOTONIC ns
	keyFile string
	lg      hclog.Logger
	client  int
}

func (w *watchdog) run(pipe *os.File, path string, argv []string) int {
	if pipe == nil {
		w.lg.Error("watchdog: no pipe from the sidecar on fd 3; not starting the validator client")
		return 2
	}
	if monoNow() >= w.at {
		w.lg.Error("watchdog: kill time already passed; not starting the validator client")
		return 1
	}
	updates := make(chan int64, 16)
	go readKillTimes(pipe, updates)
	started := make(chan error, 1)
	exited := make(chan int, 1)
	go w.startClient(path, argv, started, exited)
	if err := <-started; err != nil {
		w.lg.Error("watchdog: starting the validator client failed", "error", err)
		return 1
	}
	timer := time.NewTimer(w.left())
	for {
		select {
		case code := <-exited:
			return code
		case at, open := <-updates:
			w.take(at, open, timer)
		case <-timer.C:
			// A later kill time read from the pipe may be waiting in
			// updates: the sidecar wrote it before this one passed. One
			// still in the pipe is not waited for (the kill fails closed).
			for drained := false; !drained; {
				select {
				case at, open := <-updates:
					w.take(at, open, timer)
				default:
					drained = true
				}
			}
			left := w.left()
			if left <= 0 {
				w.fire("no renewal moved the kill time (is the sidecar stopped or wedged?)")
			}
			timer.Reset(left)
		}
	}
}

func (w *watchdog) left() time.Duration { return time.Duration(w.at - monoNow()) }

// take handles one read of the pipe: a closed pipe (the sidecar exited)
// fires; a kill time moves the current one later, never earlier.
func (w *watchdog) take(at int64, open bool, timer *time.Timer) {
	if !open {
		w.fire("the sidecar closed the watchdog's pipe (it exited)")
	}
	if at > w.at {
		w.at = at
		timer.Reset(w.left())
	}
}

// fire removes the key file and kills the process group, the watchdog
// included; it does not return.
func (w *watchdog) fire(why string) {
	keyErr := os.Remove(w.keyFile)
	if errors.Is(keyErr, os.ErrNotExist) {
		keyErr = nil
	}
	w.lg.Error("watchdog killed the validator client", "why", why, "pid", w.client, "kill_time_left", w.left().Round(time.Microsecond), "key_file_removed", keyErr == nil, "error", keyErr)
	if err := syscall.Kill(0, syscall.SIGKILL); err != nil {
		_ = syscall.Kill(w.client, syscall.SIGKILL)
		os.Exit(1)
	}
	for {
		time.Sleep(time.Hour) // SIGKILL is on its way
	}
}

// startClient starts the client in the watchdog's process group with
// PR_SET_PDEATHSIG, on a thread locked for the client's lifetime (the
// signal follows the thread that forked, go.dev/issue/27505), and sends
// its exit code on exited.
func (w *watchdog) startClient(path string, argv []string, started chan<- error, exited chan<- int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	proc, err := startDying(path, argv, nil, []*os.File{nil, os.Stdout, os.Stderr}, false)
	if err != nil {
		started <- err
		return
	}
	w.client = proc.Pid
	started <- nil
	st, err := proc.Wait()
	switch {
	case err != nil:
		exited <- 1
	case st.Exited():
		exited <- st.ExitCode()
	default:
		exited <- 128 + int(st.Sys().(syscall.WaitStatus).Signal())
	}
}

// readKillTimes sends each kill time the sidecar writes (8 bytes, big
// endian) and closes updates when the pipe ends.
func readKillTimes(r io.Reader, updates chan<- int64) {
	defer close(updates)
	var b [8]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return
		}
		updates <- int64(binary.BigEndian.Uint64(b[:]))
	}
}

// writeKillTime sends a kill time to a watchdog, within a short deadline:
// a watchdog that does not read is a reason to kill.
func writeKillTime(pipe *os.File, at time.Time) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(monoAt(at)))
	if err := pipe.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	_, err := pipe.Write(b[:])
	return err
}
