package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/enrich"
	"github.com/clickedge/clickedge/geo"
	"github.com/clickedge/clickedge/money"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// partnacNow is the edge clock of the conversion tests, so that event
// timestamps and the simulated worker's created_at are reproducible.
var partnacNow = time.Date(2025, 3, 14, 9, 26, 53, 589_000_000, time.UTC)

// partnacUpdateGolden reports whether -update was given. The flag is shared
// by every dialect's golden tests of the package, so it is defined only if
// no other test file defined it first.
var partnacUpdateGolden = partnacUpdateFlag()

func partnacUpdateFlag() func() bool {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files under testdata/")
	}
	return func() bool {
		g, ok := flag.Lookup("update").Value.(flag.Getter)
		if !ok {
			return false
		}
		v, _ := g.Get().(bool)
		return v
	}
}

// partnacGeo is a geo database that knows one address.
type partnacGeo struct{}

func (partnacGeo) Lookup(ip netip.Addr) geo.Location {
	if ip == netip.MustParseAddr("203.0.113.9") {
		return geo.Location{Country: "DE", Region: "BE", City: "Berlin"}
	}
	return geo.Location{}
}

// partnacSim is the fake backend playing a minimal worker: in auto mode it
// applies the events the edge committed (read back from the outbox) to its
// conversions, so that responses show what the request carried. Results put
// in results by a test win; with auto off every unscripted event is pending.
type partnacSim struct {
	*fakeBackend
	s    *Server
	auto bool             // guarded by mu
	seq  int              // guarded by mu
	base map[string]int64 // commission before refunds by merchant/unique id; guarded by mu
	// peeked is the outbox sequence read up to; guarded by mu.
	peeked uint64
}

func (f *partnacSim) setAuto(v bool) {
	f.mu.Lock()
	f.auto = v
	f.mu.Unlock()
}

func (f *partnacSim) setDown(v bool) {
	f.mu.Lock()
	f.down = v
	f.mu.Unlock()
}

func (f *partnacSim) script(eventID string, r sink.EventResult) {
	f.mu.Lock()
	f.results[eventID] = r
	f.mu.Unlock()
}

func (f *partnacSim) add(recs ...sink.ConversionRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range recs {
		f.conversions = append(f.conversions, r)
		f.base[r.MerchantID+"/"+r.UniqueID] = r.CommissionMinor
	}
}

// Conversion is the fake's read, failing like the other calls when the
// worker is down.
func (f *partnacSim) Conversion(ctx context.Context, merchantID, ref string) (sink.ConversionRecord, error) {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return sink.ConversionRecord{}, &sink.APIError{Code: sink.APICodeWorkerUnavailable, Message: "down"}
	}
	return f.fakeBackend.Conversion(ctx, merchantID, ref)
}

func (f *partnacSim) EventResult(ctx context.Context, merchantID, eventID string, wait time.Duration) (sink.EventResult, error) {
	f.mu.Lock()
	_, scripted := f.results[eventID]
	auto, down := f.auto, f.down
	f.mu.Unlock()
	if down || scripted || !auto {
		return f.fakeBackend.EventResult(ctx, merchantID, eventID, wait)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Read only the rows appended since the last call: the outbox keeps
	// growing during fuzzing.
	rows, err := f.s.Outbox.Peek(f.peeked, 100000)
	if err != nil {
		return sink.EventResult{}, fmt.Errorf("sim: read outbox: %w", err)
	}
	var found *sink.Event
	for _, row := range rows {
		f.peeked = row.Seq
		if !strings.HasPrefix(row.Subject, sink.EventSubjectPrefix) {
			continue
		}
		ev, err := sink.DecodeEvent(row.Data)
		if err != nil {
			return sink.EventResult{}, fmt.Errorf("sim: decode event: %w", err)
		}
		if ev.ID == eventID && ev.MerchantID == merchantID {
			found = &ev
		}
	}
	if found == nil {
		return sink.EventResult{}, &sink.APIError{Code: sink.APICodePending, Message: "not in the outbox"}
	}
	r := f.apply(found)
	f.results[eventID] = r
	return r, nil
}

// apply plays the worker for one event; f.mu is held. Commission is 10 % of
// the amount for a known partner; refunds claw back proportionally.
func (f *partnacSim) apply(ev *sink.Event) sink.EventResult {
	res := sink.EventResult{EventID: ev.ID, Outcome: sink.OutcomeApplied}
	find := func(uid string) *sink.ConversionRecord {
		for i := range f.conversions {
			if f.conversions[i].MerchantID == ev.MerchantID && f.conversions[i].UniqueID == uid {
				return &f.conversions[i]
			}
		}
		return nil
	}
	var rec *sink.ConversionRecord
	switch ev.Kind {
	case sink.KindConversion:
		c := ev.Conversion
		if old := find(c.UniqueID); old != nil {
			cp := *old
			return sink.EventResult{EventID: ev.ID, Outcome: sink.OutcomeDuplicate, Conversion: &cp}
		}
		f.seq++
		x := f.s.index.Load()
		r := sink.ConversionRecord{
			ID: fmt.Sprintf("conv_%04d", f.seq), MerchantID: ev.MerchantID, UniqueID: c.UniqueID, Type: c.Type,
			Dialect: ev.Dialect, AmountMinor: c.AmountMinor, Currency: c.Currency, Status: sink.StatusPending,
			CampaignID: c.CampaignID, ClickID: c.ClickID, CustomerID: c.CustomerID, CouponCode: c.CouponCode,
			AttributedBy: sink.ByNone, IP: c.IP, Country: c.Country, Region: c.Region, City: c.City,
			Metadata: c.Metadata, CreatedAt: ev.TS, UpdatedAt: ev.TS,
		}
		if p, ok := x.PartnerByKey(ev.MerchantID, c.PartnerKey); ok {
			r.PartnerID, r.PartnerKey, r.AttributedBy = p.ID, p.Key, sink.ByPartnerKey
			if k, ok := x.DefaultCampaign(ev.MerchantID, p.ID); ok && r.CampaignID == "" {
				r.CampaignID = k.ID
			}
			r.CommissionMinor = money.Percent(c.AmountMinor, 1000)
		}
		if c.ClickID != "" {
			if _, err := f.s.Minter.Verify(c.ClickID); err != nil {
				r.Flags = append(r.Flags, "forged_click")
			} else {
				r.AttributedBy = sink.ByClickID
			}
		}
		f.base[r.MerchantID+"/"+r.UniqueID] = r.CommissionMinor
		f.conversions = append(f.conversions, r)
		rec = &f.conversions[len(f.conversions)-1]
	case sink.KindRefund:
		u := ev.Refund
		if rec = find(u.UniqueID); rec == nil {
			return sink.EventResult{EventID: ev.ID, Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "conversion_not_found", Message: "no such conversion"}}
		}
		amt, left := u.AmountMinor, rec.AmountMinor-rec.RefundedMinor
		if u.Full || amt > left {
			amt = left
		}
		if rec.AmountMinor > 0 {
			claw, err := money.ProportionalRefund(f.base[rec.MerchantID+"/"+rec.UniqueID], rec.RefundedMinor, amt, rec.AmountMinor)
			if err != nil {
				panic(err)
			}
			rec.CommissionMinor -= claw
		}
		rec.RefundedMinor += amt
		rec.UpdatedAt = ev.TS
	case sink.KindUpdate:
		u := ev.Update
		if rec = find(u.UniqueID); rec == nil {
			return sink.EventResult{EventID: ev.ID, Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "conversion_not_found", Message: "no such conversion"}}
		}
		if u.AmountMinor != nil {
			rec.AmountMinor = *u.AmountMinor
		}
		if u.Metadata != nil {
			merged := map[string]json.RawMessage{}
			_ = json.Unmarshal(rec.Metadata, &merged)
			var add map[string]json.RawMessage
			_ = json.Unmarshal(u.Metadata, &add)
			for k, v := range add {
				merged[k] = v
			}
			rec.Metadata, _ = json.Marshal(merged)
		}
		if u.Recalculate && rec.PartnerID != "" {
			base := money.Percent(rec.AmountMinor, 1000)
			f.base[rec.MerchantID+"/"+rec.UniqueID] = base
			var claw int64
			if rec.AmountMinor > 0 {
				claw = money.Ratio(base, min(rec.RefundedMinor, rec.AmountMinor), rec.AmountMinor)
			}
			rec.CommissionMinor = base - claw
		}
		rec.UpdatedAt = ev.TS
	default:
		return sink.EventResult{EventID: ev.ID, Outcome: sink.OutcomeIgnored}
	}
	cp := *rec
	res.Conversion = &cp
	return res
}

// partnacConvServer is a test edge whose backend is a partnacSim in auto
// mode, with a fixed clock, a geo database and a catalog in which merchant A
// has the partner of the seed document's example (PARTNER_REF_123, coupon
// SPRING25).
func partnacConvServer(t testing.TB) (*Server, *partnacSim) {
	t.Helper()
	s, _ := newTestServer(t)
	cat := testCatalog()
	cat.Version = 2
	cat.Partners = append(cat.Partners, redirect.Partner{ID: "pr", MerchantID: "ma", Key: "PARTNER_REF_123", CouponCodes: []string{"SPRING25"}})
	data, err := json.Marshal(cat)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyCatalog(data); err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return partnacNow }
	s.Enricher = enrich.New(enrich.Config{Geo: partnacGeo{}, Now: s.Now})
	sim := &partnacSim{fakeBackend: newFakeBackend(), s: s, auto: true, base: map[string]int64{}}
	s.Backend = sim
	return s, sim
}

