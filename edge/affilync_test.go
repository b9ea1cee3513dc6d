package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"image/gif"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/enrich"
	"github.com/clickedge/clickedge/geo"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// The golden files are rewritten with `go test ./edge/ -run Affilync -update`.
// Another dialect's test may define the same flag: whoever comes first
// defines it, and every test reads it by name.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files in testdata/")
	}
}

func affilyncUpdate() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// affilyncNow is the edge's clock in these tests: the created_at of the
// document's example response.
var affilyncNow = time.Date(2026, 3, 20, 14, 30, 0, 0, time.UTC)

const affilyncDir = "testdata/affilync"

type affilyncGeo struct{}

func (affilyncGeo) Lookup(ip netip.Addr) geo.Location {
	if ip == netip.MustParseAddr("203.0.113.9") {
		return geo.Location{Country: "NL", Region: "NH", City: "Amsterdam"}
	}
	return geo.Location{}
}

// affilyncCatalog is testCatalog with the document's keys (YOUR_API_KEY,
// YOUR_TOKEN) for merchant B, pixel ids, and the afk_cid cookie on B's
// campaign.
func affilyncCatalog() *redirect.Catalog {
	c := testCatalog()
	c.Version = 2
	c.Merchants[1].APIKeyHashes = append(c.Merchants[1].APIKeyHashes,
		redirect.HashAPIKey("YOUR_API_KEY"), redirect.HashAPIKey("YOUR_TOKEN"))
	c.Campaigns[0].PixelID, c.Campaigns[0].Currency = "px_a", "EUR"
	c.Campaigns[1].PixelID = "px_p"
	c.Campaigns[2].PixelID, c.Campaigns[2].CookieName = "px_b", "afk_cid"
	return c
}

// affilyncServer is an edge on affilyncCatalog with a fake worker, a fixed
// clock and an enricher that trusts the test peer's network as a proxy.
func affilyncServer(t testing.TB) (*Server, *fakeBackend) {
	t.Helper()
	s, _ := newTestServer(t)
	fb := newFakeBackend()
	s.Backend = fb
	s.Now = func() time.Time { return affilyncNow }
	s.Enricher = enrich.New(enrich.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, Geo: affilyncGeo{}})
	data, err := json.Marshal(affilyncCatalog())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyCatalog(data); err != nil {
		t.Fatal(err)
	}
	return s, fb
}

// affilyncConvRecord is the worker's record of the document's example.
func affilyncConvRecord() sink.ConversionRecord {
	return sink.ConversionRecord{
		ID: "conv_abc123", MerchantID: "mb", UniqueID: "order_456", Type: "sale", Dialect: sink.DialectAffilync,
		AmountMinor: 9999, Currency: "USD", Status: sink.StatusPending, CampaignID: "camp_abc123",
		PartnerID: "usr_xyz789", ClickID: "clk_abc123", AttributedBy: sink.ByClickID, CommissionMinor: 1000,
		CreatedAt: affilyncNow.UnixMilli(), UpdatedAt: affilyncNow.UnixMilli(),
	}
}

func affilyncApplied(eventID string, rec sink.ConversionRecord) sink.EventResult {
	return sink.EventResult{EventID: eventID, Outcome: sink.OutcomeApplied, Conversion: &rec}
}

const affilyncOrderEvent = "mb:conversion:order_456"

// affilyncReq is a request file: "METHOD URL", header lines, a blank line,
// then the body byte for byte.
type affilyncReq struct {
	method, uri string
	hdr         map[string]string
	body        string
}

func affilyncReadRequest(t *testing.T, name string) affilyncReq {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(affilyncDir, name))
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := strings.Cut(string(raw), "\n\n")
	if !ok {
		t.Fatalf("%s: no blank line after the headers", name)
	}
	lines := strings.Split(head, "\n")
	method, uri, ok := strings.Cut(lines[0], " ")
	if !ok {
		t.Fatalf("%s: first line %q is not METHOD URL", name, lines[0])
	}
	r := affilyncReq{method: method, uri: uri, hdr: map[string]string{}, body: body}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			t.Fatalf("%s: header line %q", name, l)
		}
		r.hdr[k] = v
	}
	return r
}

func (r affilyncReq) do(s *Server) *fasthttp.RequestCtx { return do(s, r.method, r.uri, r.hdr, r.body) }

// affilyncDump is the golden form of a response.
func affilyncDump(ctx *fasthttp.RequestCtx) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP %d\n", ctx.Response.StatusCode())
	for _, h := range []string{"Content-Type", "Cache-Control"} {
		if v := ctx.Response.Header.Peek(h); len(v) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", h, v)
		}
	}
	b.WriteString("\n")
	b.Write(ctx.Response.Body())
	return b.Bytes()
}

