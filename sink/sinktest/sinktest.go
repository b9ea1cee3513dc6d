// Package sinktest starts embedded NATS servers with JetStream for tests of
// any package that talks to NATS.
package sinktest

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// RunServer starts a NATS server with JetStream storing in dir (typically
// t.TempDir()), listening on 127.0.0.1:port (-1 or 0 picks a free port), and shuts
// it down when the test ends. It fails the test if the server does not start.
func RunServer(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	}
	if port == 0 {
		// 0 would mean the NATS default 4222, which parallel tests share.
		opts.Port = -1
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("new nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatalf("nats server on port %d not ready", port)
	}
	t.Cleanup(func() { Stop(s) })
	return s
}

// Port returns the client port s listens on.
func Port(s *server.Server) int {
	return s.Addr().(*net.TCPAddr).Port
}

// Stop shuts s down and waits until it is gone; stopping twice is harmless.
func Stop(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// Restart stops s and starts a new server on the same port and store
// directory, so that connected clients reconnect to it and find their
// streams, consumers and buckets again.
func Restart(t testing.TB, s *server.Server) *server.Server {
	t.Helper()
	port, dir := Port(s), s.StoreDir()
	Stop(s)
	return RunServer(t, dir, port)
}

// FreePort returns a loopback TCP port that was free a moment ago, for a
// server that a test starts later than its clients.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL is the client URL of a server on 127.0.0.1:port.
func URL(port int) string {
	return "nats://127.0.0.1:" + strconv.Itoa(port)
}

// Connect connects to 127.0.0.1:port the way clickedge does in production:
// retrying a failed first connect and reconnecting forever (every 20 ms, to
// keep tests quick). The connection is closed when the test ends. It works
// before the server is up.
func Connect(t testing.TB, port int, opts ...nats.Option) *nats.Conn {
	t.Helper()
	all := append([]nats.Option{
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(20 * time.Millisecond),
		nats.ReconnectJitter(0, 0),
	}, opts...)
	nc, err := nats.Connect(URL(port), all...)
	if err != nil {
		t.Fatalf("connect to nats on port %d: %v", port, err)
	}
	t.Cleanup(nc.Close)
	return nc
}
