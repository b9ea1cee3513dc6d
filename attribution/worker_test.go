package attribution

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
	"github.com/clickedge/clickedge/sink/sinktest"
)

var (
	testSecret  = []byte("0123456789abcdef0123456789abcdef-worker-test")
	otherSecret = []byte("fedcba9876543210fedcba9876543210-other-edge")
)

// env is one embedded JetStream server with a client connection.
type env struct {
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := sinktest.RunServer(t, t.TempDir(), -1)
	return connectEnv(t, srv)
}

func connectEnv(t *testing.T, srv *server.Server) *env {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, nc: nc, js: js}
}

func testMinter(t testing.TB, secret []byte) *redirect.Minter {
	t.Helper()
	m, err := redirect.NewMinter(secret)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fixedNow is the worker clock in tests; ReceivedAt proves which worker
// stored a click.
func fixedNow(ms int64) func() time.Time {
	return func() time.Time { return time.UnixMilli(ms) }
}

// logBuffer collects JSON log lines from the worker's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the decoded log records whose msg is msg.
func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(b.buf.Bytes()), []byte("\n")) {
		var r map[string]any
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

func newWorker(t *testing.T, e *env, s *Store, durable string, now int64) (*Worker, *prometheus.Registry) {
	w, reg, _ := newLoggedWorker(t, e, s, durable, now)
	return w, reg
}

func newLoggedWorker(t *testing.T, e *env, s *Store, durable string, now int64) (*Worker, *prometheus.Registry, *logBuffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &logBuffer{}
	w := &Worker{
		Store: s, NC: e.nc, JS: e.js, Minter: testMinter(t, testSecret),
		Logger:     slog.New(slog.NewJSONHandler(logs, nil)),
		Registerer: reg, Durable: durable, Now: fixedNow(now),
		// Batches are handed over when full or when this expires; tests
		// publish far fewer than a batch.
		FetchWait: 50 * time.Millisecond,
		// A stopped worker's last pull request can outlive it on the
		// server for up to FetchWait; a message the server hands to it in
		// that moment is redelivered after AckWait. Tests restart workers
		// on one connection, so they keep that wait well inside their
		// deadlines (in production the default 30 s only delays a few
		// messages after a restart; nothing is lost).
		AckWait: 3 * time.Second,
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w, reg, logs
}

// publish sends raw click data the way the edge's shipper does: one message
// per click on the merchant's subject, deduplicated by msgID.
func publish(t *testing.T, e *env, merchant, msgID string, data []byte) {
	t.Helper()
	_, err := e.js.Publish(context.Background(), sink.ClickSubjectPrefix+merchant, data, jetstream.WithMsgID(msgID))
	if err != nil {
		t.Fatalf("publish %s: %v", msgID, err)
	}
}

func publishClick(t *testing.T, e *env, c sink.Click) {
	t.Helper()
	data, err := sink.AppendClick(nil, &c)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, e, c.MerchantID, c.ID, data)
}

// metric returns the value of a counter or gauge in reg with the given
// result label ("" for none), gathering afresh.
func metric(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			label := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					label = l.GetValue()
				}
			}
			if label != result {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s{result=%q} not found", name, result)
	return 0
}

func consumedTotal(t *testing.T, reg *prometheus.Registry) int {
	n := 0.0
	for _, r := range []string{ResultStored, ResultDuplicate, ResultForged, ResultInvalid} {
		n += metric(t, reg, "clickedge_worker_clicks_consumed_total", r)
	}
	return int(n)
}

