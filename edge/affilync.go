package edge

// The Affilync dialect (seed document 004): server-side conversion tracking,
// the GET postback URL, the conversion listing and approve/reject; the pixel
// is in affilync_pixel.go. Decisions where the document is silent:
//
//   - Auth is "Authorization: Bearer <merchant API key>" (the document's
//     YOUR_API_KEY and YOUR_TOKEN are both the merchant key). The postback
//     also accepts ?api_key=; when both are sent the header wins. A missing or
//     unknown key is 401 unauthorized; the key is never echoed.
//   - POST /api/conversions/track and GET /api/conversions/postback share one
//     parser and one answer. click_id (1-64 bytes; any text is passed on, the
//     worker flags click ids that are unknown or do not verify), order_id
//     (1-255 printable bytes) and amount are required. amount is a JSON
//     string or number, parsed exactly into minor units of currency (default
//     USD, case-insensitive ISO 4217); zero is allowed (a lead), negatives,
//     NaN, exponents, more decimals than the currency has and amounts above
//     money.MaxMinor are 422 with a stable code (invalid_amount,
//     negative_amount, too_many_decimals, amount_too_large,
//     unknown_currency). event_type is sale, lead, signup or trial
//     (case-insensitive, default sale). Unknown JSON fields are ignored.
//   - customer_email is never stored: the event carries only
//     CustomerEmailHash = hex(SHA-256(merchant id + "\x00" + lower-cased,
//     trimmed email)). Salting with the merchant id keeps the hashes of two
//     merchants unlinkable while one merchant's hashes stay comparable across
//     devices (the document's cross-device attribution).
//   - metadata must be a JSON object (or null) and is kept whole; its keys
//     coupon_code, product_id and product_type, when present, must be strings
//     or numbers (a number is kept as its literal text) and are extracted for
//     attribution (coupon) and commission rules (product).
//   - The event id is EventID(merchant, conversion, order_id), for the S2S
//     call, the postback and the pixel alike: the same order reported twice,
//     by any of the three, is one conversion. Answers: 201 with exactly the
//     documented data object when this request created the conversion; 200
//     with the ORIGINAL conversion for a repeated order_id (the document: "returns
//     the original conversion"; the worker's record was created at another
//     request's edge time, or the worker says duplicate); 202
//     {"data":{"order_id","click_id","status":"queued"}} when the worker has
//     not answered within the edge's ResultWait. In the data object,
//     click_id, affiliate_id (the partner id) and campaign_id are those the
//     conversion was attributed to, null when none; commission_amount is a
//     decimal string with the currency's decimals; created_at is RFC 3339 UTC
//     to the second, as in the document.
//   - The document's postback template reads "…&order_id={order_id}¤cy={currency}":
//     "&curren" was turned into the currency sign by an HTML entity decoder.
//     A merchant who copies it byte for byte sends order_id=ORDER¤cy=USD, so
//     when the currency parameter is absent and order_id contains "¤cy=",
//     the order id ends before the sign and the currency follows it.
//   - HEAD on the postback is 405: a HEAD never records a conversion.
//   - GET /api/conversions answers {"data":[…], "meta":{"page","per_page",
//     "total","total_pages"}}, newest first. Each item is the data object
//     plus order_id, amount, currency and event_type. page defaults to 1,
//     per_page to 20 and is clamped to 100; zero or non-integers are 400
//     invalid_parameter. date_from and date_to are an ISO 8601 date
//     (2026-03-01, UTC) or date-time (RFC 3339; without an offset, UTC);
//     date_from is inclusive, date_to is inclusive to the millisecond, and a
//     bare date_to includes that whole day. status is pending, approved,
//     rejected or paid. A campaign_id or affiliate_id not of the key's
//     merchant is 404 (unknown_campaign, unknown_affiliate).
//   - PATCH /api/conversions/:id: :id is the conversion_id (conv_…) or, for
//     convenience, the merchant's order_id; it must be the key's merchant's
//     (404 conversion_not_found otherwise, asked of the worker first). status
//     (approved or rejected) is required, note is optional (at most 1000
//     bytes). The event id is EventID(merchant, status, conversion_id + ":" +
//     status): approving twice is one approval. A conversion already in the
//     requested status, with no new note, is answered 200 as it is and
//     nothing is written. The answer is 200 with the data object as the
//     worker left it, 409 invalid_transition when the worker refuses the
//     change (a paid conversion, say), or 202 {"data":{"conversion_id",
//     "order_id","status":"queued"}}.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/money"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// Route labels of the dialect (bounded metric values).
const (
	routeAffilyncTrack    = "affilync_track"
	routeAffilyncPostback = "affilync_postback"
	routeAffilyncList     = "affilync_list"
	routeAffilyncPatch    = "affilync_patch"
)

