package edge

import (
	"errors"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/enrich"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// UnknownMerchant is the merchant id under which orphan clicks of codes that
// no merchant claims are recorded.
const UnknownMerchant = "_unknown"

// clickState is the per-request scratch of the redirect path, pooled so that
// a redirect reuses its buffers (and the UTM map of res).
type clickState struct {
	click sink.Click
	facts enrich.Facts
	res   redirect.DestResult
	dest  []byte
	id    []byte
	enc   []byte
}

var statePool = sync.Pool{New: func() any { return new(clickState) }}

// releaseState returns st to the pool without the click, whose strings view
// this request's buffers.
func releaseState(st *clickState) {
	st.click = sink.Click{}
	statePool.Put(st)
}

var (
	hdrXFF       = []byte("X-Forwarded-For")
	hdrForwarded = []byte("Forwarded")
	hdrNoStore   = []byte("no-store")
	notFoundBody = []byte("404 page not found: this link does not exist or is no longer active\n")
)

// redirect answers GET and HEAD /r/{code}: a 302 to the link's destination
// with a fresh click id, sent after the click is committed to the outbox
// (CaptureDurable), queued for it (CaptureAsync), or without recording it
// (CaptureNone).
//
// Per request, nothing is built that the catalog version already knows (the
// destination plan, the cookie name, the click subject), and the click's
// strings are views of the request and of the pooled state, encoded and
// copied into the outbox before the handler returns.
func (s *Server) redirect(ctx *fasthttp.RequestCtx, code []byte, start time.Time) {
	if !ctx.IsGet() && !ctx.IsHead() {
		writeMethodNotAllowed(ctx, "GET, HEAD", "use GET or HEAD")
		return
	}
	st := statePool.Get().(*clickState)
	defer releaseState(st)
	capture := s.Capture != CaptureNone

	now := start
	if !s.wallClock {
		now = s.Now()
	}
	st.id = s.Minter.AppendNew(st.id[:0], now)
	clickID := bytesView(st.id)
	in := enrich.Input{
		Time:          now,
		Peer:          peerAddr(ctx),
		XForwardedFor: ctx.Request.Header.PeekBytes(hdrXFF),
		Forwarded:     ctx.Request.Header.PeekBytes(hdrForwarded),
		UserAgent:     ctx.Request.Header.UserAgent(),
		Head:          ctx.IsHead(),
		LinkKey:       bytesView(code),
	}
	s.Enricher.Enrich(&in, &st.facts)

	x := s.index.Load()
	var r redirect.Resolved
	ok := false
	if x != nil {
		r, ok = x.Lookup(code)
	}
	if !ok || r.Link.Paused {
		s.orphan(ctx, st, x, r, ok, code, now, &in)
		return
	}

	var err error
	st.dest, err = redirect.AppendDestination(st.dest[:0], &redirect.DestInput{
		R: r, ClickID: clickID, Query: ctx.URI().QueryString(), SkipValues: !capture,
	}, &st.res)
	if err != nil {
		// A template or deep link that fails the safety check never reaches
		// the visitor; the click is kept as an orphan of its link.
		s.m.unsafe.Inc()
		s.orphan(ctx, st, x, r, true, code, now, &in)
		return
	}
	if st.res.DeepLinkRejected {
		s.m.deepLinks.Inc()
	}
	cookieName := r.CookieName()

	if capture {
		c := &st.click
		s.newClick(c, clickID, now, ctx, &st.facts, in.UserAgent)
		c.MerchantID = r.Merchant.ID
		c.CampaignID = r.Campaign.ID
		c.PartnerID = r.Partner.ID
		c.PartnerKey = r.Partner.Key
		c.LinkCode = r.Link.Code
		c.Subs = st.res.Subs
		c.UTM = st.res.UTM
		c.Destination = bytesView(st.dest)

		// A visitor who already holds this campaign's click cookie: link the
		// new click to the old one.
		if v := ctx.Request.Header.Cookie(cookieName); len(v) > 0 {
			if cc, err := redirect.ParseCookieValue(r.Campaign, v); err != nil {
				s.m.forgedCk.Inc()
			} else if cc.ClickID != "" {
				if _, err := s.Minter.Verify(cc.ClickID); err == nil {
					c.PrevClickID = cc.ClickID
				} else {
					s.m.forgedCk.Inc()
				}
			}
		}

		outcome := outcomeRecorded
		switch {
		case c.Bot:
			outcome = outcomeBot
		case c.NonUnique:
			outcome = outcomeNonUnique
		}
		s.record(ctx, st, outcome)
	} else {
		s.m.clicks[outcomeNotCaptured].Inc()
	}

	ck := fasthttp.AcquireCookie()
	ck.SetKey(cookieName)
	ck.SetValue(redirect.CookieValue(r.Campaign, clickID, r.Partner.Key))
	ck.SetMaxAge(redirect.CookieMaxAge(r.Campaign))
	ck.SetPath("/")
	ck.SetHTTPOnly(true)
	ck.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	ck.SetSecure(s.SecureCookies || ctx.IsTLS())
	if r.Merchant.CookieDomain != "" {
		ck.SetDomain(r.Merchant.CookieDomain)
	}
	ctx.Response.Header.SetCookie(ck)
	fasthttp.ReleaseCookie(ck)

	ctx.Response.Header.SetBytesV(fasthttp.HeaderLocation, st.dest)
	ctx.Response.Header.SetBytesV(fasthttp.HeaderCacheControl, hdrNoStore)
	ctx.SetStatusCode(fasthttp.StatusFound)
	s.m.redirect3xx.Inc()
}

// newClick fills the parts of a redirect click that do not depend on the
// link. Its strings view the request and st: see bytesView.
func (s *Server) newClick(c *sink.Click, clickID string, now time.Time, ctx *fasthttp.RequestCtx, f *enrich.Facts, ua []byte) {
	c.V = sink.ClickVersion
	c.ID = clickID
	c.TS = now.UnixMilli()
	c.Edge = s.EdgeID
	c.Source = sink.SourceRedirect
	copyFacts(c, f)
	c.UserAgent = truncate(bytesView(ua), 512)
	c.Referrer = bytesView(ctx.Request.Header.Referer())
}

// orphan answers an unknown or paused code: the link's or merchant's fallback
// URL, or a plain 404 page, and records the click as an orphan.
func (s *Server) orphan(ctx *fasthttp.RequestCtx, st *clickState, x *redirect.Index, r redirect.Resolved, known bool,
	code []byte, now time.Time, in *enrich.Input) {
	c := &st.click
	if s.Capture != CaptureNone {
		s.newClick(c, bytesView(st.id), now, ctx, &st.facts, in.UserAgent)
		c.Orphan = true
		c.LinkCode = truncate(bytesView(code), 64)
	}
	fallback := ""
	if known {
		c.MerchantID = r.Merchant.ID
		c.CampaignID = r.Campaign.ID
		c.PartnerID = r.Partner.ID
		fallback = r.Link.FallbackURL
		if fallback == "" {
			fallback = r.Merchant.FallbackURL
		}
	} else {
		c.MerchantID = UnknownMerchant
		if x != nil {
			if m, ok := x.MerchantByHost(ctx.Host()); ok {
				c.MerchantID = m.ID
				fallback = m.FallbackURL
			}
		}
	}
	if fallback == "" {
		fallback = s.FallbackURL
	}
	s.record(ctx, st, outcomeOrphan)
	ctx.Response.Header.SetBytesV(fasthttp.HeaderCacheControl, hdrNoStore)
	if fallback == "" {
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBody(notFoundBody)
		s.m.redirect4xx.Inc()
		return
	}
	// Fallback URLs come from the validated catalog or the operator's flag,
	// never from the request.
	ctx.Response.Header.Set(fasthttp.HeaderLocation, fallback)
	ctx.SetStatusCode(fasthttp.StatusFound)
	s.m.redirect3xx.Inc()
}

// record hands the click to the outbox as the capture mode says: committed
// before it returns (durable), queued (async), or not at all (none). A click
// that cannot be stored or queued is counted and logged (rate-limited); the
// visitor is redirected anyway.
func (s *Server) record(ctx *fasthttp.RequestCtx, st *clickState, outcome string) {
	if s.Capture == CaptureNone {
		s.m.clicks[outcomeNotCaptured].Inc()
		return
	}
	var err error
	st.enc, err = sink.AppendClick(st.enc[:0], &st.click)
	if err == nil {
		rec := sink.Record{Subject: s.clickSubject(st.click.MerchantID), MsgID: st.click.ID, Data: st.enc}
		if s.Capture == CaptureAsync {
			err = s.Outbox.Enqueue(rec)
		} else {
			err = s.Outbox.Append(commitCtx, rec)
		}
	}
	if err != nil {
		reason := "error"
		if errors.Is(err, sink.ErrOutboxFull) {
			reason = "full"
		}
		s.m.dropped.WithLabelValues(reason).Inc()
		s.m.clicks[outcomeDropped].Inc()
		s.dropLog.log("click not stored; visitor redirected", err)
		return
	}
	s.m.clicks[outcome].Inc()
}

// clickSubject returns the JetStream subject of a merchant's clicks, from
// the table built per catalog version when the merchant is in it.
func (s *Server) clickSubject(merchantID string) string {
	if m := s.subjects.Load(); m != nil {
		if subj, ok := (*m)[merchantID]; ok {
			return subj
		}
	}
	return sink.ClickSubjectPrefix + merchantID
}

// copyFacts copies the enrichment facts into c (not the User-Agent itself).
func copyFacts(c *sink.Click, f *enrich.Facts) {
	c.IP = f.StoredIP
	c.Country, c.Region, c.City = f.Country, f.Region, f.City
	c.Browser, c.BrowserVersion, c.OS, c.Device = f.Browser, f.BrowserVersion, f.OS, f.Device
	c.Bot, c.BotReason, c.NonUnique = f.Bot, f.BotReason, f.NonUnique
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
