package attribution

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clickedge/clickedge/money"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

func TestConversionID(t *testing.T) {
	a := ConversionID("m1", "order-1")
	if !strings.HasPrefix(a, "conv_") || len(a) != len("conv_")+24 || strings.ToLower(a) != a {
		t.Errorf("ConversionID = %q, want conv_ and 24 lowercase base32 characters", a)
	}
	for _, other := range []string{ConversionID("m1", "order-2"), ConversionID("m2", "order-1"), ConversionID("m1\x00o", "rder-1")} {
		if other == a {
			t.Errorf("ConversionID collides: %q", other)
		}
	}
	if ConversionID("m1", "order-1") != a {
		t.Error("ConversionID is not deterministic")
	}
	r := ReferralCode("m1", "cus_1")
	if len(r) != 12 || r != ReferralCode("m1", "cus_1") || r == ReferralCode("m2", "cus_1") {
		t.Errorf("ReferralCode = %q: want 12 deterministic characters, distinct per merchant", r)
	}
	// The edge mints the customer's referral link from the code.
	link := &redirect.Catalog{Merchants: []redirect.Merchant{{ID: "m"}},
		Campaigns: []redirect.Campaign{{ID: "k", MerchantID: "m", DefaultDestination: "https://e.com/"}},
		Partners:  []redirect.Partner{{ID: "p", MerchantID: "m", Key: "P"}},
		Links:     []redirect.Link{{Code: r, CampaignID: "k", PartnerID: "p"}}}
	if err := link.Validate(); err != nil {
		t.Errorf("referral code %q is not a valid link code: %v", r, err)
	}
}