// Affilync event types (the document's list).
var affilyncEventTypes = []string{"sale", "lead", "signup", "trial"}

// Field length bounds. Order ids end up in Nats-Msg-Id and bbolt keys, so
// they are bounded and free of control bytes.
const (
	affilyncMaxClickID = 64
	affilyncMaxOrderID = 255
	affilyncMaxText    = 255
	affilyncMaxEmail   = 320
	affilyncMaxNote    = 1000
)

func init() {
	registerRoutes(
		route{Method: "POST", Pattern: "/api/conversions/track", Name: routeAffilyncTrack, Handler: (*Server).affilyncTrack},
		route{Method: "GET", Pattern: "/api/conversions/postback", Name: routeAffilyncPostback, Handler: (*Server).affilyncPostback},
		route{Method: "GET", Pattern: "/api/conversions", Name: routeAffilyncList, Handler: (*Server).affilyncList},
		route{Method: "PATCH", Pattern: "/api/conversions/:id", Name: routeAffilyncPatch, Handler: (*Server).affilyncPatch},
	)
}

// affilyncConversion is the data object of the document's track response,
// exactly: these seven keys, in this order.
type affilyncConversion struct {
	ConversionID     string  `json:"conversion_id"`
	ClickID          *string `json:"click_id"`
	AffiliateID      *string `json:"affiliate_id"`
	CampaignID       *string `json:"campaign_id"`
	CommissionAmount string  `json:"commission_amount"`
	Status           string  `json:"status"`
	CreatedAt        string  `json:"created_at"`
}

// affilyncListItem is a conversion in the listing: the data object plus the
// order and its amount.
type affilyncListItem struct {
	ConversionID     string  `json:"conversion_id"`
	OrderID          string  `json:"order_id"`
	ClickID          *string `json:"click_id"`
	AffiliateID      *string `json:"affiliate_id"`
	CampaignID       *string `json:"campaign_id"`
	Amount           string  `json:"amount"`
	Currency         string  `json:"currency"`
	EventType        string  `json:"event_type"`
	CommissionAmount string  `json:"commission_amount"`
	Status           string  `json:"status"`
	CreatedAt        string  `json:"created_at"`
}

func affilyncNullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// affilyncFormat renders minor units in the record's currency; a code the
// money package does not know (it cannot come from this edge) shows the raw
// minor units rather than guess a decimal point.
func affilyncFormat(minor int64, code string) string {
	cur, err := money.LookupAnyCurrency(code)
	if err != nil {
		return strconv.FormatInt(minor, 10)
	}
	return money.Format(minor, cur)
}

func affilyncTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

func toAffilync(r *sink.ConversionRecord) affilyncConversion {
	return affilyncConversion{
		ConversionID:     r.ID,
		ClickID:          affilyncNullable(r.ClickID),
		AffiliateID:      affilyncNullable(r.PartnerID),
		CampaignID:       affilyncNullable(r.CampaignID),
		CommissionAmount: affilyncFormat(r.CommissionMinor, r.Currency),
		Status:           r.Status,
		CreatedAt:        affilyncTime(r.CreatedAt),
	}
}

