package edge

// The Partnero dialect (seed documents 001, 002 and 003): customers (sign-ups
// attributed to a partner or a referring customer), transactions (sales that
// earn commission), transaction deletes (refunds and chargebacks) and balance
// credits (refer-a-friend rewards), all server to server with
// "Authorization: Bearer <merchant API key>". Decisions where the documents
// are silent or vague:
//
//   - Routes: POST /v1/customers, POST /v1/transactions,
//     DELETE /v1/transactions/{key} (seed 003 names a "Transaction delete
//     method" without a path; this is the REST form of the create call), and
//     POST /v1/customers/{key}/balance/credit. Path segments are URL-decoded,
//     so a key holding "/" can be created but not addressed in a path.
//   - Bodies are JSON objects. Seed 003's own examples carry "// …" comments,
//     so // line and /* block */ comments outside strings are blanked before
//     decoding (JSONC); nothing else is relaxed. Unknown fields are ignored.
//     Bad syntax is 400 invalid_json, a wrong type 422 invalid_field, a
//     missing required field 422 missing_field, a body over the edge's
//     MaxBodyBytes 413 payload_too_large, a Content-Type other than JSON 415.
//   - Identifier fields (key, customer.key, partner.key, partner.id,
//     referring_customer.key, product_id) take a JSON string or a JSON
//     integer, kept as its decimal text: the seed's own snippets send
//     `key: user.id`, which is a number in most stacks; null or "" counts as
//     absent. The customer's and the transaction's keys are 1-255 bytes
//     without control characters (they name events); partner and referrer
//     identifiers are passed on unchecked, since an invalid one is ignored.
//     email, name and surname are trimmed and bounded (254/255 bytes) but not
//     otherwise validated: seed 001's own example sends
//     "[email protected] " (an obfuscated address with a trailing space).
//     tags: at most 50 non-blank names of at most 100 bytes.
//     options.referral_url: at most 2048 bytes, http(s) or relative.
//   - Amounts (transaction amount, credit amount) are a JSON number (99.99)
//     or a JSON string ("99.99") parsed exactly by package money, never
//     through float64. The currency is amount_units (seed 003's JS call, e.g.
//     "usd") or currency, case-insensitive, default USD. Invalid text, NaN,
//     null or a boolean is 422 invalid_amount; a minus sign 422
//     negative_amount; more decimals than the currency has 422
//     too_many_decimals; more than money.MaxMinor minor units 422
//     amount_too_large; an unknown ISO 4217 code 422 unknown_currency. A
//     credit must be above zero. Responses render amounts as JSON numbers
//     built from the exact decimal text (money.Format), e.g. 99.99.
//   - "Partnero ignores requests with an invalid partner key" and "ignores
//     transactions for customers that don't exist": the edge never rejects a
//     customer or transaction for its partner, referrer or customer. It
//     commits the event anyway and lets the worker (the single writer, whose
//     catalog may be newer than this edge's) decide; the worker's "ignored"
//     is answered 200 with "status":"ignored" and its reason, never an error
//     (a transaction the worker rejects as customer_not_found is answered
//     as ignored too).
//     The event id of a customer is its key plus a digest of the request's
//     content: a retry is one event, while a corrected request (a fixed
//     partner key) or an update (new email, tags) is a new event and is
//     applied, not answered as a duplicate of an earlier ignored one.
//     A customer without any partner or referrer is accepted the same way
//     (seed 001: "call the API for every sign-up without first checking";
//     the PHP snippet sends "partner":{"key":null}); it is the worker's call
//     whether it is kept (refer-a-friend referrers are customers too).
//   - Envelope: {"data": {...}, "status": <outcome>} where outcome is the
//     worker's: "applied" (201 for a create, 200 for a delete), "duplicate"
//     (200, the original record: a repeated customer key, transaction key,
//     delete or credit changes nothing; a repeated credit echoes the
//     request and the current balance), "ignored" (200, with "reason":
//     {"code","message"} when the worker gave one), or "queued" (202: the
//     event is durable but the worker did not answer within the edge's
//     ResultWait; data echoes what was accepted, identifiers included). A
//     worker rejection is an error: *_not_found 404; a code the edge knows
//     with a 4xx status (currency_mismatch, refund_exceeds_amount…) as is;
//     anything else 422 event_rejected with the worker's code in the message.
//     Field names follow Partnero (key, email, name, surname, tags, partner,
//     referring_customer, referral_link, created_at); absent values are null.
//     Times are RFC 3339 UTC with microseconds, as Partnero renders them.
//   - referral_link is the customer's refer-a-friend link on this edge:
//     <scheme>://<Host the merchant called>/f/<merchant id>/<ReferralCode>
//     (see referral.go for what that link does),
//     https when the request came over TLS or the edge sets Secure cookies,
//     else http. It is null until the worker has answered with a code.
//   - Transactions: key is optional in seed 003 ("not required but
//     recommended"); without one the Idempotency-Key header is used, else a
//     fresh "txn_" + 32 hex key is minted and returned. Such a transaction
//     is not deduplicated on retry unless the header is sent. action
//     defaults to "sale". The partner for options.create_customer is
//     customer.partner (seed 003's table) or, when that names no partner,
//     the top-level partner (seed 003's example). customer.email is passed
//     on only as a hash (hex SHA-256 of the merchant id, a NUL byte and the
//     trimmed, lower-cased email); customer.name/surname are accepted and
//     not forwarded (the conversion event has no place for them).
//   - DELETE /v1/transactions/{key} refunds the whole transaction (refund
//     event, Full, reverse_paid_earnings true, reason "transaction deleted").
//     It first asks the worker whether the merchant has that transaction:
//     404 transaction_not_found (another merchant's key included) writes
//     nothing; the worker away is 503. The event id is the transaction's
//     unique id + ":delete", so a repeated delete refunds once. A delete sent
//     before the worker has applied the transaction itself is 404: retry.
//   - Balance credit: amount (required, > 0), currency (default USD), note.
//     The customer must exist for the merchant (404 customer_not_found
//     otherwise, nothing written). Idempotency: the Idempotency-Key header
//     (1-128 visible ASCII characters other than ':'), else a fresh random
//     nonce, returned as data.idempotency_key; the event id is the customer
//     key + ":" + that key, so only a repeated header (or the returned
//     nonce) makes a retry safe.
//   - The partnero_partner cookie (seed 002, 30 days by default) is set by
//     the redirect for campaigns whose cookie holds the partner key. It stays
//     HttpOnly: the merchant's back end reads it from the request's Cookie
//     header, which HttpOnly does not prevent; only page scripts are kept
//     out. With the merchant's cookie domain set to its site's domain it
//     reaches the merchant's back end on every subdomain.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/money"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// Outcome of a request as the Partnero envelope's "status" shows it: the
// worker's outcomes, and queued when it has not answered in time.
const partneroQueued = "queued"

