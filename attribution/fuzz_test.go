package attribution

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clickedge/clickedge/sink"
)

var errRollback = errors.New("rollback")

// FuzzApplyEvents decodes each line of the input with sink.DecodeEvent, as
// the worker decodes messages, and applies the decodable events to a store
// that already holds conversions in every state, customers and clicks. Any
// decodable event must leave the engine standing and every invariant of
// checkInvariants true; every result must be well formed; applying the
// same events again must change nothing. Each input runs in a transaction
// that is rolled back, so inputs do not see each other.
func FuzzApplyEvents(f *testing.F) {
	minter := testMinter(f, testSecret)
	g := newGenerator(f, 7, minter)
	prologue := g.sequence(80)
	for i := 0; i < 40; i += 4 {
		var seed bytes.Buffer
		for _, ev := range g.sequence(4) {
			b, _ := json.Marshal(ev)
			seed.Write(b)
			seed.WriteByte('\n')
		}
		f.Add(seed.Bytes())
	}
	for _, s := range []string{
		`{"v":1,"id":"m1:conversion:x","kind":"conversion","ts":-9223372036854775808,"dialect":"partnac","merchant_id":"m1","conversion":{"unique_id":"x","type":"lead","amount_minor":1000000000000000,"campaign_id":"k_hold","partner_key":"ALICE","customer_id":"c1"}}`,
		`{"v":1,"id":"m1:refund:o3","kind":"refund","ts":9223372036854775807,"dialect":"partnac","merchant_id":"m1","refund":{"unique_id":"o3","full":true,"reverse_paid_earnings":true}}`,
		`{"v":1,"id":"m1:update:o3","kind":"update","ts":1,"dialect":"partnac","merchant_id":"m1","update":{"unique_id":"o3","amount_minor":9223372036854775807,"recalculate":true,"metadata":{"a":[1,2]}}}`,
		`{"v":1,"id":"m1:status:o3","kind":"status","ts":1,"dialect":"admin","merchant_id":"m1","status":{"conversion_id":"` + ConversionID("m1", "o3") + `","status":"paid"}}`,
		`{"v":1,"id":"m2:customer:c1","kind":"customer","ts":1,"dialect":"partnero","merchant_id":"m2","customer":{"key":"c1","referring_customer_key":"c1","partner_id":"zed"}}`,
		`{"v":1,"id":"m1:balance_credit:c1","kind":"balance_credit","ts":1,"dialect":"partnero","merchant_id":"m1","credit":{"customer_key":"c1","amount_minor":-5,"currency":"JPY"}}`,
		"{\"v\":1,\"id\":\"m\\u0000\",\"kind\":\"conversion\",\"ts\":1,\"merchant_id\":\"m1\\u0000\",\"conversion\":{\"unique_id\":\"\\u0000\"}}",
	} {
		f.Add([]byte(s))
	}
	fx := newFixture(f)
	if _, err := fx.s.PutClicks(g.clicks); err != nil {
		f.Fatal(err)
	}
	fx.apply(prologue...)
	if err := fx.s.db.View(checkInvariants); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var evs []sink.Event
		for _, line := range bytes.Split(data, []byte("\n")) {
			if ev, err := sink.DecodeEvent(line); err == nil {
				evs = append(evs, ev)
			}
		}
		if len(evs) == 0 {
			return
		}
		err := fx.s.db.Update(func(tx *bolt.Tx) error {
			a := &applier{tx: tx, idx: fx.idx, minter: fx.minter}
			for i := range evs {
				r, err := a.apply(&evs[i])
				if err != nil {
					return fmt.Errorf("event %d: %w", i, err)
				}
				if err := checkResult(&evs[i], r); err != nil {
					return fmt.Errorf("event %d: %w", i, err)
				}
			}
			if err := a.flush(); err != nil {
				return err
			}
			if err := checkInvariants(tx); err != nil {
				return err
			}
			before := dumpTx(tx)
			for i := range evs {
				r, err := a.apply(&evs[i])
				if err != nil {
					return fmt.Errorf("event %d again: %w", i, err)
				}
				if r.outcome != sink.OutcomeDuplicate && r.outcome != sink.OutcomeRejected {
					return fmt.Errorf("event %d applied twice: %s", i, r.outcome)
				}
			}
			if err := a.flush(); err != nil {
				return err
			}
			if after := dumpTx(tx); !reflect.DeepEqual(before, after) {
				return errors.New("applying the same events again changed the store")
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
	})
}

// checkResult checks that a result is well formed for its event.
func checkResult(ev *sink.Event, r applied) error {
	res := r.result
	switch res.Outcome {
	case sink.OutcomeApplied, sink.OutcomeDuplicate, sink.OutcomeIgnored:
		if res.Error != nil {
			return fmt.Errorf("%s result with error %v", res.Outcome, res.Error)
		}
	case sink.OutcomeRejected:
		if res.Error == nil || res.Error.Code == "" {
			return errors.New("rejected result without an error code")
		}
	default:
		return fmt.Errorf("outcome %q", res.Outcome)
	}
	if res.EventID != ev.ID {
		return fmt.Errorf("result of event %q names %q", ev.ID, res.EventID)
	}
	if c := res.Conversion; c != nil && c.MerchantID != ev.MerchantID {
		return fmt.Errorf("event of %q answered with a conversion of %q", ev.MerchantID, c.MerchantID)
	}
	if c := res.Customer; c != nil && c.MerchantID != ev.MerchantID {
		return fmt.Errorf("event of %q answered with a customer of %q", ev.MerchantID, c.MerchantID)
	}
	if res.Outcome == sink.OutcomeApplied && ev.Kind == sink.KindConversion && (res.Conversion == nil || res.Conversion.Status != sink.StatusPending) {
		return fmt.Errorf("applied conversion without a pending record: %+v", res.Conversion)
	}
	return nil
}

// BenchmarkApplyConversions applies batches of 100 new click-attributed
// conversions, the worker's steady state.
func BenchmarkApplyConversions(b *testing.B) {
	fx := newFixture(b)
	var clicks []sink.Click
	for i := range 100 {
		ts := base.Add(time.Duration(i) * time.Second)
		clicks = append(clicks, sink.Click{V: sink.ClickVersion, ID: fx.minter.New(ts), TS: ts.UnixMilli(),
			MerchantID: "m1", CampaignID: "k_last", PartnerID: []string{"alice", "bob"}[i%2]})
	}
	if _, err := fx.s.PutClicks(clicks); err != nil {
		b.Fatal(err)
	}
	const batch = 100
	evs := make([]sink.Event, batch)
	convs := make([]sink.ConversionEvent, batch)
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		for i := range evs {
			n++
			u := fmt.Sprintf("order-%d", n)
			convs[i] = sink.ConversionEvent{UniqueID: u, Type: "sale", AmountMinor: 9999, ClickID: clicks[n%len(clicks)].ID, CustomerID: fmt.Sprintf("c%d", n%50)}
			evs[i] = sink.Event{V: sink.EventVersion, ID: sink.EventID("m1", sink.KindConversion, u), Kind: sink.KindConversion,
				TS: base.Add(10 * time.Minute).UnixMilli(), Dialect: sink.DialectAffilync, MerchantID: "m1", Conversion: &convs[i]}
		}
		if _, err := fx.s.applyEvents(fx.idx, fx.minter, evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/conversion")
}
