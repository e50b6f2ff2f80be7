// Package faultproxy is a userspace TCP proxy that injects network faults:
// it sits in front of a process's port and drops or blackholes the
// connections that cross a partition between regions, and delivers messages
// late, twice or out of order. It needs no root and no kernel support (no tc
// netem, no iptables), so it runs in any CI.
//
// A Network holds the fault policy and every Proxy that enforces it. Each
// Proxy forwards one listening address to one target and belongs to the
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
//
// Timing faults change when bytes arrive, never what arrives: each
// connection's bytes still reach the other end exactly once and in order (a
// duplicate goes on a second connection of its own). A Match selects the
// traffic by source process, proxy and HTTP/1 request line. Each fault is
// installed on the Network, ended by Fault.Stop, and deterministic given its
// parameters (a seeded schedule draws them):
//
//	| fault     | what arrives late                                                    |
//	|-----------|----------------------------------------------------------------------|
//	| Delay     | the bytes of one direction (Request: client to target; Response:     |
//	|           | back), each a fixed time after the proxy read it. On HTTP/2 (gRPC)   |
//	|           | a call reaches the target after its client gave up, the client's     |
//	|           | cancellation trailing it by as long as the client waited             |
//	| Duplicate | a second copy of a request, a fixed time after the original, on a    |
//	|           | connection of its own whose answer is discarded: executed twice      |
//	| Reorder   | a request held until a later matching request on another connection |
//	|           | was answered (or a deadline passed), then delivered with its         |
//	|           | original spacing: executed after the later one                       |
//
// Stop ends a fault for new traffic: what it delayed keeps its delivery time
// and a held request is released. Release also delivers at once everything
// the fault still holds. Closing a connection, cutting it (Drop) or closing
// the Proxy discards what was held for it, as a reset would.
package faultproxy

import (
	"bytes"
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
	faults   []*Fault // timing faults in effect

	// timing is len(faults): connections skip the policy while it is 0.
	timing atomic.Int32

	// Counters for reports: connections accepted, refused (Drop), held
	// (Blackhole) and cut; chunks delayed, requests duplicated and requests
	// reordered (released after a later one was answered).
	Accepted, Refused, Held, Cut   atomic.Int64
	Delayed, Duplicated, Reordered atomic.Int64
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

// Heal ends every isolation (timing faults end with their Stop).
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
	// closing is closed by Close: duplicates and held bytes give up.
	closing chan struct{}

	mu     sync.Mutex
	closed bool
	conns  map[*link]struct{}
	dups   map[net.Conn]struct{} // connections of duplicates
	wg     sync.WaitGroup
}

// Listen starts a proxy for region on addr (use 127.0.0.1:0) forwarding to
// target (host:port; it may be set later with SetTarget).
func (n *Network) Listen(name, region, addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", name, err)
	}
	p := &Proxy{Name: name, Region: region, net: n, ln: ln, closing: make(chan struct{}), conns: map[*link]struct{}{}, dups: map[net.Conn]struct{}{}}
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

