package attribution

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/clickedge/clickedge/money"
	"github.com/clickedge/clickedge/sink"
)

// Conversion flags: why a conversion was or was not attributed the way it
// was, in ConversionRecord.Flags. They never change after the conversion is
// recorded.
const (
	// FlagForgedClick: a click id in the request or cookie did not verify
	// with the cluster's secret; it never attributes.
	FlagForgedClick = "forged_click"
	// FlagBotClick: the click was a bot's; it never attributes.
	FlagBotClick = "bot_click"
	// FlagOutsideWindow: the conversion came after the click's campaign
	// window had closed.
	FlagOutsideWindow = "outside_window"
	// FlagSuspectFast: the conversion came sooner after its click than the
	// campaign's MinClickToConversionSeconds; it still attributes.
	FlagSuspectFast = "suspect_fast"
	// FlagClientReported: a browser pixel reported the conversion.
	FlagClientReported = "client_reported"
	// FlagUnknownClick: the click id verifies but the merchant has no such
	// click in the store.
	FlagUnknownClick = "unknown_click"
	// FlagOrphanClick: the click was on an unknown or paused link code and
	// carries no partner.
	FlagOrphanClick = "orphan_click"
	// FlagUnknownPartner: a partner named by the click, the partner key,
	// email or id is not (or no longer) one of the merchant's partners.
	FlagUnknownPartner = "unknown_partner"
	// FlagUnknownCampaign: a campaign named by the click or the event is
	// not (or no longer) one of the merchant's campaigns.
	FlagUnknownCampaign = "unknown_campaign"
	// FlagCouponConflict: a click attributed the conversion although its
	// coupon code belongs to another partner (click beats coupon).
	FlagCouponConflict = "coupon_conflict"
	// FlagCurrencyMismatch: the conversion's currency is not its campaign's,
	// whose commission rules are written in the campaign currency; it earns
	// nothing.
	FlagCurrencyMismatch = "currency_mismatch"
	// FlagRepeatLead: the customer already had a lead attributed; a lead
	// earns once per customer.
	FlagRepeatLead = "repeat_lead"
	// FlagRecurringExpired: a subscription payment after the campaign's
	// recurring period; it earns nothing.
	FlagRecurringExpired = "recurring_expired"
	// FlagSupersededClientReport: the merchant's authenticated report
	// replaced a pending client-reported (pixel) conversion of the same
	// unique id; the pixel's commission was reversed.
	FlagSupersededClientReport = "superseded_client_report"
)

// Ledger entry kinds.
const (
	// LedgerCommission is what a partner earned on a new conversion.
	LedgerCommission = "commission"
	// LedgerReversal takes back commission on a refund or rejection before
	// payment.
	LedgerReversal = "reversal"
	// LedgerAdjustment books the difference of a recalculated commission.
	LedgerAdjustment = "adjustment"
	// LedgerPayout moves a paid conversion's commission out of the balance.
	LedgerPayout = "payout"
	// LedgerClawback takes back paid commission on a refund with
	// reverse_paid_earnings: it is booked against the future balance.
	LedgerClawback = "clawback"
	// LedgerCredit credits a customer's refer-a-friend balance.
	LedgerCredit = "credit"
)

// APIError codes of rejected events (EventResult.Error.Code).
const (
	// CodeInvalidEvent: the event lacks an identifier or holds one the store
	// cannot key (too long, NUL byte).
	CodeInvalidEvent = "invalid_event"
	// CodeInvalidAmount: negative, zero where a positive amount is needed,
	// or above money.MaxMinor.
	CodeInvalidAmount = "invalid_amount"
	// CodeInvalidCurrency: not an ISO 4217 code.
	CodeInvalidCurrency = "invalid_currency"
	// CodeCurrencyMismatch: a credit in another currency than the
	// customer's balance.
	CodeCurrencyMismatch = "currency_mismatch"
	// CodeConversionNotFound: the merchant has no conversion with that id.
	CodeConversionNotFound = "conversion_not_found"
	// CodeCustomerNotFound: the merchant has no customer with that key.
	CodeCustomerNotFound = "customer_not_found"
	// CodeInvalidTransition: the status change is not allowed from the
	// conversion's status (pending → approved | rejected, approved → paid).
	CodeInvalidTransition = "invalid_transition"
	// CodeInvalidStatus: the status is not approved, rejected or paid.
	CodeInvalidStatus = "invalid_status"
	// CodeRefundExceedsAmount: the refund is more than what is left of the
	// conversion's amount.
	CodeRefundExceedsAmount = "refund_exceeds_amount"
	// CodeAlreadyRefunded: a full refund of a conversion already fully
	// refunded.
	CodeAlreadyRefunded = "already_refunded"
	// CodeAmountBelowRefunded: an update to an amount below what was
	// already refunded.
	CodeAmountBelowRefunded = "amount_below_refunded"
	// CodeInvalidMetadata: metadata to merge is not a JSON object.
	CodeInvalidMetadata = "invalid_metadata"
)

