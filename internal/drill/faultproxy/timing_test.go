package faultproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/validator-fencing/fencing/internal/etcdtest"
)

// eventually polls cond until it holds or d passed.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lineLog is a TCP server that records every line it receives, in order of
// arrival, with the time it arrived.
type lineLog struct {
	mu    sync.Mutex
	lines []string
	at    map[string]time.Time
}

func newLineLog(t *testing.T) (*lineLog, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ll := &lineLog{at: map[string]time.Time{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					ll.mu.Lock()
					ll.lines = append(ll.lines, sc.Text())
					ll.at[sc.Text()] = time.Now()
					ll.mu.Unlock()
				}
			}()
		}
	}()
	return ll, ln.Addr().String()
}

func (ll *lineLog) got() []string {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	return slices.Clone(ll.lines)
}

func (ll *lineLog) has(line string) bool { return slices.Contains(ll.got(), line) }

func listen(t *testing.T, n *Network, name, target string) *Proxy {
	t.Helper()
	p, err := n.Listen(name, "x", "127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func TestDelayedRequestArrivesAfterLaterOne(t *testing.T) {
	ll, target := newLineLog(t)
	n := NewNetwork(nil)
	slow, fast := listen(t, n, "slow", target), listen(t, n, "fast", target)
	f, err := n.Delay(Request, Match{To: []string{"slow"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dial(t, slow), "first\n")
	eventually(t, 10*time.Second, "the proxy read the first line", func() bool { return f.Hits() > 0 })
	write(t, dial(t, fast), "second\n")
	eventually(t, 10*time.Second, "the second line arrived", func() bool { return ll.has("second") })
	f.Release()
	eventually(t, 10*time.Second, "the released first line arrived", func() bool { return ll.has("first") })
	if got, want := ll.got(), []string{"second", "first"}; !slices.Equal(got, want) {
		t.Errorf("arrival order = %q, want %q", got, want)
	}

	// Without Release, the delay is what it says: never less.
	const by = 200 * time.Millisecond
	if _, err := n.Delay(Request, Match{To: []string{"fast"}}, by); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	write(t, dial(t, fast), "timed\n")
	eventually(t, 10*time.Second, "the delayed line arrived", func() bool { return ll.has("timed") })
	ll.mu.Lock()
	took := ll.at["timed"].Sub(sent)
	ll.mu.Unlock()
	if took < by {
		t.Errorf("a line delayed by %s arrived after %s", by, took)
	}
}

func TestDelayedResponse(t *testing.T) {
	n := NewNetwork(nil)
	p := listen(t, n, "echo", echoServer(t))
	const by = 150 * time.Millisecond
	f, err := n.Delay(Response, Match{To: []string{"echo"}}, by)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	sent := time.Now()
	if err := roundTrip(c, bufio.NewReader(c), 10*time.Second); err != nil {
		t.Fatalf("round trip with a late answer = %v, want nil", err)
	}
	if took := time.Since(sent); took < by {
		t.Errorf("an answer delayed by %s came back after %s", by, took)
	}
	if f.Hits() == 0 {
		t.Error("Hits() = 0 after delaying an answer")
	}
}

// TestTimingFaultsLoseNothing sends more than a queue holds through each
// kind of hold and expects every byte back, in order.
func TestTimingFaultsLoseNothing(t *testing.T) {
	const size = 3 * maxQueued / 2
	tests := []struct {
		name   string
		header string // what the stream starts with
		fault  func(n *Network) (*Fault, error)
	}{
		{"delay requests until released", "", func(n *Network) (*Fault, error) { return n.Delay(Request, Match{}, time.Hour) }},
		{"delay answers until released", "", func(n *Network) (*Fault, error) { return n.Delay(Response, Match{}, time.Hour) }},
		{"delay both ways by 20ms", "", func(n *Network) (*Fault, error) {
			if _, err := n.Delay(Request, Match{}, 20*time.Millisecond); err != nil {
				return nil, err
			}
			return n.Delay(Response, Match{}, 20*time.Millisecond)
		}},
		{"reorder hold until released", "POST /x HTTP/1.1\r\n", func(n *Network) (*Fault, error) {
			return n.Reorder(Match{Request: "POST /x"}, time.Hour)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := NewNetwork(nil)
			p := listen(t, n, "echo", echoServer(t))
			f, err := tt.fault(n)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, size)
			copy(want, tt.header)
			for i := len(tt.header); i < size; i++ {
				want[i] = byte('a' + i%26)
			}
			c := dial(t, p)
			wrote := make(chan error, 1)
			go func() {
				for b := want; len(b) > 0; {
					k := min(len(b), 64<<10)
					if _, err := c.Write(b[:k]); err != nil {
						wrote <- err
						return
					}
					b = b[k:]
				}
				wrote <- c.(*net.TCPConn).CloseWrite()
			}()
			eventually(t, 10*time.Second, "the fault held something", func() bool { return f.Hits() > 0 })
			f.Release()
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("reading the echo: %v", err)
			}
			if err := <-wrote; err != nil {
				t.Fatalf("writing: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("echo of %d bytes: got %d bytes (equal prefix %d), want them all in order", len(want), len(got), commonPrefix(got, want))
			}
		})
	}
}

func commonPrefix(a, b []byte) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// requestLog is a real HTTP server that records the bodies of the requests
// it executes, in order.
type requestLog struct {
	mu     sync.Mutex
	bodies []string
}

func newRequestLog(t *testing.T) (*requestLog, string) {
	t.Helper()
	rl := &requestLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rl.mu.Lock()
		rl.bodies = append(rl.bodies, r.Method+" "+r.URL.Path+" "+string(b))
		rl.mu.Unlock()
		_, _ = w.Write([]byte("done\n"))
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return rl, u.Host
}

func (rl *requestLog) got() []string {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return slices.Clone(rl.bodies)
}

func (rl *requestLog) count(s string) int {
	k := 0
	for _, b := range rl.got() {
		if b == s {
			k++
		}
	}
	return k
}

// client returns an HTTP client with connections of its own.
func client(timeout time.Duration, keepAlive bool) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: !keepAlive}}
}