// Close stops accepting, closes every connection (discarding what timing
// faults hold for them) and returns when every goroutine of the proxy ended.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.closing)
	}
	for l := range p.conns {
		l.close()
	}
	for c := range p.dups {
		_ = c.Close()
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

// link is one proxied connection: a pump per direction reads and a queue per
// direction delivers (the pump itself while nothing is waiting, a writer
// goroutine while timing faults hold bytes).
type link struct {
	p      *Proxy
	src    Source
	client net.Conn
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup // pumps and writers
	ends   atomic.Int32   // directions whose EOF was passed on
	out    [2]*queue      // by Direction

	mu        sync.Mutex
	server    net.Conn
	request   string   // the last request line the client sent
	overtakes []*Fault // reorders this connection's request releases once answered

	// The request pump's own state (timing.go).
	hold *hold    // the current request is held by a Reorder
	dup  *dupConn // the current request is copied to a duplicate
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

// ended records that one direction passed its EOF on; after both the
// connection is over.
func (l *link) ended() {
	if l.ends.Add(1) == 2 {
		l.close()
	}
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

// pass waits until src's bytes may reach p's region: true once open, false
// when a Drop cuts them or done is closed first.
func (p *Proxy) pass(src Source, done <-chan struct{}) bool {
	held := false
	for {
		m, changed := p.net.verdict(src.Region, p.Region)
		switch m {
		case Open:
			return true
		case Drop:
			p.net.Cut.Add(1)
			return false
		}
		if !held {
			held = true
			p.net.Held.Add(1)
		}
		select {
		case <-changed:
		case <-done:
			return false
		}
	}
}

// gate waits until l may pass bytes; false means l was closed.
func (p *Proxy) gate(l *link) bool {
	if p.pass(l.src, l.done) {
		return true
	}
	l.close()
	return false
}

func (p *Proxy) handle(c net.Conn) {
	l := &link{p: p, src: p.net.classify(c), client: c, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = c.Close()
		return
	}
	p.conns[l] = struct{}{}
	p.mu.Unlock()
	defer func() {
		l.close()
		l.endDuplicate()
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
	l.out[Request], l.out[Response] = &queue{w: s}, &queue{w: c}
	l.wg.Go(func() { p.pump(l, Request) })
	l.wg.Go(func() { p.pump(l, Response) })
	l.wg.Wait()
}

// pump reads one direction of l and hands each chunk to that direction's
// queue, after the partition gate, the hook and the timing faults had their
// say.
func (p *Proxy) pump(l *link, dir Direction) {
	r := l.client
	if dir == Response {
		l.mu.Lock()
		r = l.server
		l.mu.Unlock()
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if !p.gate(l) {
				return
			}
			c := chunk{data: buf[:n]}
			if dir == Request {
				if line := requestLine(c.data); line != "" {
					l.mu.Lock()
					l.request = line
					l.mu.Unlock()
					c.line = line
				}
			} else if h := p.net.currentHook(); h != nil {
				l.mu.Lock()
				req := l.request
				l.mu.Unlock()
				if h(l.src, req) {
					p.net.Cut.Add(1)
					l.close()
					return
				}
			}
			p.net.shape(l, dir, &c, time.Now())
			if !l.out[dir].send(l, c) {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// Half close: pass the EOF on in order, keep the other
				// direction.
				c := chunk{eof: true}
				p.net.shape(l, dir, &c, time.Now())
				l.out[dir].send(l, c)
				return
			}
			l.close()
			return
		}
	}
}

// maxQueued bounds the bytes a direction holds for timing faults; a pump
// that finds its queue full waits (TCP backpressure, as a blackhole).
const maxQueued = 4 << 20

// queue delivers one direction of a link in order. While no writer
// goroutine runs and a chunk is due, the pump writes it itself; otherwise
// the chunk is queued and a writer delivers the queue.
type queue struct {
	w net.Conn

	mu    sync.Mutex
	items []chunk
	size  int
	busy  bool          // a writer goroutine owns w
	space chan struct{} // closed when size drops below maxQueued
}

// send delivers c now or queues it; false means l is closed.
func (q *queue) send(l *link, c chunk) bool {
	q.mu.Lock()
	for q.size >= maxQueued {
		if q.space == nil {
			q.space = make(chan struct{})
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-l.done:
			return false
		}
		q.mu.Lock()
	}
	if !q.busy && c.due(time.Now()) {
		q.mu.Unlock()
		return l.write(q.w, c)
	}
	c.data = bytes.Clone(c.data)
	q.items = append(q.items, c)
	q.size += len(c.data)
	if !q.busy {
		q.busy = true
		l.wg.Go(func() { l.drain(q) })
	}
	q.mu.Unlock()
	return true
}

// drain writes the queue out, each chunk at its time, until it is empty.
func (l *link) drain(q *queue) {
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.busy = false
			q.mu.Unlock()
			return
		}
		c := q.items[0]
		q.mu.Unlock()
		// A partition that started meanwhile holds or cuts late bytes too.
		if !c.wait(l.done) || !l.p.gate(l) || !l.write(q.w, c) {
			return
		}
		q.mu.Lock()
		q.items[0] = chunk{}
		q.items = q.items[1:]
		q.size -= len(c.data)
		if q.space != nil && q.size < maxQueued {
			close(q.space)
			q.space = nil
		}
		q.mu.Unlock()
	}
}

// write passes c on to w; false means l is closed.
func (l *link) write(w net.Conn, c chunk) bool {
	if c.eof {
		if tc, ok := w.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
			l.ended()
			return true
		}
		l.close()
		return false
	}
	if _, err := w.Write(c.data); err != nil {
		l.close()
		return false
	}
	return true
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