// Field limits. Keys become part of event ids (Nats-Msg-Id), so they are
// bounded and free of control characters.
const (
	partneroMaxKey    = 255
	partneroMaxText   = 255
	partneroMaxEmail  = 254
	partneroMaxTags   = 50
	partneroMaxTag    = 100
	partneroMaxAction = 64
	partneroMaxURL    = 2048
	partneroMaxNote   = 1000
)

// partneroTimeLayout renders times as Partnero does (Laravel's ISO 8601 with
// microseconds, always UTC).
const partneroTimeLayout = "2006-01-02T15:04:05.000000Z"

func init() {
	registerRoutes(
		route{Method: http.MethodPost, Pattern: "/v1/customers", Name: "partnero_customer_create", Handler: (*Server).partneroCreateCustomer},
		route{Method: http.MethodPost, Pattern: "/v1/transactions", Name: "partnero_transaction_create", Handler: (*Server).partneroCreateTransaction},
		route{Method: http.MethodDelete, Pattern: "/v1/transactions/:key", Name: "partnero_transaction_delete", Handler: (*Server).partneroDeleteTransaction},
		route{Method: http.MethodPost, Pattern: "/v1/customers/:key/balance/credit", Name: "partnero_balance_credit", Handler: (*Server).partneroCreditBalance},
	)
}

// ---- request parsing ----

// partneroID is an identifier field: a JSON string, or a JSON integer kept
// as its decimal text. null leaves it empty (absent).
type partneroID string

// UnmarshalJSON accepts a string, an integer (digits only) or null; any
// other value is a *json.UnmarshalTypeError, answered 422 invalid_field.
func (p *partneroID) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) == 0:
		return &json.UnmarshalTypeError{Value: "empty", Type: reflect.TypeFor[string]()}
	case string(b) == "null":
		return nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*p = partneroID(s)
		return nil
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return &json.UnmarshalTypeError{Value: "value " + partneroClip(string(b), 20), Type: reflect.TypeFor[string]()}
		}
	}
	*p = partneroID(b)
	return nil
}

// partneroPartnerRef names a partner by any of Partnero's three identifiers.
type partneroPartnerRef struct {
	Key   partneroID `json:"key"`
	Email string     `json:"email"`
	ID    partneroID `json:"id"`
}

func (r *partneroPartnerRef) named() bool {
	return r != nil && (r.Key != "" || strings.TrimSpace(r.Email) != "" || r.ID != "")
}

type partneroCustomerRequest struct {
	Partner           *partneroPartnerRef `json:"partner"`
	ReferringCustomer *struct {
		Key partneroID `json:"key"`
	} `json:"referring_customer"`
	Key     partneroID `json:"key"`
	Email   string     `json:"email"`
	Name    string     `json:"name"`
	Surname string     `json:"surname"`
	Tags    []string   `json:"tags"`
	Options *struct {
		ReferralURL string `json:"referral_url"`
	} `json:"options"`
}

