// Command loadgen is the benchmark suite's HTTP load generator for what wrk
// does not do: an open loop at a fixed arrival rate, with latency corrected
// for coordinated omission, and POST bodies that differ per request.
//
// Open loop (-rate > 0): request i is due at start + i/rate, whatever
// happened to the requests before it. -c workers take the due requests in
// order; each worker owns at most one request in flight, so -c bounds the
// connections. When a worker takes a request that is already overdue (every
// worker was busy when it fell due: the server is behind), its latency is
// counted from the time it was due, not from when it was sent: the
// coordinated-omission correction (as wrk2 does). When a worker takes a
// request that is not yet due, it sleeps until then and the latency is
// counted from the actual send, so that the generator's own timer slack
// (about 1 ms for Go timers on Linux) is not charged to the server. The
// share of requests that were overdue is reported as behind_schedule. The
// run stops issuing at the end of -d: requests that fell due but were never
// sent (the server was that far behind) are reported as unsent and enter
// the latency histogram with the time they had waited, a lower bound.
//
// Closed loop (-rate 0): -c workers send back to back, as wrk does; with -n
// it sends exactly that many requests (the suite fills outboxes and streams
// with it).
//
// Every run is bounded: by -d always, and by -n when given. The result is one
// JSON object (-json, default stdout); latencies are in microseconds.
//
// -watch-nats adds the click → worker measurement: the generator subscribes
// to the JetStream acknowledgements of the worker's durable consumer
// ($JS.ACK.<stream>.<consumer>.…, which the worker sends only after the
// click is committed to its store), takes each redirect's click id from its
// Location (-capture-param), and after the run maps stream sequences to
// click ids with an ordered consumer. The latency of a click is the time its
// acknowledgement was seen minus the time its 302 was received; the time it
// was stored in the stream (the message timestamp) gives the edge → stream
// part.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"
)

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

type config struct {
	URL          string
	Method       string
	Body         string
	Headers      headerFlags
	Rate         float64
	Conns        int
	Duration     time.Duration
	Count        int64
	Timeout      time.Duration
	Expect       string
	JSONOut      string
	RunID        string
	CaptureParam string
	Quiet        bool

	WatchNATS     string
	WatchStream   string
	WatchConsumer string
	WatchWait     time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.URL, "url", "", "request URL (http only; {{id}}, {{seq}}, {{runid}} are filled per request)")
	flag.StringVar(&c.Method, "method", "GET", "HTTP method")
	flag.StringVar(&c.Body, "body", "", "request body template (placeholders as in -url); @file reads it from a file")
	flag.Var(&c.Headers, "H", "request header 'Name: value' (repeatable; placeholders allowed in the value)")
	flag.Float64Var(&c.Rate, "rate", 0, "open loop: requests per second due on a fixed schedule (0: closed loop)")
	flag.IntVar(&c.Conns, "c", 64, "workers = most requests in flight = most connections")
	flag.DurationVar(&c.Duration, "d", 10*time.Second, "run time (always a bound)")
	flag.Int64Var(&c.Count, "n", 0, "stop after this many requests (0: only -d bounds the run)")
	flag.DurationVar(&c.Timeout, "timeout", 10*time.Second, "per-request timeout (counted as an error)")
	flag.StringVar(&c.Expect, "expect", "2xx,3xx", "statuses that count as success: codes (302) or classes (2xx), comma-separated")
	flag.StringVar(&c.JSONOut, "json", "-", "where to write the JSON result (- for stdout)")
	flag.StringVar(&c.RunID, "run-id", "", "run id for {{id}} (default: 8 random hex characters)")
	flag.StringVar(&c.CaptureParam, "capture-param", "click_id", "with -watch-nats: query parameter of Location holding the click id")
	flag.BoolVar(&c.Quiet, "q", false, "no progress on stderr")
	flag.StringVar(&c.WatchNATS, "watch-nats", "", "NATS URL: measure click → worker store latency through the worker's acks")
	flag.StringVar(&c.WatchStream, "watch-stream", "CLICKEDGE_CLICKS", "with -watch-nats: the click stream")
	flag.StringVar(&c.WatchConsumer, "watch-consumer", "clickedge-worker", "with -watch-nats: the worker's durable consumer")
	flag.DurationVar(&c.WatchWait, "watch-wait", 15*time.Second, "with -watch-nats: how long to wait after the run for the last acks")
	flag.Parse()
	if err := run(&c); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// Result is the JSON the generator writes.