func affilyncEvents(t *testing.T, s *Server) []sink.Event {
	t.Helper()
	evs, err := outboxEvents(s)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// affilyncClickID is a well-formed click id minted by the test servers' secret.
func affilyncClickID(t testing.TB, s *Server) string {
	t.Helper()
	return s.Minter.New(affilyncNow.Add(-time.Hour))
}

func TestAffilyncGolden(t *testing.T) {
	tests := []struct {
		name    string
		request string // the request file; "" means name
		setup   func(s *Server, fb *fakeBackend)
		status  int
	}{
		// The document's server-side example, answered with the document's response.
		{"track", "", func(s *Server, fb *fakeBackend) {
			fb.results[affilyncOrderEvent] = affilyncApplied(affilyncOrderEvent, affilyncConvRecord())
		}, 201},
		// The same order again: the original, 200.
		{"track_duplicate", "track", func(s *Server, fb *fakeBackend) {
			rec := affilyncConvRecord()
			rec.CreatedAt = affilyncNow.Add(-time.Hour).UnixMilli()
			fb.results[affilyncOrderEvent] = affilyncApplied(affilyncOrderEvent, rec)
		}, 200},
		// The worker has not answered in time.
		{"track_queued", "track", nil, 202},
		// The postback template, filled in and copied byte for byte (¤cy= included).
		{"postback", "", func(s *Server, fb *fakeBackend) {
			fb.results[affilyncOrderEvent] = affilyncApplied(affilyncOrderEvent, affilyncConvRecord())
		}, 201},
		{"postback_api_key", "", func(s *Server, fb *fakeBackend) {
			fb.results[affilyncOrderEvent] = affilyncApplied(affilyncOrderEvent, affilyncConvRecord())
		}, 201},
		{"list", "", func(s *Server, fb *fakeBackend) {
			a := affilyncConvRecord()
			b := affilyncConvRecord()
			b.ID, b.UniqueID, b.Type, b.AmountMinor, b.Currency, b.CommissionMinor = "conv_def456", "order_457", "lead", 0, "JPY", 500
			b.PartnerID, b.CampaignID, b.ClickID, b.Status = "", "", "", sink.StatusApproved
			other := affilyncConvRecord()
			other.MerchantID, other.ID = "ma", "conv_other"
			fb.conversions = []sink.ConversionRecord{b, a, other}
		}, 200},
		{"patch", "", func(s *Server, fb *fakeBackend) {
			rec := affilyncConvRecord()
			fb.conversions = []sink.ConversionRecord{rec}
			rec.Status, rec.Note = sink.StatusApproved, "Verified in our system"
			id := "mb:status:conv_abc123:approved"
			fb.results[id] = affilyncApplied(id, rec)
		}, 200},
		{"pixel_js", "", nil, 200},
		{"pixel_conversion", "", nil, 204},
		{"pixel_gif", "", nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, fb := affilyncServer(t)
			if tt.setup != nil {
				tt.setup(s, fb)
			}
			req := tt.request
			if req == "" {
				req = tt.name
			}
			ctx := affilyncReadRequest(t, req+".request").do(s)
			if got := ctx.Response.StatusCode(); got != tt.status {
				t.Fatalf("status = %d, want %d: %s", got, tt.status, ctx.Response.Body())
			}
			got := affilyncDump(ctx)
			path := filepath.Join(affilyncDir, tt.name+".response")
			if affilyncUpdate() {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("response differs from %s:\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

// TestAffilyncSeedResponse checks the answer to the document's example
// request against the document's example response: the same keys, the same
// values.
func TestAffilyncSeedResponse(t *testing.T) {
	s, fb := affilyncServer(t)
	fb.results[affilyncOrderEvent] = affilyncApplied(affilyncOrderEvent, affilyncConvRecord())
	ctx := affilyncReadRequest(t, "track.request").do(s)
	seed, err := os.ReadFile(filepath.Join(affilyncDir, "seed_track_response.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	if err := json.Unmarshal(ctx.Response.Body(), &got); err != nil {
		t.Fatalf("response: %v: %s", err, ctx.Response.Body())
	}
	if err := json.Unmarshal(seed, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("response = %v\nwant the document's %v", got, want)
	}
	if got, want := string(ctx.Response.Header.ContentType()), "application/json"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
}

// TestAffilyncTrackEvent checks what the document's example commits.
func TestAffilyncTrackEvent(t *testing.T) {
	s, _ := affilyncServer(t)
	ctx := affilyncReadRequest(t, "track.request").do(s)
	if ctx.Response.StatusCode() != 202 {
		t.Fatalf("status = %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	evs := affilyncEvents(t, s)
	if len(evs) != 1 {
		t.Fatalf("outbox holds %d events, want 1", len(evs))
	}
	ev := evs[0]
	sum := sha256.Sum256([]byte("mb\x00[email protected]"))
	want := sink.Event{
		V: sink.EventVersion, ID: affilyncOrderEvent, Kind: sink.KindConversion, TS: affilyncNow.UnixMilli(),
		Edge: "t", Dialect: sink.DialectAffilync, MerchantID: "mb",
		Conversion: &sink.ConversionEvent{
			UniqueID: "order_456", Type: "sale", AmountMinor: 9999, Currency: "USD", ClickID: "clk_abc123",
			CouponCode: "SUMMER20", CustomerEmailHash: hex.EncodeToString(sum[:]), ProductID: "prod_789",
			Metadata: json.RawMessage(`{"product_id":"prod_789","coupon_code":"SUMMER20"}`),
		},
	}
	if !reflect.DeepEqual(ev, want) {
		gj, _ := json.Marshal(ev)
		wj, _ := json.Marshal(want)
		t.Errorf("event =\n%s\nwant\n%s", gj, wj)
	}
	if strings.Contains(string(mustJSON(t, ev)), "[email protected]") {
		t.Errorf("the customer email reached the event in clear")
	}
	rows, err := s.Outbox.Peek(0, 10)
	if err != nil || len(rows) != 1 || rows[0].MsgID != affilyncOrderEvent || rows[0].Subject != sink.EventSubjectPrefix+"mb" {
		t.Errorf("outbox rows = %+v, %v: want one on %smb with Nats-Msg-Id %s", rows, err, sink.EventSubjectPrefix, affilyncOrderEvent)
	}
}

// affilyncWords joins the values with spaces.
func affilyncWords(a ...any) string { return strings.TrimSuffix(fmt.Sprintln(a...), "\n") }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAffilyncEmailHash(t *testing.T) {
	ref := func(m, e string) string {
		s := sha256.Sum256([]byte(m + "\x00" + e))
		return hex.EncodeToString(s[:])
	}
	tests := []struct {
		merchant, email, want string
	}{
		{"mb", "buyer@example.com", ref("mb", "buyer@example.com")},
		{"mb", "  Buyer@Example.COM\t", ref("mb", "buyer@example.com")},
		{"ma", "buyer@example.com", ref("ma", "buyer@example.com")},
		{"mb", "   ", ""},
		{"mb", "", ""},
	}
	for _, tt := range tests {
		if got := affilyncEmailHash(tt.merchant, tt.email); got != tt.want {
			t.Errorf("affilyncEmailHash(%q, %q) = %q, want %q", tt.merchant, tt.email, got, tt.want)
		}
	}
	if affilyncEmailHash("ma", "x@y.z") == affilyncEmailHash("mb", "x@y.z") {
		t.Errorf("two merchants get the same hash for one email")
	}
}

// TestAffilyncTrackValues covers the accepted forms of every field.
func TestAffilyncTrackValues(t *testing.T) {
	tests := []struct {
		name, body string
		check      func(c *sink.ConversionEvent) string
	}{
		{"amount number", `{"click_id":"c","order_id":"o","amount":99.99}`, func(c *sink.ConversionEvent) string {
			return affilyncWords(c.AmountMinor, c.Currency, c.Type)
		}},
		{"amount string", `{"click_id":"c","order_id":"o","amount":"99.99"}`, func(c *sink.ConversionEvent) string {
			return affilyncWords(c.AmountMinor, c.Currency, c.Type)
		}},
		{"zero amount lead", `{"click_id":"c","order_id":"o","amount":0,"event_type":"LEAD"}`, func(c *sink.ConversionEvent) string {
			return affilyncWords(c.AmountMinor, c.Currency, c.Type)
		}},
		{"trailing zeros", `{"click_id":"c","order_id":"o","amount":"10.000"}`, func(c *sink.ConversionEvent) string {
			return affilyncWords(c.AmountMinor, c.Currency, c.Type)
		}},
		{"yen", `{"click_id":"c","order_id":"o","amount":"1500","currency":"jpy","event_type":"signup"}`, func(c *sink.ConversionEvent) string {
			return affilyncWords(c.AmountMinor, c.Currency, c.Type)
		}},
		{"dinar", `{"click_id":"c","order_id":"o","amount":"1.5","currency":"KWD","event_type":"trial"}`, func(c *sink.ConversionEvent) string {
			return affilyncWords(c.AmountMinor, c.Currency, c.Type)
		}},
		{"numeric product id", `{"click_id":"c","order_id":"o","amount":1,"metadata":{"product_id":789,"product_type":"plan","coupon_code":null,"x":[1]}}`, func(c *sink.ConversionEvent) string {
			return affilyncWords(c.ProductID, c.ProductType, c.CouponCode == "", string(c.Metadata))
		}},
		{"null optional fields", `{"click_id":"c","order_id":"o","amount":1,"currency":null,"event_type":null,"customer_email":null,"metadata":null,"extra":true}`, func(c *sink.ConversionEvent) string {
			return affilyncWords(c.Currency, c.Type, c.CustomerEmailHash == "", c.Metadata == nil)
		}},
	}
	want := map[string]string{
		"amount number":        "9999 USD sale",
		"amount string":        "9999 USD sale",
		"zero amount lead":     "0 USD lead",
		"trailing zeros":       "1000 USD sale",
		"yen":                  "1500 JPY signup",
		"dinar":                "1500 KWD trial",
		"numeric product id":   `789 plan true {"product_id":789,"product_type":"plan","coupon_code":null,"x":[1]}`,
		"null optional fields": "USD sale true true",
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := affilyncServer(t)
			ctx := do(s, "POST", "/api/conversions/track", map[string]string{"Authorization": "Bearer YOUR_API_KEY"}, tt.body)
			if ctx.Response.StatusCode() != 202 {
				t.Fatalf("status = %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			evs := affilyncEvents(t, s)
			if len(evs) != 1 {
				t.Fatalf("%d events", len(evs))
			}
			if got := tt.check(evs[0].Conversion); got != want[tt.name] {
				t.Errorf("got %q, want %q", got, want[tt.name])
			}
		})
	}
}

// affilyncBadCase is one request that must be refused with status and code,
// writing nothing.
type affilyncBadCase struct {
	name, method, uri string
	hdr               map[string]string
	body              string
	status            int
	code              string
}

func runAffilyncBad(t *testing.T, s *Server, tests []affilyncBadCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Outbox.Stats().Appended
			ctx := do(s, tt.method, tt.uri, tt.hdr, tt.body)
			checkError(t, ctx, tt.status, tt.code)
			if after := s.Outbox.Stats().Appended; after != before {
				t.Errorf("a refused request wrote %d rows", after-before)
			}
		})
	}
}

func TestAffilyncTrackBadInput(t *testing.T) {
	s, _ := affilyncServer(t)
	auth := map[string]string{"Authorization": "Bearer YOUR_API_KEY", "Content-Type": "application/json"}
	body := func(fields string) string { return `{"click_id":"clk_1","order_id":"o1",` + fields + `}` }
	amount := func(a string) string { return body(`"amount":` + a) }
	const uri = "/api/conversions/track"
	long := strings.Repeat("x", 256)
	tests := []affilyncBadCase{
		{"no key", "POST", uri, map[string]string{"Content-Type": "application/json"}, amount(`"1"`), 401, CodeUnauthorized},
		{"unknown key", "POST", uri, map[string]string{"Authorization": "Bearer nope"}, amount(`"1"`), 401, CodeUnauthorized},
		{"key as basic", "POST", uri, map[string]string{"Authorization": "Basic YOUR_API_KEY"}, amount(`"1"`), 401, CodeUnauthorized},
		{"form body", "POST", uri, map[string]string{"Authorization": "Bearer YOUR_API_KEY", "Content-Type": "application/x-www-form-urlencoded"}, "click_id=1", 415, CodeUnsupportedMedia},
		{"empty body", "POST", uri, auth, "", 400, CodeInvalidJSON},
		{"malformed", "POST", uri, auth, `{"click_id":`, 400, CodeInvalidJSON},
		{"trailing data", "POST", uri, auth, amount(`"1"`) + `{}`, 400, CodeInvalidJSON},
		{"bare NaN", "POST", uri, auth, amount(`NaN`), 400, CodeInvalidJSON},
		{"array body", "POST", uri, auth, `[{"click_id":"x"}]`, 422, CodeInvalidField},
		{"no click_id", "POST", uri, auth, `{"order_id":"o","amount":"1"}`, 422, CodeMissingField},
		{"empty click_id", "POST", uri, auth, `{"click_id":"","order_id":"o","amount":"1"}`, 422, CodeMissingField},
		{"no order_id", "POST", uri, auth, `{"click_id":"c","amount":"1"}`, 422, CodeMissingField},
		{"no amount", "POST", uri, auth, body(`"currency":"USD"`), 422, CodeMissingField},
		{"null amount", "POST", uri, auth, amount(`null`), 422, CodeMissingField},
		{"click_id number", "POST", uri, auth, `{"click_id":5,"order_id":"o","amount":"1"}`, 422, CodeInvalidField},
		{"order_id object", "POST", uri, auth, `{"click_id":"c","order_id":{},"amount":"1"}`, 422, CodeInvalidField},
		{"currency number", "POST", uri, auth, body(`"amount":"1","currency":840`), 422, CodeInvalidField},
		{"metadata array", "POST", uri, auth, body(`"amount":"1","metadata":[1]`), 422, CodeInvalidField},
		{"metadata string", "POST", uri, auth, body(`"amount":"1","metadata":"x"`), 422, CodeInvalidField},
		{"coupon object", "POST", uri, auth, body(`"amount":"1","metadata":{"coupon_code":{"a":1}}`), 422, CodeInvalidField},
		{"product bool", "POST", uri, auth, body(`"amount":"1","metadata":{"product_id":true}`), 422, CodeInvalidField},
		{"coupon too long", "POST", uri, auth, body(`"amount":"1","metadata":{"coupon_code":"` + long + `"}`), 422, CodeInvalidField},
		{"bad event type", "POST", uri, auth, body(`"amount":"1","event_type":"refund"`), 422, CodeInvalidField},
		{"order_id too long", "POST", uri, auth, `{"click_id":"c","order_id":"` + long + `","amount":"1"}`, 422, CodeInvalidField},
		{"order_id newline", "POST", uri, auth, `{"click_id":"c","order_id":"a\nb","amount":"1"}`, 422, CodeInvalidField},
		{"click_id too long", "POST", uri, auth, `{"click_id":"` + strings.Repeat("c", 65) + `","order_id":"o","amount":"1"}`, 422, CodeInvalidField},
		{"email too long", "POST", uri, auth, body(`"amount":"1","customer_email":"` + strings.Repeat("e", 321) + `"`), 422, CodeInvalidField},
		{"amount bool", "POST", uri, auth, amount(`true`), 422, CodeInvalidAmount},
		{"amount object", "POST", uri, auth, amount(`{"value":1}`), 422, CodeInvalidAmount},
		{"amount NaN string", "POST", uri, auth, amount(`"NaN"`), 422, CodeInvalidAmount},
		{"amount Infinity string", "POST", uri, auth, amount(`"Infinity"`), 422, CodeInvalidAmount},
		{"amount empty string", "POST", uri, auth, amount(`""`), 422, CodeInvalidAmount},
		{"amount exponent", "POST", uri, auth, amount(`1e3`), 422, CodeInvalidAmount},
		{"amount comma", "POST", uri, auth, amount(`"1,000.00"`), 422, CodeInvalidAmount},
		{"amount plus", "POST", uri, auth, amount(`"+5"`), 422, CodeInvalidAmount},
		{"amount negative", "POST", uri, auth, amount(`-5`), 422, CodeNegativeAmount},
		{"amount negative string", "POST", uri, auth, amount(`"-0.01"`), 422, CodeNegativeAmount},
		{"amount three decimals", "POST", uri, auth, amount(`"99.999"`), 422, CodeTooManyDecimals},
		{"yen with decimals", "POST", uri, auth, body(`"amount":"1.5","currency":"JPY"`), 422, CodeTooManyDecimals},
		{"amount huge", "POST", uri, auth, amount(`"10000000000000000"`), 422, CodeAmountTooLarge},
		{"amount huge number", "POST", uri, auth, amount(`123456789012345678901234567890`), 422, CodeAmountTooLarge},
		{"unknown currency", "POST", uri, auth, body(`"amount":"1","currency":"XYZ"`), 422, CodeUnknownCurrency},
		{"withdrawn currency", "POST", uri, auth, body(`"amount":"1","currency":"HRK"`), 422, CodeUnknownCurrency},
		{"currency symbol", "POST", uri, auth, body(`"amount":"1","currency":"$"`), 422, CodeUnknownCurrency},
		{"GET on track", "GET", uri, auth, "", 405, CodeMethodNotAllowed},
	}
	runAffilyncBad(t, s, tests)
}

func TestAffilyncPostbackBadInput(t *testing.T) {
	s, _ := affilyncServer(t)
	const base = "/api/conversions/postback?api_key=YOUR_API_KEY&click_id=c&order_id=o"
	tests := []affilyncBadCase{
		{"no key", "GET", "/api/conversions/postback?click_id=c&order_id=o&amount=1", nil, "", 401, CodeUnauthorized},
		{"unknown key", "GET", "/api/conversions/postback?api_key=nope&click_id=c&order_id=o&amount=1", nil, "", 401, CodeUnauthorized},
		{"header wins over query", "GET", base + "&amount=1", map[string]string{"Authorization": "Bearer nope"}, "", 401, CodeUnauthorized},
		{"no amount", "GET", base, nil, "", 422, CodeMissingField},
		{"no click_id", "GET", "/api/conversions/postback?api_key=YOUR_API_KEY&order_id=o&amount=1", nil, "", 422, CodeMissingField},
		{"no order_id", "GET", "/api/conversions/postback?api_key=YOUR_API_KEY&click_id=c&amount=1", nil, "", 422, CodeMissingField},
		{"only the sign", "GET", "/api/conversions/postback?api_key=YOUR_API_KEY&click_id=c&amount=1&order_id=%C2%A4cy=USD", nil, "", 422, CodeMissingField},
		{"amount words", "GET", base + "&amount=ninety", nil, "", 422, CodeInvalidAmount},
		{"amount NaN", "GET", base + "&amount=NaN", nil, "", 422, CodeInvalidAmount},
		{"amount quoted", "GET", base + `&amount="1"`, nil, "", 422, CodeInvalidAmount},
		{"amount space", "GET", base + "&amount=1+000", nil, "", 422, CodeInvalidAmount},
		{"amount negative", "GET", base + "&amount=-1", nil, "", 422, CodeNegativeAmount},
		{"amount decimals", "GET", base + "&amount=1.001", nil, "", 422, CodeTooManyDecimals},
		{"amount huge", "GET", base + "&amount=99999999999999999", nil, "", 422, CodeAmountTooLarge},
		{"unknown currency", "GET", base + "&amount=1&currency=ABC", nil, "", 422, CodeUnknownCurrency},
		{"mangled unknown currency", "GET", "/api/conversions/postback?api_key=YOUR_API_KEY&click_id=c&amount=1&order_id=o%C2%A4cy=ZZZ", nil, "", 422, CodeUnknownCurrency},
		{"bad event type", "GET", base + "&amount=1&event_type=x", nil, "", 422, CodeInvalidField},
		{"order id control byte", "GET", "/api/conversions/postback?api_key=YOUR_API_KEY&click_id=c&amount=1&order_id=a%00b", nil, "", 422, CodeInvalidField},
		{"HEAD", "HEAD", base + "&amount=1", nil, "", 405, CodeMethodNotAllowed},
		{"POST", "POST", base + "&amount=1", nil, "", 405, CodeMethodNotAllowed},
	}
	runAffilyncBad(t, s, tests)
}

// TestAffilyncPostbackCurrencySign: the document's template, copied with its
// "¤cy=", works raw or percent-encoded; a real &currency= wins.
func TestAffilyncPostbackCurrencySign(t *testing.T) {
	tests := []struct {
		name, query     string
		order, currency string
		amountMinor     int64
	}{
		{"raw sign", "order_id=order_456\u00a4cy=EUR&amount=5", "order_456", "EUR", 500},
		{"encoded sign", "order_id=order_456%C2%A4cy=jpy&amount=5", "order_456", "JPY", 5},
		{"proper parameter", "order_id=order_456&currency=KWD&amount=5", "order_456", "KWD", 5000},
		{"proper parameter wins", "order_id=o%C2%A4cy=EUR&currency=USD&amount=5", "o\u00a4cy=EUR", "USD", 500},
		{"no currency", "order_id=o&amount=5", "o", "USD", 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := affilyncServer(t)
			ctx := do(s, "GET", "/api/conversions/postback?api_key=YOUR_API_KEY&click_id=c&"+tt.query, nil, "")
			if ctx.Response.StatusCode() != 202 {
				t.Fatalf("status = %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			evs := affilyncEvents(t, s)
			if len(evs) != 1 {
				t.Fatalf("%d events", len(evs))
			}
			c := evs[0].Conversion
			if c.UniqueID != tt.order || c.Currency != tt.currency || c.AmountMinor != tt.amountMinor || evs[0].ID != sink.EventID("mb", sink.KindConversion, tt.order) {
				t.Errorf("event %s: order %q currency %s amount %d, want %q %s %d", evs[0].ID, c.UniqueID, c.Currency, c.AmountMinor, tt.order, tt.currency, tt.amountMinor)
			}
		})
	}
}

// TestAffilyncResults maps every worker outcome to its answer.
func TestAffilyncResults(t *testing.T) {
	body := `{"click_id":"clk_abc123","order_id":"order_456","amount":"99.99"}`
	tests := []struct {
		name   string
		result *sink.EventResult
		down   bool
		status int
		code   string // error code, or data.status
	}{
		{"applied now", &sink.EventResult{Outcome: sink.OutcomeApplied}, false, 201, sink.StatusPending},
		{"duplicate", &sink.EventResult{Outcome: sink.OutcomeDuplicate}, false, 200, sink.StatusPending},
		{"ignored with record", &sink.EventResult{Outcome: sink.OutcomeIgnored}, false, 200, sink.StatusPending},
		{"ignored without record", &sink.EventResult{Outcome: sink.OutcomeIgnored}, false, 200, "ignored"},
		{"rejected unknown code", &sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "strange_reason", Message: "no"}}, false, 422, CodeEventRejected},
		{"rejected without error", &sink.EventResult{Outcome: sink.OutcomeRejected}, false, 422, CodeEventRejected},
		{"rejected not found", &sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "conversion_not_found", Message: "no"}}, false, 404, CodeConversionNotFound},
		{"applied without record", &sink.EventResult{Outcome: sink.OutcomeApplied}, false, 202, "queued"},
		{"unknown outcome", &sink.EventResult{Outcome: "weird"}, false, 202, "queued"},
		{"worker down", nil, true, 202, "queued"},
		{"pending", nil, false, 202, "queued"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, fb := affilyncServer(t)
			fb.down = tt.down
			if tt.result != nil {
				r := *tt.result
				if r.Outcome != sink.OutcomeRejected && tt.name != "ignored without record" && tt.name != "applied without record" && r.Outcome != "weird" {
					rec := affilyncConvRecord()
					r.Conversion = &rec
				}
				fb.results[affilyncOrderEvent] = r
			}
			ctx := do(s, "POST", "/api/conversions/track", map[string]string{"Authorization": "Bearer YOUR_API_KEY"}, body)
			if ctx.Response.StatusCode() >= 400 {
				checkError(t, ctx, tt.status, tt.code)
				return
			}
			var got struct{ Data map[string]any }
			if err := json.Unmarshal(ctx.Response.Body(), &got); err != nil {
				t.Fatal(err)
			}
			if ctx.Response.StatusCode() != tt.status || got.Data["status"] != tt.code {
				t.Errorf("answer %d %s, want %d with status %q", ctx.Response.StatusCode(), ctx.Response.Body(), tt.status, tt.code)
			}
			if tt.status == 202 && (got.Data["order_id"] != "order_456" || got.Data["click_id"] != "clk_abc123") {
				t.Errorf("queued answer %s lacks the identifiers", ctx.Response.Body())
			}
			if n := len(affilyncEvents(t, s)); n != 1 {
				t.Errorf("%d events written, want 1", n)
			}
		})
	}
}

// TestAffilyncDuplicateOrder: the same order twice is one event id; the
// second answer is the original conversion with 200.
func TestAffilyncDuplicateOrder(t *testing.T) {
	s, fb := affilyncServer(t)
	fb.results[affilyncOrderEvent] = affilyncApplied(affilyncOrderEvent, affilyncConvRecord())
	req := affilyncReadRequest(t, "track.request")
	first := req.do(s)
	if first.Response.StatusCode() != 201 {
		t.Fatalf("first report: %d", first.Response.StatusCode())
	}
	s.Now = func() time.Time { return affilyncNow.Add(time.Minute) }
	second := do(s, "GET", "/api/conversions/postback?click_id=clk_other&amount=5&order_id=order_456&api_key=YOUR_API_KEY", nil, "")
	if second.Response.StatusCode() != 200 || !bytes.Equal(first.Response.Body(), second.Response.Body()) {
		t.Errorf("second report: %d %s, want 200 with the original %s", second.Response.StatusCode(), second.Response.Body(), first.Response.Body())
	}
	evs := affilyncEvents(t, s)
	if len(evs) != 2 || evs[0].ID != evs[1].ID {
		t.Errorf("events %+v: want two rows with one event id (Nats-Msg-Id dedupes them)", evs)
	}
}

func TestAffilyncList(t *testing.T) {
	day := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	tests := []struct {
		name, query string
		want        sink.ConversionQuery
		page        int
	}{
		{"defaults", "", sink.ConversionQuery{MerchantID: "mb", Limit: 20}, 1},
		{"seed range", "date_from=2026-03-01&date_to=2026-03-31", sink.ConversionQuery{MerchantID: "mb", Limit: 20,
			FromMilli: day("2026-03-01T00:00:00Z"), ToMilli: day("2026-04-01T00:00:00Z")}, 1},
		{"date-times", "date_from=2026-03-01T10:00:00%2B02:00&date_to=2026-03-02T12:00:00.5Z", sink.ConversionQuery{MerchantID: "mb", Limit: 20,
			FromMilli: day("2026-03-01T08:00:00Z"), ToMilli: day("2026-03-02T12:00:00.501Z")}, 1},
		{"local date-time is UTC", "date_from=2026-03-01T10:00:00", sink.ConversionQuery{MerchantID: "mb", Limit: 20,
			FromMilli: day("2026-03-01T10:00:00Z")}, 1},
		{"one day", "date_from=2026-03-05&date_to=2026-03-05", sink.ConversionQuery{MerchantID: "mb", Limit: 20,
			FromMilli: day("2026-03-05T00:00:00Z"), ToMilli: day("2026-03-06T00:00:00Z")}, 1},
		{"filters", "campaign_id=cb&affiliate_id=pb&status=approved", sink.ConversionQuery{MerchantID: "mb", Limit: 20,
			CampaignID: "cb", PartnerID: "pb", Status: "approved"}, 1},
		{"paging", "page=3&per_page=50", sink.ConversionQuery{MerchantID: "mb", Limit: 50, Offset: 100}, 3},
		{"per_page clamped", "page=2&per_page=1000", sink.ConversionQuery{MerchantID: "mb", Limit: 100, Offset: 100}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, fb := affilyncServer(t)
			for i := range 3 {
				r := affilyncConvRecord()
				r.ID = fmt.Sprintf("conv_%d", i)
				fb.conversions = append(fb.conversions, r)
			}
			ctx := do(s, "GET", "/api/conversions?"+tt.query, map[string]string{"Authorization": "Bearer YOUR_TOKEN"}, "")
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if fb.lastQuery != tt.want {
				t.Errorf("query = %+v, want %+v", fb.lastQuery, tt.want)
			}
			var got struct {
				Data []map[string]any
				Meta map[string]int
			}
			if err := json.Unmarshal(ctx.Response.Body(), &got); err != nil {
				t.Fatal(err)
			}
			wantMeta := map[string]int{"page": tt.page, "per_page": tt.want.Limit, "total": len(got.Data), "total_pages": 1}
			if len(got.Data) == 0 {
				wantMeta["total_pages"] = 0
			}
			if !reflect.DeepEqual(got.Meta, wantMeta) {
				t.Errorf("meta = %v, want %v", got.Meta, wantMeta)
			}
		})
	}
}

func TestAffilyncListItem(t *testing.T) {
	r := sink.ConversionRecord{ID: "conv_1", UniqueID: "o1", Type: "trial", AmountMinor: 1500, Currency: "KWD",
		CommissionMinor: -25, Status: sink.StatusRejected, CreatedAt: day0()}
	got := string(mustJSON(t, toAffilyncItem(&r)))
	want := `{"conversion_id":"conv_1","order_id":"o1","click_id":null,"affiliate_id":null,"campaign_id":null,"amount":"1.500","currency":"KWD","event_type":"trial","commission_amount":"-0.025","status":"rejected","created_at":"2026-03-20T14:30:00Z"}`
	if got != want {
		t.Errorf("item = %s\nwant   %s", got, want)
	}
	r.Currency = "XYZ"
	if got := toAffilyncItem(&r).Amount; got != "1500" {
		t.Errorf("amount of an unknown currency = %q, want the raw minor units", got)
	}
}

func day0() int64 { return affilyncNow.Add(999 * time.Millisecond).UnixMilli() }

func TestAffilyncListBadInput(t *testing.T) {
	s, _ := affilyncServer(t)
	a := map[string]string{"Authorization": "Bearer YOUR_TOKEN"}
	tests := []affilyncBadCase{
		{"no key", "GET", "/api/conversions", nil, "", 401, CodeUnauthorized},
		{"query key is not enough", "GET", "/api/conversions?api_key=YOUR_TOKEN", nil, "", 401, CodeUnauthorized},
		{"page zero", "GET", "/api/conversions?page=0", a, "", 400, CodeInvalidParameter},
		{"page words", "GET", "/api/conversions?page=two", a, "", 400, CodeInvalidParameter},
		{"per_page zero", "GET", "/api/conversions?per_page=0", a, "", 400, CodeInvalidParameter},
		{"per_page negative", "GET", "/api/conversions?per_page=-5", a, "", 400, CodeInvalidParameter},
		{"date words", "GET", "/api/conversions?date_from=yesterday", a, "", 400, CodeInvalidParameter},
		{"date US order", "GET", "/api/conversions?date_to=03/31/2026", a, "", 400, CodeInvalidParameter},
		{"date before 1970", "GET", "/api/conversions?date_from=1969-12-31", a, "", 400, CodeInvalidParameter},
		{"reversed range", "GET", "/api/conversions?date_from=2026-03-31&date_to=2026-03-01", a, "", 400, CodeInvalidParameter},
		{"bad status", "GET", "/api/conversions?status=queued", a, "", 400, CodeInvalidParameter},
		{"unknown campaign", "GET", "/api/conversions?campaign_id=nope", a, "", 404, CodeUnknownCampaign},
		{"unknown affiliate", "GET", "/api/conversions?affiliate_id=nope", a, "", 404, CodeUnknownAffiliate},
		{"DELETE", "DELETE", "/api/conversions", a, "", 405, CodeMethodNotAllowed},
	}
	runAffilyncBad(t, s, tests)

	fb := s.Backend.(*fakeBackend)
	fb.down = true
	checkError(t, do(s, "GET", "/api/conversions", a, ""), 503, CodeWorkerUnavailable)
	s.Backend = nil
	checkError(t, do(s, "GET", "/api/conversions", a, ""), 503, CodeWorkerUnavailable)
}

func TestAffilyncPatch(t *testing.T) {
	tests := []struct {
		name     string
		current  string // status of conv_abc123 before
		note     string // in the request
		result   *sink.EventResult
		status   int
		code     string // error code or data.status
		wantEvts int
	}{
		{"approve", sink.StatusPending, "ok", &sink.EventResult{Outcome: sink.OutcomeApplied}, 200, sink.StatusApproved, 1},
		{"approve again", sink.StatusPending, "ok", &sink.EventResult{Outcome: sink.OutcomeDuplicate}, 200, sink.StatusApproved, 1},
		{"already approved", sink.StatusApproved, "", nil, 200, sink.StatusApproved, 0},
		{"already approved with a new note", sink.StatusApproved, "late", nil, 202, "queued", 1},
		{"worker refuses", sink.StatusPaid, "", &sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "invalid_transition", Message: "paid"}}, 409, CodeInvalidTransition, 1},
		{"queued", sink.StatusPending, "", nil, 202, "queued", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, fb := affilyncServer(t)
			rec := affilyncConvRecord()
			rec.Status = tt.current
			fb.conversions = []sink.ConversionRecord{rec}
			const id = "mb:status:conv_abc123:approved"
			if tt.result != nil {
				r := *tt.result
				if r.Outcome != sink.OutcomeRejected {
					done := rec
					done.Status, done.Note = sink.StatusApproved, tt.note
					r.Conversion = &done
				}
				fb.results[id] = r
			}
			body := `{"status":"approved"` + map[bool]string{true: `,"note":"` + tt.note + `"`, false: ""}[tt.note != ""] + `}`
			// The order id works as the reference too.
			ctx := do(s, "PATCH", "/api/conversions/order_456", map[string]string{"Authorization": "Bearer YOUR_TOKEN"}, body)
			if tt.status >= 400 {
				checkError(t, ctx, tt.status, tt.code)
			} else {
				var got struct{ Data map[string]any }
				if err := json.Unmarshal(ctx.Response.Body(), &got); err != nil {
					t.Fatal(err)
				}
				if ctx.Response.StatusCode() != tt.status || got.Data["status"] != tt.code || got.Data["conversion_id"] != "conv_abc123" {
					t.Errorf("answer %d %s, want %d with status %q", ctx.Response.StatusCode(), ctx.Response.Body(), tt.status, tt.code)
				}
			}
			evs := affilyncEvents(t, s)
			if len(evs) != tt.wantEvts {
				t.Fatalf("%d events, want %d", len(evs), tt.wantEvts)
			}
			if len(evs) == 1 {
				want := sink.StatusEvent{ConversionID: "conv_abc123", Status: sink.StatusApproved, Note: tt.note}
				if evs[0].ID != id || evs[0].Kind != sink.KindStatus || evs[0].MerchantID != "mb" || *evs[0].Status != want {
					t.Errorf("event %s %s %s %+v, want %s with %+v", evs[0].ID, evs[0].Kind, evs[0].MerchantID, evs[0].Status, id, want)
				}
			}
		})
	}
}

