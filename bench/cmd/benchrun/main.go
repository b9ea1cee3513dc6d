// Command benchrun is the driver of clickedge's benchmark suite (issue 5):
// it builds clickedge, the bare fasthttp baseline, the load generator and a
// nats-server, runs every scenario for several rounds with servers and load
// generators pinned to separate cores, and writes bench/RESULTS.md.
//
// It is run by bench/run.sh (make bench). Environment:
//
//	BENCH_QUICK=1        one round, 3 s per run, small fills: for development
//	BENCH_FULL=1         the 1 M-click outbox drain and worker ingest
//	BENCH_ROUNDS=n       rounds per scenario (default 3; quick 1)
//	BENCH_DURATION=10s   measured time per run (quick 3s)
//	BENCH_WARMUP=2s      warm-up before each measured run (quick 1s)
//	BENCH_ONLY=regexp    run only the scenarios whose name matches
//	BENCH_FILL=n         clicks buffered for the drain and ingest scenarios
//	                     (default 100000; quick 20000; full 1000000)
//	BENCH_REDIRECT_RATE  open-loop redirect rate (default 4000/s)
//	BENCH_PIXEL_RATE     pixel rate (default 4000/s)
//	BENCH_S2S_RATE       S2S conversion rate, each dialect (default 20000/s,
//	                     the Partnac target: achieved shows what is sustained)
//	BENCH_C2W_RATES      click → worker rates (default "2000,10000")
//	BENCH_SERVER_CPU=1   core of the servers
//	BENCH_LOAD_CPU=0     core of wrk and loadgen
//	BENCH_OUT            report path (default bench/RESULTS.md; quick:
//	                     bench/.work/RESULTS-quick.md)
//	BENCH_GEOIP          mmdb to use (default: ./data/geoip/*.mmdb, else
//	                     deploy/geoip.sh into bench/.work, else a synthetic one)
//	BENCH_KEEP_DATA=1    keep each run's data directory under bench/.work/runs
//	NGINX                nginx binary (default: nginx on PATH or /usr/sbin/nginx)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var tasksetPath string

type binaries struct {
	clickedge, baseline, loadgen, nats, mkgeo string
}

type driver struct {
	root, benchDir, work string
	bin                  binaries
	wrk, nginx           string
	geo, geoSource       string
	serverCPU, loadCPU   string
	rounds               int
	dur, warm            time.Duration
	quick, full          bool
	fillN                int
	redirectRate         float64
	pixelRate            float64
	s2sRate              float64
	c2wRates             []float64
	only                 *regexp.Regexp
	out                  string
	apiKey, secret       string
	capture              captureSupport
	buildCmds            []string
	started              time.Time
	loadStart, loadEnd   string
}

// captureSupport records which capture modes the clickedge build offers.
type captureSupport struct {
	flag           bool // --capture exists
	commitInterval bool // --commit-interval exists
}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		cancel()
		fmt.Fprintf(os.Stderr, "benchrun: %v; stopping every child process\n", s)
		killAll()
		os.Exit(130)
	}()
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				fmt.Fprintln(os.Stderr, "benchrun: panic:", r)
				code = 2
			}
			killAll()
		}()
		if err := run(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "benchrun:", err)
			code = 1
		}
	}()
	os.Exit(code)
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
		fmt.Fprintf(os.Stderr, "benchrun: ignoring %s=%q (not an integer)\n", name, v)
	}
	return def
}

func envFloat(name string, def float64) float64 {
	if v := os.Getenv(name); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
			return f
		}
		fmt.Fprintf(os.Stderr, "benchrun: ignoring %s=%q\n", name, v)
	}
	return def
}

