package attribution

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clickedge/clickedge/money"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// MaxEventIDLen bounds an event id, in bytes: it is part of a store key.
const MaxEventIDLen = 1024

// maxClickChain bounds how far first-click attribution follows a click's
// PrevClickID.
const maxClickChain = 16

// Defaults of conversion events that leave a field empty.
const (
	// DefaultConversionType is the type of a conversion that names none
	// (Affilync's documented default).
	DefaultConversionType = "sale"
	// TypeLead earns once per customer.
	TypeLead = "lead"
	// TypeSubscription earns for the campaign's recurring period.
	TypeSubscription = "subscription"
)

// applied is what applying one event did, for the caller's metrics and
// waiters.
type applied struct {
	result sink.EventResult
	// outcome is the metrics outcome: result.Outcome, or "duplicate" for an
	// event id seen before (whose stored result is returned unchanged).
	outcome string
	kind    sink.EventKind
	dialect string
	// attributedBy is set for a newly recorded conversion.
	attributedBy string
	// ledger lists the entries booked (kind, amount, currency) for metrics.
	ledger []LedgerEntry
}

// ApplyEvents applies events in order in one transaction, the way the worker
// applies a consumed batch, and returns each event's result. idx is the
// catalog to attribute with (nil means an empty one) and minter verifies
// click ids (nil means no id verifies). It is idempotent per event id and per
// conversion: applying the same events again changes nothing. It fails, and
// stores nothing, only when the store does.
func (s *Store) ApplyEvents(idx *redirect.Index, minter *redirect.Minter, events []sink.Event) ([]sink.EventResult, error) {
	res, err := s.applyEvents(idx, minter, events)
	if err != nil {
		return nil, err
	}
	out := make([]sink.EventResult, len(res))
	for i := range res {
		out[i] = res[i].result
	}
	return out, nil
}

func (s *Store) applyEvents(idx *redirect.Index, minter *redirect.Minter, events []sink.Event) ([]applied, error) {
	if s.db == nil {
		return nil, ErrStoreClosed
	}
	if idx == nil {
		idx = redirect.NewIndex(nil)
	}
	out := make([]applied, 0, len(events))
	err := s.db.Update(func(tx *bolt.Tx) error {
		out = out[:0]
		a := &applier{tx: tx, idx: idx, minter: minter}
		for i := range events {
			r, err := a.apply(&events[i])
			if err != nil {
				return fmt.Errorf("apply event %s: %w", events[i].ID, err)
			}
			out = append(out, r)
		}
		return a.flush()
	})
	if err != nil {
		return nil, fmt.Errorf("apply %d events: %w", len(events), err)
	}
	return out, nil
}

// applier applies events inside one write transaction. Every apply first
// decides (reading only), then writes: a rejected or ignored event writes
// nothing but its result.
type applier struct {
	tx     *bolt.Tx
	idx    *redirect.Index
	minter *redirect.Minter
	// ev and out are the event being applied and what it did.
	ev  *sink.Event
	out *applied
	// counts are the listing totals' changes, written once per prefix by
	// flush: a batch of one merchant's conversions then rewrites a few
	// counters, not eight per conversion.
	counts map[string]int64
}

// flush writes the listing totals' changes; call it before the
// transaction commits (or anything reads the totals).
func (a *applier) flush() error {
	b := a.tx.Bucket(bucketConvCounts)
	// A total whose changes cancel out is written too: one event per
	// transaction would have written it, and a replay in other batches
	// must leave the same keys.
	for k, d := range a.counts {
		n := int64(readCount(b.Get([]byte(k)))) + d
		if n < 0 {
			return fmt.Errorf("listing total %x below zero", k)
		}
		if err := b.Put([]byte(k), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
			return fmt.Errorf("update listing total: %w", err)
		}
	}
	clear(a.counts)
	return nil
}

// rejection is a business refusal of an event: stored as its result, never a
// failure of the batch.
type rejection struct{ code, msg string }

func reject(code, format string, a ...any) *rejection {
	return &rejection{code, fmt.Sprintf(format, a...)}
}

func (a *applier) apply(ev *sink.Event) (applied, error) {
	out := applied{kind: ev.Kind, dialect: ev.Dialect}
	a.ev, a.out = ev, &out
	if err := checkPart("merchant", ev.MerchantID); err != nil || ev.MerchantID == "" || ev.ID == "" || len(ev.ID) > MaxEventIDLen || hasNUL(ev.ID) {
		// No key can hold it: answer without storing.
		out.result = sink.EventResult{EventID: ev.ID, Outcome: sink.OutcomeRejected,
			Error: &sink.APIError{Code: CodeInvalidEvent, Message: "event without a usable id or merchant"}}
		out.outcome = out.result.Outcome
		return out, nil
	}
	key := eventKey(ev.MerchantID, ev.ID)
	if v := a.tx.Bucket(bucketEvents).Get(key); v != nil {
		var prev sink.EventResult
		if err := json.Unmarshal(v, &prev); err != nil {
			return out, fmt.Errorf("decode stored result: %w", err)
		}
		// An event id seen before changes nothing, whatever its outcome
		// was: a rejected refund applied later, out of its stream position,
		// would make the store differ from a replay into an empty one.
		out.result, out.outcome = prev, sink.OutcomeDuplicate
		return out, nil
	}
	var (
		r   sink.EventResult
		rej *rejection
		err error
	)
	switch ev.Kind {
	case sink.KindConversion:
		r, rej, err = a.conversion(ev.Conversion)
	case sink.KindRefund:
		r, rej, err = a.refund(ev.Refund)
	case sink.KindUpdate:
		r, rej, err = a.update(ev.Update)
	case sink.KindStatus:
		r, rej, err = a.status(ev.Status)
	case sink.KindCustomer:
		r, rej, err = a.customerEvent(ev.Customer)
	case sink.KindCredit:
		r, rej, err = a.credit(ev.Credit)
	default:
		rej = reject(CodeInvalidEvent, "unknown event kind %q", ev.Kind)
	}
	if err != nil {
		return out, err
	}
	if rej != nil {
		r = sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: rej.code, Message: rej.msg}}
	}
	r.EventID = ev.ID
	data, err := json.Marshal(&r)
	if err != nil {
		return out, fmt.Errorf("encode result: %w", err)
	}
	if err := a.tx.Bucket(bucketEvents).Put(key, data); err != nil {
		return out, fmt.Errorf("store result: %w", err)
	}
	out.result, out.outcome = r, r.Outcome
	return out, nil
}

