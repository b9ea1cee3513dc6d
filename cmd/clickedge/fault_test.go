package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clickedge/clickedge/sink"
	"github.com/clickedge/clickedge/sink/sinktest"
)

const testSecret = "fault-test-secret-0123456789abcdef"

// startMode runs `clickedge <mode>` in-process and returns its App.
func startMode(t *testing.T, args ...string) *App {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	appc := make(chan *App, 1)
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, args, io.Discard, io.Discard, func(a *App) { appc <- a }) }()
	select {
	case a := <-appc:
		t.Cleanup(func() { cancel(); <-errc })
		return a
	case err := <-errc:
		cancel()
		t.Fatalf("%s did not start: %v", args[0], err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("%s did not start in 30s", args[0])
	}
	return nil
}

func natsURL(ns *server.Server) string { return ns.ClientURL() }

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// follow requests a link and returns the click id of a 302, or "" otherwise.
func follow(c *http.Client, addr, code string) (string, error) {
	resp, err := c.Get("http://" + addr + "/r/" + code)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", nil
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return "", err
	}
	return u.Query().Get("click_id"), nil
}

func streamMsgs(t *testing.T, nurl string) uint64 {
	t.Helper()
	nc, err := nats.Connect(nurl)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, sink.ClickStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestEdgeBuffersWhileNATSDown stops NATS under an edge: redirects keep being
// served, clicks buffer in the outbox, and once NATS is back each buffered
// click reaches the worker exactly once.
func TestEdgeBuffersWhileNATSDown(t *testing.T) {
	natsDir := t.TempDir()
	ns := sinktest.RunServer(t, natsDir, -1)
	port := ns.Addr().(*net.TCPAddr).Port
	nurl := natsURL(ns)

	w := startMode(t, "worker", "--nats", nurl, "--secret", testSecret, "--data", t.TempDir(),
		"--metrics-addr", "", "--demo", "--demo-api-key", testKey, "--log-level", "error")
	e := startMode(t, "edge", "--nats", nurl, "--secret", testSecret, "--data", t.TempDir(),
		"--listen", "127.0.0.1:0", "--metrics-addr", "", "--drain-delay", "0", "--flush-timeout", "1s", "--log-level", "error")
	waitFor(t, "the edge to receive the catalog", 10*time.Second, func() bool { return e.Edge.CatalogVersion() > 0 })

	ns.Shutdown()
	ns.WaitForShutdown()

	const n = 50
	ids := map[string]bool{}
	for i := 0; i < n; i++ {
		id, err := follow(noRedirect, e.EdgeAddr, "alice")
		if err != nil || id == "" {
			t.Fatalf("redirect %d with NATS down: id %q, err %v", i, id, err)
		}
		ids[id] = true
	}
	if got := e.Edge.Outbox.Stats().Rows; got < n {
		t.Fatalf("outbox rows with NATS down = %d, want >= %d", got, n)
	}

	ns2 := sinktest.RunServer(t, natsDir, port)
	waitFor(t, "the outbox to drain", 30*time.Second, func() bool { return e.Edge.Outbox.Stats().Rows == 0 })
	var total int
	waitFor(t, "the worker to store every click", 30*time.Second, func() bool {
		p, err := w.Worker.ListClicks(context.Background(), sink.ClickQuery{MerchantID: "demo", Limit: 100})
		if err != nil {
			return false
		}
		total = p.Total
		return total >= n
	})
	p, _ := w.Worker.ListClicks(context.Background(), sink.ClickQuery{MerchantID: "demo", Limit: 100})
	seen := map[string]bool{}
	for _, c := range p.Clicks {
		if seen[c.ID] {
			t.Errorf("click %s listed twice", c.ID)
		}
		seen[c.ID] = true
		if !ids[c.ID] {
			t.Errorf("click %s stored but never answered", c.ID)
		}
	}
	if len(seen) != n || p.Total != n {
		t.Errorf("worker holds %d clicks (total %d), want %d", len(seen), p.Total, n)
	}
	if got := streamMsgs(t, natsURL(ns2)); got != n {
		t.Errorf("stream holds %d messages, want %d (no duplicates)", got, n)
	}
}

// TestEdgeSIGKILLLosesNothing kills the edge process with SIGKILL during a
// bounded load and restarts it: every click answered with a 302 reaches the
// worker, and none reaches the stream twice.
func TestEdgeSIGKILLLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a subprocess")
	}
	bin := filepath.Join(t.TempDir(), "clickedge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ns := sinktest.RunServer(t, t.TempDir(), -1)
	nurl := natsURL(ns)
	w := startMode(t, "worker", "--nats", nurl, "--secret", testSecret, "--data", t.TempDir(),
		"--metrics-addr", "", "--demo", "--demo-api-key", testKey, "--log-level", "error")

	edgeData := t.TempDir()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "edge", "--nats", nurl, "--secret", testSecret, "--data", edgeData,
			"--listen", addr, "--metrics-addr", "", "--log-level", "error")
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the edge to be ready", 20*time.Second, func() bool {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		return cmd
	}

	var mu sync.Mutex
	acked := map[string]bool{}
	load := func(d time.Duration, maxReq int) {
		var wg sync.WaitGroup
		stop := time.Now().Add(d)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &http.Client{Timeout: 2 * time.Second, CheckRedirect: noRedirect.CheckRedirect}
				for i := 0; i < maxReq && time.Now().Before(stop); i++ {
					id, err := follow(c, addr, "bob")
					if err != nil {
						return // the edge died under us
					}
					if id != "" {
						mu.Lock()
						acked[id] = true
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
	}

	for round := 0; round < 3; round++ {
		cmd := start()
		done := make(chan struct{})
		go func() { load(3*time.Second, 2000); close(done) }()
		time.Sleep(time.Duration(300+200*round) * time.Millisecond)
		if err := cmd.Process.Signal(os.Kill); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		<-done
	}
	cmd := start() // the last life drains what the killed ones left
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if len(acked) == 0 {
		t.Fatal("no redirect was answered")
	}
	waitFor(t, "every acknowledged click at the worker", 60*time.Second, func() bool {
		for id := range acked {
			if _, ok, err := w.Worker.Store.Click(id); err != nil || !ok {
				return false
			}
		}
		return true
	})
	p, err := w.Worker.ListClicks(context.Background(), sink.ClickQuery{MerchantID: "demo", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := streamMsgs(t, nurl); got != uint64(p.Total) {
		t.Errorf("stream holds %d messages for %d distinct stored clicks: duplicates reached the stream", got, p.Total)
	}
	t.Logf("acknowledged %d clicks across 3 SIGKILLs; worker stored %d (the rest were committed but not yet answered)", len(acked), p.Total)
}
