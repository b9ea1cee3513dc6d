package edge

// The Partnac dialect, conversions (seed document 000): track, refund, update
// and list conversions. Decisions where the document is silent:
//
//   - Auth, Content-Type and JSON strictness are those of the click endpoints
//     (see partnac.go): 401 unauthorized, 415 for a non-JSON Content-Type,
//     400 invalid_json for bad syntax, 422 invalid_field for a wrong type,
//     422 missing_field for a required field that is absent, null or "".
//     Unknown fields are ignored. A body over the edge's MaxBodyBytes is 413.
//   - Amounts are JSON numbers or strings, parsed exactly into minor units of
//     the currency (package money, never float64): NaN, exponents, negative
//     values, more decimals than the currency has (trailing zeros allowed)
//     and values above money.MaxMinor are 422 with the same codes as the
//     other dialects: invalid_amount (not decimal text: NaN, exponent, empty,
//     boolean…), negative_amount, too_many_decimals, amount_too_large; a
//     currency that is not active ISO 4217 is 422 unknown_currency.
//     metadata.currency is matched case-insensitively; absent, null or ""
//     means USD.
//   - POST /v1/tracking/conversions: partnership_code is the partner's key or
//     one of its coupon codes ("referral/coupon code"), resolved to the
//     partner's key; a code no partner of the merchant has is 422
//     unknown_partnership_code, so a typo is seen at once instead of a sale
//     silently going unattributed. conversion_type is one of sale, lead,
//     referral, subscription, custom (exact, lower case). unique_id is 1-255
//     bytes of UTF-8 without control characters or "/" (it must be
//     addressable as the :id of the refund and update paths) and without
//     ":refund:" or ":update:" (which would make event ids ambiguous).
//     campaign_id, when given, must be the merchant's (404 unknown_campaign);
//     when omitted the worker infers it from the partnership. session_id is
//     the click id and is passed on unverified (the worker flags forged ids);
//     only one longer than 64 bytes is rejected. metadata must be an object;
//     its special keys are typed: currency, coupon_code, ip_address,
//     user_agent, country, city, region are strings, customer_id a string or
//     an integer. ip_address must be an IPv4/IPv6 address; it and user_agent
//     are enriched like a click (geo, privacy mode), never with the calling
//     server's own address. country, city and region given by the merchant
//     win over the geo lookup. The metadata object is kept as sent, except
//     that ip_address is kept only in the form the privacy mode stores for
//     clicks (truncated, or dropped; the object's keys are then sorted).
//   - Answers: 201 {"data": <conversion>} when the worker applied it; 200
//     with the original conversion when the unique_id was already tracked
//     (the edge asks the worker first and then writes nothing; a worker that
//     cannot be asked does not block the write, and its result "duplicate"
//     is answered 200 too); 202 {"data": {"unique_id", "status": "queued"}}
//     when the worker did not answer within the edge's ResultWait (the write
//     is durable and will be applied; read it later with GET
//     /v1/tracking/conversions/:id); 200 {"data": {"unique_id", "status":
//     "ignored"}} for a documented no-op; and the worker's rejection as a
//     4xx: conversion_not_found 404, a code the edge knows with its own
//     status, anything else 422 event_rejected naming the worker's code.
//   - A conversion is shown as {id, unique_id, conversion_type, amount,
//     currency, status, campaign_id, partnership_id, partnership_code,
//     session_id, customer_id, coupon_code, commission_amount,
//     refunded_amount, attributed_by, flags, ip_address, country, region,
//     city, metadata, created_at, updated_at}. Amounts are strings with
//     exactly the currency's decimals ("99.00", "1500" for JPY); optional
//     identifiers and geo fields are null when unknown, flags is always an
//     array and metadata always an object; times are RFC 3339 in UTC with
//     the milliseconds the worker keeps, trailing zeros dropped (as for
//     clicks).
//   - POST /v1/tracking/conversions/:id/refund: :id is the unique_id (the
//     worker's conv_… id is accepted too). The body may be empty: a full
//     refund. The conversion must exist for the key's merchant (404
//     conversion_not_found, including another merchant's ids; 503
//     worker_unavailable when the worker cannot be asked), so a refund sent
//     before its conversion reached the worker is refused and may be retried.
//     amount is in the conversion's currency, greater than zero and at most
//     what is not refunded yet (422 invalid_amount for zero, 422
//     refund_exceeds_amount). reverse_paid_earnings defaults to true. The
//     refund's event key is unique_id + ":refund:" + external_refund_id when
//     given, else "full" for a full refund, else "partial:<minor>:idem:<key>"
//     with an Idempotency-Key header, else "partial:<minor>:<random nonce>":
//     a partial refund is idempotent only with an external_refund_id or an
//     Idempotency-Key; a repeated full refund without one refunds once. external_refund_id is
//     1-255 bytes without control characters; "full" and ids starting with
//     "partial:" are reserved (422 invalid_field). Answer: 200 with the
//     conversion as the worker left it, or 202 queued.
//   - PATCH /v1/tracking/conversions/:id: at least one of amount, metadata,
//     recalculate_commissions=true is required (422 missing_field);
//     unique_id, when given, must be the conversion's (422 invalid_field).
//     amount is the new total in the conversion's currency, not negative and
//     not below what was already refunded. metadata is merged by the worker
//     and checked like on track (its ip_address reduced the same way; the
//     conversion's geo is not recomputed); a metadata.currency other than
//     the conversion's is 422 currency_mismatch. The event key is unique_id + ":update:" + the
//     conversion's updated_at (Unix ms) + ":" + the hex SHA-256 of the
//     canonical update (amount in minor units, metadata with sorted keys, the
//     recalculate flag), so repeating a PATCH, or sending 99 instead of
//     "99.00", is idempotent while the conversion is unchanged, and a change
//     back to an earlier value (A→B→A) is a new event. Answer: 200 with the conversion,
//     or 202 queued.
//   - GET /v1/tracking/conversions: like GET /v1/tracking/clicks (limit
//     default 20, clamped to 100, 0 or non-integers 400, campaign_id and
//     partnership_id of another merchant 404), plus an optional status filter
//     (pending, approved, rejected, paid; anything else 400). GET
//     /v1/tracking/conversions/:id (not in the document) reads one
//     conversion, so that a 202 queued write can be followed up.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"mime"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/enrich"
	"github.com/clickedge/clickedge/money"
	"github.com/clickedge/clickedge/sink"
)