func toAffilyncItem(r *sink.ConversionRecord) affilyncListItem {
	return affilyncListItem{
		ConversionID:     r.ID,
		OrderID:          r.UniqueID,
		ClickID:          affilyncNullable(r.ClickID),
		AffiliateID:      affilyncNullable(r.PartnerID),
		CampaignID:       affilyncNullable(r.CampaignID),
		Amount:           affilyncFormat(r.AmountMinor, r.Currency),
		Currency:         r.Currency,
		EventType:        r.Type,
		CommissionAmount: affilyncFormat(r.CommissionMinor, r.Currency),
		Status:           r.Status,
		CreatedAt:        affilyncTime(r.CreatedAt),
	}
}

// affilyncConv is a conversion report as the track call, the postback and
// the pixel all parse it.
type affilyncConv struct {
	clickID, orderID, eventType          string
	amountMinor                          int64
	currency                             string
	emailHash                            string
	coupon, productID, productType       string
	metadata                             json.RawMessage
	cookieClickID, cookiePartnerKey      string
	campaignID                           string
	ip, country, region, city, userAgent string
}

// affilyncCheckText checks a text field: at most max bytes of valid UTF-8
// without control characters.
func affilyncCheckText(field, v string, max int) *apiError {
	if len(v) > max {
		return errf(CodeInvalidField, fmt.Sprintf("%s is longer than %d bytes", field, max))
	}
	if !utf8.ValidString(v) {
		return errf(CodeInvalidField, field+" is not valid UTF-8")
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return errf(CodeInvalidField, field+" contains a control character")
		}
	}
	return nil
}

// affilyncCurrency resolves a currency code, def when empty.
func affilyncCurrency(code, def string) (money.Currency, *apiError) {
	if code == "" {
		code = def
	}
	cur, err := money.LookupCurrency(code)
	if err != nil {
		return money.Currency{}, amountError("currency", err)
	}
	return cur, nil
}

func affilyncEventType(v string) (string, *apiError) {
	if v == "" {
		return "sale", nil
	}
	t := strings.ToLower(v)
	for _, k := range affilyncEventTypes {
		if t == k {
			return k, nil
		}
	}
	return "", errf(CodeInvalidField, "event_type must be one of sale, lead, signup, trial")
}

// affilyncEmailHash is the only form in which a customer email is kept; see
// the dialect decisions at the top of this file.
func affilyncEmailHash(merchantID, email string) string {
	e := strings.ToLower(strings.TrimSpace(email))
	if e == "" {
		return ""
	}
	h := sha256.New()
	h.Write([]byte(merchantID))
	h.Write([]byte{0})
	h.Write([]byte(e))
	return hex.EncodeToString(h.Sum(nil))
}

// affilyncFields checks the fields common to every way of reporting a
// conversion; the amount text is parsed here in the resolved currency.
// amountJSON tells whether amount is a raw JSON value or query text.
func affilyncFields(merchantID string, c *affilyncConv, amount []byte, amountJSON bool, currency, eventType, email, defCurrency string) *apiError {
	if err := affilyncCheckText("click_id", c.clickID, affilyncMaxClickID); err != nil {
		return err
	}
	if err := affilyncCheckText("order_id", c.orderID, affilyncMaxOrderID); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"coupon_code", c.coupon}, {"product_id", c.productID}, {"product_type", c.productType}} {
		if err := affilyncCheckText(f.name, f.v, affilyncMaxText); err != nil {
			return err
		}
	}
	cur, aerr := affilyncCurrency(currency, defCurrency)
	if aerr != nil {
		return aerr
	}
	c.currency = cur.Code
	var err error
	if amountJSON {
		c.amountMinor, err = money.ParseJSON(amount, cur, false)
	} else {
		c.amountMinor, err = money.Parse(string(amount), cur, false)
	}
	if err != nil {
		return amountError("amount", err)
	}
	if c.eventType, aerr = affilyncEventType(eventType); aerr != nil {
		return aerr
	}
	if email != "" {
		if aerr := affilyncCheckText("customer_email", email, affilyncMaxEmail); aerr != nil {
			return aerr
		}
		c.emailHash = affilyncEmailHash(merchantID, email)
	}
	return nil
}

