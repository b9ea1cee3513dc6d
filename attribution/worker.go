package attribution

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// DefaultDurable is the durable consumer name of a worker that sets none.
const DefaultDurable = "clickedge-worker"

// CodeInvalidRequest is the APIError code of a query the worker refuses, such
// as one without a merchant.
const CodeInvalidRequest = "invalid_request"

// Results of consuming one click message, the values of the result label of
// clickedge_worker_clicks_consumed_total.
const (
	ResultStored    = "stored"    // new click with a verified id
	ResultDuplicate = "duplicate" // click id already stored; left untouched
	ResultForged    = "forged"    // new click whose id does not verify; stored with Forged set
	ResultInvalid   = "invalid"   // undecodable or unknown version; terminated, not stored
)

// pendingCacheTTL bounds how often a scrape of clickedge_worker_pending asks
// JetStream for consumer info; scrapes in between see the cached value.
const pendingCacheTTL = 5 * time.Second

// Worker consumes clicks and merchant events from JetStream into its Store,
// attributes conversions and books commissions, serves the read API and the
// conversion API (sink.Backend) over NATS and publishes the catalog to the
// KV bucket the edges watch. It is the single writer of its partition: the
// events of a batch are applied in stream order in one transaction, then
// acked. Set the exported fields, then Start (which fills in defaults) and
// leave them alone afterwards; Stop ends it. The Store must be open before
// Start and is not closed by Stop: its owner closes it.
type Worker struct {
	Store *Store
	NC    *nats.Conn
	JS    jetstream.JetStream
	// Minter verifies click ids; a click whose id fails is stored as forged.
	Minter *redirect.Minter
	// Logger receives the worker's logs under component=worker; nil discards.
	Logger *slog.Logger
	// Registerer, when set, receives the worker's metrics at Start; Stop
	// unregisters them so that a new worker can register on the same one.
	Registerer prometheus.Registerer
	// Durable names the click consumer; empty means DefaultDurable. A new
	// name replays the whole stream, which changes nothing in the store.
	Durable string
	// EventDurable names the consumer of the merchant event stream; empty
	// means Durable + DefaultEventDurableSuffix ("clickedge-worker-events").
	// A new name replays every event, which changes nothing in the store;
	// into an empty store (with the same catalog) it rebuilds every
	// conversion, customer and ledger entry exactly.
	EventDurable string
	// Rebuild deletes the worker's durable consumers at Start, so that both
	// streams are replayed from their first message into the store: to
	// rebuild an empty store, or to catch a restored backup up. Replay
	// changes nothing that the store already holds.
	Rebuild bool
	// Now stamps ReceivedAt on clicks and UpdatedAt on catalogs; nil means
	// time.Now.
	Now func() time.Time

	// FilterSubject restricts consumption to some merchants' subjects, for
	// a worker that owns one partition; empty means ClickSubjectPrefix + ">".
	FilterSubject string
	// EventFilterSubject does the same for merchant events; empty means
	// sink.EventSubjectPrefix + ">".
	EventFilterSubject string
	// ClickWait bounds how long a batch of events waits for the click
	// consumer to catch up when a conversion names a verified click the
	// store does not hold yet; 0 means DefaultClickWait, negative never
	// waits. Keep it well below AckWait.
	ClickWait time.Duration
	// ApproveInterval is how often pending conversions whose campaign hold
	// has passed are looked for; 0 means DefaultApproveInterval.
	ApproveInterval time.Duration
	// Streams sizes the click stream that Start ensures.
	Streams sink.StreamConfig
	// KVReplicas is the catalog bucket's replication factor; 0 means 1.
	KVReplicas int
	// Batch is the most clicks, or events, stored in one commit; 0 means
	// sink.DefaultConsumerBatch.
	Batch int
	// AckWait is the consumer's redelivery timeout; 0 means
	// sink.DefaultConsumerAckWait.
	AckWait time.Duration
	// FetchWait bounds how long one pull waits for a batch to fill on a
	// quiet stream, and so how late a lone click may be stored; 0 means
	// sink.DefaultConsumerFetchWait.
	FetchWait time.Duration

	// catMu serialises SetCatalog's read-modify-write and guards kv.
	catMu sync.Mutex
	kv    jetstream.KeyValue

	// metrics is set while running; SetCatalog reads it without mu.
	metrics atomic.Pointer[workerMetrics]
	// idx is the lookup view of the current catalog that events are
	// attributed with; nil until a catalog is known.
	idx atomic.Pointer[redirect.Index]
	// waiters are the EventResult calls waiting for their event.
	waiters waiterSet
	// apiMu is held shared by every API read of the store and exclusively
	// by Stop, so that no read is still running (or starts) when Stop
	// returns and the owner closes the store.
	apiMu      sync.RWMutex
	apiStopped bool

	mu      sync.Mutex // guards the fields below
	running bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	subs    []*nats.Subscription
	log     *slog.Logger
}

