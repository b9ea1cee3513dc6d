package attribution

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// engineCatalog is the catalog of the engine tests: merchant m1 with
// campaigns covering every rule, and merchant m2 to prove isolation.
func engineCatalog() *redirect.Catalog {
	dest := "https://shop.example/"
	return &redirect.Catalog{
		Version:   1,
		Merchants: []redirect.Merchant{{ID: "m1"}, {ID: "m2"}},
		Campaigns: []redirect.Campaign{
			{ID: "k_last", MerchantID: "m1", DefaultDestination: dest, WindowSeconds: 3600, Currency: "USD",
				MinClickToConversionSeconds: 60, RecurringMonths: 2,
				Commissions: []redirect.CommissionRule{
					{Type: "sale", PercentBPS: 1000},
					{Type: "lead", FlatMinor: 500},
					{ProductType: "premium", PercentBPS: 1500},
					{ProductID: "p1", PercentBPS: 2000, FlatMinor: 100},
					{Type: "sale", ProductID: "p1", PercentBPS: 2500},
					{PercentBPS: 50},
					{Type: "subscription", PercentBPS: 3000},
				}},
			{ID: "k_first", MerchantID: "m1", DefaultDestination: dest, WindowSeconds: 3600,
				Attribution: redirect.AttributionFirstClick, RecurringLifetime: true,
				Commissions: []redirect.CommissionRule{{Type: "sale", PercentBPS: 1000}, {Type: "subscription", PercentBPS: 3000}}},
			{ID: "k_hold", MerchantID: "m1", DefaultDestination: dest, HoldSeconds: 60,
				Commissions: []redirect.CommissionRule{{Type: "sale", PercentBPS: 1000}}},
			{ID: "k_eur", MerchantID: "m1", DefaultDestination: dest, Currency: "EUR",
				Commissions: []redirect.CommissionRule{{Type: "sale", PercentBPS: 1000}}},
			{ID: "k_once", MerchantID: "m1", DefaultDestination: dest,
				Commissions: []redirect.CommissionRule{{Type: "subscription", PercentBPS: 1000}}},
			{ID: "k2", MerchantID: "m2", DefaultDestination: dest,
				Commissions: []redirect.CommissionRule{{Type: "sale", PercentBPS: 1000}}},
		},
		Partners: []redirect.Partner{
			{ID: "alice", MerchantID: "m1", Key: "ALICE", Email: "alice@example.com", CouponCodes: []string{"ALICE10"}},
			{ID: "bob", MerchantID: "m1", Key: "BOB", CouponCodes: []string{"BOBBY"}},
			{ID: "carol", MerchantID: "m1", Key: "CAROL"},
			{ID: "zed", MerchantID: "m2", Key: "ZED", CouponCodes: []string{"ZED1"}},
		},
		Links: []redirect.Link{
			{Code: "alice", CampaignID: "k_last", PartnerID: "alice"},
			{Code: "bob", CampaignID: "k_last", PartnerID: "bob"},
			{Code: "carol", CampaignID: "k_first", PartnerID: "carol"},
			{Code: "zed", CampaignID: "k2", PartnerID: "zed"},
		},
	}
}

// base is the time of the engine tests' first click.
var base = time.Date(2025, 1, 31, 12, 0, 0, 0, time.UTC)

// fixture is a store with the engine catalog, applying events directly.
type fixture struct {
	t      testing.TB
	s      *Store
	idx    *redirect.Index
	minter *redirect.Minter
	n      int
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	c := engineCatalog()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, s: openStore(t), idx: redirect.NewIndex(c), minter: testMinter(t, testSecret)}
}

// clickSpec describes a click to store.
type clickSpec struct {
	merchant, campaign, partner string
	at                          time.Duration // after base
	bot, orphan, forged         bool
	prev                        string
}

// putClick stores a click as the worker would and returns its id.
func (f *fixture) putClick(c clickSpec) string {
	f.t.Helper()
	ts := base.Add(c.at)
	m := f.minter
	if c.forged {
		m = testMinter(f.t, otherSecret)
	}
	if c.merchant == "" {
		c.merchant = "m1"
	}
	cl := sink.Click{V: sink.ClickVersion, ID: m.New(ts), TS: ts.UnixMilli(), Source: sink.SourceRedirect,
		MerchantID: c.merchant, CampaignID: c.campaign, PartnerID: c.partner,
		Bot: c.bot, Orphan: c.orphan, Forged: c.forged, PrevClickID: c.prev}
	if _, err := f.s.PutClicks([]sink.Click{cl}); err != nil {
		f.t.Fatal(err)
	}
	return cl.ID
}

// apply applies events in one transaction and returns their results.
func (f *fixture) apply(evs ...sink.Event) []sink.EventResult {
	f.t.Helper()
	res, err := f.s.ApplyEvents(f.idx, f.minter, evs)
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}

