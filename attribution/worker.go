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

// Worker consumes clicks from JetStream into its Store, serves the read API
// over NATS and publishes the catalog to the KV bucket the edges watch. Set
// the exported fields, then Start (which fills in defaults) and leave them
// alone afterwards; Stop ends it. The Store must be open before Start and is
// not closed by Stop: its owner closes it.
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
	// Durable names the JetStream consumer; empty means DefaultDurable. A
	// new name replays the whole stream, which changes nothing in the store.
	Durable string
	// Now stamps ReceivedAt on clicks and UpdatedAt on catalogs; nil means
	// time.Now.
	Now func() time.Time

	// FilterSubject restricts consumption to some merchants' subjects, for
	// a worker that owns one partition; empty means ClickSubjectPrefix + ">".
	FilterSubject string
	// Streams sizes the click stream that Start ensures.
	Streams sink.StreamConfig
	// KVReplicas is the catalog bucket's replication factor; 0 means 1.
	KVReplicas int
	// Batch is the most clicks stored in one commit; 0 means
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

	mu      sync.Mutex // guards the fields below
	running bool
	cancel  context.CancelFunc
	done    chan struct{}
	sub     *nats.Subscription
	log     *slog.Logger
}

type workerMetrics struct {
	consumed       *prometheus.CounterVec
	commits        prometheus.Counter
	catalogVersion prometheus.Gauge
	pending        prometheus.GaugeFunc
	registered     []prometheus.Collector
	registerer     prometheus.Registerer

	pendingMu   sync.Mutex
	pendingAt   time.Time
	pendingLast float64
}

// Start ensures the click stream and the catalog bucket, publishes the
// stored catalog (if any, and unless the bucket already holds it), serves the
// read API and starts consuming in the background. It returns once all that
// is set up; a failure undoes what was started.
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
	// Metrics first: a clash there is a wiring mistake, found before
	// anything touches NATS.
	m := newWorkerMetrics(consumer, w.log)
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
	kv, err := w.catalogKV(ctx)
	if err != nil {
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
	sub, err := sink.ServeAPI(w.NC, w)
	if err != nil {
		return fail(err)
	}
	// When Start returns, readers on any connection must find the API.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = w.NC.FlushWithContext(fctx)
	cancel()
	if err != nil {
		_ = sub.Unsubscribe()
		return fail(fmt.Errorf("flush read api subscription: %w", err))
	}
	runCtx, cancel := context.WithCancel(context.Background())
	w.metrics.Store(m)
	w.sub, w.cancel, w.done, w.running = sub, cancel, make(chan struct{}), true
	go w.run(runCtx, consumer, m, w.done)
	w.log.Info("worker started", "durable", w.Durable, "filter", w.FilterSubject)
	return nil
}

// run consumes until ctx ends. Consumer.Run retries everything transient
// itself and fails only when misconfigured, which Start rules out; the loop
// guards against a future change of that promise spinning silently.
func (w *Worker) run(ctx context.Context, c *sink.Consumer, m *workerMetrics, done chan struct{}) {
	defer close(done)
	handle := func(_ context.Context, msgs []jetstream.Msg) error { return w.handle(m, msgs) }
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

// Stop stops consuming, stops serving the read API, unregisters the metrics
// and waits for the batch in hand to be stored and acked. Stopping a worker
// that is not running does nothing. A stopped worker may be started again.
func (w *Worker) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.running {
		return
	}
	// Unsubscribe first so that no new read starts against a store that the
	// owner is about to close.
	if err := w.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		w.log.Warn("unsubscribe read api", "err", err)
	}
	// Once the server has seen the UNSUB, readers get "no responders" at
	// once instead of waiting out their timeout on a worker that is gone.
	if err := w.NC.Flush(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		w.log.Debug("flush after unsubscribe", "err", err)
	}
	w.cancel()
	<-w.done
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
// refused with *sink.APIError code CodeInvalidRequest.
func (w *Worker) ListClicks(_ context.Context, q sink.ClickQuery) (sink.ClickPage, error) {
	if q.MerchantID == "" {
		return sink.ClickPage{}, &sink.APIError{Code: CodeInvalidRequest, Message: "merchant_id is required"}
	}
	page, err := w.Store.ListClicks(q)
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
	if m := w.metrics.Load(); m != nil {
		m.catalogVersion.Set(float64(next.Version))
	}
	kv, err := w.catalogKVLocked(ctx)
	if err != nil {
		return nil, fmt.Errorf("set catalog version %d (saved, not published): %w", next.Version, err)
	}
	if _, err := sink.PutCatalog(ctx, kv, data); err != nil {
		return nil, fmt.Errorf("set catalog version %d (saved, not published): %w", next.Version, err)
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

// readPending reports the consumer's backlog for the gauge, asking
// JetStream at most once per pendingCacheTTL and keeping the last value when
// it cannot.
func (m *workerMetrics) readPending(c *sink.Consumer, log *slog.Logger) float64 {
	m.pendingMu.Lock()
	defer m.pendingMu.Unlock()
	if !m.pendingAt.IsZero() && time.Since(m.pendingAt) < pendingCacheTTL {
		return m.pendingLast
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err := c.Pending(ctx)
	m.pendingAt = time.Now()
	if err != nil {
		log.Debug("read consumer backlog", "err", err)
		return m.pendingLast
	}
	m.pendingLast = float64(n)
	return m.pendingLast
}

func newWorkerMetrics(c *sink.Consumer, log *slog.Logger) *workerMetrics {
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
	return m
}

func (m *workerMetrics) register(r prometheus.Registerer) error {
	if r == nil {
		return nil
	}
	m.registerer = r
	for _, c := range []prometheus.Collector{m.consumed, m.commits, m.catalogVersion, m.pending} {
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
