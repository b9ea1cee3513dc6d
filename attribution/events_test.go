package attribution

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickedge/clickedge/sink"
)

// publishEvent sends an event the way the edge's shipper does: on its
// merchant's subject, deduplicated by its id.
func publishEvent(t *testing.T, e *env, ev sink.Event) {
	t.Helper()
	publishEventAs(t, e, sink.EventSubjectPrefix+ev.MerchantID, ev.ID, ev)
}

func publishEventAs(t *testing.T, e *env, subject, msgID string, ev sink.Event) {
	t.Helper()
	ev.V = sink.EventVersion
	data, err := sink.AppendEvent(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(context.Background(), subject, data, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatalf("publish %s: %v", msgID, err)
	}
}

// labelled returns the value of a counter with exactly the given labels.
func labelled(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
		return 0
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// waitEventsApplied waits until the worker's event consumer has handled
// every message in the event stream. The deadline only stops a broken test
// from hanging.
func waitEventsApplied(t *testing.T, e *env, durable string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		stream, err := e.js.Stream(context.Background(), sink.EventStream)
		if err != nil {
			t.Fatal(err)
		}
		last := stream.CachedInfo().State.LastSeq
		if cons, err := e.js.Consumer(context.Background(), sink.EventStream, durable); err == nil {
			info := cons.CachedInfo()
			if info.AckFloor.Stream == last && info.NumAckPending == 0 && info.NumPending == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s did not apply the event stream", durable)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startEventWorker(t *testing.T, e *env, s *Store, durable string, now func() time.Time) (*Worker, *prometheus.Registry) {
	t.Helper()
	return startEventWorkerEvery(t, e, s, durable, now, 10*time.Millisecond)
}

func startEventWorkerEvery(t *testing.T, e *env, s *Store, durable string, now func() time.Time, approveEvery time.Duration) (*Worker, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	w := &Worker{
		Store: s, NC: e.nc, JS: e.js, Minter: testMinter(t, testSecret), Registerer: reg, Durable: durable, Now: now,
		Logger: slog.New(slog.DiscardHandler), FetchWait: 50 * time.Millisecond, ApproveInterval: approveEvery,
	}
	if _, err := w.SetCatalog(context.Background(), engineCatalog()); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w, reg
}

func TestWorkerEvents(t *testing.T) {
	e := newEnv(t)
	s := openStore(t)
	w, reg := startEventWorker(t, e, s, "", fixedNow(base.UnixMilli()))
	if w.EventDurable != "clickedge-worker-events" {
		t.Errorf("event durable = %q, want clickedge-worker-events", w.EventDurable)
	}
	f := &fixture{t: t, s: s, idx: w.index(), minter: w.Minter}
	// The click travels on its own stream, possibly behind the conversion.
	click := sink.Click{V: sink.ClickVersion, ID: w.Minter.New(base), TS: base.UnixMilli(), Source: sink.SourceRedirect,
		MerchantID: "m1", CampaignID: "k_last", PartnerID: "alice"}
	publishClick(t, e, click)
	ev := f.conv(10*time.Minute, sink.ConversionEvent{UniqueID: "order_456", ClickID: click.ID, AmountMinor: 9999, CustomerID: "cus_1"})
	ev.Dialect = sink.DialectAffilync

	// The edge's side: another connection, through the sink client. It
	// asks before the event exists and is answered when it is applied.
	edge := connectEnv(t, e.srv)
	client := &sink.APIClient{NC: edge.nc, Timeout: 10 * time.Second}
	type answer struct {
		r   sink.EventResult
		err error
	}
	waiting := make(chan answer, 1)
	go func() {
		r, err := client.EventResult(context.Background(), "m1", ev.ID, sink.MaxResultWait)
		waiting <- answer{r, err}
	}()
	// Let the request reach the worker first; either order must work.
	time.Sleep(50 * time.Millisecond)
	publishEvent(t, e, ev)
	got := <-waiting
	if got.err != nil {
		t.Fatalf("event result: %v", got.err)
	}
	c := got.r.Conversion
	if got.r.Outcome != sink.OutcomeApplied || got.r.EventID != ev.ID || c == nil || c.AttributedBy != sink.ByClickID ||
		c.PartnerID != "alice" || c.CommissionMinor != 1000 || c.ClickID != click.ID || c.Dialect != sink.DialectAffilync {
		t.Fatalf("result = %+v %+v, want applied, by click, alice, 1000", got.r, c)
	}

	// Reads through the edge's client agree with the store.
	if r, err := client.Conversion(context.Background(), "m1", "order_456"); err != nil || !reflect.DeepEqual(r, *c) {
		t.Errorf("conversion by unique id = %+v, %v", r, err)
	}
	if r, err := client.Conversion(context.Background(), "m1", c.ID); err != nil || r.ID != c.ID {
		t.Errorf("conversion by id = %+v, %v", r, err)
	}
	page, err := client.ListConversions(context.Background(), sink.ConversionQuery{MerchantID: "m1", PartnerID: "alice", Limit: 10})
	if err != nil || page.Total != 1 || len(page.Conversions) != 1 || page.Conversions[0].ID != c.ID {
		t.Errorf("list = %+v, %v", page, err)
	}
	if cu, err := client.Customer(context.Background(), "m1", "cus_1"); err != nil || cu.PartnerID != "alice" {
		t.Errorf("customer = %+v, %v", cu, err)
	}
	// Tenant isolation over the wire: another merchant gets not found.
	var ae *sink.APIError
	for _, ref := range []string{c.ID, "order_456"} {
		if _, err := client.Conversion(context.Background(), "m2", ref); !errors.As(err, &ae) || ae.Code != sink.APICodeNotFound {
			t.Errorf("m2 reads m1's %s: %v, want %s", ref, err, sink.APICodeNotFound)
		}
	}
	if _, err := client.Customer(context.Background(), "m2", "cus_1"); !errors.As(err, &ae) || ae.Code != sink.APICodeNotFound {
		t.Errorf("m2 reads m1's customer: %v", err)
	}
	if _, err := client.EventResult(context.Background(), "m2", ev.ID, 0); !errors.As(err, &ae) || ae.Code != sink.APICodePending {
		t.Errorf("m2 reads m1's event result: %v, want %s", err, sink.APICodePending)
	}
	if _, err := client.EventResult(context.Background(), "m1", "m1:conversion:never", 0); !errors.As(err, &ae) || ae.Code != sink.APICodePending {
		t.Errorf("unknown event: %v, want %s", err, sink.APICodePending)
	}
	if _, err := client.ListConversions(context.Background(), sink.ConversionQuery{}); !errors.As(err, &ae) {
		t.Errorf("list without merchant: %v, want an API error", err)
	}

	// Undecodable messages are terminated and counted; the same write under
	// another message id passes the stream's dedupe and is caught by the
	// worker; an event on another merchant's subject is refused.
	for id, data := range map[string]string{
		"garbage": "{not json",
		"future":  `{"v":99,"id":"x","merchant_id":"m1","kind":"conversion","conversion":{}}`,
	} {
		if _, err := e.js.Publish(context.Background(), sink.EventSubjectPrefix+"m1", []byte(data), jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	publishEventAs(t, e, sink.EventSubjectPrefix+"m1", "retry-"+ev.ID, ev)
	stray := f.conv(0, sink.ConversionEvent{UniqueID: "stray"})
	stray.MerchantID = "m2"
	publishEventAs(t, e, sink.EventSubjectPrefix+"m1", "stray", stray)
	status := f.status("order_456", sink.StatusApproved)
	publishEvent(t, e, status)
	r, err := w.EventResult(context.Background(), "m1", status.ID, sink.MaxResultWait)
	if err != nil || r.Outcome != sink.OutcomeApplied || r.Conversion.Status != sink.StatusApproved {
		t.Fatalf("approval: %+v, %v", r, err)
	}
	waitEventsApplied(t, e, w.EventDurable)
	for _, tt := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"kind": "conversion", "dialect": "affilync", "outcome": "applied"}, 1},
		{map[string]string{"kind": "conversion", "dialect": "affilync", "outcome": "duplicate"}, 1},
		{map[string]string{"kind": "conversion", "dialect": "unknown", "outcome": "invalid"}, 2},
		{map[string]string{"kind": "unknown", "dialect": "unknown", "outcome": "invalid"}, 1},
		{map[string]string{"kind": "status", "dialect": "partnac", "outcome": "applied"}, 1},
	} {
		if got := labelled(t, reg, "clickedge_worker_events_total", tt.labels); got != tt.want {
			t.Errorf("events_total%v = %v, want %v", tt.labels, got, tt.want)
		}
	}
	if got := labelled(t, reg, "clickedge_worker_conversions_total", map[string]string{"dialect": "affilync", "attributed_by": "click_id"}); got != 1 {
		t.Errorf("conversions_total = %v, want 1", got)
	}
	if got := labelled(t, reg, "clickedge_worker_ledger_entries_total", map[string]string{"kind": "commission"}); got != 1 {
		t.Errorf("ledger_entries_total{commission} = %v, want 1", got)
	}
	if got := labelled(t, reg, "clickedge_worker_ledger_minor_total", map[string]string{"kind": "commission", "currency": "USD"}); got != 1000 {
		t.Errorf("ledger_minor_total{commission,USD} = %v, want 1000", got)
	}
	if bal, paid, cur, err := w.PartnerBalance("m1", "alice"); bal != 1000 || paid != 0 || cur != "USD" || err != nil {
		t.Errorf("balance = %d %d %s %v", bal, paid, cur, err)
	}
	if entries, err := w.Ledger("m1", "alice"); err != nil || len(entries) != 1 || entries[0].EventID != ev.ID {
		t.Errorf("ledger = %+v, %v", entries, err)
	}

	// A stopped worker answers without touching the store its owner is
	// about to close, a waiting EventResult included.
	stopped := make(chan error, 1)
	go func() {
		_, err := w.EventResult(context.Background(), "m1", "m1:conversion:never", sink.MaxResultWait)
		stopped <- err
	}()
	w.Stop()
	if err := <-stopped; !errors.As(err, &ae) || ae.Code != sink.APICodeWorkerUnavailable {
		t.Errorf("waiting EventResult at Stop: %v, want %s", err, sink.APICodeWorkerUnavailable)
	}
	if _, err := w.Conversion(context.Background(), "m1", c.ID); !errors.As(err, &ae) || ae.Code != sink.APICodeWorkerUnavailable {
		t.Errorf("Conversion after Stop: %v, want %s", err, sink.APICodeWorkerUnavailable)
	}
}

func TestWorkerAutoApprove(t *testing.T) {
	e := newEnv(t)
	s := openStore(t)
	var clock atomic.Int64
	clock.Store(base.UnixMilli())
	w, reg := startEventWorker(t, e, s, "", func() time.Time { return time.UnixMilli(clock.Load()) })
	f := &fixture{t: t, s: s}
	ev := f.conv(0, sink.ConversionEvent{UniqueID: "held", PartnerKey: "ALICE", CampaignID: "k_hold", AmountMinor: 1000})
	publishEvent(t, e, ev)
	r, err := w.EventResult(context.Background(), "m1", ev.ID, sink.MaxResultWait)
	if err != nil || r.Conversion.Status != sink.StatusPending {
		t.Fatalf("conversion: %+v, %v", r, err)
	}
	// The hold is 60 s: at 59.999 s nothing is due.
	if due, _ := s.dueHolds(base.Add(60*time.Second-time.Millisecond).UnixMilli(), 10); len(due) != 0 {
		t.Errorf("due before the hold passed: %v", due)
	}
	clock.Store(base.Add(60 * time.Second).UnixMilli())
	approval := sink.EventID("m1", sink.KindStatus, r.Conversion.ID+":auto-approve")
	got, err := w.EventResult(context.Background(), "m1", approval, sink.MaxResultWait)
	if err != nil || got.Outcome != sink.OutcomeApplied || got.Conversion.Status != sink.StatusApproved {
		t.Fatalf("automatic approval: %+v, %v", got, err)
	}
	if got.Conversion.UpdatedAt != base.Add(60*time.Second).UnixMilli() {
		t.Errorf("approved at %d, want the worker clock's %d", got.Conversion.UpdatedAt, base.Add(60*time.Second).UnixMilli())
	}
	if due, _ := s.dueHolds(clock.Load(), 10); len(due) != 0 {
		t.Errorf("still held after approval: %v", due)
	}
	if n := labelled(t, reg, "clickedge_worker_auto_approvals_total", nil); n < 1 {
		t.Errorf("auto approvals = %v, want at least 1", n)
	}
	// The approval is an event in the stream: a replay reproduces it.
	waitEventsApplied(t, e, w.EventDurable)
	w.Stop()
	fresh := openStore(t)
	w2, _ := startEventWorker(t, e, fresh, "rebuild", fixedNow(base.UnixMilli()))
	waitEventsApplied(t, e, w2.EventDurable)
	if got := snapshot(t, fresh); !reflect.DeepEqual(got, snapshot(t, s)) {
		t.Errorf("rebuilt store differs:\n%v\n%v", got, snapshot(t, s))
	}
}

// TestWorkerRebuildFromStreams publishes clicks and a random sequence of
// events, then rebuilds an empty store from both streams with new durables:
// every conversion, customer, ledger entry and result must be the same.
func TestWorkerRebuildFromStreams(t *testing.T) {
	e := newEnv(t)
	s := openStore(t)
	w, _ := startEventWorker(t, e, s, "", fixedNow(base.UnixMilli()))
	g := newGenerator(t, 42, w.Minter)
	for _, c := range g.clicks {
		publishClick(t, e, c)
	}
	events := g.sequence(120)
	for _, ev := range events {
		// Repeats of an id pass the stream's dedupe window under another
		// message id, as they would after it.
		publishEventAs(t, e, sink.EventSubjectPrefix+ev.MerchantID, ev.ID+"#"+itoa(int64(g.published[ev.ID])), ev)
		g.published[ev.ID]++
	}
	waitEventsApplied(t, e, w.EventDurable)
	if err := s.db.View(checkInvariants); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, s)
	if len(want["conversions"]) < 20 {
		t.Fatalf("only %d conversions: the sequence exercises too little", len(want["conversions"]))
	}
	w.Stop()

	fresh := openStore(t)
	w2, _ := startEventWorker(t, e, fresh, "rebuild", fixedNow(base.UnixMilli()))
	waitEventsApplied(t, e, w2.EventDurable)
	if got := snapshot(t, fresh); !reflect.DeepEqual(got, want) {
		for b := range want {
			if !reflect.DeepEqual(got[b], want[b]) {
				t.Errorf("bucket %s differs after rebuild", b)
			}
		}
	}
	for _, p := range []string{"alice", "bob", "carol"} {
		b1, p1, _, err1 := s.PartnerBalance("m1", p)
		b2, p2, _, err2 := fresh.PartnerBalance("m1", p)
		if b1 != b2 || p1 != p2 || (err1 == nil) != (err2 == nil) {
			t.Errorf("partner %s: balance %d/%d paid %d/%d after rebuild", p, b1, b2, p1, p2)
		}
	}
}

func TestWorkerHandleEventsStoreFailure(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "w.db")
	s := NewStore(path)
	s.NoSync = true
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	// The store is closed under the running worker, which a real owner
	// never does: keep the approval loop away from it.
	w, reg := startEventWorkerEvery(t, e, s, "", fixedNow(0), time.Hour)
	m := w.metrics.Load()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t}
	ev := f.conv(0, sink.ConversionEvent{UniqueID: "o1"})
	ev.V = sink.EventVersion
	data, _ := sink.AppendEvent(nil, &ev)
	good := &fakeEventMsg{fakeMsg: fakeMsg{data: data}, subject: sink.EventSubjectPrefix + "m1"}
	bad := &fakeEventMsg{fakeMsg: fakeMsg{data: []byte(`{"v":2}`)}, subject: sink.EventSubjectPrefix + "m1"}
	if err := w.handleEvents(context.Background(), m, []jetstream.Msg{good, bad}); !errors.Is(err, ErrStoreClosed) {
		t.Errorf("handle on a closed store: err = %v, want ErrStoreClosed", err)
	}
	if !bad.termed || good.termed {
		t.Errorf("terminated: invalid %v, valid %v; want true, false", bad.termed, good.termed)
	}
	if got := labelled(t, reg, "clickedge_worker_events_total", map[string]string{"kind": "conversion", "dialect": "affilync", "outcome": "applied"}); got != 0 {
		t.Errorf("a failed batch counted %v applied events", got)
	}
	if got := labelled(t, reg, "clickedge_worker_event_commits_total", nil); got != 0 {
		t.Errorf("a failed batch counted %v commits", got)
	}
}