type Result struct {
	RunID           string           `json:"run_id"`
	Mode            string           `json:"mode"`
	Method          string           `json:"method"`
	URL             string           `json:"url"`
	TargetRate      float64          `json:"target_rate,omitempty"`
	Connections     int              `json:"connections"`
	DurationSec     float64          `json:"duration_s"`
	Requests        int64            `json:"requests"`
	OK              int64            `json:"ok"`
	Errors          int64            `json:"errors"`
	ErrorKinds      map[string]int64 `json:"error_kinds,omitempty"`
	Status          map[string]int64 `json:"status"`
	AchievedRPS     float64          `json:"achieved_rps"`
	BehindSchedule  float64          `json:"behind_schedule,omitempty"`
	Unsent          int64            `json:"unsent,omitempty"`
	Latency         Percentiles      `json:"latency_us"`
	ServiceLatency  Percentiles      `json:"service_latency_us"`
	PacingLateP99us float64          `json:"pacing_late_p99_us,omitempty"`
	Watch           *WatchResult     `json:"watch,omitempty"`
}

// Percentiles of a latency histogram, in microseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	us := func(v int64) float64 { return math.Round(float64(v)/10) / 100 } // ns → µs, 2 decimals
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  math.Round(h.Mean()/10) / 100,
		P50:   us(h.ValueAtQuantile(50)),
		P90:   us(h.ValueAtQuantile(90)),
		P99:   us(h.ValueAtQuantile(99)),
		P999:  us(h.ValueAtQuantile(99.9)),
		Max:   us(h.Max()),
	}
}

// newHist covers 1 µs to 100 s with 3 significant digits, in nanoseconds.
func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1_000, 100_000_000_000, 3) }

func recordNS(h *hdrhistogram.Histogram, d time.Duration) {
	v := int64(d)
	if v < 1_000 {
		v = 1_000
	}
	if v > h.HighestTrackableValue() {
		v = h.HighestTrackableValue()
	}
	_ = h.RecordValue(v)
}

type expecter struct {
	codes   map[int]bool
	classes map[int]bool
}

func parseExpect(s string) (*expecter, error) {
	e := &expecter{codes: map[int]bool{}, classes: map[int]bool{}}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ToLower(f))
		switch {
		case f == "":
		case len(f) == 3 && strings.HasSuffix(f, "xx") && f[0] >= '1' && f[0] <= '5':
			e.classes[int(f[0]-'0')] = true
		default:
			n, err := strconv.Atoi(f)
			if err != nil || n < 100 || n > 599 {
				return nil, fmt.Errorf("-expect %q: want codes like 302 or classes like 2xx", s)
			}
			e.codes[n] = true
		}
	}
	return e, nil
}

func (e *expecter) ok(code int) bool { return e.codes[code] || e.classes[code/100] }

// workerStats is one worker's share, merged at the end (no locks on the
// request path).
type workerStats struct {
	lat, svc, late *hdrhistogram.Histogram
	status         map[int]int64
	errs           map[string]int64
	requests, ok   int64
	behind, unsent int64
	lastDone       time.Time
	clicks         []clickSeen
}

type clickSeen struct {
	id   string
	done time.Time
}