// TestAttributionMatrix covers every precedence step and the reasons a step
// falls through. Campaign k_last has a 1 h window and a 60 s minimum
// click-to-conversion time; k_first attributes to the first click.
func TestAttributionMatrix(t *testing.T) {
	const window = time.Hour
	type want struct {
		by, partner, campaign string
		flags                 []string
		click                 string // "" none, "req", "cookie", or a clickSpec name
	}
	tests := []struct {
		name    string
		clicks  map[string]clickSpec
		setup   func(f *fixture)
		at      time.Duration
		dialect string
		conv    sink.ConversionEvent // ClickID/CookieClickID name clicks of the map, or are literal
		want    want
	}{
		{name: "valid click id",
			clicks: map[string]clickSpec{"a": {campaign: "k_last", partner: "alice"}},
			at:     10 * time.Minute, conv: sink.ConversionEvent{ClickID: "a"},
			want: want{by: sink.ByClickID, partner: "alice", campaign: "k_last", click: "a"}},
		{name: "exactly at the window end is inside",
			clicks: map[string]clickSpec{"a": {campaign: "k_last", partner: "alice"}},
			at:     window, conv: sink.ConversionEvent{ClickID: "a", PartnerKey: "BOB"},
			want: want{by: sink.ByClickID, partner: "alice", campaign: "k_last", click: "a"}},
		{name: "one ms after the window is outside and falls through",
			clicks: map[string]clickSpec{"a": {campaign: "k_last", partner: "alice"}},
			at:     window + time.Millisecond, conv: sink.ConversionEvent{ClickID: "a", PartnerKey: "BOB"},
			want: want{by: sink.ByPartnerKey, partner: "bob", campaign: "k_last", flags: []string{FlagOutsideWindow}, click: "a"}},
		{name: "forged click id never attributes",
			clicks: map[string]clickSpec{"f": {campaign: "k_last", partner: "alice", forged: true}},
			at:     time.Minute * 5, conv: sink.ConversionEvent{ClickID: "f"},
			want: want{by: sink.ByNone, flags: []string{FlagForgedClick}, campaign: "k_last", click: "f"}},
		{name: "mangled click id is forged",
			at: time.Minute * 5, conv: sink.ConversionEvent{ClickID: "clk_abc123", PartnerKey: "CAROL"},
			want: want{by: sink.ByPartnerKey, partner: "carol", campaign: "k_first", flags: []string{FlagForgedClick}, click: "clk_abc123"}},
		{name: "verified id the store does not hold is unknown",
			at: time.Minute * 5, conv: sink.ConversionEvent{ClickID: "unstored"},
			want: want{by: sink.ByNone, campaign: "k_last", flags: []string{FlagUnknownClick}, click: "unstored"}},
		{name: "another merchant's click is unknown",
			clicks: map[string]clickSpec{"z": {merchant: "m2", campaign: "k2", partner: "zed"}},
			at:     5 * time.Minute, conv: sink.ConversionEvent{ClickID: "z"},
			want: want{by: sink.ByNone, campaign: "k_last", flags: []string{FlagUnknownClick}, click: "z"}},
		{name: "bot click falls through to the cookie",
			clicks: map[string]clickSpec{"bot": {campaign: "k_last", partner: "alice", bot: true}, "c": {campaign: "k_last", partner: "bob"}},
			at:     5 * time.Minute, conv: sink.ConversionEvent{ClickID: "bot", CookieClickID: "c"},
			want: want{by: sink.ByCookie, partner: "bob", campaign: "k_last", flags: []string{FlagBotClick}, click: "c"}},
		{name: "orphan click never attributes",
			clicks: map[string]clickSpec{"o": {orphan: true}},
			at:     5 * time.Minute, conv: sink.ConversionEvent{ClickID: "o"},
			want: want{by: sink.ByNone, campaign: "k_last", flags: []string{FlagOrphanClick}, click: "o"}},
		{name: "cookie click",
			clicks: map[string]clickSpec{"c": {campaign: "k_last", partner: "bob"}},
			at:     5 * time.Minute, conv: sink.ConversionEvent{CookieClickID: "c"},
			want: want{by: sink.ByCookie, partner: "bob", campaign: "k_last", click: "c"}},
		{name: "request click beats cookie click",
			clicks: map[string]clickSpec{"req": {campaign: "k_last", partner: "bob", at: 2 * time.Minute}, "c": {campaign: "k_last", partner: "alice", at: 3 * time.Minute}},
			at:     10 * time.Minute, conv: sink.ConversionEvent{ClickID: "req", CookieClickID: "c"},
			want: want{by: sink.ByClickID, partner: "bob", campaign: "k_last", click: "req"}},
		{name: "coupon owned by a partner",
			at: 5 * time.Minute, conv: sink.ConversionEvent{CouponCode: "alice10", PartnerKey: "BOB"},
			want: want{by: sink.ByCoupon, partner: "alice", campaign: "k_last"}},
		{name: "click beats coupon, conflict flagged",
			clicks: map[string]clickSpec{"b": {campaign: "k_last", partner: "bob"}},
			at:     5 * time.Minute, conv: sink.ConversionEvent{ClickID: "b", CouponCode: "ALICE10"},
			want: want{by: sink.ByClickID, partner: "bob", campaign: "k_last", flags: []string{FlagCouponConflict}, click: "b"}},
		{name: "another merchant's coupon is no coupon",
			at: 5 * time.Minute, conv: sink.ConversionEvent{CouponCode: "ZED1"},
			want: want{by: sink.ByNone, campaign: "k_last"}},
		{name: "customer's earlier attribution beats the partner key",
			setup: func(f *fixture) {
				f.apply1(f.conv(0, sink.ConversionEvent{PartnerKey: "CAROL", CustomerID: "cus_1", CampaignID: "k_hold"}))
			},
			at: 5 * time.Minute, conv: sink.ConversionEvent{CustomerID: "cus_1", PartnerKey: "BOB"},
			want: want{by: sink.ByCustomer, partner: "carol", campaign: "k_hold"}},
		{name: "coupon beats the customer's earlier attribution",
			setup: func(f *fixture) {
				f.apply1(f.conv(0, sink.ConversionEvent{PartnerKey: "CAROL", CustomerID: "cus_1"}))
			},
			at: 5 * time.Minute, conv: sink.ConversionEvent{CustomerID: "cus_1", CouponCode: "BOBBY"},
			want: want{by: sink.ByCoupon, partner: "bob", campaign: "k_last"}},
		{name: "last click: a new click beats the customer's attribution",
			clicks: map[string]clickSpec{"b": {campaign: "k_last", partner: "bob", at: time.Minute}},
			setup: func(f *fixture) {
				f.apply1(f.conv(0, sink.ConversionEvent{PartnerKey: "CAROL", CustomerID: "cus_1"}))
			},
			at: 5 * time.Minute, conv: sink.ConversionEvent{CustomerID: "cus_1", ClickID: "b"},
			want: want{by: sink.ByClickID, partner: "bob", campaign: "k_last", click: "b"}},
		{name: "first click: the customer's attribution beats a newer click",
			clicks: map[string]clickSpec{"c": {campaign: "k_first", partner: "carol", at: time.Minute}},
			setup: func(f *fixture) {
				f.apply1(f.conv(0, sink.ConversionEvent{PartnerKey: "ALICE", CustomerID: "cus_1"}))
			},
			at: 5 * time.Minute, conv: sink.ConversionEvent{CustomerID: "cus_1", ClickID: "c"},
			want: want{by: sink.ByCustomer, partner: "alice", campaign: "k_last", click: "c"}},
		{name: "first click: the earliest click of the cookie history wins",
			clicks: map[string]clickSpec{
				"first": {campaign: "k_first", partner: "bob"},
				"mid":   {campaign: "k_first", partner: "alice", at: time.Minute, prev: "first"},
				"last":  {campaign: "k_first", partner: "carol", at: 2 * time.Minute, prev: "mid"},
			},
			at: 10 * time.Minute, conv: sink.ConversionEvent{ClickID: "last"},
			want: want{by: sink.ByClickID, partner: "bob", campaign: "k_first", click: "first"}},
		{name: "first click: an earlier click outside the window is skipped",
			clicks: map[string]clickSpec{
				"old":  {campaign: "k_first", partner: "bob", at: -2 * time.Hour},
				"last": {campaign: "k_first", partner: "carol", at: 2 * time.Minute, prev: "old"},
			},
			at: 10 * time.Minute, conv: sink.ConversionEvent{ClickID: "last"},
			want: want{by: sink.ByClickID, partner: "carol", campaign: "k_first", click: "last"}},
		{name: "last click ignores the cookie history",
			clicks: map[string]clickSpec{
				"first": {campaign: "k_last", partner: "bob"},
				"last":  {campaign: "k_last", partner: "carol", at: 2 * time.Minute, prev: "first"},
			},
			at: 10 * time.Minute, conv: sink.ConversionEvent{ClickID: "last"},
			want: want{by: sink.ByClickID, partner: "carol", campaign: "k_last", click: "last"}},
		{name: "partner key",
			at: 5 * time.Minute, conv: sink.ConversionEvent{PartnerKey: "BOB"},
			want: want{by: sink.ByPartnerKey, partner: "bob", campaign: "k_last"}},
		{name: "partnership code that is a coupon code",
			at: 5 * time.Minute, conv: sink.ConversionEvent{PartnerKey: "BOBBY"},
			want: want{by: sink.ByPartnerKey, partner: "bob", campaign: "k_last"}},
		{name: "partner email, any case",
			at: 5 * time.Minute, conv: sink.ConversionEvent{PartnerEmail: "Alice@Example.com"},
			want: want{by: sink.ByPartnerKey, partner: "alice", campaign: "k_last"}},
		{name: "partner id",
			at: 5 * time.Minute, conv: sink.ConversionEvent{PartnerID: "carol"},
			want: want{by: sink.ByPartnerKey, partner: "carol", campaign: "k_first"}},
		{name: "another merchant's partner id",
			at: 5 * time.Minute, conv: sink.ConversionEvent{PartnerID: "zed"},
			want: want{by: sink.ByNone, campaign: "k_last", flags: []string{FlagUnknownPartner}}},
		{name: "invalid partner key: unattributed, recorded",
			at: 5 * time.Minute, conv: sink.ConversionEvent{PartnerKey: "NOPE"},
			want: want{by: sink.ByNone, campaign: "k_last", flags: []string{FlagUnknownPartner}}},
		{name: "nothing at all",
			at: 5 * time.Minute, conv: sink.ConversionEvent{},
			want: want{by: sink.ByNone, campaign: "k_last"}},
		{name: "sooner than the minimum is suspect but attributes",
			clicks: map[string]clickSpec{"a": {campaign: "k_last", partner: "alice"}},
			at:     59999 * time.Millisecond, conv: sink.ConversionEvent{ClickID: "a"},
			want: want{by: sink.ByClickID, partner: "alice", campaign: "k_last", flags: []string{FlagSuspectFast}, click: "a"}},
		{name: "exactly the minimum is not suspect",
			clicks: map[string]clickSpec{"a": {campaign: "k_last", partner: "alice"}},
			at:     time.Minute, conv: sink.ConversionEvent{ClickID: "a"},
			want: want{by: sink.ByClickID, partner: "alice", campaign: "k_last", click: "a"}},
		{name: "conversion stamped before its click (clock skew) attributes",
			clicks: map[string]clickSpec{"a": {campaign: "k_last", partner: "alice", at: 5 * time.Minute}},
			at:     4 * time.Minute, conv: sink.ConversionEvent{ClickID: "a"},
			want: want{by: sink.ByClickID, partner: "alice", campaign: "k_last", flags: []string{FlagSuspectFast}, click: "a"}},
		{name: "pixel with only the cookie is client reported",
			clicks: map[string]clickSpec{"c": {campaign: "k_last", partner: "bob"}},
			at:     5 * time.Minute, dialect: sink.DialectPixel, conv: sink.ConversionEvent{CookieClickID: "c", ClientReported: true},
			want: want{by: sink.ByCookie, partner: "bob", campaign: "k_last", flags: []string{FlagClientReported}, click: "c"}},
		{name: "event campaign of the merchant",
			at: 5 * time.Minute, conv: sink.ConversionEvent{PartnerKey: "BOB", CampaignID: "k_hold"},
			want: want{by: sink.ByPartnerKey, partner: "bob", campaign: "k_hold"}},
		{name: "another merchant's campaign is ignored",
			at: 5 * time.Minute, conv: sink.ConversionEvent{PartnerKey: "BOB", CampaignID: "k2"},
			want: want{by: sink.ByPartnerKey, partner: "bob", campaign: "k_last", flags: []string{FlagUnknownCampaign}}},
		{name: "click campaign beats event campaign",
			clicks: map[string]clickSpec{"a": {campaign: "k_last", partner: "alice"}},
			at:     5 * time.Minute, conv: sink.ConversionEvent{ClickID: "a", CampaignID: "k_hold"},
			want: want{by: sink.ByClickID, partner: "alice", campaign: "k_last", click: "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ids := map[string]string{"unstored": f.minter.New(base)}
			for name, c := range tt.clicks {
				if c.prev != "" {
					continue
				}
				ids[name] = f.putClick(c)
			}
			// Chained clicks after the clicks they point to.
			for len(ids) < len(tt.clicks)+1 {
				for name, c := range tt.clicks {
					if _, done := ids[name]; done || ids[c.prev] == "" {
						continue
					}
					c.prev = ids[c.prev]
					ids[name] = f.putClick(c)
				}
			}
			if tt.setup != nil {
				tt.setup(f)
			}
			c := tt.conv
			resolve := func(s string) string {
				if id, ok := ids[s]; ok {
					return id
				}
				return s
			}
			c.ClickID, c.CookieClickID = resolve(c.ClickID), resolve(c.CookieClickID)
			ev := f.conv(tt.at, c)
			if tt.dialect != "" {
				ev.Dialect = tt.dialect
			}
			r := f.apply1(ev)
			if r.Outcome != sink.OutcomeApplied || r.Conversion == nil {
				t.Fatalf("outcome %s %v, want applied", r.Outcome, r.Error)
			}
			got := r.Conversion
			wantClick := ""
			if tt.want.click != "" {
				wantClick = resolve(tt.want.click)
			}
			wantFlags := tt.want.flags
			if wantFlags == nil {
				wantFlags = []string{}
			}
			gotFlags := append([]string{}, got.Flags...)
			slices.Sort(gotFlags)
			slices.Sort(wantFlags)
			if g, w := []string{got.AttributedBy, got.PartnerID, got.CampaignID, got.ClickID}, []string{tt.want.by, tt.want.partner, tt.want.campaign, wantClick}; !reflect.DeepEqual(g, w) {
				t.Errorf("by, partner, campaign, click = %q, want %q", g, w)
			}
			if !reflect.DeepEqual(gotFlags, wantFlags) {
				t.Errorf("flags = %q, want %q", gotFlags, wantFlags)
			}
			if tt.want.partner != "" {
				if p, _ := f.idx.Partner(tt.want.partner); got.PartnerKey != p.Key {
					t.Errorf("partner key = %q, want %q", got.PartnerKey, p.Key)
				}
			}
			stored := f.record(got.UniqueID)
			if !reflect.DeepEqual(stored, *got) {
				t.Errorf("stored record differs from the result:\n%+v\n%+v", stored, *got)
			}
			f.checkInvariants()
		})
	}
}

