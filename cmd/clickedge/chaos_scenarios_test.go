package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clickedge/clickedge/sink"
)

// loadRate is the redirect rate of the scenarios: well below what the
// 2-core machine sustains with edge, worker, NATS and load generator on the
// same cores, so that latency reflects the fault and not saturation.
const loadRate = 300

// runLoad starts l in the background for at most spec.dur; the returned
// stop ends it early and waits (and runs when the test ends, whatever
// happened).
func runLoad(t *testing.T, l *cxLoad, spec loadSpec) (stop func()) {
	ch := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); l.run(spec, ch) }()
	var once sync.Once
	stop = func() {
		once.Do(func() { close(ch) })
		<-done
	}
	t.Cleanup(stop)
	return stop
}

func randPause(lo, hi time.Duration) func() time.Duration {
	return func() time.Duration { return lo + time.Duration(rand.Int64N(int64(hi-lo))) }
}

// 1. kill -9 the edge every few seconds under load, restarting it.
func chaosEdgeKill(t *testing.T, env *chaosEnv, row *chaosRow) {
	ns := startNATS(t, env, "n1")
	_, js := cxConnect(t, ns.url)
	w := newWorker(t, env, ns.url, t.TempDir())
	w.start()
	e := newEdge(t, env, ns.url)
	e.start()

	l := newLoad(e.listen, "ek")
	stop := runLoad(t, l, loadSpec{rate: loadRate, convRate: 10, dur: env.seconds + 30*time.Second})
	time.Sleep(time.Second)
	from := time.Now()
	kills, restart := killLoop(from.Add(env.seconds), nil, randPause(50*time.Millisecond, 400*time.Millisecond), func(int) { e.kill() }, e.start)
	to := time.Now()
	time.Sleep(500 * time.Millisecond)
	stop()
	row.p99 = l.p99(from, to)

	st := finish(t, js, w, nil, e)
	missing := reconcile(l, st, row, 0)
	if len(missing) > 0 {
		row.note("clicks lost: %v", missing[:min(5, len(missing))])
	}
	msgs, dups, complete := streamDups(t, js, sink.ClickStream)
	row.note("%d SIGKILLs (restart to ready %.2fs); %d clicks committed but never answered (killed mid-request) also stored; click stream %s msgs, %d repeated ids",
		kills, restart.Seconds(), len(st.clicks)-(len(l.clicks)-len(missing)), scanNote(msgs, complete), dups)
}

// 3. kill -9 the worker repeatedly, including between its store commit and
// its ack (seen as redeliveries the next life finds already applied).
func chaosWorkerKill(t *testing.T, env *chaosEnv, row *chaosRow) {
	ns := startNATS(t, env, "n1")
	_, js := cxConnect(t, ns.url)
	w := newWorker(t, env, ns.url, t.TempDir())
	w.start()
	e := newEdge(t, env, ns.url)
	e.start()

	var redeliveredClicks, redeliveredEvents float64
	scrapeRedeliveries := func() {
		expo := cxScrape(w.metrics)
		c, _ := cxSum(expo, "clickedge_worker_clicks_consumed_total", `result="duplicate"`)
		ev, _ := cxSum(expo, "clickedge_worker_events_total", `outcome="duplicate"`)
		redeliveredClicks += c
		redeliveredEvents += ev
	}
	l := newLoad(e.listen, "wk")
	stop := runLoad(t, l, loadSpec{rate: loadRate, convRate: 20, refundEvery: 4, dur: env.seconds + 30*time.Second})
	time.Sleep(time.Second)
	from := time.Now()
	// Two kills in three wait for a commit of the worker's store to become
	// visible and strike at once, before the acks of its batch leave the
	// process.
	store := filepath.Join(w.data, "worker.db")
	aimed, aimedHit := 0, 0
	kill := func(i int) {
		scrapeRedeliveries()
		if i%3 != 0 {
			aimed++
			if killAfterCommit(store, 2*time.Second, w.kill) {
				aimedHit++
			}
			return
		}
		w.kill()
	}
	life := func(int) time.Duration { return 500*time.Millisecond + time.Duration(rand.Int64N(int64(time.Second))) }
	kills, restart := killLoop(from.Add(env.seconds), life, randPause(100*time.Millisecond, 600*time.Millisecond), kill, w.start)
	to := time.Now()
	time.Sleep(500 * time.Millisecond)
	stop()
	row.p99 = l.p99(from, to)

	st := finish(t, js, w, scrapeRedeliveries, e)
	missing := reconcile(l, st, row, 0)
	if len(missing) > 0 {
		row.note("clicks lost: %v", missing[:min(5, len(missing))])
	}
	refunds := 0
	for _, ok := range l.refunds {
		if ok {
			refunds++
		}
	}
	row.note("%d SIGKILLs (%d of %d aimed just after a store commit), restart to ready %.2fs; redelivered after a commit whose ack died with the worker: %.0f clicks, %.0f events (each applied once); %d refunds acknowledged",
		kills, aimedHit, aimed, restart.Seconds(), redeliveredClicks, redeliveredEvents, refunds)
	if redeliveredClicks+redeliveredEvents == 0 {
		row.note("no kill landed between a commit and its ack this run")
	}
}