type partneroTransactionRequest struct {
	Customer *struct {
		Key     partneroID          `json:"key"`
		Email   string              `json:"email"`
		Name    string              `json:"name"`
		Surname string              `json:"surname"`
		Partner *partneroPartnerRef `json:"partner"`
	} `json:"customer"`
	Key         partneroID      `json:"key"`
	Amount      json.RawMessage `json:"amount"`
	AmountUnits string          `json:"amount_units"`
	Currency    string          `json:"currency"`
	Action      string          `json:"action"`
	ProductID   partneroID      `json:"product_id"`
	ProductType string          `json:"product_type"`
	Options     *struct {
		CreateCustomer json.RawMessage `json:"create_customer"`
	} `json:"options"`
	Partner *partneroPartnerRef `json:"partner"`
}

type partneroCreditRequest struct {
	Amount   json.RawMessage `json:"amount"`
	Currency string          `json:"currency"`
	Note     string          `json:"note"`
}

// partneroDecode reads the request body as one JSON object (comments
// allowed, see the package notes) into v.
func (s *Server) partneroDecode(ctx *fasthttp.RequestCtx, v any) *apiError {
	if ct := ctx.Request.Header.ContentType(); len(ct) > 0 {
		mt, _, err := mime.ParseMediaType(string(ct))
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return errf(CodeUnsupportedMedia, "Content-Type must be application/json")
		}
	}
	body := ctx.Request.Body()
	if s.MaxBodyBytes > 0 && len(body) > s.MaxBodyBytes {
		return errf(CodePayloadTooLarge, fmt.Sprintf("request body over %d bytes", s.MaxBodyBytes))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errf(CodeInvalidJSON, "empty body: a JSON object is required")
	}
	clean, err := partneroStripComments(body)
	if err != nil {
		return errf(CodeInvalidJSON, "body is not a valid JSON object: "+err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(clean))
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

// partneroStripComments returns b with every // line comment and /* block
// */ comment outside JSON strings replaced by spaces (line breaks kept), so
// the result has the same length and error offsets still point into the
// original. Input without '/' is returned as is. An unterminated block
// comment is an error.
func partneroStripComments(b []byte) ([]byte, error) {
	if bytes.IndexByte(b, '/') < 0 {
		return b, nil
	}
	out := bytes.Clone(b)
	inString := false
	for i := 0; i < len(out); i++ {
		c := out[i]
		if inString {
			switch c {
			case '\\':
				i++ // the escaped byte cannot end the string
			case '"':
				inString = false
			}
			continue
		}
		switch {
		case c == '"':
			inString = true
		case c == '/' && i+1 < len(out) && out[i+1] == '/':
			for ; i < len(out) && out[i] != '\n' && out[i] != '\r'; i++ {
				out[i] = ' '
			}
		case c == '/' && i+1 < len(out) && out[i+1] == '*':
			end := bytes.Index(out[i+2:], []byte("*/"))
			if end < 0 {
				return nil, fmt.Errorf("unterminated /* comment at offset %d", i)
			}
			stop := i + 2 + end + 2
			for j := i; j < stop; j++ {
				if out[j] != '\n' && out[j] != '\r' {
					out[j] = ' '
				}
			}
			i = stop - 1
		}
	}
	return out, nil
}

// partneroText checks a free-text field: at most max bytes of valid UTF-8
// without control characters.
func partneroText(field, v string, max int) *apiError {
	if len(v) > max {
		return errf(CodeInvalidField, fmt.Sprintf("%s is longer than %d bytes", field, max))
	}
	if !utf8.ValidString(v) {
		return errf(CodeInvalidField, field+" is not valid UTF-8")
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return errf(CodeInvalidField, field+" must not contain control characters")
		}
	}
	return nil
}

// partneroKey checks a required identifier.
func partneroKey(field string, v partneroID) *apiError {
	if v == "" {
		return errf(CodeMissingField, field+" is required")
	}
	return partneroText(field, string(v), partneroMaxKey)
}

// partneroCurrency resolves the currency of an amount from its two possible
// fields (default USD).
func partneroCurrency(units, currency string) (money.Currency, *apiError) {
	code := currency
	switch {
	case units != "" && currency != "" && !strings.EqualFold(units, currency):
		return money.Currency{}, errf(CodeInvalidField, "amount_units and currency name different currencies")
	case units != "":
		code = units
	case code == "":
		code = money.DefaultCurrency
	}
	cur, err := money.LookupCurrency(code)
	if err != nil {
		return money.Currency{}, amountError("currency", err)
	}
	return cur, nil
}