type workerMetrics struct {
	consumed       *prometheus.CounterVec
	commits        prometheus.Counter
	catalogVersion prometheus.Gauge
	pending        prometheus.GaugeFunc
	events         *prometheus.CounterVec
	conversions    *prometheus.CounterVec
	ledger         *prometheus.CounterVec
	ledgerMinor    *prometheus.CounterVec
	eventCommits   prometheus.Counter
	eventsPending  prometheus.GaugeFunc
	autoApprovals  prometheus.Counter
	registered     []prometheus.Collector
	registerer     prometheus.Registerer

	pendingMu   sync.Mutex
	pendingAt   time.Time
	pendingLast float64

	evPending pendingCache
}

// pendingCache keeps the last backlog read of a consumer.
type pendingCache struct {
	mu   sync.Mutex
	at   time.Time
	last float64
}

// Start ensures the click and event streams and the catalog bucket,
// publishes the stored catalog (if any, and unless the bucket already holds
// it), serves the read API (sink.ServeAPI) and the conversion API
// (sink.ServeBackend), and starts consuming clicks and events and approving
// held conversions in the background. It returns once all that is set up; a
// failure undoes what was started.
func (w *Worker) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running {
		return errors.New("start worker: already running")
	}
	if w.Store == nil || w.NC == nil || w.JS == nil || w.Minter == nil {
		return errors.New("start worker: Store, NC, JS and Minter must be set")
	}
	w.log = w.logger()
	if w.Durable == "" {
		w.Durable = DefaultDurable
	}
	if w.FilterSubject == "" {
		w.FilterSubject = sink.ClickSubjectPrefix + ">"
	}
	if w.EventDurable == "" {
		w.EventDurable = w.Durable + DefaultEventDurableSuffix
	}
	if w.EventFilterSubject == "" {
		w.EventFilterSubject = sink.EventSubjectPrefix + ">"
	}
	if w.Now == nil {
		w.Now = time.Now
	}
	consumer := &sink.Consumer{
		JS:            w.JS,
		Stream:        sink.ClickStream,
		Durable:       w.Durable,
		FilterSubject: w.FilterSubject,
		Batch:         w.Batch,
		AckWait:       w.AckWait,
		FetchWait:     w.FetchWait,
		Logger:        w.Logger,
	}
	batch := w.Batch
	if batch <= 0 {
		batch = sink.DefaultConsumerBatch
	}
	events := &sink.Consumer{
		JS:            w.JS,
		Stream:        sink.EventStream,
		Durable:       w.EventDurable,
		FilterSubject: w.EventFilterSubject,
		Batch:         batch,
		AckWait:       w.AckWait,
		// One batch in flight at a time: a batch that failed (nak'ed with a
		// delay) or was left unacked by a crash keeps every later event
		// back until it is redelivered, so events apply in stream order.
		MaxAckPending: batch,
		FetchWait:     w.FetchWait,
		Logger:        w.Logger,
	}
	// Metrics first: a clash there is a wiring mistake, found before
	// anything touches NATS.
	m := newWorkerMetrics(consumer, events, w.log)
	if err := m.register(w.Registerer); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	fail := func(err error) error {
		m.unregister()
		return fmt.Errorf("start worker: %w", err)
	}
	if err := sink.EnsureStreams(ctx, w.JS, w.Streams); err != nil {
		return fail(err)
	}
	if w.Rebuild {
		// Deleting the durables makes them start again from the first
		// message of each stream; the store is idempotent on replay.
		for _, d := range []struct{ stream, name string }{{sink.ClickStream, w.Durable}, {sink.EventStream, w.EventDurable}} {
			if err := w.JS.DeleteConsumer(ctx, d.stream, d.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fail(fmt.Errorf("rebuild: delete consumer %s of %s: %w", d.name, d.stream, err))
			}
			w.log.Info("rebuild: replaying the whole stream", "stream", d.stream, "consumer", d.name)
		}
	}
	kv, err := w.catalogKV(ctx)
	if err != nil {
		return fail(err)
	}
	if err := w.adoptCatalog(ctx, kv); err != nil {
		return fail(err)
	}
	stored, err := w.Store.Catalog()
	if err != nil {
		return fail(err)
	}
	if stored != nil {
		if err := w.republish(ctx, kv, stored); err != nil {
			return fail(err)
		}
		m.catalogVersion.Set(float64(stored.Version))
	}
	w.setIndex(stored)
	unsubscribe := func(subs []*nats.Subscription) {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	sub, err := sink.ServeAPI(w.NC, w)
	if err != nil {
		return fail(err)
	}
	backend, err := sink.ServeBackend(w.NC, w)
	if err != nil {
		_ = sub.Unsubscribe()
		return fail(err)
	}
	subs := append([]*nats.Subscription{sub}, backend...)
	// When Start returns, readers on any connection must find the API.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = w.NC.FlushWithContext(fctx)
	cancel()
	if err != nil {
		unsubscribe(subs)
		return fail(fmt.Errorf("flush read api subscription: %w", err))
	}
	runCtx, cancel := context.WithCancel(context.Background())
	w.metrics.Store(m)
	w.apiMu.Lock()
	w.apiStopped = false
	w.apiMu.Unlock()
	w.subs, w.cancel, w.running = subs, cancel, true
	w.wg.Add(3)
	go w.run(runCtx, consumer, func(_ context.Context, msgs []jetstream.Msg) error { return w.handle(m, msgs) })
	go w.run(runCtx, events, func(ctx context.Context, msgs []jetstream.Msg) error { return w.handleEvents(ctx, m, msgs) })
	go func() {
		defer w.wg.Done()
		w.approveLoop(runCtx, m, events)
	}()
	w.log.Info("worker started", "durable", w.Durable, "filter", w.FilterSubject,
		"event_durable", w.EventDurable, "event_filter", w.EventFilterSubject)
	return nil
}

