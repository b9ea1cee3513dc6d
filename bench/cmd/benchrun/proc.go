package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process of the driver. Every child is started in its own
// process group with PR_SET_PDEATHSIG (SIGKILL), is registered until it
// exits, and is killed by killAll on any exit of the driver, signals
// included.
type proc struct {
	name    string
	argv    []string
	pid     int
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	err     error
}

var (
	procsMu sync.Mutex
	procs   = map[*proc]bool{}
)

// start runs bin with args, pinned to cpu ("" for no pinning), its output
// to logPath.
func start(name, cpu, logPath, bin string, args ...string) (*proc, error) {
	argv := append([]string{bin}, args...)
	if cpu != "" && tasksetPath != "" {
		argv = append([]string{tasksetPath, "-c", cpu}, argv...)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, argv: argv, pid: cmd.Process.Pid, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	procsMu.Lock()
	procs[p] = true
	procsMu.Unlock()
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		procsMu.Lock()
		delete(procs, p)
		procsMu.Unlock()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends sig to the process group, waits up to grace, then kills the
// group. It is safe on a process that has exited.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p == nil || !p.running() {
		return
	}
	_ = syscall.Kill(-p.pid, sig)
	select {
	case <-p.exited:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
	}
}

// wait waits for the process to exit, bounded by timeout (then it is killed).
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		p.stop(syscall.SIGKILL, time.Second)
		return fmt.Errorf("%s did not finish within %s (killed)", p.name, timeout)
	}
}

func (p *proc) cmdline() string { return shellJoin(p.argv) }

// killAll stops every child still running: SIGTERM, then SIGKILL.
func killAll() {
	procsMu.Lock()
	list := make([]*proc, 0, len(procs))
	for p := range procs {
		list = append(list, p)
	}
	procsMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range list {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(syscall.SIGTERM, 3*time.Second) }()
	}
	wg.Wait()
}

func shellJoin(argv []string) string {
	var b strings.Builder
	for i, a := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" {
			b.WriteString("''")
		} else if strings.ContainsAny(a, " \t'\"$&;|<>(){}*?!#\\") {
			b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}

// waitLogJSON waits (bounded) for a JSON log line of p whose msg is msg and
// returns the value of its field key.
func waitLogJSON(p *proc, msg, key string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if f, err := os.Open(p.logPath); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				line := sc.Bytes()
				if !bytes.Contains(line, []byte(msg)) {
					continue
				}
				var m map[string]any
				if json.Unmarshal(line, &m) != nil || m["msg"] != msg {
					continue
				}
				v, _ := m[key].(string)
				f.Close()
				return v, nil
			}
			f.Close()
		}
		if !p.running() {
			return "", fmt.Errorf("%s exited before logging %q (see %s)", p.name, msg, p.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("%s did not log %q within %s (see %s)", p.name, msg, timeout, p.logPath)
}

// waitLogLine waits (bounded) for a line of p's log containing prefix and
// returns the rest of that line after it.
func waitLogLine(p *proc, prefix string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if raw, err := os.ReadFile(p.logPath); err == nil {
			for _, l := range strings.Split(string(raw), "\n") {
				if i := strings.Index(l, prefix); i >= 0 {
					return strings.TrimSpace(l[i+len(prefix):]), nil
				}
			}
		}
		if !p.running() {
			return "", fmt.Errorf("%s exited before logging %q (see %s)", p.name, prefix, p.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("%s did not log %q within %s (see %s)", p.name, prefix, timeout, p.logPath)
}

var httpc = &http.Client{
	Timeout:       5 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// waitHTTP200 waits (bounded) until GET url answers 200.
func waitHTTP200(url string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := httpc.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if p != nil && !p.running() {
			return fmt.Errorf("%s exited (see %s)", p.name, p.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 within %s", url, timeout)
}

// waitTCP waits (bounded) until addr accepts connections.
func waitTCP(addr string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && !p.running() {
			return fmt.Errorf("%s exited (see %s)", p.name, p.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening within %s", addr, timeout)
}

// freePort returns a loopback port that was free a moment ago (for servers
// that must keep one port across a restart: nats-server, nginx).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// --- /proc ---

var clkTck = 100.0

func initClkTck() {
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			clkTck = float64(n)
		}
	}
}

// treePIDs returns pid and all its descendants.
func treePIDs(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := statFields(raw)
		if len(f) > 2 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				children[pp] = append(children[pp], n)
			}
		}
	}
	out := []int{pid}
	for i := 0; i < len(out) && i < 1000; i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// statFields returns the fields of /proc/<pid>/stat after the command name:
// [0] is state, [1] ppid, [11] utime, [12] stime.
func statFields(raw []byte) []string {
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(raw[i+1:]))
}

// cpuSeconds is the user+system CPU time of pid and its descendants.
func cpuSeconds(pid int) float64 {
	var ticks float64
	for _, p := range treePIDs(pid) {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		f := statFields(raw)
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64)
			s, _ := strconv.ParseFloat(f[12], 64)
			ticks += u + s
		}
	}
	return ticks / clkTck
}

// memMiB returns VmRSS and VmHWM of pid and its descendants, in MiB.
func memMiB(pid int) (rss, hwm float64) {
	for _, p := range treePIDs(pid) {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(raw), "\n") {
			var dst *float64
			switch {
			case strings.HasPrefix(l, "VmRSS:"):
				dst = &rss
			case strings.HasPrefix(l, "VmHWM:"):
				dst = &hwm
			default:
				continue
			}
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				*dst += kb / 1024
			}
		}
	}
	return rss, hwm
}

// --- Prometheus text ---

type metrics map[string]float64 // "name{labels}" → value

func scrape(addr string) (metrics, error) {
	resp, err := httpc.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("metrics %s: %s", addr, resp.Status)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		m[l[:i]] = v
	}
	return m, sc.Err()
}

// sum adds every series of metric name (any labels).
func (m metrics) sum(name string) float64 {
	var t float64
	for k, v := range m {
		if k == name || (strings.HasPrefix(k, name) && len(k) > len(name) && k[len(name)] == '{') {
			t += v
		}
	}
	return t
}

// --- samplers ---

// sampler records, once a second while a measurement runs, the largest RSS
// of the watched processes and the largest Go heap in use their metrics
// report.
type sampler struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	maxRSS  map[int]float64
	maxHeap map[string]float64
}

func startSampler(pids []int, metricsAddrs []string) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{}), maxRSS: map[int]float64{}, maxHeap: map[string]float64{}}
	sample := func() {
		for _, pid := range pids {
			rss, _ := memMiB(pid)
			s.mu.Lock()
			s.maxRSS[pid] = max(s.maxRSS[pid], rss)
			s.mu.Unlock()
		}
		for _, a := range metricsAddrs {
			if m, err := scrape(a); err == nil {
				h := m.sum("go_memstats_heap_inuse_bytes") / (1 << 20)
				s.mu.Lock()
				s.maxHeap[a] = max(s.maxHeap[a], h)
				s.mu.Unlock()
			}
		}
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				sample()
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return s
}

func (s *sampler) finish() (rss map[int]float64, heap map[string]float64) {
	close(s.stop)
	<-s.done
	return s.maxRSS, s.maxHeap
}

// pollUntil calls f every interval until it returns true or an error, or
// timeout passes.
func pollUntil(ctx context.Context, interval, timeout time.Duration, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