// TestCommissionRules checks the most specific rule wins and the rounding.
func TestCommissionRules(t *testing.T) {
	tests := []struct {
		name                      string
		typ, product, productType string
		amount                    int64
		want                      int64
	}{
		{"type rule", "sale", "", "", 10000, 1000},
		{"flat lead", "lead", "", "", 0, 500},
		{"product type beats type", "sale", "", "premium", 10000, 1500},
		{"product id and type beat product id alone", "sale", "p1", "", 10000, 2500},
		{"product id beats product type", "custom", "p1", "premium", 10000, 2100},
		{"product id alone, percent plus flat", "custom", "p1", "", 10000, 2100},
		{"catch-all", "referral", "", "", 10000, 50},
		{"half a cent rounds away from zero", "sale", "", "", 5, 1},
		{"less than half a cent rounds to zero", "sale", "", "", 4, 0},
		{"largest amount", "sale", "", "", money.MaxMinor, money.MaxMinor / 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r := f.apply1(f.conv(10*time.Minute, sink.ConversionEvent{Type: tt.typ, ProductID: tt.product, ProductType: tt.productType,
				AmountMinor: tt.amount, PartnerKey: "ALICE"}))
			if r.Conversion == nil {
				t.Fatalf("outcome %s %v", r.Outcome, r.Error)
			}
			if got := r.Conversion.CommissionMinor; got != tt.want {
				t.Errorf("commission = %d, want %d", got, tt.want)
			}
			var wantLedger []string
			if tt.want != 0 {
				wantLedger = []string{"commission " + itoa(tt.want)}
			}
			if got := f.ledgerOf("alice", r.Conversion.ID); !reflect.DeepEqual(got, wantLedger) {
				t.Errorf("ledger = %q, want %q", got, wantLedger)
			}
			f.checkInvariants()
		})
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestCurrencies(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, currency, campaign string
		wantCurrency             string
		wantCommission           int64
		wantFlags                []string
		wantCode                 string
	}{
		{"default is the campaign's", "", "k_eur", "EUR", 1000, nil, ""},
		{"default without campaign currency is USD", "", "k_hold", "USD", 1000, nil, ""},
		{"lowercase code", "eur", "k_eur", "EUR", 1000, nil, ""},
		{"other currency earns nothing", "USD", "k_eur", "USD", 0, []string{FlagCurrencyMismatch}, ""},
		{"unknown currency is rejected", "XYZ", "k_eur", "", 0, nil, CodeInvalidCurrency},
	}
	for _, tt := range tests {
		r := f.apply1(f.conv(time.Minute, sink.ConversionEvent{Currency: tt.currency, CampaignID: tt.campaign, PartnerKey: "BOB", AmountMinor: 10000}))
		if errCode(r) != tt.wantCode {
			t.Errorf("%s: code %q, want %q", tt.name, errCode(r), tt.wantCode)
			continue
		}
		if tt.wantCode != "" {
			continue
		}
		if got := r.Conversion; got.Currency != tt.wantCurrency || got.CommissionMinor != tt.wantCommission || !reflect.DeepEqual(got.Flags, tt.wantFlags) {
			t.Errorf("%s: %s %d %q, want %s %d %q", tt.name, got.Currency, got.CommissionMinor, got.Flags, tt.wantCurrency, tt.wantCommission, tt.wantFlags)
		}
	}
	if _, _, _, err := f.s.PartnerBalance("m1", "bob"); err == nil {
		t.Error("a partner with USD and EUR entries has one balance")
	}
	bs, err := f.s.Balances("m1", "bob")
	if want := []Balance{{Currency: "EUR", BalanceMinor: 2000}, {Currency: "USD", BalanceMinor: 1000}}; err != nil || !reflect.DeepEqual(bs, want) {
		t.Errorf("balances = %+v, %v, want %+v", bs, err, want)
	}
	f.checkInvariants()
}

func TestLeadOncePerCustomer(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		conv     sink.ConversionEvent
		want     int64
		wantFlag bool
	}{
		{"first lead of a customer", sink.ConversionEvent{Type: "lead", CustomerID: "c1", PartnerKey: "ALICE"}, 500, false},
		{"second lead of the same customer", sink.ConversionEvent{Type: "lead", CustomerID: "c1", PartnerKey: "BOB"}, 0, true},
		{"same customer by another partner's click still once", sink.ConversionEvent{Type: "lead", CustomerID: "c1", CouponCode: "BOBBY"}, 0, true},
		{"another customer", sink.ConversionEvent{Type: "lead", CustomerID: "c2", PartnerKey: "ALICE"}, 500, false},
		{"same customer by email hash", sink.ConversionEvent{Type: "lead", CustomerEmailHash: "h1", PartnerKey: "ALICE"}, 500, false},
		{"again by email hash", sink.ConversionEvent{Type: "lead", CustomerEmailHash: "h1", PartnerKey: "ALICE"}, 0, true},
		{"a sale of the customer still earns", sink.ConversionEvent{Type: "sale", CustomerID: "c1", AmountMinor: 1000}, 100, false},
		{"no customer: cannot be deduplicated", sink.ConversionEvent{Type: "lead", PartnerKey: "ALICE"}, 500, false},
		{"no customer again", sink.ConversionEvent{Type: "lead", PartnerKey: "ALICE"}, 500, false},
	}
	for _, tt := range tests {
		r := f.apply1(f.conv(time.Minute, tt.conv))
		if r.Conversion == nil {
			t.Fatalf("%s: %s %v", tt.name, r.Outcome, r.Error)
		}
		if got, flagged := r.Conversion.CommissionMinor, slices.Contains(r.Conversion.Flags, FlagRepeatLead); got != tt.want || flagged != tt.wantFlag {
			t.Errorf("%s: commission %d flagged %v, want %d %v", tt.name, got, flagged, tt.want, tt.wantFlag)
		}
	}
	f.checkInvariants()
}

func TestRecurring(t *testing.T) {
	// The first subscription of each customer is on Jan 31 12:00 UTC; two
	// calendar months later is Mar 31 12:00.
	end := time.Date(2025, 3, 31, 12, 0, 0, 0, time.UTC).Sub(base)
	tests := []struct {
		name     string
		campaign string
		at       time.Duration
		want     int64
	}{
		{"within the months", "k_last", 30 * 24 * time.Hour, 300},
		{"exactly at the end of the months", "k_last", end, 300},
		{"one ms after", "k_last", end + time.Millisecond, 0},
		{"lifetime, years later", "k_first", 5 * 365 * 24 * time.Hour, 300},
		{"neither: only the first payment earns", "k_once", time.Minute, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			first := f.apply1(f.conv(0, sink.ConversionEvent{Type: "subscription", CustomerID: "c1", PartnerKey: "ALICE", CampaignID: tt.campaign, AmountMinor: 1000}))
			if first.Conversion.CommissionMinor == 0 {
				t.Fatalf("first subscription earned nothing: %+v", first.Conversion)
			}
			// A later payment names only the customer: the customer's
			// attribution carries it.
			r := f.apply1(f.conv(tt.at, sink.ConversionEvent{Type: "subscription", CustomerID: "c1", AmountMinor: 1000}))
			got := r.Conversion
			if got.AttributedBy != sink.ByCustomer || got.CampaignID != tt.campaign || got.CommissionMinor != tt.want {
				t.Errorf("by %s campaign %s commission %d, want customer %s %d", got.AttributedBy, got.CampaignID, got.CommissionMinor, tt.campaign, tt.want)
			}
			if flagged := slices.Contains(got.Flags, FlagRecurringExpired); flagged != (tt.want == 0) {
				t.Errorf("recurring_expired flagged %v, want %v", flagged, tt.want == 0)
			}
			// Recalculating an expired payment keeps it at zero.
			amount := int64(5000)
			f.apply1(f.event("m1", tt.at, sink.KindUpdate, &sink.UpdateEvent{UniqueID: got.UniqueID, AmountMinor: &amount, Recalculate: true}))
			if want := tt.want * 5; f.record(got.UniqueID).CommissionMinor != want {
				t.Errorf("after recalculation commission %d, want %d", f.record(got.UniqueID).CommissionMinor, want)
			}
			f.checkInvariants()
		})
	}
}

