package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// scenario is one line of the report.
type scenario struct {
	name  string
	group string // closed, open, c2w, ingest, drain
	conns int
	rate  float64
	what  string
	// base and nginxBase name the baseline scenarios a closed-loop
	// scenario's throughput is divided by.
	base, nginxBase string
	// na, when set, says why the scenario cannot run in this build and what
	// it needs.
	na  string
	run func(tag string) (map[string]float64, []string, error)
}

type scenResult struct {
	sc     *scenario
	rounds []map[string]float64
	errs   []string
	cmds   []string
}

const (
	benchUA  = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
	benchXFF = "81.2.69.160"
)

func (d *driver) scenarios() []*scenario {
	var out []*scenario
	add := func(s *scenario) { out = append(out, s) }
	captureNA := func(mode string) string {
		if d.capture.flag {
			return ""
		}
		return "this build has no `--capture` flag; needs `clickedge serve --capture " + mode + "`"
	}
	captureFlags := func(mode string) []string {
		f := []string{"--capture", mode}
		if mode == "async" && d.capture.commitInterval {
			f = append(f, "--commit-interval", "5ms")
		}
		return f
	}
	for _, c := range []int{64, 256} {
		base := fmt.Sprintf("fasthttp-302/c%d", c)
		nbase := fmt.Sprintf("nginx-302/c%d", c)
		add(&scenario{name: base, group: "closed", conns: c, base: base, nginxBase: nbase,
			what: "bare fasthttp 302 + Location + Set-Cookie (bench/baseline)",
			run:  d.closedRun(d.startBaseline, c, false)})
		ng := &scenario{name: nbase, group: "closed", conns: c, base: base, nginxBase: nbase,
			what: "nginx `return 302` + the same headers, 1 worker",
			run:  d.closedRun(d.startNginx, c, false)}
		if d.nginx == "" {
			ng.na = "nginx is not installed (bench/run.sh installs nginx-light where apt-get works)"
		}
		add(ng)
		add(&scenario{name: fmt.Sprintf("redirect-enrich-nocapture/c%d", c), group: "closed", conns: c, base: base, nginxBase: nbase,
			what: "clickedge serve: click id + UA + geo + cookie, no capture", na: captureNA("none"),
			run: d.closedRun(func(tag string) (*server, error) { return d.startServe(tag, false, captureFlags("none")...) }, c, true)})
		add(&scenario{name: fmt.Sprintf("redirect-async-capture/c%d", c), group: "closed", conns: c, base: base, nginxBase: nbase,
			what: "clickedge serve: 302 before the outbox commit (commit interval ≤ 5 ms)", na: captureNA("async"),
			run: d.closedRun(func(tag string) (*server, error) { return d.startServe(tag, false, captureFlags("async")...) }, c, true)})
		add(&scenario{name: fmt.Sprintf("redirect-durable/c%d", c), group: "closed", conns: c, base: base, nginxBase: nbase,
			what: "clickedge serve --demo: 302 after the bbolt commit; embedded NATS + worker in the same process and core",
			run:  d.closedRun(func(tag string) (*server, error) { return d.startServe(tag, false) }, c, true)})
		add(&scenario{name: fmt.Sprintf("redirect-durable-split/c%d", c), group: "closed", conns: c, base: base, nginxBase: nbase,
			what: "clickedge edge alone on the server core; nats-server and clickedge worker as separate processes on the load core",
			run:  d.closedRun(func(tag string) (*server, error) { return d.startSplit(tag) }, c, true)})
	}

	// Open loop at a fixed rate.
	redirectArgs := func(s *server) ([]string, error) {
		return []string{"-url", "http://" + s.addr + "/r/alice?utm_source=bench&sub1={{seq}}",
			"-H", "User-Agent: " + benchUA, "-H", "X-Forwarded-For: " + benchXFF, "-expect", "302"}, nil
	}
	add(&scenario{name: "fasthttp-302/open", group: "open", conns: 64, rate: d.redirectRate,
		what: "bare fasthttp 302 at a fixed rate",
		run:  d.openRun(d.startBaseline, d.redirectRate, 64, redirectArgs, "")})
	add(&scenario{name: "redirect-durable/open", group: "open", conns: 64, rate: d.redirectRate,
		what: "clickedge serve, durable redirect at a fixed rate",
		run:  d.openRun(d.serveOnly, d.redirectRate, 64, redirectArgs, "clicks")})
	add(&scenario{name: "pixel/open", group: "open", conns: 64, rate: d.pixelRate,
		what: "GET /pixel.gif (Affilync image pixel, afk_cid cookie of a real click), unique order_id",
		run: d.openRun(d.serveOnly, d.pixelRate, 64, func(s *server) ([]string, error) {
			cid, err := clickID(s.addr, "/r/carol-afk", "afk_cid")
			if err != nil {
				return nil, err
			}
			return []string{"-url", "http://" + s.addr + "/pixel.gif?pid=px_demo&order_id=px-{{id}}&amount=10.00&currency=USD",
				"-H", "User-Agent: " + benchUA, "-H", "X-Forwarded-For: " + benchXFF,
				"-H", "Cookie: afk_cid=" + cid, "-H", "Referer: https://example.com/thanks", "-expect", "200"}, nil
		}, "pixel")})
	s2s := func(path, body, clickPath, param string) func(s *server) ([]string, error) {
		return func(s *server) ([]string, error) {
			b := body
			if clickPath != "" {
				cid, err := clickID(s.addr, clickPath, param)
				if err != nil {
					return nil, err
				}
				b = strings.ReplaceAll(b, "CLICKID", cid)
			}
			return []string{"-url", "http://" + s.addr + path, "-method", "POST",
				"-H", "Authorization: Bearer " + d.apiKey, "-H", "Content-Type: application/json",
				"-body", b, "-expect", "2xx"}, nil
		}
	}
	add(&scenario{name: "s2s-partnac/open", group: "open", conns: 256, rate: d.s2sRate,
		what: "POST /v1/tracking/conversions (Partnac), unique unique_id, session_id = a real click id",
		run: d.openRun(d.serveOnly, d.s2sRate, 256, s2s("/v1/tracking/conversions",
			`{"partnership_code":"ALICE10","unique_id":"pc-{{id}}","conversion_type":"sale","amount":"10.00","session_id":"CLICKID","metadata":{"currency":"USD"}}`,
			"/r/alice", "click_id"), "")})
	add(&scenario{name: "s2s-affilync/open", group: "open", conns: 256, rate: d.s2sRate,
		what: "POST /api/conversions/track (Affilync), unique order_id, click_id = a real afk_cid",
		run: d.openRun(d.serveOnly, d.s2sRate, 256, s2s("/api/conversions/track",
			`{"click_id":"CLICKID","order_id":"af-{{id}}","amount":"10.00","currency":"USD"}`,
			"/r/carol-afk", "afk_cid"), "")})
	add(&scenario{name: "s2s-partnero/open", group: "open", conns: 256, rate: d.s2sRate,
		what: "POST /v1/transactions (Partnero), unique key, customer created on the fly for partner ALICE10",
		run: d.openRun(d.serveOnly, d.s2sRate, 256, s2s("/v1/transactions",
			`{"customer":{"key":"cu-{{id}}","partner":{"key":"ALICE10"}},"key":"tx-{{id}}","amount":"10.00","action":"sale","options":{"create_customer":true}}`,
			"", ""), "")})

	for _, r := range d.c2wRates {
		add(&scenario{name: fmt.Sprintf("click-to-worker/%g", r), group: "c2w", conns: 64, rate: r,
			what: "302 received → click committed to the worker store (its JetStream ack seen), clickedge serve",
			run:  d.c2wRun(r)})
	}
	add(&scenario{name: fmt.Sprintf("worker-ingest/%s", count(d.fillN)), group: "ingest",
		what: fmt.Sprintf("%s clicks waiting in the stream, worker started: clicks stored per second", count(d.fillN)),
		run:  d.ingestRun})
	add(&scenario{name: fmt.Sprintf("outbox-drain/%s", count(d.fillN)), group: "drain",
		what: fmt.Sprintf("%s clicks buffered in the edge outbox with nats-server down, then nats-server restarted", count(d.fillN)),
		run:  d.drainRun})
	return out
}