var (
	partnacHdrA = map[string]string{"Authorization": "Bearer " + keyA, "Content-Type": "application/json"}
	partnacHdrB = map[string]string{"Authorization": "Bearer " + keyB, "Content-Type": "application/json"}
)

func partnacAppended(s *Server) uint64 { return s.Outbox.Stats().Appended }

// partnacLastEvent returns the newest merchant event in the outbox.
func partnacLastEvent(t *testing.T, s *Server) sink.Event {
	t.Helper()
	evs, err := outboxEvents(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		t.Fatal("no event in the outbox")
	}
	return evs[len(evs)-1]
}

// partnacIndent renders JSON the way golden files store it.
func partnacIndent(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// partnacCheckGolden compares got with testdata/partnac/name, or rewrites
// the file under -update.
func partnacCheckGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "partnac", name)
	if partnacUpdateGolden() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// TestPartnacConversionGolden runs the dialect's documented requests in
// order against one edge, the seed document's example first, byte for byte,
// and compares each answer and each committed event with its golden file.
func TestPartnacConversionGolden(t *testing.T) {
	s, sim := partnacConvServer(t)
	steps := []struct {
		name, method, uri string
		req               string // request body file; "" for none
		status            int
		writes            uint64 // outbox rows the request appends
		queued            bool   // the worker is slow from this step on
	}{
		{"01_track_seed_example", "POST", "/v1/tracking/conversions", "01_track_seed_example", 201, 1, false},
		{"02_track_repeat", "POST", "/v1/tracking/conversions", "01_track_seed_example", 200, 0, false},
		{"03_track_all_fields", "POST", "/v1/tracking/conversions", "03_track_all_fields", 201, 1, false},
		{"04_refund_partial", "POST", "/v1/tracking/conversions/order_10045/refund", "04_refund_partial", 200, 1, false},
		{"05_refund_partial_repeat", "POST", "/v1/tracking/conversions/order_10045/refund", "04_refund_partial", 200, 1, false},
		{"06_update", "PATCH", "/v1/tracking/conversions/order_10045", "06_update", 200, 1, false},
		{"07_refund_full", "POST", "/v1/tracking/conversions/order_10045/refund", "07_refund_full", 200, 1, false},
		{"08_get", "GET", "/v1/tracking/conversions/order_10045", "", 200, 0, false},
		{"09_list", "GET", "/v1/tracking/conversions?limit=10", "", 200, 0, false},
		{"10_track_queued", "POST", "/v1/tracking/conversions", "10_track_queued", 202, 1, true},
		{"11_refund_queued", "POST", "/v1/tracking/conversions/sub_2001/refund", "11_refund_queued", 202, 1, true},
		{"12_update_queued", "PATCH", "/v1/tracking/conversions/sub_2001", "12_update_queued", 202, 1, true},
	}
	for i, st := range steps {
		// A minute per step, so that updated_at shows each change.
		now := partnacNow.Add(time.Duration(i) * time.Minute)
		s.Now = func() time.Time { return now }
		t.Run(st.name, func(t *testing.T) {
			var body []byte
			if st.req != "" {
				var err error
				if body, err = os.ReadFile(filepath.Join("testdata", "partnac", st.req+".request.json")); err != nil {
					t.Fatal(err)
				}
			}
			sim.setAuto(!st.queued)
			before := partnacAppended(s)
			ctx := do(s, st.method, st.uri, partnacHdrA, string(body))
			if got := ctx.Response.StatusCode(); got != st.status {
				t.Errorf("status = %d, want %d: %s", got, st.status, ctx.Response.Body())
			}
			if got := string(ctx.Response.Header.ContentType()); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			if got := partnacAppended(s) - before; got != st.writes {
				t.Errorf("outbox rows appended = %d, want %d", got, st.writes)
			}
			partnacCheckGolden(t, st.name+".response.json", partnacIndent(t, ctx.Response.Body()))
			if st.writes > 0 {
				ev := partnacLastEvent(t, s)
				data, err := json.Marshal(ev)
				if err != nil {
					t.Fatal(err)
				}
				partnacCheckGolden(t, st.name+".event.json", partnacIndent(t, data))
			}
		})
	}
}

// TestPartnacSeedExampleVerbatim checks that the golden request is the seed
// document's example body byte for byte (the document prefixes each line of
// the curl command with "- ").
func TestPartnacSeedExampleVerbatim(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "shared", "seeds", "000_a2a9a5b0416dc1cb.txt"))
	if err != nil {
		t.Skipf("seed document not available: %v", err)
	}
	lines := strings.Split(string(doc), "\n")
	var body []string
	in := false
	for _, l := range lines {
		l = strings.TrimPrefix(l, "- ")
		switch {
		case !in && strings.HasPrefix(l, "-d '"):
			in = true
			body = append(body, strings.TrimPrefix(l, "-d '"))
		case in && strings.HasSuffix(l, "'"):
			body = append(body, strings.TrimSuffix(l, "'"))
			in = false
		case in:
			body = append(body, l)
		}
		if !in && len(body) > 0 {
			break
		}
	}
	want := strings.Join(body, "\n")
	got, err := os.ReadFile(filepath.Join("testdata", "partnac", "01_track_seed_example.request.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want || !strings.Contains(want, `"unique_id": "order_10045"`) {
		t.Errorf("golden request differs from the seed's example:\ngot:\n%s\nwant:\n%s", got, want)
	}
}

// partnacExisting seeds the conversions the bad-input and isolation tests
// address: USD order_1 (50.00, 10.00 refunded), JPY jp_1 and merchant B's
// order_b.
func partnacSeedConversions(sim *partnacSim) {
	sim.add(
		sink.ConversionRecord{ID: "conv_a1", MerchantID: "ma", UniqueID: "order_1", Type: "sale", AmountMinor: 5000, RefundedMinor: 1000,
			Currency: "USD", Status: sink.StatusApproved, PartnerID: "pr", PartnerKey: "PARTNER_REF_123", CommissionMinor: 400, CreatedAt: 1, UpdatedAt: 1},
		sink.ConversionRecord{ID: "conv_a2", MerchantID: "ma", UniqueID: "jp_1", Type: "sale", AmountMinor: 1500, Currency: "JPY",
			Status: sink.StatusPending, CreatedAt: 1, UpdatedAt: 1},
		sink.ConversionRecord{ID: "conv_b1", MerchantID: "mb", UniqueID: "order_b", Type: "sale", AmountMinor: 700, Currency: "USD",
			Status: sink.StatusPending, CampaignID: "cb", PartnerID: "pb", CreatedAt: 1, UpdatedAt: 1},
	)
}

type partnacBadCase struct {
	name, method, uri string
	hdr               map[string]string
	body              string
	status            int
	code              string
}

func runPartnacBadCases(t *testing.T, s *Server, cases []partnacBadCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			hdr := tt.hdr
			if hdr == nil {
				hdr = partnacHdrA
			}
			before := partnacAppended(s)
			ctx := do(s, tt.method, tt.uri, hdr, tt.body)
			checkError(t, ctx, tt.status, tt.code)
			if got := partnacAppended(s) - before; got != 0 {
				t.Errorf("a rejected request wrote %d outbox rows", got)
			}
		})
	}
}

