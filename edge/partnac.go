package edge

// The Partnac dialect (seed document 000): S2S click tracking and the click
// listing. Decisions where the document is silent:
//
//   - Auth is "Authorization: Bearer <merchant API key>"; a missing, malformed
//     or unknown key is 401 unauthorized. A Content-Type other than JSON on a
//     POST is 415; a missing one is accepted.
//   - POST /v1/tracking/clicks answers 201 with {"data": <click>}; the click's
//     id is both "id" and "click_id" (the value a conversion's session_id
//     carries). The campaign is inferred from the partnership code: the
//     campaign of the partner's first link, else the merchant's first campaign.
//     The geo of the click comes from ip_address when given; the calling
//     server's own address and user agent are never used as the visitor's.
//   - Unknown JSON fields are ignored (forward compatible); wrong types are
//     422 invalid_field, bad syntax 400 invalid_json, missing required fields
//     422 missing_field, an unknown partnership_code 422
//     unknown_partnership_code.
//   - GET /v1/tracking/clicks answers {"data": [...], "pagination": {"limit",
//     "offset", "total"}}, newest first. limit defaults to 20; above 100 it is
//     clamped to 100 (the documented maximum); a non-integer or negative limit
//     or offset is 400 invalid_parameter. A campaign_id or partnership_id that
//     is not the key's merchant's is 404.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/enrich"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// partnacClick is a click as the Partnac dialect shows it.
type partnacClick struct {
	ID              string            `json:"id"`
	ClickID         string            `json:"click_id"`
	PartnershipCode string            `json:"partnership_code,omitempty"`
	PartnershipID   string            `json:"partnership_id,omitempty"`
	CampaignID      string            `json:"campaign_id,omitempty"`
	LinkCode        string            `json:"link_code,omitempty"`
	Source          string            `json:"source"`
	ClickURL        string            `json:"click_url,omitempty"`
	ReferrerURL     string            `json:"referrer_url,omitempty"`
	Destination     string            `json:"destination_url,omitempty"`
	ScreenWidth     int               `json:"screen_width,omitempty"`
	IPAddress       string            `json:"ip_address,omitempty"`
	Country         string            `json:"country,omitempty"`
	Region          string            `json:"region,omitempty"`
	City            string            `json:"city,omitempty"`
	UserAgent       string            `json:"user_agent,omitempty"`
	Browser         string            `json:"browser,omitempty"`
	BrowserVersion  string            `json:"browser_version,omitempty"`
	OS              string            `json:"os,omitempty"`
	Device          string            `json:"device,omitempty"`
	Bot             bool              `json:"bot"`
	BotReason       string            `json:"bot_reason,omitempty"`
	Unique          bool              `json:"unique"`
	Orphan          bool              `json:"orphan,omitempty"`
	Forged          bool              `json:"forged,omitempty"`
	PrevClickID     string            `json:"previous_click_id,omitempty"`
	Sub1            string            `json:"sub1,omitempty"`
	Sub2            string            `json:"sub2,omitempty"`
	Sub3            string            `json:"sub3,omitempty"`
	Sub4            string            `json:"sub4,omitempty"`
	Sub5            string            `json:"sub5,omitempty"`
	UTM             map[string]string `json:"utm,omitempty"`
	CreatedAt       string            `json:"created_at"`
}

func toPartnac(c *sink.Click) partnacClick {
	return partnacClick{
		ID: c.ID, ClickID: c.ID, PartnershipCode: c.PartnerKey, PartnershipID: c.PartnerID,
		CampaignID: c.CampaignID, LinkCode: c.LinkCode, Source: c.Source,
		ClickURL: c.LandingURL, ReferrerURL: c.Referrer, Destination: c.Destination,
		ScreenWidth: c.ScreenWidth, IPAddress: c.IP, Country: c.Country, Region: c.Region, City: c.City,
		UserAgent: c.UserAgent, Browser: c.Browser, BrowserVersion: c.BrowserVersion, OS: c.OS,
		Device: c.Device, Bot: c.Bot, BotReason: c.BotReason, Unique: !c.NonUnique,
		Orphan: c.Orphan, Forged: c.Forged, PrevClickID: c.PrevClickID,
		Sub1: c.Subs[0], Sub2: c.Subs[1], Sub3: c.Subs[2], Sub4: c.Subs[3], Sub5: c.Subs[4],
		UTM:       c.UTM,
		CreatedAt: time.UnixMilli(c.TS).UTC().Format(time.RFC3339Nano),
	}
}