// Route labels of the conversion endpoints.
const (
	partnacRouteConvTrack  = "partnac_conversions_track"
	partnacRouteConvList   = "partnac_conversions_list"
	partnacRouteConvGet    = "partnac_conversions_get"
	partnacRouteConvRefund = "partnac_conversions_refund"
	partnacRouteConvUpdate = "partnac_conversions_update"
)

// Bounds of identifiers and texts (bytes).
const (
	partnacMaxUniqueID  = 255
	partnacMaxSessionID = 64
	partnacMaxText      = 255  // customer_id, coupon_code, external_refund_id, geo fields
	partnacMaxReason    = 1024 // refund reason
	partnacMaxUA        = 512  // stored user agent, as for clicks
	partnacReadTimeout  = 5 * time.Second
)

// partnacConversionTypes are the documented conversion_type values.
var partnacConversionTypes = map[string]bool{
	"sale": true, "lead": true, "referral": true, "subscription": true, "custom": true,
}

// partnacStatuses are the values of the list's status filter.
var partnacStatuses = map[string]bool{
	sink.StatusPending: true, sink.StatusApproved: true, sink.StatusRejected: true, sink.StatusPaid: true,
}

func init() {
	registerRoutes(
		route{Method: "POST", Pattern: "/v1/tracking/conversions", Name: partnacRouteConvTrack, Handler: partnacTrackConversion},
		route{Method: "GET", Pattern: "/v1/tracking/conversions", Name: partnacRouteConvList, Handler: partnacListConversions},
		route{Method: "GET", Pattern: "/v1/tracking/conversions/:id", Name: partnacRouteConvGet, Handler: partnacGetConversion},
		route{Method: "PATCH", Pattern: "/v1/tracking/conversions/:id", Name: partnacRouteConvUpdate, Handler: partnacUpdateConversion},
		route{Method: "POST", Pattern: "/v1/tracking/conversions/:id/refund", Name: partnacRouteConvRefund, Handler: partnacRefundConversion},
	)
}

// partnacConversion is a conversion as the Partnac dialect shows it.
type partnacConversion struct {
	ID               string          `json:"id"`
	UniqueID         string          `json:"unique_id"`
	ConversionType   string          `json:"conversion_type"`
	Amount           string          `json:"amount"`
	Currency         string          `json:"currency"`
	Status           string          `json:"status"`
	CampaignID       *string         `json:"campaign_id"`
	PartnershipID    *string         `json:"partnership_id"`
	PartnershipCode  *string         `json:"partnership_code"`
	SessionID        *string         `json:"session_id"`
	CustomerID       *string         `json:"customer_id"`
	CouponCode       *string         `json:"coupon_code"`
	CommissionAmount string          `json:"commission_amount"`
	RefundedAmount   string          `json:"refunded_amount"`
	AttributedBy     string          `json:"attributed_by"`
	Flags            []string        `json:"flags"`
	IPAddress        *string         `json:"ip_address"`
	Country          *string         `json:"country"`
	Region           *string         `json:"region"`
	City             *string         `json:"city"`
	Metadata         json.RawMessage `json:"metadata"`
	CreatedAt        string          `json:"created_at"`
	UpdatedAt        string          `json:"updated_at"`
}

