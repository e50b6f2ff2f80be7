// Package faultproxy is a userspace TCP proxy that injects network faults:
// it sits in front of a process's port and drops or blackholes the
// connections that cross a partition between regions. It needs no root and no
// kernel support (no tc netem, no iptables), so it runs in any CI.
//
// A Network holds the partition policy and every Proxy that enforces it.
// Each Proxy forwards one listening address to one target and belongs to the
// target's region; the source of each accepted connection is found by a
// Classifier (the PIDTable reads /proc on Linux to find which child process
// opened it). A connection between regions A and B is allowed unless A or B
// is isolated:
//
//	| isolation mode | new connections                      | open connections                          |
//	|----------------|--------------------------------------|-------------------------------------------|
//	| Drop           | accepted, then closed at once (RST)  | closed when the isolation starts          |
//	| Blackhole      | accepted, nothing forwarded          | bytes held (TCP backpressure) until healed |
//
// Heal ends an isolation: held bytes flow again, as after a real transient
// partition, unless an endpoint gave up and closed its side meanwhile.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is how an isolated region's connections fail.
type Mode int

// Isolation modes.
const (
	// Open: not isolated.
	Open Mode = iota
	// Drop closes connections: peers see resets at once.
	Drop
	// Blackhole forwards nothing and answers nothing: peers see timeouts.
	Blackhole
)

func (m Mode) String() string {
	switch m {
	case Drop:
		return "drop"
	case Blackhole:
		return "blackhole"
	}
	return "open"
}

// Source is who opened a connection.
type Source struct {
	Name   string // process name, e.g. "sidecar-v0-a"; empty when unknown
	Region string // failure domain; empty when unknown
}

// Classifier names the source of an accepted connection.
type Classifier func(c net.Conn) Source

// Hook is called with the first bytes of each answer the target sends on a
// connection, with the first line of the request the client sent last (for
// HTTP: "POST /v1/journal HTTP/1.1"). Returning true closes the connection
// before the answer is forwarded: the client never sees it. The end-to-end
// suite kills a sidecar this way right after the coordinator committed its
// journal entry and before the sidecar learned so.
type Hook func(src Source, request string) bool

// Network is the partition policy shared by a set of proxies.
type Network struct {
	classify Classifier

	mu       sync.Mutex
	isolated map[string]Mode
	changed  chan struct{} // closed and replaced on every policy change
	proxies  []*Proxy
	hook     Hook

	// Counters for reports.
	Accepted, Refused, Held, Cut atomic.Int64
}

// NewNetwork returns a network whose proxies classify sources with c.
func NewNetwork(c Classifier) *Network {
	if c == nil {
		c = func(net.Conn) Source { return Source{} }
	}
	return &Network{classify: c, isolated: map[string]Mode{}, changed: make(chan struct{})}
}

// Isolate cuts region off from every other region (connections within it
// still work).
func (n *Network) Isolate(region string, m Mode) {
	n.mu.Lock()
	n.isolated[region] = m
	n.notifyLocked()
	proxies := append([]*Proxy(nil), n.proxies...)
	n.mu.Unlock()
	if m == Drop {
		for _, p := range proxies {
			p.cutBlocked()
		}
	}
}

// Heal ends every isolation.
func (n *Network) Heal() {
	n.mu.Lock()
	clear(n.isolated)
	n.notifyLocked()
	n.mu.Unlock()
}

// Isolated returns the isolated regions and their modes.
func (n *Network) Isolated() map[string]Mode {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]Mode, len(n.isolated))
	for k, v := range n.isolated {
		out[k] = v
	}
	return out
}

// SetHook installs h (nil removes it).
func (n *Network) SetHook(h Hook) {
	n.mu.Lock()
	n.hook = h
	n.mu.Unlock()
}

func (n *Network) currentHook() Hook {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hook
}

func (n *Network) notifyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// verdict says how a connection from src to dst fares now, and returns the
// channel that is closed at the next policy change.
func (n *Network) verdict(src, dst string) (Mode, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if src == dst {
		return Open, n.changed
	}
	// An unknown source is isolated with any isolated region: a partition
	// may block too much, never leak.
	worst := Open
	for r, m := range n.isolated {
		if r == src || r == dst || src == "" {
			worst = max(worst, m)
		}
	}
	return worst, n.changed
}