// authMerchant resolves the Bearer key of the request to its merchant.
func (s *Server) authMerchant(ctx *fasthttp.RequestCtx) (*redirect.Index, *redirect.Merchant, *apiError) {
	x := s.index.Load()
	if x == nil {
		return nil, nil, errf(CodeUnavailable, "the edge has no catalog yet")
	}
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(string(h[:len(prefix)]), prefix) {
		return x, nil, errf(CodeUnauthorized, "missing Authorization: Bearer <API key>")
	}
	key := strings.TrimSpace(string(h[len(prefix):]))
	m, ok := x.MerchantByKey(key)
	if !ok {
		return x, nil, errf(CodeUnauthorized, "unknown API key")
	}
	return x, m, nil
}

// decodeBody parses a JSON object body strictly enough to tell syntax errors
// (400) from type errors (422), rejecting trailing data.
func decodeBody(ctx *fasthttp.RequestCtx, v any) *apiError {
	if ct := ctx.Request.Header.ContentType(); len(ct) > 0 {
		mt, _, err := mime.ParseMediaType(string(ct))
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return errf(CodeUnsupportedMedia, "Content-Type must be application/json")
		}
	}
	body := ctx.Request.Body()
	if len(bytes.TrimSpace(body)) == 0 {
		return errf(CodeInvalidJSON, "empty body: a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errf(CodeInvalidField, fmt.Sprintf("field %q: wrong type (%s)", te.Field, te.Value))
		}
		return errf(CodeInvalidJSON, "body is not a valid JSON object: "+err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return errf(CodeInvalidJSON, "trailing data after the JSON object")
	}
	return nil
}

type partnacClickRequest struct {
	PartnershipCode *string `json:"partnership_code"`
	ClickURL        *string `json:"click_url"`
	ReferrerURL     *string `json:"referrer_url"`
	ScreenWidth     *int    `json:"screen_width"`
	IPAddress       *string `json:"ip_address"`
}

// partnacCreateClick is POST /v1/tracking/clicks: mint and durably record a
// click reported by the merchant's back end.
func (s *Server) partnacCreateClick(ctx *fasthttp.RequestCtx) {
	x, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	var req partnacClickRequest
	if aerr := decodeBody(ctx, &req); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	if req.PartnershipCode == nil || *req.PartnershipCode == "" {
		writeError(ctx, errf(CodeMissingField, "partnership_code is required"))
		return
	}
	if req.ClickURL == nil || *req.ClickURL == "" {
		writeError(ctx, errf(CodeMissingField, "click_url is required"))
		return
	}
	landing, err := url.Parse(*req.ClickURL)
	if err != nil || (landing.Scheme != "http" && landing.Scheme != "https") || landing.Host == "" || len(*req.ClickURL) > 4096 {
		writeError(ctx, errf(CodeInvalidField, "click_url must be an absolute http(s) URL of at most 4096 bytes"))
		return
	}
	if req.ReferrerURL != nil && len(*req.ReferrerURL) > 4096 {
		writeError(ctx, errf(CodeInvalidField, "referrer_url is longer than 4096 bytes"))
		return
	}
	if req.ScreenWidth != nil && (*req.ScreenWidth < 0 || *req.ScreenWidth > 100000) {
		writeError(ctx, errf(CodeInvalidField, "screen_width must be between 0 and 100000"))
		return
	}
	var client netip.Addr
	if req.IPAddress != nil && *req.IPAddress != "" {
		client, err = netip.ParseAddr(*req.IPAddress)
		if err != nil {
			writeError(ctx, errf(CodeInvalidField, "ip_address is not an IPv4 or IPv6 address"))
			return
		}
		client = client.Unmap()
	}
	p, ok := x.PartnerByKey(m.ID, *req.PartnershipCode)
	if !ok {
		writeError(ctx, errf(CodeUnknownPartnership, "no partner of this merchant has that partnership_code"))
		return
	}
	camp, ok := x.DefaultCampaign(m.ID, p.ID)
	if !ok {
		writeError(ctx, errf(CodeUnknownCampaign, "the merchant has no campaign to record the click in"))
		return
	}

	now := s.Now()
	c := sink.Click{
		V: sink.ClickVersion, ID: s.Minter.New(now), TS: now.UnixMilli(), Edge: s.EdgeID,
		Source: sink.SourceS2S, MerchantID: m.ID, CampaignID: camp.ID, PartnerID: p.ID, PartnerKey: p.Key,
		LandingURL: *req.ClickURL,
	}
	if l, ok := x.LinkFor(camp.ID, p.ID); ok {
		c.LinkCode = l.Code
	}
	if req.ReferrerURL != nil {
		c.Referrer = *req.ReferrerURL
	}
	if req.ScreenWidth != nil {
		c.ScreenWidth = *req.ScreenWidth
	}
	if client.IsValid() {
		var f enrich.Facts
		s.Enricher.Enrich(&enrich.Input{Peer: client, LinkKey: m.ID + "/" + p.ID}, &f)
		c.IP, c.Country, c.Region, c.City, c.NonUnique = f.StoredIP, f.Country, f.Region, f.City, f.NonUnique
	}
	q := landing.Query()
	for i := range c.Subs {
		c.Subs[i] = truncate(q.Get("sub"+strconv.Itoa(i+1)), 256)
	}
	for k, v := range q {
		if strings.HasPrefix(k, "utm_") && len(v) > 0 && len(c.UTM) < 16 {
			if c.UTM == nil {
				c.UTM = map[string]string{}
			}
			c.UTM[truncate(k, 64)] = truncate(v[0], 256)
		}
	}
	data, err := sink.AppendClick(nil, &c)
	if err == nil {
		err = s.Outbox.Append(commitCtx, sink.Record{Subject: sink.ClickSubjectPrefix + c.MerchantID, MsgID: c.ID, Data: data})
	}
	if err != nil {
		s.m.dropped.WithLabelValues(dropReason(err)).Inc()
		s.reqLog(ctx).Error("S2S click not stored", "merchant", m.ID, "err", err)
		writeError(ctx, errf(CodeUnavailable, "the click could not be stored; retry later"))
		return
	}
	s.m.clicks[outcomeRecorded].Inc()
	writeJSON(ctx, fasthttp.StatusCreated, map[string]any{"data": toPartnac(&c)})
}

