package edge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Route labels: a fixed set, so the label is bounded.
const (
	routeRedirect  = "redirect"
	routeClicksNew = "partnac_clicks_create"
	routeClicksGet = "partnac_clicks_list"
	routeHealth    = "health"
	routeOther     = "other"
)

// Click outcomes: every minted click is counted under exactly one.
const (
	outcomeRecorded  = "recorded"
	outcomeBot       = "bot"
	outcomeNonUnique = "non_unique"
	outcomeOrphan    = "orphan"
	outcomeDropped   = "dropped"
	// outcomeNotCaptured counts the clicks of --capture none: minted and
	// redirected, recorded nowhere.
	outcomeNotCaptured = "not_captured"
)

type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	clicks    map[string]prometheus.Counter
	dropped   *prometheus.CounterVec
	unsafe    prometheus.Counter
	deepLinks prometheus.Counter
	forgedCk  prometheus.Counter
	redirectH prometheus.Observer
	// redirect3xx and redirect4xx are requests{route="redirect"} by class,
	// resolved once rather than per redirect.
	redirect3xx, redirect4xx prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickedge_edge_requests_total",
			Help: "HTTP requests answered by the edge, by route and status class.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "clickedge_edge_request_duration_seconds",
			Help:    "Time from request parsed to response written into the buffer, by route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"route"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickedge_clicks_dropped_total",
			Help: "Clicks whose visitor was redirected but that could not be stored in the outbox, by reason (full, error).",
		}, []string{"reason"}),
		unsafe: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickedge_edge_unsafe_destinations_total",
			Help: "Redirects whose built destination failed the safety check and went to the fallback instead.",
		}),
		deepLinks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickedge_edge_deep_links_rejected_total",
			Help: "Deep links (?url=) outside the allowed domains, replaced by the default destination.",
		}),
		forgedCk: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickedge_edge_cookie_rejected_total",
			Help: "Campaign cookies presented by visitors whose value did not parse or verify.",
		}),
		clicks: map[string]prometheus.Counter{},
	}
	clicks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clickedge_clicks_total",
		Help: "Clicks minted by the edge, by outcome (recorded, bot, non_unique, orphan, dropped; not_captured under --capture none).",
	}, []string{"outcome"})
	for _, o := range []string{outcomeRecorded, outcomeBot, outcomeNonUnique, outcomeOrphan, outcomeDropped, outcomeNotCaptured} {
		m.clicks[o] = clicks.WithLabelValues(o)
	}
	m.dropped.WithLabelValues("full")
	m.dropped.WithLabelValues("error")
	m.redirectH = m.latency.WithLabelValues(routeRedirect)
	m.redirect3xx = m.requests.WithLabelValues(routeRedirect, "3xx")
	m.redirect4xx = m.requests.WithLabelValues(routeRedirect, "4xx")
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, clicks, m.dropped, m.unsafe, m.deepLinks, m.forgedCk)
	}
	return m
}

// statusClass keeps the code label bounded.
func statusClass(code int) string {
	switch {
	case code < 200:
		return "1xx"
	case code < 300:
		return "2xx"
	case code < 400:
		return "3xx"
	case code < 500:
		return "4xx"
	default:
		return "5xx"
	}
}
