package edge

// Refer-a-friend links (Partnero): a customer's own link is
// GET /f/{merchant id}/{referral code}, minted by the Partnero customer
// endpoint from the worker's CustomerRecord.ReferralCode. Decisions:
//
//   - The visitor is sent with a 302 to the default destination of the
//     merchant's first campaign with ref=<code> added to its query; macros
//     of that template are not expanded (there is no partner or link).
//   - The first-party cookie ReferralCookie, partnero_referral (the name
//     Partnero's hybrid path gives the refer-a-friend cookie), holds the
//     code for the campaign's window, with the merchant's cookie domain,
//     HttpOnly and SameSite=Lax like every clickedge cookie. The merchant's
//     back end reads it (or the ref parameter) and sends it as
//     referring_customer.key to POST /v1/customers: the worker accepts a
//     referring customer named by key or by referral code.
//   - The visit is recorded as a click with source "referral" and the code
//     as its link code, committed to the outbox before the 302, like every
//     click. An unknown merchant or a malformed code is a plain 404 and is
//     recorded nowhere (there is no merchant to record it for).

import (
	"net/url"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/enrich"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// ReferralCookie is the cookie that carries a refer-a-friend code. Its name
// is Partnero's ("read the partnero_partner / partnero_referral cookie
// server-side"), so a back end written for Partnero finds the code.
const ReferralCookie = "partnero_referral"

// SourceReferral marks clicks on refer-a-friend links.
const SourceReferral = "referral"

func init() {
	registerRoutes(route{Method: "GET", Pattern: "/f/:merchant/:code", Name: "referral_redirect", Handler: (*Server).referralRedirect})
}

// ReferralPath returns the path of a customer's refer-a-friend link.
func ReferralPath(merchantID, code string) string {
	return "/f/" + url.PathEscape(merchantID) + "/" + url.PathEscape(code)
}

// validReferralCode: 12 characters of the worker's lowercase base32.
func validReferralCode(code string) bool {
	if len(code) != 12 {
		return false
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

func (s *Server) referralRedirect(ctx *fasthttp.RequestCtx, p Params) {
	x := s.index.Load()
	code := p["code"]
	var m *redirect.Merchant
	var k *redirect.Campaign
	ok := x != nil && validReferralCode(code)
	if ok {
		m, ok = x.Merchant(p["merchant"])
	}
	if ok {
		k, ok = x.DefaultCampaign(m.ID, "")
	}
	var dest *url.URL
	if ok {
		var err error
		dest, err = url.Parse(k.DefaultDestination)
		ok = err == nil
	}
	if !ok {
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBody(notFoundBody)
		return
	}
	q := dest.Query()
	q.Set("ref", code)
	dest.RawQuery = q.Encode()
	location := dest.String()

	now := s.Now()
	c := sink.Click{
		V: sink.ClickVersion, ID: s.Minter.New(now), TS: now.UnixMilli(), Edge: s.EdgeID, Source: SourceReferral,
		MerchantID: m.ID, CampaignID: k.ID, LinkCode: code, Destination: location,
		Referrer: truncate(string(ctx.Request.Header.Referer()), 1024),
	}
	var f enrich.Facts
	in := enrich.Input{
		Peer: peerAddr(ctx), XForwardedFor: ctx.Request.Header.PeekBytes(hdrXFF), Forwarded: ctx.Request.Header.PeekBytes(hdrForwarded),
		UserAgent: ctx.Request.Header.UserAgent(), Head: ctx.IsHead(), LinkKey: m.ID + "/ref/" + code,
	}
	s.Enricher.Enrich(&in, &f)
	copyFacts(&c, &f)
	c.UserAgent = truncate(string(in.UserAgent), 512)
	st := statePool.Get().(*clickState)
	defer releaseState(st)
	st.click = c
	outcome := outcomeRecorded
	switch {
	case c.Bot:
		outcome = outcomeBot
	case c.NonUnique:
		outcome = outcomeNonUnique
	}
	s.record(ctx, st, outcome)

	ck := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(ck)
	ck.SetKey(ReferralCookie)
	ck.SetValue(code)
	ck.SetMaxAge(redirect.CookieMaxAge(k))
	ck.SetPath("/")
	ck.SetHTTPOnly(true)
	ck.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	ck.SetSecure(s.SecureCookies || ctx.IsTLS())
	if m.CookieDomain != "" {
		ck.SetDomain(m.CookieDomain)
	}
	ctx.Response.Header.SetCookie(ck)
	ctx.Response.Header.Set(fasthttp.HeaderLocation, location)
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.SetStatusCode(fasthttp.StatusFound)
}
