// Package edge is clickedge's public HTTP surface: the redirect (/r/{code}),
// the merchant APIs of the seed dialects, and health. It is the only package
// that speaks HTTP (fasthttp). Every merchant write it acknowledges is
// durable in the sink outbox first; redirect clicks are too under the
// default capture mode (see Capture for async and none).
package edge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/enrich"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// catalogBlob is the outbox blob under which the edge keeps its last catalog,
// so that it starts and serves redirects with NATS down.
const catalogBlob = "catalog"

// Server is the edge HTTP server. Fill the exported fields, then call Open.
type Server struct {
	// Minter mints click ids and verifies those that come back in cookies.
	Minter *redirect.Minter
	// Enricher turns a request into click facts (IP, geo, UA, bot, uniqueness).
	Enricher *enrich.Enricher
	// Outbox is where clicks and merchant events are committed: every
	// merchant write before its 2xx, and redirect clicks as Capture says.
	Outbox *sink.Outbox
	// Capture is what the redirect path does with its clicks: CaptureDurable
	// (the default, also for ""), CaptureAsync or CaptureNone. Merchant API
	// writes are durable in every mode.
	Capture Capture
	// Lister answers the read APIs: the worker itself in `serve`, or a
	// sink.APIClient that asks it over NATS.
	Lister sink.ClickLister
	// Backend answers conversion results and reads: the worker itself in
	// `serve`, or a sink.APIClient over NATS.
	Backend sink.Backend
	// ResultWait bounds how long a merchant write waits for the worker's
	// result before answering 202 queued; default DefaultResultWait.
	ResultWait time.Duration
	// EdgeID names this edge on every click it mints.
	EdgeID string
	// FallbackURL receives visitors of unknown codes that no merchant claims
	// (by its cookie domain); empty means a plain 404 page.
	FallbackURL string
	// SecureCookies marks cookies Secure even when TLS ends before the edge.
	SecureCookies bool
	// MaxBodyBytes bounds API request bodies; default 64 KiB.
	MaxBodyBytes int
	// ReadTimeout, WriteTimeout and IdleTimeout bound slow clients; defaults 10s, 10s, 60s.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// Logger receives errors; nothing is logged per request on the redirect path.
	Logger *slog.Logger
	// Registerer receives the edge's metrics; nil means none are exported.
	Registerer prometheus.Registerer
	// Now returns the current time; default time.Now.
	Now func() time.Time

	index atomic.Pointer[redirect.Index]
	// subjects maps the catalog's merchant ids to their click subjects, so
	// that a redirect does not build one (stored before index).
	subjects  atomic.Pointer[map[string]string]
	appliedAt atomic.Int64
	draining  atomic.Bool
	srv       *fasthttp.Server
	m         *metrics
	dropLog   rateLog
	openOnce  sync.Once
	// ridPrefix and ridSeq make request ids: unique per process run.
	ridPrefix string
	ridSeq    atomic.Uint64
	// wallClock is set when Now is time.Now: the redirect then reuses the
	// time its request started instead of reading the clock again.
	wallClock bool
}

