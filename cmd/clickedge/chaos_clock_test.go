package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/enrich"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// skewEdge is an edge run inside the test process, wired as `clickedge edge`
// wires it, whose clock is the wall clock plus an offset the test moves. No
// flag or variable reaches edge.Server.Now of the edge binary, and Go reads
// the wall clock through the vDSO (libfaketime cannot shift it; a time
// namespace shifts only the monotonic and boot clocks), so this is the one
// edge of the suite that is not a subprocess. NATS and the worker still are.
type skewEdge struct {
	addr   string
	offset atomic.Int64 // nanoseconds added to time.Now
}

func startSkewEdge(t *testing.T, natsURL string) *skewEdge {
	t.Helper()
	se := &skewEdge{}
	now := func() time.Time { return time.Now().Add(time.Duration(se.offset.Load())) }
	minter, err := redirect.NewMinter([]byte(chaosSecret))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(natsURL, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ob := sink.NewOutbox(filepath.Join(t.TempDir(), "edge.db"))
	if err := ob.Open(); err != nil {
		t.Fatal(err)
	}
	api := &sink.APIClient{NC: nc}
	srv := &edge.Server{Minter: minter, Enricher: enrich.New(enrich.Config{Now: now}), Outbox: ob, EdgeID: "chaos-skew",
		Lister: api, Backend: api, Now: now}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	shipDone, watchDone, serveDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	shipper := &sink.Shipper{Outbox: ob, JS: js}
	go func() { defer close(shipDone); _ = shipper.Run(ctx) }()
	go func() {
		defer close(watchDone)
		_ = sink.WatchCatalog(ctx, nc, func(data []byte, _ uint64) { _ = srv.ApplyCatalog(data) }, nil)
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { defer close(serveDone); _ = srv.Serve(ln) }()
	se.addr = ln.Addr().String()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		<-serveDone
		fctx, fcancel := context.WithTimeout(context.Background(), 3*time.Second)
		_ = shipper.Flush(fctx)
		fcancel()
		cancel()
		<-shipDone
		<-watchDone
		_ = ob.Close()
		nc.Close()
	})
	if !cxWait(20*time.Second, srv.Ready) {
		t.Fatal("the in-process edge never received the catalog")
	}
	return se
}

// clockStep is what one step of the clock run recorded.
type clockStep struct {
	click string
	// Offsets of the edge clock when the click was minted and when its
	// conversion was reported.
	clickOff, convOff time.Duration
}

// clockOutcome is the attribution of one conversion, in terms that do not
// depend on the run: the step whose click it credits instead of the id.
type clockOutcome struct {
	Partner, By, Status string
	Commission          int64
	Flags               string
	ClickStep           int
}

