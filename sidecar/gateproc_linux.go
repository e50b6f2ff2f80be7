package sidecar

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// groupLauncher starts the client as a child of the sidecar, in a process
// group of its own (the gate kills the group, never the sidecar's), with
// PR_SET_PDEATHSIG set to SIGKILL: if the sidecar dies (kill -9, the OOM
// killer), the kernel kills the client it started. The sidecar is the
// client's child subreaper, so orphans of the group are reparented to it
// and reaped here. A validator runs under the watchdog
// (gatewatchdog_linux.go): the group's leader is the watchdog, its child
// the client.
type groupLauncher struct {
	path     string // argv[0] resolved
	argv     []string
	roleArgs map[gateRole][]string
	env      []string
	watchdog watchdogOptions
}

// watchdogOptions are what a validator's watchdog is started with.
type watchdogOptions struct {
	self    string // the sidecar's executable
	logJSON bool
	keyFile string
}

var _ launcher = (*groupLauncher)(nil)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER (linux/prctl.h).
const prSetChildSubreaper = 36

func newGroupLauncher(argv, validatorArgs, followerArgs []string, wd watchdogOptions) (*groupLauncher, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("--gate-exec: %w", err)
	}
	if wd.self == "" {
		if wd.self, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("the sidecar's own executable (the validator's watchdog): %w", err)
		}
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return nil, fmt.Errorf("become the child subreaper of the validator client: %w", e)
	}
	// The client gets the sidecar's environment without its own settings.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FENCE_") {
			env = append(env, kv)
		}
	}
	return &groupLauncher{path: path, argv: argv, env: env, roleArgs: map[gateRole][]string{roleValidator: validatorArgs, roleFollower: followerArgs}, watchdog: wd}, nil
}

func (l *groupLauncher) launch(role gateRole, killAt time.Time) (clientProcess, error) {
	argv := append(slices.Clone(l.argv), l.roleArgs[role]...)
	path, files := l.path, []*os.File{nil, os.Stdout, os.Stderr}
	p := &groupProcess{done: make(chan struct{})}
	if role == roleValidator {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("start %s as %s: the watchdog's pipe: %w", argv[0], role, err)
		}
		defer r.Close()
		p.watchdog = w
		format := "text"
		if l.watchdog.logJSON {
			format = "json"
		}
		argv = append([]string{l.watchdog.self, gateWatchdogArg, strconv.FormatInt(monoAt(killAt), 10), format, l.watchdog.keyFile, "--", l.path}, argv...)
		path, files = l.watchdog.self, append(files, r)
	}
	started := make(chan error, 1)
	go p.run(path, argv, l.env, files, started)
	if err := <-started; err != nil {
		if p.watchdog != nil {
			p.watchdog.Close()
		}
		return nil, fmt.Errorf("start %s as %s: %w", l.argv[0], role, err)
	}
	return p, nil
}

// groupProcess is one run of the client: leader is its pid and its process
// group's id. The leader is reaped only by release, once the gate is done
// with the group: until then its zombie keeps the group's id from being
// reused (pid_max can be as low as 32768), so a signal to the group never
// reaches another program's processes.
type groupProcess struct {
	leader   int
	done     chan struct{}
	watchdog *os.File // a validator's: the pipe its kill times go down

	mu       sync.Mutex
	released bool
}

var _ clientProcess = (*groupProcess)(nil)

// Constants of waitid(2) (linux/wait.h).
const (
	pPID     = 1
	wExited  = 0x4
	wNoWait  = 0x1000000
	wAll     = 0x40000000 // __WALL: whatever signal the child's exit sends its new parent
	siginfoN = 128        // sizeof(siginfo_t)
)

// run starts the client and waits, without reaping it, until the leader
// exits. PR_SET_PDEATHSIG fires when the thread that forked the child ends,
// not the process (go.dev/issue/27505): the fork happens on a locked thread
// that lives as long as the leader.
func (p *groupProcess) run(path string, argv, env []string, files []*os.File, started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	proc, err := startDying(path, argv, env, files, true)
	if err != nil {
		started <- err
		return
	}
	p.leader = proc.Pid
	_ = proc.Release() // reaped by release
	started <- nil
	var info [siginfoN]byte
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(p.leader), uintptr(unsafe.Pointer(&info[0])), wExited|wNoWait, 0, 0)
		if e != syscall.EINTR {
			break
		}
	}
	close(p.done)
}