func TestPartnacTrackBadInput(t *testing.T) {
	s, sim := partnacConvServer(t)
	partnacSeedConversions(sim)
	const uri = "/v1/tracking/conversions"
	body := func(amount, extra string) string {
		return `{"partnership_code":"PARTNER_REF_123","unique_id":"u1","conversion_type":"sale","amount":` + amount + extra + `}`
	}
	withMeta := func(amount, meta string) string { return body(amount, `,"metadata":`+meta) }
	big := body("1", `,"metadata":{"pad":"`+strings.Repeat("x", 70000)+`"}`)
	cases := []partnacBadCase{
		{name: "no key", hdr: map[string]string{"Content-Type": "application/json"}, body: body("1", ""), status: 401, code: CodeUnauthorized},
		{name: "unknown key", hdr: map[string]string{"Authorization": "Bearer nope"}, body: body("1", ""), status: 401, code: CodeUnauthorized},
		{name: "not JSON content type", hdr: map[string]string{"Authorization": "Bearer " + keyA, "Content-Type": "text/plain"}, body: body("1", ""), status: 415, code: CodeUnsupportedMedia},
		{name: "malformed JSON", body: `{"unique_id":`, status: 400, code: CodeInvalidJSON},
		{name: "empty body", body: " ", status: 400, code: CodeInvalidJSON},
		{name: "trailing data", body: body("1", "") + `{}`, status: 400, code: CodeInvalidJSON},
		{name: "NaN literal", body: body("NaN", ""), status: 400, code: CodeInvalidJSON},
		{name: "array body", body: `[]`, status: 422, code: CodeInvalidField},
		{name: "unique_id number", body: `{"partnership_code":"PARTNER_REF_123","unique_id":5,"conversion_type":"sale","amount":1}`, status: 422, code: CodeInvalidField},
		{name: "partnership_code bool", body: `{"partnership_code":true,"unique_id":"u","conversion_type":"sale","amount":1}`, status: 422, code: CodeInvalidField},
		{name: "session_id number", body: body("1", `,"session_id":5`), status: 422, code: CodeInvalidField},
		{name: "campaign_id object", body: body("1", `,"campaign_id":{}`), status: 422, code: CodeInvalidField},
		{name: "metadata string", body: withMeta("1", `"x"`), status: 422, code: CodeInvalidField},
		{name: "metadata array", body: withMeta("1", `[1]`), status: 422, code: CodeInvalidField},
		{name: "metadata currency number", body: withMeta("1", `{"currency":840}`), status: 422, code: CodeInvalidField},
		{name: "metadata customer_id fraction", body: withMeta("1", `{"customer_id":1.5}`), status: 422, code: CodeInvalidField},
		{name: "metadata customer_id object", body: withMeta("1", `{"customer_id":{}}`), status: 422, code: CodeInvalidField},
		{name: "metadata ip not an address", body: withMeta("1", `{"ip_address":"999.1.1.1"}`), status: 422, code: CodeInvalidField},
		{name: "metadata country number", body: withMeta("1", `{"country":7}`), status: 422, code: CodeInvalidField},
		{name: "metadata coupon too long", body: withMeta("1", `{"coupon_code":"`+strings.Repeat("c", 256)+`"}`), status: 422, code: CodeInvalidField},
		{name: "missing partnership_code", body: `{"unique_id":"u","conversion_type":"sale","amount":1}`, status: 422, code: CodeMissingField},
		{name: "empty partnership_code", body: `{"partnership_code":"","unique_id":"u","conversion_type":"sale","amount":1}`, status: 422, code: CodeMissingField},
		{name: "null unique_id", body: `{"partnership_code":"PARTNER_REF_123","unique_id":null,"conversion_type":"sale","amount":1}`, status: 422, code: CodeMissingField},
		{name: "missing conversion_type", body: `{"partnership_code":"PARTNER_REF_123","unique_id":"u","amount":1}`, status: 422, code: CodeMissingField},
		{name: "missing amount", body: `{"partnership_code":"PARTNER_REF_123","unique_id":"u","conversion_type":"sale"}`, status: 422, code: CodeMissingField},
		{name: "null amount", body: body("null", ""), status: 422, code: CodeMissingField},
		{name: "unknown conversion_type", body: `{"partnership_code":"PARTNER_REF_123","unique_id":"u","conversion_type":"purchase","amount":1}`, status: 422, code: CodeInvalidField},
		{name: "capitalised conversion_type", body: `{"partnership_code":"PARTNER_REF_123","unique_id":"u","conversion_type":"Sale","amount":1}`, status: 422, code: CodeInvalidField},
		{name: "unique_id with slash", body: `{"partnership_code":"PARTNER_REF_123","unique_id":"a/b","conversion_type":"sale","amount":1}`, status: 422, code: CodeInvalidField},
		{name: "unique_id control char", body: `{"partnership_code":"PARTNER_REF_123","unique_id":"a\u0001","conversion_type":"sale","amount":1}`, status: 422, code: CodeInvalidField},
		{name: "unique_id too long", body: `{"partnership_code":"PARTNER_REF_123","unique_id":"` + strings.Repeat("u", 256) + `","conversion_type":"sale","amount":1}`, status: 422, code: CodeInvalidField},
		{name: "unique_id with refund marker", body: `{"partnership_code":"PARTNER_REF_123","unique_id":"a:refund:b","conversion_type":"sale","amount":1}`, status: 422, code: CodeInvalidField},
		{name: "unique_id with update marker", body: `{"partnership_code":"PARTNER_REF_123","unique_id":"a:update:b","conversion_type":"sale","amount":1}`, status: 422, code: CodeInvalidField},
		{name: "session_id too long", body: body("1", `,"session_id":"`+strings.Repeat("s", 65)+`"`), status: 422, code: CodeInvalidField},
		{name: "amount NaN string", body: body(`"NaN"`, ""), status: 422, code: CodeInvalidAmount},
		{name: "amount Infinity string", body: body(`"Infinity"`, ""), status: 422, code: CodeInvalidAmount},
		{name: "amount exponent", body: body("1e3", ""), status: 422, code: CodeInvalidAmount},
		{name: "amount empty string", body: body(`""`, ""), status: 422, code: CodeInvalidAmount},
		{name: "amount bool", body: body("true", ""), status: 422, code: CodeInvalidAmount},
		{name: "amount object", body: body("{}", ""), status: 422, code: CodeInvalidAmount},
		{name: "amount with spaces inside string", body: body(`" 5"`, ""), status: 422, code: CodeInvalidAmount},
		{name: "amount negative", body: body("-5", ""), status: 422, code: CodeNegativeAmount},
		{name: "amount negative string", body: body(`"-0.01"`, ""), status: 422, code: CodeNegativeAmount},
		{name: "amount too many decimals", body: body("1.001", ""), status: 422, code: CodeTooManyDecimals},
		{name: "JPY with decimals", body: withMeta("1.5", `{"currency":"JPY"}`), status: 422, code: CodeTooManyDecimals},
		{name: "KWD with four decimals", body: withMeta(`"1.2345"`, `{"currency":"KWD"}`), status: 422, code: CodeTooManyDecimals},
		{name: "amount just above the maximum", body: body("10000000000000.01", ""), status: 422, code: CodeAmountTooLarge},
		{name: "amount huge", body: body("99999999999999999999999999", ""), status: 422, code: CodeAmountTooLarge},
		{name: "unknown currency", body: withMeta("1", `{"currency":"XYZ"}`), status: 422, code: CodeUnknownCurrency},
		{name: "two-letter currency", body: withMeta("1", `{"currency":"US"}`), status: 422, code: CodeUnknownCurrency},
		{name: "gold is not a currency", body: withMeta("1", `{"currency":"XAU"}`), status: 422, code: CodeUnknownCurrency},
		{name: "unknown partnership_code", body: `{"partnership_code":"NOPE","unique_id":"u","conversion_type":"sale","amount":1}`, status: 422, code: CodeUnknownPartnership},
		{name: "other merchant's partnership_code", body: `{"partnership_code":"BOB","unique_id":"u","conversion_type":"sale","amount":1}`, status: 422, code: CodeUnknownPartnership},
		{name: "other merchant's campaign", body: body("1", `,"campaign_id":"cb"`), status: 404, code: CodeUnknownCampaign},
		{name: "unknown campaign", body: body("1", `,"campaign_id":"zzz"`), status: 404, code: CodeUnknownCampaign},
		{name: "oversized body", body: big, status: 413, code: CodePayloadTooLarge},
	}
	for i := range cases {
		cases[i].method, cases[i].uri = "POST", uri
	}
	runPartnacBadCases(t, s, cases)
}

func TestPartnacRefundBadInput(t *testing.T) {
	s, sim := partnacConvServer(t)
	partnacSeedConversions(sim)
	const uri = "/v1/tracking/conversions/order_1/refund"
	cases := []partnacBadCase{
		{name: "no key", uri: uri, hdr: map[string]string{}, body: `{}`, status: 401, code: CodeUnauthorized},
		{name: "malformed JSON", uri: uri, body: `{"amount":`, status: 400, code: CodeInvalidJSON},
		{name: "not JSON content type", uri: uri, hdr: map[string]string{"Authorization": "Bearer " + keyA, "Content-Type": "text/plain"}, body: `{}`, status: 415, code: CodeUnsupportedMedia},
		{name: "not JSON content type, no body", uri: uri, hdr: map[string]string{"Authorization": "Bearer " + keyA, "Content-Type": "text/plain"}, status: 415, code: CodeUnsupportedMedia},
		{name: "array body", uri: uri, body: `[]`, status: 422, code: CodeInvalidField},
		{name: "amount not a number", uri: uri, body: `{"amount":"abc"}`, status: 422, code: CodeInvalidAmount},
		{name: "amount NaN", uri: uri, body: `{"amount":"NaN"}`, status: 422, code: CodeInvalidAmount},
		{name: "amount exponent", uri: uri, body: `{"amount":1e1}`, status: 422, code: CodeInvalidAmount},
		{name: "amount zero", uri: uri, body: `{"amount":0}`, status: 422, code: CodeInvalidAmount},
		{name: "amount zero string", uri: uri, body: `{"amount":"0.00"}`, status: 422, code: CodeInvalidAmount},
		{name: "amount negative", uri: uri, body: `{"amount":-1}`, status: 422, code: CodeNegativeAmount},
		{name: "amount too many decimals", uri: uri, body: `{"amount":1.001}`, status: 422, code: CodeTooManyDecimals},
		{name: "amount huge", uri: uri, body: `{"amount":1000000000000000000000}`, status: 422, code: CodeAmountTooLarge},
		{name: "more than is left", uri: uri, body: `{"amount":40.01}`, status: 422, code: CodeRefundExceedsAmount},
		{name: "JPY decimals", uri: "/v1/tracking/conversions/jp_1/refund", body: `{"amount":1.5}`, status: 422, code: CodeTooManyDecimals},
		{name: "reason number", uri: uri, body: `{"reason":5}`, status: 422, code: CodeInvalidField},
		{name: "reason too long", uri: uri, body: `{"reason":"` + strings.Repeat("r", 1025) + `"}`, status: 422, code: CodeInvalidField},
		{name: "external_refund_id number", uri: uri, body: `{"external_refund_id":5}`, status: 422, code: CodeInvalidField},
		{name: "external_refund_id reserved full", uri: uri, body: `{"external_refund_id":"full"}`, status: 422, code: CodeInvalidField},
		{name: "external_refund_id reserved partial", uri: uri, body: `{"external_refund_id":"partial:1"}`, status: 422, code: CodeInvalidField},
		{name: "external_refund_id too long", uri: uri, body: `{"external_refund_id":"` + strings.Repeat("e", 256) + `"}`, status: 422, code: CodeInvalidField},
		{name: "external_refund_id control char", uri: uri, body: `{"external_refund_id":"a\nb"}`, status: 422, code: CodeInvalidField},
		{name: "reverse_paid_earnings string", uri: uri, body: `{"reverse_paid_earnings":"yes"}`, status: 422, code: CodeInvalidField},
		{name: "unknown conversion", uri: "/v1/tracking/conversions/nope/refund", body: `{}`, status: 404, code: CodeConversionNotFound},
		{name: "other merchant's conversion", uri: "/v1/tracking/conversions/order_b/refund", body: `{}`, status: 404, code: CodeConversionNotFound},
		{name: "other merchant's conversion id", uri: "/v1/tracking/conversions/conv_b1/refund", body: `{}`, status: 404, code: CodeConversionNotFound},
		{name: "id too long", uri: "/v1/tracking/conversions/" + strings.Repeat("i", 300) + "/refund", body: `{}`, status: 404, code: CodeConversionNotFound},
		{name: "oversized body", uri: uri, body: `{"reason":"` + strings.Repeat("x", 70000) + `"}`, status: 413, code: CodePayloadTooLarge},
	}
	for i := range cases {
		cases[i].method = "POST"
	}
	runPartnacBadCases(t, s, cases)
}