func count(n int) string {
	switch {
	case n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

func (d *driver) serveOnly(tag string) (*server, error) { return d.startServe(tag, false) }

// --- load generators ---

type loadOut struct {
	requests              int64
	rps, p50, p99, p999   float64
	errors                float64
	extra                 map[string]float64
	cmd                   string
	statusLine, errorLine string
}

// runWrk runs wrk closed-loop on the load core and parses redirect.lua's
// summary.
func (d *driver) runWrk(tag string, conns int, dur time.Duration, addr, path string) (*loadOut, error) {
	secs := max(1, int(dur.Round(time.Second)/time.Second))
	lua := filepath.Join(d.benchDir, "wrk", "redirect.lua")
	p, err := start("wrk", d.loadCPU, d.logPath(tag, "wrk"), d.wrk,
		"-t1", "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(secs)+"s", "--timeout", "10s",
		"-s", lua, "http://"+addr, "--", path)
	if err != nil {
		return nil, err
	}
	if err := p.wait(dur + time.Minute); err != nil {
		return nil, fmt.Errorf("wrk: %w (see %s)", err, p.logPath)
	}
	raw, _ := os.ReadFile(p.logPath)
	i := strings.Index(string(raw), "WRKJSON ")
	if i < 0 {
		return nil, fmt.Errorf("wrk printed no summary (see %s)", p.logPath)
	}
	line := string(raw[i+len("WRKJSON "):])
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	var w struct {
		Requests   int64 `json:"requests"`
		DurationUS int64 `json:"duration_us"`
		Errors     map[string]int64
		Latency    map[string]float64 `json:"latency_us"`
	}
	if err := json.Unmarshal([]byte(line), &w); err != nil {
		return nil, fmt.Errorf("wrk summary %q: %w", line, err)
	}
	lo := &loadOut{requests: w.Requests, p50: w.Latency["p50"], p99: w.Latency["p99"], p999: w.Latency["p999"],
		cmd: strings.Replace(p.cmdline(), addr, "127.0.0.1:PORT", 1), extra: map[string]float64{}}
	if w.DurationUS > 0 {
		lo.rps = float64(w.Requests) / (float64(w.DurationUS) / 1e6)
	}
	var kinds []string
	for k, v := range w.Errors {
		lo.errors += float64(v)
		if v > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, v))
		}
	}
	lo.errorLine = strings.Join(kinds, ", ")
	return lo, nil
}