func TestAffilyncPatchBadInput(t *testing.T) {
	s, fb := affilyncServer(t)
	fb.conversions = []sink.ConversionRecord{affilyncConvRecord()}
	a := map[string]string{"Authorization": "Bearer YOUR_TOKEN", "Content-Type": "application/json"}
	const uri = "/api/conversions/conv_abc123"
	tests := []affilyncBadCase{
		{"no key", "PATCH", uri, nil, `{"status":"approved"}`, 401, CodeUnauthorized},
		{"text body", "PATCH", uri, map[string]string{"Authorization": "Bearer YOUR_TOKEN", "Content-Type": "text/plain"}, `{"status":"approved"}`, 415, CodeUnsupportedMedia},
		{"empty body", "PATCH", uri, a, "", 400, CodeInvalidJSON},
		{"malformed", "PATCH", uri, a, `{"status":"approved"`, 400, CodeInvalidJSON},
		{"no status", "PATCH", uri, a, `{"note":"x"}`, 422, CodeMissingField},
		{"status number", "PATCH", uri, a, `{"status":1}`, 422, CodeInvalidField},
		{"status pending", "PATCH", uri, a, `{"status":"pending"}`, 422, CodeInvalidField},
		{"status paid", "PATCH", uri, a, `{"status":"paid"}`, 422, CodeInvalidField},
		{"status upper case", "PATCH", uri, a, `{"status":"APPROVED"}`, 422, CodeInvalidField},
		{"note array", "PATCH", uri, a, `{"status":"approved","note":[]}`, 422, CodeInvalidField},
		{"note too long", "PATCH", uri, a, `{"status":"approved","note":"` + strings.Repeat("n", 1001) + `"}`, 422, CodeInvalidField},
		{"unknown id", "PATCH", "/api/conversions/conv_nope", a, `{"status":"approved"}`, 404, CodeConversionNotFound},
		{"id too long", "PATCH", "/api/conversions/" + strings.Repeat("i", 300), a, `{"status":"approved"}`, 404, CodeConversionNotFound},
		{"PUT", "PUT", uri, a, `{"status":"approved"}`, 405, CodeMethodNotAllowed},
	}
	runAffilyncBad(t, s, tests)
	s.Backend = affilyncDownBackend{fb}
	before := s.Outbox.Stats().Appended
	checkError(t, do(s, "PATCH", uri, a, `{"status":"approved"}`), 503, CodeWorkerUnavailable)
	if s.Outbox.Stats().Appended != before {
		t.Errorf("a PATCH the worker could not check wrote an event")
	}
}