// ErrMixedCurrencies is returned by PartnerBalance for a partner whose
// ledger holds entries in more than one currency; Balances splits them.
var ErrMixedCurrencies = errors.New("ledger holds more than one currency")

// ConversionIDPrefix starts every conversion id.
const ConversionIDPrefix = "conv_"

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ConversionID returns the worker's id of the merchant's conversion with that
// unique id: "conv_" and 24 lowercase base32 characters (120 bits) of
// SHA-256(merchant, NUL, unique id). It is a pure function, so that a replay
// of the event stream into an empty store gives every conversion the same id.
func ConversionID(merchantID, uniqueID string) string {
	h := sha256.New()
	h.Write([]byte(merchantID))
	h.Write([]byte{0})
	h.Write([]byte(uniqueID))
	sum := h.Sum(nil)
	return ConversionIDPrefix + lowerBase32.EncodeToString(sum[:15])
}

// ReferralCode returns the customer's own refer-a-friend code: 12 lowercase
// base32 characters of SHA-256("referral", merchant, customer key). It is
// deterministic (a replay gives the same code) and a valid link code, so the
// edge can mint the customer's referral link from it.
func ReferralCode(merchantID, customerKey string) string {
	h := sha256.New()
	h.Write([]byte("referral\x00"))
	h.Write([]byte(merchantID))
	h.Write([]byte{0})
	h.Write([]byte(customerKey))
	sum := h.Sum(nil)
	return lowerBase32.EncodeToString(sum[:10])[:12]
}

// CustomerAccount is the ledger account of a customer's refer-a-friend
// balance; partner accounts are partner ids, which cannot contain ':'.
func CustomerAccount(customerKey string) string { return "customer:" + customerKey }

// LedgerEntry is one append-only booking on a partner's or a customer's
// account. Balances are sums of entries, never stored counters.
type LedgerEntry struct {
	// Seq orders entries; it increases with every entry the store books.
	Seq        uint64 `json:"seq"`
	MerchantID string `json:"merchant_id"`
	// Account is the partner id, or CustomerAccount(key) for a customer.
	Account string `json:"account"`
	// Kind is one of LedgerCommission … LedgerCredit.
	Kind string `json:"kind"`
	// AmountMinor is signed: positive earns, negative takes back or pays out.
	AmountMinor  int64  `json:"amount_minor"`
	Currency     string `json:"currency"`
	ConversionID string `json:"conversion_id,omitempty"`
	// EventID is the event that booked the entry.
	EventID string `json:"event_id"`
	TS      int64  `json:"ts"` // Unix ms, the event's time
	Note    string `json:"note,omitempty"`
}

// Balance is an account's position in one currency.
type Balance struct {
	Currency string `json:"currency"`
	// BalanceMinor is the sum of every entry: what is owed now (negative
	// after a clawback larger than what was earned since).
	BalanceMinor int64 `json:"balance_minor"`
	// PaidMinor is what payouts moved out of the balance.
	PaidMinor int64 `json:"paid_minor"`
}

