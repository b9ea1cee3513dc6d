package attribution

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/clickedge/clickedge/money"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// generator makes random but reproducible sequences of merchant events
// over the engine catalog: conversions attributed every way, duplicates,
// replays of earlier events, updates, refunds, status changes, customers
// and credits, mostly of merchant m1 and some of m2 reaching for m1's ids.
type generator struct {
	rng    *rand.Rand
	clicks []sink.Click
	// clickIDs are the click ids a conversion may name, valid or not.
	clickIDs []string
	uniques  []string
	amounts  map[string]int64
	events   []sink.Event
	// published counts how often each event id was published (rebuild test).
	published map[string]int
	n         int
	ts        int64
}

func newGenerator(t testing.TB, seed uint64, minter *redirect.Minter) *generator {
	g := &generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), amounts: map[string]int64{},
		published: map[string]int{}, ts: base.Add(5 * time.Minute).UnixMilli()}
	foreign := testMinter(t, otherSecret)
	specs := []clickSpec{
		{campaign: "k_last", partner: "alice"}, {campaign: "k_last", partner: "alice", at: time.Minute},
		{campaign: "k_last", partner: "bob", at: 2 * time.Minute}, {campaign: "k_first", partner: "carol", at: 3 * time.Minute},
		{campaign: "k_first", partner: "bob", at: 4 * time.Minute}, {campaign: "k_last", partner: "alice", bot: true},
		{campaign: "k_last", partner: "bob", forged: true}, {merchant: "m2", campaign: "k2", partner: "zed"},
		{orphan: true, at: time.Minute},
	}
	var prev string
	for i, s := range specs {
		m, merchant := minter, "m1"
		if s.forged {
			m = foreign
		}
		if s.merchant != "" {
			merchant = s.merchant
		}
		ts := base.Add(s.at)
		c := sink.Click{V: sink.ClickVersion, ID: m.New(ts), TS: ts.UnixMilli(), Source: sink.SourceRedirect,
			MerchantID: merchant, CampaignID: s.campaign, PartnerID: s.partner, Bot: s.bot, Orphan: s.orphan, Forged: s.forged}
		if i == 4 {
			c.PrevClickID = prev // bob's k_first click follows carol's
		}
		prev = c.ID
		g.clicks = append(g.clicks, c)
		g.clickIDs = append(g.clickIDs, c.ID)
	}
	g.clickIDs = append(g.clickIDs, minter.New(base), "clk_abc123")
	return g
}

func pick[T any](g *generator, xs ...T) T { return xs[g.rng.IntN(len(xs))] }

func (g *generator) sequence(n int) []sink.Event {
	start := len(g.events)
	for range n {
		g.events = append(g.events, g.next())
	}
	return g.events[start:]
}

func (g *generator) next() sink.Event {
	r := g.rng
	g.ts += r.Int64N(20 * 60 * 1000)
	if r.IntN(25) == 0 {
		g.ts += 40 * 24 * 3600 * 1000 // past windows and recurring months
	}
	g.n++
	merchant := "m1"
	if r.IntN(10) == 0 {
		merchant = "m2"
	}
	ev := sink.Event{V: sink.EventVersion, TS: g.ts, Dialect: pick(g, sink.DialectPartnac, sink.DialectAffilync, sink.DialectAdmin), MerchantID: merchant}
	key := fmt.Sprintf("g%d", g.n)
	switch k := r.IntN(100); {
	case k < 5 && len(g.events) > 0:
		return g.events[r.IntN(len(g.events))] // the same event again
	case k < 40:
		ev.Kind, ev.Conversion = sink.KindConversion, g.conversion(&ev)
		key = ev.Conversion.UniqueID
		if k < 9 && len(g.uniques) > 0 {
			// The same order again under another event id.
			ev.Conversion.UniqueID = pick(g, g.uniques...)
		}
	case k < 52:
		u := &sink.UpdateEvent{UniqueID: g.ref(), Recalculate: r.IntN(2) == 0}
		if r.IntN(3) > 0 {
			a := r.Int64N(2*g.amounts[u.UniqueID] + 10)
			u.AmountMinor = &a
		}
		switch r.IntN(4) {
		case 0:
			u.Metadata = json.RawMessage(fmt.Sprintf(`{"k%d": %d}`, r.IntN(3), r.IntN(100)))
		case 1:
			u.Metadata = json.RawMessage(`"not an object"`)
		}
		ev.Kind, ev.Update = sink.KindUpdate, u
	case k < 70:
		ref := g.ref()
		rf := &sink.RefundEvent{UniqueID: ref, Full: r.IntN(4) == 0, ReversePaidEarnings: r.IntN(3) > 0,
			ExternalRefundID: pick(g, "", "", "r1", "r2", "r3")}
		if !rf.Full {
			rf.AmountMinor = r.Int64N(g.amounts[ref]*3/4+2) - 1 // sometimes 0 or -1, sometimes over
		}
		ev.Kind, ev.Refund = sink.KindRefund, rf
	case k < 88:
		st := &sink.StatusEvent{Status: pick(g, sink.StatusApproved, sink.StatusApproved, sink.StatusRejected, sink.StatusPaid, sink.StatusPaid, sink.StatusPending)}
		if ref := g.ref(); r.IntN(2) == 0 {
			st.UniqueID = ref
		} else {
			st.ConversionID = ConversionID("m1", ref)
		}
		ev.Kind, ev.Status = sink.KindStatus, st
	case k < 94:
		ev.Kind, ev.Dialect = sink.KindCustomer, sink.DialectPartnero
		ev.Customer = &sink.CustomerEvent{Key: pick(g, "c1", "c2", "c3", "c4", "c5", "n1"), PartnerKey: pick(g, "", "ALICE", "BOB", "NOPE"),
			ReferringCustomerKey: pick(g, "", "", "c1", "c2"), Name: pick(g, "", "Ann")}
	default:
		ev.Kind, ev.Dialect = sink.KindCredit, sink.DialectPartnero
		ev.Credit = &sink.CreditEvent{CustomerKey: pick(g, "c1", "c2", "c3", "ghost"), AmountMinor: r.Int64N(10000), Currency: pick(g, "", "", "USD", "EUR")}
	}
	ev.ID = sink.EventID(merchant, ev.Kind, key)
	return ev
}