func envDur(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
		fmt.Fprintf(os.Stderr, "benchrun: ignoring %s=%q (not a duration)\n", name, v)
	}
	return def
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func run(ctx context.Context) error {
	d := &driver{started: time.Now()}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	// Run from the repository root or from bench/.
	switch {
	case fileExists(filepath.Join(wd, "bench", "go.mod")):
		d.root = wd
	case fileExists(filepath.Join(wd, "go.mod")) && fileExists(filepath.Join(wd, "..", "cmd", "clickedge")):
		d.root = filepath.Dir(wd)
	default:
		return fmt.Errorf("run from the repository root or bench/ (cwd %s)", wd)
	}
	d.benchDir = filepath.Join(d.root, "bench")
	d.work = filepath.Join(d.benchDir, ".work")
	if v := os.Getenv("BENCH_WORK"); v != "" {
		d.work, _ = filepath.Abs(v)
	}
	d.quick = os.Getenv("BENCH_QUICK") == "1"
	d.full = os.Getenv("BENCH_FULL") == "1"
	d.rounds, d.dur, d.warm, d.fillN = 3, 10*time.Second, 2*time.Second, 100_000
	if d.quick {
		d.rounds, d.dur, d.warm, d.fillN = 1, 3*time.Second, time.Second, 20_000
	}
	if d.full {
		d.fillN = 1_000_000
	}
	d.rounds = max(1, envInt("BENCH_ROUNDS", d.rounds))
	d.dur = envDur("BENCH_DURATION", d.dur)
	d.warm = envDur("BENCH_WARMUP", d.warm)
	d.fillN = max(1000, envInt("BENCH_FILL", d.fillN))
	d.redirectRate = envFloat("BENCH_REDIRECT_RATE", 4000)
	d.pixelRate = envFloat("BENCH_PIXEL_RATE", 4000)
	d.s2sRate = envFloat("BENCH_S2S_RATE", 20000)
	rates := os.Getenv("BENCH_C2W_RATES")
	if rates == "" {
		rates = "2000,10000"
	}
	for _, r := range strings.Split(rates, ",") {
		if f, err := strconv.ParseFloat(strings.TrimSpace(r), 64); err == nil && f > 0 {
			d.c2wRates = append(d.c2wRates, f)
		}
	}
	d.serverCPU = envStr("BENCH_SERVER_CPU", "1")
	d.loadCPU = envStr("BENCH_LOAD_CPU", "0")
	if v := os.Getenv("BENCH_ONLY"); v != "" {
		if d.only, err = regexp.Compile(v); err != nil {
			return fmt.Errorf("BENCH_ONLY: %w", err)
		}
	}
	d.out = filepath.Join(d.benchDir, "RESULTS.md")
	if d.quick {
		d.out = filepath.Join(d.work, "RESULTS-quick.md")
	}
	if v := os.Getenv("BENCH_OUT"); v != "" {
		d.out, _ = filepath.Abs(v)
	}
	// Fixed credentials of the throwaway demo merchant and click-id secret.
	d.apiKey = "ce_live_BenchBenchBenchBenchBenchBench00"
	d.secret = "bench-secret-0123456789abcdef0123456789"
	if err := os.MkdirAll(filepath.Join(d.work, "logs"), 0o755); err != nil {
		return err
	}
	_ = os.RemoveAll(filepath.Join(d.work, "runs"))
	initClkTck()
	if p, err := exec.LookPath("taskset"); err == nil && runtime.NumCPU() > 1 {
		tasksetPath = p
	} else {
		logf("taskset missing or one core: running unpinned")
		d.serverCPU, d.loadCPU = "", ""
	}
	if d.wrk, err = exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk not found (apt-get install wrk)")
	}
	d.nginx = os.Getenv("NGINX")
	if d.nginx == "" {
		if p, err := exec.LookPath("nginx"); err == nil {
			d.nginx = p
		} else if fileExists("/usr/sbin/nginx") {
			d.nginx = "/usr/sbin/nginx"
		}
	}
	if err := d.build(); err != nil {
		return err
	}
	if err := d.findGeo(); err != nil {
		return err
	}
	help, _ := exec.Command(d.bin.clickedge, "serve", "--help").CombinedOutput()
	d.capture.flag = strings.Contains(string(help), "--capture ")
	d.capture.commitInterval = strings.Contains(string(help), "--commit-interval")
	d.loadStart = loadavg()

	scs := d.scenarios()
	results := make([]*scenResult, len(scs))
	for i, sc := range scs {
		results[i] = &scenResult{sc: sc}
	}
	var active int
	for _, sc := range scs {
		if sc.na == "" && d.selected(sc) {
			active++
		}
	}
	logf("benchrun: %d scenarios × %d rounds, %s per run (+%s warm-up); server core %q, load core %q; geo %s",
		active, d.rounds, d.dur, d.warm, d.serverCPU, d.loadCPU, d.geoSource)
	// Rounds outermost: each round measures every scenario back to back, so
	// a baseline and the clickedge figure it divides share the machine's
	// state of the moment.
	for r := 1; r <= d.rounds; r++ {
		for _, res := range results {
			sc := res.sc
			if sc.na != "" || !d.selected(sc) {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			tag := fmt.Sprintf("%s.r%d", sanitize(sc.name), r)
			logf("round %d/%d: %s", r, d.rounds, sc.name)
			vals, cmds, err := sc.run(tag)
			killStrays()
			if err != nil {
				logf("  FAILED: %v", err)
				res.errs = append(res.errs, fmt.Sprintf("round %d: %v", r, err))
				continue
			}
			res.rounds = append(res.rounds, vals)
			if res.cmds == nil {
				res.cmds = cmds
			}
			logf("  %s", summary(sc, vals))
		}
	}
	d.loadEnd = loadavg()
	if err := d.writeReport(results); err != nil {
		return err
	}
	logf("wrote %s", d.out)
	raw := filepath.Join(d.work, "results.json")
	if b, err := json.MarshalIndent(rawResults(results), "", "  "); err == nil {
		_ = os.WriteFile(raw, b, 0o644)
		logf("raw figures of every round: %s", raw)
	}
	return nil
}

