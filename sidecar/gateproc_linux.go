package sidecar

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
)

// groupLauncher starts the client as a child of the sidecar, in a process
// group of its own (the gate kills the group, never the sidecar's), with
// PR_SET_PDEATHSIG set to SIGKILL: if the sidecar dies (kill -9, the OOM
// killer), the kernel kills the client it started. The sidecar is the
// client's child subreaper, so orphans of the group are reparented to it
// and reaped here: their zombies never keep the group from being gone.
type groupLauncher struct {
	path     string // argv[0] resolved
	argv     []string
	roleArgs map[gateRole][]string
	env      []string
}

var _ launcher = (*groupLauncher)(nil)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER (linux/prctl.h).
const prSetChildSubreaper = 36

func newGroupLauncher(argv, validatorArgs, followerArgs []string) (*groupLauncher, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("--gate-exec: %w", err)
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
	return &groupLauncher{path: path, argv: argv, env: env, roleArgs: map[gateRole][]string{roleValidator: validatorArgs, roleFollower: followerArgs}}, nil
}

func (l *groupLauncher) launch(role gateRole) (clientProcess, error) {
	argv := append(slices.Clone(l.argv), l.roleArgs[role]...)
	p := &groupProcess{done: make(chan struct{})}
	started := make(chan error, 1)
	go p.run(l.path, argv, l.env, started)
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s as %s: %w", argv[0], role, err)
	}
	return p, nil
}

// groupProcess is one run of the client: leader is its pid and its process
// group's id.
type groupProcess struct {
	leader int
	done   chan struct{}
}

var _ clientProcess = (*groupProcess)(nil)

// run starts the client and reaps every child of the sidecar in its group
// until none is left. PR_SET_PDEATHSIG fires when the thread that forked the
// child ends, not the process (go.dev/issue/27505): the fork happens on a
// locked thread that lives until the group is reaped.
func (p *groupProcess) run(path string, argv, env []string, started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		started <- err
		return
	}
	proc, err := os.StartProcess(path, argv, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{devNull, os.Stdout, os.Stderr},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	})
	devNull.Close()
	if err != nil {
		started <- err
		return
	}
	p.leader = proc.Pid
	_ = proc.Release() // reaped below, by process group
	started <- nil
	leaderDone := false
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-p.leader, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil { // ECHILD: no child of the sidecar is left in the group
			break
		}
		if pid == p.leader {
			leaderDone = true
			close(p.done)
		}
	}
	if !leaderDone {
		close(p.done)
	}
}

func (p *groupProcess) pid() int                { return p.leader }
func (p *groupProcess) exited() <-chan struct{} { return p.done }

func (p *groupProcess) signal(sig syscall.Signal) error {
	if err := syscall.Kill(-p.leader, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s to process group %d: %w", sig, p.leader, err)
	}
	return nil
}

// gone asks the kernel whether any process of the group is left (zombies
// count until they are reaped).
func (p *groupProcess) gone() (bool, error) {
	switch err := syscall.Kill(-p.leader, 0); {
	case errors.Is(err, syscall.ESRCH):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("process group %d: %w", p.leader, err)
	}
	return false, nil
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
