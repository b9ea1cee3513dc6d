package attribution

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/clickedge/clickedge/sink"
)

// pixel builds a browser pixel's conversion event of m1 at base+at, under
// the pixel's own event key space ("pixel:" + order id), as the edge does.
func (f *fixture) pixel(at time.Duration, c sink.ConversionEvent) sink.Event {
	ev := f.conv(at, c)
	ev.ID = sink.EventID("m1", sink.KindConversion, "pixel:"+ev.Conversion.UniqueID)
	ev.Dialect = sink.DialectPixel
	ev.Conversion.ClientReported = true
	return ev
}

// ledgerSum sums every entry of a partner's account.
func (f *fixture) ledgerSum(partner string) int64 {
	f.t.Helper()
	entries, err := f.s.Ledger("m1", partner)
	if err != nil {
		f.t.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		n += e.AmountMinor
	}
	return n
}

func (f *fixture) checkLedgerSums(partners ...string) {
	f.t.Helper()
	for _, p := range partners {
		if b, _ := f.balance(p); b != f.ledgerSum(p) {
			f.t.Errorf("%s: balance %d, ledger sums to %d", p, b, f.ledgerSum(p))
		}
	}
}

func (f *fixture) listed() int {
	f.t.Helper()
	page, err := f.s.ListConversions(sink.ConversionQuery{MerchantID: "m1"})
	if err != nil {
		f.t.Fatal(err)
	}
	return page.Total
}