// partnacNullable is nil for "", so that unknown values render as null.
func partnacNullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// partnacCurrency returns the currency of a stored conversion. A code the
// money package does not know (it should not happen: the edge only sends
// active codes) renders with two decimals rather than failing the read.
func partnacCurrency(code string) money.Currency {
	if c, err := money.LookupAnyCurrency(code); err == nil {
		return c
	}
	return money.Currency{Code: code, Exponent: 2}
}

func partnacTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

func toPartnacConversion(r *sink.ConversionRecord) partnacConversion {
	cur := partnacCurrency(r.Currency)
	out := partnacConversion{
		ID: r.ID, UniqueID: r.UniqueID, ConversionType: r.Type,
		Amount: money.Format(r.AmountMinor, cur), Currency: r.Currency, Status: r.Status,
		CampaignID: partnacNullable(r.CampaignID), PartnershipID: partnacNullable(r.PartnerID),
		PartnershipCode: partnacNullable(r.PartnerKey), SessionID: partnacNullable(r.ClickID),
		CustomerID: partnacNullable(r.CustomerID), CouponCode: partnacNullable(r.CouponCode),
		CommissionAmount: money.Format(r.CommissionMinor, cur),
		RefundedAmount:   money.Format(r.RefundedMinor, cur),
		AttributedBy:     r.AttributedBy, Flags: r.Flags,
		IPAddress: partnacNullable(r.IP), Country: partnacNullable(r.Country),
		Region: partnacNullable(r.Region), City: partnacNullable(r.City),
		Metadata:  r.Metadata,
		CreatedAt: partnacTime(r.CreatedAt), UpdatedAt: partnacTime(r.UpdatedAt),
	}
	if out.Flags == nil {
		out.Flags = []string{}
	}
	if out.AttributedBy == "" {
		out.AttributedBy = sink.ByNone
	}
	if len(bytes.TrimSpace(out.Metadata)) == 0 || bytes.Equal(bytes.TrimSpace(out.Metadata), []byte("null")) {
		out.Metadata = json.RawMessage("{}")
	}
	return out
}

// partnacReadBody rejects bodies over the edge's limit (fasthttp does too
// when serving; this covers the handler used on its own) and decodes the
// JSON object. An empty body is an empty object when optional.
func partnacReadBody(s *Server, ctx *fasthttp.RequestCtx, v any, optional bool) *apiError {
	body := ctx.Request.Body()
	if s.MaxBodyBytes > 0 && len(body) > s.MaxBodyBytes {
		return errf(CodePayloadTooLarge, "request body over "+strconv.Itoa(s.MaxBodyBytes)+" bytes")
	}
	if optional && len(bytes.TrimSpace(body)) == 0 {
		return partnacCheckContentType(ctx)
	}
	return decodeBody(ctx, v)
}

// partnacCheckContentType applies decodeBody's Content-Type rule to a
// request sent without a body.
func partnacCheckContentType(ctx *fasthttp.RequestCtx) *apiError {
	ct := ctx.Request.Header.ContentType()
	if len(ct) == 0 {
		return nil
	}
	mt, _, err := mime.ParseMediaType(string(ct))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return errf(CodeUnsupportedMedia, "Content-Type must be application/json")
	}
	return nil
}

// partnacCheckText validates an identifier or short text: at most max bytes
// of UTF-8 without control characters, and without '/' when noSlash.
func partnacCheckText(field, v string, max int, noSlash bool) *apiError {
	if len(v) > max {
		return errf(CodeInvalidField, field+" is longer than "+strconv.Itoa(max)+" bytes")
	}
	if !utf8.ValidString(v) {
		return errf(CodeInvalidField, field+" is not valid UTF-8")
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return errf(CodeInvalidField, field+" contains a control character")
		}
		if noSlash && r == '/' {
			return errf(CodeInvalidField, field+` must not contain "/" (it is used in URL paths)`)
		}
	}
	return nil
}