// Bucket names of the conversion side of the store.
var (
	// conversions: conversion id → conversion (JSON).
	bucketConversions = []byte("conversions")
	// idx_conversions: tag | merchant 0 [campaign 0] [partner 0] [status 0]
	// | created_at (8 bytes) | conversion id, for newest-first listing; tag
	// is the set of filters in the key (tagCampaign | tagPartner |
	// tagStatus), so that one filter's prefix never matches another's.
	bucketConvIndex = []byte("idx_conversions")
	// conv_counts: index prefix → uint64, the totals of listings.
	bucketConvCounts = []byte("conv_counts")
	// events: merchant 0 event id → EventResult (JSON).
	bucketEvents = []byte("events")
	// customers: merchant 0 key → customer (JSON).
	bucketCustomers = []byte("customers")
	// referrals: merchant 0 referral code → customer key, so that a
	// referring customer can be named by the code of its refer-a-friend link.
	bucketReferrals = []byte("referrals")
	// ledger: merchant 0 account 0 seq (8 bytes) → LedgerEntry (JSON).
	bucketLedger = []byte("ledger")
	// holds: due (8 bytes, Unix ms) | conversion id → merchant, pending
	// conversions waiting for automatic approval.
	bucketHolds = []byte("holds")
)

const (
	tagCampaign byte = 1 << iota
	tagPartner
	tagStatus
)

// conversion is a conversion as stored: the record plus the bookkeeping that
// makes refunds, recalculations and payouts exact.
type conversion struct {
	Rec sink.ConversionRecord `json:"record"`
	// Earned is the gross commission: the commission entry plus the earning
	// side of recalculations.
	Earned int64 `json:"earned"`
	// Reversed is what refunds and rejection took back (reversal and
	// clawback entries and the reversing side of recalculations); it never
	// exceeds Earned, and Earned - Reversed is Rec.CommissionMinor.
	Reversed int64 `json:"reversed"`
	// Forgiven is the refunded share of commission that was already paid
	// and not clawed back (reverse_paid_earnings false).
	Forgiven int64 `json:"forgiven,omitempty"`
	// Paid is what payout entries moved out of the partner's balance.
	Paid int64 `json:"paid,omitempty"`
	// NoEarn marks an attributed conversion that earns nothing whatever its
	// amount (repeat lead, expired recurring period, currency mismatch), so
	// that a recalculation keeps it at zero.
	NoEarn        bool   `json:"no_earn,omitempty"`
	FullyRefunded bool   `json:"fully_refunded,omitempty"`
	DueMilli      int64  `json:"due,omitempty"`
	CustomerKey   string `json:"customer_key,omitempty"`
	// Refunds maps the external refund ids seen to the event that applied
	// them, so that a refund repeated under another event id refunds once.
	Refunds map[string]string `json:"refunds,omitempty"`
}

// customer is a customer as stored.
type customer struct {
	Rec        sink.CustomerRecord `json:"record"`
	CampaignID string              `json:"campaign_id,omitempty"`
	// LeadConversion is the conversion that used the customer's one lead.
	LeadConversion string `json:"lead_conversion,omitempty"`
	// FirstSubscription is when the customer's first attributed
	// subscription payment happened, Unix ms; recurring periods count
	// from it.
	FirstSubscription int64 `json:"first_subscription,omitempty"`
}

func appendPart(dst []byte, s string) []byte { return append(append(dst, s...), 0) }

func eventKey(merchantID, eventID string) []byte {
	return append(appendPart(nil, merchantID), eventID...)
}

func customerKeyOf(merchantID, key string) []byte {
	return append(appendPart(nil, merchantID), key...)
}

func ledgerPrefix(merchantID, account string) []byte {
	return appendPart(appendPart(nil, merchantID), account)
}

// convPrefix returns the index prefix of the given filter set.
func convPrefix(tag byte, merchant, campaign, partner, status string) []byte {
	p := appendPart([]byte{tag}, merchant)
	if tag&tagCampaign != 0 {
		p = appendPart(p, campaign)
	}
	if tag&tagPartner != 0 {
		p = appendPart(p, partner)
	}
	if tag&tagStatus != 0 {
		p = appendPart(p, status)
	}
	return p
}