// run consumes until ctx ends. Consumer.Run retries everything transient
// itself and fails only when misconfigured, which Start rules out; the loop
// guards against a future change of that promise spinning silently.
func (w *Worker) run(ctx context.Context, c *sink.Consumer, handle func(context.Context, []jetstream.Msg) error) {
	defer w.wg.Done()
	for {
		err := c.Run(ctx, handle)
		if ctx.Err() != nil {
			return
		}
		w.log.Error("consumer stopped, restarting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// Stop stops consuming, stops serving the read and conversion APIs,
// unregisters the metrics and waits for the batches in hand to be stored and
// acked. EventResult calls still waiting return at once, and API calls on
// the stopped worker answer sink.APICodeWorkerUnavailable without touching
// the store, which its owner may then close. Stopping a worker that is not
// running does nothing. A stopped worker may be started again.
func (w *Worker) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.running {
		return
	}
	// Unsubscribe first so that no new read starts against a store that the
	// owner is about to close.
	for _, sub := range w.subs {
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			w.log.Warn("unsubscribe api", "subject", sub.Subject, "err", err)
		}
	}
	// Once the server has seen the UNSUB, readers get "no responders" at
	// once instead of waiting out their timeout on a worker that is gone.
	if err := w.NC.Flush(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		w.log.Debug("flush after unsubscribe", "err", err)
	}
	w.apiMu.Lock()
	w.apiStopped = true
	w.apiMu.Unlock()
	w.waiters.wakeAll()
	w.cancel()
	w.wg.Wait()
	w.metrics.Swap(nil).unregister()
	w.running = false
	w.log.Info("worker stopped")
}

// handle stores one batch of click messages in one commit. Messages that
// cannot be stored ever (undecodable, unknown version, unusable ids) are
// terminated here, so that the batch's error, if any, is the store's and
// redelivery can cure it.
func (w *Worker) handle(m *workerMetrics, msgs []jetstream.Msg) error {
	clicks := make([]sink.Click, 0, len(msgs))
	now := w.Now().UnixMilli()
	for _, msg := range msgs {
		c, err := sink.DecodeClick(msg.Data())
		if err == nil {
			err = CheckClick(&c)
		}
		if err != nil {
			w.terminate(m, msg, err)
			continue
		}
		// The wire may claim anything; Forged and ReceivedAt are the
		// worker's to set.
		_, verr := w.Minter.Verify(c.ID)
		c.Forged = verr != nil
		c.ReceivedAt = now
		clicks = append(clicks, c)
	}
	if len(clicks) == 0 {
		return nil
	}
	isNew, err := w.Store.putClicks(clicks)
	if err != nil {
		return fmt.Errorf("handle %d click messages: %w", len(msgs), err)
	}
	m.commits.Inc()
	var stored, forged, dup int
	for i, n := range isNew {
		switch {
		case !n:
			dup++
		case clicks[i].Forged:
			forged++
		default:
			stored++
		}
	}
	m.consumed.WithLabelValues(ResultStored).Add(float64(stored))
	m.consumed.WithLabelValues(ResultForged).Add(float64(forged))
	m.consumed.WithLabelValues(ResultDuplicate).Add(float64(dup))
	return nil
}

// terminate tells JetStream never to redeliver msg, counts and logs it.
func (w *Worker) terminate(m *workerMetrics, msg jetstream.Msg, cause error) {
	m.consumed.WithLabelValues(ResultInvalid).Inc()
	var seq uint64
	if meta, err := msg.Metadata(); err == nil {
		seq = meta.Sequence.Stream
	}
	w.log.Warn("terminating undecodable click message", "subject", msg.Subject(), "seq", seq, "err", cause)
	if err := msg.Term(); err != nil {
		// It comes back after AckWait and is terminated then.
		w.log.Warn("terminate click message", "subject", msg.Subject(), "seq", seq, "err", err)
	}
}

// ListClicks answers a read from the store; it is the worker's
// sink.ClickLister. A query without a merchant or with a negative offset is
// refused with *sink.APIError code CodeInvalidRequest; a stopped worker
// answers sink.APICodeWorkerUnavailable.
func (w *Worker) ListClicks(_ context.Context, q sink.ClickQuery) (sink.ClickPage, error) {
	if q.MerchantID == "" {
		return sink.ClickPage{}, &sink.APIError{Code: CodeInvalidRequest, Message: "merchant_id is required"}
	}
	var page sink.ClickPage
	err := w.read(func() (err error) {
		page, err = w.Store.ListClicks(q)
		return err
	})
	if errors.Is(err, ErrInvalidQuery) {
		return sink.ClickPage{}, &sink.APIError{Code: CodeInvalidRequest, Message: err.Error()}
	}
	return page, err
}

// SetCatalog validates c and makes it the current catalog: its Version
// becomes max(stored version + 1, c.Version), UpdatedAt the worker's Now in
// UTC; it is saved in the store, then put in the KV bucket for the edges.
// The returned catalog is what was published; c itself is not modified. If
// the put fails, the catalog is saved nonetheless and the next Start
// publishes it. SetCatalog may be called before Start.
func (w *Worker) SetCatalog(ctx context.Context, c *redirect.Catalog) (*redirect.Catalog, error) {
	if c == nil {
		return nil, errors.New("set catalog: nil catalog")
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("set catalog: %w", err)
	}
	if w.Store == nil {
		return nil, errors.New("set catalog: no store")
	}
	w.catMu.Lock()
	defer w.catMu.Unlock()
	return w.setCatalogLocked(ctx, c)
}

// ErrNotPublished wraps the error of a catalog change that was validated and
// saved in the store but could not be put in the KV bucket: the edges get it
// when the worker next starts, or with the next change.
var ErrNotPublished = errors.New("catalog saved but not published")

// UpdateCatalog applies change to a copy of the current catalog (an empty
// one when none is stored) and sets the result as SetCatalog does, under the
// same lock, so that concurrent changes never lose one another. An error from
// change is returned as is and nothing is saved.
func (w *Worker) UpdateCatalog(ctx context.Context, change func(*redirect.Catalog) error) (*redirect.Catalog, error) {
	if w.Store == nil {
		return nil, errors.New("update catalog: no store")
	}
	w.catMu.Lock()
	defer w.catMu.Unlock()
	stored, err := w.Store.Catalog()
	if err != nil {
		return nil, fmt.Errorf("update catalog: %w", err)
	}
	if stored == nil {
		stored = &redirect.Catalog{}
	}
	if err := change(stored); err != nil {
		return nil, err
	}
	if err := stored.Validate(); err != nil {
		return nil, fmt.Errorf("update catalog: %w", err)
	}
	return w.setCatalogLocked(ctx, stored)
}

// setCatalogLocked is SetCatalog after validation, with catMu held.
func (w *Worker) setCatalogLocked(ctx context.Context, c *redirect.Catalog) (*redirect.Catalog, error) {
	stored, err := w.Store.Catalog()
	if err != nil {
		return nil, fmt.Errorf("set catalog: %w", err)
	}
	next := *c
	next.Version = max(c.Version, 1)
	if stored != nil {
		if stored.Version == math.MaxUint64 {
			return nil, errors.New("set catalog: stored version is at its maximum")
		}
		next.Version = max(stored.Version+1, c.Version)
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	next.UpdatedAt = now().UTC()
	data, err := json.Marshal(&next)
	if err != nil {
		return nil, fmt.Errorf("set catalog: encode version %d: %w", next.Version, err)
	}
	if err := w.Store.SaveCatalog(&next); err != nil {
		return nil, fmt.Errorf("set catalog: %w", err)
	}
	// The index gets its own copy: the caller may modify what is returned.
	var own redirect.Catalog
	if err := json.Unmarshal(data, &own); err != nil {
		return nil, fmt.Errorf("set catalog: decode version %d: %w", next.Version, err)
	}
	w.setIndex(&own)
	if m := w.metrics.Load(); m != nil {
		m.catalogVersion.Set(float64(next.Version))
	}
	kv, err := w.catalogKVLocked(ctx)
	if err != nil {
		return &next, fmt.Errorf("set catalog version %d: %w: %w", next.Version, ErrNotPublished, err)
	}
	if _, err := sink.PutCatalog(ctx, kv, data); err != nil {
		return &next, fmt.Errorf("set catalog version %d: %w: %w", next.Version, ErrNotPublished, err)
	}
	w.logger().Info("catalog published", "version", next.Version)
	return &next, nil
}

// logger returns the worker's logger; it only reads the configured field, so
// that SetCatalog may log before or beside Start.
func (w *Worker) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger.With("component", "worker")
}

// Catalog returns the current catalog, or nil when none was ever set.
func (w *Worker) Catalog() (*redirect.Catalog, error) {
	if w.Store == nil {
		return nil, errors.New("read catalog: no store")
	}
	return w.Store.Catalog()
}

// catalogKV returns the catalog bucket, creating it on first use.
func (w *Worker) catalogKV(ctx context.Context) (jetstream.KeyValue, error) {
	w.catMu.Lock()
	defer w.catMu.Unlock()
	return w.catalogKVLocked(ctx)
}

func (w *Worker) catalogKVLocked(ctx context.Context) (jetstream.KeyValue, error) {
	if w.kv != nil {
		return w.kv, nil
	}
	if w.JS == nil {
		return nil, errors.New("catalog bucket: no JetStream")
	}
	kv, err := sink.EnsureCatalogKV(ctx, w.JS, w.KVReplicas)
	if err != nil {
		return nil, err
	}
	w.kv = kv
	return kv, nil
}

// AdoptCatalog gives a worker whose store holds no catalog (a new worker, or
// one rebuilding its store) the catalog of the KV bucket, version kept, so
// that it attributes with what the edges serve and never publishes an older
// version over it. It does nothing when the store has a catalog or the
// bucket none. Start calls it too.
func (w *Worker) AdoptCatalog(ctx context.Context) error {
	if w.JS == nil {
		return nil
	}
	w.catMu.Lock()
	kv, err := w.catalogKVLocked(ctx)
	w.catMu.Unlock()
	if err != nil {
		return fmt.Errorf("adopt catalog: %w", err)
	}
	return w.adoptCatalog(ctx, kv)
}

func (w *Worker) adoptCatalog(ctx context.Context, kv jetstream.KeyValue) error {
	w.catMu.Lock()
	defer w.catMu.Unlock()
	stored, err := w.Store.Catalog()
	if err != nil || stored != nil {
		return err
	}
	e, err := kv.Get(ctx, sink.CatalogKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("adopt catalog: %w", err)
	}
	var c redirect.Catalog
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return fmt.Errorf("adopt catalog revision %d: %w", e.Revision(), err)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("adopt catalog revision %d: %w", e.Revision(), err)
	}
	if err := w.Store.SaveCatalog(&c); err != nil {
		return err
	}
	w.setIndex(&c)
	w.logger().Info("empty store: adopted the catalog of the KV bucket", "version", c.Version)
	return nil
}

