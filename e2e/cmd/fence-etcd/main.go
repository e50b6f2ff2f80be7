// Command fence-etcd runs one real etcd member (go.etcd.io/etcd/server/v3/embed)
// as its own process (through internal/embedetcd), so that the end-to-end
// suite can SIGSTOP it or kill -9 it like a production member. The member
// listens on one address and advertises another, so that peers and clients
// reach it through a fault-injecting proxy.
//
// Its first line on stdout is
//
//	listening client=127.0.0.1:P1 peer=127.0.0.1:P2
//
// (port 0 picks free ports), and "ready" follows once the member serves
// clients (for a cluster member: once a quorum formed). Exit codes: 0 on
// SIGTERM/SIGINT, 1 when etcd fails, 2 on bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/validator-fencing/fencing/internal/embedetcd"
)

type config struct {
	name, dir                               string
	listenClient, listenPeer                string
	advertiseClient, advertisePeer, initial string
	fastElections                           bool
	readyTimeout                            time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var c config
	fs := flag.NewFlagSet("fence-etcd", flag.ContinueOnError)
	fs.StringVar(&c.name, "name", "", "member name (required)")
	fs.StringVar(&c.dir, "data-dir", "", "data directory; a restart with the same directory rejoins (required)")
	fs.StringVar(&c.listenClient, "listen-client", "127.0.0.1:0", "client listen address host:port")
	fs.StringVar(&c.listenPeer, "listen-peer", "127.0.0.1:0", "peer listen address host:port")
	fs.StringVar(&c.advertiseClient, "advertise-client", "", "client URL advertised (the proxy in front of this member) (required)")
	fs.StringVar(&c.advertisePeer, "advertise-peer", "", "peer URL advertised (the proxy in front of this member) (required)")
	fs.StringVar(&c.initial, "initial-cluster", "", "name=peerURL,... of every member (default: this member alone)")
	fs.BoolVar(&c.fastElections, "fast-elections", true, "50ms heartbeat, 500ms election timeout")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 60*time.Second, "give up when no quorum formed by then")
	err := fs.Parse(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err == nil {
		err = c.validate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fence-etcd:", err)
		os.Exit(2)
	}
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "fence-etcd:", err)
		os.Exit(1)
	}
}

func (c config) validate() error {
	var errs []error
	if c.name == "" {
		errs = append(errs, errors.New("--name is required"))
	}
	if c.dir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	for _, u := range []struct{ flag, v string }{{"advertise-client", c.advertiseClient}, {"advertise-peer", c.advertisePeer}} {
		if p, err := url.Parse(u.v); err != nil || p.Scheme != "http" || p.Host == "" {
			errs = append(errs, fmt.Errorf("--%s %q must be http://host:port", u.flag, u.v))
		}
	}
	return errors.Join(errs...)
}

func run(ctx context.Context, c config) error {
	// Warnings and errors go to stderr (the suite keeps it per process).
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(zapcore.WarnLevel)
	zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	lg, err := zc.Build()
	if err != nil {
		return err
	}
	m, err := embedetcd.Launch(embedetcd.Spec{
		Name: c.name, Dir: c.dir, ClientURL: c.advertiseClient, PeerURL: c.advertisePeer,
		ListenClientURL: "http://" + c.listenClient, ListenPeerURL: "http://" + c.listenPeer,
		InitialCluster: c.initial, FastElections: c.fastElections, Logger: lg,
	})
	if err != nil {
		return err
	}
	defer m.Close()
	fmt.Printf("listening client=%s peer=%s\n", m.ClientAddr(), m.PeerAddr())
	rctx, cancel := context.WithTimeout(ctx, c.readyTimeout)
	err = m.WaitReady(rctx)
	cancel()
	switch {
	case ctx.Err() != nil:
		return nil
	case err != nil:
		return err
	}
	fmt.Println("ready")
	select {
	case err := <-m.Err():
		return fmt.Errorf("etcd member %s failed: %w", c.name, err)
	case <-ctx.Done():
		return nil
	}
}