// payloadMissing guards the payload pointers: DecodeEvent checks them, but
// ApplyEvents may be handed events that never went through it.
var payloadMissing = reject(CodeInvalidEvent, "event without the payload of its kind")

// --- conversions --------------------------------------------------------

// attribution is the outcome of the precedence rules for one conversion.
type attribution struct {
	by       string
	partner  *redirect.Partner
	campaign *redirect.Campaign
	click    *sink.Click
	flags    []string
}

func (at *attribution) flag(f string) {
	if !slices.Contains(at.flags, f) {
		at.flags = append(at.flags, f)
	}
}

// customerKey is the customer identity of a conversion: the merchant's
// customer id, else the hash of the customer's email (Affilync's
// cross-device attribution), else none.
func customerKey(c *sink.ConversionEvent) string {
	if c.CustomerID != "" {
		return c.CustomerID
	}
	if c.CustomerEmailHash != "" {
		return "email:" + c.CustomerEmailHash
	}
	return ""
}

func (a *applier) conversion(c *sink.ConversionEvent) (sink.EventResult, *rejection, error) {
	if c == nil {
		return sink.EventResult{}, payloadMissing, nil
	}
	ev := a.ev
	m := ev.MerchantID
	switch {
	case c.UniqueID == "":
		return sink.EventResult{}, reject(CodeInvalidEvent, "conversion without a unique id"), nil
	case c.AmountMinor < 0 || c.AmountMinor > money.MaxMinor:
		return sink.EventResult{}, reject(CodeInvalidAmount, "amount %d minor units is outside 0..%d", c.AmountMinor, money.MaxMinor), nil
	}
	custKey := customerKey(c)
	for _, p := range [...]struct{ name, v string }{
		{"unique id", c.UniqueID}, {"customer", custKey}, {"click id", c.ClickID}, {"cookie click id", c.CookieClickID},
	} {
		if err := checkPart(p.name, p.v); err != nil {
			return sink.EventResult{}, reject(CodeInvalidEvent, "%v", err), nil
		}
	}
	id := ConversionID(m, c.UniqueID)
	prev, err := getConversion(a.tx, id)
	if err != nil {
		return sink.EventResult{}, nil, err
	}
	if prev != nil && !a.supersedes(prev, c) {
		// The merchant's unique id names one conversion: a repeat under
		// another event id returns the original and creates nothing.
		return sink.EventResult{Outcome: sink.OutcomeDuplicate, Conversion: &prev.Rec}, nil, nil
	}
	// prev, when still set, is a pending client-reported conversion that
	// this authenticated report replaces under the same id.
	cust, err := getCustomer(a.tx, m, custKey)
	if err != nil {
		return sink.EventResult{}, nil, err
	}
	custChanged := false
	if prev != nil && cust != nil && cust.LeadConversion == id {
		// The lead the replaced conversion used is this conversion's again.
		cust.LeadConversion, custChanged = "", true
	}
	newCustomer := false
	if ev.Dialect == sink.DialectPartnero && cust == nil {
		// Partnero ignores transactions of customers it does not know,
		// unless options.create_customer names a valid partner.
		if custKey == "" {
			return sink.EventResult{Outcome: sink.OutcomeIgnored}, nil, nil
		}
		p := a.resolvePartner(c.PartnerKey, c.PartnerEmail, c.PartnerID)
		if !c.CreateCustomer || p == nil {
			return sink.EventResult{Outcome: sink.OutcomeIgnored}, nil, nil
		}
		cust = a.newCustomerRecord(custKey)
		a.attachPartner(cust, p, "")
		newCustomer = true
	}
	at := a.attribute(c, cust)
	cur := c.Currency
	if cur == "" {
		cur = money.DefaultCurrency
		if at.campaign != nil && at.campaign.Currency != "" {
			cur = at.campaign.Currency
		}
	}
	currency, cerr := money.LookupAnyCurrency(cur)
	if cerr != nil {
		return sink.EventResult{}, reject(CodeInvalidCurrency, "currency %q: %v", cur, cerr), nil
	}
	typ := c.Type
	if typ == "" {
		typ = DefaultConversionType
	}
	rec := sink.ConversionRecord{
		ID: id, MerchantID: m, UniqueID: c.UniqueID, Type: typ, Dialect: ev.Dialect,
		AmountMinor: c.AmountMinor, Currency: currency.Code, Status: sink.StatusPending,
		CustomerID: c.CustomerID, CustomerEmailHash: c.CustomerEmailHash, CouponCode: c.CouponCode,
		ProductID: c.ProductID, ProductType: c.ProductType, AttributedBy: at.by,
		IP: c.IP, Country: c.Country, Region: c.Region, City: c.City,
		Metadata:  compactJSON(c.Metadata),
		CreatedAt: ev.TS, UpdatedAt: ev.TS,
	}
	switch {
	case at.click != nil:
		rec.ClickID = at.click.ID
	case c.ClickID != "":
		rec.ClickID = c.ClickID
	default:
		rec.ClickID = c.CookieClickID
	}
	if at.campaign != nil {
		rec.CampaignID = at.campaign.ID
	}
	if at.partner != nil {
		rec.PartnerID, rec.PartnerKey = at.partner.ID, at.partner.Key
	}
	conv := &conversion{CustomerKey: custKey}
	var commission int64
	if at.partner != nil {
		commission, conv.NoEarn = a.earning(&at, &rec, cust)
	}
	rec.Flags = at.flags
	if prev != nil {
		rec.Flags = append(rec.Flags, FlagSupersededClientReport)
	}

	// Decided: write.
	if prev != nil {
		if err := a.supersede(prev); err != nil {
			return sink.EventResult{}, nil, err
		}
	}
	if cust == nil && custKey != "" {
		cust = a.newCustomerRecord(custKey)
		newCustomer = true
	}
	if cust != nil {
		changed := newCustomer || custChanged
		if at.partner != nil && cust.Rec.PartnerID == "" {
			campaign := ""
			if at.campaign != nil {
				campaign = at.campaign.ID
			}
			a.attachPartner(cust, at.partner, campaign)
			changed = true
		}
		if at.partner != nil && typ == TypeLead && cust.LeadConversion == "" {
			cust.LeadConversion, changed = id, true
		}
		if at.partner != nil && typ == TypeSubscription && cust.FirstSubscription == 0 {
			cust.FirstSubscription, changed = ev.TS, true
		}
		if changed {
			if err := a.putCustomer(cust); err != nil {
				return sink.EventResult{}, nil, err
			}
		}
	}
	conv.Rec = rec
	if commission != 0 {
		if err := a.book(conv, LedgerCommission, commission, ""); err != nil {
			return sink.EventResult{}, nil, err
		}
		conv.Earned = commission
	}
	conv.Rec.CommissionMinor = conv.Earned - conv.Reversed
	if at.campaign != nil && at.campaign.HoldSeconds > 0 {
		conv.DueMilli = ev.TS + at.campaign.HoldSeconds*1000
		if err := a.tx.Bucket(bucketHolds).Put(holdKey(conv.DueMilli, id), []byte(m)); err != nil {
			return sink.EventResult{}, nil, fmt.Errorf("hold conversion %s: %w", id, err)
		}
	}
	if err := a.putConversion(conv); err != nil {
		return sink.EventResult{}, nil, err
	}
	if err := a.index(&conv.Rec, "", conv.Rec.Status); err != nil {
		return sink.EventResult{}, nil, err
	}
	a.out.attributedBy = at.by
	return sink.EventResult{Outcome: sink.OutcomeApplied, Conversion: &conv.Rec}, nil, nil
}