// partnacAbsent reports whether a raw JSON field was omitted or null.
func partnacAbsent(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// partnacMeta is a conversion's metadata with its special keys extracted.
type partnacMeta struct {
	raw                               json.RawMessage // compact object as sent; nil when absent
	fields                            map[string]json.RawMessage
	currency                          string // as sent, "" when absent
	customerID, couponCode, userAgent string
	country, city, region             string
	ip                                netip.Addr // invalid when absent
	ipText                            string     // ip as sent
}

// partnacParseMetadata checks that metadata is an object and extracts and
// types its special keys.
func partnacParseMetadata(raw json.RawMessage) (partnacMeta, *apiError) {
	var pm partnacMeta
	if partnacAbsent(raw) {
		return pm, nil
	}
	t := bytes.TrimSpace(raw)
	var m map[string]json.RawMessage
	if t[0] != '{' || json.Unmarshal(t, &m) != nil {
		return pm, errf(CodeInvalidField, "metadata must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err != nil {
		return pm, errf(CodeInvalidField, "metadata must be a JSON object")
	}
	pm.raw, pm.fields = buf.Bytes(), m
	var ip string
	fields := []struct {
		key string
		dst *string
		max int
	}{
		{"currency", &pm.currency, 16},
		{"coupon_code", &pm.couponCode, partnacMaxText},
		{"ip_address", &ip, 64},
		{"user_agent", &pm.userAgent, partnacMaxUAIn},
		{"country", &pm.country, partnacMaxText},
		{"city", &pm.city, partnacMaxText},
		{"region", &pm.region, partnacMaxText},
	}
	for _, f := range fields {
		v, ok := m[f.key]
		if !ok || partnacAbsent(v) {
			continue
		}
		if err := json.Unmarshal(v, f.dst); err != nil {
			return pm, errf(CodeInvalidField, "metadata."+f.key+" must be a string")
		}
		*f.dst = strings.TrimSpace(*f.dst)
		if f.key == "user_agent" {
			*f.dst = truncate(*f.dst, partnacMaxUA)
			continue
		}
		if aerr := partnacCheckText("metadata."+f.key, *f.dst, f.max, false); aerr != nil {
			return pm, aerr
		}
	}
	if v, ok := m["customer_id"]; ok && !partnacAbsent(v) {
		v = bytes.TrimSpace(v)
		switch {
		case v[0] == '"':
			if err := json.Unmarshal(v, &pm.customerID); err != nil {
				return pm, errf(CodeInvalidField, "metadata.customer_id must be a string or an integer")
			}
		case partnacIsInteger(v):
			pm.customerID = string(v)
		default:
			return pm, errf(CodeInvalidField, "metadata.customer_id must be a string or an integer")
		}
		if aerr := partnacCheckText("metadata.customer_id", pm.customerID, partnacMaxText, false); aerr != nil {
			return pm, aerr
		}
	}
	if ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return pm, errf(CodeInvalidField, "metadata.ip_address is not an IPv4 or IPv6 address")
		}
		pm.ip, pm.ipText = a.Unmap(), ip
	}
	return pm, nil
}

// partnacEnrich enriches from metadata.ip_address and user_agent as a click
// would be (geo; the address under the privacy mode), and replaces
// metadata.ip_address by that stored form, or drops it when the mode stores
// none, so that the kept metadata never holds more of the visitor's address
// than a click does. A rewritten metadata object has its keys sorted.
func (s *Server) partnacEnrich(pm *partnacMeta, merchantID string) enrich.Facts {
	var f enrich.Facts
	if !pm.ip.IsValid() {
		return f
	}
	s.Enricher.Enrich(&enrich.Input{Peer: pm.ip, UserAgent: []byte(pm.userAgent), LinkKey: "conversion/" + merchantID}, &f)
	if f.StoredIP == pm.ipText {
		return f
	}
	if f.StoredIP == "" {
		delete(pm.fields, "ip_address")
	} else {
		pm.fields["ip_address"], _ = json.Marshal(f.StoredIP)
	}
	if raw, err := json.Marshal(pm.fields); err == nil {
		pm.raw = raw
	} else {
		// Cannot happen: every value was decoded from valid JSON. Keep no
		// metadata rather than the unreduced address.
		pm.raw = nil
	}
	return f
}

// partnacMaxUAIn bounds the user_agent accepted before truncation: longer
// than any real browser's, so only garbage is refused.
const partnacMaxUAIn = 8192