type affilyncTrackRequest struct {
	ClickID       *string         `json:"click_id"`
	OrderID       *string         `json:"order_id"`
	Amount        json.RawMessage `json:"amount"`
	Currency      *string         `json:"currency"`
	EventType     *string         `json:"event_type"`
	CustomerEmail *string         `json:"customer_email"`
	Metadata      json.RawMessage `json:"metadata"`
}

func affilyncIsNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

func affilyncDeref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// affilyncParseTrack parses and checks the JSON body of
// POST /api/conversions/track for merchantID.
func affilyncParseTrack(ctx *fasthttp.RequestCtx, merchantID string) (affilyncConv, *apiError) {
	var req affilyncTrackRequest
	var c affilyncConv
	if aerr := decodeBody(ctx, &req); aerr != nil {
		return c, aerr
	}
	switch {
	case req.ClickID == nil || *req.ClickID == "":
		return c, errf(CodeMissingField, "click_id is required")
	case req.OrderID == nil || *req.OrderID == "":
		return c, errf(CodeMissingField, "order_id is required")
	case affilyncIsNull(req.Amount):
		return c, errf(CodeMissingField, "amount is required")
	}
	c.clickID, c.orderID = *req.ClickID, *req.OrderID
	if !affilyncIsNull(req.Metadata) {
		var err *apiError
		if c.metadata, err = affilyncMetadata(req.Metadata, &c); err != nil {
			return c, err
		}
	}
	aerr := affilyncFields(merchantID, &c, req.Amount, true, affilyncDeref(req.Currency),
		affilyncDeref(req.EventType), affilyncDeref(req.CustomerEmail), money.DefaultCurrency)
	return c, aerr
}

// affilyncMetadata checks that metadata is an object, extracts its special
// keys into c and returns it compacted.
func affilyncMetadata(raw json.RawMessage, c *affilyncConv) (json.RawMessage, *apiError) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errf(CodeInvalidField, "metadata must be a JSON object")
	}
	for _, k := range []struct {
		name string
		dst  *string
	}{{"coupon_code", &c.coupon}, {"product_id", &c.productID}, {"product_type", &c.productType}} {
		v, ok := m[k.name]
		if !ok || affilyncIsNull(v) {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case v[0] == '"':
			if err := json.Unmarshal(v, k.dst); err != nil {
				return nil, errf(CodeInvalidField, "metadata."+k.name+" is not a valid string")
			}
		case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
			*k.dst = string(v)
		default:
			return nil, errf(CodeInvalidField, "metadata."+k.name+" must be a string or a number")
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, errf(CodeInvalidField, "metadata must be a JSON object")
	}
	return buf.Bytes(), nil
}

// affilyncPostbackCurrencySign is the currency sign (U+00A4) followed by
// "cy=": what "&currency=" becomes when "&curren" is decoded as an HTML
// entity, as in the seed document's postback template.
const affilyncPostbackCurrencySign = "\u00a4cy="

// affilyncParsePostback parses the query of GET /api/conversions/postback.
func affilyncParsePostback(args *fasthttp.Args, merchantID string) (affilyncConv, *apiError) {
	var c affilyncConv
	c.clickID = string(args.Peek("click_id"))
	c.orderID = string(args.Peek("order_id"))
	currency := string(args.Peek("currency"))
	if !args.Has("currency") {
		if i := strings.Index(c.orderID, affilyncPostbackCurrencySign); i >= 0 {
			c.orderID, currency = c.orderID[:i], c.orderID[i+len(affilyncPostbackCurrencySign):]
		}
	}
	amount := args.Peek("amount")
	switch {
	case c.clickID == "":
		return c, errf(CodeMissingField, "click_id is required")
	case c.orderID == "":
		return c, errf(CodeMissingField, "order_id is required")
	case len(amount) == 0:
		return c, errf(CodeMissingField, "amount is required")
	}
	c.coupon = string(args.Peek("coupon_code"))
	c.productID = string(args.Peek("product_id"))
	c.productType = string(args.Peek("product_type"))
	aerr := affilyncFields(merchantID, &c, amount, false, currency, string(args.Peek("event_type")),
		string(args.Peek("customer_email")), money.DefaultCurrency)
	return c, aerr
}

