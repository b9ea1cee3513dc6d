package sink

import (
	"encoding/json"
	"fmt"
)

// EventVersion is the schema version of Event on the wire. A consumer
// terminates (never silently drops) a message whose version it does not know.
const EventVersion = 1

// The merchant event stream: conversions, refunds, updates, status changes,
// customers and balance credits, subject EventSubjectPrefix + merchant id.
// It keeps every event (no age limit) so that the worker's store, ledger
// included, can be rebuilt by replaying it.
const (
	EventStream        = "CLICKEDGE_EVENTS"
	EventSubjectPrefix = "clickedge.events."
)

// EventKind names what a merchant event does.
type EventKind string

// Event kinds. Every dialect's write maps to one of them.
const (
	// KindConversion: Partnac track, Affilync track/postback/pixel, Partnero transaction.
	KindConversion EventKind = "conversion"
	// KindRefund: Partnac refund, Partnero transaction delete (full).
	KindRefund EventKind = "refund"
	// KindUpdate: Partnac PATCH (amount, metadata, recalculation).
	KindUpdate EventKind = "update"
	// KindStatus: Affilync PATCH approve/reject, admin approve/reject/paid.
	KindStatus EventKind = "status"
	// KindCustomer: Partnero POST /v1/customers.
	KindCustomer EventKind = "customer"
	// KindCredit: Partnero balance credit (refer-a-friend reward).
	KindCredit EventKind = "balance_credit"
)

// Dialects an event can arrive in.
const (
	DialectPartnac  = "partnac"
	DialectPartnero = "partnero"
	DialectAffilync = "affilync"
	DialectPixel    = "pixel"
	DialectAdmin    = "admin"
)

// Event is one merchant write as the edge accepted it: the contract between
// edge and worker for everything but clicks. Exactly one of the payload
// pointers is set, the one matching Kind. Amounts are integer minor units of
// Currency (see package money); never floats.
type Event struct {
	V int `json:"v"`
	// ID is the event's identity and its Nats-Msg-Id: see EventID.
	ID         string    `json:"id"`
	Kind       EventKind `json:"kind"`
	TS         int64     `json:"ts"` // Unix ms at the edge
	Edge       string    `json:"edge,omitempty"`
	Dialect    string    `json:"dialect"`
	MerchantID string    `json:"merchant_id"`

	Conversion *ConversionEvent `json:"conversion,omitempty"`
	Refund     *RefundEvent     `json:"refund,omitempty"`
	Update     *UpdateEvent     `json:"update,omitempty"`
	Status     *StatusEvent     `json:"status,omitempty"`
	Customer   *CustomerEvent   `json:"customer,omitempty"`
	Credit     *CreditEvent     `json:"credit,omitempty"`
}

// EventID is the identity of a merchant write: merchant, kind and the
// merchant's own key (unique_id, order_id, transaction key; for a refund the
// unique id plus the external refund id). The same write sent twice gets the
// same id, so JetStream's duplicate window and the worker both drop it.
func EventID(merchantID string, kind EventKind, key string) string {
	return merchantID + ":" + string(kind) + ":" + key
}

