package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clickedge/clickedge/attribution"
	"github.com/clickedge/clickedge/edge"
	"github.com/clickedge/clickedge/enrich"
	"github.com/clickedge/clickedge/geo"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// App is a running subcommand; tests read its bound addresses.
type App struct {
	// EdgeAddr is the edge's bound HTTP address (serve, edge).
	EdgeAddr string
	// MetricsAddr is the bound metrics address, if any.
	MetricsAddr string
	// NATSURL is the client URL of the embedded server (serve), if it listens.
	NATSURL string
	// Edge and Worker are the running components (nil where the mode has none).
	Edge   *edge.Server
	Worker *attribution.Worker
}

// closer is one step of the reverse-order shutdown.
type closer struct {
	name string
	fn   func(context.Context) error
}

func newLogger(cfg *Config, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", cfg.LogLevel)}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch cfg.LogFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Sprintf("--log-format %q: want text or json", cfg.LogFormat)}
}

// runApp wires the components of cfg.Mode in order, waits for ctx, and shuts
// them down in reverse order.
func runApp(ctx context.Context, cfg *Config, stdout, stderr io.Writer, started func(*App)) (err error) {
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return fmt.Errorf("create data dir %s: %w", cfg.Data, err)
	}
	var closers []closer
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.FlushTimeout+cfg.DrainDelay+10*time.Second)
		defer cancel()
		for i := len(closers) - 1; i >= 0; i-- {
			if cerr := closers[i].fn(sctx); cerr != nil {
				log.Error("shutdown step failed", "step", closers[i].name, "err", cerr)
			}
		}
	}()
	onClose := func(name string, fn func(context.Context) error) { closers = append(closers, closer{name, fn}) }
	app := &App{}

	secrets, err := loadSecrets(cfg)
	if err != nil {
		return err
	}
	minter, err := redirect.NewMinter(secrets...)
	if err != nil {
		return fmt.Errorf("click-id secret: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "clickedge_build_info", Help: "Always 1; the version label names the build.",
		ConstLabels: prometheus.Labels{"version": version, "mode": cfg.Mode},
	}, func() float64 { return 1 }))

	// NATS: embedded in serve, external otherwise.
	var nc *nats.Conn
	if cfg.Mode == "serve" {
		ns, url, err := startEmbeddedNATS(cfg, log)
		if err != nil {
			return err
		}
		onClose("nats server", func(context.Context) error { ns.Shutdown(); ns.WaitForShutdown(); return nil })
		app.NATSURL = url
		nc, err = nats.Connect(url, nats.InProcessServer(ns), nats.Name("clickedge-serve"), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("connect to embedded NATS: %w", err)
		}
	} else {
		nc, err = nats.Connect(cfg.NATS, nats.Name("clickedge-"+cfg.Mode),
			nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", "err", err) }),
			nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrl()) }))
		if err != nil {
			return fmt.Errorf("connect to NATS %s: %w", cfg.NATS, err)
		}
	}
	onClose("nats connection", func(ctx context.Context) error {
		if err := nc.Drain(); err != nil {
			nc.Close()
			return err
		}
		// Drain is asynchronous: wait for it before the server goes away.
		for !nc.IsClosed() && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "clickedge_nats_connected", Help: "1 while the process is connected to NATS.",
	}, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	}))
	// Acks that never arrive (NATS restarted mid-publish) expire instead of
	// staying pending until the next reconnect.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	// The metrics listener starts before, and so closes after, the edge: its
	// /readyz shows the drain too.
	var ready atomic.Pointer[func() bool]
	if cfg.MetricsAddr != "" {
		addr, err := startMetrics(cfg.MetricsAddr, reg, func() bool {
			f := ready.Load()
			return f != nil && (*f)()
		}, log, onClose)
		if err != nil {
			return err
		}
		app.MetricsAddr = addr
		log.Info("metrics listening", "addr", addr)
	}

	if cfg.Mode != "edge" {
		w, err := startWorker(ctx, cfg, log, nc, js, minter, reg, stdout, onClose)
		if err != nil {
			return err
		}
		app.Worker = w
	}
	var metricsReady func() bool
	if cfg.Mode != "worker" {
		srv, ln, err := startEdge(ctx, cfg, log, nc, js, minter, reg, app.Worker, onClose)
		if err != nil {
			return err
		}
		app.Edge = srv
		app.EdgeAddr = ln.Addr().String()
		metricsReady = srv.Ready
		log.Info("edge listening", "addr", app.EdgeAddr)
	} else {
		metricsReady = nc.IsConnected
	}
	ready.Store(&metricsReady)
	if started != nil {
		started(app)
	}
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