// republish puts the stored catalog in the bucket unless the bucket already
// holds exactly it: every put wakes every edge's watch.
func (w *Worker) republish(ctx context.Context, kv jetstream.KeyValue, c *redirect.Catalog) error {
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode stored catalog version %d: %w", c.Version, err)
	}
	if e, err := kv.Get(ctx, sink.CatalogKey); err == nil && bytes.Equal(e.Value(), data) {
		return nil
	}
	if _, err := sink.PutCatalog(ctx, kv, data); err != nil {
		return err
	}
	w.log.Info("stored catalog published", "version", c.Version)
	return nil
}

// setIndex makes c (nil for none) the catalog events are attributed with.
// c must not be modified afterwards.
func (w *Worker) setIndex(c *redirect.Catalog) {
	w.idx.Store(redirect.NewIndex(c))
}

// index returns the current catalog's lookup view (an empty one before any).
func (w *Worker) index() *redirect.Index {
	if x := w.idx.Load(); x != nil {
		return x
	}
	return redirect.NewIndex(nil)
}

// readPending reports the click consumer's backlog for the gauge.
func (m *workerMetrics) readPending(c *sink.Consumer, log *slog.Logger) float64 {
	m.pendingMu.Lock()
	defer m.pendingMu.Unlock()
	return readPending(c, log, &m.pendingAt, &m.pendingLast)
}