// waitConsumed waits until the worker has handled n messages in all. The
// deadline only stops a broken test from hanging; nothing is asserted on
// how long it took.
func waitConsumed(t *testing.T, reg *prometheus.Registry, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := consumedTotal(t, reg)
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("worker consumed %d messages, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWorkerConsumes(t *testing.T) {
	e := newEnv(t)
	s := openStore(t)
	w, reg, logs := newLoggedWorker(t, e, s, "", 777)
	if w.Durable != DefaultDurable {
		t.Errorf("durable = %q, want %q", w.Durable, DefaultDurable)
	}
	minter := testMinter(t, testSecret)
	foreign := testMinter(t, otherSecret)
	base := time.Date(2025, 4, 1, 10, 0, 0, 0, time.UTC)

	var good []sink.Click
	for i := range 5 {
		ts := base.Add(time.Duration(i) * time.Second)
		c := click(minter.New(ts), ts.UnixMilli(), "demo", "spring", "alice")
		c.ReceivedAt = 1 // the worker's to set
		if i == 0 {
			c.Forged = true // likewise: a lying edge cannot mark a good click forged
		}
		good = append(good, c)
		publishClick(t, e, c)
	}
	forgedTag := click(foreign.New(base), base.UnixMilli(), "demo", "spring", "bob")
	malformed := click("not-a-click-id", base.UnixMilli(), "demo", "", "")
	publishClick(t, e, forgedTag)
	publishClick(t, e, malformed)
	// The same click again under a new message id passes the stream's
	// dedupe and must be caught by the store; under its own id it never
	// reaches the worker.
	dup := good[1]
	dup.Edge = "replayer"
	data, _ := sink.AppendClick(nil, &dup)
	publish(t, e, "demo", "retry-"+dup.ID, data)
	publish(t, e, "demo", dup.ID, data)
	publish(t, e, "demo", "garbage", []byte("{not json"))
	publish(t, e, "demo", "future", []byte(`{"v":99,"id":"x","merchant_id":"demo"}`))
	publish(t, e, "demo", "nul", []byte(`{"v":1,"id":"x","merchant_id":"de\u0000mo"}`))

	// 5 good, 2 forged, 1 duplicate, 3 invalid; the same-id republish was
	// deduplicated by the stream.
	waitConsumed(t, reg, 11)
	for _, tt := range []struct {
		result string
		want   float64
	}{{ResultStored, 5}, {ResultForged, 2}, {ResultDuplicate, 1}, {ResultInvalid, 3}} {
		if got := metric(t, reg, "clickedge_worker_clicks_consumed_total", tt.result); got != tt.want {
			t.Errorf("consumed{result=%s} = %v, want %v", tt.result, got, tt.want)
		}
	}
	// Each terminated message is logged with where to find it in the stream.
	terminated := logs.records(t, "terminating undecodable click message")
	var seqs []float64
	for _, r := range terminated {
		if r["subject"] != sink.ClickSubjectPrefix+"demo" || r["component"] != "worker" {
			t.Errorf("termination log %v: want subject %sdemo and component worker", r, sink.ClickSubjectPrefix)
		}
		seq, _ := r["seq"].(float64)
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	if want := []float64{9, 10, 11}; !slices.Equal(seqs, want) {
		t.Errorf("terminated stream sequences logged = %v, want %v", seqs, want)
	}
	if got := metric(t, reg, "clickedge_worker_store_commits_total", ""); got < 1 {
		t.Errorf("store commits = %v, want at least 1", got)
	}

	for _, c := range good {
		got, ok, err := s.Click(c.ID)
		if err != nil || !ok {
			t.Fatalf("click %s: found %v, %v", c.ID, ok, err)
		}
		want := c
		want.Forged, want.ReceivedAt = false, 777
		if !reflect.DeepEqual(got, want) {
			t.Errorf("stored click = %+v, want %+v", got, want)
		}
	}
	for _, c := range []sink.Click{forgedTag, malformed} {
		got, ok, err := s.Click(c.ID)
		if err != nil || !ok || !got.Forged || got.ReceivedAt != 777 {
			t.Errorf("click %s: found %v, forged %v, received %d, err %v; want stored as forged at 777",
				c.ID, ok, got.Forged, got.ReceivedAt, err)
		}
	}
	if got, _, _ := s.Click(dup.ID); got.Edge == "replayer" {
		t.Error("a duplicate overwrote the stored click")
	}
	if n, _ := s.ClickCount(); n != 7 {
		t.Errorf("store holds %d clicks, want 7", n)
	}

	// Everything was acked or terminated: nothing waits for redelivery.
	cons, err := e.js.Consumer(context.Background(), sink.ClickStream, DefaultDurable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 || info.NumRedelivered != 0 || info.AckFloor.Stream != 11 {
		t.Errorf("consumer: ack pending %d, pending %d, redelivered %d, ack floor %d; want 0, 0, 0, 11",
			info.NumAckPending, info.NumPending, info.NumRedelivered, info.AckFloor.Stream)
	}
	// waitConsumed's scrapes cached the backlog; forget it.
	m := w.metrics.Load()
	m.pendingMu.Lock()
	m.pendingAt = time.Time{}
	m.pendingMu.Unlock()
	if got := metric(t, reg, "clickedge_worker_pending", ""); got != 0 {
		t.Errorf("pending gauge = %v, want 0", got)
	}
}

func TestWorkerRestartAndReplay(t *testing.T) {
	e := newEnv(t)
	s := openStore(t)
	minter := testMinter(t, testSecret)
	base := time.Date(2025, 4, 1, 10, 0, 0, 0, time.UTC)
	var published []sink.Click
	publishN := func(n int) {
		for range n {
			ts := base.Add(time.Duration(len(published)) * time.Minute)
			partner := []string{"alice", "bob"}[len(published)%2]
			c := click(minter.New(ts), ts.UnixMilli(), "demo", "spring", partner)
			published = append(published, c)
			publishClick(t, e, c)
		}
	}
	snapshot := func() []sink.ClickPage {
		var pages []sink.ClickPage
		for _, q := range []sink.ClickQuery{
			{MerchantID: "demo", Limit: 100},
			{MerchantID: "demo", PartnerID: "bob", Limit: 100},
			{MerchantID: "demo", CampaignID: "spring", PartnerID: "alice", Limit: 100},
		} {
			p, err := s.ListClicks(q)
			if err != nil {
				t.Fatal(err)
			}
			pages = append(pages, p)
		}
		return pages
	}

	w1, reg1 := newWorker(t, e, s, "", 1000)
	publishN(10)
	waitConsumed(t, reg1, 10)
	w1.Stop()
	w1.Stop() // harmless

	// Clicks that arrive while no worker runs wait in the stream.
	publishN(5)
	w2, reg2 := newWorker(t, e, s, "", 2000)
	waitConsumed(t, reg2, 5)
	if got := metric(t, reg2, "clickedge_worker_clicks_consumed_total", ResultStored); got != 5 {
		t.Errorf("restarted worker stored %v, want the 5 new clicks", got)
	}
	w2.Stop()
	before := snapshot()
	if before[0].Total != 15 {
		t.Fatalf("store holds %d clicks, want 15", before[0].Total)
	}

	// Rebuild check: a new durable replays the whole stream into the same
	// store and changes nothing, not even ReceivedAt.
	_, reg3 := newWorker(t, e, s, "replay", 3000)
	waitConsumed(t, reg3, 15)
	if got := metric(t, reg3, "clickedge_worker_clicks_consumed_total", ResultDuplicate); got != 15 {
		t.Errorf("replay: %v duplicates, want 15", got)
	}
	if after := snapshot(); !reflect.DeepEqual(after, before) {
		t.Errorf("replaying the stream changed the store:\nbefore %+v\nafter  %+v", before, after)
	}

	// The same replay into an empty store rebuilds it.
	fresh := openStore(t)
	_, reg4 := newWorker(t, e, fresh, "rebuild", 1000)
	waitConsumed(t, reg4, 15)
	if n, _ := fresh.ClickCount(); n != 15 {
		t.Errorf("rebuilt store holds %d clicks, want 15", n)
	}
}

func TestWorkerSetCatalog(t *testing.T) {
	e := newEnv(t)
	s := openStore(t)
	at := time.Date(2025, 5, 6, 7, 8, 9, 0, time.FixedZone("CEST", 2*3600))
	reg := prometheus.NewRegistry()
	w := &Worker{
		Store: s, NC: e.nc, JS: e.js, Minter: testMinter(t, testSecret), Registerer: reg,
		Now: func() time.Time { return at },
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	kv, err := e.js.KeyValue(context.Background(), sink.CatalogBucket)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := w.Catalog(); c != nil || err != nil {
		t.Fatalf("Catalog() before any = %v, %v, want nil, nil", c, err)
	}

	tests := []struct {
		name        string
		fileVersion uint64
		wantVersion uint64
	}{
		{"first, version 0", 0, 1},
		{"stored+1 wins", 0, 2},
		{"file version wins", 10, 10},
		{"stale file version", 3, 11},
		{"equal to stored", 11, 12},
	}
	for _, tt := range tests {
		in := DemoCatalog("ce_live_key")
		in.Version = tt.fileVersion
		got, err := w.SetCatalog(context.Background(), in)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got.Version != tt.wantVersion || !got.UpdatedAt.Equal(at) || got.UpdatedAt.Location() != time.UTC {
			t.Errorf("%s: version %d at %v, want %d at %v UTC", tt.name, got.Version, got.UpdatedAt, tt.wantVersion, at)
		}
		if in.Version != tt.fileVersion || !in.UpdatedAt.IsZero() {
			t.Errorf("%s: SetCatalog modified its argument", tt.name)
		}
		entry, err := kv.Get(context.Background(), sink.CatalogKey)
		if err != nil {
			t.Fatal(err)
		}
		var published redirect.Catalog
		if err := json.Unmarshal(entry.Value(), &published); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&published, got) {
			t.Errorf("%s: KV holds %+v, want %+v", tt.name, published, got)
		}
		stored, err := w.Catalog()
		if err != nil || !reflect.DeepEqual(stored, got) {
			t.Errorf("%s: stored %+v, %v, want %+v", tt.name, stored, err, got)
		}
		if v := metric(t, reg, "clickedge_catalog_version", ""); v != float64(tt.wantVersion) {
			t.Errorf("%s: version gauge = %v, want %d", tt.name, v, tt.wantVersion)
		}
	}

	bad := DemoCatalog("k")
	bad.Links[0].PartnerID = "nobody"
	status, _ := kv.Status(context.Background())
	if _, err := w.SetCatalog(context.Background(), bad); !errors.Is(err, redirect.ErrInvalidCatalog) {
		t.Errorf("invalid catalog: err = %v, want ErrInvalidCatalog", err)
	}
	if _, err := w.SetCatalog(context.Background(), nil); err == nil {
		t.Error("nil catalog accepted")
	}
	after, _ := kv.Status(context.Background())
	if after.Values() != status.Values() {
		t.Error("an invalid catalog reached the KV bucket")
	}
	if c, _ := w.Catalog(); c.Version != 12 {
		t.Errorf("an invalid catalog changed the stored one: version %d", c.Version)
	}
}

func TestWorkerStartRepublishesCatalog(t *testing.T) {
	s := openStore(t)
	e1 := newEnv(t)
	w1, _ := newWorker(t, e1, s, "", 0)
	want, err := w1.SetCatalog(context.Background(), DemoCatalog("k"))
	if err != nil {
		t.Fatal(err)
	}
	w1.Stop()

	kvRevision := func(e *env) uint64 {
		kv, err := e.js.KeyValue(context.Background(), sink.CatalogBucket)
		if err != nil {
			t.Fatal(err)
		}
		entry, err := kv.Get(context.Background(), sink.CatalogKey)
		if err != nil {
			t.Fatal(err)
		}
		var got redirect.Catalog
		if err := json.Unmarshal(entry.Value(), &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, want) {
			t.Errorf("KV holds %+v, want %+v", got, want)
		}
		return entry.Revision()
	}
	// Restarting against the same NATS leaves the bucket alone.
	rev := kvRevision(e1)
	_, reg := newWorker(t, e1, s, "", 0)
	if got := kvRevision(e1); got != rev {
		t.Errorf("restart re-put an unchanged catalog: revision %d, want %d", got, rev)
	}
	if v := metric(t, reg, "clickedge_catalog_version", ""); v != float64(want.Version) {
		t.Errorf("version gauge = %v, want %d", v, want.Version)
	}

	// A fresh NATS (new cluster, lost bucket) gets the stored catalog at Start.
	e2 := newEnv(t)
	newWorker(t, e2, s, "", 0)
	kvRevision(e2)
}

func TestWorkerListClicksOverNATS(t *testing.T) {
	e := newEnv(t)
	s := openStore(t)
	w, _ := newWorker(t, e, s, "", 0)
	var batch []sink.Click
	for i := range 12 {
		batch = append(batch, click(fmt.Sprintf("id%02d", i), int64(i), "demo", []string{"spring", "s2s"}[i%2], "alice"))
	}
	if _, err := s.PutClicks(batch); err != nil {
		t.Fatal(err)
	}
	// The edge's side: another connection, through the sink client.
	edge := connectEnv(t, e.srv)
	client := &sink.APIClient{NC: edge.nc, Timeout: 10 * time.Second}
	for _, q := range []sink.ClickQuery{
		{MerchantID: "demo", Limit: 5, Offset: 2},
		{MerchantID: "demo", CampaignID: "s2s", Limit: 100},
		{MerchantID: "nobody", Limit: 10},
	} {
		got, err := client.ListClicks(context.Background(), q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		want, err := s.ListClicks(q)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%+v over NATS = %+v, want %+v", q, got, want)
		}
	}
	for _, q := range []sink.ClickQuery{{}, {CampaignID: "spring"}} {
		_, err := client.ListClicks(context.Background(), q)
		var ae *sink.APIError
		if !errors.As(err, &ae) || ae.Code != CodeInvalidRequest {
			t.Errorf("%+v: err = %v, want APIError %s", q, err, CodeInvalidRequest)
		}
		if _, err := w.ListClicks(context.Background(), q); !errors.As(err, &ae) || ae.Code != CodeInvalidRequest {
			t.Errorf("direct %+v: err = %v, want APIError %s", q, err, CodeInvalidRequest)
		}
	}
	if _, err := w.ListClicks(context.Background(), sink.ClickQuery{MerchantID: "demo", Offset: -1}); err == nil {
		t.Error("negative offset accepted")
	}

	w.Stop()
	_, err := client.ListClicks(context.Background(), sink.ClickQuery{MerchantID: "demo"})
	var ae *sink.APIError
	if !errors.As(err, &ae) || ae.Code != sink.APICodeWorkerUnavailable {
		t.Errorf("after Stop: err = %v, want %s", err, sink.APICodeWorkerUnavailable)
	}
}

func TestWorkerStartErrors(t *testing.T) {
	e := newEnv(t)
	s := openStore(t)
	if err := (&Worker{NC: e.nc, JS: e.js}).Start(context.Background()); err == nil {
		t.Error("Start without Store and Minter succeeded")
	}
	w, reg := newWorker(t, e, s, "", 0)
	if err := w.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	// A second worker on the same registry fails while the first runs and
	// succeeds once it has stopped.
	w2 := &Worker{Store: s, NC: e.nc, JS: e.js, Minter: testMinter(t, testSecret), Registerer: reg, Durable: "second"}
	if err := w2.Start(context.Background()); err == nil {
		w2.Stop()
		t.Error("two workers registered the same metrics")
	}
	w.Stop()
	if err := w2.Start(context.Background()); err != nil {
		t.Errorf("start after the first stopped: %v", err)
	}
	w2.Stop()
}

func TestWorkerHandleStoreFailure(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "w.db")
	s := NewStore(path)
	s.NoSync = true
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	w, reg := newWorker(t, e, s, "", 5)
	m := w.metrics.Load()
	// A failing commit fails the batch (the consumer naks it): none of its
	// clicks is counted, only the message terminated on the way.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c := click(testMinter(t, testSecret).New(time.Now()), 1, "demo", "", "")
	data, _ := sink.AppendClick(nil, &c)
	good, bad := &fakeMsg{data: data}, &fakeMsg{data: []byte(`{"v":2}`)}
	if err := w.handle(m, []jetstream.Msg{good, bad}); !errors.Is(err, ErrStoreClosed) {
		t.Errorf("handle on a closed store: err = %v, want ErrStoreClosed", err)
	}
	// The batch will be nak'ed and redelivered; the invalid message must
	// not come back with it.
	if !bad.termed || good.termed {
		t.Errorf("terminated: invalid %v, valid %v; want true, false", bad.termed, good.termed)
	}
	if got := metric(t, reg, "clickedge_worker_clicks_consumed_total", ResultInvalid); got != 1 {
		t.Errorf("invalid = %v, want 1", got)
	}
	if got := metric(t, reg, "clickedge_worker_clicks_consumed_total", ResultStored) +
		metric(t, reg, "clickedge_worker_clicks_consumed_total", ResultForged); got != 0 {
		t.Errorf("a failed batch counted %v clicks as stored", got)
	}
	if got := metric(t, reg, "clickedge_worker_store_commits_total", ""); got != 0 {
		t.Errorf("a failed batch counted %v commits", got)
	}
}

// fakeMsg is a message that only carries data and records Term, for
// driving handle directly.
type fakeMsg struct {
	jetstream.Msg
	data   []byte
	termed bool
}

func (m *fakeMsg) Data() []byte    { return m.data }
func (m *fakeMsg) Subject() string { return sink.ClickSubjectPrefix + "demo" }
func (m *fakeMsg) Term() error     { m.termed = true; return nil }
func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return nil, errors.New("no metadata")
}