// lgResult is the part of loadgen's JSON the driver reads.
type lgResult struct {
	Requests       int64            `json:"requests"`
	Errors         int64            `json:"errors"`
	ErrorKinds     map[string]int64 `json:"error_kinds"`
	Status         map[string]int64 `json:"status"`
	AchievedRPS    float64          `json:"achieved_rps"`
	BehindSchedule float64          `json:"behind_schedule"`
	Latency        lgPct            `json:"latency_us"`
	ServiceLatency lgPct            `json:"service_latency_us"`
	PacingLateP99  float64          `json:"pacing_late_p99_us"`
	Watch          *struct {
		Tracked  int   `json:"tracked"`
		InStream int   `json:"in_stream"`
		Stored   int   `json:"stored"`
		ToStream lgPct `json:"to_stream_us"`
		ToWorker lgPct `json:"to_worker_us"`
	} `json:"watch"`
}

type lgPct struct {
	P50, P90, P99, P999, Max, Mean float64
}

func (p *lgPct) UnmarshalJSON(b []byte) error {
	var m map[string]float64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	p.P50, p.P90, p.P99, p.P999, p.Max, p.Mean = m["p50"], m["p90"], m["p99"], m["p999"], m["max"], m["mean"]
	return nil
}

// runLoadgen runs bench/loadgen on the load core; timeout bounds it.
func (d *driver) runLoadgen(tag string, timeout time.Duration, args ...string) (*lgResult, string, error) {
	out := filepath.Join(d.work, "logs", tag+".loadgen.json")
	_ = os.Remove(out)
	args = append(args, "-json", out, "-q")
	p, err := start("loadgen", d.loadCPU, d.logPath(tag, "loadgen"), d.bin.loadgen, args...)
	if err != nil {
		return nil, "", err
	}
	if err := p.wait(timeout); err != nil {
		return nil, "", fmt.Errorf("loadgen: %w (see %s)", err, p.logPath)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		return nil, "", fmt.Errorf("loadgen wrote no result (see %s)", p.logPath)
	}
	var r lgResult
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, "", fmt.Errorf("loadgen result %s: %w", out, err)
	}
	return &r, p.cmdline(), nil
}