// supersedes reports whether the conversion event c, whose unique id names
// the stored conversion prev, replaces it: prev was reported by a browser
// pixel (public, forgeable) and is still pending, and c is the merchant's
// own, authenticated report. Anything else is a duplicate: a pixel never
// replaces anything, and nothing is replaced once approved, rejected or paid,
// nor once the merchant refunded any of it (a replacement would drop the
// refund and its external refund ids, so a retried refund would apply again).
func (a *applier) supersedes(prev *conversion, c *sink.ConversionEvent) bool {
	return !c.ClientReported && a.ev.Dialect != sink.DialectPixel &&
		prev.Rec.Status == sink.StatusPending && slices.Contains(prev.Rec.Flags, FlagClientReported) &&
		prev.Rec.RefundedMinor == 0 && !prev.FullyRefunded && len(prev.Refunds) == 0
}

// supersede retires the stored conversion old before a new one is written
// under its id: every ledger entry booked on it is reversed by a new entry
// (the ledger stays append-only), its hold is released and it leaves every
// listing and listing total.
func (a *applier) supersede(old *conversion) error {
	rec := &old.Rec
	if rec.PartnerID != "" {
		entries, err := ledgerEntries(a.tx, rec.MerchantID, rec.PartnerID)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.ConversionID != rec.ID {
				continue
			}
			if err := a.book(old, LedgerReversal, -e.AmountMinor, "superseded by the merchant's report"); err != nil {
				return err
			}
		}
	}
	if old.DueMilli != 0 {
		if err := a.tx.Bucket(bucketHolds).Delete(holdKey(old.DueMilli, rec.ID)); err != nil {
			return fmt.Errorf("release hold of %s: %w", rec.ID, err)
		}
	}
	return a.unindex(rec)
}

// attribute applies the precedence rules: a valid click id in the request >
// the click id from the cookie > a coupon code owned by a partner > the
// customer's earlier attribution > the partner key, email or id >
// unattributed. A step that fails (with a flag saying why, where there is
// one) falls through to the next. It only reads.
func (a *applier) attribute(c *sink.ConversionEvent, cust *customer) attribution {
	m, ts := a.ev.MerchantID, a.ev.TS
	var at attribution
	if c.ClientReported || a.ev.Dialect == sink.DialectPixel {
		at.flag(FlagClientReported)
	}
	custPartner, custCampaign := a.customerAttribution(cust)
	tryClick := func(id, by string) bool {
		click, campaign, partner := a.validClick(m, id, ts, &at)
		if click == nil {
			return false
		}
		if campaign.Attribution == redirect.AttributionFirstClick {
			// First click: the customer's earlier attribution is the first
			// touch and wins over this newer click; without one, the
			// earliest valid click in the visitor's cookie history wins.
			if custPartner != nil {
				at.by, at.partner, at.campaign = sink.ByCustomer, custPartner, custCampaign
				return true
			}
			click, campaign, partner = a.firstClick(m, ts, click, campaign, partner)
		}
		at.by, at.click, at.partner, at.campaign = by, click, partner, campaign
		if min := campaign.MinClickToConversionSeconds; min > 0 && ts-click.TS < min*1000 {
			at.flag(FlagSuspectFast)
		}
		return true
	}
	switch {
	case c.ClickID != "" && tryClick(c.ClickID, sink.ByClickID):
	case c.CookieClickID != "" && c.CookieClickID != c.ClickID && tryClick(c.CookieClickID, sink.ByCookie):
	case c.CouponCode != "" && a.couponPartner(c.CouponCode) != nil:
		at.by, at.partner = sink.ByCoupon, a.couponPartner(c.CouponCode)
	case custPartner != nil:
		at.by, at.partner, at.campaign = sink.ByCustomer, custPartner, custCampaign
	default:
		if p := a.resolvePartner(c.PartnerKey, c.PartnerEmail, c.PartnerID); p != nil {
			at.by, at.partner = sink.ByPartnerKey, p
		} else {
			if c.PartnerKey != "" || c.PartnerEmail != "" || c.PartnerID != "" {
				at.flag(FlagUnknownPartner)
			}
			at.by = sink.ByNone
		}
	}
	if at.click != nil && c.CouponCode != "" {
		if p := a.couponPartner(c.CouponCode); p != nil && p.ID != at.partner.ID {
			at.flag(FlagCouponConflict)
		}
	}
	if at.campaign == nil && c.CampaignID != "" {
		if k, ok := a.idx.Campaign(c.CampaignID); ok && k.MerchantID == m {
			at.campaign = k
		} else {
			at.flag(FlagUnknownCampaign)
		}
	}
	if at.campaign == nil {
		pid := ""
		if at.partner != nil {
			pid = at.partner.ID
		}
		if k, ok := a.idx.DefaultCampaign(m, pid); ok {
			at.campaign = k
		}
	}
	return at
}