// Open prepares the server: metrics, and the last catalog kept in the outbox.
// It does not listen; call Serve.
func (s *Server) Open() error {
	if s.Minter == nil || s.Enricher == nil || s.Outbox == nil {
		return errors.New("edge: Minter, Enricher and Outbox are required")
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	switch s.Capture {
	case "":
		s.Capture = CaptureDurable
	case CaptureDurable, CaptureAsync, CaptureNone:
	default:
		return fmt.Errorf("edge: unknown capture mode %q", s.Capture)
	}
	s.Logger = s.Logger.With("component", "edge")
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	s.ridPrefix = hex.EncodeToString(rb[:]) + "-"
	if s.Now == nil {
		s.Now = time.Now
		s.wallClock = true
	}
	if s.MaxBodyBytes <= 0 {
		s.MaxBodyBytes = 64 << 10
	}
	if s.ReadTimeout <= 0 {
		s.ReadTimeout = 10 * time.Second
	}
	if s.WriteTimeout <= 0 {
		s.WriteTimeout = 10 * time.Second
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = 60 * time.Second
	}
	s.m = newMetrics(s.Registerer)
	if s.Registerer != nil {
		s.Registerer.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "clickedge_edge_catalog_version",
				Help: "Version of the catalog the edge serves (0: none yet).",
			}, func() float64 {
				if x := s.index.Load(); x != nil {
					return float64(x.Version())
				}
				return 0
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "clickedge_edge_catalog_age_seconds",
				Help: "Seconds since the served catalog was last changed by the worker (-1: none yet).",
			}, func() float64 {
				x := s.index.Load()
				if x == nil {
					return -1
				}
				return s.Now().Sub(x.Catalog().UpdatedAt).Seconds()
			}),
		)
	}
	s.dropLog.logger = s.Logger
	data, err := s.Outbox.Blob(catalogBlob)
	if err != nil {
		return fmt.Errorf("edge: read cached catalog: %w", err)
	}
	if data != nil {
		if err := s.applyCatalog(data, false); err != nil {
			s.Logger.Warn("cached catalog unusable; waiting for the worker's", "err", err)
		}
	}
	s.srv = &fasthttp.Server{
		Handler:                       s.handle,
		ErrorHandler:                  s.handleParseError,
		Name:                          "clickedge",
		ReadTimeout:                   s.ReadTimeout,
		WriteTimeout:                  s.WriteTimeout,
		IdleTimeout:                   s.IdleTimeout,
		MaxRequestBodySize:            s.MaxBodyBytes,
		ReadBufferSize:                16 << 10,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		DisablePreParseMultipartForm:  true,
		DisableHeaderNamesNormalizing: false,
		CloseOnShutdown:               true,
	}
	return nil
}

// ApplyCatalog installs a catalog document (JSON of redirect.Catalog) received
// from the worker, if it is newer than the one served, and keeps it in the
// outbox file for the next start.
func (s *Server) ApplyCatalog(data []byte) error { return s.applyCatalog(data, true) }

func (s *Server) applyCatalog(data []byte, persist bool) error {
	var c redirect.Catalog
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("decode catalog: %w", err)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("catalog version %d: %w", c.Version, err)
	}
	if cur := s.index.Load(); cur != nil && cur.Version() >= c.Version {
		return nil
	}
	subjects := make(map[string]string, len(c.Merchants)+1)
	subjects[UnknownMerchant] = sink.ClickSubjectPrefix + UnknownMerchant
	for i := range c.Merchants {
		subjects[c.Merchants[i].ID] = sink.ClickSubjectPrefix + c.Merchants[i].ID
	}
	s.subjects.Store(&subjects)
	s.index.Store(redirect.NewIndex(&c))
	s.appliedAt.Store(s.Now().UnixMilli())
	if persist {
		if err := s.Outbox.PutBlob(catalogBlob, data); err != nil {
			return fmt.Errorf("keep catalog version %d: %w", c.Version, err)
		}
	}
	s.Logger.Info("catalog applied", "version", c.Version, "links", len(c.Links))
	return nil
}

// CatalogVersion returns the version served, 0 when none.
func (s *Server) CatalogVersion() uint64 {
	if x := s.index.Load(); x != nil {
		return x.Version()
	}
	return 0
}

// Ready reports whether the edge should receive traffic: it has a catalog and
// is not draining.
func (s *Server) Ready() bool { return !s.draining.Load() && s.index.Load() != nil }