// ref names an existing conversion of m1 (mostly) or an unknown one.
func (g *generator) ref() string {
	if len(g.uniques) == 0 || g.rng.IntN(12) == 0 {
		return "unknown"
	}
	return pick(g, g.uniques...)
}

func (g *generator) conversion(ev *sink.Event) *sink.ConversionEvent {
	r := g.rng
	u := fmt.Sprintf("o%d", g.n)
	c := &sink.ConversionEvent{
		UniqueID: u, Type: pick(g, "sale", "sale", "sale", "lead", "subscription", "custom", ""),
		Currency:   pick(g, "", "", "", "USD", "EUR", "usd"),
		CampaignID: pick(g, "", "", "k_last", "k_first", "k_hold", "k_eur", "k_once", "k2"),
		CouponCode: pick(g, "", "", "", "ALICE10", "BOBBY", "ZED1"),
		PartnerKey: pick(g, "", "ALICE", "BOB", "CAROL", "NOPE"),
		CustomerID: pick(g, "", "", "c1", "c2", "c3", "c4", "c5"), CustomerEmailHash: pick(g, "", "", "h1"),
		ProductID: pick(g, "", "", "p1"), ProductType: pick(g, "", "premium"),
	}
	switch r.IntN(10) {
	case 0:
		c.AmountMinor = 0
	case 1:
		c.AmountMinor = r.Int64N(money.MaxMinor) + 1
	case 2:
		c.AmountMinor = -1
	default:
		c.AmountMinor = r.Int64N(100000) + 1
	}
	if r.IntN(2) == 0 {
		c.ClickID = pick(g, g.clickIDs...)
	}
	if r.IntN(3) == 0 {
		c.CookieClickID = pick(g, g.clickIDs...)
	}
	switch r.IntN(5) {
	case 0:
		ev.Dialect = sink.DialectPixel
		c.ClientReported = true
	case 1:
		ev.Dialect = sink.DialectPartnero
		c.CreateCustomer = r.IntN(2) == 0
	}
	if ev.MerchantID == "m1" && c.AmountMinor >= 0 {
		g.uniques = append(g.uniques, u)
		g.amounts[u] = c.AmountMinor
	}
	return c
}

// TestPropertyLedger applies a few hundred random sequences and checks
// after every event that the ledger sums to every balance and commission
// and that no refund reverses more than was earned; then that replaying
// each sequence into an empty store, in other batches, reproduces the store
// exactly, and that replaying it into the full store changes nothing.
func TestPropertyLedger(t *testing.T) {
	sequences := 300
	switch {
	case testing.Short():
		sequences = 40
	case raceEnabled:
		sequences = 100
	}
	minter := testMinter(t, testSecret)
	for seq := range sequences {
		g := newGenerator(t, uint64(seq), minter)
		events := g.sequence(20 + seq%25)
		f := newFixture(t)
		if _, err := f.s.PutClicks(g.clicks); err != nil {
			t.Fatal(err)
		}
		for i, ev := range events {
			var before sink.ConversionRecord
			var had bool
			if ev.Kind == sink.KindRefund {
				before, had, _ = f.s.Conversion(ev.MerchantID, ev.Refund.UniqueID)
			}
			r := f.apply1(ev)
			if err := f.s.db.View(checkInvariants); err != nil {
				t.Fatalf("sequence %d, event %d (%s %s): %v", seq, i, ev.Kind, ev.ID, err)
			}
			if ev.Kind == sink.KindRefund && r.Outcome == sink.OutcomeApplied && had {
				after := r.Conversion
				if after.CommissionMinor > before.CommissionMinor || after.CommissionMinor < 0 {
					t.Fatalf("sequence %d, event %d: refund took commission from %d to %d", seq, i, before.CommissionMinor, after.CommissionMinor)
				}
				if after.RefundedMinor > after.AmountMinor {
					t.Fatalf("sequence %d, event %d: refunded %d of %d", seq, i, after.RefundedMinor, after.AmountMinor)
				}
			}
		}
		want := snapshot(t, f.s)

		// Into an empty store, in random batches: exactly the same.
		f2 := newFixture(t)
		if _, err := f2.s.PutClicks(g.clicks); err != nil {
			t.Fatal(err)
		}
		for rest := events; len(rest) > 0; {
			n := 1 + g.rng.IntN(len(rest))
			f2.apply(rest[:n]...)
			rest = rest[n:]
		}
		if got := snapshot(t, f2.s); !reflect.DeepEqual(got, want) {
			for b := range want {
				if !reflect.DeepEqual(got[b], want[b]) {
					t.Errorf("sequence %d: bucket %s differs after replay into an empty store", seq, b)
				}
			}
			t.FailNow()
		}
		// Into the full store: nothing changes.
		f.apply(events...)
		if got := snapshot(t, f.s); !reflect.DeepEqual(got, want) {
			t.Fatalf("sequence %d: replaying into the full store changed it", seq)
		}
	}
}