func partnacIsInteger(v []byte) bool {
	if len(v) > 0 && v[0] == '-' {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 19 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// partnacCurrencyOf resolves metadata.currency (default USD).
func partnacCurrencyOf(pm *partnacMeta) (money.Currency, *apiError) {
	code := pm.currency
	if code == "" {
		code = money.DefaultCurrency
	}
	c, err := money.LookupCurrency(code)
	if err != nil {
		return c, errf(CodeUnknownCurrency, "metadata.currency: "+err.Error())
	}
	return c, nil
}

type partnacTrackRequest struct {
	PartnershipCode *string         `json:"partnership_code"`
	UniqueID        *string         `json:"unique_id"`
	ConversionType  *string         `json:"conversion_type"`
	Amount          json.RawMessage `json:"amount"`
	CampaignID      *string         `json:"campaign_id"`
	SessionID       *string         `json:"session_id"`
	Metadata        json.RawMessage `json:"metadata"`
}

func partnacRequired(v *string, field string) (string, *apiError) {
	if v == nil || *v == "" {
		return "", errf(CodeMissingField, field+" is required")
	}
	return *v, nil
}

// partnacTrackConversion is POST /v1/tracking/conversions.
func partnacTrackConversion(s *Server, ctx *fasthttp.RequestCtx, _ Params) {
	ev, aerr := s.partnacParseTrack(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	if rec, found := s.partnacExisting(ev.MerchantID, ev.Conversion.UniqueID); found {
		writeJSON(ctx, fasthttp.StatusOK, map[string]any{"data": toPartnacConversion(&rec)})
		return
	}
	if aerr := s.commitEvent(ctx, ev); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	res, ok := s.awaitResult(ev.MerchantID, ev.ID)
	s.partnacAnswer(ctx, res, ok, fasthttp.StatusCreated, map[string]any{"unique_id": ev.Conversion.UniqueID})
}

// partnacExisting returns the merchant's conversion with that unique id when
// the worker already holds it. A repeat shares the original's event id, so
// the worker's result for that id cannot tell a first send from a repeat;
// asking first is what lets a repeat be answered 200 with the original and
// write nothing. When the worker cannot be asked the write goes ahead: it is
// idempotent anyway, and a merchant's write is never refused for that.
func (s *Server) partnacExisting(merchantID, uniqueID string) (sink.ConversionRecord, bool) {
	if s.Backend == nil {
		return sink.ConversionRecord{}, false
	}
	wait := s.ResultWait
	if wait <= 0 {
		wait = DefaultResultWait
	}
	rctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	rec, err := s.Backend.Conversion(rctx, merchantID, uniqueID)
	if err != nil || rec.MerchantID != merchantID || rec.UniqueID != uniqueID {
		return sink.ConversionRecord{}, false
	}
	return rec, true
}

// partnacParseTrack authenticates and parses a track request into the
// conversion event to commit.
func (s *Server) partnacParseTrack(ctx *fasthttp.RequestCtx) (*sink.Event, *apiError) {
	x, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		return nil, aerr
	}
	var req partnacTrackRequest
	if aerr := partnacReadBody(s, ctx, &req, false); aerr != nil {
		return nil, aerr
	}
	code, aerr := partnacRequired(req.PartnershipCode, "partnership_code")
	if aerr != nil {
		return nil, aerr
	}
	uid, aerr := partnacRequired(req.UniqueID, "unique_id")
	if aerr != nil {
		return nil, aerr
	}
	if aerr := partnacCheckText("unique_id", uid, partnacMaxUniqueID, true); aerr != nil {
		return nil, aerr
	}
	if strings.Contains(uid, ":refund:") || strings.Contains(uid, ":update:") {
		return nil, errf(CodeInvalidField, `unique_id must not contain ":refund:" or ":update:"`)
	}
	typ, aerr := partnacRequired(req.ConversionType, "conversion_type")
	if aerr != nil {
		return nil, aerr
	}
	if !partnacConversionTypes[typ] {
		return nil, errf(CodeInvalidField, "conversion_type must be one of sale, lead, referral, subscription, custom")
	}
	if partnacAbsent(req.Amount) {
		return nil, errf(CodeMissingField, "amount is required (0 for free signups and leads)")
	}
	meta, aerr := partnacParseMetadata(req.Metadata)
	if aerr != nil {
		return nil, aerr
	}
	cur, aerr := partnacCurrencyOf(&meta)
	if aerr != nil {
		return nil, aerr
	}
	amount, err := money.ParseJSON(req.Amount, cur, false)
	if err != nil {
		return nil, amountError("amount", err)
	}
	var session string
	if req.SessionID != nil {
		session = *req.SessionID
		if len(session) > partnacMaxSessionID {
			return nil, errf(CodeInvalidField, "session_id is longer than "+strconv.Itoa(partnacMaxSessionID)+" bytes")
		}
	}
	var campaign string
	if req.CampaignID != nil && *req.CampaignID != "" {
		if c, ok := x.Campaign(*req.CampaignID); !ok || c.MerchantID != m.ID {
			return nil, errf(CodeUnknownCampaign, "no campaign with that id")
		}
		campaign = *req.CampaignID
	}
	p, ok := x.PartnerByKey(m.ID, code)
	if !ok {
		if p, ok = x.PartnerByCoupon(m.ID, code); !ok {
			return nil, errf(CodeUnknownPartnership, "no partner of this merchant has that partnership_code")
		}
	}
	c := &sink.ConversionEvent{
		UniqueID: uid, Type: typ, AmountMinor: amount, Currency: cur.Code, CampaignID: campaign,
		ClickID: session, CouponCode: meta.couponCode, CustomerID: meta.customerID, PartnerKey: p.Key,
		UserAgent: meta.userAgent, Metadata: meta.raw,
	}
	if meta.ip.IsValid() {
		f := s.partnacEnrich(&meta, m.ID)
		c.IP, c.Country, c.Region, c.City, c.Metadata = f.StoredIP, f.Country, f.Region, f.City, meta.raw
	}
	if meta.country != "" {
		c.Country = meta.country
	}
	if meta.region != "" {
		c.Region = meta.region
	}
	if meta.city != "" {
		c.City = meta.city
	}
	return &sink.Event{
		ID: sink.EventID(m.ID, sink.KindConversion, uid), Kind: sink.KindConversion,
		Dialect: sink.DialectPartnac, MerchantID: m.ID, Conversion: c,
	}, nil
}

// partnacAnswer answers a committed write with the worker's result:
// applied → okStatus, duplicate and ignored → 200, rejected → 4xx, no
// result in time → 202 with ids and "status": "queued".
func (s *Server) partnacAnswer(ctx *fasthttp.RequestCtx, res sink.EventResult, ok bool, okStatus int, ids map[string]any) {
	withStatus := func(st string) map[string]any {
		out := make(map[string]any, len(ids)+1)
		for k, v := range ids {
			out[k] = v
		}
		out["status"] = st
		return map[string]any{"data": out}
	}
	if !ok {
		writeJSON(ctx, fasthttp.StatusAccepted, withStatus("queued"))
		return
	}
	switch res.Outcome {
	case sink.OutcomeApplied, sink.OutcomeDuplicate, sink.OutcomeIgnored:
		status := fasthttp.StatusOK
		if res.Outcome == sink.OutcomeApplied {
			status = okStatus
		}
		if res.Conversion == nil {
			writeJSON(ctx, status, withStatus(res.Outcome))
			return
		}
		writeJSON(ctx, status, map[string]any{"data": toPartnacConversion(res.Conversion)})
	case sink.OutcomeRejected:
		writeError(ctx, partnacRejection(res.Error))
	default:
		s.reqLog(ctx).Warn("unknown event outcome; answering queued", "outcome", res.Outcome, "event", res.EventID)
		writeJSON(ctx, fasthttp.StatusAccepted, withStatus("queued"))
	}
}

// partnacRejection maps the worker's reason for rejecting an event to the
// merchant's 4xx: not found is 404 conversion_not_found, a client error code
// the edge knows keeps its status, anything else is 422 event_rejected.
func partnacRejection(e *sink.APIError) *apiError {
	if e == nil || e.Code == "" {
		return errf(CodeEventRejected, "the attribution worker rejected the event")
	}
	msg := e.Message
	if msg == "" {
		msg = "rejected by the attribution worker: " + e.Code
	}
	if e.Code == sink.APICodeNotFound || e.Code == CodeConversionNotFound {
		return errf(CodeConversionNotFound, msg)
	}
	switch codeStatus[e.Code] {
	case 400, 404, 409, 422:
		return errf(e.Code, msg)
	}
	return errf(CodeEventRejected, e.Code+": "+msg)
}

// partnacPathID returns the :id of a conversion path; ids that no
// conversion can have are simply not found.
func partnacPathID(p Params) (string, *apiError) {
	id := p["id"]
	if id == "" || len(id) > partnacMaxUniqueID {
		return "", errf(CodeConversionNotFound, "no conversion with that id")
	}
	return id, nil
}

// partnacGetConversion is GET /v1/tracking/conversions/:id.
func partnacGetConversion(s *Server, ctx *fasthttp.RequestCtx, p Params) {
	_, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	id, aerr := partnacPathID(p)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	rec, aerr := s.lookupConversion(m.ID, id, CodeConversionNotFound)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"data": toPartnacConversion(&rec)})
}