func TestPartnacUpdateBadInput(t *testing.T) {
	s, sim := partnacConvServer(t)
	partnacSeedConversions(sim)
	const uri = "/v1/tracking/conversions/order_1"
	cases := []partnacBadCase{
		{name: "no key", hdr: map[string]string{}, body: `{"amount":1}`, status: 401, code: CodeUnauthorized},
		{name: "malformed JSON", body: `{"amount"`, status: 400, code: CodeInvalidJSON},
		{name: "empty body", body: ``, status: 400, code: CodeInvalidJSON},
		{name: "not JSON content type", hdr: map[string]string{"Authorization": "Bearer " + keyA, "Content-Type": "application/xml"}, body: `{"amount":1}`, status: 415, code: CodeUnsupportedMedia},
		{name: "nothing to update", body: `{}`, status: 422, code: CodeMissingField},
		{name: "only recalculate false", body: `{"recalculate_commissions":false}`, status: 422, code: CodeMissingField},
		{name: "only unique_id", body: `{"unique_id":"order_1"}`, status: 422, code: CodeMissingField},
		{name: "recalculate string", body: `{"recalculate_commissions":"yes"}`, status: 422, code: CodeInvalidField},
		{name: "unique_id of another conversion", body: `{"unique_id":"jp_1","amount":60}`, status: 422, code: CodeInvalidField},
		{name: "unique_id number", body: `{"unique_id":1,"amount":60}`, status: 422, code: CodeInvalidField},
		{name: "amount negative", body: `{"amount":-1}`, status: 422, code: CodeNegativeAmount},
		{name: "amount NaN", body: `{"amount":"NaN"}`, status: 422, code: CodeInvalidAmount},
		{name: "amount bool", body: `{"amount":false}`, status: 422, code: CodeInvalidAmount},
		{name: "amount too many decimals", body: `{"amount":"60.005"}`, status: 422, code: CodeTooManyDecimals},
		{name: "amount huge", body: `{"amount":"100000000000000"}`, status: 422, code: CodeAmountTooLarge},
		{name: "amount below refunded", body: `{"amount":9.99}`, status: 422, code: CodeInvalidAmount},
		{name: "metadata string", body: `{"metadata":"x"}`, status: 422, code: CodeInvalidField},
		{name: "metadata ip invalid", body: `{"metadata":{"ip_address":"nope"}}`, status: 422, code: CodeInvalidField},
		{name: "metadata other currency", body: `{"metadata":{"currency":"EUR"}}`, status: 422, code: CodeCurrencyMismatch},
		{name: "metadata unknown currency", body: `{"metadata":{"currency":"ABC"}}`, status: 422, code: CodeUnknownCurrency},
		{name: "unknown conversion", uri: "/v1/tracking/conversions/nope", body: `{"amount":1}`, status: 404, code: CodeConversionNotFound},
		{name: "other merchant's conversion", uri: "/v1/tracking/conversions/order_b", body: `{"amount":1}`, status: 404, code: CodeConversionNotFound},
		{name: "oversized body", body: `{"metadata":{"x":"` + strings.Repeat("x", 70000) + `"}}`, status: 413, code: CodePayloadTooLarge},
	}
	for i := range cases {
		cases[i].method = "PATCH"
		if cases[i].uri == "" {
			cases[i].uri = uri
		}
	}
	runPartnacBadCases(t, s, cases)
}

func TestPartnacListBadInput(t *testing.T) {
	s, sim := partnacConvServer(t)
	partnacSeedConversions(sim)
	cases := []partnacBadCase{
		{name: "no key", uri: "/v1/tracking/conversions", hdr: map[string]string{}, status: 401, code: CodeUnauthorized},
		{name: "limit not a number", uri: "/v1/tracking/conversions?limit=abc", status: 400, code: CodeInvalidParameter},
		{name: "limit zero", uri: "/v1/tracking/conversions?limit=0", status: 400, code: CodeInvalidParameter},
		{name: "limit negative", uri: "/v1/tracking/conversions?limit=-1", status: 400, code: CodeInvalidParameter},
		{name: "offset not a number", uri: "/v1/tracking/conversions?offset=1.5", status: 400, code: CodeInvalidParameter},
		{name: "status unknown", uri: "/v1/tracking/conversions?status=refunded", status: 400, code: CodeInvalidParameter},
		{name: "other merchant's campaign", uri: "/v1/tracking/conversions?campaign_id=cb", status: 404, code: CodeUnknownCampaign},
		{name: "other merchant's partner", uri: "/v1/tracking/conversions?partnership_id=pb", status: 404, code: CodeUnknownPartner},
		{name: "get unknown conversion", uri: "/v1/tracking/conversions/nope", status: 404, code: CodeConversionNotFound},
		{name: "get without key", uri: "/v1/tracking/conversions/order_1", hdr: map[string]string{}, status: 401, code: CodeUnauthorized},
		{name: "DELETE is not allowed", method: "DELETE", uri: "/v1/tracking/conversions/order_1", status: 405, code: CodeMethodNotAllowed},
		{name: "PUT is not allowed", method: "PUT", uri: "/v1/tracking/conversions", status: 405, code: CodeMethodNotAllowed},
	}
	for i := range cases {
		if cases[i].method == "" {
			cases[i].method = "GET"
		}
	}
	runPartnacBadCases(t, s, cases)
}