// affilyncDownBackend is a worker that does not answer reads.
type affilyncDownBackend struct{ *fakeBackend }

func (affilyncDownBackend) Conversion(context.Context, string, string) (sink.ConversionRecord, error) {
	return sink.ConversionRecord{}, &sink.APIError{Code: sink.APICodeWorkerUnavailable, Message: "down"}
}

// TestAffilyncTenantIsolation: merchant A's key never reaches merchant B's
// conversions, campaigns, affiliates or pixels' data.
func TestAffilyncTenantIsolation(t *testing.T) {
	s, fb := affilyncServer(t)
	b := affilyncConvRecord()
	fb.conversions = []sink.ConversionRecord{b}
	fb.results["mb:status:conv_abc123:approved"] = affilyncApplied("mb:status:conv_abc123:approved", b)
	a := map[string]string{"Authorization": "Bearer " + keyA}
	for _, ref := range []string{b.ID, b.UniqueID} {
		before := s.Outbox.Stats().Appended
		checkError(t, do(s, "PATCH", "/api/conversions/"+ref, a, `{"status":"approved"}`), 404, CodeConversionNotFound)
		checkError(t, do(s, "PATCH", "/api/conversions/"+ref, a, `{"status":"rejected"}`), 404, CodeConversionNotFound)
		if s.Outbox.Stats().Appended != before {
			t.Errorf("merchant A's PATCH of %s wrote an event", ref)
		}
	}
	checkError(t, do(s, "GET", "/api/conversions?campaign_id=cb", a, ""), 404, CodeUnknownCampaign)
	checkError(t, do(s, "GET", "/api/conversions?affiliate_id=pb", a, ""), 404, CodeUnknownAffiliate)
	ctx := do(s, "GET", "/api/conversions", a, "")
	if ctx.Response.StatusCode() != 200 || fb.lastQuery.MerchantID != "ma" || strings.Contains(string(ctx.Response.Body()), "conv_abc123") {
		t.Errorf("merchant A's list: %d %s (query %+v)", ctx.Response.StatusCode(), ctx.Response.Body(), fb.lastQuery)
	}
	// Merchant A reporting B's order id and click id records A's conversion,
	// under A's event id; it never touches B's.
	ctx = do(s, "POST", "/api/conversions/track", a, `{"click_id":"clk_abc123","order_id":"order_456","amount":"1"}`)
	if ctx.Response.StatusCode() != 202 {
		t.Fatalf("A's report: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	ctx = do(s, "GET", "/api/conversions/postback?api_key="+keyA+"&click_id=c&order_id=order_456&amount=1", nil, "")
	if ctx.Response.StatusCode() != 202 {
		t.Fatalf("A's postback: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	for _, ev := range affilyncEvents(t, s) {
		if ev.MerchantID != "ma" || ev.ID != "ma:conversion:order_456" {
			t.Errorf("merchant A's report became event %s of %s", ev.ID, ev.MerchantID)
		}
	}
	// And the other way round: B's key never reaches A's conversion.
	ra := affilyncConvRecord()
	ra.MerchantID, ra.ID, ra.UniqueID = "ma", "conv_of_a", "order_of_a"
	fb.conversions = append(fb.conversions, ra)
	for _, ref := range []string{ra.ID, ra.UniqueID} {
		checkError(t, do(s, "PATCH", "/api/conversions/"+ref, map[string]string{"Authorization": "Bearer YOUR_TOKEN"}, `{"status":"rejected"}`), 404, CodeConversionNotFound)
	}
	checkError(t, do(s, "GET", "/api/conversions?campaign_id=ca", map[string]string{"Authorization": "Bearer YOUR_TOKEN"}, ""), 404, CodeUnknownCampaign)
	checkError(t, do(s, "GET", "/api/conversions?affiliate_id=pa", map[string]string{"Authorization": "Bearer YOUR_TOKEN"}, ""), 404, CodeUnknownAffiliate)
	// B's conversion as B sees it is still there for B.
	ctx = do(s, "PATCH", "/api/conversions/conv_abc123", map[string]string{"Authorization": "Bearer YOUR_TOKEN"}, `{"status":"approved"}`)
	if ctx.Response.StatusCode() != 200 {
		t.Errorf("B's own PATCH: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
}

// TestAffilyncBodyLimit sends oversized bodies through a real server.
func TestAffilyncBodyLimit(t *testing.T) {
	s, fb := affilyncServer(t)
	fb.conversions = []sink.ConversionRecord{affilyncConvRecord()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Shutdown(context.Background())
	big := strings.Repeat("x", 70000)
	for _, tt := range []struct{ method, path, body string }{
		{"POST", "/api/conversions/track", `{"click_id":"c","order_id":"o","amount":"1","metadata":{"pad":"` + big + `"}}`},
		{"PATCH", "/api/conversions/conv_abc123", `{"status":"approved","note":"` + big + `"}`},
	} {
		var req fasthttp.Request
		var resp fasthttp.Response
		req.SetRequestURI("http://" + ln.Addr().String() + tt.path)
		req.Header.SetMethod(tt.method)
		req.Header.Set("Authorization", "Bearer YOUR_API_KEY")
		req.Header.SetContentType("application/json")
		req.SetBodyString(tt.body)
		if err := fasthttp.DoTimeout(&req, &resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		var e struct{ Error struct{ Code string } }
		if resp.StatusCode() != 413 || json.Unmarshal(resp.Body(), &e) != nil || e.Error.Code != CodePayloadTooLarge {
			t.Errorf("%s %s oversized: %d %s", tt.method, tt.path, resp.StatusCode(), resp.Body())
		}
	}
	if n := s.Outbox.Stats().Appended; n != 0 {
		t.Errorf("oversized bodies wrote %d rows", n)
	}
}

// --- pixel ---

func affilyncPixelCounter(t *testing.T, s *Server, outcome string) float64 {
	t.Helper()
	v, ok := affilyncPixelCounters.Load(s)
	if !ok {
		return 0
	}
	return testutilCount(v.(*prometheus.CounterVec).WithLabelValues(outcome))
}

func TestAffilyncPixelGIF(t *testing.T) {
	img, err := gif.Decode(bytes.NewReader(affilyncGIF))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); len(affilyncGIF) != 43 || b.Dx() != 1 || b.Dy() != 1 {
		t.Fatalf("GIF: %d bytes, %v; want 43 bytes, 1×1", len(affilyncGIF), b)
	}
	if _, _, _, a := img.At(0, 0).RGBA(); a != 0 {
		t.Errorf("the pixel is not transparent (alpha %d)", a)
	}
}

func TestAffilyncPixel(t *testing.T) {
	s0, _ := affilyncServer(t)
	click := affilyncClickID(t, s0)
	ua := "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
	type want struct {
		outcome  string
		campaign string
		merchant string
		cookie   string // CookieClickID
		partner  string // PartnerKey from a partner-key cookie
		currency string
		amount   int64
	}
	tests := []struct {
		name, uri string
		hdr       map[string]string
		method    string
		want      want
	}{
		{"gif with cookie", "/pixel.gif?pid=px_b&order_id=o1&amount=99.99&currency=USD",
			map[string]string{"Cookie": "afk_cid=" + click, "User-Agent": ua, "X-Forwarded-For": "203.0.113.9"}, "GET",
			want{affilyncPixelRecorded, "cb", "mb", click, "", "USD", 9999}},
		{"conversion endpoint", "/pixel/conversion?pid=px_b&order_id=o1&amount=5&event_type=lead&coupon_code=SUMMER20",
			map[string]string{"Cookie": "afk_cid=\"" + click + "\"; other=1"}, "GET",
			want{affilyncPixelRecorded, "cb", "mb", click, "", "USD", 500}},
		{"campaign currency", "/pixel.gif?pid=px_a&order_id=o1&amount=5", nil, "GET",
			want{affilyncPixelRecorded, "ca", "ma", "", "", "EUR", 500}},
		{"partner key cookie", "/pixel.gif?pid=px_p&order_id=o1&amount=5", map[string]string{"Cookie": "partnero_partner=ALICE"}, "GET",
			want{affilyncPixelRecorded, "cp", "ma", "", "ALICE", "USD", 500}},
		{"foreign cookie ignored", "/pixel.gif?pid=px_b&order_id=o1&amount=5", map[string]string{"Cookie": "afk_cid=<script>"}, "GET",
			want{affilyncPixelRecorded, "cb", "mb", "", "", "USD", 500}},
		{"another campaign's cookie ignored", "/pixel.gif?pid=px_a&order_id=o1&amount=5", map[string]string{"Cookie": "afk_cid=" + click}, "GET",
			want{affilyncPixelRecorded, "ca", "ma", "", "", "EUR", 500}},
		{"click_id parameter ignored", "/pixel.gif?pid=px_b&order_id=o1&amount=5&click_id=" + click, nil, "GET",
			want{affilyncPixelRecorded, "cb", "mb", "", "", "USD", 500}},
		{"no pid", "/pixel.gif?order_id=o1&amount=5", nil, "GET", want{outcome: affilyncPixelUnknownPixel}},
		{"unknown pid", "/pixel.gif?pid=px_zz&order_id=o1&amount=5", nil, "GET", want{outcome: affilyncPixelUnknownPixel}},
		{"secret key as pid", "/pixel.gif?pid=" + keyA + "&order_id=o1&amount=5", nil, "GET", want{outcome: affilyncPixelUnknownPixel}},
		{"api_key instead of pid", "/pixel.gif?api_key=YOUR_API_KEY&order_id=o1&amount=5", nil, "GET", want{outcome: affilyncPixelUnknownPixel}},
		{"no order", "/pixel.gif?pid=px_b&amount=5", nil, "GET", want{outcome: affilyncPixelBadInput}},
		{"no amount", "/pixel/conversion?pid=px_b&order_id=o1", nil, "GET", want{outcome: affilyncPixelBadInput}},
		{"NaN", "/pixel.gif?pid=px_b&order_id=o1&amount=NaN", nil, "GET", want{outcome: affilyncPixelBadInput}},
		{"negative", "/pixel.gif?pid=px_b&order_id=o1&amount=-5", nil, "GET", want{outcome: affilyncPixelBadInput}},
		{"float noise", "/pixel.gif?pid=px_b&order_id=o1&amount=0.30000000000000004", nil, "GET", want{outcome: affilyncPixelBadInput}},
		{"huge", "/pixel.gif?pid=px_b&order_id=o1&amount=1" + strings.Repeat("0", 30), nil, "GET", want{outcome: affilyncPixelBadInput}},
		{"unknown currency", "/pixel.gif?pid=px_b&order_id=o1&amount=5&currency=BTC", nil, "GET", want{outcome: affilyncPixelBadInput}},
		{"bad event type", "/pixel.gif?pid=px_b&order_id=o1&amount=5&event_type=refund", nil, "GET", want{outcome: affilyncPixelBadInput}},
		{"HEAD", "/pixel.gif?pid=px_b&order_id=o1&amount=5", nil, "HEAD", want{outcome: affilyncPixelHead}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := affilyncServer(t)
			s.Registerer = prometheus.NewRegistry()
			ctx := do(s, tt.method, tt.uri, tt.hdr, "")
			if strings.HasPrefix(tt.uri, "/pixel.gif") {
				if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.ContentType()) != "image/gif" ||
					(tt.method == "GET" && !bytes.Equal(ctx.Response.Body(), affilyncGIF)) {
					t.Errorf("answer %d %q %d bytes, want 200 image/gif with the GIF", ctx.Response.StatusCode(), ctx.Response.Header.ContentType(), len(ctx.Response.Body()))
				}
			} else if ctx.Response.StatusCode() != 204 || len(ctx.Response.Body()) != 0 {
				t.Errorf("answer %d %q, want 204 without a body", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if cc := string(ctx.Response.Header.Peek("Cache-Control")); !strings.Contains(cc, "no-store") {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			if len(ctx.Response.Header.PeekCookie("afk_cid")) > 0 {
				t.Errorf("the pixel set a cookie")
			}
			if got := affilyncPixelCounter(t, s, tt.want.outcome); got != 1 {
				t.Errorf("outcome %s counted %v times, want 1", tt.want.outcome, got)
			}
			evs := affilyncEvents(t, s)
			if tt.want.outcome != affilyncPixelRecorded {
				if len(evs) != 0 {
					t.Errorf("refused pixel wrote %d events", len(evs))
				}
				return
			}
			if len(evs) != 1 {
				t.Fatalf("%d events, want 1", len(evs))
			}
			ev := evs[0]
			c := ev.Conversion
			if ev.Dialect != sink.DialectPixel || ev.MerchantID != tt.want.merchant || ev.ID != sink.EventID(tt.want.merchant, sink.KindConversion, "pixel:o1") ||
				ev.ID == sink.EventID(tt.want.merchant, sink.KindConversion, "o1") || c.UniqueID != "o1" ||
				c.CampaignID != tt.want.campaign || c.ClickID != "" || c.CookieClickID != tt.want.cookie || c.PartnerKey != tt.want.partner ||
				!c.ClientReported || c.Currency != tt.want.currency || c.AmountMinor != tt.want.amount {
				t.Errorf("event = %s\n%+v\nwant %+v", ev.ID, c, tt.want)
			}
		})
	}
	// The enrichment of the first case: the browser's address behind the
	// trusted proxy, its geo and its user agent.
	s, _ := affilyncServer(t)
	do(s, "GET", tests[0].uri, tests[0].hdr, "")
	evs := affilyncEvents(t, s)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	if c := evs[0].Conversion; c.IP != "203.0.113.0" || c.Country != "NL" || c.City != "Amsterdam" || c.UserAgent != ua {
		t.Errorf("enrichment: ip %q country %q city %q ua %q", c.IP, c.Country, c.City, c.UserAgent)
	}
}

func TestAffilyncPixelMetricRegistered(t *testing.T) {
	s, _ := affilyncServer(t)
	reg := prometheus.NewRegistry()
	s.Registerer = reg
	do(s, "GET", "/pixel.gif?pid=nope", nil, "")
	// A second server on the same registry shares the collector.
	s2, _ := affilyncServer(t)
	s2.Registerer = reg
	do(s2, "GET", "/pixel.gif?pid=nope", nil, "")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	for _, mf := range mfs {
		if mf.GetName() != "clickedge_edge_pixel_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == affilyncPixelUnknownPixel {
				got = m.GetCounter().GetValue()
			}
		}
	}
	if got != 2 {
		t.Errorf("clickedge_edge_pixel_requests_total{outcome=unknown_pixel} = %v, want 2", got)
	}
}

func TestAffilyncPixelNoCatalog(t *testing.T) {
	s, _ := affilyncServer(t)
	s.index.Store(nil)
	ctx := do(s, "GET", "/pixel.gif?pid=px_b&order_id=o&amount=1", nil, "")
	if ctx.Response.StatusCode() != 200 || !bytes.Equal(ctx.Response.Body(), affilyncGIF) || affilyncPixelCounter(t, s, affilyncPixelNoCatalog) != 1 {
		t.Errorf("pixel without a catalog: %d, counted %v", ctx.Response.StatusCode(), affilyncPixelCounter(t, s, affilyncPixelNoCatalog))
	}
	checkError(t, do(s, "POST", "/api/conversions/track", map[string]string{"Authorization": "Bearer YOUR_API_KEY"}, `{}`), 503, CodeUnavailable)
	checkError(t, do(s, "GET", "/api/conversions/postback?api_key=YOUR_API_KEY", nil, ""), 503, CodeUnavailable)
}

func TestAffilyncPixelJS(t *testing.T) {
	s, _ := affilyncServer(t)
	tests := []struct{ uri, wantLit string }{
		{"/pixel.js", `var fromURL = "";`},
		{"/pixel.js?pid=px_b", `var fromURL = "px_b";`},
		{`/pixel.js?pid=";alert(1);//`, `var fromURL = "";`},
		{"/pixel.js?pid=" + strings.Repeat("p", 65), `var fromURL = "";`},
	}
	for _, tt := range tests {
		ctx := do(s, "GET", tt.uri, nil, "")
		body := string(ctx.Response.Body())
		if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.ContentType()) != "application/javascript; charset=utf-8" ||
			string(ctx.Response.Header.Peek("Cache-Control")) != "public, max-age=300" || !strings.Contains(body, tt.wantLit) {
			t.Errorf("%s: %d %q %q, want the script with %s", tt.uri, ctx.Response.StatusCode(), ctx.Response.Header.ContentType(), ctx.Response.Header.Peek("Cache-Control"), tt.wantLit)
		}
		if strings.Contains(body, "alert") {
			t.Errorf("%s: the served script carries the query's text", tt.uri)
		}
		if got := string(ctx.Response.Header.Peek("X-Content-Type-Options")); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options = %q, want nosniff", tt.uri, got)
		}
	}
	if n := s.Outbox.Stats().Appended; n != 0 {
		t.Errorf("serving the script wrote %d rows", n)
	}
}

// affilyncHarness runs the served pixel.js and the document's snippet in
// node with a fake window and document, and prints what they sent.
const affilyncHarness = `
const fs = require("fs"), vm = require("vm");
const [plain, withPid, snippet] = process.argv.slice(2).map(f => fs.readFileSync(f, "utf8"));
function run(o) {
  const sent = [];
  const el = { src: o.src, getAttribute: n => (n === "data-pixel-id" ? (o.attr || null) : null) };
  const w = {
    Image: function () { const img = {}; sent.push(img); return img; },
  };
  if (!o.noFetch) w.fetch = (url, opt) => { sent.push({ src: url, credentials: opt.credentials, mode: opt.mode }); return { then() {} }; };
  const d = { currentScript: null, getElementsByTagName: () => [el] };
  w.window = w; w.document = d;
  const ctx = vm.createContext(w);
  const load = () => { d.currentScript = o.noCurrentScript ? null : el; vm.runInContext(o.script, ctx); d.currentScript = null; };
  const inline = () => { for (const c of o.before || []) vm.runInContext(c, ctx); vm.runInContext(snippet, ctx); };
  if (o.queueFirst) { inline(); load(); } else { load(); inline(); }
  return sent.map(s => ({ url: s.src, credentials: s.credentials || "", mode: s.mode || "" }));
}
const stub = "window.affilync = window.affilync || function () { (affilync.q = affilync.q || []).push(arguments); };";
const out = {
  attribute: run({ script: plain, src: "https://track.shop-b.example/pixel.js", attr: "px_b" }),
  queued: run({ script: plain, src: "https://track.shop-b.example/pixel.js", queueFirst: true, before: [stub, "affilync('init', 'px_b');"] }),
  src_pid: run({ script: withPid, src: "https://track.shop-b.example/pixel.js?pid=px_b" }),
  no_current_script: run({ script: plain, src: "https://track.shop-b.example/pixel.js", attr: "px_b", noCurrentScript: true }),
  image: run({ script: plain, src: "https://track.shop-b.example/pixel.js", attr: "px_b", noFetch: true }),
  no_pid: run({ script: plain, src: "https://track.shop-b.example/pixel.js" }),
};
process.stdout.write(JSON.stringify(out));
`

// TestAffilyncPixelScript runs the served script with the document's own
// snippet under node (skipped where node is not installed) and replays what
// it sends to the edge: the conversion arrives with the cookie's click id.
func TestAffilyncPixelScript(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	s, _ := affilyncServer(t)
	dir := t.TempDir()
	seed, err := os.ReadFile(filepath.Join(affilyncDir, "seed_pixel_snippet.html"))
	if err != nil {
		t.Fatal(err)
	}
	// The inline part of the document's snippet, byte for byte.
	_, inline, ok := strings.Cut(string(seed), "<script>\n")
	inline, _, ok2 := strings.Cut(inline, "</script>")
	if !ok || !ok2 {
		t.Fatalf("snippet %q has no inline script", seed)
	}
	files := []string{filepath.Join(dir, "plain.js"), filepath.Join(dir, "pid.js"), filepath.Join(dir, "snippet.js"), filepath.Join(dir, "harness.js")}
	for i, body := range []string{
		string(do(s, "GET", "/pixel.js", nil, "").Response.Body()),
		string(do(s, "GET", "/pixel.js?pid=px_b", nil, "").Response.Body()),
		inline, affilyncHarness,
	} {
		if err := os.WriteFile(files[i], []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(nodeBin, append([]string{files[3]}, files[:3]...)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node: %v: %s", err, stderr)
	}
	type sent struct{ URL, Credentials, Mode string }
	var got map[string][]sent
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node output %s: %v", out, err)
	}
	const q = "?pid=px_b&order_id=order_456&amount=99.99&currency=USD"
	fetched := []sent{{"https://track.shop-b.example/pixel/conversion" + q, "include", "no-cors"}}
	want := map[string][]sent{
		"attribute":         fetched,
		"queued":            fetched,
		"src_pid":           fetched,
		"no_current_script": fetched,
		"image":             {{"https://track.shop-b.example/pixel.gif" + q, "", ""}},
		"no_pid":            {},
	}
	for k, w := range want {
		if g := got[k]; !(len(g) == 0 && len(w) == 0) && !reflect.DeepEqual(g, w) {
			t.Errorf("%s: sent %+v, want %+v", k, g, w)
		}
	}
	// What the browser sends, with the click cookie the redirect set.
	click := affilyncClickID(t, s)
	for _, u := range []string{fetched[0].URL, want["image"][0].URL} {
		before := s.Outbox.Stats().Appended
		do(s, "GET", u, map[string]string{"Cookie": "afk_cid=" + click}, "")
		if s.Outbox.Stats().Appended != before+1 {
			t.Fatalf("%s recorded nothing", u)
		}
	}
	evs := affilyncEvents(t, s)
	c := evs[len(evs)-1].Conversion
	if c.UniqueID != "order_456" || c.AmountMinor != 9999 || c.Currency != "USD" || c.CookieClickID != click || c.CampaignID != "cb" || !c.ClientReported {
		t.Errorf("pixel conversion = %+v", c)
	}
}

// --- fuzz ---

// affilyncQuery percent-encodes the bytes of a fuzzed query that no client
// can put raw in a request line (controls, space, non-ASCII, '#'), as a
// browser would; everything else, '%' and '&' included, goes as it is.
func affilyncQuery(q string) string {
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c <= ' ' || c >= 0x7f || c == '#' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// affilyncTakeEvent decodes the one event a fuzzed request wrote and empties
// the outbox, so that a long fuzz run does not slow down with its size.
func affilyncTakeEvent(t *testing.T, s *Server) sink.Event {
	t.Helper()
	rows, err := s.Outbox.Peek(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("outbox holds %d rows, want 1", len(rows))
	}
	ev, err := sink.DecodeEvent(rows[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Outbox.Delete([]uint64{rows[0].Seq}); err != nil {
		t.Fatal(err)
	}
	return ev
}

// affilyncFuzzCheck is the invariant of every merchant endpoint: a 2xx
// writes at most one row, anything else is a 4xx JSON error that writes
// nothing.
func affilyncFuzzCheck(t *testing.T, s *Server, ctx *fasthttp.RequestCtx, before uint64, input string) {
	code := ctx.Response.StatusCode()
	after := s.Outbox.Stats().Appended
	switch {
	case code >= 200 && code < 300:
		if after > before+1 {
			t.Fatalf("%d but %d rows appended for %q", code, after-before, input)
		}
		if !json.Valid(ctx.Response.Body()) {
			t.Fatalf("%d with a body that is not JSON: %s", code, ctx.Response.Body())
		}
	case code >= 400 && code < 500:
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(ctx.Response.Body(), &e); err != nil || e.Error.Code == "" || StatusOf(e.Error.Code) != code {
			t.Fatalf("%d without a matching JSON error code: %s", code, ctx.Response.Body())
		}
		if after != before {
			t.Fatalf("refused input (%d) wrote %d rows: %q", code, after-before, input)
		}
	default:
		t.Fatalf("status %d for %q: %s", code, input, ctx.Response.Body())
	}
}

func FuzzAffilyncTrack(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join(affilyncDir, "track.request"))
	if err != nil {
		f.Fatal(err)
	}
	_, body, _ := strings.Cut(string(seed), "\n\n")
	for _, b := range []string{
		body, `{"click_id":"c","order_id":"o","amount":99.99,"currency":"JPY"}`, `{"click_id":"c","order_id":"o","amount":"1e3"}`,
		`{"click_id":"c","order_id":"o","amount":"-0"}`, `{"click_id":"c","order_id":"o","amount":"1","metadata":{"coupon_code":5}}`,
		`{"amount":null}`, `[]`, `{`, `""`, `{"click_id":"c","order_id":"\u0000","amount":1}`,
	} {
		f.Add(b)
	}
	s, fb := affilyncServer(f)
	fb.results[affilyncOrderEvent] = affilyncApplied(affilyncOrderEvent, affilyncConvRecord())
	hdr := map[string]string{"Authorization": "Bearer YOUR_API_KEY", "Content-Type": "application/json"}
	f.Fuzz(func(t *testing.T, body string) {
		before := s.Outbox.Stats().Appended
		ctx := do(s, "POST", "/api/conversions/track", hdr, body)
		affilyncFuzzCheck(t, s, ctx, before, body)
		if ctx.Response.StatusCode() < 300 {
			ev := affilyncTakeEvent(t, s)
			c := ev.Conversion
			if c.AmountMinor < 0 || c.UniqueID == "" || c.ClickID == "" || ev.MerchantID != "mb" || c.Currency == "" ||
				ev.ID != sink.EventID("mb", sink.KindConversion, c.UniqueID) {
				t.Fatalf("accepted %q as %s %+v", body, ev.ID, c)
			}
		}
	})
}

func FuzzAffilyncPostback(f *testing.F) {
	for _, q := range []string{
		"click_id=clk_abc123&amount=99.99&order_id=order_456\u00a4cy=USD", "click_id=c&amount=1&order_id=o&currency=jpy",
		"click_id=c&amount=1.001&order_id=o", "click_id=c&amount=NaN&order_id=o%C2%A4cy=", "amount=%00", "order_id=%C2%A4cy=USD",
	} {
		f.Add(q)
	}
	s, _ := affilyncServer(f)
	f.Fuzz(func(t *testing.T, query string) {
		before := s.Outbox.Stats().Appended
		ctx := do(s, "GET", "/api/conversions/postback?api_key=YOUR_API_KEY&"+affilyncQuery(query), nil, "")
		affilyncFuzzCheck(t, s, ctx, before, query)
		if ctx.Response.StatusCode() < 300 {
			ev := affilyncTakeEvent(t, s)
			c := ev.Conversion
			if c.AmountMinor < 0 || c.UniqueID == "" || c.ClickID == "" || ev.MerchantID != "mb" || ev.Dialect != sink.DialectAffilync ||
				ev.ID != sink.EventID("mb", sink.KindConversion, c.UniqueID) {
				t.Fatalf("accepted %q as %s %+v", query, ev.ID, c)
			}
		}
	})
}

func FuzzAffilyncPixel(f *testing.F) {
	for _, q := range []string{
		"pid=px_b&order_id=order_456&amount=99.99&currency=USD", "pid=px_a&order_id=o&amount=5", "pid=px_p&order_id=o&amount=5&event_type=lead",
		"pid=px_b&order_id=o&amount=1e3", "pid=&order_id=o", "pid=px_b&order_id=%00&amount=1",
	} {
		f.Add(q, "afk_cid=0123456789abcdefghjkmnpqrstvwxyz")
	}
	s, _ := affilyncServer(f)
	byPixel := map[string]string{"px_a": "ca", "px_b": "cb", "px_p": "cp"}
	f.Fuzz(func(t *testing.T, query, cookie string) {
		before := s.Outbox.Stats().Appended
		var hdr map[string]string
		if cookie != "" && !strings.ContainsAny(cookie, "\r\n") {
			hdr = map[string]string{"Cookie": cookie}
		}
		ctx := do(s, "GET", "/pixel.gif?"+affilyncQuery(query), hdr, "")
		if ctx.Response.StatusCode() != 200 || !bytes.Equal(ctx.Response.Body(), affilyncGIF) {
			t.Fatalf("pixel.gif answered %d %q", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		switch after := s.Outbox.Stats().Appended; after {
		case before:
		case before + 1:
			ev := affilyncTakeEvent(t, s)
			c := ev.Conversion
			args := ctx.QueryArgs()
			if byPixel[string(args.Peek("pid"))] != c.CampaignID || !c.ClientReported || c.ClickID != "" || c.AmountMinor < 0 ||
				ev.Dialect != sink.DialectPixel {
				t.Fatalf("accepted %q as %s %+v", query, ev.ID, c)
			}
		default:
			t.Fatalf("%d rows for one pixel", after-before)
		}
	})
}

func FuzzAffilyncList(f *testing.F) {
	for _, q := range []string{
		"date_from=2026-03-01&date_to=2026-03-31", "page=2&per_page=500", "status=approved&campaign_id=cb&affiliate_id=pb",
		"date_from=2026-03-01T10:00:00%2B02:00", "page=0", "date_to=0000-01-01",
	} {
		f.Add(q)
	}
	s, fb := affilyncServer(f)
	fb.conversions = []sink.ConversionRecord{affilyncConvRecord()}
	f.Fuzz(func(t *testing.T, query string) {
		before := s.Outbox.Stats().Appended
		ctx := do(s, "GET", "/api/conversions?"+affilyncQuery(query), map[string]string{"Authorization": "Bearer YOUR_TOKEN"}, "")
		affilyncFuzzCheck(t, s, ctx, before, query)
		if s.Outbox.Stats().Appended != before {
			t.Fatalf("a listing wrote rows")
		}
		if ctx.Response.StatusCode() == 200 {
			q := fb.lastQuery
			if q.MerchantID != "mb" || q.Limit < 1 || q.Limit > 100 || q.Offset < 0 || (q.ToMilli != 0 && q.ToMilli <= q.FromMilli) {
				t.Fatalf("%q became query %+v", query, q)
			}
		}
	})
}

func FuzzAffilyncPatch(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join(affilyncDir, "patch.request"))
	if err != nil {
		f.Fatal(err)
	}
	_, body, _ := strings.Cut(string(seed), "\n\n")
	for _, b := range []string{body, `{"status":"rejected"}`, `{"status":"paid"}`, `{"status":null,"note":1}`, `{}`, `[`, `{"status":"approved","note":"\u0007"}`} {
		f.Add(b)
	}
	s, fb := affilyncServer(f)
	fb.conversions = []sink.ConversionRecord{affilyncConvRecord()}
	hdr := map[string]string{"Authorization": "Bearer YOUR_TOKEN", "Content-Type": "application/json"}
	f.Fuzz(func(t *testing.T, body string) {
		before := s.Outbox.Stats().Appended
		ctx := do(s, "PATCH", "/api/conversions/conv_abc123", hdr, body)
		affilyncFuzzCheck(t, s, ctx, before, body)
		if s.Outbox.Stats().Appended != before {
			st := affilyncTakeEvent(t, s).Status
			if st == nil || st.ConversionID != "conv_abc123" || (st.Status != sink.StatusApproved && st.Status != sink.StatusRejected) {
				t.Fatalf("%q became status event %+v", body, st)
			}
		}
	})
}

func BenchmarkAffilyncTrack(b *testing.B) {
	s, fb := affilyncServer(b)
	s.ResultWait = time.Millisecond
	fb.results[affilyncOrderEvent] = affilyncApplied(affilyncOrderEvent, affilyncConvRecord())
	body := `{"click_id":"clk_abc123","order_id":"order_456","amount":"99.99","currency":"USD","event_type":"sale","customer_email":"a@b.c","metadata":{"product_id":"prod_789","coupon_code":"SUMMER20"}}`
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/api/conversions/track")
	req.Header.Set("Authorization", "Bearer YOUR_API_KEY")
	req.SetBodyString(body)
	h := s.Handler()
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 5555}, nil)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h(ctx)
	}
}

func BenchmarkAffilyncPixelGIF(b *testing.B) {
	s, _ := affilyncServer(b)
	var req fasthttp.Request
	req.SetRequestURI("/pixel.gif?pid=px_b&order_id=order_456&amount=99.99&currency=USD")
	req.Header.Set("Cookie", "afk_cid=0123456789abcdefghjkmnpqrstvwxyz")
	h := s.Handler()
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 5555}, nil)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h(ctx)
	}
}

// affilyncFullOutbox replaces the server's outbox with one that holds
// nothing, so that every commit fails as a full outbox does.
func affilyncFullOutbox(t *testing.T, s *Server) *sink.Outbox {
	t.Helper()
	ob := sink.NewOutbox(filepath.Join(t.TempDir(), "full.db"))
	ob.NoSync = true
	ob.MaxBytes = 1
	if err := ob.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	s.Outbox = ob
	return ob
}

// TestAffilyncOutboxFull: track, postback and PATCH answer 503 unavailable
// when their event cannot be made durable, never a 2xx, and write nothing.
func TestAffilyncOutboxFull(t *testing.T) {
	s, fb := affilyncServer(t)
	fb.conversions = []sink.ConversionRecord{affilyncConvRecord()}
	// Results the worker would give: the refusal must come before them.
	fb.results[affilyncOrderEvent] = affilyncApplied(affilyncOrderEvent, affilyncConvRecord())
	ob := affilyncFullOutbox(t, s)
	auth := map[string]string{"Authorization": "Bearer YOUR_API_KEY", "Content-Type": "application/json"}
	for _, tt := range []struct{ name, method, uri, body string }{
		{"track", "POST", "/api/conversions/track", `{"click_id":"clk_abc123","order_id":"order_456","amount":"99.99"}`},
		{"postback", "GET", "/api/conversions/postback?click_id=clk_abc123&order_id=order_456&amount=99.99&currency=USD", ""},
		{"postback with api_key", "GET", "/api/conversions/postback?api_key=YOUR_API_KEY&click_id=c&order_id=o2&amount=1", ""},
		{"patch", "PATCH", "/api/conversions/conv_abc123", `{"status":"approved","note":"ok"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hdr := auth
			if strings.Contains(tt.uri, "api_key=") {
				hdr = nil
			}
			checkError(t, do(s, tt.method, tt.uri, hdr, tt.body), 503, CodeUnavailable)
		})
	}
	if st := ob.Stats(); st.Rows != 0 || st.Appended != 0 {
		t.Errorf("outbox rows %d appended %d, want none", st.Rows, st.Appended)
	}
}

// TestAffilyncKeyNeverEchoed: no answer, header, committed event or log line
// carries the merchant's API key, whether it came as a Bearer token or as
// the postback's ?api_key=, and whether the request succeeded or failed; an
// unknown key is not echoed either.
func TestAffilyncKeyNeverEchoed(t *testing.T) {
	s, fb := affilyncServer(t)
	var logs bytes.Buffer
	s.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	fb.conversions = []sink.ConversionRecord{affilyncConvRecord()}
	fb.results["mb:conversion:o_applied"] = affilyncApplied("mb:conversion:o_applied", affilyncConvRecord())
	const unknown = "ce_live_UNKNOWNunknownUNKNOWNunknown0"
	bearer := map[string]string{"Authorization": "Bearer " + keyB, "Content-Type": "application/json"}
	tests := []struct {
		name, method, uri string
		hdr               map[string]string
		body              string
		status            int
	}{
		{"track applied", "POST", "/api/conversions/track", bearer, `{"click_id":"clk_1","order_id":"o_applied","amount":"1"}`, 201},
		{"track queued", "POST", "/api/conversions/track", bearer, `{"click_id":"clk_1","order_id":"o_queued","amount":"1"}`, 202},
		{"track refused", "POST", "/api/conversions/track", bearer, `{"click_id":"clk_1","order_id":"o","amount":"NaN"}`, 422},
		{"track unknown key", "POST", "/api/conversions/track", map[string]string{"Authorization": "Bearer " + unknown}, `{}`, 401},
		{"postback query key", "GET", "/api/conversions/postback?api_key=" + keyB + "&click_id=c&order_id=o_pb&amount=1", nil, "", 202},
		{"postback query key refused", "GET", "/api/conversions/postback?api_key=" + keyB + "&click_id=c&order_id=o_pb2", nil, "", 422},
		{"postback unknown query key", "GET", "/api/conversions/postback?api_key=" + unknown + "&click_id=c&order_id=o&amount=1", nil, "", 401},
		{"list", "GET", "/api/conversions", bearer, "", 200},
		{"list with a query key only", "GET", "/api/conversions?api_key=" + keyB, nil, "", 401},
		{"patch", "PATCH", "/api/conversions/conv_abc123", bearer, `{"status":"rejected","note":"n"}`, 202},
		{"patch unknown", "PATCH", "/api/conversions/conv_nope", bearer, `{"status":"rejected"}`, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := do(s, tt.method, tt.uri, tt.hdr, tt.body)
			if ctx.Response.StatusCode() != tt.status {
				t.Fatalf("status %d, want %d: %s", ctx.Response.StatusCode(), tt.status, ctx.Response.Body())
			}
			var all bytes.Buffer
			ctx.Response.Header.VisitAll(func(k, v []byte) { all.Write(k); all.WriteByte(':'); all.Write(v); all.WriteByte('\n') })
			all.Write(ctx.Response.Body())
			for _, key := range []string{keyB, unknown} {
				if strings.Contains(all.String(), key) {
					t.Errorf("the answer echoes the key %q:\n%s", key, all.String())
				}
			}
		})
	}
	rows, err := s.Outbox.Peek(0, 100)
	if err != nil || len(rows) < 3 {
		t.Fatalf("outbox rows = %d, %v; want the accepted writes", len(rows), err)
	}
	for _, r := range rows {
		if bytes.Contains(r.Data, []byte(keyB)) || strings.Contains(r.MsgID, keyB) {
			t.Errorf("outbox row %s carries the key: %s", r.MsgID, r.Data)
		}
	}
	if strings.Contains(logs.String(), keyB) || strings.Contains(logs.String(), unknown) {
		t.Errorf("the logs carry a key:\n%s", logs.String())
	}
}

// TestAffilyncPostbackOptionalFields: the postback's optional event_type,
// customer_email, coupon_code, product_id and product_type parameters reach
// the event exactly as the track call's fields do (the email only as its
// merchant-salted hash).
func TestAffilyncPostbackOptionalFields(t *testing.T) {
	s, _ := affilyncServer(t)
	ctx := do(s, "GET", "/api/conversions/postback?api_key=YOUR_API_KEY&click_id=clk_9&order_id=o9&amount=10&currency=eur"+
		"&event_type=Signup&customer_email=%20Jane%40Example.COM%20&coupon_code=SUMMER20&product_id=prod_789&product_type=premium", nil, "")
	if ctx.Response.StatusCode() != 202 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	evs := affilyncEvents(t, s)
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	sum := sha256.Sum256([]byte("mb\x00jane@example.com"))
	want := sink.ConversionEvent{
		UniqueID: "o9", Type: "signup", AmountMinor: 1000, Currency: "EUR", ClickID: "clk_9",
		CouponCode: "SUMMER20", CustomerEmailHash: hex.EncodeToString(sum[:]), ProductID: "prod_789", ProductType: "premium",
	}
	if got := *evs[0].Conversion; !reflect.DeepEqual(got, want) {
		t.Errorf("conversion event\n got %s\nwant %s", mustJSON(t, got), mustJSON(t, want))
	}
	if evs[0].ID != "mb:conversion:o9" || evs[0].Dialect != sink.DialectAffilync {
		t.Errorf("event %s dialect %s", evs[0].ID, evs[0].Dialect)
	}
	if bytes.Contains(mustJSON(t, evs[0]), []byte("Example.COM")) || bytes.Contains(mustJSON(t, evs[0]), []byte("jane@")) {
		t.Errorf("the email reached the event in clear")
	}
}

// TestAffilyncPixelOptionalFields: the pixel's event_type, coupon_code,
// product_id and product_type reach the event, on both pixel endpoints; a
// customer_email parameter is not a pixel field and is dropped.
func TestAffilyncPixelOptionalFields(t *testing.T) {
	for _, path := range []string{"/pixel/conversion", "/pixel.gif"} {
		t.Run(path, func(t *testing.T) {
			s, _ := affilyncServer(t)
			do(s, "GET", path+"?pid=px_b&order_id=o1&amount=5&event_type=TRIAL&coupon_code=SUMMER20&product_id=42&product_type=premium&customer_email=a%40b.example", nil, "")
			evs := affilyncEvents(t, s)
			if len(evs) != 1 {
				t.Fatalf("%d events, want 1", len(evs))
			}
			c := evs[0].Conversion
			if c.Type != "trial" || c.CouponCode != "SUMMER20" || c.ProductID != "42" || c.ProductType != "premium" ||
				c.CustomerEmailHash != "" || c.AmountMinor != 500 || c.CampaignID != "cb" || !c.ClientReported {
				t.Errorf("pixel event = %s", mustJSON(t, c))
			}
		})
	}
	// Without them: the defaults.
	s, _ := affilyncServer(t)
	do(s, "GET", "/pixel.gif?pid=px_b&order_id=o2&amount=5", nil, "")
	if evs := affilyncEvents(t, s); len(evs) != 1 || evs[0].Conversion.Type != "sale" || evs[0].Conversion.CouponCode != "" ||
		evs[0].Conversion.ProductID != "" || evs[0].Conversion.ProductType != "" {
		t.Errorf("pixel without optional fields: %s", mustJSON(t, evs))
	}
}

// TestAffilyncPixelNotStored: when the outbox cannot store the pixel's
// conversion, the browser still gets its GIF (or 204), the loss is counted
// under not_stored and nothing is written.
func TestAffilyncPixelNotStored(t *testing.T) {
	s, _ := affilyncServer(t)
	s.Registerer = prometheus.NewRegistry()
	ob := affilyncFullOutbox(t, s)
	ctx := do(s, "GET", "/pixel.gif?pid=px_b&order_id=o1&amount=5", nil, "")
	if ctx.Response.StatusCode() != 200 || !bytes.Equal(ctx.Response.Body(), affilyncGIF) {
		t.Errorf("gif with a full outbox: %d, %d bytes", ctx.Response.StatusCode(), len(ctx.Response.Body()))
	}
	ctx = do(s, "GET", "/pixel/conversion?pid=px_b&order_id=o2&amount=5", nil, "")
	if ctx.Response.StatusCode() != 204 || len(ctx.Response.Body()) != 0 {
		t.Errorf("conversion with a full outbox: %d %q", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if got := affilyncPixelCounter(t, s, affilyncPixelNotStored); got != 2 {
		t.Errorf("not_stored counted %v, want 2", got)
	}
	if got := affilyncPixelCounter(t, s, affilyncPixelRecorded); got != 0 {
		t.Errorf("recorded counted %v, want 0", got)
	}
	if st := ob.Stats(); st.Rows != 0 || st.Appended != 0 {
		t.Errorf("outbox rows %d appended %d, want none", st.Rows, st.Appended)
	}
}