// 7. The edge's clock jumps back by 10 minutes, then forward by 20, then
// back to true time, some jumps falling between a click and its conversion:
// click ids stay unique (and out of mint order only across a backward jump),
// and every conversion is attributed exactly as in a run without skew.
func chaosClockJump(t *testing.T, env *chaosEnv, row *chaosRow) {
	const steps = 48
	const jump = 10 * time.Minute
	// The offset of step i: true time, 10 minutes behind, 10 minutes ahead,
	// true time. A conversion is reported under the next step's offset, so
	// that each jump falls between a click and its conversion once.
	sched := func(i int) time.Duration {
		switch {
		case i < steps/4:
			return 0
		case i < steps/2:
			return -jump
		case i < 3*steps/4:
			return jump
		}
		return 0
	}
	type runResult struct {
		steps    []clockStep
		outcomes map[int]clockOutcome
	}
	runOnce := func(t *testing.T, skew bool, prefix string) runResult {
		ns := startNATS(t, env, "n1")
		_, js := cxConnect(t, ns.url)
		w := newWorker(t, env, ns.url, t.TempDir())
		w.start()
		se := startSkewEdge(t, ns.url)
		l := newLoad(se.addr, prefix)
		// Four visitors, each with a cookie jar: a visitor's later clicks
		// carry the earlier click in the campaign cookie, and a conversion is
		// credited to the first click of that chain.
		var jars []*http.Client
		for range 4 {
			jar, _ := cookiejar.New(nil)
			jars = append(jars, &http.Client{Jar: jar, Timeout: 15 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }})
		}
		res := runResult{outcomes: map[int]clockOutcome{}}
		stepOf := map[string]int{}
		for i := range steps {
			var off, convOff time.Duration
			if skew {
				off, convOff = sched(i), sched(i+1)
			}
			se.offset.Store(int64(off))
			c := jars[i%4]
			link := []string{"alice", "bob"}[(i/4)%2]
			req, _ := http.NewRequest("GET", "http://"+se.addr+"/r/"+link, nil)
			req.Header.Set("User-Agent", chaosUA)
			start := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			resp.Body.Close()
			u, _ := url.Parse(resp.Header.Get("Location"))
			id := u.Query().Get("click_id")
			l.mu.Lock()
			l.redirects++
			if resp.StatusCode == http.StatusFound && id != "" {
				l.clicks[id] = true
				l.samples = append(l.samples, latSample{start, time.Since(start)})
			}
			l.mu.Unlock()
			if id == "" {
				t.Fatalf("step %d: %d %q", i, resp.StatusCode, resp.Header.Get("Location"))
			}
			stepOf[id] = i
			res.steps = append(res.steps, clockStep{click: id, clickOff: off, convOff: convOff})

			se.offset.Store(int64(convOff))
			uid := fmt.Sprintf("%s-%03d", prefix, i)
			body := `{"partnership_code":"ALICE10","unique_id":"` + uid + `","conversion_type":"sale","amount":"10.00","session_id":"` + id + `"}`
			code, err := cxDo("POST", "http://"+se.addr+"/v1/tracking/conversions", testKey, body, nil)
			l.mu.Lock()
			l.convSent++
			if err == nil && code >= 200 && code < 300 {
				l.convAcked[uid] = code
			} else {
				l.convOther[uid] = code
			}
			l.mu.Unlock()
		}
		se.offset.Store(0)
		st := finish(t, js, w, nil)
		reconcileInto(l, st, row)
		for i := range steps {
			c, ok := st.conversions[fmt.Sprintf("%s-%03d", prefix, i)]
			if !ok {
				continue
			}
			step, known := stepOf[c.ClickID]
			if !known {
				step = -1
			}
			res.outcomes[i] = clockOutcome{Partner: c.PartnerID, By: c.AttributedBy, Status: c.Status,
				Commission: c.CommissionMinor, Flags: strings.Join(c.Flags, ","), ClickStep: step}
		}
		return res
	}

	var plain, skewed runResult
	t.Run("without_skew", func(t *testing.T) { plain = runOnce(t, false, "c0") })
	t.Run("with_skew", func(t *testing.T) { skewed = runOnce(t, true, "c1") })
	if len(plain.steps) != steps || len(skewed.steps) != steps {
		t.Fatalf("a run did not finish: %d and %d steps", len(plain.steps), len(skewed.steps))
	}

	// Click ids: unique, and out of mint order only where the clock went back.
	seen := map[string]bool{}
	inversions, unexplained := 0, 0
	for i, s := range skewed.steps {
		if seen[s.click] {
			row.fail("click id %s minted twice", s.click)
		}
		seen[s.click] = true
		if i > 0 && s.click < skewed.steps[i-1].click {
			inversions++
			if s.clickOff >= skewed.steps[i-1].clickOff {
				unexplained++
			}
		}
	}
	if unexplained > 0 {
		row.fail("%d click ids sort before the one minted just earlier without a backward clock jump", unexplained)
	}
	// Attribution equals the run without skew.
	diffs := 0
	var examples []string
	for i := range steps {
		a, b := plain.outcomes[i], skewed.outcomes[i]
		if a != b {
			diffs++
			if len(examples) < 3 {
				examples = append(examples, fmt.Sprintf("step %d (click at %s, conversion at %s): %+v vs %+v",
					i, skewed.steps[i].clickOff, skewed.steps[i].convOff, a, b))
			}
		}
	}
	sort.Strings(examples)
	for _, e := range examples {
		row.fail("attribution differs from the run without skew: %s", e)
	}
	row.note("edge clock in-process (0, -10m, +10m, 0; %d conversions across a jump): %d ids unique, %d out of mint order (all at a backward jump); %d of %d attributions differ from the run without skew",
		3, len(seen), inversions, diffs, steps)
}

// reconcileInto adds one run's reconciliation to a row that sums several.
func reconcileInto(l *cxLoad, st *cxState, row *chaosRow) {
	var part chaosRow
	reconcile(l, st, &part, 0)
	row.requests += part.requests
	row.acked += part.acked
	row.found += part.found
	row.lost += part.lost
	row.dups += part.dups
	row.failures = append(row.failures, part.failures...)
	for _, n := range part.notes {
		row.note("%s", n)
	}
}
