package faultproxy

import (
	"bufio"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echoServer echoes lines until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// roundTrip writes a line and reads it back within d.
func roundTrip(c net.Conn, r *bufio.Reader, d time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err := r.ReadString('\n')
	return err
}

func TestPartitionModes(t *testing.T) {
	var src atomic.Pointer[Source]
	src.Store(&Source{Name: "client", Region: "region-a"})
	n := NewNetwork(func(net.Conn) Source { return *src.Load() })
	p, err := n.Listen("echo", "region-b", "127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if err := roundTrip(c, r, 2*time.Second); err != nil {
		t.Fatalf("open network: round trip = %v, want nil", err)
	}

	// Blackhole: the bytes are held, not lost, and flow after Heal.
	n.Isolate("region-a", Blackhole)
	if err := roundTrip(c, r, 300*time.Millisecond); err == nil {
		t.Fatal("blackholed: round trip succeeded, want a timeout")
	}
	n.Heal()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("after heal: held line = %q, %v, want ping", line, err)
	}

	// Drop: the open connection is cut, new ones are closed at once.
	n.Isolate("region-b", Drop)
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("dropped: read succeeded, want the connection closed")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := roundTrip(c2, bufio.NewReader(c2), 2*time.Second); err == nil {
		t.Fatal("dropped: new connection round trip succeeded, want it closed")
	}

	// Within one region nothing is blocked.
	src.Store(&Source{Name: "client", Region: "region-b"})
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := roundTrip(c3, bufio.NewReader(c3), 2*time.Second); err != nil {
		t.Fatalf("same region during isolation: round trip = %v, want nil", err)
	}
	if n.Cut.Load() == 0 || n.Held.Load() == 0 || n.Refused.Load() == 0 {
		t.Errorf("counters cut=%d held=%d refused=%d, want each > 0", n.Cut.Load(), n.Held.Load(), n.Refused.Load())
	}
}

func TestHookSeesRequestLine(t *testing.T) {
	n := NewNetwork(nil)
	p, err := n.Listen("echo", "x", "127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	seen := make(chan string, 1)
	n.SetHook(func(src Source, req string) bool {
		select {
		case seen <- req:
		default:
		}
		return strings.HasPrefix(req, "POST /v1/journal")
	})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = c.Write([]byte("POST /v1/journal HTTP/1.1\r\n"))
	if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
		t.Error("hook returned true: the answer was forwarded, want the connection closed")
	}
	if got := <-seen; got != "POST /v1/journal HTTP/1.1" {
		t.Errorf("hook request = %q, want the request line", got)
	}
}

func TestPIDTableFindsOwnProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	tab := NewPIDTable()
	tab.Register(os.Getpid(), Source{Name: "me", Region: "operator"})
	n := NewNetwork(tab.Classify)
	got := make(chan Source, 1)
	n.SetHook(func(src Source, _ string) bool { got <- src; return false })
	p, err := n.Listen("echo", "x", "127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, bufio.NewReader(c), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if src := <-got; src.Name != "me" || src.Region != "operator" {
		t.Errorf("Classify(own connection) = %+v, want me/operator", src)
	}
}