// affilyncEvent builds the conversion event of a report.
func (s *Server) affilyncEvent(merchantID, dialect string, c *affilyncConv) *sink.Event {
	return &sink.Event{
		ID:         sink.EventID(merchantID, sink.KindConversion, c.orderID),
		Kind:       sink.KindConversion,
		TS:         s.Now().UnixMilli(),
		Dialect:    dialect,
		MerchantID: merchantID,
		Conversion: &sink.ConversionEvent{
			UniqueID: c.orderID, Type: c.eventType, AmountMinor: c.amountMinor, Currency: c.currency,
			CampaignID: c.campaignID, ClickID: c.clickID, CookieClickID: c.cookieClickID,
			PartnerKey: c.cookiePartnerKey, CouponCode: c.coupon, CustomerEmailHash: c.emailHash,
			ProductID: c.productID, ProductType: c.productType, ClientReported: dialect == sink.DialectPixel,
			IP: c.ip, Country: c.country, Region: c.region, City: c.city, UserAgent: c.userAgent,
			Metadata: c.metadata,
		},
	}
}

// affilyncTrack is POST /api/conversions/track.
func (s *Server) affilyncTrack(ctx *fasthttp.RequestCtx, _ Params) {
	_, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	c, aerr := affilyncParseTrack(ctx, m.ID)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	s.affilyncRecord(ctx, m.ID, &c)
}

// affilyncPostback is GET /api/conversions/postback.
func (s *Server) affilyncPostback(ctx *fasthttp.RequestCtx, _ Params) {
	if ctx.IsHead() {
		writeMethodNotAllowed(ctx, "GET", "use GET: a HEAD request records nothing")
		return
	}
	m, aerr := s.affilyncPostbackAuth(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	c, aerr := affilyncParsePostback(ctx.QueryArgs(), m.ID)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	s.affilyncRecord(ctx, m.ID, &c)
}

// affilyncPostbackAuth takes the merchant key from the Authorization header,
// else from the api_key query parameter.
func (s *Server) affilyncPostbackAuth(ctx *fasthttp.RequestCtx) (*redirect.Merchant, *apiError) {
	if len(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)) > 0 {
		_, m, aerr := s.authMerchant(ctx)
		return m, aerr
	}
	x := s.index.Load()
	if x == nil {
		return nil, errf(CodeUnavailable, "the edge has no catalog yet")
	}
	key := string(ctx.QueryArgs().Peek("api_key"))
	if key == "" {
		return nil, errf(CodeUnauthorized, "missing api_key parameter or Authorization: Bearer <API key>")
	}
	m, ok := x.MerchantByKey(key)
	if !ok {
		return nil, errf(CodeUnauthorized, "unknown API key")
	}
	return m, nil
}

// affilyncRecord commits a parsed report and answers with the worker's
// result, or 202 queued.
func (s *Server) affilyncRecord(ctx *fasthttp.RequestCtx, merchantID string, c *affilyncConv) {
	ev := s.affilyncEvent(merchantID, sink.DialectAffilync, c)
	if aerr := s.commitEvent(ctx, ev); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	queued := func() {
		writeJSON(ctx, fasthttp.StatusAccepted, map[string]any{"data": map[string]string{
			"order_id": c.orderID, "click_id": c.clickID, "status": "queued",
		}})
	}
	r, ok := s.awaitResult(merchantID, ev.ID)
	if !ok {
		queued()
		return
	}
	switch r.Outcome {
	case sink.OutcomeApplied, sink.OutcomeDuplicate, sink.OutcomeIgnored:
		if r.Conversion == nil {
			if r.Outcome == sink.OutcomeIgnored {
				writeJSON(ctx, fasthttp.StatusOK, map[string]any{"data": map[string]string{
					"order_id": c.orderID, "click_id": c.clickID, "status": "ignored",
				}})
				return
			}
			queued()
			return
		}
		status := fasthttp.StatusOK
		if r.Outcome == sink.OutcomeApplied && r.Conversion.CreatedAt == ev.TS {
			status = fasthttp.StatusCreated
		}
		writeJSON(ctx, status, map[string]any{"data": toAffilync(r.Conversion)})
	case sink.OutcomeRejected:
		writeError(ctx, affilyncRejection(r))
	default:
		queued()
	}
}