func lgToLoad(r *lgResult, cmd string) *loadOut {
	lo := &loadOut{requests: r.Requests, rps: r.AchievedRPS, p50: r.Latency.P50, p99: r.Latency.P99, p999: r.Latency.P999,
		errors: float64(r.Errors), cmd: cmd, extra: map[string]float64{
			"behind_pct": r.BehindSchedule * 100,
			"svc_p99":    r.ServiceLatency.P99,
		}}
	var st []string
	for k, v := range r.Status {
		st = append(st, fmt.Sprintf("%s×%d", k, v))
		if r.Requests > 0 {
			lo.extra["status_"+k+"_pct"] = float64(v) / float64(r.Requests) * 100
		}
	}
	lo.statusLine = strings.Join(st, " ")
	var ek []string
	for k, v := range r.ErrorKinds {
		ek = append(ek, fmt.Sprintf("%s %d", k, v))
	}
	lo.errorLine = strings.Join(ek, ", ")
	return lo
}

// --- measuring ---

// measure runs load against s and adds the server side: CPU per request
// (utime+stime from /proc of the server process and its children), the
// largest RSS seen, VmHWM, and the largest Go heap in use its /metrics
// reported, sampled once a second.
func (d *driver) measure(s *server, load func() (*loadOut, error)) (map[string]float64, *loadOut, error) {
	pids := []int{s.main.pid}
	for _, o := range s.others {
		pids = append(pids, o.pid)
	}
	var addrs []string
	if s.metrics != "" {
		addrs = append(addrs, s.metrics)
	}
	addrs = append(addrs, s.otherMetrics...)
	cpu0 := make([]float64, len(pids))
	for i, p := range pids {
		cpu0[i] = cpuSeconds(p)
	}
	t0 := time.Now()
	smp := startSampler(pids, addrs)
	lo, err := load()
	elapsed := time.Since(t0).Seconds()
	cpu1 := make([]float64, len(pids))
	for i, p := range pids {
		cpu1[i] = cpuSeconds(p)
	}
	rss, heap := smp.finish()
	if err != nil {
		return nil, nil, err
	}
	v := map[string]float64{"rps": lo.rps, "p50": lo.p50, "p99": lo.p99, "p999": lo.p999,
		"errors": lo.errors, "requests": float64(lo.requests)}
	mainCPU := cpu1[0] - cpu0[0]
	if lo.requests > 0 {
		v["cpu_us"] = mainCPU / float64(lo.requests) * 1e6
	}
	v["cpu_pct"] = mainCPU / elapsed * 100
	v["rss_mb"] = rss[s.main.pid]
	_, v["hwm_mb"] = memMiB(s.main.pid)
	if s.metrics != "" {
		v["heap_mb"] = heap[s.metrics]
	}
	if len(pids) > 1 {
		var tot, rt float64
		for i := range pids {
			tot += cpu1[i] - cpu0[i]
			rt += rss[pids[i]]
		}
		if lo.requests > 0 {
			v["cpu_total_us"] = tot / float64(lo.requests) * 1e6
		}
		v["rss_total_mb"] = rt
	}
	for k, x := range lo.extra {
		v[k] = x
	}
	return v, lo, nil
}

// probeRedirect sends one GET (keep-alive, as the load does) and checks the
// answer is a 302 with Location and Set-Cookie; it returns the response's
// size in bytes (status line, headers, body) and its Location.
func probeRedirect(addr, path string) (int, string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nX-Forwarded-For: %s\r\n\r\n", path, addr, benchUA, benchXFF)
	br := bufio.NewReader(c)
	size, clen := 0, 0
	var status, loc string
	cookie := false
	for i := 0; i < 100; i++ {
		line, err := br.ReadString('\n')
		if err != nil {
			return 0, "", fmt.Errorf("probe %s%s: %w", addr, path, err)
		}
		size += len(line)
		l := strings.TrimRight(line, "\r\n")
		if i == 0 {
			status = l
			continue
		}
		if l == "" {
			break
		}
		k, val, _ := strings.Cut(l, ":")
		val = strings.TrimSpace(val)
		switch strings.ToLower(k) {
		case "content-length":
			clen, _ = strconv.Atoi(val)
		case "location":
			loc = val
		case "set-cookie":
			cookie = true
		}
	}
	if clen > 0 {
		n, _ := io.CopyN(io.Discard, br, int64(clen))
		size += int(n)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 302") || loc == "" || !cookie {
		return 0, "", fmt.Errorf("probe %s%s: want a 302 with Location and Set-Cookie, got %q (Location %q, cookie %v)", addr, path, status, loc, cookie)
	}
	return size, loc, nil
}

