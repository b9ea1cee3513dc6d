package edge

import (
	"errors"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/enrich"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// UnknownMerchant is the merchant id under which orphan clicks of codes that
// no merchant claims are recorded.
const UnknownMerchant = "_unknown"

// clickState is the per-request scratch of the redirect path, pooled so that
// a redirect reuses its buffers.
type clickState struct {
	click sink.Click
	facts enrich.Facts
	in    enrich.Input
	res   redirect.DestResult
	dest  []byte
	id    []byte
	enc   []byte
	subj  []byte
}

var statePool = sync.Pool{New: func() any { return new(clickState) }}

var (
	hdrXFF       = []byte("X-Forwarded-For")
	hdrForwarded = []byte("Forwarded")
	hdrNoStore   = []byte("no-store")
	notFoundBody = []byte("404 page not found: this link does not exist or is no longer active\n")
)

// redirect answers GET and HEAD /r/{code}: a 302 to the link's destination
// with a fresh click id, sent only after the click is committed to the outbox.
func (s *Server) redirect(ctx *fasthttp.RequestCtx, code []byte) {
	if !ctx.IsGet() && !ctx.IsHead() {
		writeMethodNotAllowed(ctx, "GET, HEAD", "use GET or HEAD")
		return
	}
	st := statePool.Get().(*clickState)
	defer statePool.Put(st)
	st.click = sink.Click{}
	st.res = redirect.DestResult{}

	now := s.Now()
	st.id = s.Minter.AppendNew(st.id[:0], now)
	c := &st.click
	c.V = sink.ClickVersion
	c.ID = string(st.id)
	c.TS = now.UnixMilli()
	c.Edge = s.EdgeID
	c.Source = sink.SourceRedirect

	st.in = enrich.Input{
		Peer:          peerAddr(ctx),
		XForwardedFor: ctx.Request.Header.PeekBytes(hdrXFF),
		Forwarded:     ctx.Request.Header.PeekBytes(hdrForwarded),
		UserAgent:     ctx.Request.Header.UserAgent(),
		Head:          ctx.IsHead(),
		LinkKey:       string(code),
	}
	s.Enricher.Enrich(&st.in, &st.facts)
	copyFacts(c, &st.facts, st.in.UserAgent)
	c.Referrer = string(ctx.Request.Header.Referer())

	x := s.index.Load()
	var r redirect.Resolved
	ok := false
	if x != nil {
		r, ok = x.Lookup(code)
	}
	if !ok || r.Link.Paused {
		s.orphan(ctx, st, x, r, ok, code)
		return
	}
	c.MerchantID = r.Merchant.ID
	c.CampaignID = r.Campaign.ID
	c.PartnerID = r.Partner.ID
	c.PartnerKey = r.Partner.Key
	c.LinkCode = r.Link.Code

	var err error
	st.dest, err = redirect.AppendDestination(st.dest[:0], &redirect.DestInput{
		R: r, ClickID: c.ID, Query: ctx.URI().QueryString(),
	}, &st.res)
	if err != nil {
		// A template or deep link that fails the safety check never reaches
		// the visitor; the click is kept as an orphan of its link.
		s.m.unsafe.Inc()
		s.orphan(ctx, st, x, r, true, code)
		return
	}
	if st.res.DeepLinkRejected {
		s.m.deepLinks.Inc()
	}
	c.Subs = st.res.Subs
	c.UTM = st.res.UTM
	c.Destination = string(st.dest)

	// A visitor who already holds this campaign's click cookie: link the new
	// click to the old one.
	cookieName := r.Campaign.Cookie()
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

	ck := fasthttp.AcquireCookie()
	ck.SetKey(cookieName)
	ck.SetValue(redirect.CookieValue(r.Campaign, c.ID, r.Partner.Key))
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
	s.m.requests.WithLabelValues(routeRedirect, "3xx").Inc()
}

// orphan answers an unknown or paused code: the link's or merchant's fallback
// URL, or a plain 404 page, and records the click as an orphan.
func (s *Server) orphan(ctx *fasthttp.RequestCtx, st *clickState, x *redirect.Index, r redirect.Resolved, known bool, code []byte) {
	c := &st.click
	c.Orphan = true
	c.LinkCode = truncate(string(code), 64)
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
		s.m.requests.WithLabelValues(routeRedirect, "4xx").Inc()
		return
	}
	// Fallback URLs come from the validated catalog or the operator's flag,
	// never from the request.
	ctx.Response.Header.Set(fasthttp.HeaderLocation, fallback)
	ctx.SetStatusCode(fasthttp.StatusFound)
	s.m.requests.WithLabelValues(routeRedirect, "3xx").Inc()
}

// record commits the click to the outbox. A click that cannot be stored is
// counted and logged (rate-limited); the visitor is redirected anyway.
func (s *Server) record(ctx *fasthttp.RequestCtx, st *clickState, outcome string) {
	var err error
	st.enc, err = sink.AppendClick(st.enc[:0], &st.click)
	if err == nil {
		st.subj = append(append(st.subj[:0], sink.ClickSubjectPrefix...), st.click.MerchantID...)
		err = s.Outbox.Append(commitCtx, sink.Record{Subject: string(st.subj), MsgID: st.click.ID, Data: st.enc})
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

func copyFacts(c *sink.Click, f *enrich.Facts, ua []byte) {
	c.IP = f.StoredIP
	c.Country, c.Region, c.City = f.Country, f.Region, f.City
	c.UserAgent = truncate(string(ua), 512)
	c.Browser, c.BrowserVersion, c.OS, c.Device = f.Browser, f.BrowserVersion, f.OS, f.Device
	c.Bot, c.BotReason, c.NonUnique = f.Bot, f.BotReason, f.NonUnique
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