// convTags returns the index tags a conversion is listed under: a
// conversion without campaign or partner only under the filters it can match.
func convTags(r *sink.ConversionRecord) []byte {
	tags := make([]byte, 0, 8)
	for tag := byte(0); tag < 8; tag++ {
		if tag&tagCampaign != 0 && r.CampaignID == "" || tag&tagPartner != 0 && r.PartnerID == "" {
			continue
		}
		tags = append(tags, tag)
	}
	return tags
}

func appendTS(dst []byte, ts int64) []byte {
	// A negative time sorts as 0 so that a bogus timestamp cannot pin a
	// conversion to the top of every page.
	return binary.BigEndian.AppendUint64(dst, uint64(max(ts, 0)))
}

// checkPart reports whether s can be a key part: at most MaxKeyPartLen bytes
// and no NUL (the key separator).
func checkPart(name, s string) error {
	if len(s) > MaxKeyPartLen {
		return fmt.Errorf("%s longer than %d bytes", name, MaxKeyPartLen)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s holds a NUL byte", name)
	}
	return nil
}

// hasNUL reports whether a part of a read holds the key separator: no
// stored key part does, and such a read could otherwise reach across
// merchants by key arithmetic.
func hasNUL(parts ...string) bool {
	for _, p := range parts {
		if strings.IndexByte(p, 0) >= 0 {
			return true
		}
	}
	return false
}

func getConversion(tx *bolt.Tx, id string) (*conversion, error) {
	v := tx.Bucket(bucketConversions).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	c := new(conversion)
	if err := json.Unmarshal(v, c); err != nil {
		return nil, fmt.Errorf("decode stored conversion %s: %w", id, err)
	}
	return c, nil
}

// findConversion returns the merchant's conversion whose worker id or unique
// id is ref, or nil. Another merchant's id is not found.
func findConversion(tx *bolt.Tx, merchantID, ref string) (*conversion, error) {
	if strings.HasPrefix(ref, ConversionIDPrefix) {
		c, err := getConversion(tx, ref)
		if err != nil || c != nil && c.Rec.MerchantID == merchantID {
			return c, err
		}
	}
	c, err := getConversion(tx, ConversionID(merchantID, ref))
	if err != nil || c == nil || c.Rec.MerchantID != merchantID || c.Rec.UniqueID != ref {
		return nil, err
	}
	return c, nil
}

func getCustomer(tx *bolt.Tx, merchantID, key string) (*customer, error) {
	v := tx.Bucket(bucketCustomers).Get(customerKeyOf(merchantID, key))
	if v == nil {
		return nil, nil
	}
	c := new(customer)
	if err := json.Unmarshal(v, c); err != nil {
		return nil, fmt.Errorf("decode stored customer %s/%s: %w", merchantID, key, err)
	}
	return c, nil
}

// customerRecord returns c's record with its balance summed from the ledger.
// getCustomerByRef returns the merchant's customer whose key, or else whose
// refer-a-friend code, is ref; nil when none.
func getCustomerByRef(tx *bolt.Tx, merchantID, ref string) (*customer, error) {
	c, err := getCustomer(tx, merchantID, ref)
	if c != nil || err != nil {
		return c, err
	}
	key := tx.Bucket(bucketReferrals).Get(customerKeyOf(merchantID, ref))
	if key == nil {
		return nil, nil
	}
	return getCustomer(tx, merchantID, string(key))
}

func customerRecord(tx *bolt.Tx, c *customer) (sink.CustomerRecord, error) {
	r := c.Rec
	r.Tags = append([]string(nil), r.Tags...)
	entries, err := ledgerEntries(tx, r.MerchantID, CustomerAccount(r.Key))
	if err != nil {
		return r, err
	}
	r.BalanceMinor = 0
	for _, e := range entries {
		r.BalanceMinor += e.AmountMinor
	}
	return r, nil
}