type partnacRefundRequest struct {
	Amount              json.RawMessage `json:"amount"`
	Reason              *string         `json:"reason"`
	ExternalRefundID    *string         `json:"external_refund_id"`
	ReversePaidEarnings *bool           `json:"reverse_paid_earnings"`
}

// partnacRefundConversion is POST /v1/tracking/conversions/:id/refund.
func partnacRefundConversion(s *Server, ctx *fasthttp.RequestCtx, p Params) {
	ev, aerr := s.partnacParseRefund(ctx, p)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	if aerr := s.commitEvent(ctx, ev); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	ids := map[string]any{"unique_id": ev.Refund.UniqueID}
	if ev.Refund.ExternalRefundID != "" {
		ids["external_refund_id"] = ev.Refund.ExternalRefundID
	}
	res, ok := s.awaitResult(ev.MerchantID, ev.ID)
	s.partnacAnswer(ctx, res, ok, fasthttp.StatusOK, ids)
}

// partnacParseRefund authenticates and parses a refund into its event; it
// asks the worker for the conversion (its currency and what is left).
func (s *Server) partnacParseRefund(ctx *fasthttp.RequestCtx, p Params) (*sink.Event, *apiError) {
	_, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		return nil, aerr
	}
	id, aerr := partnacPathID(p)
	if aerr != nil {
		return nil, aerr
	}
	var req partnacRefundRequest
	if aerr := partnacReadBody(s, ctx, &req, true); aerr != nil {
		return nil, aerr
	}
	r := &sink.RefundEvent{ReversePaidEarnings: true}
	if req.ReversePaidEarnings != nil {
		r.ReversePaidEarnings = *req.ReversePaidEarnings
	}
	if req.Reason != nil {
		if aerr := partnacCheckText("reason", *req.Reason, partnacMaxReason, false); aerr != nil {
			return nil, aerr
		}
		r.Reason = *req.Reason
	}
	if req.ExternalRefundID != nil && *req.ExternalRefundID != "" {
		ext := *req.ExternalRefundID
		if aerr := partnacCheckText("external_refund_id", ext, partnacMaxText, false); aerr != nil {
			return nil, aerr
		}
		if ext == "full" || strings.HasPrefix(ext, "partial:") {
			return nil, errf(CodeInvalidField, `external_refund_id "full" and ids starting with "partial:" are reserved`)
		}
		r.ExternalRefundID = ext
	}
	rec, aerr := s.lookupConversion(m.ID, id, CodeConversionNotFound)
	if aerr != nil {
		return nil, aerr
	}
	r.UniqueID = rec.UniqueID
	if partnacAbsent(req.Amount) {
		r.Full = true
	} else {
		cur, err := money.LookupAnyCurrency(rec.Currency)
		if err != nil {
			return nil, errf(CodeInternal, "the conversion's currency is unknown to this edge")
		}
		amount, err := money.ParseJSON(req.Amount, cur, false)
		if err != nil {
			return nil, amountError("amount", err)
		}
		if amount == 0 {
			return nil, errf(CodeInvalidAmount, "amount must be greater than zero; omit it for a full refund")
		}
		if left := rec.AmountMinor - rec.RefundedMinor; amount > left {
			return nil, errf(CodeRefundExceedsAmount, "amount is more than the "+money.Format(max(left, 0), cur)+" "+cur.Code+" not refunded yet")
		}
		r.AmountMinor = amount
	}
	idem, aerr := idempotencyKey(ctx)
	if aerr != nil {
		return nil, aerr
	}
	key := rec.UniqueID + ":refund:"
	switch {
	case r.ExternalRefundID != "":
		key += r.ExternalRefundID
	case r.Full:
		key += "full"
	case idem != "":
		key += "partial:" + strconv.FormatInt(r.AmountMinor, 10) + ":idem:" + idem
	default:
		var nonce [8]byte
		_, _ = rand.Read(nonce[:]) // crypto/rand.Read never fails (Go 1.24+)
		key += "partial:" + strconv.FormatInt(r.AmountMinor, 10) + ":" + hex.EncodeToString(nonce[:])
	}
	return &sink.Event{
		ID: sink.EventID(m.ID, sink.KindRefund, key), Kind: sink.KindRefund,
		Dialect: sink.DialectPartnac, MerchantID: m.ID, Refund: r,
	}, nil
}