// affilyncRejection maps the worker's refusal to an answer.
func affilyncRejection(r sink.EventResult) *apiError {
	code, msg := "", "the attribution worker rejected the event"
	if r.Error != nil {
		code, msg = r.Error.Code, r.Error.Message
	}
	switch code {
	case CodeConversionNotFound, sink.APICodeNotFound:
		return errf(CodeConversionNotFound, msg)
	case CodeInvalidTransition:
		return errf(CodeInvalidTransition, msg)
	}
	if st, known := codeStatus[code]; known && st >= 400 && st < 500 {
		return errf(code, msg)
	}
	if code == "" {
		return errf(CodeEventRejected, msg)
	}
	return errf(CodeEventRejected, code+": "+msg)
}

// affilyncDate parses an ISO 8601 date or date-time. bare reports a date
// without a time.
func affilyncDate(v string) (t time.Time, bare bool, ok bool) {
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, true, true
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, false, true
		}
	}
	return time.Time{}, false, false
}

// affilyncListQuery turns the list parameters into a worker query.
func affilyncListQuery(args *fasthttp.Args, x *redirect.Index, merchantID string) (q sink.ConversionQuery, page int, aerr *apiError) {
	q = sink.ConversionQuery{MerchantID: merchantID}
	if page, aerr = intArg(args, "page", 1); aerr != nil {
		return q, 0, aerr
	}
	if page < 1 {
		return q, 0, errf(CodeInvalidParameter, "page must be at least 1")
	}
	perPage, aerr := intArg(args, "per_page", 20)
	if aerr != nil {
		return q, 0, aerr
	}
	if perPage < 1 {
		return q, 0, errf(CodeInvalidParameter, "per_page must be at least 1")
	}
	q.Limit = min(perPage, 100)
	q.Offset = (page - 1) * q.Limit
	minT, maxT := time.Unix(0, 0), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	if v := string(args.Peek("date_from")); v != "" {
		t, _, ok := affilyncDate(v)
		if !ok || t.Before(minT) || t.After(maxT) {
			return q, 0, errf(CodeInvalidParameter, "date_from must be an ISO 8601 date (2026-03-01) or date-time (2026-03-01T00:00:00Z) from 1970 on")
		}
		q.FromMilli = t.UnixMilli()
	}
	if v := string(args.Peek("date_to")); v != "" {
		t, bare, ok := affilyncDate(v)
		if !ok || t.Before(minT) || t.After(maxT) {
			return q, 0, errf(CodeInvalidParameter, "date_to must be an ISO 8601 date (2026-03-31) or date-time (2026-03-31T23:59:59Z) from 1970 on")
		}
		if bare {
			q.ToMilli = t.AddDate(0, 0, 1).UnixMilli()
		} else {
			q.ToMilli = t.UnixMilli() + 1
		}
		if q.ToMilli <= q.FromMilli {
			return q, 0, errf(CodeInvalidParameter, "date_to is before date_from")
		}
	}
	if v := string(args.Peek("status")); v != "" {
		switch v {
		case sink.StatusPending, sink.StatusApproved, sink.StatusRejected, sink.StatusPaid:
			q.Status = v
		default:
			return q, 0, errf(CodeInvalidParameter, "status must be pending, approved, rejected or paid")
		}
	}
	if v := string(args.Peek("campaign_id")); v != "" {
		if c, ok := x.Campaign(v); !ok || c.MerchantID != merchantID {
			return q, 0, errf(CodeUnknownCampaign, "no campaign with that id")
		}
		q.CampaignID = v
	}
	if v := string(args.Peek("affiliate_id")); v != "" {
		if p, ok := x.Partner(v); !ok || p.MerchantID != merchantID {
			return q, 0, errf(CodeUnknownAffiliate, "no affiliate with that id")
		}
		q.PartnerID = v
	}
	return q, page, nil
}