func post(c *http.Client, p *Proxy, path, body string) error {
	resp, err := c.Post(p.URL()+path, "text/plain", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

func TestDuplicateIsExecutedTwice(t *testing.T) {
	rl, target := newRequestLog(t)
	n := NewNetwork(func(net.Conn) Source { return Source{Name: "sidecar"} })
	p := listen(t, n, "coord", target)
	f, err := n.Duplicate(Match{From: []string{"sidecar"}, Request: "POST /v1/x "}, 300*time.Millisecond, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The client closes its connection after the answer: the copy goes on
	// its own connection, later.
	c := client(10*time.Second, false)
	if err := post(c, p, "/v1/y", "other path"); err != nil {
		t.Fatal(err)
	}
	if err := post(c, p, "/v1/x", "one"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the copy executed", func() bool { return rl.count("POST /v1/x one") == 2 })
	select {
	case <-f.Done():
	default:
		t.Error("Done() not closed after the only copy was made")
	}
	if err := post(c, p, "/v1/x", "two"); err != nil {
		t.Fatal(err)
	}
	if got := rl.count("POST /v1/y other path"); got != 1 {
		t.Errorf("a request that does not match ran %d times, want 1", got)
	}
	if f.Hits() != 1 || n.Duplicated.Load() != 1 {
		t.Errorf("Hits() = %d, Duplicated = %d, want 1 and 1 (count 1)", f.Hits(), n.Duplicated.Load())
	}
}

func TestReorderDeliversHeldRequestAfterLaterOne(t *testing.T) {
	for _, gaveUp := range []bool{false, true} {
		t.Run(fmt.Sprintf("first client gave up=%t", gaveUp), func(t *testing.T) {
			rl, target := newRequestLog(t)
			n := NewNetwork(nil)
			a, b := listen(t, n, "coord-a", target), listen(t, n, "coord-b", target)
			f, err := n.Reorder(Match{Request: "POST /v1/renew "}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			first := make(chan error, 1)
			timeout := 30 * time.Second
			if gaveUp {
				timeout = 200 * time.Millisecond
			}
			go func() { first <- post(client(timeout, true), a, "/v1/renew", "first") }()
			eventually(t, 10*time.Second, "the first request is held", func() bool { return f.Hits() == 1 })
			if gaveUp {
				if err := <-first; err == nil {
					t.Fatal("the held request was answered before the later one passed")
				}
			}
			// The later request goes through the other proxy, as a retry on
			// another coordinator does.
			if err := post(client(30*time.Second, true), b, "/v1/renew", "second"); err != nil {
				t.Fatal(err)
			}
			<-f.Done()
			if !gaveUp {
				if err := <-first; err != nil {
					t.Fatalf("the released request = %v, want its answer", err)
				}
			}
			eventually(t, 10*time.Second, "the held request executed", func() bool { return len(rl.got()) == 2 })
			if got, want := rl.got(), []string{"POST /v1/renew second", "POST /v1/renew first"}; !slices.Equal(got, want) {
				t.Errorf("execution order = %q, want %q", got, want)
			}
			if !f.Overtaken() || n.Reordered.Load() != 1 {
				t.Errorf("Overtaken() = %t, Reordered = %d, want true and 1", f.Overtaken(), n.Reordered.Load())
			}
		})
	}
}

// TestEtcdStallAppliesTxnAfterClientGaveUp delays a client's gRPC bytes to a
// real etcd member past its deadline: the client gets DeadlineExceeded, and
// the put is applied anyway, its cancellation arriving after it.
func TestEtcdStallAppliesTxnAfterClientGaveUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	ec := etcdtest.New(t, 1)
	direct := ec.Client(t)
	u, err := url.Parse(ec.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	n := NewNetwork(func(net.Conn) Source { return Source{Name: "coord-a"} })
	p := listen(t, n, "etcd-a/client", u.Host)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{p.URL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err = cli.Get(ctx, "warm-up") // the connection is up before the stall
	cancel()
	if err != nil {
		t.Fatal(err)
	}

	// etcd gets the Txn 2s after it was sent, with the second the client
	// waited left of its deadline, and the cancellation a second later.
	f, err := n.Delay(Request, Match{From: []string{"coord-a"}, To: []string{"etcd-a/client"}}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	_, err = cli.Txn(ctx).Then(clientv3.OpPut("late", "applied")).Commit()
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(fmt.Sprint(err), "DeadlineExceeded") {
		t.Fatalf("Txn through the stalled member = %v, want a deadline error", err)
	}
	eventually(t, 15*time.Second, "the late Txn was applied", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r, err := direct.Get(ctx, "late")
		return err == nil && len(r.Kvs) == 1 && string(r.Kvs[0].Value) == "applied"
	})
	f.Stop()
	if f.Hits() == 0 {
		t.Error("Hits() = 0 after stalling a Txn")
	}
}

// proxyGoroutines counts the goroutines running code of proxy.go or
// timing.go.
func proxyGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	k := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "faultproxy/proxy.go:") || strings.Contains(g, "faultproxy/timing.go:") {
			k++
		}
	}
	return k
}

func TestCloseWhileHoldingLeaksNothing(t *testing.T) {
	rl, target := newRequestLog(t)
	n := NewNetwork(nil)
	p, err := n.Listen("coord", "x", "127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	delay, _ := n.Delay(Request, Match{Request: "POST /delayed"}, time.Hour)
	answer, _ := n.Delay(Response, Match{Request: "POST /late-answer"}, time.Hour)
	reorder, _ := n.Reorder(Match{Request: "POST /held"}, time.Hour)
	dup, _ := n.Duplicate(Match{Request: "POST /copied"}, time.Hour, 1)
	defer func() {
		for _, f := range []*Fault{delay, answer, reorder, dup} {
			f.Stop()
		}
	}()
	var wg sync.WaitGroup
	for _, path := range []string{"/delayed", "/late-answer", "/held", "/copied"} {
		wg.Go(func() { _ = post(client(time.Minute, true), p, path, "x") })
	}
	eventually(t, 10*time.Second, "every fault holds a request", func() bool {
		return delay.Hits() > 0 && answer.Hits() > 0 && reorder.Hits() > 0 && dup.Hits() > 0 && rl.count("POST /late-answer x") == 1
	})
	p.Close()
	wg.Wait()
	if k := proxyGoroutines(); k != 0 {
		t.Errorf("%d goroutines of the proxy still run after Close", k)
	}
	got := rl.got()
	slices.Sort(got)
	if !slices.Equal(got, []string{"POST /copied x", "POST /late-answer x"}) {
		t.Errorf("executed %q, want only the requests nothing held", got)
	}
}

// TestConnectionEndsWhenBothSidesClose: a connection whose ends both closed
// leaves nothing running (without Close or CutAll).
func TestConnectionEndsWhenBothSidesClose(t *testing.T) {
	n := NewNetwork(nil)
	p := listen(t, n, "echo", echoServer(t))
	f, err := n.Delay(Request, Match{}, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	for range 3 {
		c := dial(t, p)
		write(t, c, "bye\n")
		_ = c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, err := io.ReadAll(c); err != nil || string(b) != "bye\n" {
			t.Fatalf("echo = %q, %v, want bye and EOF", b, err)
		}
		c.Close()
	}
	eventually(t, 10*time.Second, "the connections' goroutines ended", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.conns) == 0
	})
}

func TestTimingFaultArguments(t *testing.T) {
	n := NewNetwork(nil)
	tests := []struct {
		name string
		err  error
	}{
		{"delay by zero", second(n.Delay(Request, Match{}, 0))},
		{"delay in no direction", second(n.Delay(Direction(7), Match{}, time.Second))},
		{"negative duplicate delay", second(n.Duplicate(Match{}, -time.Second, 1))},
		{"no duplicate", second(n.Duplicate(Match{}, 0, 0))},
		{"reorder without hold", second(n.Reorder(Match{}, 0))},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Errorf("%s: err = nil, want an error", tt.name)
		}
	}
	if k := n.timing.Load(); k != 0 {
		t.Errorf("%d faults installed by invalid calls, want 0", k)
	}
}

func second(_ *Fault, err error) error { return err }