// startDying starts a process that the kernel kills when the calling
// thread ends (PR_SET_PDEATHSIG; the caller locked its OS thread), with
// stdin from /dev/null and files[1:] as its other descriptors; setpgid
// makes it the leader of a process group of its own. A nil env is this
// process's environment.
func startDying(path string, argv, env []string, files []*os.File, setpgid bool) (*os.Process, error) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()
	files = slices.Clone(files)
	files[0] = devNull
	return os.StartProcess(path, argv, &os.ProcAttr{
		Env:   env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setpgid: setpgid, Pdeathsig: syscall.SIGKILL},
	})
}

func (p *groupProcess) pid() int                { return p.leader }
func (p *groupProcess) exited() <-chan struct{} { return p.done }

// extend moves the watchdog's kill time to killAt (no-op for a follower).
func (p *groupProcess) extend(killAt time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watchdog == nil || p.released {
		return nil
	}
	if err := writeKillTime(p.watchdog, killAt); err != nil {
		return fmt.Errorf("the watchdog of process group %d: %w", p.leader, err)
	}
	return nil
}

func (p *groupProcess) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.released {
		return fmt.Errorf("process group %d was released", p.leader)
	}
	if err := syscall.Kill(-p.leader, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s to process group %d: %w", sig, p.leader, err)
	}
	return nil
}

// gone reports whether no process of the group is left that can run: every
// member's threads have all exited (a zombie whose threads still exit is
// not gone yet; its wait would not return either).
func (p *groupProcess) gone() (bool, error) {
	members, err := p.members()
	if err != nil {
		return false, err
	}
	for _, m := range members {
		if !m.dead {
			return false, nil
		}
	}
	return true, nil
}

// member is one process of the group as /proc shows it.
type member struct {
	pid, ppid int
	dead      bool // every thread exited
}

// members lists the processes of the group.
func (p *groupProcess) members() ([]member, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []member
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		_, ppid, pgrp, err := procStat("/proc/" + e.Name() + "/stat")
		if gone(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if pgrp != p.leader {
			continue
		}
		dead, err := threadsDead(pid)
		if err != nil {
			return nil, err
		}
		out = append(out, member{pid: pid, ppid: ppid, dead: dead})
	}
	return out, nil
}

// threadsDead reports whether every thread of pid exited (zombie or dead).
func threadsDead(pid int) (bool, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if gone(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		state, _, _, err := procStat(dir + "/" + e.Name() + "/stat")
		if gone(err) {
			continue
		}
		if err != nil {
			return false, err
		}
		if state != 'Z' && state != 'X' {
			return false, nil
		}
	}
	return true, nil
}

// gone says that a /proc read failed because the process or thread is gone.
func gone(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// release lets the group go once it is gone: it is never signalled again,
// and its members that are the sidecar's children (the leader, orphans
// reparented to it) are reaped in the background, the leader last, so that
// its id stays taken until then.
func (p *groupProcess) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.released {
		return
	}
	p.released = true
	if p.watchdog != nil {
		p.watchdog.Close() // the group is gone: nobody reads it
	}
	members, _ := p.members()
	go func() {
		self := os.Getpid()
		for _, m := range members {
			if m.ppid == self && m.pid != p.leader {
				var ws syscall.WaitStatus
				_, _ = syscall.Wait4(m.pid, &ws, wAll, nil)
			}
		}
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(p.leader, &ws, wAll, nil)
	}()
}

// procStat reads the state, parent and process group from a stat file of
// /proc ("pid (comm) S ppid pgrp ...", comm may hold anything).
func procStat(path string) (state byte, ppid, pgrp int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	var f []string
	if i >= 0 && i+2 < len(b) {
		f = strings.Fields(string(b[i+2:]))
	}
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, 0, fmt.Errorf("%s: unexpected format", path)
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return f[0][0], ppid, pgrp, nil
}

// File system magic numbers (linux/magic.h) of memory-backed file systems.
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// checkMemoryBacked refuses a directory whose file system keeps files on a
// disk: a key written there could outlive the pod and the lease.
func checkMemoryBacked(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("--gate-key-file: %w", err)
	}
	if st.Type != tmpfsMagic && st.Type != ramfsMagic {
		return fmt.Errorf("--gate-key-file: %s is not on a memory-backed file system (tmpfs or ramfs; file system type 0x%x): the key could outlive the lease on a disk; mount an emptyDir with medium: Memory there", dir, st.Type)
	}
	return nil
}