type fakeEventMsg struct {
	fakeMsg
	subject string
}

func (m *fakeEventMsg) Subject() string { return m.subject }
func (m *fakeEventMsg) Term() error     { m.termed = true; return nil }

// TestWorkerClickWait forces the order the click barrier exists for: the
// conversion is in the event stream while its click, though already in the
// click stream, has not reached the store (it is held back by a redelivery
// delay on the worker's own click consumer). Within ClickWait the worker
// waits for the click and attributes by it; with the wait turned off, or a
// click later than the wait, the conversion is applied without it
// (unknown_click).
func TestWorkerClickWait(t *testing.T) {
	const durable = "clickwait"
	const clickDelay = 1500 * time.Millisecond
	tests := []struct {
		name      string
		clickWait time.Duration
		by        string
		flags     []string
		minWait   time.Duration // the conversion waited at least this long
	}{
		{"click arrives within the wait", 10 * time.Second, sink.ByClickID, nil, clickDelay - 200*time.Millisecond},
		{"wait turned off", -1, sink.ByNone, []string{FlagUnknownClick}, 0},
		{"click later than the wait", 300 * time.Millisecond, sink.ByNone, []string{FlagUnknownClick}, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			s := openStore(t)
			if err := sink.EnsureStreams(ctx, e.js, sink.StreamConfig{}); err != nil {
				t.Fatal(err)
			}
			// The worker's click consumer, created first with the very
			// configuration the worker gives it, so that the worker's
			// CreateOrUpdateConsumer changes nothing.
			cons, err := e.js.CreateOrUpdateConsumer(ctx, sink.ClickStream, jetstream.ConsumerConfig{
				Durable: durable, Description: "clickedge worker", FilterSubject: sink.ClickSubjectPrefix + ">",
				DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckExplicitPolicy,
				AckWait: sink.DefaultConsumerAckWait, MaxDeliver: -1, MaxAckPending: sink.DefaultConsumerMaxAckPending,
			})
			if err != nil {
				t.Fatal(err)
			}
			minter := testMinter(t, testSecret)
			click := sink.Click{V: sink.ClickVersion, ID: minter.New(base), TS: base.UnixMilli(), Source: sink.SourceRedirect,
				MerchantID: "m1", CampaignID: "k_last", PartnerID: "alice"}
			publishClick(t, e, click)
			// Take the click off the consumer and hand it back with a
			// delay: it stays pending, unstored, for clickDelay.
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			var held int
			for msg := range batch.Messages() {
				if err := msg.NakWithDelay(clickDelay); err != nil {
					t.Fatal(err)
				}
				held++
			}
			if held != 1 {
				t.Fatalf("fetched %d clicks, want 1 (%v)", held, batch.Error())
			}
			heldAt := time.Now()

			w := &Worker{
				Store: s, NC: e.nc, JS: e.js, Minter: minter, Registerer: prometheus.NewRegistry(), Durable: durable,
				Now: fixedNow(base.UnixMilli()), Logger: slog.New(slog.DiscardHandler), FetchWait: 50 * time.Millisecond,
				ClickWait: tt.clickWait,
			}
			if _, err := w.SetCatalog(ctx, engineCatalog()); err != nil {
				t.Fatal(err)
			}
			if err := w.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(w.Stop)
			f := &fixture{t: t, s: s}
			ev := f.conv(10*time.Minute, sink.ConversionEvent{UniqueID: "o1", ClickID: click.ID, AmountMinor: 10000})
			publishEvent(t, e, ev)
			r, err := w.EventResult(ctx, "m1", ev.ID, sink.MaxResultWait)
			if err != nil || r.Conversion == nil {
				t.Fatalf("event result: %+v, %v", r, err)
			}
			waited := time.Since(heldAt)
			c := r.Conversion
			flags := c.Flags
			if flags == nil {
				flags = []string{}
			}
			wantFlags := tt.flags
			if wantFlags == nil {
				wantFlags = []string{}
			}
			if c.AttributedBy != tt.by || !reflect.DeepEqual(flags, wantFlags) || c.ClickID != click.ID {
				t.Errorf("by %s flags %q click %s, want %s %q %s", c.AttributedBy, flags, c.ClickID, tt.by, wantFlags, click.ID)
			}
			if tt.by == sink.ByClickID && (c.PartnerID != "alice" || c.CommissionMinor != 1000) {
				t.Errorf("partner %s commission %d, want alice 1000", c.PartnerID, c.CommissionMinor)
			}
			if waited < tt.minWait {
				t.Errorf("the conversion was applied %v after the click was held back, want at least %v", waited, tt.minWait)
			}
			if tt.by == sink.ByNone && tt.clickWait < 0 && waited >= clickDelay {
				t.Errorf("with the wait turned off the conversion still waited %v", waited)
			}
		})
	}
}

