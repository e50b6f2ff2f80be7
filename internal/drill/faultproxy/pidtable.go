package faultproxy

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PIDTable classifies a connection by the process that opened it: it finds
// the client socket of the accepted loopback connection in /proc/net/tcp and
// the registered process holding that socket in /proc/<pid>/fd. It works on
// Linux for processes of the same user (or any, as root); elsewhere, and for
// processes not registered, the source is unknown.
type PIDTable struct {
	mu    sync.Mutex
	byPID map[int]Source
}

// NewPIDTable returns an empty table.
func NewPIDTable() *PIDTable { return &PIDTable{byPID: map[int]Source{}} }

// Register records that pid is src (call it right after starting pid).
func (t *PIDTable) Register(pid int, src Source) {
	t.mu.Lock()
	t.byPID[pid] = src
	t.mu.Unlock()
}

// Forget drops pid (after it exited).
func (t *PIDTable) Forget(pid int) {
	t.mu.Lock()
	delete(t.byPID, pid)
	t.mu.Unlock()
}

// Classify is a Classifier. A process registered a moment after it was
// started may connect first, so a miss is retried once.
func (t *PIDTable) Classify(c net.Conn) Source {
	for attempt := range 3 {
		if src, ok := t.lookup(c); ok {
			return src
		}
		time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
	}
	return Source{}
}

func (t *PIDTable) lookup(c net.Conn) (Source, bool) {
	local, ok1 := c.RemoteAddr().(*net.TCPAddr) // the client's end
	remote, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return Source{}, false
	}
	inode, ok := socketInode(local, remote)
	if !ok {
		return Source{}, false
	}
	t.mu.Lock()
	pids := make([]int, 0, len(t.byPID))
	for pid := range t.byPID {
		pids = append(pids, pid)
	}
	t.mu.Unlock()
	want := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	for _, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == want {
				t.mu.Lock()
				src, ok := t.byPID[pid]
				t.mu.Unlock()
				return src, ok
			}
		}
	}
	return Source{}, false
}

// socketInode finds the inode of the IPv4 TCP socket local->remote in
// /proc/net/tcp.
func socketInode(local, remote *net.TCPAddr) (uint64, bool) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	wl, wr := procAddr(local), procAddr(remote)
	if wl == "" || wr == "" {
		return 0, false
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[1] != wl || fs[2] != wr {
			continue
		}
		n, err := strconv.ParseUint(fs[9], 10, 64)
		return n, err == nil && n != 0
	}
	return 0, false
}

// procAddr formats a as /proc/net/tcp does on little-endian hosts:
// 127.0.0.1:8080 is 0100007F:1F90.
func procAddr(a *net.TCPAddr) string {
	ip := a.IP.To4()
	if ip == nil {
		return ""
	}
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}