// killAfterCommit kills (through kill) as soon as a bbolt commit of the file
// at path becomes visible — one of its two meta pages changed: the last
// write of a commit, made before its final fsync (about 1ms on this
// machine's disk) and so before the worker acks the batch — or after limit
// when none happens.
func killAfterCommit(path string, limit time.Duration, kill func()) bool {
	f, err := os.Open(path)
	if err != nil {
		kill()
		return false
	}
	defer f.Close()
	metas := func() []byte {
		// Page 0 holds the page size at offset 24 (page header 16 bytes,
		// magic and version 4 each); page 1 is the other meta page.
		buf := make([]byte, 256)
		if _, err := f.ReadAt(buf[:128], 0); err != nil {
			return nil
		}
		ps := int64(binary.LittleEndian.Uint32(buf[24:28]))
		if ps < 512 || ps > 1<<16 {
			ps = 4096
		}
		if _, err := f.ReadAt(buf[128:], ps); err != nil {
			return nil
		}
		return buf
	}
	before := metas()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if now := metas(); before != nil && now != nil && !bytes.Equal(now, before) {
			kill()
			return true
		}
		time.Sleep(50 * time.Microsecond)
	}
	kill()
	return false
}

// 2. NATS unreachable from the edge under load: redirects keep their
// latency, the outbox grows, and drains at least twice the ingest rate.
func chaosNATSDown(t *testing.T, env *chaosEnv, row *chaosRow) {
	ns := startNATS(t, env, "n1")
	_, js := cxConnect(t, ns.url)
	w := newWorker(t, env, ns.url, t.TempDir())
	w.start()
	px := newProxy(t, cxAddr(ns.port))
	e := newEdge(t, env, px.url())
	e.start()

	base, outage, drainLimit := env.dur(0.5, 4*time.Second), env.seconds, max(env.seconds, 15*time.Second)
	l := newLoad(e.listen, "nd")
	stop := runLoad(t, l, loadSpec{rate: loadRate, convRate: 5, dur: time.Second + 2*base + outage + drainLimit + 5*time.Second})
	time.Sleep(time.Second)
	b0 := time.Now()
	hb0 := e.redirectHist()
	time.Sleep(base)
	f0 := time.Now()
	hf0 := e.redirectHist()
	px.set(proxyCut)
	time.Sleep(outage)
	f1 := time.Now()
	hf1 := e.redirectHist()
	rowsAtEnd := e.outboxRows()
	pub0 := e.metric("clickedge_outbox_published_total")
	px.set(proxyUp)
	// Under continuing load a few rows are always in flight: drained means
	// the backlog is gone.
	small := max(20, loadRate/20)
	drained := cxWait(drainLimit, func() bool { r := e.outboxRows(); return r >= 0 && r < small })
	drainTook := time.Since(f1)
	pub1 := e.metric("clickedge_outbox_published_total")
	// The no-fault p99 is measured on both sides of the outage, so that a
	// burst of another process's work on the shared cores during one
	// window does not decide the comparison alone.
	a0 := time.Now()
	time.Sleep(base)
	a1 := time.Now()
	stop()

	beforeP99, afterP99, faultP99 := l.p99(b0, f0), l.p99(a0, a1), l.p99(f0, f1)
	baseP99 := max(beforeP99, afterP99)
	row.p99 = faultP99
	ingested := l.answered(f0, f1)
	ingestRate := float64(ingested) / outage.Seconds()
	drainRate := (pub1 - pub0) / drainTook.Seconds()
	row.note("no-fault p99 %s before, %s after; during outage %s (%.2f× the larger)", fmtMS(beforeP99), fmtMS(afterP99), fmtMS(faultP99), float64(faultP99)/float64(max(baseP99, 1)))
	var quarters []string
	for q := range 4 {
		from := f0.Add(time.Duration(q) * outage / 4)
		quarters = append(quarters, fmtMS(l.p99(from, from.Add(outage/4))))
	}
	row.note("outage p99 by quarter %s; the edge's own redirect p99 (histogram bucket) %s before, %s during",
		strings.Join(quarters, " "), hf0.p99Since(hb0), hf1.p99Since(hf0))
	row.note("outage %s: %d clicks answered (%.0f/s), outbox %d rows at its end", outage, ingested, ingestRate, rowsAtEnd)
	row.note("drained in %.2fs (incl. reconnect) at %.0f rows/s = %.1f× ingest", drainTook.Seconds(), drainRate, drainRate/max(ingestRate, 1))
	if rowsAtEnd < ingested {
		row.fail("outbox held %d rows after the outage, fewer than the %d clicks answered during it", rowsAtEnd, ingested)
	}
	if !drained {
		row.fail("outbox not drained %s after NATS returned", drainLimit)
	} else if drainRate < 2*ingestRate {
		row.fail("drain rate %.0f/s below twice the ingest rate %.0f/s", drainRate, ingestRate)
	}
	// p99 may be at most 1.5× the no-fault p99; below 2 ms of difference
	// the comparison measures the machine's scheduler, not the edge.
	if faultP99 > baseP99*3/2 && faultP99-baseP99 > 2*time.Millisecond {
		row.fail("redirect p99 %s during the outage above 1.5× the no-fault %s", fmtMS(faultP99), fmtMS(baseP99))
	}
	l.mu.Lock()
	bad := l.redirErrs
	for _, n := range l.nonFound {
		bad += n
	}
	l.mu.Unlock()
	if bad > 0 {
		row.fail("%d redirects not answered 302", bad)
	}

	st := finish(t, js, w, nil, e)
	reconcile(l, st, row, 0)
}