// Drain makes /readyz answer 503 so that load balancers stop sending traffic
// before the listener closes.
func (s *Server) Drain() { s.draining.Store(true) }

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); err != nil {
		return fmt.Errorf("edge serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting, waits for in-flight requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	return s.srv.ShutdownWithContext(ctx)
}

// Handler returns the request handler (for tests and embedding).
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

var (
	pathRedirect = []byte("/r/")
	pathClicks   = []byte("/v1/tracking/clicks")
	pathHealthz  = []byte("/healthz")
	pathReadyz   = []byte("/readyz")
)

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	path := ctx.Path()
	var route string
	switch {
	case bytes.HasPrefix(path, pathRedirect):
		s.redirect(ctx, path[len(pathRedirect):], start)
		s.m.redirectH.Observe(time.Since(start).Seconds())
		return
	case bytes.Equal(path, pathClicks):
		s.setRequestID(ctx)
		if ctx.IsPost() {
			route = routeClicksNew
			s.partnacCreateClick(ctx)
		} else if ctx.IsGet() {
			route = routeClicksGet
			s.partnacListClicks(ctx)
		} else {
			route = routeOther
			writeMethodNotAllowed(ctx, "GET, POST", "use GET or POST")
		}
	case bytes.Equal(path, pathHealthz):
		route = routeHealth
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
	case bytes.Equal(path, pathReadyz):
		route = routeHealth
		ctx.SetContentType("text/plain; charset=utf-8")
		if s.Ready() {
			ctx.SetBodyString("ready\n")
		} else {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBodyString("not ready\n")
		}
	default:
		s.setRequestID(ctx)
		var ok bool
		if route, ok = s.serveDialect(ctx); !ok {
			route = routeOther
			writeError(ctx, errf(CodeNotFound, "no such route"))
		}
	}
	if st := ctx.Response.StatusCode(); st >= 500 {
		s.reqLog(ctx).Error("request failed", "method", string(ctx.Method()), "route", route, "status", st)
	}
	s.m.requests.WithLabelValues(route, statusClass(ctx.Response.StatusCode())).Inc()
	s.m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
}

// HeaderRequestID carries a request's id on every API answer; a caller's own
// id (1-64 of [A-Za-z0-9._-]) is kept, others are replaced by the edge's.
const HeaderRequestID = "X-Request-Id"

// setRequestID puts the request's id on the answer: the caller's when it
// is usable, else a fresh one. Redirects carry none (their path stays free
// of per-request work that is not needed).
func (s *Server) setRequestID(ctx *fasthttp.RequestCtx) {
	if id := ctx.Request.Header.Peek(HeaderRequestID); validRequestID(id) {
		ctx.Response.Header.SetBytesV(HeaderRequestID, id)
		return
	}
	var buf [32]byte
	b := append(buf[:0], s.ridPrefix...)
	b = strconv.AppendUint(b, s.ridSeq.Add(1), 36)
	ctx.Response.Header.SetBytesV(HeaderRequestID, b)
}

func validRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// reqLog is the logger for one API request: it carries the request id, so
// that a merchant quoting the X-Request-Id of a failed call finds its lines.
func (s *Server) reqLog(ctx *fasthttp.RequestCtx) *slog.Logger {
	if id := ctx.Response.Header.Peek(HeaderRequestID); len(id) > 0 {
		return s.Logger.With("request_id", string(id))
	}
	return s.Logger
}

// handleParseError answers requests fasthttp could not parse (body too large,
// malformed request line, timeouts) with the JSON error shape.
func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, errf(CodePayloadTooLarge, fmt.Sprintf("request body over %d bytes", s.MaxBodyBytes)))
	default:
		writeError(ctx, errf(CodeInvalidParameter, "malformed HTTP request"))
	}
	ctx.SetConnectionClose()
}

// peerAddr returns the socket peer without allocating.
func peerAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.IPv6Loopback()
}

// rateLog logs a recurring failure at most once a second with a count, so
// the redirect path never logs per request yet no loss is silent.
type rateLog struct {
	logger *slog.Logger
	last   atomic.Int64
	n      atomic.Int64
}

func (r *rateLog) log(msg string, err error) {
	r.n.Add(1)
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(time.Second) || !r.last.CompareAndSwap(last, now) {
		return
	}
	r.logger.Error(msg, "err", err, "count", r.n.Swap(0))
}