// readPending asks JetStream for a consumer's backlog at most once per
// pendingCacheTTL, keeping the last value when it cannot. The caller holds
// the lock guarding at and last.
func readPending(c *sink.Consumer, log *slog.Logger, at *time.Time, last *float64) float64 {
	if !at.IsZero() && time.Since(*at) < pendingCacheTTL {
		return *last
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := c.Pending(ctx)
	*at = time.Now()
	if err != nil {
		log.Debug("read consumer backlog", "consumer", c.Durable, "err", err)
		return *last
	}
	*last = float64(n)
	return *last
}

func newWorkerMetrics(c, events *sink.Consumer, log *slog.Logger) *workerMetrics {
	m := &workerMetrics{
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickedge_worker_clicks_consumed_total",
			Help: "Click messages the worker consumed, by result: stored, duplicate (already stored), forged (stored, id did not verify), invalid (terminated).",
		}, []string{"result"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickedge_worker_store_commits_total",
			Help: "Store transactions committed by the worker, one per consumed batch.",
		}),
		catalogVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickedge_catalog_version",
			Help: "Version of the catalog the worker last stored and published.",
		}),
	}
	m.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "clickedge_worker_pending",
		Help: "Click messages in the stream not yet handled by the worker's consumer (refreshed at most every 5s).",
	}, func() float64 { return m.readPending(c, log) })
	for _, r := range []string{ResultStored, ResultDuplicate, ResultForged, ResultInvalid} {
		m.consumed.WithLabelValues(r)
	}
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clickedge_worker_events_total",
		Help: "Merchant events the worker consumed, by kind, dialect (partnac, partnero, affilync, pixel, admin) and outcome: applied, duplicate (seen before; nothing changed), ignored (documented no-op), rejected (refused with a code), invalid (terminated undecoded; dialect unknown).",
	}, []string{"kind", "dialect", "outcome"})
	m.conversions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clickedge_worker_conversions_total",
		Help: "Conversions the worker recorded, by dialect and by what attributed them (click_id, cookie, coupon, customer, partner_key, none).",
	}, []string{"dialect", "attributed_by"})
	m.ledger = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clickedge_worker_ledger_entries_total",
		Help: "Ledger entries the worker booked, by kind: commission, reversal, adjustment, payout, clawback, credit.",
	}, []string{"kind"})
	m.ledgerMinor = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clickedge_worker_ledger_minor_total",
		Help: "Absolute amount of the ledger entries the worker booked, in minor units of the currency (cents for USD), by kind and currency; the kind gives the sign (commission and credit add to balances, the others take away). For dashboards: the ledger itself is exact.",
	}, []string{"kind", "currency"})
	m.eventCommits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "clickedge_worker_event_commits_total",
		Help: "Store transactions committed for merchant events, one per consumed batch.",
	})
	m.eventsPending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "clickedge_worker_events_pending",
		Help: "Merchant events in the stream not yet applied by the worker's event consumer (refreshed at most every 5s).",
	}, func() float64 {
		m.evPending.mu.Lock()
		defer m.evPending.mu.Unlock()
		return readPending(events, log, &m.evPending.at, &m.evPending.last)
	})
	m.autoApprovals = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "clickedge_worker_auto_approvals_total",
		Help: "Automatic approvals the worker published for conversions whose campaign hold had passed.",
	})
	for _, k := range eventKinds {
		for _, d := range dialects {
			for _, o := range []string{sink.OutcomeApplied, sink.OutcomeDuplicate, sink.OutcomeIgnored, sink.OutcomeRejected} {
				m.events.WithLabelValues(string(k), d, o)
			}
		}
		m.events.WithLabelValues(string(k), labelUnknown, OutcomeInvalid)
	}
	for _, k := range []string{LedgerCommission, LedgerReversal, LedgerAdjustment, LedgerPayout, LedgerClawback, LedgerCredit} {
		m.ledger.WithLabelValues(k)
	}
	return m
}

func (m *workerMetrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	m.registerer = r
	for _, c := range []prometheus.Collector{m.consumed, m.commits, m.catalogVersion, m.pending,
		m.events, m.conversions, m.ledger, m.ledgerMinor, m.eventCommits, m.eventsPending, m.autoApprovals} {
		if err := r.Register(c); err != nil {
			m.unregister()
			return fmt.Errorf("register worker metrics: %w", err)
		}
		m.registered = append(m.registered, c)
	}
	return nil
}

func (m *workerMetrics) unregister() {
	for _, c := range m.registered {
		m.registerer.Unregister(c)
	}
	m.registered = nil
}