// 8. Rebuild: an empty worker replays both streams and ends with exactly the
// clicks, conversions and partner balances of the worker it replaces.
func chaosRebuild(t *testing.T, env *chaosEnv, row *chaosRow) {
	ns := startNATS(t, env, "n1")
	_, js := cxConnect(t, ns.url)
	w1 := newWorker(t, env, ns.url, t.TempDir())
	w1.start()
	e := newEdge(t, env, ns.url)
	e.start()

	l := newLoad(e.listen, "rb")
	l.run(loadSpec{rate: loadRate, convRate: 25, refundEvery: 3, dur: env.dur(0.5, 4*time.Second)}, nil)
	if !settle(t, js, 60*time.Second, e) {
		t.Fatal("not settled before the status changes")
	}
	// Status changes and a payout through the admin API travel as events too.
	var uids []string
	l.mu.Lock()
	for uid, code := range l.convAcked {
		if code == 201 {
			uids = append(uids, uid)
		}
	}
	l.mu.Unlock()
	sort.Strings(uids)
	approved, rejected := 0, 0
	for i, uid := range uids {
		status := ""
		switch {
		case i%3 == 0:
			status = "approved"
		case i%7 == 1:
			status = "rejected"
		default:
			continue
		}
		code, err := w1.adminPost("/admin/v1/merchants/demo/conversions/"+uid+"/status", `{"status":"`+status+`"}`, nil)
		if err != nil || code != 200 {
			t.Fatalf("set %s %s: %d %v", uid, status, code, err)
		}
		if status == "approved" {
			approved++
		} else {
			rejected++
		}
	}
	if code, err := w1.adminPost("/admin/v1/merchants/demo/payouts", `{"partner_id":"alice","reference":"chaos-r1"}`, nil); err != nil || code != 200 {
		t.Fatalf("payout: %d %v", code, err)
	}
	st1 := finish(t, js, w1, nil, e)

	w2 := newWorker(t, env, ns.url, t.TempDir(), "--rebuild")
	t0 := time.Now()
	w2.start()
	if !settle(t, js, 120*time.Second) {
		row.fail("the rebuilding worker did not catch up in 120s")
	}
	took := time.Since(t0)
	st2 := &cxState{}
	readAdmin(t, w2, st2)
	w2.stop(30 * time.Second)
	readStore(t, filepath.Join(w2.data, "worker.db"), st2)

	reconcile(l, st2, row, 0)
	if st1.dups > 0 {
		row.dups += st1.dups
		row.fail("the original worker's state holds %d duplicates: %v", st1.dups, st1.dupNotes)
	}
	diffs := compareStates(st1, st2)
	for _, d := range diffs[:min(5, len(diffs))] {
		row.fail("rebuilt state differs: %s", d)
	}
	row.note("%d clicks, %d conversions (%d approved, %d rejected, %d refunds, payout alice %d minor) rebuilt in %.1fs; %d differences",
		len(st2.clicks), len(st2.conversions), approved, rejected, len(l.refunds), st1.balances["alice"].PaidMinor, took.Seconds(), len(diffs))
}