func (f *fixture) apply1(ev sink.Event) sink.EventResult {
	f.t.Helper()
	return f.apply(ev)[0]
}

// nextID returns a fresh event key.
func (f *fixture) nextID() string {
	f.n++
	return fmt.Sprintf("e%04d", f.n)
}

// conv builds a conversion event of m1 at base+at.
func (f *fixture) conv(at time.Duration, c sink.ConversionEvent) sink.Event {
	if c.Type == "" {
		c.Type = "sale"
	}
	if c.UniqueID == "" {
		c.UniqueID = "order-" + f.nextID()
	}
	return sink.Event{V: sink.EventVersion, ID: sink.EventID("m1", sink.KindConversion, c.UniqueID), Kind: sink.KindConversion,
		TS: base.Add(at).UnixMilli(), Dialect: sink.DialectPartnac, MerchantID: "m1", Conversion: &c}
}

func (f *fixture) event(merchant string, at time.Duration, kind sink.EventKind, payload any) sink.Event {
	ev := sink.Event{V: sink.EventVersion, ID: sink.EventID(merchant, kind, f.nextID()), Kind: kind,
		TS: base.Add(at).UnixMilli(), Dialect: sink.DialectPartnac, MerchantID: merchant}
	switch p := payload.(type) {
	case *sink.RefundEvent:
		ev.Refund = p
	case *sink.UpdateEvent:
		ev.Update = p
	case *sink.StatusEvent:
		ev.Status = p
	case *sink.CustomerEvent:
		ev.Customer = p
		ev.Dialect = sink.DialectPartnero
	case *sink.CreditEvent:
		ev.Credit = p
		ev.Dialect = sink.DialectPartnero
	default:
		panic(fmt.Sprintf("payload %T", payload))
	}
	return ev
}

func (f *fixture) status(ref, status string) sink.Event {
	return f.event("m1", time.Hour, sink.KindStatus, &sink.StatusEvent{UniqueID: ref, Status: status})
}

func (f *fixture) refund(unique string, amount int64, full bool, ext string, reversePaid bool) sink.Event {
	return f.event("m1", time.Hour, sink.KindRefund, &sink.RefundEvent{UniqueID: unique, AmountMinor: amount, Full: full,
		ExternalRefundID: ext, ReversePaidEarnings: reversePaid})
}

// record reads a conversion of m1 by unique id, failing when there is none.
func (f *fixture) record(unique string) sink.ConversionRecord {
	f.t.Helper()
	r, ok, err := f.s.Conversion("m1", unique)
	if err != nil || !ok {
		f.t.Fatalf("conversion %s: found %v, %v", unique, ok, err)
	}
	return r
}

func (f *fixture) balance(partner string) (int64, int64) {
	f.t.Helper()
	b, paid, _, err := f.s.PartnerBalance("m1", partner)
	if err != nil {
		f.t.Fatal(err)
	}
	return b, paid
}

// ledgerKinds lists the kinds and amounts of the entries of one conversion.
func (f *fixture) ledgerOf(partner, convID string) []string {
	f.t.Helper()
	entries, err := f.s.Ledger("m1", partner)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.ConversionID == convID {
			out = append(out, fmt.Sprintf("%s %d", e.Kind, e.AmountMinor))
		}
	}
	return out
}

func errCode(r sink.EventResult) string {
	if r.Error == nil {
		return ""
	}
	return r.Error.Code
}