type partnacUpdateRequest struct {
	Amount                 json.RawMessage `json:"amount"`
	UniqueID               *string         `json:"unique_id"`
	Metadata               json.RawMessage `json:"metadata"`
	RecalculateCommissions *bool           `json:"recalculate_commissions"`
}

// partnacUpdateConversion is PATCH /v1/tracking/conversions/:id.
func partnacUpdateConversion(s *Server, ctx *fasthttp.RequestCtx, p Params) {
	ev, aerr := s.partnacParseUpdate(ctx, p)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	if aerr := s.commitEvent(ctx, ev); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	res, ok := s.awaitResult(ev.MerchantID, ev.ID)
	s.partnacAnswer(ctx, res, ok, fasthttp.StatusOK, map[string]any{"unique_id": ev.Update.UniqueID})
}

// partnacParseUpdate authenticates and parses a PATCH into its event.
func (s *Server) partnacParseUpdate(ctx *fasthttp.RequestCtx, p Params) (*sink.Event, *apiError) {
	_, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		return nil, aerr
	}
	id, aerr := partnacPathID(p)
	if aerr != nil {
		return nil, aerr
	}
	var req partnacUpdateRequest
	if aerr := partnacReadBody(s, ctx, &req, false); aerr != nil {
		return nil, aerr
	}
	meta, aerr := partnacParseMetadata(req.Metadata)
	if aerr != nil {
		return nil, aerr
	}
	recalc := req.RecalculateCommissions != nil && *req.RecalculateCommissions
	if partnacAbsent(req.Amount) && meta.raw == nil && !recalc {
		return nil, errf(CodeMissingField, "nothing to update: send amount, metadata or recalculate_commissions")
	}
	if meta.currency != "" {
		if _, aerr := partnacCurrencyOf(&meta); aerr != nil {
			return nil, aerr
		}
	}
	rec, aerr := s.lookupConversion(m.ID, id, CodeConversionNotFound)
	if aerr != nil {
		return nil, aerr
	}
	if req.UniqueID != nil && *req.UniqueID != "" && *req.UniqueID != rec.UniqueID {
		return nil, errf(CodeInvalidField, "unique_id must be the unique_id of the conversion in the path")
	}
	if meta.currency != "" && !strings.EqualFold(meta.currency, rec.Currency) {
		return nil, errf(CodeCurrencyMismatch, "the conversion is in "+rec.Currency+"; its currency cannot change")
	}
	s.partnacEnrich(&meta, m.ID)
	u := &sink.UpdateEvent{UniqueID: rec.UniqueID, Metadata: meta.raw, Recalculate: recalc}
	if !partnacAbsent(req.Amount) {
		cur, err := money.LookupAnyCurrency(rec.Currency)
		if err != nil {
			return nil, errf(CodeInternal, "the conversion's currency is unknown to this edge")
		}
		amount, err := money.ParseJSON(req.Amount, cur, false)
		if err != nil {
			return nil, amountError("amount", err)
		}
		if amount < rec.RefundedMinor {
			return nil, errf(CodeInvalidAmount, "amount is below the "+money.Format(rec.RefundedMinor, cur)+" "+cur.Code+" already refunded")
		}
		u.AmountMinor = &amount
	}
	sum, err := partnacUpdateDigest(u)
	if err != nil {
		return nil, errf(CodeInvalidField, "metadata: "+err.Error())
	}
	return &sink.Event{
		// The conversion's version is part of the id: the same PATCH retried
		// is one event, but A→B→A is three.
		ID: sink.EventID(m.ID, sink.KindUpdate, rec.UniqueID+":update:"+strconv.FormatInt(rec.UpdatedAt, 10)+":"+sum), Kind: sink.KindUpdate,
		Dialect: sink.DialectPartnac, MerchantID: m.ID, Update: u,
	}, nil
}