// compareStates lists how two workers' states differ: clicks (all but the
// worker's own received_at stamp), conversions, balances and ledgers.
func compareStates(a, b *cxState) []string {
	var out []string
	if len(a.clicks) != len(b.clicks) {
		out = append(out, fmt.Sprintf("%d clicks vs %d", len(a.clicks), len(b.clicks)))
	}
	strip := func(raw []byte) map[string]any {
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		delete(m, "received_at")
		return m
	}
	for id, ra := range a.clicks {
		rb, ok := b.clicks[id]
		if !ok {
			out = append(out, "click "+id+" missing")
			continue
		}
		if !reflect.DeepEqual(strip(ra), strip(rb)) {
			out = append(out, fmt.Sprintf("click %s: %s vs %s", id, ra, rb))
		}
	}
	if len(a.conversions) != len(b.conversions) {
		out = append(out, fmt.Sprintf("%d conversions vs %d", len(a.conversions), len(b.conversions)))
	}
	for uid, ca := range a.conversions {
		cb, ok := b.conversions[uid]
		if !ok {
			out = append(out, "conversion "+uid+" missing")
			continue
		}
		if ja, jb := mustJSON(ca), mustJSON(cb); string(ja) != string(jb) {
			out = append(out, fmt.Sprintf("conversion %s: %s vs %s", uid, ja, jb))
		}
	}
	for p, ba := range a.balances {
		if ja, jb := mustJSON(ba), mustJSON(b.balances[p]); string(ja) != string(jb) {
			out = append(out, fmt.Sprintf("balance of %s: %.300s vs %.300s", p, ja, jb))
		}
	}
	return out
}