// checkInvariants verifies, inside one read transaction, what must hold
// after any sequence of events:
//   - every ledger entry is non-zero and filed under its own account;
//   - a conversion's commission is the sum of its non-payout entries and
//     never negative (no refund reverses more than was earned), its payouts
//     are what it says was paid, its refunds within its amount;
//   - a partner's balance (the sum of its entries) is the sum of its
//     conversions' commissions minus their payouts;
//   - a customer's balance is the sum of its credits, never negative;
//   - the listing totals count every conversion exactly once per filter.
func checkInvariants(tx *bolt.Tx) error {
	type acct struct{ merchant, account string }
	sums := map[acct]int64{}
	convSums := map[string]int64{}
	convPaid := map[string]int64{}
	err := tx.Bucket(bucketLedger).ForEach(func(k, v []byte) error {
		var e LedgerEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		if e.AmountMinor == 0 {
			return fmt.Errorf("zero ledger entry %+v", e)
		}
		if want := binaryKey(ledgerPrefix(e.MerchantID, e.Account), e.Seq); !bytes.Equal(k, want) {
			return fmt.Errorf("ledger entry %+v under key %x", e, k)
		}
		sums[acct{e.MerchantID, e.Account}] += e.AmountMinor
		if e.ConversionID != "" {
			if e.Kind == LedgerPayout {
				convPaid[e.ConversionID] -= e.AmountMinor
			} else {
				convSums[e.ConversionID] += e.AmountMinor
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	want := map[acct]int64{}
	counts := map[string]int{}
	err = tx.Bucket(bucketConversions).ForEach(func(k, v []byte) error {
		var c conversion
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		r := c.Rec
		switch {
		case r.CommissionMinor != convSums[r.ID]:
			return fmt.Errorf("conversion %s: commission %d, its entries sum to %d", r.ID, r.CommissionMinor, convSums[r.ID])
		case r.CommissionMinor < 0 || c.Reversed > c.Earned || c.Reversed < 0:
			return fmt.Errorf("conversion %s: reversed %d of %d earned", r.ID, c.Reversed, c.Earned)
		case c.Paid != convPaid[r.ID]:
			return fmt.Errorf("conversion %s: paid %d, payouts %d", r.ID, c.Paid, convPaid[r.ID])
		case r.RefundedMinor < 0 || r.RefundedMinor > r.AmountMinor:
			return fmt.Errorf("conversion %s: refunded %d of %d", r.ID, r.RefundedMinor, r.AmountMinor)
		case r.PartnerID == "" && (r.CommissionMinor != 0 || c.Earned != 0):
			return fmt.Errorf("unattributed conversion %s earned %d", r.ID, c.Earned)
		case r.Status == sink.StatusRejected && r.CommissionMinor != 0:
			return fmt.Errorf("rejected conversion %s keeps commission %d", r.ID, r.CommissionMinor)
		case !slices.Contains([]string{sink.StatusPending, sink.StatusApproved, sink.StatusRejected, sink.StatusPaid}, r.Status):
			return fmt.Errorf("conversion %s: status %q", r.ID, r.Status)
		}
		if r.PartnerID != "" {
			want[acct{r.MerchantID, r.PartnerID}] += r.CommissionMinor - c.Paid
		}
		for _, tag := range convTags(&r) {
			counts[string(convPrefix(tag, r.MerchantID, r.CampaignID, r.PartnerID, r.Status))]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = tx.Bucket(bucketCustomers).ForEach(func(k, v []byte) error {
		var c customer
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		if sums[acct{c.Rec.MerchantID, CustomerAccount(c.Rec.Key)}] < 0 {
			return fmt.Errorf("customer %s: negative balance", c.Rec.Key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for a, got := range sums {
		if len(a.account) > 9 && a.account[:9] == "customer:" {
			continue
		}
		if got != want[a] {
			return fmt.Errorf("partner %v: balance %d, conversions say %d", a, got, want[a])
		}
	}
	for a, w := range want {
		if w != 0 && sums[a] != w {
			return fmt.Errorf("partner %v: balance %d, conversions say %d", a, sums[a], w)
		}
	}
	// Every counter equals the number of conversions under its prefix (a
	// status change moves them; zero counters may remain).
	err = tx.Bucket(bucketConvCounts).ForEach(func(k, v []byte) error {
		if got, want := int(readCount(v)), counts[string(k)]; got != want {
			return fmt.Errorf("listing total %q = %d, want %d", k, got, want)
		}
		delete(counts, string(k))
		return nil
	})
	if err != nil {
		return err
	}
	for k, n := range counts {
		return fmt.Errorf("listing %q of %d conversions has no total", k, n)
	}
	n := 0
	if err := tx.Bucket(bucketConvIndex).ForEach(func(k, v []byte) error { n++; return nil }); err != nil {
		return err
	}
	total := 0
	if err := tx.Bucket(bucketConvCounts).ForEach(func(k, v []byte) error { total += int(readCount(v)); return nil }); err != nil {
		return err
	}
	if n != total {
		return fmt.Errorf("%d index keys, totals sum to %d", n, total)
	}
	return nil
}

func binaryKey(prefix []byte, seq uint64) []byte {
	return append(bytes.Clone(prefix), byte(seq>>56), byte(seq>>48), byte(seq>>40), byte(seq>>32),
		byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq))
}

func (f *fixture) checkInvariants() {
	f.t.Helper()
	if err := f.s.db.View(checkInvariants); err != nil {
		f.t.Fatal(err)
	}
}

// snapshot dumps every bucket the events write, for exact comparison of two
// stores.
func snapshot(t testing.TB, s *Store) map[string]map[string]string {
	t.Helper()
	var out map[string]map[string]string
	err := s.db.View(func(tx *bolt.Tx) error {
		out = dumpTx(tx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dumpTx copies every bucket the events write, ledger sequence included.
func dumpTx(tx *bolt.Tx) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, name := range [][]byte{bucketConversions, bucketConvIndex, bucketConvCounts, bucketEvents, bucketCustomers, bucketReferrals, bucketLedger, bucketHolds} {
		m := map[string]string{}
		b := tx.Bucket(name)
		_ = b.ForEach(func(k, v []byte) error { m[string(k)] = string(v); return nil })
		m["\x00sequence"] = fmt.Sprint(b.Sequence())
		out[string(name)] = m
	}
	return out
}