// partneroAmount parses a required amount field exactly.
func partneroAmount(field string, raw json.RawMessage, cur money.Currency) (int64, *apiError) {
	if t := bytes.TrimSpace(raw); len(t) == 0 || string(t) == "null" {
		return 0, errf(CodeMissingField, field+" is required")
	}
	minor, err := money.ParseJSON(raw, cur, false)
	if err != nil {
		return 0, amountError(field, err)
	}
	return minor, nil
}

// partneroBool reads options.create_customer: true, false, "true", "false"
// (seed 003 types it as a string) or null.
func partneroBool(field string, raw json.RawMessage) (bool, *apiError) {
	switch string(bytes.TrimSpace(raw)) {
	case "", "null", "false", `"false"`:
		return false, nil
	case "true", `"true"`:
		return true, nil
	}
	return false, errf(CodeInvalidField, field+" must be true or false")
}

// partneroPartner copies a partner reference out. Its values are not
// checked: an unknown or malformed partner identifier is the worker's to
// ignore, never an error (seed 002).
func partneroPartner(r *partneroPartnerRef) (key, email, id string) {
	if r == nil {
		return "", "", ""
	}
	return string(r.Key), strings.TrimSpace(r.Email), string(r.ID)
}

// partneroCustomerEvent validates a customer request into its event payload.
func partneroCustomerEvent(req *partneroCustomerRequest) (*sink.CustomerEvent, *apiError) {
	if aerr := partneroKey("key", req.Key); aerr != nil {
		return nil, aerr
	}
	ce := &sink.CustomerEvent{
		Key:     string(req.Key),
		Email:   strings.TrimSpace(req.Email),
		Name:    strings.TrimSpace(req.Name),
		Surname: strings.TrimSpace(req.Surname),
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"email", ce.Email, partneroMaxEmail}, {"name", ce.Name, partneroMaxText}, {"surname", ce.Surname, partneroMaxText}} {
		if aerr := partneroText(f.name, f.v, f.max); aerr != nil {
			return nil, aerr
		}
	}
	if len(req.Tags) > partneroMaxTags {
		return nil, errf(CodeInvalidField, fmt.Sprintf("tags holds more than %d names", partneroMaxTags))
	}
	for _, t := range req.Tags {
		if strings.TrimSpace(t) == "" {
			return nil, errf(CodeInvalidField, "tags must not hold empty names")
		}
		if aerr := partneroText("tags", t, partneroMaxTag); aerr != nil {
			return nil, aerr
		}
	}
	if len(req.Tags) > 0 {
		ce.Tags = req.Tags
	}
	if req.Options != nil && req.Options.ReferralURL != "" {
		u := req.Options.ReferralURL
		if aerr := partneroText("options.referral_url", u, partneroMaxURL); aerr != nil {
			return nil, aerr
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "" && p.Scheme != "http" && p.Scheme != "https") {
			return nil, errf(CodeInvalidField, "options.referral_url must be an http(s) URL")
		}
		ce.ReferralURL = u
	}
	ce.PartnerKey, ce.PartnerEmail, ce.PartnerID = partneroPartner(req.Partner)
	if req.ReferringCustomer != nil {
		ce.ReferringCustomerKey = string(req.ReferringCustomer.Key)
	}
	return ce, nil
}

// partneroConversionEvent validates a transaction request into its event
// payload. fallbackKey is the transaction key used when the body has none.
func partneroConversionEvent(merchantID string, req *partneroTransactionRequest, fallbackKey func() (string, *apiError)) (*sink.ConversionEvent, *apiError) {
	if req.Customer == nil {
		return nil, errf(CodeMissingField, "customer is required")
	}
	if aerr := partneroKey("customer.key", req.Customer.Key); aerr != nil {
		return nil, aerr
	}
	key := string(req.Key)
	if key == "" {
		var aerr *apiError
		if key, aerr = fallbackKey(); aerr != nil {
			return nil, aerr
		}
	}
	if aerr := partneroKey("key", partneroID(key)); aerr != nil {
		return nil, aerr
	}
	cur, aerr := partneroCurrency(req.AmountUnits, req.Currency)
	if aerr != nil {
		return nil, aerr
	}
	amount, aerr := partneroAmount("amount", req.Amount, cur)
	if aerr != nil {
		return nil, aerr
	}
	ce := &sink.ConversionEvent{
		UniqueID: key, Type: strings.TrimSpace(req.Action), AmountMinor: amount, Currency: cur.Code,
		CustomerID: string(req.Customer.Key), ProductID: string(req.ProductID), ProductType: req.ProductType,
	}
	if ce.Type == "" {
		ce.Type = "sale"
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"action", ce.Type, partneroMaxAction}, {"product_id", ce.ProductID, partneroMaxText},
		{"product_type", ce.ProductType, partneroMaxText}, {"customer.email", req.Customer.Email, partneroMaxEmail},
		{"customer.name", req.Customer.Name, partneroMaxText}, {"customer.surname", req.Customer.Surname, partneroMaxText},
	} {
		if aerr := partneroText(f.name, f.v, f.max); aerr != nil {
			return nil, aerr
		}
	}
	if req.Options != nil {
		if ce.CreateCustomer, aerr = partneroBool("options.create_customer", req.Options.CreateCustomer); aerr != nil {
			return nil, aerr
		}
	}
	ref := req.Customer.Partner
	if !ref.named() {
		ref = req.Partner
	}
	ce.PartnerKey, ce.PartnerEmail, ce.PartnerID = partneroPartner(ref)
	if e := strings.ToLower(strings.TrimSpace(req.Customer.Email)); e != "" {
		sum := sha256.Sum256([]byte(merchantID + "\x00" + e))
		ce.CustomerEmailHash = hex.EncodeToString(sum[:])
	}
	return ce, nil
}