func ledgerEntries(tx *bolt.Tx, merchantID, account string) ([]LedgerEntry, error) {
	prefix := ledgerPrefix(merchantID, account)
	var out []LedgerEntry
	cur := tx.Bucket(bucketLedger).Cursor()
	for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
		if len(k) != len(prefix)+8 {
			continue // an account whose name extends this one's
		}
		var e LedgerEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("decode ledger entry %x: %w", k, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Conversion returns the merchant's conversion whose worker id (conv_…) or
// unique id is ref, and whether there is one. Another merchant's conversion
// is never found.
func (s *Store) Conversion(merchantID, ref string) (sink.ConversionRecord, bool, error) {
	if s.db == nil {
		return sink.ConversionRecord{}, false, ErrStoreClosed
	}
	if hasNUL(merchantID, ref) {
		return sink.ConversionRecord{}, false, nil
	}
	var c *conversion
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		c, err = findConversion(tx, merchantID, ref)
		return err
	})
	if err != nil {
		return sink.ConversionRecord{}, false, fmt.Errorf("read conversion %s of merchant %s: %w", ref, merchantID, err)
	}
	if c == nil {
		return sink.ConversionRecord{}, false, nil
	}
	return c.Rec, true, nil
}

// Customer returns the merchant's customer with that key, its balance summed
// from the ledger, and whether there is one.
func (s *Store) Customer(merchantID, key string) (sink.CustomerRecord, bool, error) {
	if s.db == nil {
		return sink.CustomerRecord{}, false, ErrStoreClosed
	}
	if hasNUL(merchantID, key) {
		return sink.CustomerRecord{}, false, nil
	}
	var (
		rec   sink.CustomerRecord
		found bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		c, err := getCustomer(tx, merchantID, key)
		if err != nil || c == nil {
			return err
		}
		found = true
		rec, err = customerRecord(tx, c)
		return err
	})
	if err != nil {
		return sink.CustomerRecord{}, false, fmt.Errorf("read customer %s of merchant %s: %w", key, merchantID, err)
	}
	return rec, found, nil
}

// EventResult returns the stored result of the merchant's event, and whether
// the event was processed. Another merchant's event is never found.
func (s *Store) EventResult(merchantID, eventID string) (sink.EventResult, bool, error) {
	if s.db == nil {
		return sink.EventResult{}, false, ErrStoreClosed
	}
	if hasNUL(merchantID, eventID) {
		return sink.EventResult{}, false, nil
	}
	var (
		r     sink.EventResult
		found bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEvents).Get(eventKey(merchantID, eventID))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &r)
	})
	if err != nil {
		return sink.EventResult{}, false, fmt.Errorf("read result of event %s: %w", eventID, err)
	}
	return r, found, nil
}

// Ledger returns the entries of one account of the merchant (a partner id,
// or CustomerAccount(key)) in booking order.
func (s *Store) Ledger(merchantID, account string) ([]LedgerEntry, error) {
	if s.db == nil {
		return nil, ErrStoreClosed
	}
	if hasNUL(merchantID, account) {
		return nil, nil
	}
	var out []LedgerEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = ledgerEntries(tx, merchantID, account)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read ledger %s of merchant %s: %w", account, merchantID, err)
	}
	return out, nil
}

// Balances sums the merchant's account (partner id or CustomerAccount(key))
// per currency, in the order the currencies first appear in the ledger. An
// account without entries has no balances.
func (s *Store) Balances(merchantID, account string) ([]Balance, error) {
	entries, err := s.Ledger(merchantID, account)
	if err != nil {
		return nil, err
	}
	var out []Balance
	for _, e := range entries {
		i := 0
		for i < len(out) && out[i].Currency != e.Currency {
			i++
		}
		if i == len(out) {
			out = append(out, Balance{Currency: e.Currency})
		}
		out[i].BalanceMinor += e.AmountMinor
		if e.Kind == LedgerPayout {
			out[i].PaidMinor -= e.AmountMinor
		}
	}
	return out, nil
}

// PartnerBalance returns the sum of the partner's ledger entries, what
// payouts moved out of it, and their currency (money.DefaultCurrency for a
// partner without entries). A partner with entries in several currencies
// gets ErrMixedCurrencies: use Balances.
func (s *Store) PartnerBalance(merchantID, partnerID string) (balanceMinor, paidMinor int64, currency string, err error) {
	bs, err := s.Balances(merchantID, partnerID)
	switch {
	case err != nil:
		return 0, 0, "", err
	case len(bs) == 0:
		return 0, 0, money.DefaultCurrency, nil
	case len(bs) > 1:
		return 0, 0, "", fmt.Errorf("balance of partner %s of merchant %s: %w", partnerID, merchantID, ErrMixedCurrencies)
	}
	return bs[0].BalanceMinor, bs[0].PaidMinor, bs[0].Currency, nil
}