// validClick returns the merchant's stored click with that id when it may
// attribute a conversion at ts, with its campaign and partner; otherwise nil,
// flagging why.
func (a *applier) validClick(m, id string, ts int64, at *attribution) (*sink.Click, *redirect.Campaign, *redirect.Partner) {
	if a.minter == nil {
		at.flag(FlagForgedClick)
		return nil, nil, nil
	}
	if _, err := a.minter.Verify(id); err != nil {
		at.flag(FlagForgedClick)
		return nil, nil, nil
	}
	click, err := a.click(id)
	if err != nil || click == nil || click.MerchantID != m {
		// Another merchant's click is as unknown as a missing one.
		at.flag(FlagUnknownClick)
		return nil, nil, nil
	}
	switch {
	case click.Forged:
		at.flag(FlagForgedClick)
		return nil, nil, nil
	case click.Orphan || click.PartnerID == "":
		at.flag(FlagOrphanClick)
		return nil, nil, nil
	case click.Bot:
		at.flag(FlagBotClick)
		return nil, nil, nil
	}
	p, ok := a.idx.Partner(click.PartnerID)
	if !ok || p.MerchantID != m {
		at.flag(FlagUnknownPartner)
		return nil, nil, nil
	}
	k, ok := a.idx.Campaign(click.CampaignID)
	if !ok || k.MerchantID != m {
		at.flag(FlagUnknownCampaign)
		return nil, nil, nil
	}
	// Exactly at the window's end is inside; a conversion reported before
	// its click (clock skew between edges) counts as inside.
	if ts-click.TS > k.Window().Milliseconds() {
		at.flag(FlagOutsideWindow)
		return nil, nil, nil
	}
	return click, k, p
}

// firstClick follows the visitor's earlier clicks (PrevClickID, the id the
// campaign cookie held when the click was made) and returns the earliest one
// that is itself valid for the conversion in the same campaign.
func (a *applier) firstClick(m string, ts int64, click *sink.Click, k *redirect.Campaign, p *redirect.Partner) (*sink.Click, *redirect.Campaign, *redirect.Partner) {
	seen := map[string]bool{click.ID: true}
	cur := click
	for range maxClickChain {
		prevID := cur.PrevClickID
		if prevID == "" || seen[prevID] {
			break
		}
		seen[prevID] = true
		var scratch attribution
		prev, pk, pp := a.validClick(m, prevID, ts, &scratch)
		if prev == nil || pk.ID != k.ID {
			break
		}
		click, p, cur = prev, pp, prev
	}
	return click, k, p
}

func (a *applier) click(id string) (*sink.Click, error) {
	v := a.tx.Bucket(bucketClicks).Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	c := new(sink.Click)
	if err := json.Unmarshal(v, c); err != nil {
		return nil, fmt.Errorf("decode stored click %s: %w", id, err)
	}
	return c, nil
}

func (a *applier) couponPartner(code string) *redirect.Partner {
	p, ok := a.idx.PartnerByCoupon(a.ev.MerchantID, code)
	if !ok {
		return nil
	}
	return p
}

// resolvePartner finds the merchant's partner by key (a Partnac partnership
// code may also be one of the partner's coupon codes), else by email, else
// by id.
func (a *applier) resolvePartner(key, email, id string) *redirect.Partner {
	m := a.ev.MerchantID
	if key != "" {
		if p, ok := a.idx.PartnerByKey(m, key); ok {
			return p
		}
		if p, ok := a.idx.PartnerByCoupon(m, key); ok {
			return p
		}
	}
	if email != "" {
		if p, ok := a.idx.PartnerByEmail(m, email); ok {
			return p
		}
	}
	if id != "" {
		if p, ok := a.idx.Partner(id); ok && p.MerchantID == m {
			return p
		}
	}
	return nil
}

// customerAttribution returns the partner (and campaign, when still the
// merchant's) a customer was attributed to, if that partner still exists.
func (a *applier) customerAttribution(cust *customer) (*redirect.Partner, *redirect.Campaign) {
	if cust == nil || cust.Rec.PartnerID == "" {
		return nil, nil
	}
	m := a.ev.MerchantID
	p, ok := a.idx.Partner(cust.Rec.PartnerID)
	if !ok || p.MerchantID != m {
		return nil, nil
	}
	if k, ok := a.idx.Campaign(cust.CampaignID); ok && k.MerchantID == m {
		return p, k
	}
	return p, nil
}