// 6. The outbox at its size cap (--outbox-max-bytes) while NATS is away:
// conversions get 503, redirects are still served and the clicks they could
// not store are counted, and once NATS is back the outbox drains and
// bbolt's consistency check passes.
func chaosOutboxCap(t *testing.T, env *chaosEnv, row *chaosRow) {
	ns := startNATS(t, env, "n1")
	_, js := cxConnect(t, ns.url)
	w := newWorker(t, env, ns.url, t.TempDir())
	w.start()
	px := newProxy(t, cxAddr(ns.port))
	const capBytes = 256 << 10
	e := newEdge(t, env, px.url(), "--outbox-max-bytes", strconv.Itoa(capBytes))
	e.start()

	l := newLoad(e.listen, "oc")
	stop := runLoad(t, l, loadSpec{rate: loadRate, convRate: 10, dur: env.seconds + 60*time.Second})
	time.Sleep(time.Second)
	px.set(proxyCut)
	full := cxWait(max(env.seconds, 20*time.Second), func() bool {
		return e.metric("clickedge_clicks_dropped_total", `reason="full"`) > 0
	})
	if !full {
		stop()
		t.Fatalf("the outbox never filled (%d rows)", e.outboxRows())
	}
	l.mu.Lock()
	refused0, statuses0 := len(l.convRefuse), fmt.Sprint(l.nonFound)
	l.mu.Unlock()
	f0 := time.Now()
	time.Sleep(env.dur(0.5, 3*time.Second))
	f1 := time.Now()
	l.mu.Lock()
	refusedWhileFull := len(l.convRefuse) - refused0
	l.mu.Unlock()
	rowsFull := e.outboxRows()
	px.set(proxyUp)
	drained := cxWait(30*time.Second, func() bool { r := e.outboxRows(); return r >= 0 && r < 20 })
	drainTook := time.Since(f1)
	time.Sleep(time.Second)
	stop()
	row.p99 = l.p99(f0, f1)

	if !settle(t, js, 60*time.Second, e) {
		row.fail("the outbox did not drain after NATS returned")
	}
	dropped := int(e.metric("clickedge_clicks_dropped_total"))
	droppedFull := int(e.metric("clickedge_clicks_dropped_total", `reason="full"`))
	e.stop(30 * time.Second)
	edgeProblems := bboltCheck(filepath.Join(e.data, "edge.db"))

	st := finish(t, js, w, nil)
	workerProblems := bboltCheck(filepath.Join(w.data, "worker.db"))
	reconcile(l, st, row, dropped)

	l.mu.Lock()
	defer l.mu.Unlock()
	var stored503 []string
	for uid := range l.convRefuse {
		if _, ok := st.conversions[uid]; ok {
			stored503 = append(stored503, uid)
		}
	}
	bad := l.redirErrs
	for _, n := range l.nonFound {
		bad += n
	}
	if bad > 0 {
		row.fail("%d redirects not answered 302 (%v, before full: %s)", bad, l.nonFound, statuses0)
	}
	if refusedWhileFull == 0 {
		row.fail("no conversion was refused while the outbox was full")
	}
	if len(stored503) > 0 {
		row.fail("conversions answered 503 yet stored: %v", stored503[:min(5, len(stored503))])
	}
	if !drained {
		row.fail("outbox not drained 30s after NATS returned")
	}
	for _, p := range edgeProblems[:min(3, len(edgeProblems))] {
		row.fail("bbolt check edge.db: %s", p)
	}
	for _, p := range workerProblems[:min(3, len(workerProblems))] {
		row.fail("bbolt check worker.db: %s", p)
	}
	row.note("cap %d KiB hit with %d rows; %d clicks redirected but dropped (counted, %d as full) = the answered ids missing; %d conversions 503 while full, none stored; drained in %.1fs; bbolt check edge.db %d, worker.db %d problems",
		capBytes>>10, rowsFull, dropped, droppedFull, refusedWhileFull, drainTook.Seconds(), len(edgeProblems), len(workerProblems))
}