// affilyncList is GET /api/conversions, scoped to the key's merchant.
func (s *Server) affilyncList(ctx *fasthttp.RequestCtx, _ Params) {
	x, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	q, page, aerr := affilyncListQuery(ctx.QueryArgs(), x, m.ID)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	if s.Backend == nil {
		writeError(ctx, errf(CodeWorkerUnavailable, "this edge has no read API configured"))
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := s.Backend.ListConversions(rctx, q)
	if err != nil {
		s.reqLog(ctx).Warn("list conversions", "merchant", m.ID, "err", err)
		writeError(ctx, backendError(err, CodeNotFound))
		return
	}
	out := make([]affilyncListItem, 0, len(res.Conversions))
	for i := range res.Conversions {
		out = append(out, toAffilyncItem(&res.Conversions[i]))
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{
		"data": out,
		"meta": map[string]int{"page": page, "per_page": q.Limit, "total": res.Total,
			"total_pages": (res.Total + q.Limit - 1) / q.Limit},
	})
}

type affilyncPatchRequest struct {
	Status *string `json:"status"`
	Note   *string `json:"note"`
}

// affilyncParsePatch parses and checks the body of PATCH /api/conversions/:id.
func affilyncParsePatch(ctx *fasthttp.RequestCtx) (status, note string, aerr *apiError) {
	var req affilyncPatchRequest
	if aerr := decodeBody(ctx, &req); aerr != nil {
		return "", "", aerr
	}
	if req.Status == nil || *req.Status == "" {
		return "", "", errf(CodeMissingField, "status is required")
	}
	status = *req.Status
	if status != sink.StatusApproved && status != sink.StatusRejected {
		return "", "", errf(CodeInvalidField, "status must be approved or rejected")
	}
	note = affilyncDeref(req.Note)
	if aerr := affilyncCheckText("note", note, affilyncMaxNote); aerr != nil {
		return "", "", aerr
	}
	return status, note, nil
}

// affilyncPatch is PATCH /api/conversions/:id: approve or reject.
func (s *Server) affilyncPatch(ctx *fasthttp.RequestCtx, p Params) {
	_, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	status, note, aerr := affilyncParsePatch(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	ref := p["id"]
	if len(ref) > affilyncMaxOrderID {
		writeError(ctx, errf(CodeConversionNotFound, "no conversion with that id"))
		return
	}
	rec, aerr := s.lookupConversion(m.ID, ref, CodeConversionNotFound)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	if rec.Status == status && (note == "" || note == rec.Note) {
		writeJSON(ctx, fasthttp.StatusOK, map[string]any{"data": toAffilync(&rec)})
		return
	}
	ev := &sink.Event{
		ID:         sink.EventID(m.ID, sink.KindStatus, rec.ID+":"+status),
		Kind:       sink.KindStatus,
		TS:         s.Now().UnixMilli(),
		Dialect:    sink.DialectAffilync,
		MerchantID: m.ID,
		Status:     &sink.StatusEvent{ConversionID: rec.ID, Status: status, Note: note},
	}
	if aerr := s.commitEvent(ctx, ev); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	r, ok := s.awaitResult(m.ID, ev.ID)
	switch {
	case ok && r.Outcome == sink.OutcomeRejected:
		writeError(ctx, affilyncRejection(r))
	case ok && r.Conversion != nil:
		writeJSON(ctx, fasthttp.StatusOK, map[string]any{"data": toAffilync(r.Conversion)})
	default:
		writeJSON(ctx, fasthttp.StatusAccepted, map[string]any{"data": map[string]string{
			"conversion_id": rec.ID, "order_id": rec.UniqueID, "status": "queued",
		}})
	}
}