// earning returns the commission of a newly attributed conversion and
// whether it is barred from earning at all (then the commission is 0).
func (a *applier) earning(at *attribution, rec *sink.ConversionRecord, cust *customer) (int64, bool) {
	k := at.campaign
	if k == nil {
		return 0, false
	}
	if cur := campaignCurrency(k); cur != rec.Currency {
		at.flag(FlagCurrencyMismatch)
		return 0, true
	}
	if rec.Type == TypeLead && cust != nil && cust.LeadConversion != "" {
		at.flag(FlagRepeatLead)
		return 0, true
	}
	if rec.Type == TypeSubscription && cust != nil && cust.FirstSubscription != 0 && !recurringEarns(k, cust.FirstSubscription, a.ev.TS) {
		at.flag(FlagRecurringExpired)
		return 0, true
	}
	return commissionFor(k, rec, rec.AmountMinor), false
}

func campaignCurrency(k *redirect.Campaign) string {
	if k.Currency == "" {
		return money.DefaultCurrency
	}
	return strings.ToUpper(k.Currency)
}

// recurringEarns reports whether a subscription payment at ts of a customer
// whose first attributed subscription was at first still earns: for the
// customer's lifetime, or up to and including the same instant
// RecurringMonths calendar months (UTC) later; with neither, only the
// first payment earns.
func recurringEarns(k *redirect.Campaign, first, ts int64) bool {
	switch {
	case k.RecurringLifetime:
		return true
	case k.RecurringMonths > 0:
		return ts <= time.UnixMilli(first).UTC().AddDate(0, k.RecurringMonths, 0).UnixMilli()
	}
	return false
}