func run(c *config) error {
	if c.URL == "" {
		return errors.New("-url is required")
	}
	if c.Conns < 1 {
		return errors.New("-c must be at least 1")
	}
	if c.Duration <= 0 {
		return errors.New("-d must be positive")
	}
	if c.RunID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.RunID = hex.EncodeToString(b[:])
	}
	if strings.HasPrefix(c.Body, "@") {
		raw, err := os.ReadFile(c.Body[1:])
		if err != nil {
			return fmt.Errorf("-body: %w", err)
		}
		c.Body = string(bytes.TrimRight(raw, "\n"))
	}
	exp, err := parseExpect(c.Expect)
	if err != nil {
		return err
	}
	urlT, err := parseTemplate(c.URL)
	if err != nil {
		return err
	}
	bodyT, err := parseTemplate(c.Body)
	if err != nil {
		return err
	}
	type hdr struct {
		name string
		val  *template
	}
	var hdrs []hdr
	for _, h := range c.Headers {
		name, val, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("-H %q: want 'Name: value'", h)
		}
		t, err := parseTemplate(strings.TrimSpace(val))
		if err != nil {
			return err
		}
		hdrs = append(hdrs, hdr{strings.TrimSpace(name), t})
	}
	u, err := url.Parse(strings.NewReplacer("{{", "", "}}", "").Replace(c.URL))
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url %q: want http://host:port/path", c.URL)
	}
	addr := u.Host
	if !strings.Contains(addr, ":") {
		addr = net.JoinHostPort(addr, "80")
	}

	var watch *watcher
	if c.WatchNATS != "" {
		watch, err = startWatch(c.WatchNATS, c.WatchStream, c.WatchConsumer)
		if err != nil {
			return err
		}
		defer watch.close()
	}

	client := &fasthttp.HostClient{
		Addr:                          addr,
		MaxConns:                      c.Conns,
		MaxConnWaitTimeout:            c.Timeout,
		ReadTimeout:                   c.Timeout,
		WriteTimeout:                  c.Timeout,
		MaxIdleConnDuration:           time.Minute,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		ReadBufferSize:                8 << 10,
	}

	open := c.Rate > 0
	var interval float64
	if open {
		interval = float64(time.Second) / c.Rate
	}
	start := time.Now().Add(20 * time.Millisecond)
	end := start.Add(c.Duration)
	var next atomic.Int64
	stats := make([]*workerStats, c.Conns)
	var wg sync.WaitGroup
	progressDone := make(chan struct{})
	var completed atomic.Int64
	if !c.Quiet {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			var last int64
			for {
				select {
				case <-progressDone:
					return
				case <-t.C:
					n := completed.Load()
					fmt.Fprintf(os.Stderr, "loadgen: %d requests, %d/s\n", n, n-last)
					last = n
				}
			}
		}()
	}
	captureKey := c.CaptureParam + "="
	for w := 0; w < c.Conns; w++ {
		ws := &workerStats{lat: newHist(), svc: newHist(), late: newHist(), status: map[int]int64{}, errs: map[string]int64{}}
		stats[w] = ws
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			var ubuf, bbuf, hbuf []byte
			if d := time.Until(start); d > 0 {
				time.Sleep(d)
			}
			for {
				i := next.Add(1) - 1
				if c.Count > 0 && i >= c.Count {
					return
				}
				var due time.Time
				overdue := false
				if open {
					due = start.Add(time.Duration(float64(i) * interval))
					if !due.Before(end) {
						return
					}
					if now := time.Now(); !now.Before(end) {
						// The run is over but this request, due
						// before the end, was never sent: the server
						// fell behind. It counts as unsent, with what
						// it had waited so far as its latency (a
						// lower bound), so that stopping on time does
						// not hide the queue.
						ws.unsent++
						recordNS(ws.lat, now.Sub(due))
						continue
					}
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					} else {
						overdue = true
					}
				} else if !time.Now().Before(end) {
					return
				}
				seq := uint64(i) + 1
				req.Reset()
				req.Header.SetMethod(c.Method)
				ubuf = urlT.appendTo(ubuf[:0], c.RunID, seq)
				req.SetRequestURIBytes(ubuf)
				for _, h := range hdrs {
					hbuf = h.val.appendTo(hbuf[:0], c.RunID, seq)
					req.Header.SetBytesV(h.name, hbuf)
				}
				if c.Body != "" {
					bbuf = bodyT.appendTo(bbuf[:0], c.RunID, seq)
					req.SetBodyRaw(bbuf)
					if len(req.Header.ContentType()) == 0 {
						req.Header.SetContentType("application/json")
					}
				}
				sent := time.Now()
				err := client.DoTimeout(req, resp, c.Timeout)
				done := time.Now()
				ws.requests++
				completed.Add(1)
				ws.lastDone = done
				if open {
					if overdue {
						ws.behind++
						recordNS(ws.lat, done.Sub(due))
					} else {
						recordNS(ws.lat, done.Sub(sent))
						recordNS(ws.late, sent.Sub(due))
					}
				} else {
					recordNS(ws.lat, done.Sub(sent))
				}
				recordNS(ws.svc, done.Sub(sent))
				if err != nil {
					ws.errs[errKind(err)]++
					continue
				}
				code := resp.StatusCode()
				ws.status[code]++
				if !exp.ok(code) {
					ws.errs["status_"+strconv.Itoa(code)]++
					continue
				}
				ws.ok++
				if watch != nil {
					if id := paramFromLocation(resp.Header.Peek("Location"), captureKey); id != "" {
						ws.clicks = append(ws.clicks, clickSeen{id: id, done: done})
					}
				}
			}
		}()
	}
	wg.Wait()
	close(progressDone)

	res := &Result{RunID: c.RunID, Method: c.Method, URL: c.URL, Connections: c.Conns,
		Status: map[string]int64{}, ErrorKinds: map[string]int64{}}
	if open {
		res.Mode, res.TargetRate = "open", c.Rate
	} else {
		res.Mode = "closed"
	}
	lat, svc, late := newHist(), newHist(), newHist()
	var lastDone time.Time
	var behind int64
	var clicks []clickSeen
	for _, ws := range stats {
		lat.Merge(ws.lat)
		svc.Merge(ws.svc)
		late.Merge(ws.late)
		res.Requests += ws.requests
		res.OK += ws.ok
		behind += ws.behind
		res.Unsent += ws.unsent
		for k, v := range ws.status {
			res.Status[strconv.Itoa(k)] += v
		}
		for k, v := range ws.errs {
			res.ErrorKinds[k] += v
			res.Errors += v
		}
		if ws.lastDone.After(lastDone) {
			lastDone = ws.lastDone
		}
		clicks = append(clicks, ws.clicks...)
	}
	elapsed := lastDone.Sub(start)
	if open && end.Sub(start) > elapsed && c.Count == 0 {
		// The schedule ran to its end: rate over the scheduled window.
		elapsed = end.Sub(start)
	}
	if elapsed > 0 {
		res.DurationSec = round3(elapsed.Seconds())
		res.AchievedRPS = round3(float64(res.Requests) / elapsed.Seconds())
	}
	if res.Requests > 0 && open {
		res.BehindSchedule = round3(float64(behind) / float64(res.Requests))
	}
	res.Latency = percentiles(lat)
	res.ServiceLatency = percentiles(svc)
	if late.TotalCount() > 0 {
		res.PacingLateP99us = float64(late.ValueAtQuantile(99)) / 1000
	}
	if watch != nil {
		res.Watch = watch.finish(clicks, c.WatchWait, c.Quiet)
	}
	return writeJSON(c.JSONOut, res)
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func errKind(err error) string {
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout):
		return "timeout"
	case errors.Is(err, fasthttp.ErrNoFreeConns), errors.Is(err, fasthttp.ErrConnectionClosed):
		return "connection"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "read"
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return "net_" + ne.Op
	}
	return "other"
}

// paramFromLocation returns the value of key ("click_id=") in a Location's
// query, or "".
func paramFromLocation(loc []byte, key string) string {
	q := bytes.IndexByte(loc, '?')
	if q < 0 {
		return ""
	}
	rest := loc[q+1:]
	for len(rest) > 0 {
		var part []byte
		if i := bytes.IndexByte(rest, '&'); i >= 0 {
			part, rest = rest[:i], rest[i+1:]
		} else {
			part, rest = rest, nil
		}
		if bytes.HasPrefix(part, []byte(key)) {
			return string(part[len(key):])
		}
	}
	return ""
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" || path == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