func dropReason(err error) string {
	if errors.Is(err, sink.ErrOutboxFull) {
		return "full"
	}
	return "error"
}

// partnacListClicks is GET /v1/tracking/clicks, scoped to the key's merchant.
func (s *Server) partnacListClicks(ctx *fasthttp.RequestCtx) {
	x, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	pg, aerr := partnacPagingArgs(ctx.QueryArgs(), x, m)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	q := sink.ClickQuery{MerchantID: m.ID, Limit: pg.limit, Offset: pg.offset, CampaignID: pg.campaignID, PartnerID: pg.partnerID}
	if s.Lister == nil {
		writeError(ctx, errf(CodeWorkerUnavailable, "this edge has no read API configured"))
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	page, lerr := s.Lister.ListClicks(rctx, q)
	if lerr != nil {
		var ae *sink.APIError
		if errors.As(lerr, &ae) && (ae.Code == sink.APICodeBadRequest || ae.Code == "invalid_request") {
			writeError(ctx, errf(CodeInvalidParameter, ae.Message))
			return
		}
		s.reqLog(ctx).Error("list clicks", "merchant", m.ID, "err", lerr)
		writeError(ctx, errf(CodeWorkerUnavailable, "the attribution worker did not answer; retry later"))
		return
	}
	out := make([]partnacClick, 0, len(page.Clicks))
	for i := range page.Clicks {
		out = append(out, toPartnac(&page.Clicks[i]))
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{
		"data":       out,
		"pagination": map[string]int{"limit": q.Limit, "offset": q.Offset, "total": page.Total},
	})
}

// partnacPaging holds the query parameters both Partnac listings share.
type partnacPaging struct {
	limit, offset         int
	campaignID, partnerID string
}

// partnacPagingArgs reads limit (default 20, clamped to 100), offset,
// campaign_id and partnership_id; the ids must be the merchant's (404).
func partnacPagingArgs(args *fasthttp.Args, x *redirect.Index, m *redirect.Merchant) (partnacPaging, *apiError) {
	var pg partnacPaging
	var aerr *apiError
	if pg.limit, aerr = intArg(args, "limit", 20); aerr != nil {
		return pg, aerr
	}
	if pg.limit == 0 {
		return pg, errf(CodeInvalidParameter, "limit must be at least 1")
	}
	pg.limit = min(pg.limit, 100)
	if pg.offset, aerr = intArg(args, "offset", 0); aerr != nil {
		return pg, aerr
	}
	if v := string(args.Peek("campaign_id")); v != "" {
		if c, ok := x.Campaign(v); !ok || c.MerchantID != m.ID {
			return pg, errf(CodeUnknownCampaign, "no campaign with that id")
		}
		pg.campaignID = v
	}
	if v := string(args.Peek("partnership_id")); v != "" {
		if p, ok := x.Partner(v); !ok || p.MerchantID != m.ID {
			return pg, errf(CodeUnknownPartner, "no partnership with that id")
		}
		pg.partnerID = v
	}
	return pg, nil
}

func intArg(args *fasthttp.Args, name string, def int) (int, *apiError) {
	v := args.Peek(name)
	if len(v) == 0 {
		return def, nil
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 0 || n > 1_000_000_000 {
		return 0, errf(CodeInvalidParameter, name+" must be a non-negative integer")
	}
	return n, nil
}