// clickID follows a demo link once and returns the click id the Location
// carries in param.
func clickID(addr, path, param string) (string, error) {
	_, loc, err := probeRedirect(addr, path)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", err
	}
	id := u.Query().Get(param)
	if id == "" {
		return "", fmt.Errorf("%s: Location %q has no %s", path, loc, param)
	}
	return id, nil
}

// --- scenario runners ---

func (d *driver) closedRun(startSrv func(tag string) (*server, error), conns int, clickedge bool) func(string) (map[string]float64, []string, error) {
	const path = "/r/alice"
	return func(tag string) (map[string]float64, []string, error) {
		s, err := startSrv(tag)
		if err != nil {
			return nil, nil, err
		}
		defer s.stop()
		size, _, err := probeRedirect(s.addr, path)
		if err != nil {
			return nil, nil, err
		}
		if _, err := d.runWrk(tag+".warm", conns, d.warm, s.addr, path); err != nil {
			return nil, nil, err
		}
		var before metrics
		if clickedge {
			before, _ = scrape(s.metrics)
		}
		v, lo, err := d.measure(s, func() (*loadOut, error) { return d.runWrk(tag, conns, d.dur, s.addr, path) })
		if err != nil {
			return nil, nil, err
		}
		v["resp_bytes"] = float64(size)
		if clickedge && before != nil && lo.requests > 0 {
			if after, err := scrape(s.metrics); err == nil {
				v["recorded_pct"] = (captured(after) - captured(before)) / float64(lo.requests) * 100
				v["dropped"] = after.sum("clickedge_clicks_dropped_total") - before.sum("clickedge_clicks_dropped_total")
			}
		}
		return v, append(s.cmds, lo.cmd), nil
	}
}

// openRun: warm up at the rate, then measure at the rate. check names a
// server-side counter to verify ("clicks", "pixel").
func (d *driver) openRun(startSrv func(tag string) (*server, error), rate float64, conns int,
	argsFor func(*server) ([]string, error), check string) func(string) (map[string]float64, []string, error) {
	return func(tag string) (map[string]float64, []string, error) {
		s, err := startSrv(tag)
		if err != nil {
			return nil, nil, err
		}
		defer s.stop()
		args, err := argsFor(s)
		if err != nil {
			return nil, nil, err
		}
		common := []string{"-rate", strconv.FormatFloat(rate, 'f', -1, 64), "-c", strconv.Itoa(conns), "-timeout", "10s"}
		warm := append(append(append([]string{}, common...), "-d", d.warm.String()), args...)
		if _, _, err := d.runLoadgen(tag+".warm", d.warm+time.Minute, warm...); err != nil {
			return nil, nil, err
		}
		var before metrics
		if s.metrics != "" {
			before, _ = scrape(s.metrics)
		}
		meas := append(append(append([]string{}, common...), "-d", d.dur.String()), args...)
		v, lo, err := d.measure(s, func() (*loadOut, error) {
			r, cmd, err := d.runLoadgen(tag, d.dur+time.Minute, meas...)
			if err != nil {
				return nil, err
			}
			return lgToLoad(r, strings.Replace(cmd, s.addr, "127.0.0.1:PORT", 1)), nil
		})
		if err != nil {
			return nil, nil, err
		}
		v["target_rate"] = rate
		if before != nil && lo.requests > 0 {
			if after, err := scrape(s.metrics); err == nil {
				switch check {
				case "clicks":
					v["recorded_pct"] = (captured(after) - captured(before)) / float64(lo.requests) * 100
				case "pixel":
					rec := after.sum(`clickedge_edge_pixel_requests_total{outcome="recorded"}`) - before.sum(`clickedge_edge_pixel_requests_total{outcome="recorded"}`)
					v["recorded_pct"] = rec / float64(lo.requests) * 100
				}
			}
		}
		statusNotes[tag] = lo.statusLine
		if lo.errorLine != "" {
			errorNotes[tag] = lo.errorLine
		}
		return v, append(s.cmds, redactKey(lo.cmd, d.apiKey)), nil
	}
}