// 4. A 3-node JetStream cluster, R3 streams: kill -9 the click stream's
// leader under load, bring it back, then kill -9 a follower.
func chaosCluster(t *testing.T, env *chaosEnv, row *chaosRow) {
	type node struct {
		proc *cxProc
		name string
		url  string
	}
	var nodes []*node
	clientPorts := []int{cxFreePort(t), cxFreePort(t), cxFreePort(t)}
	routePorts := []int{cxFreePort(t), cxFreePort(t), cxFreePort(t)}
	for i := range 3 {
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, `"nats-route://`+cxAddr(p)+`"`)
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		dir := t.TempDir()
		conf := fmt.Sprintf("server_name: %s\nlisten: %q\njetstream { store_dir: %q }\ncluster {\n  name: chaos\n  listen: %q\n  routes: [%s]\n}\n",
			name, cxAddr(clientPorts[i]), filepath.Join(dir, "js"), cxAddr(routePorts[i]), strings.Join(routes, ", "))
		cf := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		n := &node{proc: newProc(t, "nats-"+name, env.natsBin, "-c", cf), name: name, url: "nats://" + cxAddr(clientPorts[i])}
		n.proc.start()
		nodes = append(nodes, n)
	}
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.url)
	}
	all := strings.Join(urls, ",")
	(&cxNATS{}).waitJS(t, all)
	_, js := cxConnect(t, all)

	w := newWorker(t, env, all, t.TempDir(), "--replicas", "3")
	w.start()
	e := newEdge(t, env, all)
	e.start()

	info := func() *jetstream.StreamInfo {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, sink.ClickStream)
		if err != nil {
			return nil
		}
		i, err := s.Info(ctx)
		if err != nil || i.Cluster == nil {
			return nil
		}
		return i
	}
	byName := func(name string) *node {
		for _, n := range nodes {
			if n.name == name {
				return n
			}
		}
		t.Fatalf("no node %q", name)
		return nil
	}
	allCurrent := func() bool {
		i := info()
		if i == nil || i.Cluster.Leader == "" || len(i.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range i.Cluster.Replicas {
			if !r.Current || r.Offline {
				return false
			}
		}
		return true
	}
	if !cxWait(30*time.Second, allCurrent) {
		t.Fatal("the R3 click stream never had a leader and two current replicas")
	}

	l := newLoad(e.listen, "cl")
	stop := runLoad(t, l, loadSpec{rate: loadRate, convRate: 10, dur: 4*env.seconds + 90*time.Second})
	time.Sleep(time.Second)
	from := time.Now()
	phase := env.dur(0.4, 2*time.Second)

	leader := byName(info().Cluster.Leader)
	leader.proc.kill()
	k1 := time.Now()
	var newLeader string
	if !cxWait(30*time.Second, func() bool {
		i := info()
		if i != nil && i.Cluster.Leader != "" && i.Cluster.Leader != leader.name {
			newLeader = i.Cluster.Leader
			return true
		}
		return false
	}) {
		row.fail("no new leader 30s after the leader %s was killed", leader.name)
	}
	failover := time.Since(k1)
	time.Sleep(phase)
	leader.proc.start()
	if !cxWait(60*time.Second, allCurrent) {
		row.fail("the restarted %s did not catch up in 60s", leader.name)
	}
	time.Sleep(phase)

	i := info()
	if i == nil {
		t.Fatal("no stream info before the follower kill")
	}
	// A follower that has not been killed yet, if there is one.
	follower := byName(i.Cluster.Replicas[rand.IntN(len(i.Cluster.Replicas))].Name)
	for _, r := range i.Cluster.Replicas {
		if r.Name != leader.name {
			follower = byName(r.Name)
		}
	}
	follower.proc.kill()
	time.Sleep(phase)
	follower.proc.start()
	if !cxWait(60*time.Second, allCurrent) {
		row.fail("the restarted follower %s did not catch up in 60s", follower.name)
	}
	to := time.Now()
	time.Sleep(time.Second)
	stop()
	row.p99 = l.p99(from, to)

	st := finish(t, js, w, nil, e)
	missing := reconcile(l, st, row, 0)
	if len(missing) > 0 {
		row.note("clicks lost: %v", missing[:min(5, len(missing))])
	}
	msgs, dups, complete := streamDups(t, js, sink.ClickStream)
	row.note("killed leader %s (new leader %s in %.1fs), restarted it, then killed follower %s; %.0fs under fault; click stream %s msgs, %d repeated ids",
		leader.name, newLeader, failover.Seconds(), follower.name, to.Sub(from).Seconds(), scanNote(msgs, complete), dups)
}