// bestRule returns the campaign's most specific commission rule matching the
// conversion: a rule matches when each of its non-empty fields equals the
// conversion's; a product id match outranks a product type match, which
// outranks a type match, which outranks the catch-all. Ties go to the first
// rule in catalog order.
func bestRule(k *redirect.Campaign, typ, productID, productType string) (redirect.CommissionRule, bool) {
	best, bestScore := -1, -1
	for i, r := range k.Commissions {
		if r.Type != "" && r.Type != typ || r.ProductID != "" && r.ProductID != productID ||
			r.ProductType != "" && r.ProductType != productType {
			continue
		}
		score := 0
		if r.ProductID != "" {
			score += 4
		}
		if r.ProductType != "" {
			score += 2
		}
		if r.Type != "" {
			score++
		}
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	if best < 0 {
		return redirect.CommissionRule{}, false
	}
	return k.Commissions[best], true
}

// commissionFor is what the campaign's best rule pays on amount: its
// percentage, rounded once half away from zero (money.Percent), plus its
// flat amount. No matching rule pays nothing.
func commissionFor(k *redirect.Campaign, rec *sink.ConversionRecord, amount int64) int64 {
	r, ok := bestRule(k, rec.Type, rec.ProductID, rec.ProductType)
	if !ok {
		return 0
	}
	return money.Percent(amount, r.PercentBPS) + r.FlatMinor
}

// --- refunds, updates, status -------------------------------------------

func (a *applier) findConversion(ref string) (*conversion, *rejection, error) {
	if ref == "" {
		return nil, reject(CodeInvalidEvent, "no conversion named"), nil
	}
	c, err := findConversion(a.tx, a.ev.MerchantID, ref)
	if err != nil {
		return nil, nil, err
	}
	if c == nil {
		return nil, reject(CodeConversionNotFound, "the merchant has no conversion %q", ref), nil
	}
	return c, nil, nil
}

func (a *applier) refund(r *sink.RefundEvent) (sink.EventResult, *rejection, error) {
	if r == nil {
		return sink.EventResult{}, payloadMissing, nil
	}
	conv, rej, err := a.findConversion(r.UniqueID)
	if rej != nil || err != nil {
		return sink.EventResult{}, rej, err
	}
	if r.ExternalRefundID != "" && conv.Refunds[r.ExternalRefundID] != "" {
		return sink.EventResult{Outcome: sink.OutcomeDuplicate, Conversion: &conv.Rec}, nil, nil
	}
	rec := &conv.Rec
	left := rec.AmountMinor - rec.RefundedMinor
	amount := r.AmountMinor
	switch {
	case r.Full && conv.FullyRefunded:
		return sink.EventResult{}, reject(CodeAlreadyRefunded, "conversion %s is already fully refunded", rec.UniqueID), nil
	case r.Full:
		amount = left
	case amount <= 0:
		return sink.EventResult{}, reject(CodeInvalidAmount, "a partial refund needs a positive amount"), nil
	case amount > left:
		return sink.EventResult{}, reject(CodeRefundExceedsAmount, "refund of %d is more than the %d left of the amount", amount, left), nil
	}
	refunded := rec.RefundedMinor + amount
	full := r.Full || refunded == rec.AmountMinor
	// The reversal is the cumulative refunded share of the earned
	// commission minus what was already taken back, rounded once on the
	// cumulative share so that partial refunds add up to exactly one full
	// refund and never exceed what is left.
	target := conv.Earned
	if !full {
		target, err = money.MulDiv(conv.Earned, refunded, rec.AmountMinor)
		if err != nil {
			return sink.EventResult{}, nil, fmt.Errorf("refund share of conversion %s: %w", rec.ID, err)
		}
	}
	delta := min(max(target-conv.Reversed-conv.Forgiven, 0), conv.Earned-conv.Reversed)
	if delta > 0 && rec.PartnerID != "" {
		switch {
		case rec.Status != sink.StatusPaid:
			err = a.book(conv, LedgerReversal, -delta, r.Reason)
			conv.Reversed += delta
		case r.ReversePaidEarnings:
			err = a.book(conv, LedgerClawback, -delta, r.Reason)
			conv.Reversed += delta
		default:
			conv.Forgiven += delta
		}
		if err != nil {
			return sink.EventResult{}, nil, err
		}
	}
	rec.RefundedMinor, conv.FullyRefunded = refunded, full
	if r.ExternalRefundID != "" {
		if conv.Refunds == nil {
			conv.Refunds = map[string]string{}
		}
		conv.Refunds[r.ExternalRefundID] = a.ev.ID
	}
	return a.saveChanged(conv)
}

func (a *applier) update(u *sink.UpdateEvent) (sink.EventResult, *rejection, error) {
	if u == nil {
		return sink.EventResult{}, payloadMissing, nil
	}
	conv, rej, err := a.findConversion(u.UniqueID)
	if rej != nil || err != nil {
		return sink.EventResult{}, rej, err
	}
	rec := &conv.Rec
	amount := rec.AmountMinor
	if u.AmountMinor != nil {
		amount = *u.AmountMinor
		switch {
		case amount < 0 || amount > money.MaxMinor:
			return sink.EventResult{}, reject(CodeInvalidAmount, "amount %d minor units is outside 0..%d", amount, money.MaxMinor), nil
		case amount < rec.RefundedMinor:
			return sink.EventResult{}, reject(CodeAmountBelowRefunded, "amount %d is below the %d already refunded", amount, rec.RefundedMinor), nil
		}
	}
	meta := rec.Metadata
	if len(u.Metadata) > 0 && !bytes.Equal(bytes.TrimSpace(u.Metadata), []byte("null")) {
		meta, err = mergeMetadata(rec.Metadata, u.Metadata)
		if err != nil {
			return sink.EventResult{}, reject(CodeInvalidMetadata, "%v", err), nil
		}
	}
	rec.AmountMinor, rec.Metadata = amount, meta
	conv.FullyRefunded = conv.FullyRefunded && amount <= rec.RefundedMinor
	if u.Recalculate && rec.PartnerID != "" && rec.Status != sink.StatusRejected && !conv.NoEarn {
		var earned int64
		if k, ok := a.idx.Campaign(rec.CampaignID); ok && k.MerchantID == rec.MerchantID && campaignCurrency(k) == rec.Currency {
			earned = commissionFor(k, rec, amount)
		}
		// What refunds would have taken back of the new commission,
		// minus what was forgiven after payment.
		target := earned
		if !conv.FullyRefunded {
			target = 0
			if amount > 0 {
				if target, err = money.MulDiv(earned, rec.RefundedMinor, amount); err != nil {
					return sink.EventResult{}, nil, fmt.Errorf("recalculate conversion %s: %w", rec.ID, err)
				}
			}
		}
		reversed := min(max(target-conv.Forgiven, 0), earned)
		if delta := (earned - reversed) - (conv.Earned - conv.Reversed); delta != 0 {
			if err := a.book(conv, LedgerAdjustment, delta, "recalculated"); err != nil {
				return sink.EventResult{}, nil, err
			}
		}
		conv.Earned, conv.Reversed = earned, reversed
	}
	return a.saveChanged(conv)
}

func (a *applier) status(st *sink.StatusEvent) (sink.EventResult, *rejection, error) {
	if st == nil {
		return sink.EventResult{}, payloadMissing, nil
	}
	ref := st.ConversionID
	if ref == "" {
		ref = st.UniqueID
	}
	conv, rej, err := a.findConversion(ref)
	if rej != nil || err != nil {
		return sink.EventResult{}, rej, err
	}
	rec := &conv.Rec
	from := rec.Status
	switch st.Status {
	case sink.StatusApproved, sink.StatusRejected, sink.StatusPaid:
	default:
		return sink.EventResult{}, reject(CodeInvalidStatus, "status %q: want approved, rejected or paid", st.Status), nil
	}
	if st.Status == from {
		// Already there (an automatic approval after a manual one, say).
		return sink.EventResult{Outcome: sink.OutcomeIgnored, Conversion: &conv.Rec}, nil, nil
	}
	ok := from == sink.StatusPending && (st.Status == sink.StatusApproved || st.Status == sink.StatusRejected) ||
		from == sink.StatusApproved && st.Status == sink.StatusPaid
	if !ok {
		return sink.EventResult{}, reject(CodeInvalidTransition, "a %s conversion cannot become %s", from, st.Status), nil
	}
	net := conv.Earned - conv.Reversed
	switch st.Status {
	case sink.StatusRejected:
		if net > 0 && rec.PartnerID != "" {
			if err := a.book(conv, LedgerReversal, -net, "rejected"); err != nil {
				return sink.EventResult{}, nil, err
			}
		}
		conv.Reversed = conv.Earned
	case sink.StatusPaid:
		if net > 0 && rec.PartnerID != "" {
			if err := a.book(conv, LedgerPayout, -net, "paid"); err != nil {
				return sink.EventResult{}, nil, err
			}
			conv.Paid += net
		}
	}
	if conv.DueMilli != 0 {
		if err := a.tx.Bucket(bucketHolds).Delete(holdKey(conv.DueMilli, rec.ID)); err != nil {
			return sink.EventResult{}, nil, fmt.Errorf("release hold of %s: %w", rec.ID, err)
		}
		conv.DueMilli = 0
	}
	rec.Status = st.Status
	if st.Note != "" {
		rec.Note = st.Note
	}
	if err := a.index(rec, from, st.Status); err != nil {
		return sink.EventResult{}, nil, err
	}
	return a.saveChanged(conv)
}

// saveChanged stamps, stores and answers a changed conversion.
func (a *applier) saveChanged(conv *conversion) (sink.EventResult, *rejection, error) {
	conv.Rec.UpdatedAt = a.ev.TS
	conv.Rec.CommissionMinor = conv.Earned - conv.Reversed
	if err := a.putConversion(conv); err != nil {
		return sink.EventResult{}, nil, err
	}
	return sink.EventResult{Outcome: sink.OutcomeApplied, Conversion: &conv.Rec}, nil, nil
}

// --- customers and credits ----------------------------------------------

func (a *applier) newCustomerRecord(key string) *customer {
	m := a.ev.MerchantID
	return &customer{Rec: sink.CustomerRecord{
		MerchantID: m, Key: key, ReferralCode: ReferralCode(m, key), CreatedAt: a.ev.TS,
	}}
}

// attachPartner attributes the customer to p for good (lifetime
// attribution: the first partner stays).
func (a *applier) attachPartner(c *customer, p *redirect.Partner, campaign string) {
	if campaign == "" {
		if k, ok := a.idx.DefaultCampaign(a.ev.MerchantID, p.ID); ok {
			campaign = k.ID
		}
	}
	c.Rec.PartnerID, c.Rec.FirstAttrTS, c.CampaignID = p.ID, a.ev.TS, campaign
}

func (a *applier) customerEvent(cu *sink.CustomerEvent) (sink.EventResult, *rejection, error) {
	if cu == nil {
		return sink.EventResult{}, payloadMissing, nil
	}
	if cu.Key == "" {
		return sink.EventResult{}, reject(CodeInvalidEvent, "customer without a key"), nil
	}
	for _, p := range [...]struct{ name, v string }{{"customer key", cu.Key}, {"referring customer key", cu.ReferringCustomerKey}} {
		if err := checkPart(p.name, p.v); err != nil {
			return sink.EventResult{}, reject(CodeInvalidEvent, "%v", err), nil
		}
	}
	m := a.ev.MerchantID
	c, err := getCustomer(a.tx, m, cu.Key)
	if err != nil {
		return sink.EventResult{}, nil, err
	}
	p := a.resolvePartner(cu.PartnerKey, cu.PartnerEmail, cu.PartnerID)
	var referrer *customer
	if cu.ReferringCustomerKey != "" && cu.ReferringCustomerKey != cu.Key {
		if referrer, err = getCustomerByRef(a.tx, m, cu.ReferringCustomerKey); err != nil {
			return sink.EventResult{}, nil, err
		}
	}
	if c == nil {
		// Partnero records only customers with a valid referral: an
		// invalid partner key or referrer is accepted and ignored.
		if p == nil && referrer == nil {
			return sink.EventResult{Outcome: sink.OutcomeIgnored}, nil, nil
		}
		c = a.newCustomerRecord(cu.Key)
	}
	if p != nil && c.Rec.PartnerID == "" && c.Rec.ReferredByKey == "" {
		a.attachPartner(c, p, "")
	} else if referrer != nil && referrer.Rec.Key != c.Rec.Key && c.Rec.PartnerID == "" && c.Rec.ReferredByKey == "" {
		c.Rec.ReferredByKey = referrer.Rec.Key
	}
	if cu.Email != "" {
		c.Rec.Email = cu.Email
	}
	if cu.Name != "" {
		c.Rec.Name = cu.Name
	}
	if cu.Surname != "" {
		c.Rec.Surname = cu.Surname
	}
	if cu.Tags != nil {
		c.Rec.Tags = append([]string(nil), cu.Tags...)
	}
	if err := a.putCustomer(c); err != nil {
		return sink.EventResult{}, nil, err
	}
	rec, err := customerRecord(a.tx, c)
	if err != nil {
		return sink.EventResult{}, nil, err
	}
	return sink.EventResult{Outcome: sink.OutcomeApplied, Customer: &rec}, nil, nil
}

func (a *applier) credit(cr *sink.CreditEvent) (sink.EventResult, *rejection, error) {
	if cr == nil {
		return sink.EventResult{}, payloadMissing, nil
	}
	if err := checkPart("customer key", cr.CustomerKey); err != nil || cr.CustomerKey == "" {
		return sink.EventResult{}, reject(CodeInvalidEvent, "credit without a usable customer key"), nil
	}
	c, err := getCustomer(a.tx, a.ev.MerchantID, cr.CustomerKey)
	if err != nil {
		return sink.EventResult{}, nil, err
	}
	if c == nil {
		return sink.EventResult{}, reject(CodeCustomerNotFound, "the merchant has no customer %q", cr.CustomerKey), nil
	}
	if cr.AmountMinor <= 0 || cr.AmountMinor > money.MaxMinor {
		return sink.EventResult{}, reject(CodeInvalidAmount, "a credit needs an amount in 1..%d minor units", money.MaxMinor), nil
	}
	code := cr.Currency
	if code == "" {
		code = c.Rec.Currency
	}
	if code == "" {
		code = money.DefaultCurrency
	}
	cur, cerr := money.LookupAnyCurrency(code)
	if cerr != nil {
		return sink.EventResult{}, reject(CodeInvalidCurrency, "currency %q: %v", code, cerr), nil
	}
	if c.Rec.Currency != "" && c.Rec.Currency != cur.Code {
		return sink.EventResult{}, reject(CodeCurrencyMismatch, "the customer's balance is in %s, not %s", c.Rec.Currency, cur.Code), nil
	}
	c.Rec.Currency = cur.Code
	if err := a.bookEntry(LedgerEntry{
		Account: CustomerAccount(c.Rec.Key), Kind: LedgerCredit, AmountMinor: cr.AmountMinor,
		Currency: cur.Code, Note: cr.Note,
	}); err != nil {
		return sink.EventResult{}, nil, err
	}
	if err := a.putCustomer(c); err != nil {
		return sink.EventResult{}, nil, err
	}
	rec, err := customerRecord(a.tx, c)
	if err != nil {
		return sink.EventResult{}, nil, err
	}
	return sink.EventResult{Outcome: sink.OutcomeApplied, Customer: &rec}, nil, nil
}

// --- writes -------------------------------------------------------------

// book appends an entry on the conversion's partner account.
func (a *applier) book(conv *conversion, kind string, amount int64, note string) error {
	return a.bookEntry(LedgerEntry{
		Account: conv.Rec.PartnerID, Kind: kind, AmountMinor: amount, Currency: conv.Rec.Currency,
		ConversionID: conv.Rec.ID, Note: note,
	})
}

// bookEntry appends e with the next ledger sequence, the event's id and
// time. Zero amounts are never booked.
func (a *applier) bookEntry(e LedgerEntry) error {
	if e.AmountMinor == 0 {
		return nil
	}
	b := a.tx.Bucket(bucketLedger)
	seq, err := b.NextSequence()
	if err != nil {
		return fmt.Errorf("ledger sequence: %w", err)
	}
	e.Seq, e.MerchantID, e.EventID, e.TS = seq, a.ev.MerchantID, a.ev.ID, a.ev.TS
	data, err := json.Marshal(&e)
	if err != nil {
		return fmt.Errorf("encode ledger entry: %w", err)
	}
	key := binary.BigEndian.AppendUint64(ledgerPrefix(e.MerchantID, e.Account), seq)
	if err := b.Put(key, data); err != nil {
		return fmt.Errorf("book %s of %d on %s: %w", e.Kind, e.AmountMinor, e.Account, err)
	}
	a.out.ledger = append(a.out.ledger, LedgerEntry{Kind: e.Kind, AmountMinor: e.AmountMinor, Currency: e.Currency})
	return nil
}

func (a *applier) putConversion(conv *conversion) error {
	data, err := json.Marshal(conv)
	if err != nil {
		return fmt.Errorf("encode conversion %s: %w", conv.Rec.ID, err)
	}
	if err := a.tx.Bucket(bucketConversions).Put([]byte(conv.Rec.ID), data); err != nil {
		return fmt.Errorf("store conversion %s: %w", conv.Rec.ID, err)
	}
	return nil
}

func (a *applier) putCustomer(c *customer) error {
	stored := *c
	stored.Rec.BalanceMinor = 0 // computed from the ledger on every read
	data, err := json.Marshal(&stored)
	if err != nil {
		return fmt.Errorf("encode customer %s: %w", c.Rec.Key, err)
	}
	if err := a.tx.Bucket(bucketCustomers).Put(customerKeyOf(c.Rec.MerchantID, c.Rec.Key), data); err != nil {
		return fmt.Errorf("store customer %s: %w", c.Rec.Key, err)
	}
	if c.Rec.ReferralCode != "" {
		if err := a.tx.Bucket(bucketReferrals).Put(customerKeyOf(c.Rec.MerchantID, c.Rec.ReferralCode), []byte(c.Rec.Key)); err != nil {
			return fmt.Errorf("index referral code of customer %s: %w", c.Rec.Key, err)
		}
	}
	return nil
}

// index lists rec under every filter it matches with status to, removing it
// from those with status from ("" for a new conversion), and counts the
// changes of the listing totals for flush.
func (a *applier) index(rec *sink.ConversionRecord, from, to string) error {
	idx := a.tx.Bucket(bucketConvIndex)
	if a.counts == nil {
		a.counts = map[string]int64{}
	}
	for _, tag := range convTags(rec) {
		if from != "" && tag&tagStatus == 0 {
			continue // a status change leaves the status-free listings alone
		}
		if from != "" {
			prefix := convPrefix(tag, rec.MerchantID, rec.CampaignID, rec.PartnerID, from)
			if err := idx.Delete(append(appendTS(bytes.Clone(prefix), rec.CreatedAt), rec.ID...)); err != nil {
				return fmt.Errorf("unindex conversion %s: %w", rec.ID, err)
			}
			a.counts[string(prefix)]--
		}
		prefix := convPrefix(tag, rec.MerchantID, rec.CampaignID, rec.PartnerID, to)
		if err := idx.Put(append(appendTS(bytes.Clone(prefix), rec.CreatedAt), rec.ID...), nil); err != nil {
			return fmt.Errorf("index conversion %s: %w", rec.ID, err)
		}
		a.counts[string(prefix)]++
	}
	return nil
}

// unindex removes rec from every listing it is under and counts the
// changes of the listing totals for flush.
func (a *applier) unindex(rec *sink.ConversionRecord) error {
	idx := a.tx.Bucket(bucketConvIndex)
	if a.counts == nil {
		a.counts = map[string]int64{}
	}
	for _, tag := range convTags(rec) {
		prefix := convPrefix(tag, rec.MerchantID, rec.CampaignID, rec.PartnerID, rec.Status)
		if err := idx.Delete(append(appendTS(bytes.Clone(prefix), rec.CreatedAt), rec.ID...)); err != nil {
			return fmt.Errorf("unindex conversion %s: %w", rec.ID, err)
		}
		a.counts[string(prefix)]--
	}
	return nil
}

func holdKey(due int64, id string) []byte {
	return append(appendTS(nil, due), id...)
}

// compactJSON returns raw compacted, or nil for nothing or null.
func compactJSON(raw json.RawMessage) json.RawMessage {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, t); err != nil {
		return nil
	}
	return b.Bytes()
}

var errNotObject = errors.New("metadata must be a JSON object")

// mergeMetadata merges the keys of patch into base (both JSON objects; an
// empty base is an empty object), patch's values winning, and returns the
// compact result with keys sorted.
func mergeMetadata(base, patch json.RawMessage) (json.RawMessage, error) {
	var p map[string]json.RawMessage
	if err := json.Unmarshal(patch, &p); err != nil || p == nil {
		return nil, errNotObject
	}
	merged := map[string]json.RawMessage{}
	if len(base) > 0 {
		if err := json.Unmarshal(base, &merged); err != nil || merged == nil {
			// A stored value that is not an object is replaced.
			merged = map[string]json.RawMessage{}
		}
	}
	for k, v := range p {
		merged[k] = v
	}
	out, err := json.Marshal(merged)
	if err != nil {
		return nil, fmt.Errorf("encode merged metadata: %w", err)
	}
	return out, nil
}