func TestLifecycle(t *testing.T) {
	type step struct {
		status, ref string // ref "" means the conversion's unique id; "id" its conv id
		outcome     string
		code        string
		wantStatus  string
	}
	tests := []struct {
		name       string
		steps      []step
		wantLedger []string
		wantBal    [2]int64
	}{
		{"approve then pay", []step{
			{sink.StatusApproved, "", sink.OutcomeApplied, "", sink.StatusApproved},
			{sink.StatusPaid, "id", sink.OutcomeApplied, "", sink.StatusPaid},
		}, []string{"commission 1000", "payout -1000"}, [2]int64{0, 1000}},
		{"reject reverses the commission", []step{
			{sink.StatusRejected, "", sink.OutcomeApplied, "", sink.StatusRejected},
			{sink.StatusApproved, "", sink.OutcomeRejected, CodeInvalidTransition, sink.StatusRejected},
			{sink.StatusPaid, "", sink.OutcomeRejected, CodeInvalidTransition, sink.StatusRejected},
			{sink.StatusRejected, "", sink.OutcomeIgnored, "", sink.StatusRejected},
		}, []string{"commission 1000", "reversal -1000"}, [2]int64{0, 0}},
		{"pending cannot be paid", []step{
			{sink.StatusPaid, "", sink.OutcomeRejected, CodeInvalidTransition, sink.StatusPending},
		}, []string{"commission 1000"}, [2]int64{1000, 0}},
		{"approved cannot be rejected nor approved twice", []step{
			{sink.StatusApproved, "", sink.OutcomeApplied, "", sink.StatusApproved},
			{sink.StatusRejected, "", sink.OutcomeRejected, CodeInvalidTransition, sink.StatusApproved},
			{sink.StatusApproved, "id", sink.OutcomeIgnored, "", sink.StatusApproved},
			{sink.StatusPending, "", sink.OutcomeRejected, CodeInvalidStatus, sink.StatusApproved},
		}, []string{"commission 1000"}, [2]int64{1000, 0}},
		{"paid is final", []step{
			{sink.StatusApproved, "", sink.OutcomeApplied, "", sink.StatusApproved},
			{sink.StatusPaid, "", sink.OutcomeApplied, "", sink.StatusPaid},
			{sink.StatusRejected, "", sink.OutcomeRejected, CodeInvalidTransition, sink.StatusPaid},
			{sink.StatusPaid, "", sink.OutcomeIgnored, "", sink.StatusPaid},
		}, []string{"commission 1000", "payout -1000"}, [2]int64{0, 1000}},
		{"unknown conversion", []step{
			{sink.StatusApproved, "nope", sink.OutcomeRejected, CodeConversionNotFound, sink.StatusPending},
			{sink.StatusApproved, "conv_nope", sink.OutcomeRejected, CodeConversionNotFound, sink.StatusPending},
		}, []string{"commission 1000"}, [2]int64{1000, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			c := f.apply1(f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o1", PartnerKey: "ALICE", AmountMinor: 10000, CampaignID: "k_hold"})).Conversion
			for i, s := range tt.steps {
				ev := f.status("o1", s.status)
				switch s.ref {
				case "id":
					ev.Status = &sink.StatusEvent{ConversionID: c.ID, Status: s.status}
				case "":
				default:
					ev.Status = &sink.StatusEvent{ConversionID: s.ref, Status: s.status}
				}
				r := f.apply1(ev)
				if r.Outcome != s.outcome || errCode(r) != s.code {
					t.Errorf("step %d %s: outcome %s %q, want %s %q", i, s.status, r.Outcome, errCode(r), s.outcome, s.code)
				}
				if got := f.record("o1").Status; got != s.wantStatus {
					t.Errorf("step %d %s: status %s, want %s", i, s.status, got, s.wantStatus)
				}
			}
			if got := f.ledgerOf("alice", c.ID); !reflect.DeepEqual(got, tt.wantLedger) {
				t.Errorf("ledger = %q, want %q", got, tt.wantLedger)
			}
			if b, paid := f.balance("alice"); [2]int64{b, paid} != tt.wantBal {
				t.Errorf("balance, paid = %d, %d, want %v", b, paid, tt.wantBal)
			}
			// Leaving pending releases the hold.
			holds, _ := f.s.dueHolds(1<<62, 10)
			if wantHeld := f.record("o1").Status == sink.StatusPending; (len(holds) == 1) != wantHeld {
				t.Errorf("holds = %v, want held %v", holds, wantHeld)
			}
			f.checkInvariants()
		})
	}
}

func TestRefunds(t *testing.T) {
	f := newFixture(t)
	c := f.apply1(f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o1", PartnerKey: "ALICE", AmountMinor: 10000})).Conversion
	dupEvent := f.refund("o1", 3000, false, "r1", true)
	steps := []struct {
		name           string
		ev             sink.Event
		outcome, code  string
		wantRefunded   int64
		wantCommission int64
	}{
		{"partial", dupEvent, sink.OutcomeApplied, "", 3000, 700},
		{"same event again", dupEvent, sink.OutcomeApplied, "", 3000, 700},
		{"same external id, another event", f.refund("o1", 3000, false, "r1", true), sink.OutcomeDuplicate, "", 3000, 700},
		{"partial rounding on the cumulative share", f.refund("o1", 3333, false, "r2", true), sink.OutcomeApplied, "", 6333, 367},
		{"more than is left", f.refund("o1", 3668, false, "r3", true), sink.OutcomeRejected, CodeRefundExceedsAmount, 6333, 367},
		{"zero", f.refund("o1", 0, false, "", true), sink.OutcomeRejected, CodeInvalidAmount, 6333, 367},
		{"negative", f.refund("o1", -5, false, "", true), sink.OutcomeRejected, CodeInvalidAmount, 6333, 367},
		{"full reverses what is left", f.refund("o1", 0, true, "r4", true), sink.OutcomeApplied, "", 10000, 0},
		{"full again", f.refund("o1", 0, true, "r5", true), sink.OutcomeRejected, CodeAlreadyRefunded, 10000, 0},
		{"partial after full", f.refund("o1", 1, false, "r6", true), sink.OutcomeRejected, CodeRefundExceedsAmount, 10000, 0},
		{"unknown unique id", f.refund("nope", 1, false, "", true), sink.OutcomeRejected, CodeConversionNotFound, 10000, 0},
	}
	for _, s := range steps {
		r := f.apply1(s.ev)
		if r.Outcome != s.outcome || errCode(r) != s.code {
			t.Errorf("%s: outcome %s %q, want %s %q", s.name, r.Outcome, errCode(r), s.outcome, s.code)
		}
		if got := f.record("o1"); got.RefundedMinor != s.wantRefunded || got.CommissionMinor != s.wantCommission {
			t.Errorf("%s: refunded %d commission %d, want %d %d", s.name, got.RefundedMinor, got.CommissionMinor, s.wantRefunded, s.wantCommission)
		}
	}
	want := []string{"commission 1000", "reversal -300", "reversal -333", "reversal -367"}
	if got := f.ledgerOf("alice", c.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("ledger = %q, want %q", got, want)
	}
	f.checkInvariants()

	// A full refund of a free lead reverses its flat commission.
	lead := f.apply1(f.conv(time.Minute, sink.ConversionEvent{UniqueID: "l1", Type: "lead", PartnerKey: "BOB"})).Conversion
	if r := f.apply1(f.refund("l1", 0, true, "", true)); r.Outcome != sink.OutcomeApplied || r.Conversion.CommissionMinor != 0 {
		t.Errorf("full refund of a lead: %s %+v", r.Outcome, r.Conversion)
	}
	if got, want := f.ledgerOf("bob", lead.ID), []string{"commission 500", "reversal -500"}; !reflect.DeepEqual(got, want) {
		t.Errorf("lead ledger = %q, want %q", got, want)
	}
	// Refunding an unattributed conversion books nothing.
	f.apply1(f.conv(time.Minute, sink.ConversionEvent{UniqueID: "u1", AmountMinor: 100}))
	if r := f.apply1(f.refund("u1", 40, false, "", true)); r.Outcome != sink.OutcomeApplied || r.Conversion.RefundedMinor != 40 {
		t.Errorf("refund of an unattributed conversion: %s %+v", r.Outcome, r.Conversion)
	}
	f.checkInvariants()
}

func TestPaidAndClawback(t *testing.T) {
	f := newFixture(t)
	c := f.apply1(f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o1", PartnerKey: "ALICE", AmountMinor: 10000})).Conversion
	f.apply(f.status("o1", sink.StatusApproved), f.status("o1", sink.StatusPaid))
	steps := []struct {
		name                       string
		ev                         sink.Event
		wantBalance, wantPaid      int64
		wantCommission, wantRefund int64
	}{
		{"refund after payment, reversing paid earnings", f.refund("o1", 5000, false, "r1", true), -500, 1000, 500, 5000},
		{"refund after payment, keeping paid earnings", f.refund("o1", 2500, false, "r2", false), -500, 1000, 500, 7500},
		{"full refund reverses the rest but what was kept", f.refund("o1", 0, true, "r3", true), -750, 1000, 250, 10000},
	}
	for _, s := range steps {
		r := f.apply1(s.ev)
		if r.Outcome != sink.OutcomeApplied {
			t.Fatalf("%s: %s %v", s.name, r.Outcome, r.Error)
		}
		b, paid := f.balance("alice")
		got := f.record("o1")
		if b != s.wantBalance || paid != s.wantPaid || got.CommissionMinor != s.wantCommission || got.RefundedMinor != s.wantRefund {
			t.Errorf("%s: balance %d paid %d commission %d refunded %d, want %d %d %d %d", s.name, b, paid, got.CommissionMinor, got.RefundedMinor,
				s.wantBalance, s.wantPaid, s.wantCommission, s.wantRefund)
		}
		if got.Status != sink.StatusPaid {
			t.Errorf("%s: status %s, want paid", s.name, got.Status)
		}
	}
	want := []string{"commission 1000", "payout -1000", "clawback -500", "clawback -250"}
	if got := f.ledgerOf("alice", c.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("ledger = %q, want %q", got, want)
	}
	// The clawback is booked against future earnings.
	f.apply1(f.conv(2*time.Minute, sink.ConversionEvent{UniqueID: "o2", PartnerKey: "ALICE", AmountMinor: 20000}))
	if b, _ := f.balance("alice"); b != 1250 {
		t.Errorf("balance after the next sale = %d, want 1250", b)
	}
	f.checkInvariants()
}

func TestUpdate(t *testing.T) {
	f := newFixture(t)
	c := f.apply1(f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o1", PartnerKey: "ALICE", AmountMinor: 10000,
		Metadata: json.RawMessage(`{"a": 1, "keep": "x"}`)})).Conversion
	amt := func(n int64) *int64 { return &n }
	upd := func(u sink.UpdateEvent) sink.Event {
		u.UniqueID = "o1"
		return f.event("m1", 2*time.Minute, sink.KindUpdate, &u)
	}
	steps := []struct {
		name           string
		ev             sink.Event
		code           string
		wantAmount     int64
		wantCommission int64
		wantMeta       string
	}{
		{"recalculate a larger amount", upd(sink.UpdateEvent{AmountMinor: amt(20000), Recalculate: true}), "", 20000, 2000, `{"a":1,"keep":"x"}`},
		{"new amount without recalculation", upd(sink.UpdateEvent{AmountMinor: amt(15000)}), "", 15000, 2000, `{"a":1,"keep":"x"}`},
		{"metadata merged, keys overwritten", upd(sink.UpdateEvent{Metadata: json.RawMessage(`{"b":2,"a":3}`)}), "", 15000, 2000, `{"a":3,"b":2,"keep":"x"}`},
		{"metadata not an object", upd(sink.UpdateEvent{Metadata: json.RawMessage(`[1]`)}), CodeInvalidMetadata, 15000, 2000, `{"a":3,"b":2,"keep":"x"}`},
		{"partial refund", f.refund("o1", 5000, false, "", true), "", 15000, 1333, `{"a":3,"b":2,"keep":"x"}`},
		{"recalculate keeps the refunded share reversed", upd(sink.UpdateEvent{AmountMinor: amt(10000), Recalculate: true}), "", 10000, 500, `{"a":3,"b":2,"keep":"x"}`},
		{"below what was refunded", upd(sink.UpdateEvent{AmountMinor: amt(4999)}), CodeAmountBelowRefunded, 10000, 500, `{"a":3,"b":2,"keep":"x"}`},
		{"negative", upd(sink.UpdateEvent{AmountMinor: amt(-1)}), CodeInvalidAmount, 10000, 500, `{"a":3,"b":2,"keep":"x"}`},
		{"unknown conversion", f.event("m1", 0, sink.KindUpdate, &sink.UpdateEvent{UniqueID: "nope", Recalculate: true}), CodeConversionNotFound, 10000, 500, `{"a":3,"b":2,"keep":"x"}`},
	}
	for _, s := range steps {
		r := f.apply1(s.ev)
		if errCode(r) != s.code {
			t.Errorf("%s: code %q, want %q", s.name, errCode(r), s.code)
		}
		got := f.record("o1")
		if got.AmountMinor != s.wantAmount || got.CommissionMinor != s.wantCommission || string(got.Metadata) != s.wantMeta {
			t.Errorf("%s: amount %d commission %d metadata %s, want %d %d %s", s.name, got.AmountMinor, got.CommissionMinor, got.Metadata,
				s.wantAmount, s.wantCommission, s.wantMeta)
		}
	}
	want := []string{"commission 1000", "adjustment 1000", "reversal -667", "adjustment -833"}
	if got := f.ledgerOf("alice", c.ID); !reflect.DeepEqual(got, want) {
		t.Errorf("ledger = %q, want %q", got, want)
	}
	// A rejected conversion is not recalculated back to earning.
	f.apply1(f.status("o1", sink.StatusRejected))
	f.apply1(upd(sink.UpdateEvent{AmountMinor: amt(50000), Recalculate: true}))
	if got := f.record("o1").CommissionMinor; got != 0 {
		t.Errorf("rejected conversion recalculated to %d", got)
	}
	f.checkInvariants()
}

func TestDuplicateConversions(t *testing.T) {
	f := newFixture(t)
	ev := f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o1", PartnerKey: "ALICE", AmountMinor: 10000})
	first := f.apply1(ev)
	// The same event again, and the same order under another event id
	// (another dialect, say): the original comes back, nothing is created.
	again := f.apply1(ev)
	other := ev
	other.ID = "m1:conversion:pixel:o1"
	other.Dialect = sink.DialectPixel
	oc := *ev.Conversion
	oc.AmountMinor, oc.PartnerKey = 1, "BOB"
	other.Conversion = &oc
	dup := f.apply1(other)
	if !reflect.DeepEqual(again, first) {
		t.Errorf("repeat of the same event = %+v, want the original %+v", again, first)
	}
	if dup.Outcome != sink.OutcomeDuplicate || dup.EventID != other.ID || !reflect.DeepEqual(dup.Conversion, first.Conversion) {
		t.Errorf("repeat under another id = %+v, want duplicate of %+v", dup, first.Conversion)
	}
	if r, ok, _ := f.s.EventResult("m1", other.ID); !ok || r.Outcome != sink.OutcomeDuplicate {
		t.Errorf("stored result of the repeat = %+v, %v", r, ok)
	}
	if b, _ := f.balance("alice"); b != 1000 {
		t.Errorf("balance = %d, want 1000", b)
	}
	if b, _ := f.balance("bob"); b != 0 {
		t.Errorf("bob earned %d from a duplicate", b)
	}
	page, _ := f.s.ListConversions(sink.ConversionQuery{MerchantID: "m1"})
	if page.Total != 1 {
		t.Errorf("%d conversions listed, want 1", page.Total)
	}

	// A rejected event id is final too: applied later, out of its place
	// in the stream, it would make a replay differ. A retry needs its own
	// id (a new external refund id, say).
	refund := f.refund("o2", 100, false, "x1", true)
	if r := f.apply1(refund); errCode(r) != CodeConversionNotFound {
		t.Fatalf("refund before its conversion: %+v", r)
	}
	f.apply1(f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o2", PartnerKey: "ALICE", AmountMinor: 1000}))
	if r := f.apply1(refund); errCode(r) != CodeConversionNotFound {
		t.Errorf("rejected refund applied on its second arrival: %+v", r)
	}
	if r := f.apply1(f.refund("o2", 100, false, "x2", true)); r.Outcome != sink.OutcomeApplied || r.Conversion.RefundedMinor != 100 {
		t.Errorf("refund under a new id: %+v", r)
	}
	f.checkInvariants()
}

func TestInvalidEvents(t *testing.T) {
	f := newFixture(t)
	long := strings.Repeat("x", MaxKeyPartLen+1)
	tests := []struct {
		name string
		ev   sink.Event
		code string
	}{
		{"no unique id", f.conv(0, sink.ConversionEvent{UniqueID: "", Type: "sale"}), CodeInvalidEvent},
		{"negative amount", f.conv(0, sink.ConversionEvent{AmountMinor: -1}), CodeInvalidAmount},
		{"absurd amount", f.conv(0, sink.ConversionEvent{AmountMinor: money.MaxMinor + 1}), CodeInvalidAmount},
		{"long customer id", f.conv(0, sink.ConversionEvent{CustomerID: long}), CodeInvalidEvent},
		{"NUL in customer id", f.conv(0, sink.ConversionEvent{CustomerID: "a\x00b"}), CodeInvalidEvent},
		{"NUL in merchant", sink.Event{ID: "x", MerchantID: "m\x001", Kind: sink.KindConversion, Conversion: &sink.ConversionEvent{UniqueID: "u"}}, CodeInvalidEvent},
		{"NUL in event id", sink.Event{ID: "x\x00y", MerchantID: "m1", Kind: sink.KindConversion, Conversion: &sink.ConversionEvent{UniqueID: "u"}}, CodeInvalidEvent},
		{"missing payload", sink.Event{ID: "x", MerchantID: "m1", Kind: sink.KindRefund}, CodeInvalidEvent},
		{"unknown kind", sink.Event{ID: "y", MerchantID: "m1", Kind: "teleport"}, CodeInvalidEvent},
		{"customer without key", f.event("m1", 0, sink.KindCustomer, &sink.CustomerEvent{PartnerKey: "ALICE"}), CodeInvalidEvent},
	}
	for _, tt := range tests {
		// The empty unique id would otherwise be filled in by f.conv.
		if tt.name == "no unique id" {
			tt.ev.Conversion.UniqueID = ""
		}
		if r := f.apply1(tt.ev); r.Outcome != sink.OutcomeRejected || errCode(r) != tt.code {
			t.Errorf("%s: %s %q, want rejected %q", tt.name, r.Outcome, errCode(r), tt.code)
		}
	}
	if page, _ := f.s.ListConversions(sink.ConversionQuery{MerchantID: "m1"}); page.Total != 0 {
		t.Errorf("invalid events stored %d conversions", page.Total)
	}
	f.checkInvariants()
}

func TestPartneroCustomers(t *testing.T) {
	f := newFixture(t)
	cust := func(c sink.CustomerEvent) sink.Event { return f.event("m1", time.Minute, sink.KindCustomer, &c) }
	tx := func(customer, key string, amount int64, opts ...func(*sink.ConversionEvent)) sink.Event {
		c := sink.ConversionEvent{UniqueID: key, Type: "sale", CustomerID: customer, AmountMinor: amount}
		for _, o := range opts {
			o(&c)
		}
		ev := f.conv(2*time.Minute, c)
		ev.Dialect = sink.DialectPartnero
		return ev
	}
	credit := func(key string, amount int64, cur string) sink.Event {
		return f.event("m1", 3*time.Minute, sink.KindCredit, &sink.CreditEvent{CustomerKey: key, AmountMinor: amount, Currency: cur})
	}
	createWith := func(key string) func(*sink.ConversionEvent) {
		return func(c *sink.ConversionEvent) { c.CreateCustomer, c.PartnerKey = true, key }
	}
	creditAgain := credit("customer_123", 500, "")
	steps := []struct {
		name    string
		ev      sink.Event
		outcome string
		code    string
		check   func(r sink.EventResult) string
	}{
		{"customer with a valid partner key", cust(sink.CustomerEvent{Key: "customer_123", PartnerKey: "ALICE", Email: "john@example.com", Name: "John", Surname: "Doe", Tags: []string{"vip"}}),
			sink.OutcomeApplied, "", func(r sink.EventResult) string {
				want := sink.CustomerRecord{MerchantID: "m1", Key: "customer_123", Email: "john@example.com", Name: "John", Surname: "Doe", Tags: []string{"vip"},
					PartnerID: "alice", ReferralCode: ReferralCode("m1", "customer_123"), FirstAttrTS: base.Add(time.Minute).UnixMilli(), CreatedAt: base.Add(time.Minute).UnixMilli()}
				if !reflect.DeepEqual(*r.Customer, want) {
					return "customer " + mustJSON(r.Customer) + ", want " + mustJSON(want)
				}
				return ""
			}},
		{"invalid partner key: accepted, ignored, not stored", cust(sink.CustomerEvent{Key: "customer_x", PartnerKey: "NOPE"}), sink.OutcomeIgnored, "", nil},
		{"no partner at all: not recorded", cust(sink.CustomerEvent{Key: "customer_y"}), sink.OutcomeIgnored, "", nil},
		{"partner by email", cust(sink.CustomerEvent{Key: "customer_e", PartnerEmail: "ALICE@example.com"}), sink.OutcomeApplied, "", nil},
		{"partner by id", cust(sink.CustomerEvent{Key: "customer_i", PartnerID: "bob"}), sink.OutcomeApplied, "", nil},
		{"refer-a-friend by the referrer's link code", cust(sink.CustomerEvent{Key: "customer_code", ReferringCustomerKey: ReferralCode("m1", "customer_123")}),
			sink.OutcomeApplied, "", func(r sink.EventResult) string {
				if r.Customer.ReferredByKey != "customer_123" {
					return "referral code not resolved to its customer: " + mustJSON(r.Customer)
				}
				return ""
			}},
		{"another merchant's referral code is unknown", f.event("m2", time.Minute, sink.KindCustomer, &sink.CustomerEvent{Key: "c2", ReferringCustomerKey: ReferralCode("m1", "customer_123")}),
			sink.OutcomeIgnored, "", nil},
		{"refer-a-friend from a known customer", cust(sink.CustomerEvent{Key: "customer_456", ReferringCustomerKey: "customer_123", Name: "Alex"}),
			sink.OutcomeApplied, "", func(r sink.EventResult) string {
				if r.Customer.ReferredByKey != "customer_123" || r.Customer.PartnerID != "" {
					return "referral not recorded: " + mustJSON(r.Customer)
				}
				return ""
			}},
		{"refer-a-friend from an unknown customer", cust(sink.CustomerEvent{Key: "customer_789", ReferringCustomerKey: "nobody"}), sink.OutcomeIgnored, "", nil},
		{"update keeps the first partner", cust(sink.CustomerEvent{Key: "customer_123", PartnerKey: "BOB", Name: "Johnny"}),
			sink.OutcomeApplied, "", func(r sink.EventResult) string {
				if r.Customer.PartnerID != "alice" || r.Customer.Name != "Johnny" || r.Customer.Email != "john@example.com" {
					return "update: " + mustJSON(r.Customer)
				}
				return ""
			}},
		{"transaction of a known customer", tx("customer_123", "invoice_123", 9999), sink.OutcomeApplied, "", func(r sink.EventResult) string {
			c := r.Conversion
			if c.AttributedBy != sink.ByCustomer || c.PartnerID != "alice" || c.CommissionMinor != 1000 || c.Dialect != sink.DialectPartnero {
				return "transaction: " + mustJSON(c)
			}
			return ""
		}},
		{"transaction of an unknown customer is ignored", tx("ghost", "invoice_9", 1000), sink.OutcomeIgnored, "", nil},
		{"create_customer with a valid partner", tx("new_cust", "transaction_123", 9999, createWith("BOB")), sink.OutcomeApplied, "", func(r sink.EventResult) string {
			if r.Conversion.PartnerID != "bob" || r.Conversion.AttributedBy != sink.ByCustomer {
				return "create_customer: " + mustJSON(r.Conversion)
			}
			return ""
		}},
		{"create_customer with an invalid partner is ignored", tx("new_cust2", "transaction_124", 9999, createWith("NOPE")), sink.OutcomeIgnored, "", nil},
		{"transaction of a referred customer: recorded, unattributed", tx("customer_456", "invoice_456", 1000), sink.OutcomeApplied, "", func(r sink.EventResult) string {
			if r.Conversion.AttributedBy != sink.ByNone || r.Conversion.CommissionMinor != 0 {
				return "referred transaction: " + mustJSON(r.Conversion)
			}
			return ""
		}},
		{"credit", creditAgain, sink.OutcomeApplied, "", func(r sink.EventResult) string {
			if r.Customer.BalanceMinor != 500 || r.Customer.Currency != "USD" {
				return "credit: " + mustJSON(r.Customer)
			}
			return ""
		}},
		{"the same credit again", creditAgain, sink.OutcomeApplied, "", func(r sink.EventResult) string {
			if r.Customer.BalanceMinor != 500 {
				return "repeated credit: " + mustJSON(r.Customer)
			}
			return ""
		}},
		{"another credit", credit("customer_123", 250, "usd"), sink.OutcomeApplied, "", func(r sink.EventResult) string {
			if r.Customer.BalanceMinor != 750 {
				return "second credit: " + mustJSON(r.Customer)
			}
			return ""
		}},
		{"credit in another currency", credit("customer_123", 250, "EUR"), sink.OutcomeRejected, CodeCurrencyMismatch, nil},
		{"credit of an unknown customer", credit("ghost", 250, ""), sink.OutcomeRejected, CodeCustomerNotFound, nil},
		{"zero credit", credit("customer_123", 0, ""), sink.OutcomeRejected, CodeInvalidAmount, nil},
	}
	for _, s := range steps {
		r := f.apply1(s.ev)
		if r.Outcome != s.outcome || errCode(r) != s.code {
			t.Errorf("%s: outcome %s %q, want %s %q", s.name, r.Outcome, errCode(r), s.outcome, s.code)
			continue
		}
		if s.check != nil {
			if msg := s.check(r); msg != "" {
				t.Errorf("%s: %s", s.name, msg)
			}
		}
	}
	for _, key := range []string{"customer_x", "customer_y", "customer_789", "ghost", "new_cust2"} {
		if _, ok, _ := f.s.Customer("m1", key); ok {
			t.Errorf("ignored customer %s was stored", key)
		}
	}
	for _, key := range []string{"invoice_9", "transaction_124"} {
		if _, ok, _ := f.s.Conversion("m1", key); ok {
			t.Errorf("ignored transaction %s was stored", key)
		}
	}
	got, ok, err := f.s.Customer("m1", "customer_123")
	if err != nil || !ok || got.BalanceMinor != 750 {
		t.Errorf("customer_123 = %+v, %v, %v; want balance 750", got, ok, err)
	}
	entries, _ := f.s.Ledger("m1", CustomerAccount("customer_123"))
	if len(entries) != 2 || entries[0].Kind != LedgerCredit || entries[0].AmountMinor != 500 {
		t.Errorf("customer ledger = %+v", entries)
	}
	if c, ok, _ := f.s.Customer("m1", "new_cust"); !ok || c.PartnerID != "bob" {
		t.Errorf("create_customer made %+v, %v", c, ok)
	}
	f.checkInvariants()
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestTenantIsolation: merchant m2 can neither read nor touch m1's data.
func TestTenantIsolation(t *testing.T) {
	f := newFixture(t)
	ev := f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o1", PartnerKey: "ALICE", AmountMinor: 10000, CustomerID: "c1"})
	c := f.apply1(ev).Conversion
	before := snapshot(t, f.s)
	other := func(kind sink.EventKind, payload any) sink.Event { return f.event("m2", 2*time.Minute, kind, payload) }
	for _, ev := range []sink.Event{
		other(sink.KindStatus, &sink.StatusEvent{ConversionID: c.ID, Status: sink.StatusRejected}),
		other(sink.KindStatus, &sink.StatusEvent{UniqueID: "o1", Status: sink.StatusApproved}),
		other(sink.KindRefund, &sink.RefundEvent{UniqueID: "o1", Full: true}),
		other(sink.KindRefund, &sink.RefundEvent{UniqueID: c.ID, Full: true}),
		other(sink.KindUpdate, &sink.UpdateEvent{UniqueID: "o1", Recalculate: true}),
		other(sink.KindCredit, &sink.CreditEvent{CustomerKey: "c1", AmountMinor: 5}),
	} {
		r := f.apply1(ev)
		if r.Outcome != sink.OutcomeRejected {
			t.Errorf("m2's %s on m1's data: %s, want rejected", ev.Kind, r.Outcome)
		}
	}
	after := snapshot(t, f.s)
	for _, b := range []string{"conversions", "ledger", "customers", "idx_conversions"} {
		if !reflect.DeepEqual(before[b], after[b]) {
			t.Errorf("m2's events changed m1's %s", b)
		}
	}
	for _, ref := range []string{c.ID, "o1"} {
		if _, ok, _ := f.s.Conversion("m2", ref); ok {
			t.Errorf("m2 reads m1's conversion by %s", ref)
		}
	}
	if page, _ := f.s.ListConversions(sink.ConversionQuery{MerchantID: "m2"}); page.Total != 0 || len(page.Conversions) != 0 {
		t.Errorf("m2 lists %+v", page)
	}
	if _, ok, _ := f.s.Customer("m2", "c1"); ok {
		t.Error("m2 reads m1's customer")
	}
	if _, ok, _ := f.s.EventResult("m2", ev.ID); ok {
		t.Error("m2 reads m1's event result")
	}
	if es, _ := f.s.Ledger("m2", "alice"); len(es) != 0 {
		t.Errorf("m2 reads m1's ledger: %+v", es)
	}
	// The same unique id is a different conversion at another merchant.
	ev2 := ev
	ev2.MerchantID, ev2.ID = "m2", sink.EventID("m2", sink.KindConversion, "o1")
	ev2.Conversion = &sink.ConversionEvent{UniqueID: "o1", PartnerKey: "ALICE", AmountMinor: 10000}
	r := f.apply1(ev2)
	if r.Outcome != sink.OutcomeApplied || r.Conversion.ID == c.ID || r.Conversion.PartnerID != "" {
		t.Errorf("m2's own o1 = %+v: want a new, unattributed conversion (alice is not m2's)", r)
	}
	f.checkInvariants()
}

func TestListConversions(t *testing.T) {
	f := newFixture(t)
	type spec struct {
		unique, partner, campaign string
		at                        time.Duration
	}
	specs := []spec{
		{"o1", "ALICE", "k_last", 1 * time.Minute},
		{"o2", "BOB", "k_last", 2 * time.Minute},
		{"o3", "ALICE", "k_hold", 3 * time.Minute},
		{"o4", "", "", 4 * time.Minute},
		{"o5", "ALICE", "k_last", 5 * time.Minute},
		{"o6", "CAROL", "k_first", 5 * time.Minute},
	}
	for _, s := range specs {
		f.apply1(f.conv(s.at, sink.ConversionEvent{UniqueID: s.unique, PartnerKey: s.partner, CampaignID: s.campaign, AmountMinor: 100}))
	}
	f.apply(f.status("o1", sink.StatusApproved), f.status("o5", sink.StatusRejected), f.status("o3", sink.StatusApproved))
	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
	// o5 and o6 share a time: they come in id order, newest first.
	same := []string{"o5", "o6"}
	if ConversionID("m1", "o5") < ConversionID("m1", "o6") {
		same = []string{"o6", "o5"}
	}
	tests := []struct {
		name      string
		q         sink.ConversionQuery
		want      []string
		wantTotal int
	}{
		{"all, newest first", sink.ConversionQuery{}, append(append([]string{}, same...), "o4", "o3", "o2", "o1"), 6},
		{"page", sink.ConversionQuery{Limit: 2, Offset: 2}, []string{"o4", "o3"}, 6},
		{"offset past the end", sink.ConversionQuery{Offset: 6}, nil, 6},
		{"campaign", sink.ConversionQuery{CampaignID: "k_last"}, []string{"o5", "o4", "o2", "o1"}, 4},
		{"partner", sink.ConversionQuery{PartnerID: "alice"}, []string{"o5", "o3", "o1"}, 3},
		{"campaign and partner", sink.ConversionQuery{CampaignID: "k_last", PartnerID: "alice"}, []string{"o5", "o1"}, 2},
		{"status", sink.ConversionQuery{Status: sink.StatusApproved}, []string{"o3", "o1"}, 2},
		{"status pending", sink.ConversionQuery{Status: sink.StatusPending}, []string{"o6", "o4", "o2"}, 3},
		{"partner and status", sink.ConversionQuery{PartnerID: "alice", Status: sink.StatusRejected}, []string{"o5"}, 1},
		{"all four", sink.ConversionQuery{CampaignID: "k_hold", PartnerID: "alice", Status: sink.StatusApproved}, []string{"o3"}, 1},
		{"range: from inclusive, to exclusive", sink.ConversionQuery{FromMilli: ms(2 * time.Minute), ToMilli: ms(4 * time.Minute)}, []string{"o3", "o2"}, 2},
		{"range with filter", sink.ConversionQuery{PartnerID: "alice", FromMilli: ms(3 * time.Minute)}, []string{"o5", "o3"}, 2},
		{"range with page", sink.ConversionQuery{FromMilli: ms(2 * time.Minute), Limit: 1, Offset: 1}, []string{same[1]}, 5},
		{"empty range", sink.ConversionQuery{FromMilli: ms(4 * time.Minute), ToMilli: ms(4 * time.Minute)}, nil, 0},
		{"unknown status", sink.ConversionQuery{Status: "weird"}, nil, 0},
	}
	for _, tt := range tests {
		tt.q.MerchantID = "m1"
		page, err := f.s.ListConversions(tt.q)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var got []string
		for _, c := range page.Conversions {
			got = append(got, c.UniqueID)
		}
		if !reflect.DeepEqual(got, tt.want) || page.Total != tt.wantTotal {
			t.Errorf("%s: %v total %d, want %v total %d", tt.name, got, page.Total, tt.want, tt.wantTotal)
		}
	}
	for _, q := range []sink.ConversionQuery{{}, {MerchantID: "m1", Offset: -1}, {MerchantID: "m1", Limit: -1}, {MerchantID: "m1\x00k_last"}} {
		if _, err := f.s.ListConversions(q); err == nil {
			t.Errorf("%+v accepted", q)
		}
	}
	f.checkInvariants()
}

// TestCustomerEmailCrossDevice: Affilync's customer_email is "used for
// cross-device attribution". A conversion whose click made a partner's
// customer out of an email hash passes that partner on to a later
// conversion that carries only the same hash (another device, no click).
func TestCustomerEmailCrossDevice(t *testing.T) {
	f := newFixture(t)
	click := f.putClick(clickSpec{campaign: "k_last", partner: "alice"})
	affilync := func(at time.Duration, c sink.ConversionEvent) sink.Event {
		ev := f.conv(at, c)
		ev.Dialect = sink.DialectAffilync
		return ev
	}
	first := f.apply1(affilync(10*time.Minute, sink.ConversionEvent{UniqueID: "desktop", ClickID: click, CustomerEmailHash: "hash_jane", AmountMinor: 5000}))
	if c := first.Conversion; c == nil || c.AttributedBy != sink.ByClickID || c.PartnerID != "alice" {
		t.Fatalf("first conversion = %s %+v, want by click to alice", first.Outcome, first.Conversion)
	}
	if cu, ok, err := f.s.Customer("m1", "email:hash_jane"); err != nil || !ok || cu.PartnerID != "alice" {
		t.Fatalf("customer of the hash = %+v %v %v, want alice's", cu, ok, err)
	}
	tests := []struct {
		name                  string
		at                    time.Duration
		conv                  sink.ConversionEvent
		by, partner, campaign string
		commission            int64
	}{
		// Two days later, far outside the click's one-hour window.
		{"same hash on another device, no click", 48 * time.Hour,
			sink.ConversionEvent{UniqueID: "phone", CustomerEmailHash: "hash_jane", AmountMinor: 2000}, sink.ByCustomer, "alice", "k_last", 200},
		{"another hash is nobody's", 48 * time.Hour,
			sink.ConversionEvent{UniqueID: "other", CustomerEmailHash: "hash_john", AmountMinor: 2000}, sink.ByNone, "", "k_last", 0},
		{"no hash at all", 48 * time.Hour,
			sink.ConversionEvent{UniqueID: "anon", AmountMinor: 2000}, sink.ByNone, "", "k_last", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.apply1(affilync(tt.at, tt.conv))
			c := r.Conversion
			if r.Outcome != sink.OutcomeApplied || c == nil {
				t.Fatalf("outcome %s %v", r.Outcome, r.Error)
			}
			if g, w := []string{c.AttributedBy, c.PartnerID, c.CampaignID}, []string{tt.by, tt.partner, tt.campaign}; !reflect.DeepEqual(g, w) {
				t.Errorf("by, partner, campaign = %q, want %q", g, w)
			}
			if c.CommissionMinor != tt.commission || c.CustomerEmailHash != tt.conv.CustomerEmailHash {
				t.Errorf("commission %d hash %q, want %d %q", c.CommissionMinor, c.CustomerEmailHash, tt.commission, tt.conv.CustomerEmailHash)
			}
		})
	}
	// The same hash at another merchant is another customer.
	ev := f.conv(48*time.Hour, sink.ConversionEvent{UniqueID: "m2-order", CustomerEmailHash: "hash_jane", AmountMinor: 2000})
	ev.MerchantID, ev.ID, ev.Dialect = "m2", sink.EventID("m2", sink.KindConversion, "m2-order"), sink.DialectAffilync
	if r := f.apply1(ev); r.Conversion == nil || r.Conversion.AttributedBy != sink.ByNone || r.Conversion.PartnerID != "" {
		t.Errorf("m2 conversion with m1's customer hash = %s %+v, want unattributed", r.Outcome, r.Conversion)
	}
	f.checkInvariants()
}

// TestRefundReasonIsLedgerNote: the refund's reason ("Why the refund
// occurred") is the note of the ledger entry the refund books, before and
// after payment; a refund without one books an entry without a note.
func TestRefundReasonIsLedgerNote(t *testing.T) {
	f := newFixture(t)
	refund := func(unique string, amount int64, full bool, ext, reason string) sink.Event {
		return f.event("m1", time.Hour, sink.KindRefund, &sink.RefundEvent{UniqueID: unique, AmountMinor: amount, Full: full,
			ExternalRefundID: ext, Reason: reason, ReversePaidEarnings: true})
	}
	f.apply1(f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o1", PartnerKey: "ALICE", AmountMinor: 10000}))
	f.apply1(f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o2", PartnerKey: "ALICE", AmountMinor: 10000}))
	f.apply(f.status("o2", sink.StatusApproved), f.status("o2", sink.StatusPaid))
	for _, ev := range []sink.Event{
		refund("o1", 2500, false, "r1", "customer_request"),
		refund("o1", 0, true, "r2", ""),
		refund("o2", 0, true, "r3", "chargeback: card stolen"),
	} {
		if r := f.apply1(ev); r.Outcome != sink.OutcomeApplied {
			t.Fatalf("refund %s: %s %v", ev.ID, r.Outcome, r.Error)
		}
	}
	entries, err := f.s.Ledger("m1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Kind+" "+itoa(e.AmountMinor)+" "+e.Note)
	}
	want := []string{
		"commission 1000 ", "commission 1000 ", "payout -1000 paid",
		"reversal -250 customer_request", "reversal -750 ", "clawback -1000 chargeback: card stolen",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ledger = %q\nwant %q", got, want)
	}
	f.checkInvariants()
}

// TestStatusNoteStored: the note of an approval or rejection (Affilync
// PATCH "note") is kept on the conversion; a later status change without a
// note keeps it, one with a note replaces it.
func TestStatusNoteStored(t *testing.T) {
	f := newFixture(t)
	c := f.apply1(f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o1", PartnerKey: "ALICE", AmountMinor: 10000})).Conversion
	f.apply1(f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o2", PartnerKey: "ALICE", AmountMinor: 10000}))
	note := func(ref, status, note string) sink.Event {
		return f.event("m1", time.Hour, sink.KindStatus, &sink.StatusEvent{ConversionID: ref, Status: status, Note: note})
	}
	steps := []struct {
		name     string
		ev       sink.Event
		unique   string
		wantNote string
		status   string
	}{
		{"approve by conversion id with the document's note", note(c.ID, sink.StatusApproved, "Verified in our system"), "o1", "Verified in our system", sink.StatusApproved},
		{"pay without a note keeps it", note(c.ID, sink.StatusPaid, ""), "o1", "Verified in our system", sink.StatusPaid},
		{"reject by unique id with a note", f.event("m1", time.Hour, sink.KindStatus, &sink.StatusEvent{UniqueID: "o2", Status: sink.StatusRejected, Note: "duplicate order"}),
			"o2", "duplicate order", sink.StatusRejected},
	}
	for _, s := range steps {
		r := f.apply1(s.ev)
		if r.Outcome != sink.OutcomeApplied || r.Conversion.Note != s.wantNote {
			t.Errorf("%s: %s %v note %q, want applied with %q", s.name, r.Outcome, r.Error, r.Conversion.Note, s.wantNote)
			continue
		}
		if got := f.record(s.unique); got.Note != s.wantNote || got.Status != s.status {
			t.Errorf("%s: stored note %q status %s, want %q %s", s.name, got.Note, got.Status, s.wantNote, s.status)
		}
	}
	f.checkInvariants()
}

// TestFirstClickChainBound: first-click attribution follows the visitor's
// cookie history (PrevClickID) at most maxClickChain steps back, so a
// history of any length costs a bounded number of reads.
func TestFirstClickChainBound(t *testing.T) {
	if maxClickChain != 16 {
		t.Fatalf("maxClickChain = %d, the documented bound is 16", maxClickChain)
	}
	tests := []struct {
		name        string
		clicks      int // in the chain, the conversion names the newest
		wantPartner string
		wantIndex   int // of the click credited, 0 the oldest
	}{
		{"16 steps back reach the oldest click", 17, "alice", 0},
		{"the 17th step is not taken", 18, "bob", 1},
		{"a long history stops after 16 steps", 40, "carol", 40 - 1 - 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ids := make([]string, tt.clicks)
			for i := range ids {
				partner := "carol"
				switch i {
				case 0:
					partner = "alice"
				case 1:
					partner = "bob"
				}
				c := clickSpec{campaign: "k_first", partner: partner, at: time.Duration(i) * time.Second}
				if i > 0 {
					c.prev = ids[i-1]
				}
				ids[i] = f.putClick(c)
			}
			r := f.apply1(f.conv(30*time.Minute, sink.ConversionEvent{ClickID: ids[len(ids)-1], AmountMinor: 1000}))
			c := r.Conversion
			if r.Outcome != sink.OutcomeApplied || c == nil {
				t.Fatalf("outcome %s %v", r.Outcome, r.Error)
			}
			if c.AttributedBy != sink.ByClickID || c.ClickID != ids[tt.wantIndex] || c.PartnerID != tt.wantPartner || c.CampaignID != "k_first" {
				idx := slices.Index(ids, c.ClickID)
				t.Errorf("by %s click #%d partner %s campaign %s, want click_id #%d %s k_first", c.AttributedBy, idx, c.PartnerID, c.CampaignID, tt.wantIndex, tt.wantPartner)
			}
		})
	}
}