// ListConversions returns one merchant's conversions newest first (by
// CreatedAt, then id), filtered by campaign, partner, status and the
// created-at range [FromMilli, ToMilli) when set. Limit is clamped to
// 1..MaxListLimit (0 means DefaultListLimit); Offset skips that many matches.
// Total counts every match: one counter read without a time range, a
// key-only scan of the range with one. A query without a merchant or with a
// negative limit or offset fails with ErrInvalidQuery.
func (s *Store) ListConversions(q sink.ConversionQuery) (sink.ConversionPage, error) {
	if s.db == nil {
		return sink.ConversionPage{}, ErrStoreClosed
	}
	if q.MerchantID == "" {
		return sink.ConversionPage{}, fmt.Errorf("%w: merchant_id is required", ErrInvalidQuery)
	}
	if q.Offset < 0 || q.Limit < 0 {
		return sink.ConversionPage{}, fmt.Errorf("%w: negative limit or offset", ErrInvalidQuery)
	}
	if hasNUL(q.MerchantID, q.CampaignID, q.PartnerID, q.Status) {
		return sink.ConversionPage{}, fmt.Errorf("%w: a filter holds a NUL byte", ErrInvalidQuery)
	}
	limit := q.Limit
	switch {
	case limit == 0:
		limit = DefaultListLimit
	case limit > MaxListLimit:
		limit = MaxListLimit
	}
	var tag byte
	if q.CampaignID != "" {
		tag |= tagCampaign
	}
	if q.PartnerID != "" {
		tag |= tagPartner
	}
	if q.Status != "" {
		tag |= tagStatus
	}
	prefix := convPrefix(tag, q.MerchantID, q.CampaignID, q.PartnerID, q.Status)
	ranged := q.FromMilli > 0 || q.ToMilli != 0
	lower := appendTS(bytes.Clone(prefix), q.FromMilli)
	var upper []byte // exclusive; nil means the end of the prefix
	if q.ToMilli != 0 {
		upper = appendTS(bytes.Clone(prefix), q.ToMilli)
	} else {
		upper = prefixEnd(prefix)
	}
	before := func(k []byte) bool { return upper == nil || bytes.Compare(k, upper) < 0 }
	page := sink.ConversionPage{Conversions: []sink.ConversionRecord{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		idx := tx.Bucket(bucketConvIndex)
		if !ranged {
			page.Total = int(readCount(tx.Bucket(bucketConvCounts).Get(prefix)))
		} else if q.ToMilli == 0 || q.ToMilli > q.FromMilli {
			cur := idx.Cursor()
			for k, _ := cur.Seek(lower); k != nil && bytes.HasPrefix(k, prefix) && before(k); k, _ = cur.Next() {
				page.Total++
			}
		}
		if q.Offset >= page.Total {
			return nil
		}
		cur := idx.Cursor()
		var k []byte
		if upper == nil {
			k, _ = cur.Last()
		} else if k, _ = cur.Seek(upper); k == nil {
			k, _ = cur.Last()
		} else {
			k, _ = cur.Prev()
		}
		skip := q.Offset
		for ; k != nil && bytes.HasPrefix(k, prefix) && bytes.Compare(k, lower) >= 0; k, _ = cur.Prev() {
			if skip > 0 {
				skip--
				continue
			}
			id := string(k[len(prefix)+8:])
			c, err := getConversion(tx, id)
			if err != nil {
				return err
			}
			if c == nil {
				return fmt.Errorf("index names missing conversion %s", id)
			}
			page.Conversions = append(page.Conversions, c.Rec)
			if len(page.Conversions) == limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return sink.ConversionPage{}, fmt.Errorf("list conversions of merchant %s: %w", q.MerchantID, err)
	}
	return page, nil
}
