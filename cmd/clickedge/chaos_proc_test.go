package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ---- processes ----

// cxProc is a subprocess that can be started again after it was killed.
type cxProc struct {
	t       *testing.T
	name    string
	bin     string
	args    []string
	logPath string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	lives   int
}

func newProc(t *testing.T, name, bin string, args ...string) *cxProc {
	p := &cxProc{t: t, name: name, bin: bin, args: args, logPath: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(func() {
		if p.running() {
			p.kill()
		}
		if t.Failed() {
			p.dumpLog()
		}
	})
	return p
}

// childEnv is the test's environment without CLICKEDGE_* variables, which
// the binary would read as flags.
func childEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CLICKEDGE_") {
			out = append(out, kv)
		}
	}
	return out
}

func (p *cxProc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	p.lives++
	fmt.Fprintf(f, "==== life %d at %s: %s %s\n", p.lives, time.Now().Format(time.RFC3339Nano), filepath.Base(p.bin), strings.Join(p.args, " "))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr, cmd.Env = f, f, childEnv()
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(exited) }()
	p.cmd, p.exited = cmd, exited
}

func (p *cxProc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to the process (by its pid) and waits for it.
func (p *cxProc) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop sends SIGTERM and waits up to limit, then kills.
func (p *cxProc) stop(limit time.Duration) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(limit):
		p.t.Errorf("%s did not stop within %s of SIGTERM; killed", p.name, limit)
		p.kill()
	}
}

func (p *cxProc) dumpLog() {
	raw, err := os.ReadFile(p.logPath)
	if err != nil {
		return
	}
	if len(raw) > 6000 {
		raw = raw[len(raw)-6000:]
	}
	p.t.Logf("---- tail of %s log ----\n%s", p.name, raw)
}

func cxFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func cxAddr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// cxWait polls cond every 20ms until it holds or limit passes.
func cxWait(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- NATS ----

// cxNATS is one nats-server process.
type cxNATS struct {
	*cxProc
	name string
	port int
	url  string
}

// startNATS runs a single JetStream server.
func startNATS(t *testing.T, env *chaosEnv, name string) *cxNATS {
	t.Helper()
	port := cxFreePort(t)
	n := &cxNATS{name: name, port: port, url: "nats://" + cxAddr(port)}
	n.cxProc = newProc(t, "nats-"+name, env.natsBin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js",
		"-sd", t.TempDir(), "-n", name)
	n.start()
	n.waitJS(t, n.url)
	return n
}

// waitJS waits until JetStream answers on urls.
func (n *cxNATS) waitJS(t *testing.T, urls string) {
	t.Helper()
	ok := cxWait(30*time.Second, func() bool {
		nc, err := nats.Connect(urls, nats.Timeout(time.Second))
		if err != nil {
			return false
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err == nil
	})
	if !ok {
		t.Fatalf("JetStream on %s not ready in 30s", urls)
	}
}

// cxConnect connects the test itself to NATS (closed at the end of the test).
func cxConnect(t *testing.T, urls string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// ---- clickedge worker and edge ----

type cxWorker struct {
	*cxProc
	data, admin, metrics string
}

// newWorker prepares a worker on data with the demo catalog, its admin API
// and metrics on fixed ports (kept across restarts); call start.
func newWorker(t *testing.T, env *chaosEnv, natsURLs, data string, extra ...string) *cxWorker {
	w := &cxWorker{data: data, admin: cxAddr(cxFreePort(t)), metrics: cxAddr(cxFreePort(t))}
	args := append([]string{"worker", "--nats", natsURLs, "--secret", chaosSecret, "--data", data,
		"--metrics-addr", w.metrics, "--admin-listen", w.admin, "--admin-token", chaosAdminToken,
		"--demo", "--demo-api-key", testKey, "--log-level", "warn"}, extra...)
	w.cxProc = newProc(t, "worker", env.bin, args...)
	return w
}

func (w *cxWorker) start() {
	w.t.Helper()
	w.cxProc.start()
	if !cxWait(60*time.Second, func() bool {
		code, _ := w.adminGet("/admin/v1/catalog", nil)
		return code == 200
	}) {
		w.t.Fatalf("worker not ready in 60s")
	}
}

// adminGet GETs an admin path and decodes the answer into v (when not nil).
func (w *cxWorker) adminGet(path string, v any) (int, error) {
	return cxDo("GET", "http://"+w.admin+path, chaosAdminToken, "", v)
}

func (w *cxWorker) adminPost(path, body string, v any) (int, error) {
	return cxDo("POST", "http://"+w.admin+path, chaosAdminToken, body, v)
}

// cxClient keeps idle connections for less than the edge's 10s read
// timeout, after which fasthttp answers a connection that never carried a
// request with an unsolicited 400 (and Go's client logs it).
var cxClient = &http.Client{
	Transport:     &http.Transport{IdleConnTimeout: 5 * time.Second, MaxIdleConnsPerHost: 16},
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func cxDo(method, u, token, body string, v any) (int, error) {
	return cxDoWith(cxClient, method, u, token, body, v)
}

func cxDoWith(c *http.Client, method, u, token, body string, v any) (int, error) {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if v != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, v); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w: %.200s", method, u, err, raw)
		}
	}
	return resp.StatusCode, nil
}

type cxEdge struct {
	*cxProc
	data, listen, metrics string
}

// newEdge prepares an edge publishing to natsURLs; call start.
func newEdge(t *testing.T, env *chaosEnv, natsURLs string, extra ...string) *cxEdge {
	e := &cxEdge{data: t.TempDir(), listen: cxAddr(cxFreePort(t)), metrics: cxAddr(cxFreePort(t))}
	args := append([]string{"edge", "--nats", natsURLs, "--secret", chaosSecret, "--data", e.data,
		"--listen", e.listen, "--metrics-addr", e.metrics, "--drain-delay", "0", "--flush-timeout", "3s",
		"--edge-id", "chaos-edge", "--log-level", "warn"}, extra...)
	e.cxProc = newProc(t, "edge", env.bin, args...)
	return e
}

// start runs the edge and waits until it serves its catalog.
func (e *cxEdge) start() {
	e.t.Helper()
	e.cxProc.start()
	if !cxWait(30*time.Second, func() bool {
		resp, err := cxClient.Get("http://" + e.listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}) {
		e.t.Fatalf("edge not ready in 30s")
	}
}

// ---- metrics ----

// cxScrape returns the exposition of a /metrics endpoint ("" when down).
func cxScrape(addr string) string {
	resp, err := cxClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}

// cxSum sums the samples of metric name whose labels contain every filter
// (such as `reason="full"`); ok is false when none matched.
func cxSum(expo, name string, filters ...string) (float64, bool) {
	var sum float64
	ok := false
	for _, line := range strings.Split(expo, "\n") {
		if !strings.HasPrefix(line, name) || len(line) == len(name) || (line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		labels := line[len(name):sp]
		match := true
		for _, f := range filters {
			if !strings.Contains(labels, f) {
				match = false
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		sum += v
		ok = true
	}
	return sum, ok
}

// outboxRows is the edge's outbox backlog, -1 when it cannot be read.
func (e *cxEdge) outboxRows() int {
	v, ok := cxSum(cxScrape(e.metrics), "clickedge_outbox_rows")
	if !ok {
		return -1
	}
	return int(v)
}

func (e *cxEdge) metric(name string, filters ...string) float64 {
	v, _ := cxSum(cxScrape(e.metrics), name, filters...)
	return v
}

// histSnap is a cumulative Prometheus histogram: upper bounds and counts.
type histSnap struct {
	le    []float64
	count []float64
}

// redirectHist reads the edge's own histogram of redirect handling time.
func (e *cxEdge) redirectHist() histSnap {
	var h histSnap
	const name = "clickedge_edge_request_duration_seconds_bucket{"
	for _, line := range strings.Split(cxScrape(e.metrics), "\n") {
		if !strings.HasPrefix(line, name) || !strings.Contains(line, `route="redirect"`) {
			continue
		}
		i := strings.Index(line, `le="`)
		j := strings.LastIndexByte(line, ' ')
		if i < 0 || j < 0 {
			continue
		}
		leStr := line[i+4:]
		leStr = leStr[:strings.IndexByte(leStr, '"')]
		le, err1 := strconv.ParseFloat(leStr, 64)
		n, err2 := strconv.ParseFloat(line[j+1:], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		h.le, h.count = append(h.le, le), append(h.count, n)
	}
	return h
}

// p99Since is the bucket bound under which 99% of the observations made
// between an earlier snapshot and h fall ("-" when there are none).
func (h histSnap) p99Since(before histSnap) string {
	if len(h.le) == 0 || len(before.count) != len(h.count) {
		return "-"
	}
	total := h.count[len(h.count)-1] - before.count[len(before.count)-1]
	if total <= 0 {
		return "-"
	}
	for i := range h.le {
		if h.count[i]-before.count[i] >= 0.99*total {
			if math.IsInf(h.le[i], 1) {
				return ">" + fmtMS(time.Duration(h.le[i-1]*float64(time.Second)))
			}
			return "≤" + fmtMS(time.Duration(h.le[i]*float64(time.Second)))
		}
	}
	return "-"
}