// A forged pixel hit for an order, first, with another amount and partner:
// the merchant's authenticated report replaces it.
func TestSupersedePixelThenS2S(t *testing.T) {
	f := newFixture(t)
	click := f.putClick(clickSpec{campaign: "k_last", partner: "alice"})
	forged := f.pixel(5*time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 1_000_000,
		PartnerKey: "BOB", CampaignID: "k_hold"})
	pr := f.apply1(forged)
	if pr.Outcome != sink.OutcomeApplied || pr.Conversion.PartnerID != "bob" || pr.Conversion.CommissionMinor != 100_000 {
		t.Fatalf("forged pixel = %+v", pr)
	}
	if holds, _ := f.s.dueHolds(1<<62, 10); len(holds) != 1 {
		t.Fatalf("forged pixel holds = %v, want 1", holds)
	}
	id := pr.Conversion.ID

	s2s := f.conv(10*time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 10_000, ClickID: click})
	r := f.apply1(s2s)
	if r.Outcome != sink.OutcomeApplied {
		t.Fatalf("authenticated report after a pixel = %+v, want applied", r)
	}
	c := r.Conversion
	switch {
	case c.ID != id || c.UniqueID != "o1":
		t.Errorf("id %s / %s, want %s / o1", c.ID, c.UniqueID, id)
	case c.AmountMinor != 10_000 || c.CommissionMinor != 1000 || c.PartnerID != "alice" || c.CampaignID != "k_last":
		t.Errorf("superseding conversion = %+v, want alice on k_last, 10000 earning 1000", c)
	case c.AttributedBy != sink.ByClickID || c.ClickID != click || c.Dialect != sink.DialectPartnac:
		t.Errorf("superseding conversion attributed %s by %s (%s)", c.AttributedBy, c.ClickID, c.Dialect)
	case c.Status != sink.StatusPending || c.CreatedAt != s2s.TS:
		t.Errorf("status %s created %d", c.Status, c.CreatedAt)
	case !slices.Contains(c.Flags, FlagSupersededClientReport) || slices.Contains(c.Flags, FlagClientReported):
		t.Errorf("flags = %q", c.Flags)
	}
	if got := f.record("o1"); !reflect.DeepEqual(got, *c) {
		t.Errorf("stored = %+v, answered %+v", got, *c)
	}
	if got, want := f.ledgerOf("bob", id), []string{"commission 100000", "reversal -100000"}; !reflect.DeepEqual(got, want) {
		t.Errorf("bob's ledger = %q, want %q", got, want)
	}
	if got, want := f.ledgerOf("alice", id), []string{"commission 1000"}; !reflect.DeepEqual(got, want) {
		t.Errorf("alice's ledger = %q, want %q", got, want)
	}
	if b, _ := f.balance("bob"); b != 0 {
		t.Errorf("bob keeps %d", b)
	}
	if b, _ := f.balance("alice"); b != 1000 {
		t.Errorf("alice has %d, want 1000", b)
	}
	f.checkLedgerSums("alice", "bob")
	if n := f.listed(); n != 1 {
		t.Errorf("%d conversions listed, want 1", n)
	}
	for _, q := range []sink.ConversionQuery{{MerchantID: "m1", PartnerID: "bob"}, {MerchantID: "m1", CampaignID: "k_hold"}} {
		if page, _ := f.s.ListConversions(q); page.Total != 0 || len(page.Conversions) != 0 {
			t.Errorf("%+v still lists the replaced conversion: %+v", q, page)
		}
	}
	if page, _ := f.s.ListConversions(sink.ConversionQuery{MerchantID: "m1", PartnerID: "alice", Status: sink.StatusPending}); page.Total != 1 {
		t.Errorf("alice's pending listing = %d, want 1", page.Total)
	}
	if holds, _ := f.s.dueHolds(1<<62, 10); len(holds) != 0 {
		t.Errorf("the replaced conversion's hold remains: %v", holds)
	}
	f.checkInvariants()

	// The pixel's stored result is untouched; repeats change nothing.
	before := snapshot(t, f.s)
	if r := f.apply1(forged); r.Outcome != sink.OutcomeApplied || r.Conversion.PartnerID != "bob" {
		t.Errorf("repeat of the pixel event = %+v, want its stored result", r)
	}
	if r := f.apply1(s2s); r.Outcome != sink.OutcomeApplied || r.Conversion.PartnerID != "alice" {
		t.Errorf("repeat of the report = %+v, want its stored result", r)
	}
	again := f.pixel(20*time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 5, PartnerKey: "BOB"})
	again.ID += "#2"
	if r := f.apply1(again); r.Outcome != sink.OutcomeDuplicate || r.Conversion.PartnerID != "alice" {
		t.Errorf("pixel after the report = %+v, want duplicate", r)
	}
	other := f.conv(30*time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 7, PartnerKey: "BOB"})
	other.ID += "#postback"
	if r := f.apply1(other); r.Outcome != sink.OutcomeDuplicate {
		t.Errorf("second authenticated report = %+v, want duplicate", r)
	}
	after := snapshot(t, f.s)
	delete(before, string(bucketEvents))
	delete(after, string(bucketEvents))
	if !reflect.DeepEqual(after, before) {
		t.Errorf("duplicates changed the store")
	}
	f.checkInvariants()
}

// A pixel after the merchant's report is a duplicate and changes nothing.
func TestSupersedeS2SThenPixel(t *testing.T) {
	f := newFixture(t)
	first := f.apply1(f.conv(time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 10_000, PartnerKey: "ALICE"}))
	before := snapshot(t, f.s)
	r := f.apply1(f.pixel(2*time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 1, PartnerKey: "BOB"}))
	if r.Outcome != sink.OutcomeDuplicate || !reflect.DeepEqual(r.Conversion, first.Conversion) {
		t.Errorf("pixel after the report = %+v, want duplicate of %+v", r, first.Conversion)
	}
	after := snapshot(t, f.s)
	delete(before, string(bucketEvents))
	delete(after, string(bucketEvents))
	if !reflect.DeepEqual(after, before) {
		t.Errorf("a duplicate pixel changed the store")
	}
	if b, _ := f.balance("alice"); b != 1000 {
		t.Errorf("alice has %d, want 1000", b)
	}
	f.checkLedgerSums("alice", "bob")
	f.checkInvariants()
}