// ConversionEvent is a sale, lead, signup… reported by the merchant.
type ConversionEvent struct {
	// UniqueID is the merchant's id of the conversion (Partnac unique_id,
	// Affilync order_id, Partnero transaction key): conversions dedupe on
	// (merchant, UniqueID).
	UniqueID string `json:"unique_id"`
	// Type: sale, lead, referral, subscription, custom (Partnac); sale, lead,
	// signup, trial (Affilync); action names (Partnero).
	Type        string `json:"type"`
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
	CampaignID  string `json:"campaign_id,omitempty"`
	// ClickID came in the request (Partnac session_id, Affilync click_id).
	ClickID string `json:"click_id,omitempty"`
	// CookieClickID came from the visitor's first-party cookie (pixel).
	CookieClickID     string `json:"cookie_click_id,omitempty"`
	CouponCode        string `json:"coupon_code,omitempty"`
	CustomerID        string `json:"customer_id,omitempty"`
	CustomerEmailHash string `json:"customer_email_hash,omitempty"`
	// PartnerKey is the partnership code / partner key; PartnerEmail and
	// PartnerID are Partnero's alternatives.
	PartnerKey   string `json:"partner_key,omitempty"`
	PartnerEmail string `json:"partner_email,omitempty"`
	PartnerID    string `json:"partner_id,omitempty"`
	ProductID    string `json:"product_id,omitempty"`
	ProductType  string `json:"product_type,omitempty"`
	// CreateCustomer (Partnero options.create_customer) creates the customer
	// from the partner fields when it does not exist yet.
	CreateCustomer bool `json:"create_customer,omitempty"`
	// ClientReported marks conversions reported by a browser pixel.
	ClientReported bool            `json:"client_reported,omitempty"`
	IP             string          `json:"ip,omitempty"`
	Country        string          `json:"country,omitempty"`
	Region         string          `json:"region,omitempty"`
	City           string          `json:"city,omitempty"`
	UserAgent      string          `json:"user_agent,omitempty"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
}

// RefundEvent reverses all or part of a conversion.
type RefundEvent struct {
	UniqueID string `json:"unique_id"`
	// Full refunds what is left; otherwise AmountMinor is refunded.
	Full             bool   `json:"full,omitempty"`
	AmountMinor      int64  `json:"amount_minor,omitempty"`
	Reason           string `json:"reason,omitempty"`
	ExternalRefundID string `json:"external_refund_id,omitempty"`
	// ReversePaidEarnings books a negative entry against the partner's
	// future balance when the commission was already paid (default true).
	ReversePaidEarnings bool `json:"reverse_paid_earnings"`
}

// UpdateEvent changes a conversion after the fact (Partnac PATCH).
type UpdateEvent struct {
	UniqueID    string          `json:"unique_id"`
	AmountMinor *int64          `json:"amount_minor,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	// Recalculate books the commission difference for the new amount.
	Recalculate bool `json:"recalculate,omitempty"`
}

// StatusEvent approves, rejects or marks paid a conversion.
type StatusEvent struct {
	// ConversionID is the worker's id (conv_…); UniqueID the merchant's. One is set.
	ConversionID string `json:"conversion_id,omitempty"`
	UniqueID     string `json:"unique_id,omitempty"`
	Status       string `json:"status"` // approved, rejected, paid
	Note         string `json:"note,omitempty"`
}

// CustomerEvent creates or updates a referred customer (Partnero).
type CustomerEvent struct {
	Key                  string   `json:"key"`
	Email                string   `json:"email,omitempty"`
	Name                 string   `json:"name,omitempty"`
	Surname              string   `json:"surname,omitempty"`
	Tags                 []string `json:"tags,omitempty"`
	ReferralURL          string   `json:"referral_url,omitempty"`
	PartnerKey           string   `json:"partner_key,omitempty"`
	PartnerEmail         string   `json:"partner_email,omitempty"`
	PartnerID            string   `json:"partner_id,omitempty"`
	ReferringCustomerKey string   `json:"referring_customer_key,omitempty"`
}

// CreditEvent credits a customer's balance (refer-a-friend reward).
type CreditEvent struct {
	CustomerKey string `json:"customer_key"`
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
	Note        string `json:"note,omitempty"`
}

// AppendEvent appends the wire form of e to dst.
func AppendEvent(dst []byte, e *Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return dst, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	return append(dst, b...), nil
}

// DecodeEvent parses the wire form of an event and checks its version and
// that the payload matching its kind is present.
func DecodeEvent(data []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("decode event: %w", err)
	}
	if e.V != EventVersion {
		return e, fmt.Errorf("decode event %s: unknown version %d", e.ID, e.V)
	}
	if e.ID == "" || e.MerchantID == "" {
		return e, fmt.Errorf("decode event: missing id or merchant")
	}
	ok := false
	switch e.Kind {
	case KindConversion:
		ok = e.Conversion != nil
	case KindRefund:
		ok = e.Refund != nil
	case KindUpdate:
		ok = e.Update != nil
	case KindStatus:
		ok = e.Status != nil
	case KindCustomer:
		ok = e.Customer != nil
	case KindCredit:
		ok = e.Credit != nil
	}
	if !ok {
		return e, fmt.Errorf("decode event %s: kind %q without its payload", e.ID, e.Kind)
	}
	return e, nil
}

// Conversion statuses.
const (
	StatusPending  = "pending"
	StatusApproved = "approved"
	StatusRejected = "rejected"
	StatusPaid     = "paid"
)

// How a conversion was attributed, in precedence order.
const (
	ByClickID    = "click_id"
	ByCookie     = "cookie"
	ByCoupon     = "coupon"
	ByCustomer   = "customer"
	ByPartnerKey = "partner_key"
	ByNone       = "none"
)