// partneroNonce returns 32 random hex characters.
func partneroNonce() (string, *apiError) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", errf(CodeInternal, "no randomness for a generated key")
	}
	return hex.EncodeToString(b[:]), nil
}

// ---- responses ----

type partneroEnvelope struct {
	Data   any       `json:"data"`
	Status string    `json:"status"`
	Reason *apiError `json:"reason,omitempty"`
}

type partneroPartnerJSON struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

type partneroKeyJSON struct {
	Key string `json:"key"`
}

type partneroCustomerJSON struct {
	Key               string               `json:"key"`
	Email             *string              `json:"email"`
	Name              *string              `json:"name"`
	Surname           *string              `json:"surname"`
	Tags              []string             `json:"tags"`
	Partner           *partneroPartnerJSON `json:"partner"`
	ReferringCustomer *partneroKeyJSON     `json:"referring_customer"`
	ReferralLink      *string              `json:"referral_link"`
	CreatedAt         *string              `json:"created_at"`
}

type partneroTransactionJSON struct {
	ID             string               `json:"id,omitempty"`
	Key            string               `json:"key"`
	Amount         *json.Number         `json:"amount"`
	Currency       string               `json:"currency"`
	Action         string               `json:"action"`
	ProductID      *string              `json:"product_id"`
	ProductType    *string              `json:"product_type"`
	Customer       *partneroKeyJSON     `json:"customer"`
	Partner        *partneroPartnerJSON `json:"partner"`
	Commission     *json.Number         `json:"commission,omitempty"`
	RefundedAmount *json.Number         `json:"refunded_amount,omitempty"`
	Status         string               `json:"status,omitempty"`
	AttributedBy   string               `json:"attributed_by,omitempty"`
	Flags          []string             `json:"flags,omitempty"`
	CreatedAt      string               `json:"created_at,omitempty"`
	UpdatedAt      string               `json:"updated_at,omitempty"`
}

type partneroCreditJSON struct {
	Customer       partneroKeyJSON `json:"customer"`
	Amount         *json.Number    `json:"amount"`
	Currency       string          `json:"currency"`
	Note           *string         `json:"note"`
	IdempotencyKey string          `json:"idempotency_key"`
	Balance        *json.Number    `json:"balance,omitempty"`
	CreatedAt      string          `json:"created_at"`
}

type partneroDeletedJSON struct {
	ID  string `json:"id,omitempty"`
	Key string `json:"key"`
}

func partneroStr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func partneroTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(partneroTimeLayout)
}

// partneroMoney renders minor units of a currency as an exact JSON number;
// nil (null) when the currency is unknown rather than guess its decimals.
func partneroMoney(minor int64, code string) *json.Number {
	cur, err := money.LookupAnyCurrency(code)
	if err != nil {
		return nil
	}
	n := json.Number(money.Format(minor, cur))
	return &n
}

