package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// agg is the median and spread of one figure over the rounds.
type agg struct {
	med, min, max float64
	n             int
}

func (r *scenResult) agg(key string) (agg, bool) {
	var xs []float64
	for _, v := range r.rounds {
		if x, ok := v[key]; ok && !math.IsNaN(x) && !math.IsInf(x, 0) {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return agg{}, false
	}
	sort.Float64s(xs)
	m := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		m = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return agg{med: m, min: xs[0], max: xs[len(xs)-1], n: len(xs)}, true
}

// fmtAgg formats a figure as "median [min–max]" (just the median for one round).
func (r *scenResult) fmtAgg(key string, f func(float64) string) string {
	a, ok := r.agg(key)
	if !ok {
		return "—"
	}
	if a.n == 1 || f(a.min) == f(a.max) {
		return f(a.med)
	}
	return fmt.Sprintf("%s [%s–%s]", f(a.med), f(a.min), f(a.max))
}

func thousands(x float64) string {
	n := int64(math.Round(x))
	neg := n < 0
	if neg {
		n = -n
	}
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func ms(us float64) string {
	switch {
	case us >= 100_000:
		return fmt.Sprintf("%.0f ms", us/1000)
	case us >= 10_000:
		return fmt.Sprintf("%.1f ms", us/1000)
	}
	return fmt.Sprintf("%.2f ms", us/1000)
}
func f1(x float64) string  { return fmt.Sprintf("%.1f", x) }
func f2(x float64) string  { return fmt.Sprintf("%.2f", x) }
func pct(x float64) string { return fmt.Sprintf("%.1f %%", x) }

func summary(sc *scenario, v map[string]float64) string {
	switch sc.group {
	case "ingest":
		return fmt.Sprintf("ingest %s clicks/s (fill %s/s), worker %.1f µs/click", thousands(v["rps"]), thousands(v["fill_rps"]), v["cpu_us"])
	case "drain":
		return fmt.Sprintf("drain %s rows/s (fill %s/s, ×%.1f), edge %.1f µs/row", thousands(v["rps"]), thousands(v["fill_rps"]), v["drain_over_fill"], v["cpu_us"])
	case "c2w":
		return fmt.Sprintf("%s req/s, click→worker p50 %s p99 %s p99.9 %s (stored %.1f %%)", thousands(v["rps"]),
			ms(v["c2w_p50"]), ms(v["c2w_p99"]), ms(v["c2w_p999"]), v["c2w_stored_pct"])
	}
	return fmt.Sprintf("%s req/s, p50 %s p99 %s p99.9 %s, %.1f µs CPU/req, RSS %.1f MiB, heap %.1f MiB, errors %.0f",
		thousands(v["rps"]), ms(v["p50"]), ms(v["p99"]), ms(v["p999"]), v["cpu_us"], v["rss_mb"], v["heap_mb"], v["errors"])
}

func cmdOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "?"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "?"
}

func memTotal() string {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				var kb float64
				fmt.Sscan(f[1], &kb)
				return fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return "?"
}

func (d *driver) writeReport(results []*scenResult) error {
	by := map[string]*scenResult{}
	for _, r := range results {
		by[r.sc.name] = r
	}
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	mode := "full (`make bench`)"
	if d.quick {
		mode = "QUICK (BENCH_QUICK=1): one short round per scenario, for checking the harness; not figures to publish"
	}
	w("# clickedge benchmark results\n\n")
	w("Written by `bench/run.sh` (`make bench`) → `bench/cmd/benchrun` on %s, in %s.\n",
		d.started.UTC().Format("2006-01-02 15:04 MST"), time.Since(d.started).Round(time.Second))
	w("Mode: %s. %d round(s) per scenario, %s measured per run after a %s warm-up; rounds are interleaved (each round runs every scenario back to back), ",
		mode, d.rounds, d.dur, d.warm)
	w("and every figure is the median of the rounds with the min–max spread in brackets. Raw figures of every round: `bench/.work/results.json`.\n\n")

	w("## Machine\n\n")
	w("| | |\n|---|---|\n")
	w("| cores | %d (`nproc`) |\n", runtime.NumCPU())
	w("| CPU | %s |\n", cpuModel())
	w("| memory | %s |\n", memTotal())
	w("| kernel | %s |\n", strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")))
	w("| Go | %s |\n", cmdOutput("go", "version"))
	w("| clickedge | %s |\n", cmdOutput(d.bin.clickedge, "version"))
	w("| wrk | %s |\n", cmdOutput(d.wrk, "-v"))
	if d.nginx != "" {
		w("| nginx | %s |\n", cmdOutput(d.nginx, "-v"))
	} else {
		w("| nginx | not installed |\n")
	}
	w("| geo database | %s |\n", d.geoSource)
	w("| load average (1, 5, 15 min) | at start %s; at end %s |\n", d.loadStart, d.loadEnd)
	if d.serverCPU != "" {
		w("| pinning | servers on core %s (`taskset -c %s`), wrk and loadgen on core %s (`taskset -c %s`) |\n\n", d.serverCPU, d.serverCPU, d.loadCPU, d.loadCPU)
	} else {
		w("| pinning | none (taskset missing or one core) |\n\n")
	}
	if la := firstField(d.loadStart); la > 0.5 {
		w("> The load average was %.2f when the run started: something else was using this machine, so the figures are noisy; compare ratios measured in the same round rather than absolute rates.\n\n", la)
	}

	// --- closed loop ---
	w("## Redirects, closed loop (wrk -t1, pinned)\n\n")
	w("`wrk -t1 -cN` with `bench/wrk/redirect.lua` (128 prepared requests rotating 8 browser user agents, 16 public client addresses in `X-Forwarded-For`, referrers and `sub1`). ")
	w("Ratios divide the median req/s by the median of the baseline at the same connection count, measured in the same rounds. ")
	w("Server CPU is user+system time of the server process (and its children) over the measured run ÷ requests; RSS is the largest VmRSS sampled each second and VmHWM at the end; heap is the largest `go_memstats_heap_inuse_bytes` of its `/metrics`. ")
	w("\"captured\" is the growth of `clickedge_clicks_total` (every outcome but `dropped`: what reached the outbox) ÷ wrk's request count; it can pass 100 %% by the requests still in flight when wrk stops, which wrk does not count. nginx's 302 carries its own HTML body and a Content-Type (see \"response bytes\"); the fasthttp baseline's response is byte for byte the size of clickedge's.\n\n")
	w("| scenario | req/s | × fasthttp | × nginx | p50 | p99 | p99.9 | server CPU µs/req | server CPU %% | RSS max / HWM MiB | heap MiB | response bytes | errors | captured |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		sc := r.sc
		if sc.group != "closed" || sc.na != "" || !d.selected(sc) {
			continue
		}
		if len(r.rounds) == 0 {
			w("| %s | failed: %s |||||||||||||\n", sc.name, strings.Join(r.errs, "; "))
			continue
		}
		ratio := func(base string) string {
			if base == sc.name {
				return "1.00"
			}
			br := by[base]
			if base == "" || br == nil || br.sc.na != "" {
				return "—"
			}
			a, ok1 := r.agg("rps")
			bb, ok2 := br.agg("rps")
			if !ok1 || !ok2 || bb.med == 0 {
				return "—"
			}
			return fmt.Sprintf("%.2f×", a.med/bb.med)
		}
		rec := r.fmtAgg("recorded_pct", pct)
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s |\n",
			sc.name, r.fmtAgg("rps", thousands), ratio(sc.base), ratio(sc.nginxBase),
			r.fmtAgg("p50", ms), r.fmtAgg("p99", ms), r.fmtAgg("p999", ms),
			r.fmtAgg("cpu_us", f1), r.fmtAgg("cpu_pct", f1), r.fmtAgg("rss_mb", f1), r.fmtAgg("hwm_mb", f1),
			r.fmtAgg("heap_mb", f1), r.fmtAgg("resp_bytes", thousands), r.fmtAgg("errors", thousands), rec)
	}
	w("\n")
	w("In `-split` runs the server figures are the edge process alone; with nats-server and the worker (which run on the load core) the CPU per request is:")
	for _, r := range results {
		if strings.HasPrefix(r.sc.name, "redirect-durable-split") && len(r.rounds) > 0 {
			w(" %s %s µs (RSS of the three %s MiB);", r.sc.name, r.fmtAgg("cpu_total_us", f1), r.fmtAgg("rss_total_mb", f1))
		}
	}
	w("\n\n")

	// --- open loop ---
	w("## Open loop at a fixed rate (bench/loadgen)\n\n")
	w("Requests fall due on a fixed schedule whatever the server does. Latency is counted from the time a request fell due when it was overdue on issue (every connection busy: the coordinated-omission correction), and from its send otherwise (so the generator's ≈1 ms timer slack is not charged to the server); \"behind\" is the share of overdue requests, \"svc p99\" the uncorrected send → response p99. ")
	w("An achieved rate below the target means the server could not sustain it; the latency then shows the queue. S2S bodies carry a unique id per request (`{{id}}`).\n\n")
	w("| scenario | target/s | achieved req/s | p50 | p99 | p99.9 | svc p99 | behind | server CPU µs/req | RSS max / HWM MiB | heap MiB | errors | statuses (last round) | captured |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		sc := r.sc
		if sc.group != "open" || sc.na != "" || !d.selected(sc) {
			continue
		}
		if len(r.rounds) == 0 {
			w("| %s | failed: %s |||||||||||||\n", sc.name, strings.Join(r.errs, "; "))
			continue
		}
		st := ""
		for rr := d.rounds; rr >= 1; rr-- {
			tag := fmt.Sprintf("%s.r%d", sanitize(sc.name), rr)
			if s, ok := statusNotes[tag]; ok {
				st = s
				if e := errorNotes[tag]; e != "" {
					st += " (" + e + ")"
				}
				break
			}
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s |\n",
			sc.name, thousands(sc.rate), r.fmtAgg("rps", thousands), r.fmtAgg("p50", ms), r.fmtAgg("p99", ms), r.fmtAgg("p999", ms),
			r.fmtAgg("svc_p99", ms), r.fmtAgg("behind_pct", pct), r.fmtAgg("cpu_us", f1),
			r.fmtAgg("rss_mb", f1), r.fmtAgg("hwm_mb", f1), r.fmtAgg("heap_mb", f1), r.fmtAgg("errors", thousands), st, r.fmtAgg("recorded_pct", pct))
	}
	w("\n")

	// --- click → worker ---
	w("## Click → worker store\n\n")
	w("`clickedge serve` (embedded NATS listening on loopback) at a fixed redirect rate. The generator takes each click id from the 302's Location and, on a separate NATS connection, watches the worker's JetStream acks (`$JS.ACK.CLICKEDGE_CLICKS.clickedge-worker.…`), which the worker sends only after the batch holding the click is committed to its bbolt store. ")
	w("After the run it maps stream sequences to click ids with an ordered consumer (so nothing extra reads the stream during the measurement). Latency = ack seen − 302 received; \"→ stream\" = the message's JetStream timestamp − 302 received.\n\n")
	w("| scenario | target/s | achieved req/s | 302 p99 | → stream p50 / p99 | → worker p50 | → worker p99 | → worker p99.9 | → worker max | stored / tracked | server CPU µs/click |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		sc := r.sc
		if sc.group != "c2w" || !d.selected(sc) {
			continue
		}
		if len(r.rounds) == 0 {
			w("| %s | failed: %s ||||||||||\n", sc.name, strings.Join(r.errs, "; "))
			continue
		}
		w("| %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s |\n", sc.name, thousands(sc.rate), r.fmtAgg("rps", thousands), r.fmtAgg("p99", ms),
			r.fmtAgg("c2s_p50", ms), r.fmtAgg("c2s_p99", ms), r.fmtAgg("c2w_p50", ms), r.fmtAgg("c2w_p99", ms), r.fmtAgg("c2w_p999", ms),
			r.fmtAgg("c2w_max", ms), r.fmtAgg("c2w_stored_pct", pct), r.fmtAgg("cpu_us", f1))
	}
	w("\n")

	// --- ingest & drain ---
	w("## Worker ingest\n\n")
	w("nats-server (load core) and an edge (server core) fill the click stream through redirects while the worker is stopped (a first worker ran only to create the streams, its durable consumer and the catalog). Then the worker starts on the server core; its `clickedge_worker_clicks_consumed_total` is scraped every 25 ms. ")
	w("Ingest rate = clicks stored between the first scrape that shows any and the one that shows all ÷ that time; \"from start\" includes process start-up.\n\n")
	w("| scenario | clicks | fill (redirects/s) | ingest clicks/s | from process start | worker CPU µs/click | RSS / HWM MiB | heap MiB |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		if r.sc.group != "ingest" || !d.selected(r.sc) {
			continue
		}
		if len(r.rounds) == 0 {
			w("| %s | failed: %s |||||||\n", r.sc.name, strings.Join(r.errs, "; "))
			continue
		}
		w("| %s | %s | %s | %s | %s | %s | %s / %s | %s |\n", r.sc.name, r.fmtAgg("clicks", thousands), r.fmtAgg("fill_rps", thousands),
			r.fmtAgg("rps", thousands), r.fmtAgg("ingest_from_start_rps", thousands), r.fmtAgg("cpu_us", f1),
			r.fmtAgg("rss_mb", f1), r.fmtAgg("hwm_mb", f1), r.fmtAgg("heap_mb", f1))
	}
	w("\n## Outbox drain\n\n")
	w("An edge (server core) against nats-server (load core; the worker stopped after setup): nats-server is stopped, redirects fill the outbox (closed loop, 64 connections), nats-server is restarted on the same port and store, and the edge's `clickedge_outbox_rows` is scraped every 25 ms until it reaches 0. ")
	w("Drain rate = rows ÷ (empty − nats-server healthy); \"active\" counts from the first scrape that shows a row gone. The issue's figure is after 1 M buffered clicks: `BENCH_FULL=1`.\n\n")
	w("| scenario | rows | outbox MiB | fill (redirects/s) | drain rows/s | active drain rows/s | drain ÷ fill | nats-server restart s | edge CPU µs/row | RSS / HWM MiB | heap MiB |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		if r.sc.group != "drain" || !d.selected(r.sc) {
			continue
		}
		if len(r.rounds) == 0 {
			w("| %s | failed: %s ||||||||||\n", r.sc.name, strings.Join(r.errs, "; "))
			continue
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |\n", r.sc.name, r.fmtAgg("clicks", thousands), r.fmtAgg("outbox_mb", f1),
			r.fmtAgg("fill_rps", thousands), r.fmtAgg("rps", thousands), r.fmtAgg("drain_active_rps", thousands),
			r.fmtAgg("drain_over_fill", f2), r.fmtAgg("nats_restart_s", f2), r.fmtAgg("cpu_us", f1),
			r.fmtAgg("rss_mb", f1), r.fmtAgg("hwm_mb", f1), r.fmtAgg("heap_mb", f1))
	}
	w("\n")

	// --- not available ---
	var na []*scenario
	for _, r := range results {
		if r.sc.na != "" {
			na = append(na, r.sc)
		}
	}
	if len(na) > 0 {
		w("## Not available in this build\n\n| scenario | what | needs |\n|---|---|---|\n")
		for _, sc := range na {
			w("| %s | %s | %s |\n", sc.name, sc.what, sc.na)
		}
		w("\n")
	}

	// --- targets ---
	w("## Targets of issue 5\n\n| target | measured (median) | verdict |\n|---|---|---|\n")
	for _, t := range d.targets(by) {
		w("| %s | %s | %s |\n", t[0], t[1], t[2])
	}
	w("\n")

	// --- failures ---
	var failed bool
	for _, r := range results {
		if len(r.errs) > 0 {
			if !failed {
				w("## Failed runs\n\n")
				failed = true
			}
			w("- %s: %s\n", r.sc.name, strings.Join(r.errs, "; "))
		}
	}
	if failed {
		w("\nLogs of every process: `bench/.work/logs/`.\n\n")
	}

	// --- commands ---
	w("## Commands\n\nBuilt with:\n\n```sh\n")
	for _, c := range d.buildCmds {
		w("%s\n", c)
	}
	w("```\n\nEach scenario's processes (first round; `127.0.0.1:0` listeners report their port in the JSON log, `PORT` stands for it; binaries in `bench/.work/bin`, data in a fresh directory per run):\n\n")
	for _, r := range results {
		if len(r.cmds) == 0 {
			continue
		}
		w("**%s** — %s\n\n```sh\n", r.sc.name, r.sc.what)
		for _, c := range r.cmds {
			w("%s\n", shorten(c, d))
		}
		w("```\n\n")
	}
	w("## Method notes\n\n")
	w("- Servers under test run on one core, load generators on the other (`taskset`), so they do not fight for a core; on two cores, in `-split` runs and in the ingest and drain scenarios nats-server (and the worker, in `-split`) share the load generator's core.\n")
	w("- A fresh data directory for each run; servers start, get one probe request (which checks the 302, its Location and Set-Cookie, and gives the response size), a warm-up, then the measured run.\n")
	w("- `redirect-durable` is `clickedge serve --demo`: the one-box topology, where the 302 waits for the outbox commit and the same process ships to its embedded JetStream and runs the worker. Its heap and RSS are those of the whole process; the edge-alone figures are the `-split` rows.\n")
	w("- Server CPU per request comes from `/proc/<pid>/stat` (utime+stime, %g ticks/s) over the measured run, so at a few seconds per run it is good to about 1 %%.\n", clkTck)
	w("- Open-loop latency is an HdrHistogram (1 µs–100 s, 3 significant digits) per run; wrk's percentiles come from its own histogram.\n")

	if err := os.MkdirAll(filepath.Dir(d.out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(d.out, []byte(b.String()), 0o644)
}

func shorten(c string, d *driver) string {
	c = strings.ReplaceAll(c, d.work+"/bin/", "bench/.work/bin/")
	c = strings.ReplaceAll(c, d.work+"/", "bench/.work/")
	c = strings.ReplaceAll(c, d.benchDir+"/", "bench/")
	c = strings.ReplaceAll(c, d.root+"/", "")
	c = strings.ReplaceAll(c, d.apiKey, "$KEY")
	return c
}

func firstField(s string) float64 {
	var f float64
	fmt.Sscan(s, &f)
	return f
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// targets evaluates the targets against the medians.
func (d *driver) targets(by map[string]*scenResult) [][3]string {
	var out [][3]string
	med := func(name, key string) (float64, bool) {
		r := by[name]
		if r == nil || r.sc.na != "" {
			return 0, false
		}
		a, ok := r.agg(key)
		return a.med, ok
	}
	ratio := func(name, base string) (float64, bool) {
		a, ok1 := med(name, "rps")
		b, ok2 := med(base, "rps")
		if !ok1 || !ok2 || b == 0 {
			return 0, false
		}
		return a / b, true
	}
	atLeast := func(label string, got float64, ok bool, want float64, unit string, f func(float64) string) {
		switch {
		case !ok:
			out = append(out, [3]string{label, "not measured", "n/a"})
		case got >= want:
			out = append(out, [3]string{label, f(got) + unit, "met"})
		default:
			out = append(out, [3]string{label, f(got) + unit, fmt.Sprintf("missed by %.0f %%", (want-got)/want*100)})
		}
	}
	atMost := func(label string, got float64, ok bool, want float64, unit string, f func(float64) string) {
		switch {
		case !ok:
			out = append(out, [3]string{label, "not measured", "n/a"})
		case got <= want:
			out = append(out, [3]string{label, f(got) + unit, "met"})
		default:
			out = append(out, [3]string{label, f(got) + unit, fmt.Sprintf("missed: %.1f× the limit", got/want)})
		}
	}
	x := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	r, ok := ratio("redirect-enrich-nocapture/c64", "fasthttp-302/c64")
	atLeast("redirect with enrichment, no capture ≥ 0.90× (c64)", r, ok, 0.90, "×", x)
	p, ok := med("redirect-enrich-nocapture/c64", "p99")
	atMost("redirect with enrichment, no capture: p99 ≤ 2 ms (c64)", p, ok, 2000, "", ms)
	r, ok = ratio("redirect-async-capture/c64", "fasthttp-302/c64")
	atLeast("async capture ≥ 0.75× (c64)", r, ok, 0.75, "×", x)
	r, ok = ratio("redirect-durable/c64", "fasthttp-302/c64")
	atLeast("durable capture ≥ 0.50× (c64, serve)", r, ok, 0.50, "×", x)
	r, ok = ratio("redirect-durable/c256", "fasthttp-302/c256")
	atLeast("durable capture ≥ 0.65× (c256, serve)", r, ok, 0.65, "×", x)
	p, ok = med("redirect-durable/c256", "p99")
	atMost("durable capture p99 ≤ 8 ms (c256, serve)", p, ok, 8000, "", ms)
	r, ok = ratio("redirect-durable-split/c64", "fasthttp-302/c64")
	atLeast("durable capture ≥ 0.50× (c64, edge against external NATS)", r, ok, 0.50, "×", x)
	r, ok = ratio("redirect-durable-split/c256", "fasthttp-302/c256")
	atLeast("durable capture ≥ 0.65× (c256, edge against external NATS)", r, ok, 0.65, "×", x)
	p, ok = med("redirect-durable-split/c256", "p99")
	atMost("durable capture p99 ≤ 8 ms (c256, edge against external NATS)", p, ok, 8000, "", ms)
	c2w := "click-to-worker/10000"
	p, ok = med(c2w, "c2w_p99")
	if ok {
		if a, _ := med(c2w, "rps"); a < 9500 {
			out = append(out, [3]string{"click → worker store p99 ≤ 10 ms at 10k clicks/s", fmt.Sprintf("%s at %s clicks/s achieved", ms(p), thousands(a)), "missed: 10k/s not sustained"})
		} else {
			atMost("click → worker store p99 ≤ 10 ms at 10k clicks/s", p, ok, 10000, "", ms)
		}
	} else {
		out = append(out, [3]string{"click → worker store p99 ≤ 10 ms at 10k clicks/s", "not measured (BENCH_C2W_RATES has no 10000)", "n/a"})
	}
	ing := ""
	for name := range by {
		if strings.HasPrefix(name, "worker-ingest/") {
			ing = name
		}
	}
	v, ok := med(ing, "rps")
	atLeast("worker ingest ≥ 100k clicks/s", v, ok, 100_000, " clicks/s", thousands)
	dr := ""
	for name := range by {
		if strings.HasPrefix(name, "outbox-drain/") {
			dr = name
		}
	}
	v, ok = med(dr, "drain_over_fill")
	label := "outbox drain ≥ 3× the rate that filled it"
	if !d.full {
		label += fmt.Sprintf(" (%s clicks; 1 M with BENCH_FULL=1)", count(d.fillN))
	}
	atLeast(label, v, ok, 3, "×", x)
	v, ok = med("redirect-durable-split/c256", "heap_mb")
	atMost("edge heap ≤ 16 MiB under load (edge process, c256)", v, ok, 16, " MiB", f1)
	v, ok = med("redirect-durable-split/c256", "rss_mb")
	atMost("edge RSS ≤ 64 MiB under load (edge process, c256)", v, ok, 64, " MiB", f1)
	v, ok = med("s2s-partnac/open", "rps")
	atLeast(fmt.Sprintf("S2S conversion, Partnac, durable ≥ 20k/s (offered %s/s)", thousands(d.s2sRate)), v, ok, 20_000, "/s", thousands)
	return out
}

// rawResults is the JSON of every round.
func rawResults(results []*scenResult) any {
	type one struct {
		Name   string               `json:"name"`
		Group  string               `json:"group"`
		NA     string               `json:"not_available,omitempty"`
		Rounds []map[string]float64 `json:"rounds"`
		Errors []string             `json:"errors,omitempty"`
		Cmds   []string             `json:"commands,omitempty"`
	}
	var out []one
	for _, r := range results {
		out = append(out, one{Name: r.sc.name, Group: r.sc.group, NA: r.sc.na, Rounds: r.rounds, Errors: r.errs, Cmds: r.cmds})
	}
	return out
}