// Two pixel hits for one order: one conversion, the first.
func TestSupersedePixelThenPixel(t *testing.T) {
	f := newFixture(t)
	p1 := f.pixel(time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 10_000, PartnerKey: "ALICE"})
	first := f.apply1(p1)
	if first.Outcome != sink.OutcomeApplied {
		t.Fatalf("pixel = %+v", first)
	}
	before := snapshot(t, f.s)
	// The same pixel event id (the gif and the fetch endpoint, or a reload).
	p2 := f.pixel(2*time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 99, PartnerKey: "BOB"})
	// The event id dedupes: the first hit's stored result comes back.
	if r := f.apply1(p2); !reflect.DeepEqual(r, first) {
		t.Errorf("second pixel hit = %+v, want the first's result %+v", r, first)
	}
	// A client-reported event under another id: still a duplicate.
	p3 := f.pixel(3*time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 99, PartnerKey: "BOB"})
	p3.ID += "#other"
	if r := f.apply1(p3); r.Outcome != sink.OutcomeDuplicate || !reflect.DeepEqual(r.Conversion, first.Conversion) {
		t.Errorf("client-reported event under another id = %+v, want duplicate", r)
	}
	after := snapshot(t, f.s)
	delete(before, string(bucketEvents))
	delete(after, string(bucketEvents))
	if !reflect.DeepEqual(after, before) {
		t.Errorf("a duplicate pixel changed the store")
	}
	f.checkLedgerSums("alice", "bob")
	f.checkInvariants()
}

// Once the pixel's conversion left pending (or the merchant refunded it),
// the report is a duplicate.
func TestSupersedeOnlyWhilePending(t *testing.T) {
	for _, status := range []string{sink.StatusApproved, sink.StatusRejected, "refunded"} {
		t.Run(status, func(t *testing.T) {
			f := newFixture(t)
			p := f.apply1(f.pixel(time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 10_000, PartnerKey: "BOB"}))
			ev := f.refund("o1", 100, false, "r1", false)
			if status != "refunded" {
				ev = f.status("o1", status)
			}
			if r := f.apply1(ev); r.Outcome != sink.OutcomeApplied {
				t.Fatalf("%s: %+v", status, r)
			}
			before := snapshot(t, f.s)
			rec := f.record("o1")
			r := f.apply1(f.conv(2*time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 50_000, PartnerKey: "ALICE"}))
			if r.Outcome != sink.OutcomeDuplicate || !reflect.DeepEqual(*r.Conversion, rec) || r.Conversion.ID != p.Conversion.ID {
				t.Errorf("report after %s = %+v, want duplicate of %+v", status, r, rec)
			}
			after := snapshot(t, f.s)
			delete(before, string(bucketEvents))
			delete(after, string(bucketEvents))
			if !reflect.DeepEqual(after, before) {
				t.Errorf("a duplicate report changed the store")
			}
			if b, _ := f.balance("alice"); b != 0 {
				t.Errorf("alice earned %d", b)
			}
			f.checkLedgerSums("alice", "bob")
			f.checkInvariants()
		})
	}
}