// Proxy forwards connections accepted on its listener to its target.
type Proxy struct {
	Name   string
	Region string
	net    *Network
	ln     net.Listener
	target atomic.Pointer[string]

	mu    sync.Mutex
	conns map[*link]struct{}
	wg    sync.WaitGroup
}

// Listen starts a proxy for region on addr (use 127.0.0.1:0) forwarding to
// target (host:port; it may be set later with SetTarget).
func (n *Network) Listen(name, region, addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", name, err)
	}
	p := &Proxy{Name: name, Region: region, net: n, ln: ln, conns: map[*link]struct{}{}}
	p.SetTarget(target)
	n.mu.Lock()
	n.proxies = append(n.proxies, p)
	n.mu.Unlock()
	p.wg.Go(p.serve)
	return p, nil
}

// Addr is the proxy's own address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is http://Addr.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// SetTarget points new connections at target (a restarted process may listen
// elsewhere).
func (p *Proxy) SetTarget(target string) { p.target.Store(&target) }

// Close stops accepting and closes every connection.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for l := range p.conns {
		l.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// CutAll closes every open connection (as a process restart would).
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.conns {
		l.close()
	}
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.net.Accepted.Add(1)
		p.wg.Go(func() { p.handle(c) })
	}
}

// link is one proxied connection.
type link struct {
	src    Source
	client net.Conn
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex
	server  net.Conn
	request string
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		_ = l.client.Close()
		l.mu.Lock()
		if l.server != nil {
			_ = l.server.Close()
		}
		l.mu.Unlock()
	})
}

func (p *Proxy) cutBlocked() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.conns {
		if m, _ := p.net.verdict(l.src.Region, p.Region); m == Drop {
			p.net.Cut.Add(1)
			l.close()
		}
	}
}

// gate waits until l may pass bytes; false means l was closed.
func (p *Proxy) gate(l *link) bool {
	held := false
	for {
		m, changed := p.net.verdict(l.src.Region, p.Region)
		switch m {
		case Open:
			return true
		case Drop:
			p.net.Cut.Add(1)
			l.close()
			return false
		}
		if !held {
			held = true
			p.net.Held.Add(1)
		}
		select {
		case <-changed:
		case <-l.done:
			return false
		}
	}
}

func (p *Proxy) handle(c net.Conn) {
	l := &link{src: p.net.classify(c), client: c, done: make(chan struct{})}
	p.mu.Lock()
	p.conns[l] = struct{}{}
	p.mu.Unlock()
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.conns, l)
		p.mu.Unlock()
	}()
	if m, _ := p.net.verdict(l.src.Region, p.Region); m == Drop {
		p.net.Refused.Add(1)
		return
	}
	if !p.gate(l) {
		return
	}
	target := *p.target.Load()
	if target == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	s, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
	cancel()
	if err != nil {
		return
	}
	l.mu.Lock()
	l.server = s
	l.mu.Unlock()
	select {
	case <-l.done: // closed while dialing
		_ = s.Close()
		return
	default:
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pump(l, c, s, true) })
	wg.Go(func() { p.pump(l, s, c, false) })
	wg.Wait()
}

// pump copies from r to w through the gate. toServer is the client's
// direction.
func (p *Proxy) pump(l *link, r, w net.Conn, toServer bool) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if !p.gate(l) {
				return
			}
			if toServer {
				if line := requestLine(buf[:n]); line != "" {
					l.mu.Lock()
					l.request = line
					l.mu.Unlock()
				}
			} else if h := p.net.currentHook(); h != nil {
				l.mu.Lock()
				req := l.request
				l.mu.Unlock()
				if h(l.src, req) {
					p.net.Cut.Add(1)
					return
				}
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// Half close: pass the EOF on, keep the other direction.
				if tc, ok := w.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
					<-l.done
				}
			}
			return
		}
	}
}

// requestLine returns the first line of b when b starts an HTTP request.
func requestLine(b []byte) string {
	for _, m := range []string{"GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "PATCH "} {
		if len(b) >= len(m) && string(b[:len(m)]) == m {
			for i, c := range b {
				if c == '\r' || c == '\n' {
					return string(b[:i])
				}
			}
			return string(b)
		}
	}
	return ""
}