// TestWorkerStoresNotes: through the streams, a refund's reason becomes the
// note of the ledger entry it books and an approval's note is kept on the
// conversion, both readable through the worker's API.
func TestWorkerStoresNotes(t *testing.T) {
	e := newEnv(t)
	s := openStore(t)
	w, _ := startEventWorker(t, e, s, "", fixedNow(base.UnixMilli()))
	f := &fixture{t: t, s: s}
	conv := f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o1", PartnerKey: "ALICE", AmountMinor: 10000})
	refund := f.event("m1", time.Hour, sink.KindRefund, &sink.RefundEvent{UniqueID: "o1", AmountMinor: 5000,
		ExternalRefundID: "re_1", Reason: "customer_request", ReversePaidEarnings: true})
	status := f.event("m1", time.Hour, sink.KindStatus, &sink.StatusEvent{UniqueID: "o1", Status: sink.StatusApproved, Note: "Verified in our system"})
	status.Dialect = sink.DialectAffilync
	for _, ev := range []sink.Event{conv, refund, status} {
		publishEvent(t, e, ev)
		if r, err := w.EventResult(context.Background(), "m1", ev.ID, sink.MaxResultWait); err != nil || r.Outcome != sink.OutcomeApplied {
			t.Fatalf("%s: %+v, %v", ev.ID, r, err)
		}
	}
	rec, err := w.Conversion(context.Background(), "m1", "o1")
	if err != nil || rec.Note != "Verified in our system" || rec.Status != sink.StatusApproved || rec.RefundedMinor != 5000 {
		t.Errorf("conversion = %+v, %v; want approved with the note, 50.00 refunded", rec, err)
	}
	entries, err := w.Ledger("m1", "alice")
	if err != nil || len(entries) != 2 {
		t.Fatalf("ledger = %+v, %v", entries, err)
	}
	if e := entries[1]; e.Kind != LedgerReversal || e.AmountMinor != -500 || e.Note != "customer_request" || e.EventID != refund.ID {
		t.Errorf("refund entry = %+v, want reversal -500 noted customer_request by %s", e, refund.ID)
	}
}