// A recalculated pixel conversion is superseded entry by entry,
// and a replay of the stream into an empty store, in one batch or in
// another split, gives exactly the same store.
func TestSupersedeReplay(t *testing.T) {
	f := newFixture(t)
	click := f.putClick(clickSpec{campaign: "k_last", partner: "alice"})
	amount := int64(20_000)
	pixelAgain := f.pixel(11*time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 3, PartnerKey: "BOB"})
	pixelAgain.ID += "#again"
	events := []sink.Event{
		f.pixel(5*time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 1_000_000, PartnerKey: "BOB", CampaignID: "k_hold"}),
		f.event("m1", time.Hour, sink.KindUpdate, &sink.UpdateEvent{UniqueID: "o1", AmountMinor: &amount, Recalculate: true}),
		f.conv(10*time.Minute, sink.ConversionEvent{UniqueID: "o1", AmountMinor: 10_000, ClickID: click}),
		pixelAgain,
		f.pixel(5*time.Minute, sink.ConversionEvent{UniqueID: "o2", AmountMinor: 1000, PartnerKey: "CAROL"}),
		f.status("o2", sink.StatusApproved),
		f.conv(6*time.Minute, sink.ConversionEvent{UniqueID: "o2", AmountMinor: 9000, PartnerKey: "ALICE"}),
		f.pixel(5*time.Minute, sink.ConversionEvent{UniqueID: "o3", AmountMinor: 3000, PartnerKey: "CAROL"}),
		f.conv(7*time.Minute, sink.ConversionEvent{UniqueID: "o3", AmountMinor: 4000}),
	}
	want := []string{sink.OutcomeApplied, sink.OutcomeApplied, sink.OutcomeApplied, sink.OutcomeDuplicate,
		sink.OutcomeApplied, sink.OutcomeApplied, sink.OutcomeDuplicate, sink.OutcomeApplied, sink.OutcomeApplied}
	for i, ev := range events {
		if r := f.apply1(ev); r.Outcome != want[i] {
			t.Errorf("event %d (%s): %+v, want %s", i, ev.ID, r, want[i])
		}
	}
	id := ConversionID("m1", "o1")
	if got, want := f.ledgerOf("bob", id), []string{"commission 100000", "adjustment -98000",
		"reversal -100000", "reversal 98000"}; !reflect.DeepEqual(got, want) {
		t.Errorf("bob's ledger = %q, want %q", got, want)
	}
	if c := f.record("o1"); c.PartnerID != "alice" || c.CommissionMinor != 1000 || c.RefundedMinor != 0 || c.AmountMinor != 10_000 {
		t.Errorf("o1 = %+v", c)
	}
	if c := f.record("o3"); c.PartnerID != "" || c.CommissionMinor != 0 || !slices.Contains(c.Flags, FlagSupersededClientReport) {
		t.Errorf("o3 = %+v, want unattributed and superseded", c)
	}
	if b, _ := f.balance("bob"); b != 0 {
		t.Errorf("bob keeps %d", b)
	}
	if o2 := f.record("o2"); o2.PartnerID != "carol" || o2.AmountMinor != 1000 || o2.Status != sink.StatusApproved {
		t.Errorf("o2 = %+v, want carol's approved pixel conversion", o2)
	} else if b, _ := f.balance("carol"); b != o2.CommissionMinor {
		t.Errorf("carol has %d, want o2's %d (o3's reversed)", b, o2.CommissionMinor)
	}
	f.checkLedgerSums("alice", "bob", "carol")
	f.checkInvariants()
	snap := snapshot(t, f.s)

	cl, ok, err := f.s.Click(click)
	if err != nil || !ok {
		t.Fatalf("click: %v %v", ok, err)
	}
	for _, split := range []int{len(events), 1, 4} {
		f2 := newFixture(t)
		if _, err := f2.s.PutClicks([]sink.Click{cl}); err != nil {
			t.Fatal(err)
		}
		for rest := events; len(rest) > 0; {
			n := min(split, len(rest))
			f2.apply(rest[:n]...)
			rest = rest[n:]
		}
		if got := snapshot(t, f2.s); !reflect.DeepEqual(got, snap) {
			for b := range snap {
				if !reflect.DeepEqual(got[b], snap[b]) {
					t.Errorf("batches of %d: bucket %s differs after replay into an empty store", split, b)
				}
			}
		}
		f2.checkInvariants()
	}
	// Into the full store: nothing changes.
	f.apply(events...)
	if got := snapshot(t, f.s); !reflect.DeepEqual(got, snap) {
		t.Errorf("replaying into the full store changed it")
	}
}