func startEmbeddedNATS(cfg *Config, log *slog.Logger) (*server.Server, string, error) {
	opts := &server.Options{
		ServerName: "clickedge-embedded",
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.Data, "nats"),
		NoSigs:     true,
		NoLog:      true,
	}
	if cfg.NATSListen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.NATSListen)
		if err != nil {
			return nil, "", usageError{fmt.Sprintf("--nats-listen %q: %v", cfg.NATSListen, err)}
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, "", usageError{fmt.Sprintf("--nats-listen %q: bad port", cfg.NATSListen)}
		}
		if p == 0 {
			p = -1
		}
		opts.Host, opts.Port = host, p
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, "", fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, "", errors.New("embedded NATS did not become ready in 10s")
	}
	url := ns.ClientURL()
	log.Info("embedded NATS JetStream started", "url", url, "store", opts.StoreDir)
	return ns, url, nil
}

func startWorker(ctx context.Context, cfg *Config, log *slog.Logger, nc *nats.Conn, js jetstream.JetStream,
	minter *redirect.Minter, reg prometheus.Registerer, stdout io.Writer, onClose func(string, func(context.Context) error)) (*attribution.Worker, error) {
	store := attribution.NewStore(filepath.Join(cfg.Data, "worker.db"))
	if err := store.Open(); err != nil {
		return nil, err
	}
	onClose("worker store", func(context.Context) error { return store.Close() })
	w := &attribution.Worker{Store: store, NC: nc, JS: js, Minter: minter, Logger: log, Registerer: reg,
		Streams: sink.StreamConfig{Replicas: cfg.Replicas}, KVReplicas: cfg.Replicas}
	// The catalog is stored before the worker starts consuming, so that no
	// event is attributed under an older catalog than the one given; Start
	// then publishes it to the KV bucket.

	switch {
	case cfg.Catalog != "":
		c, err := attribution.LoadCatalogFile(cfg.Catalog)
		if err != nil {
			return nil, err
		}
		c, err = w.SetCatalog(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("publish catalog %s: %w", cfg.Catalog, err)
		}
		log.Info("catalog loaded", "file", cfg.Catalog, "version", c.Version)
	case cfg.Demo:
		cur, err := w.Catalog()
		if err != nil {
			return nil, err
		}
		if cur != nil && len(cur.Merchants) > 0 {
			log.Info("demo: a catalog is already stored; its API key was printed when it was created", "version", cur.Version)
			break
		}
		key := cfg.DemoAPIKey
		if key == "" {
			if key, err = attribution.NewAPIKey(); err != nil {
				return nil, err
			}
		}
		if _, err := w.SetCatalog(ctx, attribution.DemoCatalog(key)); err != nil {
			return nil, fmt.Errorf("publish demo catalog: %w", err)
		}
		fmt.Fprintf(stdout, "demo catalog loaded. Merchant API key (shown once, only its hash is stored):\n\n    %s\n\n", key)
	}
	if err := w.Start(ctx); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	onClose("worker", func(context.Context) error { w.Stop(); return nil })
	return w, nil
}