// ConversionRecord is a conversion as the worker holds it and the read APIs
// show it.
type ConversionRecord struct {
	ID                string `json:"id"` // conv_…
	MerchantID        string `json:"merchant_id"`
	UniqueID          string `json:"unique_id"`
	Type              string `json:"type"`
	Dialect           string `json:"dialect"`
	AmountMinor       int64  `json:"amount_minor"`
	RefundedMinor     int64  `json:"refunded_minor"`
	Currency          string `json:"currency"`
	Status            string `json:"status"`
	CampaignID        string `json:"campaign_id,omitempty"`
	PartnerID         string `json:"partner_id,omitempty"`
	PartnerKey        string `json:"partner_key,omitempty"`
	ClickID           string `json:"click_id,omitempty"`
	CustomerID        string `json:"customer_id,omitempty"`
	CustomerEmailHash string `json:"customer_email_hash,omitempty"`
	CouponCode        string `json:"coupon_code,omitempty"`
	ProductID         string `json:"product_id,omitempty"`
	ProductType       string `json:"product_type,omitempty"`
	// AttributedBy is one of ByClickID … ByNone.
	AttributedBy string `json:"attributed_by"`
	// Flags: forged_click, bot_click, outside_window, suspect_fast,
	// client_reported, unknown_click.
	Flags []string `json:"flags,omitempty"`
	// CommissionMinor is the partner's net commission on this conversion:
	// the sum of its ledger entries.
	CommissionMinor int64           `json:"commission_minor"`
	Note            string          `json:"note,omitempty"`
	IP              string          `json:"ip,omitempty"`
	Country         string          `json:"country,omitempty"`
	Region          string          `json:"region,omitempty"`
	City            string          `json:"city,omitempty"`
	Metadata        json.RawMessage `json:"metadata,omitempty"`
	CreatedAt       int64           `json:"created_at"` // Unix ms (edge time of the first report)
	UpdatedAt       int64           `json:"updated_at"`
}

// CustomerRecord is a referred customer (Partnero) as the worker holds it.
type CustomerRecord struct {
	MerchantID string   `json:"merchant_id"`
	Key        string   `json:"key"`
	Email      string   `json:"email,omitempty"`
	Name       string   `json:"name,omitempty"`
	Surname    string   `json:"surname,omitempty"`
	Tags       []string `json:"tags,omitempty"`
	PartnerID  string   `json:"partner_id,omitempty"`
	// ReferralCode is the customer's own refer-a-friend code.
	ReferralCode  string `json:"referral_code,omitempty"`
	BalanceMinor  int64  `json:"balance_minor"`
	Currency      string `json:"currency,omitempty"`
	FirstAttrTS   int64  `json:"first_attributed_at,omitempty"`
	CreatedAt     int64  `json:"created_at"`
	ReferredByKey string `json:"referred_by,omitempty"`
}

// EventResult is the worker's answer for one event.
type EventResult struct {
	EventID string `json:"event_id"`
	// Outcome: "applied", "duplicate" (the original is returned), "ignored"
	// (documented no-ops such as Partnero's invalid partner key) or
	// "rejected" (Error says why: conversion_not_found, currency_mismatch…).
	Outcome    string            `json:"outcome"`
	Error      *APIError         `json:"error,omitempty"`
	Conversion *ConversionRecord `json:"conversion,omitempty"`
	Customer   *CustomerRecord   `json:"customer,omitempty"`
}

// Event outcomes.
const (
	OutcomeApplied   = "applied"
	OutcomeDuplicate = "duplicate"
	OutcomeIgnored   = "ignored"
	OutcomeRejected  = "rejected"
)

// ConversionQuery asks for one merchant's conversions, newest first.
type ConversionQuery struct {
	MerchantID string `json:"merchant_id"`
	CampaignID string `json:"campaign_id,omitempty"`
	PartnerID  string `json:"partner_id,omitempty"`
	Status     string `json:"status,omitempty"`
	FromMilli  int64  `json:"from,omitempty"` // inclusive, CreatedAt
	ToMilli    int64  `json:"to,omitempty"`   // exclusive; 0 = no bound
	Limit      int    `json:"limit"`
	Offset     int    `json:"offset"`
}

// ConversionPage is the answer to a ConversionQuery.
type ConversionPage struct {
	Conversions []ConversionRecord `json:"conversions"`
	Total       int                `json:"total"`
}