// 5. NATS unreachable for longer than the streams' duplicate window while
// publishes are in flight: the edge publishes again after the window, the
// stream stores the copies, and the worker's own idempotency (click id,
// event id) keeps its state free of duplicates.
func chaosDupWindow(t *testing.T, env *chaosEnv, row *chaosRow) {
	ns := startNATS(t, env, "n1")
	_, js := cxConnect(t, ns.url)
	w := newWorker(t, env, ns.url, t.TempDir())
	w.start()
	px := newProxy(t, cxAddr(ns.port))
	e := newEdge(t, env, px.url())
	e.start()

	// The operator's `nats stream edit --dupe-window 1s`: the worker sets the
	// window when it starts and leaves it alone while it runs.
	const window = time.Second
	for _, name := range []string{sink.ClickStream, sink.EventStream} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := js.Stream(ctx, name)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		cfg.Duplicates = window
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			cancel()
			t.Fatalf("shorten the duplicate window of %s: %v", name, err)
		}
		cancel()
	}

	// The backlog stays within one shipper round (512 rows) so that all of
	// it is in flight when the acks stop, and lasts longer than the 2s a
	// conversion spends asking the unreachable worker before its commit,
	// so that merchant events are among the lost acks too.
	const rate = 100
	backlog, hole, outage := 3*time.Second, env.dur(0.25, 2*time.Second), env.dur(0.5, 4*window)
	l := newLoad(e.listen, "dw")
	stop := runLoad(t, l, loadSpec{rate: rate, convRate: 20, dur: backlog + hole + outage + 30*time.Second})
	time.Sleep(time.Second)
	f0 := time.Now()
	// A backlog builds in the outbox while the link is down...
	px.set(proxyCut)
	time.Sleep(backlog)
	// ...the edge reconnects and publishes it, the stream stores it, but no
	// ack comes back...
	px.set(proxyAckHole)
	time.Sleep(hole)
	// ...then the link is gone for longer than the duplicate window.
	px.set(proxyCut)
	time.Sleep(outage)
	px.set(proxyUp)
	f1 := time.Now()
	time.Sleep(env.dur(0.25, 3*time.Second))
	stop()
	row.p99 = l.p99(f0, f1)

	st := finish(t, js, w, nil, e)
	missing := reconcile(l, st, row, 0)
	if len(missing) > 0 {
		row.note("clicks lost: %v", missing[:min(5, len(missing))])
	}
	cm, cd, cok := streamDups(t, js, sink.ClickStream)
	em, ed, eok := streamDups(t, js, sink.EventStream)
	row.note("window %s; link cut %s, acks lost %s, cut %s: the streams took %d click and %d event copies past the window (of %s + %s msgs), the worker stored each once",
		window, backlog, hole, outage, cd, ed, scanNote(cm, cok), scanNote(em, eok))
	if cd+ed == 0 {
		row.fail("no publish was repeated after the window: the fault did not happen")
	}
}