func envStr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func (d *driver) selected(sc *scenario) bool { return d.only == nil || d.only.MatchString(sc.name) }

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// killStrays stops whatever a scenario left running (it should leave
// nothing: every scenario stops its servers).
func killStrays() {
	procsMu.Lock()
	n := len(procs)
	procsMu.Unlock()
	if n > 0 {
		logf("  stopping %d process(es) left by the scenario", n)
		killAll()
	}
}

func loadavg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// build compiles every binary into .work/bin.
func (d *driver) build() error {
	binDir := filepath.Join(d.work, "bin")
	d.bin = binaries{
		clickedge: filepath.Join(binDir, "clickedge"),
		baseline:  filepath.Join(binDir, "baseline"),
		loadgen:   filepath.Join(binDir, "loadgen"),
		nats:      filepath.Join(binDir, "nats-server"),
		mkgeo:     filepath.Join(binDir, "mkgeo"),
	}
	steps := []struct {
		dir  string
		args []string
	}{
		{d.root, []string{"build", "-o", d.bin.clickedge, "./cmd/clickedge"}},
		{d.root, []string{"build", "-o", d.bin.nats, "github.com/nats-io/nats-server/v2"}},
		{d.benchDir, []string{"build", "-o", d.bin.baseline, "./baseline"}},
		{d.benchDir, []string{"build", "-o", d.bin.loadgen, "./loadgen"}},
		{d.benchDir, []string{"build", "-o", d.bin.mkgeo, "./cmd/mkgeo"}},
	}
	gobin := os.Getenv("GO")
	if gobin == "" {
		gobin = "go"
	}
	for _, s := range steps {
		cmd := exec.Command(gobin, s.args...)
		cmd.Dir = s.dir
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		rel, _ := filepath.Rel(d.root, s.dir)
		line := "go " + strings.Join(s.args, " ")
		if rel != "." {
			line = fmt.Sprintf("(cd %s && %s)", rel, line)
		}
		line = strings.ReplaceAll(line, d.root+"/", "")
		logf("build: %s", line)
		if err := runBounded(cmd, 10*time.Minute); err != nil {
			return fmt.Errorf("%s: %w", line, err)
		}
		d.buildCmds = append(d.buildCmds, line)
	}
	return nil
}

// findGeo picks the mmdb for the enrichment: BENCH_GEOIP, the repository's
// ./data/geoip (make geoip), deploy/geoip.sh into .work (npm, best effort),
// or a synthetic city database from cmd/mkgeo.
func (d *driver) findGeo() error {
	if v := os.Getenv("BENCH_GEOIP"); v != "" {
		d.geo, d.geoSource = v, "BENCH_GEOIP="+v
		return nil
	}
	for _, dir := range []string{filepath.Join(d.root, "data", "geoip"), filepath.Join(d.work, "geo", "geoip")} {
		if m, _ := filepath.Glob(filepath.Join(dir, "*.mmdb")); len(m) > 0 {
			d.geo = m[0]
			d.geoSource = strings.TrimPrefix(m[0], d.root+"/")
			return nil
		}
	}
	logf("geo: no mmdb yet; trying deploy/geoip.sh (npm)")
	cmd := exec.Command("bash", filepath.Join(d.root, "deploy", "geoip.sh"), filepath.Join(d.work, "geo"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := runBounded(cmd, 3*time.Minute); err == nil {
		if m, _ := filepath.Glob(filepath.Join(d.work, "geo", "geoip", "*.mmdb")); len(m) > 0 {
			d.geo = m[0]
			d.geoSource = strings.TrimPrefix(m[0], d.root+"/") + " (deploy/geoip.sh)"
			return nil
		}
	}
	out := filepath.Join(d.work, "geo", "bench-city.mmdb")
	logf("geo: deploy/geoip.sh failed; generating a synthetic city database")
	cmd = exec.Command(d.bin.mkgeo, "-o", out)
	cmd.Stderr = os.Stderr
	if err := runBounded(cmd, 2*time.Minute); err != nil {
		return fmt.Errorf("mkgeo: %w", err)
	}
	d.geo = out
	d.geoSource = strings.TrimPrefix(out, d.root+"/") + " (synthetic, bench/cmd/mkgeo)"
	return nil
}

func runBounded(cmd *exec.Cmd, timeout time.Duration) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("timed out after %s", timeout)
	}
}