func partneroClip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// partneroDigest is a short hex SHA-256 of a customer event's wire form
// (a struct, so its JSON is canonical).
func partneroDigest(ce *sink.CustomerEvent) string {
	b, _ := json.Marshal(ce)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// partneroReferralLink builds the customer's refer-a-friend link on the host
// the merchant called; nil without a code or a usable host.
func (s *Server) partneroReferralLink(ctx *fasthttp.RequestCtx, merchantID, code string) *string {
	host := ctx.Host()
	if code == "" || len(host) == 0 || len(host) > 255 {
		return nil
	}
	for _, c := range host {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']'
		if !ok {
			return nil
		}
	}
	scheme := "http"
	if ctx.IsTLS() || s.SecureCookies {
		scheme = "https"
	}
	link := scheme + "://" + string(host) + ReferralPath(merchantID, code)
	return &link
}

// partneroPartnerOf renders the merchant's partner with that id.
func partneroPartnerOf(x *redirect.Index, merchantID, partnerID, partnerKey string) *partneroPartnerJSON {
	if partnerID == "" {
		return nil
	}
	if partnerKey == "" && x != nil {
		if p, ok := x.Partner(partnerID); ok && p.MerchantID == merchantID {
			partnerKey = p.Key
		}
	}
	return &partneroPartnerJSON{ID: partnerID, Key: partnerKey}
}

func partneroCustomerFromEvent(ce *sink.CustomerEvent) partneroCustomerJSON {
	out := partneroCustomerJSON{
		Key: ce.Key, Email: partneroStr(ce.Email), Name: partneroStr(ce.Name), Surname: partneroStr(ce.Surname),
		Tags: ce.Tags,
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if ce.ReferringCustomerKey != "" {
		out.ReferringCustomer = &partneroKeyJSON{Key: ce.ReferringCustomerKey}
	}
	return out
}

func (s *Server) partneroCustomerFromRecord(ctx *fasthttp.RequestCtx, x *redirect.Index, r *sink.CustomerRecord) partneroCustomerJSON {
	out := partneroCustomerJSON{
		Key: r.Key, Email: partneroStr(r.Email), Name: partneroStr(r.Name), Surname: partneroStr(r.Surname),
		Tags:         r.Tags,
		Partner:      partneroPartnerOf(x, r.MerchantID, r.PartnerID, ""),
		ReferralLink: s.partneroReferralLink(ctx, r.MerchantID, r.ReferralCode),
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if r.ReferredByKey != "" {
		out.ReferringCustomer = &partneroKeyJSON{Key: r.ReferredByKey}
	}
	if r.CreatedAt != 0 {
		t := partneroTime(r.CreatedAt)
		out.CreatedAt = &t
	}
	return out
}

func partneroTransactionFromEvent(ce *sink.ConversionEvent) partneroTransactionJSON {
	return partneroTransactionJSON{
		Key: ce.UniqueID, Amount: partneroMoney(ce.AmountMinor, ce.Currency), Currency: ce.Currency, Action: ce.Type,
		ProductID: partneroStr(ce.ProductID), ProductType: partneroStr(ce.ProductType),
		Customer: &partneroKeyJSON{Key: ce.CustomerID},
	}
}

func partneroTransactionFromRecord(x *redirect.Index, r *sink.ConversionRecord) partneroTransactionJSON {
	out := partneroTransactionJSON{
		ID: r.ID, Key: r.UniqueID, Amount: partneroMoney(r.AmountMinor, r.Currency), Currency: r.Currency,
		Action: r.Type, ProductID: partneroStr(r.ProductID), ProductType: partneroStr(r.ProductType),
		Partner:        partneroPartnerOf(x, r.MerchantID, r.PartnerID, r.PartnerKey),
		Commission:     partneroMoney(r.CommissionMinor, r.Currency),
		RefundedAmount: partneroMoney(r.RefundedMinor, r.Currency),
		Status:         r.Status, AttributedBy: r.AttributedBy, Flags: r.Flags,
		CreatedAt: partneroTime(r.CreatedAt), UpdatedAt: partneroTime(r.UpdatedAt),
	}
	if r.CustomerID != "" {
		out.Customer = &partneroKeyJSON{Key: r.CustomerID}
	}
	return out
}

// partneroRejected turns the worker's rejection into the merchant's error.
func partneroRejected(e *sink.APIError, notFound string) *apiError {
	if e == nil || e.Code == "" {
		return errf(CodeEventRejected, "the attribution worker rejected the request")
	}
	msg := e.Message
	if msg == "" {
		msg = e.Code
	}
	if e.Code == sink.APICodeNotFound || strings.HasSuffix(e.Code, "_not_found") {
		return errf(notFound, msg)
	}
	if st, known := codeStatus[e.Code]; known && st >= 400 && st < 500 {
		return errf(e.Code, msg)
	}
	return errf(CodeEventRejected, e.Code+": "+msg)
}

// partneroReason is the worker's reason for an ignored event, if it gave one.
func partneroReason(e *sink.APIError) *apiError {
	if e == nil || e.Code == "" {
		return nil
	}
	return &apiError{Code: e.Code, Message: e.Message}
}

func (s *Server) partneroUnexpected(ctx *fasthttp.RequestCtx, merchantID, eventID, outcome string) {
	s.reqLog(ctx).Error("unexpected worker outcome", "merchant", merchantID, "event", eventID, "outcome", outcome)
	writeError(ctx, errf(CodeInternal, "the attribution worker answered an unknown outcome"))
}

// ---- handlers ----

// partneroCreateCustomer is POST /v1/customers: a sign-up, attributed to a
// partner (partner.key/email/id) or a referring customer.
func (s *Server) partneroCreateCustomer(ctx *fasthttp.RequestCtx, _ Params) {
	x, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	var req partneroCustomerRequest
	if aerr := s.partneroDecode(ctx, &req); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	ce, aerr := partneroCustomerEvent(&req)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	ev := &sink.Event{
		// The content is part of the id: a retry is one event, while a
		// corrected or updated customer (a fixed partner key, new tags) is a
		// new one, not a duplicate of an earlier ignored request.
		ID: sink.EventID(m.ID, sink.KindCustomer, ce.Key+":"+partneroDigest(ce)), Kind: sink.KindCustomer,
		Dialect: sink.DialectPartnero, MerchantID: m.ID, Customer: ce,
	}
	if aerr := s.commitEvent(ctx, ev); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	res, ok := s.awaitResult(m.ID, ev.ID)
	if !ok {
		writeJSON(ctx, fasthttp.StatusAccepted, partneroEnvelope{Data: partneroCustomerFromEvent(ce), Status: partneroQueued})
		return
	}
	switch res.Outcome {
	case sink.OutcomeApplied, sink.OutcomeDuplicate:
		data := partneroCustomerFromEvent(ce)
		if res.Customer != nil {
			data = s.partneroCustomerFromRecord(ctx, x, res.Customer)
		}
		status := fasthttp.StatusCreated
		if res.Outcome == sink.OutcomeDuplicate {
			status = fasthttp.StatusOK
		}
		writeJSON(ctx, status, partneroEnvelope{Data: data, Status: res.Outcome})
	case sink.OutcomeIgnored:
		writeJSON(ctx, fasthttp.StatusOK, partneroEnvelope{Data: partneroCustomerFromEvent(ce), Status: res.Outcome, Reason: partneroReason(res.Error)})
	case sink.OutcomeRejected:
		writeError(ctx, partneroRejected(res.Error, CodeCustomerNotFound))
	default:
		s.partneroUnexpected(ctx, m.ID, ev.ID, res.Outcome)
	}
}

// partneroCreateTransaction is POST /v1/transactions: a sale of a customer.
func (s *Server) partneroCreateTransaction(ctx *fasthttp.RequestCtx, _ Params) {
	x, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	var req partneroTransactionRequest
	if aerr := s.partneroDecode(ctx, &req); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	ce, aerr := partneroConversionEvent(m.ID, &req, func() (string, *apiError) {
		idem, aerr := idempotencyKey(ctx)
		if aerr != nil || idem != "" {
			return idem, aerr
		}
		n, aerr := partneroNonce()
		return "txn_" + n, aerr
	})
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	ev := &sink.Event{
		ID: sink.EventID(m.ID, sink.KindConversion, ce.UniqueID), Kind: sink.KindConversion,
		Dialect: sink.DialectPartnero, MerchantID: m.ID, Conversion: ce,
	}
	if aerr := s.commitEvent(ctx, ev); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	res, ok := s.awaitResult(m.ID, ev.ID)
	if !ok {
		writeJSON(ctx, fasthttp.StatusAccepted, partneroEnvelope{Data: partneroTransactionFromEvent(ce), Status: partneroQueued})
		return
	}
	outcome := res.Outcome
	if outcome == sink.OutcomeRejected && res.Error != nil && res.Error.Code == CodeCustomerNotFound {
		// Seed 002: transactions of customers that do not exist are ignored.
		outcome = sink.OutcomeIgnored
	}
	switch outcome {
	case sink.OutcomeApplied, sink.OutcomeDuplicate:
		data := partneroTransactionFromEvent(ce)
		if res.Conversion != nil {
			data = partneroTransactionFromRecord(x, res.Conversion)
		}
		status := fasthttp.StatusCreated
		if outcome == sink.OutcomeDuplicate {
			status = fasthttp.StatusOK
		}
		writeJSON(ctx, status, partneroEnvelope{Data: data, Status: outcome})
	case sink.OutcomeIgnored:
		writeJSON(ctx, fasthttp.StatusOK, partneroEnvelope{Data: partneroTransactionFromEvent(ce), Status: outcome, Reason: partneroReason(res.Error)})
	case sink.OutcomeRejected:
		writeError(ctx, partneroRejected(res.Error, CodeTransactionNotFound))
	default:
		s.partneroUnexpected(ctx, m.ID, ev.ID, res.Outcome)
	}
}

// partneroDeleteTransaction is DELETE /v1/transactions/{key}: a refund or
// chargeback of the whole transaction.
func (s *Server) partneroDeleteTransaction(ctx *fasthttp.RequestCtx, p Params) {
	x, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	key := p["key"]
	if partneroKey("key", partneroID(key)) != nil {
		writeError(ctx, errf(CodeTransactionNotFound, "no transaction with that key"))
		return
	}
	rec, aerr := s.lookupConversion(m.ID, key, CodeTransactionNotFound)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	if rec.UniqueID == "" {
		writeError(ctx, errf(CodeTransactionNotFound, "no transaction with that key"))
		return
	}
	ev := &sink.Event{
		ID: sink.EventID(m.ID, sink.KindRefund, rec.UniqueID+":delete"), Kind: sink.KindRefund,
		Dialect: sink.DialectPartnero, MerchantID: m.ID,
		Refund: &sink.RefundEvent{UniqueID: rec.UniqueID, Full: true, Reason: "transaction deleted", ReversePaidEarnings: true},
	}
	if aerr := s.commitEvent(ctx, ev); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	res, ok := s.awaitResult(m.ID, ev.ID)
	if !ok {
		writeJSON(ctx, fasthttp.StatusAccepted, partneroEnvelope{Data: partneroDeletedJSON{ID: rec.ID, Key: rec.UniqueID}, Status: partneroQueued})
		return
	}
	switch res.Outcome {
	case sink.OutcomeApplied, sink.OutcomeDuplicate, sink.OutcomeIgnored:
		var data any = partneroDeletedJSON{ID: rec.ID, Key: rec.UniqueID}
		if res.Conversion != nil {
			data = partneroTransactionFromRecord(x, res.Conversion)
		}
		writeJSON(ctx, fasthttp.StatusOK, partneroEnvelope{Data: data, Status: res.Outcome, Reason: partneroReason(res.Error)})
	case sink.OutcomeRejected:
		writeError(ctx, partneroRejected(res.Error, CodeTransactionNotFound))
	default:
		s.partneroUnexpected(ctx, m.ID, ev.ID, res.Outcome)
	}
}

// partneroCreditBalance is POST /v1/customers/{key}/balance/credit: a
// refer-a-friend reward credited to the customer's balance.
func (s *Server) partneroCreditBalance(ctx *fasthttp.RequestCtx, p Params) {
	_, m, aerr := s.authMerchant(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	key := p["key"]
	if partneroKey("key", partneroID(key)) != nil {
		writeError(ctx, errf(CodeCustomerNotFound, "no customer with that key"))
		return
	}
	var req partneroCreditRequest
	if aerr := s.partneroDecode(ctx, &req); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	cur, aerr := partneroCurrency("", req.Currency)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	amount, aerr := partneroAmount("amount", req.Amount, cur)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	if amount == 0 {
		writeError(ctx, errf(CodeInvalidAmount, "amount must be above zero"))
		return
	}
	note := strings.TrimSpace(req.Note)
	if aerr := partneroText("note", note, partneroMaxNote); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	idem, aerr := idempotencyKey(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	if s.Backend == nil {
		writeError(ctx, errf(CodeWorkerUnavailable, "this edge has no attribution worker configured"))
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	cust, err := s.Backend.Customer(rctx, m.ID, key)
	cancel()
	if err != nil {
		writeError(ctx, backendError(err, CodeCustomerNotFound))
		return
	}
	if cust.MerchantID != m.ID || cust.Key == "" {
		writeError(ctx, errf(CodeCustomerNotFound, "no customer with that key"))
		return
	}
	if idem == "" {
		if idem, aerr = partneroNonce(); aerr != nil {
			writeError(ctx, aerr)
			return
		}
	}
	ce := &sink.CreditEvent{CustomerKey: cust.Key, AmountMinor: amount, Currency: cur.Code, Note: note}
	ev := &sink.Event{
		ID: sink.EventID(m.ID, sink.KindCredit, cust.Key+":"+idem), Kind: sink.KindCredit,
		Dialect: sink.DialectPartnero, MerchantID: m.ID, Credit: ce,
	}
	if aerr := s.commitEvent(ctx, ev); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	data := partneroCreditJSON{
		Customer: partneroKeyJSON{Key: cust.Key}, Amount: partneroMoney(amount, cur.Code), Currency: cur.Code,
		Note: partneroStr(note), IdempotencyKey: idem, CreatedAt: partneroTime(ev.TS),
	}
	res, ok := s.awaitResult(m.ID, ev.ID)
	if !ok {
		writeJSON(ctx, fasthttp.StatusAccepted, partneroEnvelope{Data: data, Status: partneroQueued})
		return
	}
	switch res.Outcome {
	case sink.OutcomeApplied, sink.OutcomeDuplicate, sink.OutcomeIgnored:
		if c := res.Customer; c != nil && c.Currency != "" {
			data.Balance = partneroMoney(c.BalanceMinor, c.Currency)
		}
		status := fasthttp.StatusOK
		if res.Outcome == sink.OutcomeApplied {
			status = fasthttp.StatusCreated
		}
		writeJSON(ctx, status, partneroEnvelope{Data: data, Status: res.Outcome, Reason: partneroReason(res.Error)})
	case sink.OutcomeRejected:
		writeError(ctx, partneroRejected(res.Error, CodeCustomerNotFound))
	default:
		s.partneroUnexpected(ctx, m.ID, ev.ID, res.Outcome)
	}
}