// captured is the clicks an edge minted and handed to its outbox: every
// outcome of clickedge_clicks_total (recorded, bot, non_unique, orphan) but
// dropped and not_captured (--capture none records nothing).
func captured(m metrics) float64 {
	return m.sum("clickedge_clicks_total") - m.sum(`clickedge_clicks_total{outcome="dropped"}`) -
		m.sum(`clickedge_clicks_total{outcome="not_captured"}`)
}

var (
	statusNotes = map[string]string{}
	errorNotes  = map[string]string{}
)

func redactKey(s, key string) string { return strings.ReplaceAll(s, key, "$KEY") }

// c2wRun measures click → worker store latency at a fixed rate against
// clickedge serve (its embedded NATS listening on loopback for the watcher).
func (d *driver) c2wRun(rate float64) func(string) (map[string]float64, []string, error) {
	return func(tag string) (map[string]float64, []string, error) {
		s, err := d.startServe(tag, true)
		if err != nil {
			return nil, nil, err
		}
		defer s.stop()
		args := []string{"-url", "http://" + s.addr + "/r/alice?utm_source=bench&sub1={{seq}}",
			"-H", "User-Agent: " + benchUA, "-H", "X-Forwarded-For: " + benchXFF, "-expect", "302",
			"-rate", strconv.FormatFloat(rate, 'f', -1, 64), "-c", "64", "-timeout", "10s"}
		if _, _, err := d.runLoadgen(tag+".warm", d.warm+time.Minute, append(append([]string{}, args...), "-d", d.warm.String())...); err != nil {
			return nil, nil, err
		}
		meas := append(append([]string{}, args...), "-d", d.dur.String(), "-watch-nats", s.natsURL, "-watch-wait", "15s")
		var r *lgResult
		v, lo, err := d.measure(s, func() (*loadOut, error) {
			var cmd string
			var err error
			r, cmd, err = d.runLoadgen(tag, d.dur+2*time.Minute, meas...)
			if err != nil {
				return nil, err
			}
			cmd = strings.Replace(cmd, s.addr, "127.0.0.1:PORT", 1)
			cmd = strings.Replace(cmd, s.natsURL, "nats://127.0.0.1:NATSPORT", 1)
			return lgToLoad(r, cmd), nil
		})
		if err != nil {
			return nil, nil, err
		}
		v["target_rate"] = rate
		if w := r.Watch; w != nil && w.Tracked > 0 {
			v["c2w_tracked"] = float64(w.Tracked)
			v["c2w_stored_pct"] = float64(w.Stored) / float64(w.Tracked) * 100
			v["c2w_p50"], v["c2w_p99"], v["c2w_p999"], v["c2w_max"] = w.ToWorker.P50, w.ToWorker.P99, w.ToWorker.P999, w.ToWorker.Max
			v["c2s_p50"], v["c2s_p99"] = w.ToStream.P50, w.ToStream.P99
		}
		return v, append(s.cmds, lo.cmd), nil
	}
}

// fillClicks sends n redirects closed-loop (64 connections) to an edge and
// returns the achieved rate.
func (d *driver) fillClicks(tag, addr string, n int) (float64, string, error) {
	bound := 60*time.Second + time.Duration(n/500)*time.Second
	r, cmd, err := d.runLoadgen(tag, bound+time.Minute,
		"-url", "http://"+addr+"/r/alice?utm_source=bench&sub1={{seq}}",
		"-H", "User-Agent: "+benchUA, "-H", "X-Forwarded-For: "+benchXFF, "-expect", "302",
		"-c", "64", "-n", strconv.Itoa(n), "-d", bound.String(), "-timeout", "10s")
	if err != nil {
		return 0, "", err
	}
	if r.Errors > 0 {
		return 0, "", fmt.Errorf("fill: %d of %d requests failed", r.Errors, r.Requests)
	}
	return r.AchievedRPS, strings.Replace(cmd, addr, "127.0.0.1:PORT", 1), nil
}