func startEdge(ctx context.Context, cfg *Config, log *slog.Logger, nc *nats.Conn, js jetstream.JetStream,
	minter *redirect.Minter, reg prometheus.Registerer, w *attribution.Worker, onClose func(string, func(context.Context) error)) (*edge.Server, net.Listener, error) {
	privacy, err := enrich.ParsePrivacy(cfg.IPPrivacy)
	if err != nil {
		return nil, nil, usageError{fmt.Sprintf("--ip-privacy: %v", err)}
	}
	trusted, err := enrich.ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, nil, usageError{fmt.Sprintf("--trusted-proxies: %v", err)}
	}
	ecfg := enrich.Config{TrustedProxies: trusted, Privacy: privacy}
	geoPath := cfg.GeoIP
	if geoPath == "" {
		if m, _ := filepath.Glob(filepath.Join(cfg.Data, "geoip", "*.mmdb")); len(m) > 0 {
			geoPath = m[0]
		}
	}
	if geoPath != "" {
		g := geo.New(geoPath)
		g.Logger = log
		if err := g.Open(); err != nil {
			return nil, nil, fmt.Errorf("--geoip: %w", err)
		}
		onClose("geo", func(context.Context) error { return g.Close() })
		ecfg.Geo = g
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "clickedge_geo_database_build_timestamp_seconds",
			Help: "Build time of the loaded geo database (0: none loaded).",
		}, func() float64 {
			if i := g.Info(); i.Loaded {
				return float64(i.BuildTime.Unix())
			}
			return 0
		}))
	} else {
		log.Warn("no geo database: clicks get no country (run `make geoip` or pass --geoip)")
	}

	ob := sink.NewOutbox(filepath.Join(cfg.Data, "edge.db"))
	ob.MaxBytes = cfg.OutboxMaxBytes
	ob.Logger = log
	if err := ob.Open(); err != nil {
		return nil, nil, err
	}
	onClose("outbox", func(context.Context) error { return ob.Close() })
	registerOutboxMetrics(reg, ob)

	srv := &edge.Server{
		Minter: minter, Enricher: enrich.New(ecfg), Outbox: ob, EdgeID: cfg.EdgeID,
		FallbackURL: cfg.FallbackURL, SecureCookies: cfg.SecureCookies, Logger: log, Registerer: reg,
	}
	if w != nil {
		srv.Lister, srv.Backend = w, w
	} else {
		c := &sink.APIClient{NC: nc}
		srv.Lister, srv.Backend = c, c
	}
	if err := srv.Open(); err != nil {
		return nil, nil, err
	}

	// Ship the outbox to JetStream until shutdown, then flush for a bounded time.
	shipCtx, stopShip := context.WithCancel(context.Background())
	shipper := &sink.Shipper{Outbox: ob, JS: js, Logger: log}
	shipDone := make(chan struct{})
	go func() { defer close(shipDone); _ = shipper.Run(shipCtx) }()
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "clickedge_outbox_published_total", Help: "Outbox rows published to JetStream and acknowledged.",
		}, func() float64 { return float64(shipper.Stats().Published) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "clickedge_outbox_publish_errors_total", Help: "Failed or unacknowledged publishes of outbox rows (each is retried).",
		}, func() float64 { return float64(shipper.Stats().PublishErrors) }),
	)
	onClose("shipper", func(ctx context.Context) error {
		fctx, cancel := context.WithTimeout(ctx, cfg.FlushTimeout)
		defer cancel()
		ferr := shipper.Flush(fctx)
		stopShip()
		<-shipDone
		if ferr != nil {
			log.Warn("outbox not empty at shutdown; the rest ships at the next start", "rows", ob.Stats().Rows)
		}
		return nil
	})

	// Follow the catalog the worker publishes.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		_ = sink.WatchCatalog(watchCtx, nc, func(data []byte, rev uint64) {
			if err := srv.ApplyCatalog(data); err != nil {
				log.Error("catalog from NATS rejected", "revision", rev, "err", err)
			}
		}, log)
	}()
	onClose("catalog watch", func(context.Context) error { stopWatch(); <-watchDone; return nil })
	if w != nil {
		// In serve the worker is in this process: wait briefly for its catalog
		// so the first request does not race the KV watch.
		deadline := time.Now().Add(3 * time.Second)
		for srv.CatalogVersion() == 0 && time.Now().Before(deadline) {
			if c, _ := w.Catalog(); c == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("edge listen %s: %w", cfg.Listen, err)
	}
	serveDone := make(chan struct{})
	go func() {
		defer close(serveDone)
		if err := srv.Serve(ln); err != nil {
			log.Error("edge server stopped", "err", err)
		}
	}()
	onClose("edge http", func(ctx context.Context) error {
		srv.Drain()
		select {
		case <-time.After(cfg.DrainDelay):
		case <-ctx.Done():
		}
		err := srv.Shutdown(ctx)
		<-serveDone
		return err
	})
	return srv, ln, nil
}

func registerOutboxMetrics(reg prometheus.Registerer, ob *sink.Outbox) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "clickedge_outbox_rows", Help: "Rows in the edge outbox not yet acknowledged by JetStream.",
		}, func() float64 { return float64(ob.Stats().Rows) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "clickedge_outbox_bytes", Help: "Payload bytes in the edge outbox not yet acknowledged by JetStream.",
		}, func() float64 { return float64(ob.Stats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "clickedge_outbox_oldest_row_age_seconds", Help: "Age of the oldest row in the outbox (0 when empty).",
		}, func() float64 {
			if o := ob.Stats().OldestUnixMilli; o > 0 {
				return time.Since(time.UnixMilli(o)).Seconds()
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "clickedge_outbox_commits_total", Help: "bbolt commits of the outbox writer (each holds a group of appends).",
		}, func() float64 { return float64(ob.Stats().Commits) }),
	)
}

func startMetrics(addr string, reg *prometheus.Registry, ready func() bool, log *slog.Logger, onClose func(string, func(context.Context) error)) (string, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	onClose("metrics http", func(ctx context.Context) error { return hs.Shutdown(ctx) })
	return ln.Addr().String(), nil
}

// loadSecrets returns the click-id secrets: --secret, --secret-file, or (serve
// only) the one generated into <data>/secret at first start.
func loadSecrets(cfg *Config) ([][]byte, error) {
	var raw []string
	switch {
	case cfg.Secrets != "":
		raw = strings.Split(cfg.Secrets, ",")
	case cfg.SecretFile != "":
		f, err := os.Open(cfg.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("read --secret-file: %w", err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				raw = append(raw, l)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read --secret-file: %w", err)
		}
	case cfg.Mode == "serve":
		p := filepath.Join(cfg.Data, "secret")
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			buf := make([]byte, 32)
			_, _ = rand.Read(buf)
			b = []byte(hex.EncodeToString(buf))
			if err := os.WriteFile(p, append(b, '\n'), 0o600); err != nil {
				return nil, fmt.Errorf("keep generated secret: %w", err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		raw = []string{strings.TrimSpace(string(b))}
	default:
		return nil, usageError{"--secret or --secret-file is required: edges and workers must share the click-id secret"}
	}
	var out [][]byte
	for _, s := range raw {
		s = strings.TrimSpace(s)
		if len(s) < 16 {
			return nil, usageError{"every click-id secret must be at least 16 bytes"}
		}
		out = append(out, []byte(s))
	}
	return out, nil
}
