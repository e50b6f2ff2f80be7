package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Direction is which way bytes flow on a proxied connection.
type Direction int

// Directions.
const (
	// Request is client to target.
	Request Direction = iota
	// Response is target to client.
	Response
)

func (d Direction) String() string {
	if d == Response {
		return "response"
	}
	return "request"
}

// Match selects the traffic a timing fault applies to; an empty field
// matches anything.
type Match struct {
	// From lists source process names (Source.Name).
	From []string
	// To lists proxy names (Proxy.Name).
	To []string
	// Request is a prefix of the HTTP/1 request line the client sent last,
	// e.g. "POST /v1/leases/renew ". Bytes that are not HTTP/1 (gRPC) only
	// match an empty Request.
	Request string
}

func (m Match) String() string {
	var parts []string
	if len(m.From) > 0 {
		parts = append(parts, "from "+strings.Join(m.From, ","))
	}
	if len(m.To) > 0 {
		parts = append(parts, "to "+strings.Join(m.To, ","))
	}
	if m.Request != "" {
		parts = append(parts, fmt.Sprintf("request %q", strings.TrimSpace(m.Request)))
	}
	if len(parts) == 0 {
		return "all traffic"
	}
	return strings.Join(parts, " ")
}

func (m Match) matches(src Source, proxy, request string) bool {
	return (len(m.From) == 0 || slices.Contains(m.From, src.Name)) &&
		(len(m.To) == 0 || slices.Contains(m.To, proxy)) &&
		strings.HasPrefix(request, m.Request)
}

type faultKind int

const (
	kindDelay faultKind = iota
	kindDuplicate
	kindReorder
)

// Fault is a timing fault in effect on a Network.
type Fault struct {
	n     *Network
	kind  faultKind
	dir   Direction
	match Match
	by    time.Duration // Delay: how late; Duplicate: how late the copy; Reorder: longest hold

	release  chan struct{} // closed by Release: delayed bytes go now
	done     chan struct{} // closed when the fault is used up or stopped
	relOnce  sync.Once
	doneOnce sync.Once

	hits      atomic.Int64
	overtaken atomic.Bool

	// Guarded by n.mu.
	stopped  bool
	left     int   // Duplicate, Reorder: requests still to affect
	held     *hold // Reorder: the request held
	heldLink *link
	timer    *time.Timer
}

// Delay makes the bytes of matching connections in dir arrive by later than
// the proxy read them, in order; bytes behind them on the same connection
// wait their turn. A Request delay in front of an etcd member makes a call
// reach etcd after its client gave up, its cancellation trailing it by the
// time the client waited.
func (n *Network) Delay(dir Direction, m Match, by time.Duration) (*Fault, error) {
	if dir != Request && dir != Response {
		return nil, fmt.Errorf("delay: direction %d must be Request or Response", dir)
	}
	if by <= 0 {
		return nil, fmt.Errorf("delay by %s: must be positive", by)
	}
	return n.add(&Fault{kind: kindDelay, dir: dir, match: m, by: by}), nil
}

// Duplicate sends each of the next count matching HTTP/1 requests a second
// time, after later, on a connection of its own to the same target: the
// target executes it twice and the copy's answer is discarded. The copy
// carries the request's bytes from its request line to the next request
// line on the connection; its connection stays open until the target
// answers (at most a minute) so the target does not take it for abandoned.
func (n *Network) Duplicate(m Match, after time.Duration, count int) (*Fault, error) {
	if after < 0 {
		return nil, fmt.Errorf("duplicate after %s: must not be negative", after)
	}
	if count < 1 {
		return nil, fmt.Errorf("duplicate %d requests: must be at least 1", count)
	}
	return n.add(&Fault{kind: kindDuplicate, dir: Request, match: m, by: after, left: count}), nil
}

// Reorder holds the next matching HTTP/1 request until a later matching
// request on another connection (through any proxy of n) was answered, or
// for maxHold at most, and then delivers it with its original spacing: a
// client that gave up and closed the connection meanwhile has its close
// arrive as long after the request as it did. The target thus executes the
// held request after the later one.
func (n *Network) Reorder(m Match, maxHold time.Duration) (*Fault, error) {
	if maxHold <= 0 {
		return nil, fmt.Errorf("reorder with a longest hold of %s: must be positive", maxHold)
	}
	return n.add(&Fault{kind: kindReorder, dir: Request, match: m, by: maxHold, left: 1}), nil
}

func (n *Network) add(f *Fault) *Fault {
	f.n, f.release, f.done = n, make(chan struct{}), make(chan struct{})
	n.mu.Lock()
	n.faults = append(n.faults, f)
	n.timing.Store(int32(len(n.faults)))
	n.mu.Unlock()
	return f
}

// Stop ends the fault: nothing more is delayed, duplicated or held. Bytes
// already delayed (and duplicates already made) keep their time; a held
// request is released now, with its original spacing.
func (f *Fault) Stop() {
	n := f.n
	n.mu.Lock()
	f.lockedStop()
	n.mu.Unlock()
}