// partnacUpdateDigest is the hex SHA-256 of the canonical form of an update:
// the same change sent twice, in any key order or amount spelling, has the
// same digest.
func partnacUpdateDigest(u *sink.UpdateEvent) (string, error) {
	var meta any
	if u.Metadata != nil {
		dec := json.NewDecoder(bytes.NewReader(u.Metadata))
		dec.UseNumber()
		if err := dec.Decode(&meta); err != nil {
			return "", err
		}
	}
	canon, err := json.Marshal(struct {
		Amount      *int64 `json:"amount_minor"`
		Metadata    any    `json:"metadata"`
		Recalculate bool   `json:"recalculate"`
	}{u.AmountMinor, meta, u.Recalculate})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:]), nil
}

// partnacListConversions is GET /v1/tracking/conversions, scoped to the
// key's merchant.
func partnacListConversions(s *Server, ctx *fasthttp.RequestCtx, _ Params) {
	x, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	args := ctx.QueryArgs()
	pg, aerr := partnacPagingArgs(args, x, m)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	q := sink.ConversionQuery{MerchantID: m.ID, Limit: pg.limit, Offset: pg.offset, CampaignID: pg.campaignID, PartnerID: pg.partnerID}
	if v := string(args.Peek("status")); v != "" {
		if !partnacStatuses[v] {
			writeError(ctx, errf(CodeInvalidParameter, "status must be one of pending, approved, rejected, paid"))
			return
		}
		q.Status = v
	}
	if s.Backend == nil {
		writeError(ctx, errf(CodeWorkerUnavailable, "this edge has no conversion API configured"))
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), partnacReadTimeout)
	defer cancel()
	page, err := s.Backend.ListConversions(rctx, q)
	if err != nil {
		aerr := backendError(err, CodeNotFound)
		if aerr.Code == CodeWorkerUnavailable {
			s.reqLog(ctx).Error("list conversions", "merchant", m.ID, "err", err)
		}
		writeError(ctx, aerr)
		return
	}
	out := make([]partnacConversion, 0, len(page.Conversions))
	for i := range page.Conversions {
		if page.Conversions[i].MerchantID != m.ID {
			continue // defense in depth: never show another tenant's rows
		}
		out = append(out, toPartnacConversion(&page.Conversions[i]))
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{
		"data":       out,
		"pagination": map[string]int{"limit": q.Limit, "offset": q.Offset, "total": page.Total},
	})
}