// ingestRun: fill the click stream with the worker stopped, then start the
// worker and time how fast it stores them (its clicks_consumed counter).
func (d *driver) ingestRun(tag string) (map[string]float64, []string, error) {
	dir := d.runDir(tag)
	defer func() {
		if !keepData {
			_ = os.RemoveAll(dir)
		}
	}()
	n, err := d.startNATS(tag, dir, d.loadCPU)
	if err != nil {
		return nil, nil, err
	}
	defer n.p.stop(syscall.SIGTERM, 8*time.Second)
	wdir := filepath.Join(dir, "worker")
	// A first worker creates the streams, the durable consumer and the catalog, then stops.
	w, _, err := d.startWorker(tag, "worker-setup", wdir, n.url(), d.serverCPU)
	if err != nil {
		return nil, nil, err
	}
	w.stop(syscall.SIGTERM, 10*time.Second)
	e, es, err := d.startEdge(tag, filepath.Join(dir, "edge"), n.url())
	if err != nil {
		return nil, nil, err
	}
	defer e.stop(syscall.SIGTERM, 8*time.Second)
	fillRPS, fillCmd, err := d.fillClicks(tag+".fill", es.addr, d.fillN)
	if err != nil {
		return nil, nil, err
	}
	var recorded float64
	ctx := context.Background()
	err = pollUntil(ctx, 100*time.Millisecond, time.Minute+time.Duration(d.fillN/2000)*time.Second, func() (bool, error) {
		m, err := scrape(es.metrics)
		if err != nil {
			return false, nil
		}
		recorded = captured(m)
		return m.sum("clickedge_outbox_rows") == 0 && m.sum("clickedge_outbox_published_total") >= recorded, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("edge did not ship its outbox: %w", err)
	}
	e.stop(syscall.SIGTERM, 8*time.Second)

	// The measured worker: poll its counter from the moment it listens.
	tStart := time.Now()
	args := []string{"worker", "--demo", "--demo-api-key", d.apiKey, "--data", wdir, "--nats", n.url(),
		"--secret", d.secret, "--metrics-addr", "127.0.0.1:0", "--admin-listen", "", "--log-format", "json"}
	w2, err := start("clickedge-worker", d.serverCPU, d.logPath(tag, "worker"), d.bin.clickedge, args...)
	if err != nil {
		return nil, nil, err
	}
	defer w2.stop(syscall.SIGTERM, 8*time.Second)
	wm, err := waitLogJSON(w2, "metrics listening", "addr", 30*time.Second)
	if err != nil {
		return nil, nil, err
	}
	var tFirst, tDone time.Time
	var cFirst, heap float64
	err = pollUntil(ctx, 25*time.Millisecond, time.Minute+time.Duration(d.fillN/5000)*time.Second, func() (bool, error) {
		m, err := scrape(wm)
		if err != nil {
			return false, nil
		}
		now := time.Now()
		c := m.sum("clickedge_worker_clicks_consumed_total")
		heap = max(heap, m.sum("go_memstats_heap_inuse_bytes")/(1<<20))
		if c > 0 && tFirst.IsZero() {
			tFirst, cFirst = now, c
		}
		if c >= recorded {
			tDone = now
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("worker did not store %.0f clicks: %w", recorded, err)
	}
	cpu := cpuSeconds(w2.pid)
	rss, hwm := memMiB(w2.pid)
	v := map[string]float64{"clicks": recorded, "fill_rps": fillRPS,
		"ingest_from_start_rps": recorded / tDone.Sub(tStart).Seconds(),
		"cpu_us":                cpu / recorded * 1e6, "rss_mb": rss, "hwm_mb": hwm, "heap_mb": heap}
	if span := tDone.Sub(tFirst).Seconds(); span > 0 && recorded > cFirst {
		v["rps"] = (recorded - cFirst) / span
	} else {
		v["rps"] = v["ingest_from_start_rps"]
	}
	cmds := []string{n.p.cmdline(), "(stopped after setup) " + shellJoin(w.argv), e.cmdline(), fillCmd, w2.cmdline()}
	return v, cmds, nil
}

// drainRun: buffer clicks in the edge's outbox with nats-server down, then
// restart nats-server and time the drain (clickedge_outbox_rows → 0).
func (d *driver) drainRun(tag string) (map[string]float64, []string, error) {
	dir := d.runDir(tag)
	defer func() {
		if !keepData {
			_ = os.RemoveAll(dir)
		}
	}()
	n, err := d.startNATS(tag, dir, d.loadCPU)
	if err != nil {
		return nil, nil, err
	}
	natsCmd := n.p.cmdline()
	defer func() { n.p.stop(syscall.SIGTERM, 8*time.Second) }()
	w, _, err := d.startWorker(tag, "worker-setup", filepath.Join(dir, "worker"), n.url(), d.serverCPU)
	if err != nil {
		return nil, nil, err
	}
	w.stop(syscall.SIGTERM, 10*time.Second)
	e, es, err := d.startEdge(tag, filepath.Join(dir, "edge"), n.url())
	if err != nil {
		return nil, nil, err
	}
	defer e.stop(syscall.SIGTERM, 8*time.Second)
	n.p.stop(syscall.SIGTERM, 10*time.Second)
	ctx := context.Background()
	if err := pollUntil(ctx, 100*time.Millisecond, 20*time.Second, func() (bool, error) {
		m, err := scrape(es.metrics)
		return err == nil && m.sum("clickedge_nats_connected") == 0, nil
	}); err != nil {
		return nil, nil, fmt.Errorf("edge still connected after nats-server stopped: %w", err)
	}
	fillRPS, fillCmd, err := d.fillClicks(tag+".fill", es.addr, d.fillN)
	if err != nil {
		return nil, nil, err
	}
	m, err := scrape(es.metrics)
	if err != nil {
		return nil, nil, err
	}
	rows0, bytes0 := m.sum("clickedge_outbox_rows"), m.sum("clickedge_outbox_bytes")
	if rows0 < float64(d.fillN)*0.99 {
		return nil, nil, fmt.Errorf("outbox holds %.0f rows after %d clicks with NATS down", rows0, d.fillN)
	}
	cpu0 := cpuSeconds(e.pid)
	tRestart := time.Now()
	if err := d.restartNATS(n, "nats-restart"); err != nil {
		return nil, nil, err
	}
	t0 := time.Now()
	var tFirst, tZero time.Time
	var heap float64
	err = pollUntil(ctx, 25*time.Millisecond, time.Minute+time.Duration(d.fillN/2000)*time.Second, func() (bool, error) {
		m, err := scrape(es.metrics)
		if err != nil {
			return false, nil
		}
		now := time.Now()
		rows := m.sum("clickedge_outbox_rows")
		heap = max(heap, m.sum("go_memstats_heap_inuse_bytes")/(1<<20))
		if rows < rows0 && tFirst.IsZero() {
			tFirst = now
		}
		if rows == 0 {
			tZero = now
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("outbox did not drain: %w", err)
	}
	cpu := cpuSeconds(e.pid) - cpu0
	rss, hwm := memMiB(e.pid)
	v := map[string]float64{"clicks": rows0, "outbox_mb": bytes0 / (1 << 20), "fill_rps": fillRPS,
		"nats_restart_s": t0.Sub(tRestart).Seconds(),
		"rps":            rows0 / tZero.Sub(t0).Seconds(),
		"cpu_us":         cpu / rows0 * 1e6, "rss_mb": rss, "hwm_mb": hwm, "heap_mb": heap}
	if !tFirst.IsZero() && tZero.After(tFirst) {
		v["drain_active_rps"] = rows0 / tZero.Sub(tFirst).Seconds()
	}
	if fillRPS > 0 {
		v["drain_over_fill"] = v["rps"] / fillRPS
	}
	cmds := []string{natsCmd, "(stopped after setup) " + shellJoin(w.argv), e.cmdline(),
		"# nats-server stopped (SIGTERM), then:", fillCmd, "# nats-server restarted with the same store: " + natsCmd}
	return v, cmds, nil
}