func (f *Fault) lockedStop() {
	if f.stopped {
		return
	}
	f.stopped = true
	n := f.n
	n.faults = slices.DeleteFunc(n.faults, func(x *Fault) bool { return x == f })
	n.timing.Store(int32(len(n.faults)))
	if f.timer != nil {
		f.timer.Stop()
	}
	if f.held != nil {
		f.held.release()
	}
	f.finish()
}

// Release stops the fault and delivers everything it still holds now, in
// order.
func (f *Fault) Release() {
	f.Stop()
	f.relOnce.Do(func() { close(f.release) })
}

// Done is closed when the fault has nothing left to do: a Duplicate made its
// last copy, a Reorder released its request, or Stop was called.
func (f *Fault) Done() <-chan struct{} { return f.done }

// Hits counts what the fault affected: chunks delayed (Delay), requests
// copied (Duplicate) or held (Reorder).
func (f *Fault) Hits() int64 { return f.hits.Load() }

// Overtaken says whether a Reorder's held request was released because a
// later one was answered (false: it was released by its deadline or Stop,
// or nothing was held).
func (f *Fault) Overtaken() bool { return f.overtaken.Load() }

func (f *Fault) String() string {
	switch f.kind {
	case kindDuplicate:
		return fmt.Sprintf("duplicate %s, the copy %s later", f.match, f.by)
	case kindReorder:
		return fmt.Sprintf("reorder %s, holding at most %s", f.match, f.by)
	}
	return fmt.Sprintf("delay %s %s by %s", f.dir, f.match, f.by)
}

func (f *Fault) finish() { f.doneOnce.Do(func() { close(f.done) }) }

// overtake releases a Reorder's held request: a later one was answered.
func (f *Fault) overtake() {
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	if f.stopped {
		return
	}
	f.overtaken.Store(true)
	f.n.Reordered.Add(1)
	f.lockedStop()
}

// hold keeps a request's chunks until it is released; each is then
// delivered as long after the release as it arrived after the first.
type hold struct {
	start time.Time
	done  chan struct{}
	once  sync.Once
	when  time.Time // set before done is closed
}

func (h *hold) release() {
	h.once.Do(func() {
		h.when = time.Now()
		close(h.done)
	})
}

func (h *hold) released() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// chunk is what one read returned (or the EOF), with when to deliver it.
type chunk struct {
	data []byte
	eof  bool
	line string // the request line data starts, if any

	at    time.Time       // Delay: not before this ...
	early <-chan struct{} // ... unless this is closed (Release)
	held  *hold           // Reorder: after the hold's release ...
	off   time.Duration   // ... plus this
}

// due says whether c may be written at now without waiting.
func (c chunk) due(now time.Time) bool {
	return c.held == nil && !c.at.After(now)
}

// wait blocks until c is due; false means done was closed first.
func (c chunk) wait(done <-chan struct{}) bool {
	if c.held != nil {
		select {
		case <-c.held.done:
		case <-done:
			return false
		}
		if !sleepUntil(c.held.when.Add(c.off), nil, done) {
			return false
		}
	}
	return sleepUntil(c.at, c.early, done)
}

// sleepUntil waits until t, or until early is closed; false means done was
// closed first.
func sleepUntil(t time.Time, early, done <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-early:
		return true
	case <-done:
		return false
	}
}

// shape applies the timing faults to a chunk read on l in dir at now: it
// sets when the chunk is delivered, copies request bytes to a duplicate and
// notes which held requests this connection's answer releases.
func (n *Network) shape(l *link, dir Direction, c *chunk, now time.Time) {
	if dir == Response {
		l.mu.Lock()
		ov, req := l.overtakes, l.request
		l.overtakes = nil
		l.mu.Unlock()
		for _, f := range ov {
			f.overtake()
		}
		if n.timing.Load() > 0 {
			n.mu.Lock()
			n.lockedDelay(l, dir, c, req, now)
			n.mu.Unlock()
		}
		return
	}
	if c.line != "" {
		// The previous request's hold and copy end where the next begins.
		l.hold = nil
		l.endDuplicate()
	}
	if n.timing.Load() > 0 {
		l.mu.Lock()
		req := l.request
		l.mu.Unlock()
		n.mu.Lock()
		n.lockedDelay(l, dir, c, req, now)
		if c.line != "" {
			n.lockedNewRequest(l, req, now)
		}
		n.mu.Unlock()
	}
	if l.hold != nil {
		c.held, c.off = l.hold, now.Sub(l.hold.start)
	}
	if c.eof {
		l.endDuplicate() // the copy's connection stays open for its answer
	} else if l.dup != nil {
		l.dup.push(*c, now)
	}
}