func TestPartnacListQuery(t *testing.T) {
	s, sim := partnacConvServer(t)
	partnacSeedConversions(sim)
	tests := []struct {
		uri   string
		want  sink.ConversionQuery
		total int
	}{
		{"/v1/tracking/conversions", sink.ConversionQuery{MerchantID: "ma", Limit: 20}, 2},
		{"/v1/tracking/conversions?limit=500&offset=3", sink.ConversionQuery{MerchantID: "ma", Limit: 100, Offset: 3}, 2},
		{"/v1/tracking/conversions?campaign_id=ca&partnership_id=pr&status=approved", sink.ConversionQuery{MerchantID: "ma", Limit: 20, CampaignID: "ca", PartnerID: "pr", Status: "approved"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			ctx := do(s, "GET", tt.uri, partnacHdrA, "")
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("status = %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			sim.mu.Lock()
			got := sim.lastQuery
			sim.mu.Unlock()
			if got != tt.want {
				t.Errorf("query = %+v, want %+v", got, tt.want)
			}
			var page struct {
				Data       []partnacConversion `json:"data"`
				Pagination struct{ Limit, Offset, Total int }
			}
			if err := json.Unmarshal(ctx.Response.Body(), &page); err != nil {
				t.Fatal(err)
			}
			if page.Pagination.Limit != tt.want.Limit || page.Pagination.Offset != tt.want.Offset || page.Pagination.Total != tt.total || len(page.Data) != tt.total {
				t.Errorf("page = %+v, want limit %d offset %d total %d", page.Pagination, tt.want.Limit, tt.want.Offset, tt.total)
			}
		})
	}
}

// TestPartnacTenantIsolation: merchant B's key gets 404 for every id of
// merchant A, on every endpoint, and writes nothing; B's own conversion
// with the same unique_id is separate.
func TestPartnacTenantIsolation(t *testing.T) {
	s, sim := partnacConvServer(t)
	partnacSeedConversions(sim)
	ctx := do(s, "POST", "/v1/tracking/conversions", partnacHdrA, `{"partnership_code":"PARTNER_REF_123","unique_id":"order_a","conversion_type":"sale","amount":10}`)
	if ctx.Response.StatusCode() != 201 {
		t.Fatalf("A's conversion: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	var created struct{ Data partnacConversion }
	if err := json.Unmarshal(ctx.Response.Body(), &created); err != nil {
		t.Fatal(err)
	}
	cases := []partnacBadCase{}
	for _, id := range []string{"order_a", created.Data.ID, "order_1", "conv_a1"} {
		cases = append(cases,
			partnacBadCase{name: "get " + id, method: "GET", uri: "/v1/tracking/conversions/" + id, status: 404, code: CodeConversionNotFound},
			partnacBadCase{name: "refund " + id, method: "POST", uri: "/v1/tracking/conversions/" + id + "/refund", body: `{}`, status: 404, code: CodeConversionNotFound},
			partnacBadCase{name: "partial refund " + id, method: "POST", uri: "/v1/tracking/conversions/" + id + "/refund", body: `{"amount":1,"external_refund_id":"r"}`, status: 404, code: CodeConversionNotFound},
			partnacBadCase{name: "update " + id, method: "PATCH", uri: "/v1/tracking/conversions/" + id, body: `{"amount":1}`, status: 404, code: CodeConversionNotFound},
		)
	}
	cases = append(cases,
		partnacBadCase{name: "list A's campaign", method: "GET", uri: "/v1/tracking/conversions?campaign_id=ca", status: 404, code: CodeUnknownCampaign},
		partnacBadCase{name: "list A's partner", method: "GET", uri: "/v1/tracking/conversions?partnership_id=pr", status: 404, code: CodeUnknownPartner},
		partnacBadCase{name: "track into A's campaign", method: "POST", uri: "/v1/tracking/conversions", body: `{"partnership_code":"BOB","unique_id":"x","conversion_type":"sale","amount":1,"campaign_id":"ca"}`, status: 404, code: CodeUnknownCampaign},
		partnacBadCase{name: "track with A's partnership code", method: "POST", uri: "/v1/tracking/conversions", body: `{"partnership_code":"PARTNER_REF_123","unique_id":"x","conversion_type":"sale","amount":1}`, status: 422, code: CodeUnknownPartnership},
	)
	for i := range cases {
		cases[i].hdr = partnacHdrB
	}
	runPartnacBadCases(t, s, cases)

	ctx = do(s, "GET", "/v1/tracking/conversions", partnacHdrB, "")
	if bytes.Contains(ctx.Response.Body(), []byte("order_a")) || bytes.Contains(ctx.Response.Body(), []byte("order_1")) || !bytes.Contains(ctx.Response.Body(), []byte("order_b")) {
		t.Errorf("B's listing = %s, want only B's conversions", ctx.Response.Body())
	}
	ctx = do(s, "POST", "/v1/tracking/conversions", partnacHdrB, `{"partnership_code":"BOB","unique_id":"order_a","conversion_type":"sale","amount":10}`)
	if ctx.Response.StatusCode() != 201 {
		t.Errorf("B tracking its own order_a: %d %s, want 201 (a separate conversion)", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if ev := partnacLastEvent(t, s); ev.ID != "mb:conversion:order_a" || ev.MerchantID != "mb" {
		t.Errorf("B's event = %s of %s", ev.ID, ev.MerchantID)
	}
}

// TestPartnacTrackEvent checks what a track request puts in the event:
// exact amounts in each currency's minor units, the special metadata keys,
// and the enrichment from the given address, never the caller's.
func TestPartnacTrackEvent(t *testing.T) {
	s, sim := partnacConvServer(t)
	sim.setAuto(false)
	click := s.Minter.New(partnacNow)
	tests := []struct {
		name, body string
		want       sink.ConversionEvent
	}{
		{"seed amount", `{"partnership_code":"PARTNER_REF_123","unique_id":"e1","conversion_type":"sale","amount":99.00}`,
			sink.ConversionEvent{UniqueID: "e1", Type: "sale", AmountMinor: 9900, Currency: "USD", PartnerKey: "PARTNER_REF_123"}},
		{"string cents", `{"partnership_code":"PARTNER_REF_123","unique_id":"e2","conversion_type":"lead","amount":"0.29"}`,
			sink.ConversionEvent{UniqueID: "e2", Type: "lead", AmountMinor: 29, Currency: "USD", PartnerKey: "PARTNER_REF_123"}},
		{"zero lead", `{"partnership_code":"PARTNER_REF_123","unique_id":"e3","conversion_type":"lead","amount":0}`,
			sink.ConversionEvent{UniqueID: "e3", Type: "lead", Currency: "USD", PartnerKey: "PARTNER_REF_123"}},
		{"trailing zeros", `{"partnership_code":"PARTNER_REF_123","unique_id":"e4","conversion_type":"sale","amount":"99.000"}`,
			sink.ConversionEvent{UniqueID: "e4", Type: "sale", AmountMinor: 9900, Currency: "USD", PartnerKey: "PARTNER_REF_123"}},
		{"maximum", `{"partnership_code":"PARTNER_REF_123","unique_id":"e5","conversion_type":"sale","amount":10000000000000.00}`,
			sink.ConversionEvent{UniqueID: "e5", Type: "sale", AmountMinor: money.MaxMinor, Currency: "USD", PartnerKey: "PARTNER_REF_123"}},
		{"JPY", `{"partnership_code":"PARTNER_REF_123","unique_id":"e6","conversion_type":"sale","amount":1500,"metadata":{"currency":"jpy"}}`,
			sink.ConversionEvent{UniqueID: "e6", Type: "sale", AmountMinor: 1500, Currency: "JPY", PartnerKey: "PARTNER_REF_123", Metadata: json.RawMessage(`{"currency":"jpy"}`)}},
		{"KWD", `{"partnership_code":"PARTNER_REF_123","unique_id":"e7","conversion_type":"sale","amount":"1.234","metadata":{"currency":"KWD"}}`,
			sink.ConversionEvent{UniqueID: "e7", Type: "sale", AmountMinor: 1234, Currency: "KWD", PartnerKey: "PARTNER_REF_123", Metadata: json.RawMessage(`{"currency":"KWD"}`)}},
		{"empty currency is USD", `{"partnership_code":"PARTNER_REF_123","unique_id":"e8","conversion_type":"sale","amount":1,"metadata":{"currency":""}}`,
			sink.ConversionEvent{UniqueID: "e8", Type: "sale", AmountMinor: 100, Currency: "USD", PartnerKey: "PARTNER_REF_123", Metadata: json.RawMessage(`{"currency":""}`)}},
		{"coupon as partnership code", `{"partnership_code":"spring25","unique_id":"e9","conversion_type":"sale","amount":1}`,
			sink.ConversionEvent{UniqueID: "e9", Type: "sale", AmountMinor: 100, Currency: "USD", PartnerKey: "PARTNER_REF_123"}},
		{"special keys and geo", `{"partnership_code":"PARTNER_REF_123","unique_id":"e10","conversion_type":"subscription","amount":5,"campaign_id":"cp","session_id":"` + click + `",
			"metadata":{"customer_id":987654,"coupon_code":"SPRING25","ip_address":"::ffff:203.0.113.9","user_agent":"UA/1","x":[1,2]}}`,
			sink.ConversionEvent{UniqueID: "e10", Type: "subscription", AmountMinor: 500, Currency: "USD", PartnerKey: "PARTNER_REF_123", CampaignID: "cp",
				ClickID: click, CustomerID: "987654", CouponCode: "SPRING25", IP: "203.0.113.0", Country: "DE", Region: "BE", City: "Berlin", UserAgent: "UA/1",
				Metadata: json.RawMessage(`{"coupon_code":"SPRING25","customer_id":987654,"ip_address":"203.0.113.0","user_agent":"UA/1","x":[1,2]}`)}},
		{"merchant geo wins", `{"partnership_code":"PARTNER_REF_123","unique_id":"e11","conversion_type":"sale","amount":5,
			"metadata":{"ip_address":"203.0.113.9","country":"AT","city":"Wien","region":"9"}}`,
			sink.ConversionEvent{UniqueID: "e11", Type: "sale", AmountMinor: 500, Currency: "USD", PartnerKey: "PARTNER_REF_123",
				IP: "203.0.113.0", Country: "AT", Region: "9", City: "Wien",
				Metadata: json.RawMessage(`{"city":"Wien","country":"AT","ip_address":"203.0.113.0","region":"9"}`)}},
		{"referral type", `{"partnership_code":"PARTNER_REF_123","unique_id":"e13","conversion_type":"referral","amount":0}`,
			sink.ConversionEvent{UniqueID: "e13", Type: "referral", Currency: "USD", PartnerKey: "PARTNER_REF_123"}},
		{"custom type", `{"partnership_code":"PARTNER_REF_123","unique_id":"e14","conversion_type":"custom","amount":"12.34"}`,
			sink.ConversionEvent{UniqueID: "e14", Type: "custom", AmountMinor: 1234, Currency: "USD", PartnerKey: "PARTNER_REF_123"}},
		{"no address: no geo from the caller", `{"partnership_code":"PARTNER_REF_123","unique_id":"e12","conversion_type":"sale","amount":5,"session_id":"forged-or-not","metadata":{"user_agent":"UA/2"}}`,
			sink.ConversionEvent{UniqueID: "e12", Type: "sale", AmountMinor: 500, Currency: "USD", PartnerKey: "PARTNER_REF_123", ClickID: "forged-or-not", UserAgent: "UA/2",
				Metadata: json.RawMessage(`{"user_agent":"UA/2"}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := do(s, "POST", "/v1/tracking/conversions", partnacHdrA, tt.body)
			if ctx.Response.StatusCode() != 202 {
				t.Fatalf("status = %d, want 202 (queued): %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			ev := partnacLastEvent(t, s)
			if ev.ID != "ma:conversion:"+tt.want.UniqueID || ev.Kind != sink.KindConversion || ev.Dialect != sink.DialectPartnac ||
				ev.MerchantID != "ma" || ev.TS != partnacNow.UnixMilli() || ev.Conversion == nil {
				t.Fatalf("event = %+v", ev)
			}
			got, _ := json.Marshal(ev.Conversion)
			want, _ := json.Marshal(tt.want)
			if !bytes.Equal(got, want) {
				t.Errorf("conversion event\n got %s\nwant %s", got, want)
			}
			if bytes.Contains(got, []byte("198.51.100")) {
				t.Errorf("the calling server's address leaked into the event: %s", got)
			}
			var ans struct{ Data map[string]string }
			if err := json.Unmarshal(ctx.Response.Body(), &ans); err != nil || ans.Data["unique_id"] != tt.want.UniqueID || ans.Data["status"] != "queued" {
				t.Errorf("queued answer = %s", ctx.Response.Body())
			}
		})
	}
}

// TestPartnacMetadataPrivacy: metadata.ip_address is kept only in the form
// the edge's privacy mode stores for clicks, on track and on update.
func TestPartnacMetadataPrivacy(t *testing.T) {
	tests := []struct {
		privacy  enrich.Privacy
		ip       string
		wantIP   string // event's IP
		wantMeta string
	}{
		{enrich.PrivacyTruncate, "203.0.113.9", "203.0.113.0", `{"ip_address":"203.0.113.0","k":"v"}`},
		{enrich.PrivacyTruncate, "2001:db8:1:2::7", "2001:db8:1::", `{"ip_address":"2001:db8:1::","k":"v"}`},
		{enrich.PrivacyFull, "203.0.113.9", "203.0.113.9", `{"k":"v","ip_address":"203.0.113.9"}`},
		{enrich.PrivacyFull, "::ffff:203.0.113.9", "203.0.113.9", `{"ip_address":"203.0.113.9","k":"v"}`},
		{enrich.PrivacyDrop, "203.0.113.9", "", `{"k":"v"}`},
	}
	for i, tt := range tests {
		t.Run(string(tt.privacy)+" "+tt.ip, func(t *testing.T) {
			s, sim := partnacConvServer(t)
			partnacSeedConversions(sim)
			sim.setAuto(false)
			s.Enricher = enrich.New(enrich.Config{Privacy: tt.privacy, Geo: partnacGeo{}})
			meta := `{"k":"v","ip_address":"` + tt.ip + `"}`
			ctx := do(s, "POST", "/v1/tracking/conversions", partnacHdrA,
				fmt.Sprintf(`{"partnership_code":"PARTNER_REF_123","unique_id":"p%d","conversion_type":"sale","amount":1,"metadata":%s}`, i, meta))
			if ctx.Response.StatusCode() != 202 {
				t.Fatalf("track: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			ev := partnacLastEvent(t, s)
			if ev.Conversion.IP != tt.wantIP || string(ev.Conversion.Metadata) != tt.wantMeta {
				t.Errorf("track: ip %q metadata %s, want %q %s", ev.Conversion.IP, ev.Conversion.Metadata, tt.wantIP, tt.wantMeta)
			}
			ctx = do(s, "PATCH", "/v1/tracking/conversions/order_1", partnacHdrA, `{"metadata":`+meta+`}`)
			if ctx.Response.StatusCode() != 202 {
				t.Fatalf("update: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if ev := partnacLastEvent(t, s); string(ev.Update.Metadata) != tt.wantMeta {
				t.Errorf("update: metadata %s, want %s", ev.Update.Metadata, tt.wantMeta)
			}
		})
	}
}

// TestPartnacRefundEvents checks refund keys: an external_refund_id or a
// full refund is idempotent, a partial refund without an id is not.
func TestPartnacRefundEvents(t *testing.T) {
	s, sim := partnacConvServer(t)
	partnacSeedConversions(sim)
	sim.setAuto(false)
	const uri = "/v1/tracking/conversions/order_1/refund"
	tests := []struct {
		name, uri, body string
		wantID          string // "" for a fresh partial key
		want            sink.RefundEvent
	}{
		{"empty body is a full refund", uri, "", "ma:refund:order_1:refund:full", sink.RefundEvent{UniqueID: "order_1", Full: true, ReversePaidEarnings: true}},
		{"empty object is a full refund", uri, "{}", "ma:refund:order_1:refund:full", sink.RefundEvent{UniqueID: "order_1", Full: true, ReversePaidEarnings: true}},
		{"null amount is a full refund", uri, `{"amount":null,"reason":"fraud","reverse_paid_earnings":false}`, "ma:refund:order_1:refund:full",
			sink.RefundEvent{UniqueID: "order_1", Full: true, Reason: "fraud"}},
		{"full with an external id", uri, `{"external_refund_id":"re_9"}`, "ma:refund:order_1:refund:re_9",
			sink.RefundEvent{UniqueID: "order_1", Full: true, ExternalRefundID: "re_9", ReversePaidEarnings: true}},
		{"partial with an external id", uri, `{"amount":"12.5","external_refund_id":"re_10","reason":"customer_request"}`, "ma:refund:order_1:refund:re_10",
			sink.RefundEvent{UniqueID: "order_1", AmountMinor: 1250, ExternalRefundID: "re_10", Reason: "customer_request", ReversePaidEarnings: true}},
		{"everything that is left", uri, `{"amount":40}`, "", sink.RefundEvent{UniqueID: "order_1", AmountMinor: 4000, ReversePaidEarnings: true}},
		{"by the worker's id", "/v1/tracking/conversions/conv_a1/refund", `{"amount":1}`, "", sink.RefundEvent{UniqueID: "order_1", AmountMinor: 100, ReversePaidEarnings: true}},
		{"JPY", "/v1/tracking/conversions/jp_1/refund", `{"amount":"15"}`, "", sink.RefundEvent{UniqueID: "jp_1", AmountMinor: 15, ReversePaidEarnings: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ids []string
			for range 2 {
				ctx := do(s, "POST", tt.uri, partnacHdrA, tt.body)
				if ctx.Response.StatusCode() != 202 {
					t.Fatalf("status = %d, want 202: %s", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				ev := partnacLastEvent(t, s)
				ids = append(ids, ev.ID)
				got, _ := json.Marshal(ev.Refund)
				want, _ := json.Marshal(tt.want)
				if ev.Kind != sink.KindRefund || !bytes.Equal(got, want) {
					t.Errorf("refund event %s\n got %s\nwant %s", ev.Kind, got, want)
				}
			}
			if tt.wantID != "" {
				if ids[0] != tt.wantID || ids[1] != tt.wantID {
					t.Errorf("event ids = %q, want %q twice", ids, tt.wantID)
				}
				return
			}
			prefix := fmt.Sprintf("ma:refund:%s:refund:partial:%d:", tt.want.UniqueID, tt.want.AmountMinor)
			if ids[0] == ids[1] || !strings.HasPrefix(ids[0], prefix) || !strings.HasPrefix(ids[1], prefix) {
				t.Errorf("partial refunds without an external id: ids %q, want two distinct ids under %q", ids, prefix)
			}
		})
	}
}

// TestPartnacUpdateEvents checks that a PATCH's event id depends on the
// change only: repeats and equivalent spellings are idempotent.
func TestPartnacUpdateEvents(t *testing.T) {
	s, sim := partnacConvServer(t)
	partnacSeedConversions(sim)
	sim.setAuto(false)
	send := func(t *testing.T, uri, body string) sink.Event {
		t.Helper()
		ctx := do(s, "PATCH", uri, partnacHdrA, body)
		if ctx.Response.StatusCode() != 202 {
			t.Fatalf("status = %d, want 202: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		return partnacLastEvent(t, s)
	}
	const uri = "/v1/tracking/conversions/order_1"
	same := []struct{ a, b string }{
		{`{"amount":99}`, `{"amount":99}`},
		{`{"amount":99}`, `{"amount":"99.00","unique_id":"order_1"}`},
		{`{"metadata":{"a":1,"b":{"y":2,"x":"é"}}}`, `{"metadata":{"b":{"x":"\u00e9","y":2},"a":1}}`},
		{`{"amount":10,"recalculate_commissions":true}`, `{"recalculate_commissions":true,"amount":"10.0"}`},
	}
	for _, tt := range same {
		t.Run("same "+tt.a, func(t *testing.T) {
			a, b := send(t, uri, tt.a), send(t, uri, tt.b)
			if a.ID != b.ID || !strings.HasPrefix(a.ID, "ma:update:order_1:update:") || len(a.ID) < len("ma:update:order_1:update:")+64 {
				t.Errorf("ids %q and %q, want one id", a.ID, b.ID)
			}
		})
	}
	t.Run("A to B and back to A", func(t *testing.T) {
		first := send(t, uri, `{"amount":99}`)
		// The worker applied another change meanwhile: the conversion's
		// version moved, so the same body is a new event, not a duplicate.
		sim.mu.Lock()
		for i := range sim.conversions {
			if sim.conversions[i].UniqueID == "order_1" {
				sim.conversions[i].UpdatedAt++
			}
		}
		sim.mu.Unlock()
		again := send(t, uri, `{"amount":99}`)
		if first.ID == again.ID {
			t.Errorf("the same PATCH after the conversion changed reused id %q", first.ID)
		}
	})
	differ := []struct{ a, b string }{
		{`{"amount":99}`, `{"amount":99.01}`},
		{`{"amount":99}`, `{"amount":99,"recalculate_commissions":true}`},
		{`{"metadata":{"a":1}}`, `{"metadata":{"a":"1"}}`},
		{`{"metadata":{"a":1}}`, `{"metadata":{"a":1},"amount":10}`},
	}
	for _, tt := range differ {
		t.Run("differ "+tt.a+" "+tt.b, func(t *testing.T) {
			if a, b := send(t, uri, tt.a), send(t, uri, tt.b); a.ID == b.ID {
				t.Errorf("different changes share id %q", a.ID)
			}
		})
	}
	ev := send(t, "/v1/tracking/conversions/conv_a1", `{"amount":"60.5","unique_id":"order_1","metadata":{"plan":"pro","currency":"usd"},"recalculate_commissions":true}`)
	got, _ := json.Marshal(ev.Update)
	if want := `{"unique_id":"order_1","amount_minor":6050,"metadata":{"plan":"pro","currency":"usd"},"recalculate":true}`; string(got) != want {
		t.Errorf("update event\n got %s\nwant %s", got, want)
	}
}

// TestPartnacResultMapping checks how the worker's result becomes the answer.
func TestPartnacResultMapping(t *testing.T) {
	s, sim := partnacConvServer(t)
	sim.setAuto(false)
	rec := sink.ConversionRecord{ID: "conv_x", MerchantID: "ma", UniqueID: "orig", Type: "sale", AmountMinor: 1234, Currency: "EUR",
		Status: sink.StatusApproved, CommissionMinor: 123, AttributedBy: sink.ByCoupon, Flags: []string{"suspect_fast"}, CreatedAt: 1_700_000_000_000, UpdatedAt: 1_700_000_000_500}
	tests := []struct {
		name   string
		res    *sink.EventResult // nil: pending
		status int
		code   string // error code, or data.status when no record
	}{
		{"applied", &sink.EventResult{Outcome: sink.OutcomeApplied, Conversion: &rec}, 201, ""},
		{"duplicate", &sink.EventResult{Outcome: sink.OutcomeDuplicate, Conversion: &rec}, 200, ""},
		{"ignored", &sink.EventResult{Outcome: sink.OutcomeIgnored}, 200, "ignored"},
		{"applied without record", &sink.EventResult{Outcome: sink.OutcomeApplied}, 201, "applied"},
		{"pending", nil, 202, "queued"},
		{"unknown outcome", &sink.EventResult{Outcome: "later"}, 202, "queued"},
		{"rejected not found", &sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "not_found", Message: "gone"}}, 404, CodeConversionNotFound},
		{"rejected currency", &sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "currency_mismatch", Message: "EUR"}}, 422, CodeCurrencyMismatch},
		{"rejected odd", &sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "frobnicated"}}, 422, CodeEventRejected},
		{"rejected internal", &sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: CodeInternal, Message: "x"}}, 422, CodeEventRejected},
		{"rejected without error", &sink.EventResult{Outcome: sink.OutcomeRejected}, 422, CodeEventRejected},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uid := fmt.Sprintf("m%d", i)
			if tt.res != nil {
				sim.script("ma:conversion:"+uid, *tt.res)
			}
			ctx := do(s, "POST", "/v1/tracking/conversions", partnacHdrA,
				`{"partnership_code":"PARTNER_REF_123","unique_id":"`+uid+`","conversion_type":"sale","amount":"12.34","metadata":{"currency":"EUR"}}`)
			if tt.status >= 400 {
				checkError(t, ctx, tt.status, tt.code)
				return
			}
			if got := ctx.Response.StatusCode(); got != tt.status {
				t.Fatalf("status = %d, want %d: %s", got, tt.status, ctx.Response.Body())
			}
			var ans struct{ Data map[string]any }
			if err := json.Unmarshal(ctx.Response.Body(), &ans); err != nil {
				t.Fatal(err)
			}
			if tt.code != "" {
				if ans.Data["status"] != tt.code || ans.Data["unique_id"] != uid {
					t.Errorf("data = %v, want unique_id %s and status %s", ans.Data, uid, tt.code)
				}
				return
			}
			want := map[string]any{"id": "conv_x", "unique_id": "orig", "amount": "12.34", "currency": "EUR", "commission_amount": "1.23",
				"refunded_amount": "0.00", "status": "approved", "attributed_by": "coupon", "campaign_id": nil, "session_id": nil,
				"created_at": "2023-11-14T22:13:20Z", "updated_at": "2023-11-14T22:13:20.5Z"}
			for k, v := range want {
				if got := ans.Data[k]; got != v {
					t.Errorf("data[%q] = %v, want %v", k, got, v)
				}
			}
			if flags, _ := ans.Data["flags"].([]any); len(flags) != 1 || flags[0] != "suspect_fast" {
				t.Errorf("flags = %v", ans.Data["flags"])
			}
			if meta, ok := ans.Data["metadata"].(map[string]any); !ok || len(meta) != 0 {
				t.Errorf("metadata = %v, want {}", ans.Data["metadata"])
			}
		})
	}
}

// TestPartnacWorkerAway: with the worker away a conversion is still
// accepted durably (202), while refunds, updates and reads, which need the
// conversion, are 503 and write nothing.
func TestPartnacWorkerAway(t *testing.T) {
	s, sim := partnacConvServer(t)
	partnacSeedConversions(sim)
	sim.setDown(true)
	before := partnacAppended(s)
	ctx := do(s, "POST", "/v1/tracking/conversions", partnacHdrA, `{"partnership_code":"PARTNER_REF_123","unique_id":"w1","conversion_type":"sale","amount":1}`)
	if ctx.Response.StatusCode() != 202 || partnacAppended(s)-before != 1 {
		t.Errorf("track with the worker away: %d %s, %d rows; want 202 and 1 row", ctx.Response.StatusCode(), ctx.Response.Body(), partnacAppended(s)-before)
	}
	runPartnacBadCases(t, s, []partnacBadCase{
		{name: "refund", method: "POST", uri: "/v1/tracking/conversions/order_1/refund", body: `{}`, status: 503, code: CodeWorkerUnavailable},
		{name: "update", method: "PATCH", uri: "/v1/tracking/conversions/order_1", body: `{"amount":20}`, status: 503, code: CodeWorkerUnavailable},
		{name: "get", method: "GET", uri: "/v1/tracking/conversions/order_1", status: 503, code: CodeWorkerUnavailable},
		{name: "list", method: "GET", uri: "/v1/tracking/conversions", status: 503, code: CodeWorkerUnavailable},
	})
	s.Backend = nil
	runPartnacBadCases(t, s, []partnacBadCase{
		{name: "no backend refund", method: "POST", uri: "/v1/tracking/conversions/order_1/refund", body: `{}`, status: 503, code: CodeWorkerUnavailable},
		{name: "no backend list", method: "GET", uri: "/v1/tracking/conversions", status: 503, code: CodeWorkerUnavailable},
	})
}

// TestPartnacOutboxFull: a conversion write the outbox cannot hold is 503
// unavailable, never a 2xx, and leaves nothing behind; the conversions it
// refers to were found (the refusal is the outbox's, not the worker's).
func TestPartnacOutboxFull(t *testing.T) {
	s, sim := partnacConvServer(t)
	partnacSeedConversions(sim)
	sim.setAuto(false)
	ob := sink.NewOutbox(filepath.Join(t.TempDir(), "edge.db"))
	ob.NoSync = true
	ob.MaxBytes = 1 // nothing fits
	if err := ob.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	full := &Server{Minter: s.Minter, Enricher: s.Enricher, Outbox: ob, Backend: sim, Now: s.Now, ResultWait: 10 * time.Millisecond}
	if err := full.Open(); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(s.index.Load().Catalog())
	if err != nil {
		t.Fatal(err)
	}
	if err := full.ApplyCatalog(data); err != nil {
		t.Fatal(err)
	}
	runPartnacBadCases(t, full, []partnacBadCase{
		{name: "track", method: "POST", uri: "/v1/tracking/conversions",
			body: `{"partnership_code":"PARTNER_REF_123","unique_id":"full_1","conversion_type":"sale","amount":"99.00"}`, status: 503, code: CodeUnavailable},
		{name: "partial refund", method: "POST", uri: "/v1/tracking/conversions/order_1/refund", body: `{"amount":"5.00","external_refund_id":"re_f"}`, status: 503, code: CodeUnavailable},
		{name: "full refund, empty body", method: "POST", uri: "/v1/tracking/conversions/order_1/refund", status: 503, code: CodeUnavailable},
		{name: "update", method: "PATCH", uri: "/v1/tracking/conversions/order_1", body: `{"amount":"60.00","recalculate_commissions":true}`, status: 503, code: CodeUnavailable},
	})
	if st := ob.Stats(); st.Rows != 0 || st.Appended != 0 {
		t.Errorf("outbox rows %d appended %d, want none", st.Rows, st.Appended)
	}
}

// TestPartnacConversionBodyLimitServed sends oversized bodies to every write
// endpoint through a real fasthttp server on loopback.
func TestPartnacConversionBodyLimitServed(t *testing.T) {
	s, sim := partnacConvServer(t)
	partnacSeedConversions(sim)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Shutdown(context.Background())
	pad := strings.Repeat("x", 70000)
	for _, tt := range []struct{ method, path, body string }{
		{"POST", "/v1/tracking/conversions", `{"partnership_code":"PARTNER_REF_123","unique_id":"big","conversion_type":"sale","amount":1,"metadata":{"p":"` + pad + `"}}`},
		{"POST", "/v1/tracking/conversions/order_1/refund", `{"reason":"` + pad + `"}`},
		{"PATCH", "/v1/tracking/conversions/order_1", `{"metadata":{"p":"` + pad + `"}}`},
	} {
		var req fasthttp.Request
		var resp fasthttp.Response
		req.SetRequestURI("http://" + ln.Addr().String() + tt.path)
		req.Header.SetMethod(tt.method)
		req.Header.Set("Authorization", "Bearer "+keyA)
		req.Header.SetContentType("application/json")
		req.SetBodyString(tt.body)
		if err := fasthttp.DoTimeout(&req, &resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != 413 || !strings.Contains(string(resp.Body()), CodePayloadTooLarge) {
			t.Errorf("%s %s oversized: %d %s", tt.method, tt.path, resp.StatusCode(), resp.Body())
		}
	}
	if n := partnacAppended(s); n != 0 {
		t.Errorf("oversized bodies wrote %d rows", n)
	}
}

// partnacFuzzCheck asserts the invariant shared by the fuzz targets: a 2xx
// with a data object and at most one row written (exactly one for 201 and
// 202), or a 4xx JSON error and nothing written; never a 5xx.
func partnacFuzzCheck(t *testing.T, ctx *fasthttp.RequestCtx, wrote uint64, body string) {
	t.Helper()
	code := ctx.Response.StatusCode()
	switch {
	case code == 201 || code == 202:
		if wrote != 1 {
			t.Fatalf("%d but %d rows appended for %q", code, wrote, body)
		}
	case code == 200:
		if wrote > 1 {
			t.Fatalf("200 but %d rows appended for %q", wrote, body)
		}
	case code >= 400 && code < 500:
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(ctx.Response.Body(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%d without a JSON error: %s", code, ctx.Response.Body())
		}
		if StatusOf(e.Error.Code) != code {
			t.Fatalf("error code %q answered %d, registered %d", e.Error.Code, code, StatusOf(e.Error.Code))
		}
		if wrote != 0 {
			t.Fatalf("rejected body (%d %s) wrote %d rows: %q", code, e.Error.Code, wrote, body)
		}
		return
	default:
		t.Fatalf("status %d for body %q: %s", code, body, ctx.Response.Body())
	}
	var ok struct{ Data json.RawMessage }
	if err := json.Unmarshal(ctx.Response.Body(), &ok); err != nil || len(ok.Data) == 0 {
		t.Fatalf("%d without a data member: %s", code, ctx.Response.Body())
	}
}

func FuzzPartnacTrackConversion(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "partnac", "01_track_seed_example.request.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(seed),
		`{"partnership_code":"SPRING25","unique_id":"f1","conversion_type":"lead","amount":"0","session_id":"x","campaign_id":"ca","metadata":{"currency":"JPY","customer_id":1,"ip_address":"203.0.113.9"}}`,
		`{"partnership_code":"PARTNER_REF_123","unique_id":"f2","conversion_type":"sale","amount":1.001}`,
		`{"partnership_code":"PARTNER_REF_123","unique_id":"f3","conversion_type":"sale","amount":"NaN"}`,
		`{"partnership_code":"PARTNER_REF_123","unique_id":"f4","conversion_type":"sale","amount":1,"metadata":{"currency":"XYZ"}}`,
		`{"amount":-1}`, `{`, `[]`, `null`, `""`, `{"metadata":{"customer_id":-0}}`,
	} {
		f.Add(s)
	}
	s, _ := partnacConvServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		before := partnacAppended(s)
		ctx := do(s, "POST", "/v1/tracking/conversions", partnacHdrA, body)
		partnacFuzzCheck(t, ctx, partnacAppended(s)-before, body)
		if c := ctx.Response.StatusCode(); c == 201 || c == 202 {
			ev := partnacLastEvent(t, s)
			if ev.Conversion == nil || ev.Conversion.AmountMinor < 0 || ev.Conversion.AmountMinor > money.MaxMinor ||
				ev.ID != sink.EventID("ma", sink.KindConversion, ev.Conversion.UniqueID) {
				t.Fatalf("accepted body %q made event %+v", body, ev)
			}
		}
	})
}

func FuzzPartnacRefundConversion(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"amount":1.5,"external_refund_id":"re_1","reason":"fraud","reverse_paid_earnings":false}`,
		`{"amount":"0.01"}`, `{"amount":0}`, `{"amount":41}`, `{"external_refund_id":"full"}`, `{"amount":1e2}`, `{`, `[]`,
	} {
		f.Add("order_1", s)
	}
	f.Add("jp_1", `{"amount":"3"}`)
	f.Add("order_b", `{}`)
	s, sim := partnacConvServer(f)
	partnacSeedConversions(sim)
	f.Fuzz(func(t *testing.T, id, body string) {
		if id == "" || strings.ContainsAny(id, "/?#%") || !strings.HasPrefix(id, strings.TrimSpace(id)) {
			return // the path would not address one conversion
		}
		before := partnacAppended(s)
		ctx := do(s, "POST", "/v1/tracking/conversions/"+id+"/refund", partnacHdrA, body)
		partnacFuzzCheck(t, ctx, partnacAppended(s)-before, body)
	})
}

func FuzzPartnacUpdateConversion(f *testing.F) {
	for _, s := range []string{
		`{"amount":120,"unique_id":"order_1","metadata":{"plan":"pro"},"recalculate_commissions":true}`,
		`{"metadata":{"currency":"EUR"}}`, `{"amount":"9.99"}`, `{}`, `{"recalculate_commissions":true}`, `{`, `{"metadata":[]}`,
	} {
		f.Add(s)
	}
	s, sim := partnacConvServer(f)
	partnacSeedConversions(sim)
	f.Fuzz(func(t *testing.T, body string) {
		before := partnacAppended(s)
		ctx := do(s, "PATCH", "/v1/tracking/conversions/order_1", partnacHdrA, body)
		partnacFuzzCheck(t, ctx, partnacAppended(s)-before, body)
	})
}

func FuzzPartnacListConversions(f *testing.F) {
	for _, q := range []string{"", "limit=5&offset=2", "limit=1000", "limit=0", "campaign_id=cb", "partnership_id=pr&status=paid", "offset=-1", "limit=%zz"} {
		f.Add(q)
	}
	s, sim := partnacConvServer(f)
	partnacSeedConversions(sim)
	f.Fuzz(func(t *testing.T, query string) {
		if strings.ContainsAny(query, "# \r\n\t") {
			return
		}
		before := partnacAppended(s)
		ctx := do(s, "GET", "/v1/tracking/conversions?"+query, partnacHdrA, "")
		if c := ctx.Response.StatusCode(); c == 201 || c == 202 {
			t.Fatalf("list answered %d", c)
		}
		partnacFuzzCheck(t, ctx, partnacAppended(s)-before, query)
		if ctx.Response.StatusCode() == 200 {
			var page struct {
				Data       []partnacConversion
				Pagination struct{ Limit int }
			}
			if err := json.Unmarshal(ctx.Response.Body(), &page); err != nil || page.Pagination.Limit < 1 || page.Pagination.Limit > 100 {
				t.Fatalf("page for %q: %v %s", query, err, ctx.Response.Body())
			}
		}
	})
}

func BenchmarkPartnacTrackConversion(b *testing.B) {
	s, sim := partnacConvServer(b)
	sim.setAuto(false)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		ctx := do(s, "POST", "/v1/tracking/conversions", partnacHdrA,
			fmt.Sprintf(`{"partnership_code":"PARTNER_REF_123","unique_id":"b%d","conversion_type":"sale","amount":"99.90","metadata":{"currency":"EUR","customer_id":"c1","ip_address":"203.0.113.9","user_agent":"UA"}}`, i))
		if ctx.Response.StatusCode() != 202 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// TestPartnacConversionErrorCodes: every code the conversion endpoints
// answer is registered with a client-error status.
func TestPartnacConversionErrorCodes(t *testing.T) {
	for _, tt := range []struct {
		code   string
		status int
	}{
		{CodeInvalidAmount, 422}, {CodeNegativeAmount, 422}, {CodeTooManyDecimals, 422},
		{CodeAmountTooLarge, 422}, {CodeUnknownCurrency, 422}, {CodeCurrencyMismatch, 422},
		{CodeRefundExceedsAmount, 422}, {CodeEventRejected, 422}, {CodeConversionNotFound, 404},
	} {
		if got := StatusOf(tt.code); got != tt.status {
			t.Errorf("StatusOf(%q) = %d, want %d", tt.code, got, tt.status)
		}
	}
	if e := amountError("amount", errors.New("plain")); e.Code != CodeInvalidAmount {
		t.Errorf("an unclassified money error maps to %q", e.Code)
	}
}

// TestPartnacPartialRefundIdempotencyKey: a keyless partial refund retried
// with the same Idempotency-Key is one event; another key is another refund.
func TestPartnacPartialRefundIdempotencyKey(t *testing.T) {
	s, sim := partnacConvServer(t)
	partnacSeedConversions(sim)
	sim.setAuto(false)
	send := func(key string) string {
		t.Helper()
		hdr := map[string]string{"Idempotency-Key": key}
		for k, v := range partnacHdrA {
			hdr[k] = v
		}
		ctx := do(s, "POST", "/v1/tracking/conversions/order_1/refund", hdr, `{"amount":"5.00"}`)
		if ctx.Response.StatusCode() != 202 {
			t.Fatalf("status = %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		return partnacLastEvent(t, s).ID
	}
	a, b, c := send("r-1"), send("r-1"), send("r-2")
	if a != b || a == c || !strings.HasSuffix(a, ":idem:r-1") {
		t.Errorf("ids %q %q %q: want the same id for one key and another for another key", a, b, c)
	}
	hdr := map[string]string{"Idempotency-Key": "bad key"}
	for k, v := range partnacHdrA {
		hdr[k] = v
	}
	checkError(t, do(s, "POST", "/v1/tracking/conversions/order_1/refund", hdr, `{"amount":"5.00"}`), 400, CodeInvalidParameter)
}