// lockedDelay delays c by the longest Delay that matches it.
func (n *Network) lockedDelay(l *link, dir Direction, c *chunk, req string, now time.Time) {
	var longest *Fault
	for _, f := range n.faults {
		if f.kind == kindDelay && f.dir == dir && f.match.matches(l.src, l.p.Name, req) && (longest == nil || f.by > longest.by) {
			longest = f
		}
	}
	if longest != nil {
		c.at, c.early = now.Add(longest.by), longest.release
		longest.hits.Add(1)
		n.Delayed.Add(1)
	}
}

// lockedNewRequest lets Duplicate and Reorder faults take the request that
// starts on l.
func (n *Network) lockedNewRequest(l *link, req string, now time.Time) {
	for _, f := range n.faults {
		if !f.match.matches(l.src, l.p.Name, req) {
			continue
		}
		switch f.kind {
		case kindDuplicate:
			if f.left > 0 && l.dup == nil {
				f.left--
				f.hits.Add(1)
				n.Duplicated.Add(1)
				l.dup = l.p.newDuplicate(l.src, f)
				if f.left == 0 {
					f.finish()
				}
			}
		case kindReorder:
			switch {
			case f.left > 0 && l.hold == nil:
				f.left--
				f.hits.Add(1)
				f.held, f.heldLink = &hold{start: now, done: make(chan struct{})}, l
				l.hold = f.held
				f.timer = time.AfterFunc(f.by, f.Stop)
			case f.held != nil && f.heldLink != l && !f.held.released():
				l.mu.Lock()
				l.overtakes = append(l.overtakes, f)
				l.mu.Unlock()
			}
		}
	}
}

// dupLinger bounds how long a duplicate's connection waits for the answer.
const dupLinger = time.Minute

// dupConn sends a copy of one request on its own connection.
type dupConn struct {
	p   *Proxy
	src Source
	f   *Fault

	mu    sync.Mutex
	items []chunk
	size  int
	ended bool
	more  chan struct{} // signalled when items or ended change
}

// newDuplicate starts the copy of the request that starts on a connection
// from src. It runs under p.wg: the calling pump holds a count of it.
func (p *Proxy) newDuplicate(src Source, f *Fault) *dupConn {
	d := &dupConn{p: p, src: src, f: f, more: make(chan struct{}, 1)}
	p.wg.Go(d.run)
	return d
}

// endDuplicate ends the copy of l's current request, if any.
func (l *link) endDuplicate() {
	if l.dup != nil {
		l.dup.end()
		l.dup = nil
	}
}

// push queues a copy of c, read at now, to go by after the original would.
func (d *dupConn) push(c chunk, now time.Time) {
	at := now
	if c.at.After(at) {
		at = c.at
	}
	d.mu.Lock()
	if !d.ended && d.size+len(c.data) <= maxQueued {
		d.items = append(d.items, chunk{data: bytes.Clone(c.data), at: at.Add(d.f.by)})
		d.size += len(c.data)
	}
	d.mu.Unlock()
	d.signal()
}

func (d *dupConn) end() {
	d.mu.Lock()
	d.ended = true
	d.mu.Unlock()
	d.signal()
}

func (d *dupConn) signal() {
	select {
	case d.more <- struct{}{}:
	default:
	}
}

// next returns the next chunk of the copy; false when the request ended and
// everything was returned, or the proxy closes.
func (d *dupConn) next() (chunk, bool) {
	for {
		d.mu.Lock()
		if len(d.items) > 0 {
			c := d.items[0]
			d.items = d.items[1:]
			d.mu.Unlock()
			return c, true
		}
		ended := d.ended
		d.mu.Unlock()
		if ended {
			return chunk{}, false
		}
		select {
		case <-d.more:
		case <-d.p.closing:
			return chunk{}, false
		}
	}
}

// run delivers the copy, each chunk the fault's delay after its original,
// then waits for the first bytes of the answer.
func (d *dupConn) run() {
	p := d.p
	var s net.Conn
	defer func() {
		if s != nil {
			p.mu.Lock()
			delete(p.dups, s)
			p.mu.Unlock()
			_ = s.Close()
		}
	}()
	for {
		c, ok := d.next()
		if !ok {
			break
		}
		if !sleepUntil(c.at, d.f.release, p.closing) || !p.pass(d.src, p.closing) {
			return
		}
		if s == nil {
			var err error
			if s, err = p.dialDuplicate(); err != nil {
				return
			}
		}
		if _, err := s.Write(c.data); err != nil {
			return
		}
	}
	if s == nil {
		return
	}
	_ = s.SetReadDeadline(time.Now().Add(dupLinger))
	var b [512]byte
	_, _ = s.Read(b[:]) // the answer began (or the target closed, or Close)
}

var errClosing = errors.New("proxy closing")

// dialDuplicate opens a copy's connection to the target; Close closes it.
func (p *Proxy) dialDuplicate() (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := (&net.Dialer{}).DialContext(ctx, "tcp", *p.target.Load())
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = s.Close()
		return nil, errClosing
	}
	p.dups[s] = struct{}{}
	return s, nil
}
