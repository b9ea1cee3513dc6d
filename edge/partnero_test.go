package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// The -update flag rewrites golden files. Other dialects' tests may define
// it too, so it is defined only once and read by name.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files under testdata/")
	}
}

func partneroUpdating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

const partneroDir = "testdata/partnero"

// partneroNow is the edge's clock in Partnero tests.
var partneroNow = time.Date(2025, 5, 9, 17, 42, 13, 0, time.UTC)

var partneroAuthA = map[string]string{"Authorization": "Bearer " + keyA, "Content-Type": "application/json"}
var partneroAuthB = map[string]string{"Authorization": "Bearer " + keyB, "Content-Type": "application/json"}

// partneroCatalog is the shared test catalog plus the partners named in the
// seed documents' examples.
func partneroCatalog() *redirect.Catalog {
	c := testCatalog()
	c.Version = 2
	c.Partners = append(c.Partners,
		redirect.Partner{ID: "pk", MerchantID: "ma", Key: "PARTNER_KEY_FROM_YOUR_STORAGE", Email: "partner@shop-a.example"},
		redirect.Partner{ID: "pu", MerchantID: "ma", Key: "UNIQUE_PARTNER_KEY"},
	)
	return c
}

// partneroServer is a test edge with the Partnero catalog, a scripted
// backend and a fixed clock.
func partneroServer(t testing.TB) (*Server, *fakeBackend) {
	t.Helper()
	s, _ := newTestServer(t)
	data, err := json.Marshal(partneroCatalog())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyCatalog(data); err != nil {
		t.Fatal(err)
	}
	fb := newFakeBackend()
	s.Backend = fb
	s.Now = func() time.Time { return partneroNow }
	s.SecureCookies = true
	return s, fb
}

func partneroMs(d time.Duration) int64 { return partneroNow.Add(d).UnixMilli() }

// Records the scripted worker answers with.
func partneroCustomer123() sink.CustomerRecord {
	return sink.CustomerRecord{
		MerchantID: "ma", Key: "customer_123", Email: "[email protected]", Name: "John", Surname: "Doe",
		PartnerID: "pk", ReferralCode: "rf7x2kq9", CreatedAt: partneroMs(0),
	}
}

func partneroInvoice123() sink.ConversionRecord {
	return sink.ConversionRecord{
		ID: "conv_5k2m7q4w9x3z8c6v1b0n4m2l", MerchantID: "ma", UniqueID: "invoice_123", Type: "sale",
		Dialect: sink.DialectPartnero, AmountMinor: 9999, Currency: "USD", Status: sink.StatusPending,
		CampaignID: "cp", PartnerID: "pk", PartnerKey: "PARTNER_KEY_FROM_YOUR_STORAGE", CustomerID: "customer_123",
		AttributedBy: sink.ByCustomer, CommissionMinor: 1000, CreatedAt: partneroMs(0), UpdatedAt: partneroMs(0),
	}
}

func partneroTransaction123(customer, partnerID, partnerKey, by string) sink.ConversionRecord {
	return sink.ConversionRecord{
		ID: "conv_q3v8n1x6c4z7m2k9w5b0t8r1", MerchantID: "ma", UniqueID: "transaction_123", Type: "sale",
		Dialect: sink.DialectPartnero, AmountMinor: 9999, Currency: "USD", Status: sink.StatusPending,
		CampaignID: "cp", PartnerID: partnerID, PartnerKey: partnerKey, CustomerID: customer,
		ProductID: "prod_123", ProductType: "monthly", AttributedBy: by, CommissionMinor: 2000,
		CreatedAt: partneroMs(0), UpdatedAt: partneroMs(0),
	}
}

func (f *fakeBackend) partneroResult(id string, r sink.EventResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r.EventID = id
	f.results[id] = r
}

type partneroGoldenCase struct {
	name         string // golden file: name + ".response.json"
	method, path string
	request      string // request file (without .request.json); "" sends no body
	hdr          map[string]string
	setup        func(fb *fakeBackend)
	status       int
}

func partneroGoldenCases() []partneroGoldenCase {
	withIdem := map[string]string{"Idempotency-Key": "reward-2025-05-0001"}
	for k, v := range partneroAuthA {
		withIdem[k] = v
	}
	custID := sink.EventID("ma", sink.KindCustomer, "customer_123")
	invoiceID := sink.EventID("ma", sink.KindConversion, "invoice_123")
	txnID := sink.EventID("ma", sink.KindConversion, "transaction_123")
	deleteID := sink.EventID("ma", sink.KindRefund, "invoice_123:delete")
	creditID := sink.EventID("ma", sink.KindCredit, "customer_123:reward-2025-05-0001")
	withInvoice := func(fb *fakeBackend) { fb.conversions = append(fb.conversions, partneroInvoice123()) }
	withCustomer := func(fb *fakeBackend) { fb.customers = append(fb.customers, partneroCustomer123()) }
	return []partneroGoldenCase{
		{name: "seed001_customer_affiliate", method: "POST", path: "/v1/customers", request: "seed001_customer_affiliate", status: 201,
			setup: func(fb *fakeBackend) {
				c := partneroCustomer123()
				fb.partneroResult(custID, sink.EventResult{Outcome: sink.OutcomeApplied, Customer: &c})
			}},
		{name: "seed001_customer_refer_a_friend", method: "POST", path: "/v1/customers", request: "seed001_customer_refer_a_friend", status: 201,
			setup: func(fb *fakeBackend) {
				c := sink.CustomerRecord{MerchantID: "ma", Key: "customer_456", Email: "[email protected]", Name: "Alex",
					ReferralCode: "rf3h8d1p", ReferredByKey: "REFERRAL_KEY_FROM_YOUR_STORAGE", CreatedAt: partneroMs(0)}
				fb.partneroResult(sink.EventID("ma", sink.KindCustomer, "customer_456"), sink.EventResult{Outcome: sink.OutcomeApplied, Customer: &c})
			}},
		{name: "customer_queued", method: "POST", path: "/v1/customers", request: "seed001_customer_affiliate", status: 202},
		{name: "customer_duplicate", method: "POST", path: "/v1/customers", request: "seed001_customer_affiliate", status: 200,
			setup: func(fb *fakeBackend) {
				c := partneroCustomer123()
				c.CreatedAt = partneroMs(-24 * time.Hour)
				fb.partneroResult(custID, sink.EventResult{Outcome: sink.OutcomeDuplicate, Customer: &c})
			}},
		{name: "customer_invalid_partner_ignored", method: "POST", path: "/v1/customers", request: "customer_invalid_partner", status: 200,
			setup: func(fb *fakeBackend) {
				fb.partneroResult(sink.EventID("ma", sink.KindCustomer, "customer_789"), sink.EventResult{Outcome: sink.OutcomeIgnored,
					Error: &sink.APIError{Code: "invalid_partner", Message: "no partner of this merchant has that key"}})
			}},
		{name: "customer_php_no_referral", method: "POST", path: "/v1/customers", request: "customer_php_no_referral", status: 200,
			setup: func(fb *fakeBackend) {
				fb.partneroResult(sink.EventID("ma", sink.KindCustomer, "42"), sink.EventResult{Outcome: sink.OutcomeIgnored})
			}},
		{name: "seed001_transaction_sale", method: "POST", path: "/v1/transactions", request: "seed001_transaction_sale", status: 201,
			setup: func(fb *fakeBackend) {
				c := partneroInvoice123()
				fb.partneroResult(invoiceID, sink.EventResult{Outcome: sink.OutcomeApplied, Conversion: &c})
			}},
		{name: "seed003_transaction_product", method: "POST", path: "/v1/transactions", request: "seed003_transaction_product", status: 201,
			setup: func(fb *fakeBackend) {
				c := partneroTransaction123("CUSTOMER_KEY", "pk", "PARTNER_KEY_FROM_YOUR_STORAGE", sink.ByCustomer)
				fb.partneroResult(txnID, sink.EventResult{Outcome: sink.OutcomeApplied, Conversion: &c})
			}},
		{name: "seed003_transaction_create_customer", method: "POST", path: "/v1/transactions", request: "seed003_transaction_create_customer", status: 201,
			setup: func(fb *fakeBackend) {
				c := partneroTransaction123("CUSTOMER_KEY", "pu", "UNIQUE_PARTNER_KEY", sink.ByPartnerKey)
				fb.partneroResult(txnID, sink.EventResult{Outcome: sink.OutcomeApplied, Conversion: &c})
			}},
		{name: "transaction_queued", method: "POST", path: "/v1/transactions", request: "seed001_transaction_sale", status: 202},
		{name: "transaction_duplicate", method: "POST", path: "/v1/transactions", request: "seed001_transaction_sale", status: 200,
			setup: func(fb *fakeBackend) {
				c := partneroInvoice123()
				c.Status = sink.StatusApproved
				fb.partneroResult(invoiceID, sink.EventResult{Outcome: sink.OutcomeDuplicate, Conversion: &c})
			}},
		{name: "transaction_unknown_customer_ignored", method: "POST", path: "/v1/transactions", request: "seed001_transaction_sale", status: 200,
			setup: func(fb *fakeBackend) {
				fb.partneroResult(invoiceID, sink.EventResult{Outcome: sink.OutcomeIgnored,
					Error: &sink.APIError{Code: "customer_not_found", Message: "the merchant has no customer customer_123"}})
			}},
		{name: "transaction_string_amount_jpy", method: "POST", path: "/v1/transactions", request: "transaction_string_amount_jpy", status: 202},
		{name: "transaction_delete", method: "DELETE", path: "/v1/transactions/invoice_123", status: 200,
			setup: func(fb *fakeBackend) {
				withInvoice(fb)
				c := partneroInvoice123()
				c.RefundedMinor, c.CommissionMinor, c.UpdatedAt = 9999, 0, partneroMs(time.Hour)
				fb.partneroResult(deleteID, sink.EventResult{Outcome: sink.OutcomeApplied, Conversion: &c})
			}},
		{name: "transaction_delete_queued", method: "DELETE", path: "/v1/transactions/invoice_123", status: 202, setup: withInvoice},
		{name: "balance_credit", method: "POST", path: "/v1/customers/customer_123/balance/credit", request: "balance_credit", hdr: withIdem, status: 201,
			setup: func(fb *fakeBackend) {
				withCustomer(fb)
				c := partneroCustomer123()
				c.BalanceMinor, c.Currency = 2500, "USD"
				fb.partneroResult(creditID, sink.EventResult{Outcome: sink.OutcomeApplied, Customer: &c})
			}},
		{name: "balance_credit_queued", method: "POST", path: "/v1/customers/customer_123/balance/credit", request: "balance_credit", hdr: withIdem, status: 202, setup: withCustomer},
	}
}

// partneroGolden is a golden response file: the status, the body exactly as
// answered (re-indented), and the events the request left in the outbox.
type partneroGolden struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
	Events []sink.Event    `json:"events"`
}

// TestPartneroGolden sends each seed document's example requests (byte for
// byte) and the dialect's other documented cases, and compares the answer
// and the events committed with testdata/partnero/*.response.json. Run with
// -update to rewrite them.
func TestPartneroGolden(t *testing.T) {
	for _, tc := range partneroGoldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			s, fb := partneroServer(t)
			if tc.setup != nil {
				tc.setup(fb)
			}
			var body []byte
			if tc.request != "" {
				var err error
				if body, err = os.ReadFile(filepath.Join(partneroDir, tc.request+".request.json")); err != nil {
					t.Fatal(err)
				}
			}
			hdr := tc.hdr
			if hdr == nil {
				hdr = partneroAuthA
			}
			ctx := do(s, tc.method, "http://edge.example"+tc.path, hdr, string(body))
			if got := ctx.Response.StatusCode(); got != tc.status {
				t.Fatalf("status = %d, want %d: %s", got, tc.status, ctx.Response.Body())
			}
			evs, err := outboxEvents(s)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 {
				t.Errorf("events committed = %d, want 1", len(evs))
			}
			g := partneroGolden{Status: ctx.Response.StatusCode(), Body: bytes.Clone(ctx.Response.Body()), Events: evs}
			got, err := json.MarshalIndent(g, "", "  ")
			if err != nil {
				t.Fatalf("response is not JSON: %v: %s", err, ctx.Response.Body())
			}
			got = append(got, '\n')
			file := filepath.Join(partneroDir, tc.name+".response.json")
			if partneroUpdating() {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", file, got, want)
			}
		})
	}
}

// TestPartneroGoldenRequestsAreSeedText proves that the seed*.request.json
// files are the seed documents' own examples, byte for byte.
func TestPartneroGoldenRequestsAreSeedText(t *testing.T) {
	seeds := map[string]string{"seed001_": "001_6b318972db0834a1.txt", "seed003_": "003_8bd79671fd12f827.txt"}
	dir := filepath.Join("..", "..", "shared", "seeds")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("seed documents not beside the repository: %v", err)
	}
	files, err := filepath.Glob(filepath.Join(partneroDir, "seed*.request.json"))
	if err != nil || len(files) != 5 {
		t.Fatalf("seed request files = %v (%v), want 5", files, err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		doc, ok := seeds[base[:len("seed001_")]]
		if !ok {
			t.Errorf("%s names no seed document", base)
			continue
		}
		req, err1 := os.ReadFile(f)
		seed, err2 := os.ReadFile(filepath.Join(dir, doc))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if !bytes.Contains(seed, req) {
			t.Errorf("%s is not a verbatim excerpt of %s", base, doc)
		}
	}
}

// partneroAppended counts the rows ever appended to the outbox.
func partneroAppended(s *Server) uint64 { return s.Outbox.Stats().Appended }

func TestPartneroBadInput(t *testing.T) {
	s, fb := partneroServer(t)
	fb.conversions = append(fb.conversions, partneroInvoice123())
	fb.customers = append(fb.customers, partneroCustomer123())
	cust := func(body string) string { return body }
	txn := func(amount string) string {
		return `{"customer":{"key":"c1"},"key":"t1","amount":` + amount + `}`
	}
	oversized := `{"key":"c1","name":"` + strings.Repeat("x", 70<<10) + `"}`
	const (
		customers = "/v1/customers"
		txns      = "/v1/transactions"
		credit    = "/v1/customers/customer_123/balance/credit"
	)
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		body               string
		status             int
		code               string
	}{
		// Authentication and framing, on every endpoint.
		{"customers no auth", "POST", customers, map[string]string{"Content-Type": "application/json"}, `{"key":"c1"}`, 401, CodeUnauthorized},
		{"transactions wrong key", "POST", txns, map[string]string{"Authorization": "Bearer ce_live_nope"}, txn("1"), 401, CodeUnauthorized},
		{"delete no auth", "DELETE", txns + "/invoice_123", nil, "", 401, CodeUnauthorized},
		{"credit basic auth", "POST", credit, map[string]string{"Authorization": "Basic " + keyA}, `{"amount":1}`, 401, CodeUnauthorized},
		{"customers text body", "POST", customers, map[string]string{"Authorization": "Bearer " + keyA, "Content-Type": "text/plain"}, `{"key":"c1"}`, 415, CodeUnsupportedMedia},
		{"customers empty", "POST", customers, partneroAuthA, "", 400, CodeInvalidJSON},
		{"transactions empty", "POST", txns, partneroAuthA, "  \n", 400, CodeInvalidJSON},
		{"credit empty", "POST", credit, partneroAuthA, "", 400, CodeInvalidJSON},
		{"customers malformed", "POST", customers, partneroAuthA, `{"key":`, 400, CodeInvalidJSON},
		{"transactions malformed", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},}`, 400, CodeInvalidJSON},
		{"credit malformed", "POST", credit, partneroAuthA, `{"amount":1`, 400, CodeInvalidJSON},
		{"customers array", "POST", customers, partneroAuthA, `[{"key":"c1"}]`, 422, CodeInvalidField},
		{"customers trailing", "POST", customers, partneroAuthA, `{"key":"c1"}{}`, 400, CodeInvalidJSON},
		{"unterminated comment", "POST", customers, partneroAuthA, `{"key":"c1"} /* never closed`, 400, CodeInvalidJSON},
		{"customers oversized", "POST", customers, partneroAuthA, oversized, 413, CodePayloadTooLarge},
		{"transactions oversized", "POST", txns, partneroAuthA, oversized, 413, CodePayloadTooLarge},
		{"credit oversized", "POST", credit, partneroAuthA, oversized, 413, CodePayloadTooLarge},
		{"customers GET", "GET", customers, partneroAuthA, "", 405, CodeMethodNotAllowed},
		// Customers.
		{"customer key missing", "POST", customers, partneroAuthA, cust(`{"email":"a@b.example"}`), 422, CodeMissingField},
		{"customer key null", "POST", customers, partneroAuthA, cust(`{"key":null}`), 422, CodeMissingField},
		{"customer key empty", "POST", customers, partneroAuthA, cust(`{"key":""}`), 422, CodeMissingField},
		{"customer key float", "POST", customers, partneroAuthA, cust(`{"key":1.5}`), 422, CodeInvalidField},
		{"customer key negative", "POST", customers, partneroAuthA, cust(`{"key":-1}`), 422, CodeInvalidField},
		{"customer key bool", "POST", customers, partneroAuthA, cust(`{"key":true}`), 422, CodeInvalidField},
		{"customer key object", "POST", customers, partneroAuthA, cust(`{"key":{}}`), 422, CodeInvalidField},
		{"customer key too long", "POST", customers, partneroAuthA, cust(`{"key":"` + strings.Repeat("k", 256) + `"}`), 422, CodeInvalidField},
		{"customer key control", "POST", customers, partneroAuthA, cust(`{"key":"a\nb"}`), 422, CodeInvalidField},
		{"customer email number", "POST", customers, partneroAuthA, cust(`{"key":"c1","email":5}`), 422, CodeInvalidField},
		{"customer name too long", "POST", customers, partneroAuthA, cust(`{"key":"c1","name":"` + strings.Repeat("n", 256) + `"}`), 422, CodeInvalidField},
		{"customer tags string", "POST", customers, partneroAuthA, cust(`{"key":"c1","tags":"vip"}`), 422, CodeInvalidField},
		{"customer tags numbers", "POST", customers, partneroAuthA, cust(`{"key":"c1","tags":[1]}`), 422, CodeInvalidField},
		{"customer tags empty name", "POST", customers, partneroAuthA, cust(`{"key":"c1","tags":[" "]}`), 422, CodeInvalidField},
		{"customer too many tags", "POST", customers, partneroAuthA, cust(`{"key":"c1","tags":["t"` + strings.Repeat(`,"t"`, 50) + `]}`), 422, CodeInvalidField},
		{"customer referral_url javascript", "POST", customers, partneroAuthA, cust(`{"key":"c1","options":{"referral_url":"javascript:alert(1)"}}`), 422, CodeInvalidField},
		{"customer email over 254 bytes", "POST", customers, partneroAuthA, cust(`{"key":"c1","email":"` + strings.Repeat("e", 251) + `@x.e"}`), 422, CodeInvalidField},
		{"customer tag over 100 bytes", "POST", customers, partneroAuthA, cust(`{"key":"c1","tags":["vip","` + strings.Repeat("t", 101) + `"]}`), 422, CodeInvalidField},
		{"customer referral_url over 2048 bytes", "POST", customers, partneroAuthA,
			cust(`{"key":"c1","options":{"referral_url":"https://shop-a.example/` + strings.Repeat("p", 2049-len("https://shop-a.example/")) + `"}}`), 422, CodeInvalidField},
		{"customer partner string", "POST", customers, partneroAuthA, cust(`{"key":"c1","partner":"ALICE"}`), 422, CodeInvalidField},
		{"customer partner key float", "POST", customers, partneroAuthA, cust(`{"key":"c1","partner":{"key":2.5}}`), 422, CodeInvalidField},
		// Transactions: structure.
		{"transaction customer missing", "POST", txns, partneroAuthA, `{"key":"t1","amount":1}`, 422, CodeMissingField},
		{"transaction customer null", "POST", txns, partneroAuthA, `{"customer":null,"key":"t1","amount":1}`, 422, CodeMissingField},
		{"transaction customer key missing", "POST", txns, partneroAuthA, `{"customer":{},"key":"t1","amount":1}`, 422, CodeMissingField},
		{"transaction customer string", "POST", txns, partneroAuthA, `{"customer":"c1","key":"t1","amount":1}`, 422, CodeInvalidField},
		{"transaction key float", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},"key":1.5,"amount":1}`, 422, CodeInvalidField},
		{"transaction key control", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},"key":"t\u0000","amount":1}`, 422, CodeInvalidField},
		{"transaction action too long", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},"key":"t1","amount":1,"action":"` + strings.Repeat("a", 65) + `"}`, 422, CodeInvalidField},
		{"transaction action number", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},"key":"t1","amount":1,"action":5}`, 422, CodeInvalidField},
		{"transaction create_customer yes", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},"key":"t1","amount":1,"options":{"create_customer":"yes"}}`, 422, CodeInvalidField},
		{"transaction create_customer 1", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},"key":"t1","amount":1,"options":{"create_customer":1}}`, 422, CodeInvalidField},
		{"transaction bad idempotency key", "POST", txns, map[string]string{"Authorization": "Bearer " + keyA, "Idempotency-Key": "a:b"}, `{"customer":{"key":"c1"},"amount":1}`, 400, CodeInvalidParameter},
		// Transactions: amounts and currencies.
		{"amount missing", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},"key":"t1"}`, 422, CodeMissingField},
		{"amount null", "POST", txns, partneroAuthA, txn(`null`), 422, CodeMissingField},
		{"amount NaN string", "POST", txns, partneroAuthA, txn(`"NaN"`), 422, CodeInvalidAmount},
		{"amount NaN token", "POST", txns, partneroAuthA, txn(`NaN`), 400, CodeInvalidJSON},
		{"amount Infinity string", "POST", txns, partneroAuthA, txn(`"Infinity"`), 422, CodeInvalidAmount},
		{"amount words", "POST", txns, partneroAuthA, txn(`"ninety"`), 422, CodeInvalidAmount},
		{"amount empty string", "POST", txns, partneroAuthA, txn(`""`), 422, CodeInvalidAmount},
		{"amount bool", "POST", txns, partneroAuthA, txn(`true`), 422, CodeInvalidAmount},
		{"amount object", "POST", txns, partneroAuthA, txn(`{"value":1}`), 422, CodeInvalidAmount},
		{"amount exponent", "POST", txns, partneroAuthA, txn(`1e3`), 422, CodeInvalidAmount},
		{"amount comma", "POST", txns, partneroAuthA, txn(`"1,000.00"`), 422, CodeInvalidAmount},
		{"amount negative", "POST", txns, partneroAuthA, txn(`-5`), 422, CodeNegativeAmount},
		{"amount negative string", "POST", txns, partneroAuthA, txn(`"-0.01"`), 422, CodeNegativeAmount},
		{"amount too many decimals", "POST", txns, partneroAuthA, txn(`99.999`), 422, CodeTooManyDecimals},
		{"amount too many decimals JPY", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},"key":"t1","amount":"1.5","amount_units":"jpy"}`, 422, CodeTooManyDecimals},
		{"amount huge", "POST", txns, partneroAuthA, txn(`100000000000000000000`), 422, CodeAmountTooLarge},
		{"amount just over the bound", "POST", txns, partneroAuthA, txn(`10000000000000.01`), 422, CodeAmountTooLarge},
		{"unknown currency", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},"key":"t1","amount":1,"amount_units":"xyz"}`, 422, CodeUnknownCurrency},
		{"withdrawn currency", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},"key":"t1","amount":1,"currency":"HRK"}`, 422, CodeUnknownCurrency},
		{"currency number", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},"key":"t1","amount":1,"currency":840}`, 422, CodeInvalidField},
		{"conflicting currencies", "POST", txns, partneroAuthA, `{"customer":{"key":"c1"},"key":"t1","amount":1,"amount_units":"usd","currency":"EUR"}`, 422, CodeInvalidField},
		// Delete.
		{"delete unknown key", "DELETE", txns + "/nope", partneroAuthA, "", 404, CodeTransactionNotFound},
		{"delete other merchant's key", "DELETE", txns + "/invoice_123", partneroAuthB, "", 404, CodeTransactionNotFound},
		{"delete key too long", "DELETE", txns + "/" + strings.Repeat("k", 256), partneroAuthA, "", 404, CodeTransactionNotFound},
		{"delete collection", "DELETE", txns, partneroAuthA, "", 405, CodeMethodNotAllowed},
		// Credit.
		{"credit unknown customer", "POST", "/v1/customers/nobody/balance/credit", partneroAuthA, `{"amount":5}`, 404, CodeCustomerNotFound},
		{"credit other merchant's customer", "POST", credit, partneroAuthB, `{"amount":5}`, 404, CodeCustomerNotFound},
		{"credit amount missing", "POST", credit, partneroAuthA, `{"currency":"USD"}`, 422, CodeMissingField},
		{"credit amount zero", "POST", credit, partneroAuthA, `{"amount":0}`, 422, CodeInvalidAmount},
		{"credit amount negative", "POST", credit, partneroAuthA, `{"amount":"-5.00"}`, 422, CodeNegativeAmount},
		{"credit amount NaN", "POST", credit, partneroAuthA, `{"amount":"NaN"}`, 422, CodeInvalidAmount},
		{"credit too many decimals", "POST", credit, partneroAuthA, `{"amount":"5.001"}`, 422, CodeTooManyDecimals},
		{"credit KWD too many decimals", "POST", credit, partneroAuthA, `{"amount":"5.0001","currency":"KWD"}`, 422, CodeTooManyDecimals},
		{"credit huge", "POST", credit, partneroAuthA, `{"amount":99999999999999999}`, 422, CodeAmountTooLarge},
		{"credit unknown currency", "POST", credit, partneroAuthA, `{"amount":5,"currency":"ZZZ"}`, 422, CodeUnknownCurrency},
		{"credit note too long", "POST", credit, partneroAuthA, `{"amount":5,"note":"` + strings.Repeat("n", 1001) + `"}`, 422, CodeInvalidField},
		{"credit note number", "POST", credit, partneroAuthA, `{"amount":5,"note":7}`, 422, CodeInvalidField},
		{"credit bad idempotency key", "POST", credit, map[string]string{"Authorization": "Bearer " + keyA, "Idempotency-Key": "has space"}, `{"amount":5}`, 400, CodeInvalidParameter},
		{"credit idempotency key too long", "POST", credit, map[string]string{"Authorization": "Bearer " + keyA, "Idempotency-Key": strings.Repeat("i", 129)}, `{"amount":5}`, 400, CodeInvalidParameter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := partneroAppended(s)
			ctx := do(s, tt.method, tt.path, tt.hdr, tt.body)
			checkError(t, ctx, tt.status, tt.code)
			if n := partneroAppended(s) - before; n != 0 {
				t.Errorf("a rejected request wrote %d outbox rows", n)
			}
		})
	}
	if evs, err := outboxEvents(s); err != nil || len(evs) != 0 {
		t.Errorf("outbox events = %d (%v), want none", len(evs), err)
	}
}

// TestPartneroEvents checks what each accepted request commits: the event's
// identity and payload.
func TestPartneroEvents(t *testing.T) {
	emailHash := partneroEmailHashForTest("ma", " Jane@Example.COM ")
	tests := []struct {
		name, path, body string
		hdr              map[string]string
		want             sink.Event
	}{
		{
			name: "numeric keys are kept as text", path: "/v1/transactions",
			body: `{"customer":{"key":42},"key":1001,"amount":"99.99","product_id":7}`,
			want: sink.Event{ID: "ma:conversion:1001", Kind: sink.KindConversion, Conversion: &sink.ConversionEvent{
				UniqueID: "1001", Type: "sale", AmountMinor: 9999, Currency: "USD", CustomerID: "42", ProductID: "7"}},
		},
		{
			name: "amount_units picks the currency, case-insensitive", path: "/v1/transactions",
			body: `{"customer":{"key":"c"},"key":"t-jpy","amount":1000,"amount_units":"jpy","action":"subscription"}`,
			want: sink.Event{ID: "ma:conversion:t-jpy", Kind: sink.KindConversion, Conversion: &sink.ConversionEvent{
				UniqueID: "t-jpy", Type: "subscription", AmountMinor: 1000, Currency: "JPY", CustomerID: "c"}},
		},
		{
			name: "three-decimal currency and trailing zeros", path: "/v1/transactions",
			body: `{"customer":{"key":"c"},"key":"t-kwd","amount":"1.2340","currency":"KWD"}`,
			want: sink.Event{ID: "ma:conversion:t-kwd", Kind: sink.KindConversion, Conversion: &sink.ConversionEvent{
				UniqueID: "t-kwd", Type: "sale", AmountMinor: 1234, Currency: "KWD", CustomerID: "c"}},
		},
		{
			name: "customer.partner wins over the top-level partner", path: "/v1/transactions",
			body: `{"customer":{"key":"c","email":" Jane@Example.COM ","name":"Jane","partner":{"email":"p@x.example"}},"key":"t-p","amount":0,` +
				`"options":{"create_customer":"true"},"partner":{"key":"IGNORED"}}`,
			want: sink.Event{ID: "ma:conversion:t-p", Kind: sink.KindConversion, Conversion: &sink.ConversionEvent{
				UniqueID: "t-p", Type: "sale", Currency: "USD", CustomerID: "c", PartnerEmail: "p@x.example",
				CreateCustomer: true, CustomerEmailHash: emailHash}},
		},
		{
			name: "keyless transaction takes the Idempotency-Key", path: "/v1/transactions",
			hdr:  map[string]string{"Idempotency-Key": "order-77"},
			body: `{"customer":{"key":"c"},"amount":5,"options":{"create_customer":false}}`,
			want: sink.Event{ID: "ma:conversion:order-77", Kind: sink.KindConversion, Conversion: &sink.ConversionEvent{
				UniqueID: "order-77", Type: "sale", AmountMinor: 500, Currency: "USD", CustomerID: "c"}},
		},
		{
			name: "customer with every field", path: "/v1/customers",
			body: `{"partner":{"key":"ALICE","email":"alice@x.example","id":"pa"},"referring_customer":{"key":99},"key":"c-all",` +
				`"email":"  c@x.example ","name":"C","surname":"D","tags":["vip","beta"],"options":{"referral_url":"/pricing?aff=ALICE"}}`,
			want: sink.Event{ID: "ma:customer:c-all", Kind: sink.KindCustomer, Customer: &sink.CustomerEvent{
				Key: "c-all", Email: "c@x.example", Name: "C", Surname: "D", Tags: []string{"vip", "beta"},
				ReferralURL: "/pricing?aff=ALICE", PartnerKey: "ALICE", PartnerEmail: "alice@x.example", PartnerID: "pa",
				ReferringCustomerKey: "99"}},
		},
		{
			// Each bounded field at its bound: email 254 bytes (after
			// trimming), a tag of 100 bytes, referral_url 2048 bytes.
			name: "customer fields at their limits", path: "/v1/customers",
			body: `{"key":"c-max","email":" ` + partneroMaxEmailValue + ` ","tags":["` + strings.Repeat("t", 100) + `"],` +
				`"options":{"referral_url":"` + partneroMaxURLValue + `"},"partner":{"key":"ALICE"}}`,
			want: sink.Event{ID: "ma:customer:c-max", Kind: sink.KindCustomer, Customer: &sink.CustomerEvent{
				Key: "c-max", Email: partneroMaxEmailValue, Tags: []string{strings.Repeat("t", 100)},
				ReferralURL: partneroMaxURLValue, PartnerKey: "ALICE"}},
		},
		{
			name: "unknown and malformed partner keys pass to the worker", path: "/v1/customers",
			body: `{"partner":{"key":"NOT A KEY\u0007"},"key":"c-bad"}`,
			want: sink.Event{ID: "ma:customer:c-bad", Kind: sink.KindCustomer, Customer: &sink.CustomerEvent{
				Key: "c-bad", PartnerKey: "NOT A KEY\a"}},
		},
		{
			name: "credit with Idempotency-Key", path: "/v1/customers/customer_123/balance/credit",
			hdr:  map[string]string{"Idempotency-Key": "r-1"},
			body: `{"amount":"12.5","currency":"eur","note":" thanks "}`,
			want: sink.Event{ID: "ma:balance_credit:customer_123:r-1", Kind: sink.KindCredit, Credit: &sink.CreditEvent{
				CustomerKey: "customer_123", AmountMinor: 1250, Currency: "EUR", Note: "thanks"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, fb := partneroServer(t)
			fb.customers = append(fb.customers, partneroCustomer123())
			hdr := map[string]string{"Authorization": "Bearer " + keyA}
			for k, v := range tt.hdr {
				hdr[k] = v
			}
			ctx := do(s, "POST", tt.path, hdr, tt.body)
			if got := ctx.Response.StatusCode(); got != 202 {
				t.Fatalf("status = %d, want 202: %s", got, ctx.Response.Body())
			}
			evs, err := outboxEvents(s)
			if err != nil || len(evs) != 1 {
				t.Fatalf("events = %v (%v), want 1", evs, err)
			}
			want := tt.want
			if want.Kind == sink.KindCustomer {
				// A customer event's id carries a digest of its content.
				want.ID += ":" + partneroDigest(want.Customer)
			}
			want.V, want.TS, want.Edge, want.Dialect, want.MerchantID = sink.EventVersion, partneroNow.UnixMilli(), "t", sink.DialectPartnero, "ma"
			got, _ := json.Marshal(evs[0])
			wantJSON, _ := json.Marshal(want)
			if !bytes.Equal(got, wantJSON) {
				t.Errorf("event\n got %s\nwant %s", got, wantJSON)
			}
		})
	}
}

// Values exactly at the customer's documented bounds.
var (
	partneroMaxEmailValue = strings.Repeat("e", 250) + "@x.e"                                                    // 254 bytes
	partneroMaxURLValue   = "https://shop-a.example/" + strings.Repeat("p", 2048-len("https://shop-a.example/")) // 2048 bytes
)

// partneroEmailHashForTest restates the documented email hash (the same as
// the Affilync dialect's), so this test fails if the dialect's hash drifts.
func partneroEmailHashForTest(merchantID, email string) string {
	sum := sha256.Sum256([]byte(merchantID + "\x00" + strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:])
}

// TestPartneroGeneratedKeys: a transaction without key and header gets a
// fresh txn_ key, returned to the merchant; a credit without header gets a
// fresh nonce. Two such requests never share an event.
func TestPartneroGeneratedKeys(t *testing.T) {
	s, fb := partneroServer(t)
	fb.customers = append(fb.customers, partneroCustomer123())
	txnKey := regexp.MustCompile(`^txn_[0-9a-f]{32}$`)
	nonce := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		ctx := do(s, "POST", "/v1/transactions", partneroAuthA, `{"customer":{"key":"c"},"amount":1}`)
		var resp struct {
			Data   struct{ Key string }
			Status string
		}
		if err := json.Unmarshal(ctx.Response.Body(), &resp); err != nil || ctx.Response.StatusCode() != 202 || resp.Status != "queued" {
			t.Fatalf("keyless transaction: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if !txnKey.MatchString(resp.Data.Key) || seen[resp.Data.Key] {
			t.Errorf("generated key %q: want a fresh txn_ + 32 hex", resp.Data.Key)
		}
		seen[resp.Data.Key] = true

		ctx = do(s, "POST", "/v1/customers/customer_123/balance/credit", partneroAuthA, `{"amount":1}`)
		var cr struct {
			Data struct {
				IdempotencyKey string `json:"idempotency_key"`
			}
		}
		if err := json.Unmarshal(ctx.Response.Body(), &cr); err != nil || ctx.Response.StatusCode() != 202 {
			t.Fatalf("credit: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if !nonce.MatchString(cr.Data.IdempotencyKey) || seen[cr.Data.IdempotencyKey] {
			t.Errorf("credit nonce %q: want fresh 32 hex", cr.Data.IdempotencyKey)
		}
		seen[cr.Data.IdempotencyKey] = true
	}
	evs, err := outboxEvents(s)
	if err != nil || len(evs) != 4 {
		t.Fatalf("events = %d (%v), want 4", len(evs), err)
	}
	for _, ev := range evs {
		switch {
		case ev.Conversion != nil:
			if !seen[ev.Conversion.UniqueID] || ev.ID != sink.EventID("ma", sink.KindConversion, ev.Conversion.UniqueID) {
				t.Errorf("conversion event %s: unique id %q was not the key answered", ev.ID, ev.Conversion.UniqueID)
			}
		case ev.Credit != nil:
			idem := strings.TrimPrefix(ev.ID, "ma:balance_credit:customer_123:")
			if !seen[idem] {
				t.Errorf("credit event %s does not carry the answered nonce", ev.ID)
			}
		}
	}
	// Retrying a credit with the answered nonce as Idempotency-Key is the same event.
	var idem string
	for k := range seen {
		if nonce.MatchString(k) {
			idem = k
		}
	}
	do(s, "POST", "/v1/customers/customer_123/balance/credit", map[string]string{"Authorization": "Bearer " + keyA, "Idempotency-Key": idem}, `{"amount":1}`)
	evs, _ = outboxEvents(s)
	if last := evs[len(evs)-1]; last.ID != "ma:balance_credit:customer_123:"+idem {
		t.Errorf("retry with the nonce: event %s, want the original id", last.ID)
	}
}

// TestPartneroOutcomes maps each worker answer to the merchant's answer.
func TestPartneroOutcomes(t *testing.T) {
	txnBody := `{"customer":{"key":"c"},"key":"t9","amount":10}`
	txnID := sink.EventID("ma", sink.KindConversion, "t9")
	tests := []struct {
		name, method, path, body string
		eventID                  string
		result                   sink.EventResult
		status                   int
		code                     string // error code, or the envelope status
	}{
		{"transaction applied", "POST", "/v1/transactions", txnBody, txnID, sink.EventResult{Outcome: sink.OutcomeApplied}, 201, "applied"},
		{"transaction for an unknown customer rejected is ignored", "POST", "/v1/transactions", txnBody, txnID,
			sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "customer_not_found", Message: "no such customer"}}, 200, "ignored"},
		{"currency mismatch", "POST", "/v1/transactions", txnBody, txnID,
			sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "currency_mismatch", Message: "campaign is EUR"}}, 422, CodeCurrencyMismatch},
		{"unknown rejection", "POST", "/v1/transactions", txnBody, txnID,
			sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "something_new"}}, 422, CodeEventRejected},
		{"rejection without reason", "POST", "/v1/transactions", txnBody, txnID, sink.EventResult{Outcome: sink.OutcomeRejected}, 422, CodeEventRejected},
		{"unknown outcome", "POST", "/v1/transactions", txnBody, txnID, sink.EventResult{Outcome: "exploded"}, 500, CodeInternal},
		{"customer rejected", "POST", "/v1/customers", `{"key":"c9"}`, sink.EventID("ma", sink.KindCustomer, "c9"),
			sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "some_other_rule", Message: "x"}}, 422, CodeEventRejected},
		{"delete of a refunded transaction", "DELETE", "/v1/transactions/invoice_123", "", sink.EventID("ma", sink.KindRefund, "invoice_123:delete"),
			sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "nothing_left_to_refund", Message: "nothing left"}}, 422, CodeEventRejected},
		{"delete vanished meanwhile", "DELETE", "/v1/transactions/invoice_123", "", sink.EventID("ma", sink.KindRefund, "invoice_123:delete"),
			sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "conversion_not_found", Message: "gone"}}, 404, CodeTransactionNotFound},
		{"delete repeated", "DELETE", "/v1/transactions/invoice_123", "", sink.EventID("ma", sink.KindRefund, "invoice_123:delete"),
			sink.EventResult{Outcome: sink.OutcomeDuplicate}, 200, "duplicate"},
		{"credit duplicate", "POST", "/v1/customers/customer_123/balance/credit", `{"amount":1}`, "",
			sink.EventResult{Outcome: sink.OutcomeDuplicate}, 200, "duplicate"},
		{"credit customer gone", "POST", "/v1/customers/customer_123/balance/credit", `{"amount":1}`, "",
			sink.EventResult{Outcome: sink.OutcomeRejected, Error: &sink.APIError{Code: "customer_not_found", Message: "gone"}}, 404, CodeCustomerNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, fb := partneroServer(t)
			fb.conversions = append(fb.conversions, partneroInvoice123())
			fb.customers = append(fb.customers, partneroCustomer123())
			hdr := partneroAuthA
			id := tt.eventID
			if id == "" {
				hdr = map[string]string{"Authorization": "Bearer " + keyA, "Idempotency-Key": "k1"}
				id = sink.EventID("ma", sink.KindCredit, "customer_123:k1")
			}
			fb.partneroResult(id, tt.result)
			ctx := do(s, tt.method, tt.path, hdr, tt.body)
			if ctx.Response.StatusCode() >= 400 {
				checkError(t, ctx, tt.status, tt.code)
				return
			}
			var env struct{ Status string }
			if err := json.Unmarshal(ctx.Response.Body(), &env); err != nil || ctx.Response.StatusCode() != tt.status || env.Status != tt.code {
				t.Errorf("answer %d %s, want %d with status %q", ctx.Response.StatusCode(), ctx.Response.Body(), tt.status, tt.code)
			}
		})
	}
}

// partneroDownBackend is a worker that does not answer.
type partneroDownBackend struct{ *fakeBackend }

func (partneroDownBackend) Conversion(context.Context, string, string) (sink.ConversionRecord, error) {
	return sink.ConversionRecord{}, &sink.APIError{Code: sink.APICodeWorkerUnavailable, Message: "down"}
}

func (partneroDownBackend) Customer(context.Context, string, string) (sink.CustomerRecord, error) {
	return sink.CustomerRecord{}, &sink.APIError{Code: sink.APICodeWorkerUnavailable, Message: "down"}
}

// TestPartneroWorkerAway: writes that need no lookup are still accepted
// (202 queued, durable); delete and credit, which must first find their
// record, answer 503 and write nothing.
func TestPartneroWorkerAway(t *testing.T) {
	s, fb := partneroServer(t)
	fb.down = true
	s.Backend = partneroDownBackend{fb}
	for _, path := range []string{"/v1/customers", "/v1/transactions"} {
		ctx := do(s, "POST", path, partneroAuthA, `{"key":"k","customer":{"key":"c"},"amount":1}`)
		if ctx.Response.StatusCode() != 202 || !strings.Contains(string(ctx.Response.Body()), `"status":"queued"`) {
			t.Errorf("%s with the worker away: %d %s, want 202 queued", path, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	before := partneroAppended(s)
	checkError(t, do(s, "DELETE", "/v1/transactions/invoice_123", partneroAuthA, ""), 503, CodeWorkerUnavailable)
	checkError(t, do(s, "POST", "/v1/customers/customer_123/balance/credit", partneroAuthA, `{"amount":1}`), 503, CodeWorkerUnavailable)
	s.Backend = nil
	checkError(t, do(s, "DELETE", "/v1/transactions/invoice_123", partneroAuthA, ""), 503, CodeWorkerUnavailable)
	checkError(t, do(s, "POST", "/v1/customers/customer_123/balance/credit", partneroAuthA, `{"amount":1}`), 503, CodeWorkerUnavailable)
	if n := partneroAppended(s) - before; n != 0 {
		t.Errorf("lookups that failed wrote %d rows", n)
	}
}

// TestPartneroOutboxFull: a write that cannot be made durable is 503, never 2xx.
func TestPartneroOutboxFull(t *testing.T) {
	ob := sink.NewOutbox(filepath.Join(t.TempDir(), "edge.db"))
	ob.NoSync = true
	ob.MaxBytes = 1
	if err := ob.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	s, fb := partneroServer(t)
	fb.customers = append(fb.customers, partneroCustomer123())
	fb.conversions = append(fb.conversions, partneroInvoice123())
	s2 := &Server{Minter: s.Minter, Enricher: s.Enricher, Outbox: ob, Backend: fb}
	if err := s2.Open(); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(partneroCatalog())
	if err := s2.ApplyCatalog(data); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/customers", `{"key":"c"}`},
		{"POST", "/v1/transactions", `{"customer":{"key":"c"},"key":"t","amount":1}`},
		{"DELETE", "/v1/transactions/invoice_123", ""},
		{"POST", "/v1/customers/customer_123/balance/credit", `{"amount":1}`},
	} {
		checkError(t, do(s2, r.method, r.path, partneroAuthA, r.body), 503, CodeUnavailable)
	}
	if st := ob.Stats(); st.Rows != 0 {
		t.Errorf("outbox rows = %d, want 0", st.Rows)
	}
}

// TestPartneroTenantIsolation: merchant B's key never reaches merchant A's
// transactions or customers, and B's writes land in B's stream.
func TestPartneroTenantIsolation(t *testing.T) {
	s, fb := partneroServer(t)
	fb.conversions = append(fb.conversions, partneroInvoice123())
	fb.customers = append(fb.customers, partneroCustomer123())
	before := partneroAppended(s)
	for _, id := range []string{"invoice_123", partneroInvoice123().ID} {
		checkError(t, do(s, "DELETE", "/v1/transactions/"+id, partneroAuthB, ""), 404, CodeTransactionNotFound)
	}
	checkError(t, do(s, "POST", "/v1/customers/customer_123/balance/credit", partneroAuthB, `{"amount":1}`), 404, CodeCustomerNotFound)
	if n := partneroAppended(s) - before; n != 0 {
		t.Errorf("merchant B's requests for A's ids wrote %d rows", n)
	}
	// A transaction of B naming A's customer key is B's event, about B's customer.
	ctx := do(s, "POST", "/v1/transactions", partneroAuthB, `{"customer":{"key":"customer_123"},"key":"invoice_123","amount":1}`)
	if ctx.Response.StatusCode() != 202 {
		t.Fatalf("B's transaction: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	rows, err := s.Outbox.Peek(0, 10)
	if err != nil || len(rows) != 1 {
		t.Fatalf("rows = %v (%v)", rows, err)
	}
	ev, err := sink.DecodeEvent(rows[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].Subject != sink.EventSubjectPrefix+"mb" || rows[0].MsgID != "mb:conversion:invoice_123" || ev.MerchantID != "mb" {
		t.Errorf("B's event: subject %q msg id %q merchant %q", rows[0].Subject, rows[0].MsgID, ev.MerchantID)
	}
	// Deleting by A's conversion id with A's key uses the unique id.
	ctx = do(s, "DELETE", "/v1/transactions/"+partneroInvoice123().ID, partneroAuthA, "")
	evs, _ := outboxEvents(s)
	if ctx.Response.StatusCode() != 202 || evs[len(evs)-1].ID != "ma:refund:invoice_123:delete" || evs[len(evs)-1].Refund.UniqueID != "invoice_123" {
		t.Errorf("delete by conversion id: %d, event %+v", ctx.Response.StatusCode(), evs[len(evs)-1])
	}
}

// TestPartneroReferralLink: the link is on the host the merchant called,
// https when TLS ends before the edge (SecureCookies), never built from a
// host that is not a plain host name.
func TestPartneroReferralLink(t *testing.T) {
	tests := []struct {
		name, uri string
		secure    bool
		code      string
		want      string // "" for null
	}{
		{"secure edge", "http://edge.example/v1/customers", true, "rf1", "https://edge.example/f/ma/rf1"},
		{"plain http dev edge", "http://127.0.0.1:8080/v1/customers", false, "rf1", "http://127.0.0.1:8080/f/ma/rf1"},
		{"IPv6 host", "http://[::1]:8080/v1/customers", false, "rf1", "http://[::1]:8080/f/ma/rf1"},
		{"code escaped", "http://edge.example/v1/customers", true, "a b/c", "https://edge.example/f/ma/a%20b%2Fc"},
		{"no code yet", "http://edge.example/v1/customers", true, "", ""},
		{"no host", "/v1/customers", true, "rf1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, fb := partneroServer(t)
			s.SecureCookies = tt.secure
			fb.partneroResult("ma:customer:c", sink.EventResult{Outcome: sink.OutcomeApplied,
				Customer: &sink.CustomerRecord{MerchantID: "ma", Key: "c", ReferralCode: tt.code}})
			ctx := do(s, "POST", tt.uri, partneroAuthA, `{"key":"c"}`)
			var resp struct {
				Data struct {
					ReferralLink *string `json:"referral_link"`
				}
			}
			if err := json.Unmarshal(ctx.Response.Body(), &resp); err != nil || ctx.Response.StatusCode() != 201 {
				t.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			got := ""
			if resp.Data.ReferralLink != nil {
				got = *resp.Data.ReferralLink
			}
			if got != tt.want {
				t.Errorf("referral_link = %q, want %q", got, tt.want)
			}
		})
	}
	// A Host header that is not a host name gives no link.
	s, fb := partneroServer(t)
	fb.partneroResult("ma:customer:c", sink.EventResult{Outcome: sink.OutcomeApplied,
		Customer: &sink.CustomerRecord{MerchantID: "ma", Key: "c", ReferralCode: "rf1"}})
	ctx := do(s, "POST", "/v1/customers", map[string]string{"Authorization": "Bearer " + keyA, "Host": "bad_host.example"}, `{"key":"c"}`)
	if !strings.Contains(string(ctx.Response.Body()), `"referral_link":null`) {
		t.Errorf("odd Host header: %s, want a null referral_link", ctx.Response.Body())
	}
}

func TestPartneroStripComments(t *testing.T) {
	tests := []struct {
		name, in, want string
		err            bool
	}{
		{"no comments", `{"a":1}`, `{"a":1}`, false},
		{"line comment", "{\"a\":1 // one\n}", "{\"a\":1       \n}", false},
		{"comment at end", `{"a":1}// x`, `{"a":1}    `, false},
		{"block comment", `{/* c */"a":1}`, `{       "a":1}`, false},
		{"block comment keeps newlines", "{/*\n*/\"a\":1}", "{  \n  \"a\":1}", false},
		{"slashes inside strings", `{"u":"https://x.example/a//b /* no */"}`, `{"u":"https://x.example/a//b /* no */"}`, false},
		{"escaped quote inside string", `{"u":"a\"//b"} // c`, `{"u":"a\"//b"}     `, false},
		{"escaped backslash ends string", `{"u":"a\\"} // c`, `{"u":"a\\"}     `, false},
		{"lone slash stays", `{"a":1/2}`, `{"a":1/2}`, false},
		{"CRLF line comment", "{\"a\":1 // c\r\n}", "{\"a\":1     \r\n}", false},
		{"unterminated block", `{"a":1} /* x`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := partneroStripComments([]byte(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if !tt.err && string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestPartneroPartnerCookie follows a link of a Partnero-style campaign (its
// cookie holds the partner key, as in the demo catalog's "s2s" campaign) on
// the merchant's tracking subdomain: the partnero_partner cookie reaches the
// merchant's own back end on its other hosts, which sends it as partner.key.
func TestPartneroPartnerCookie(t *testing.T) {
	s, _ := partneroServer(t)
	c := partneroCatalog()
	c.Version = 3
	c.Merchants[0].CookieDomain = "shop-a.example" // the merchant's site, all subdomains
	data, _ := json.Marshal(c)
	if err := s.ApplyCatalog(data); err != nil {
		t.Fatal(err)
	}
	ctx := do(s, "GET", "http://track.shop-a.example/r/a2", nil, "")
	if ctx.Response.StatusCode() != 302 {
		t.Fatalf("redirect: %d", ctx.Response.StatusCode())
	}
	loc, err := url.Parse(string(ctx.Response.Header.Peek("Location")))
	if err != nil || loc.Query().Get("aff") != "ALICE" {
		t.Errorf("Location %q: want ?aff=ALICE for the pure S2S path", ctx.Response.Header.Peek("Location"))
	}
	hr := &http.Response{Header: http.Header{}}
	ctx.Response.Header.VisitAllCookie(func(_, v []byte) { hr.Header.Add("Set-Cookie", string(v)) })
	var ck *http.Cookie
	for _, c := range hr.Cookies() {
		if c.Name == "partnero_partner" {
			ck = c
		}
	}
	if ck == nil {
		t.Fatalf("no partnero_partner cookie in %v", hr.Header)
	}
	if ck.Value != "ALICE" || ck.MaxAge != 30*24*3600 || ck.Path != "/" || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
		t.Errorf("cookie = %+v: want ALICE, 30 days, path /, HttpOnly, SameSite=Lax", ck)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	edgeURL, _ := url.Parse("https://track.shop-a.example/r/a2")
	jar.SetCookies(edgeURL, hr.Cookies())
	backEnd, _ := url.Parse("https://www.shop-a.example/signup")
	var partnerKey string
	for _, c := range jar.Cookies(backEnd) {
		if c.Name == "partnero_partner" {
			partnerKey = c.Value
		}
	}
	if partnerKey != "ALICE" {
		t.Fatalf("the merchant's back end at %s gets partnero_partner = %q, want ALICE", backEnd, partnerKey)
	}
	other, _ := url.Parse("https://shop-b.example/")
	if len(jar.Cookies(other)) != 0 {
		t.Errorf("the cookie leaks to another merchant's site")
	}
	// The back end sends the cookie's value as partner.key (seed 002).
	body, _ := json.Marshal(map[string]any{"partner": map[string]string{"key": partnerKey}, "key": "cust_cookie", "email": "v@x.example"})
	ctx = do(s, "POST", "/v1/customers", partneroAuthA, string(body))
	evs, err := outboxEvents(s)
	if err != nil || ctx.Response.StatusCode() != 202 || len(evs) != 1 || evs[0].Customer.PartnerKey != "ALICE" {
		t.Errorf("customer from the cookie: %d, events %+v (%v)", ctx.Response.StatusCode(), evs, err)
	}
}

// TestPartneroBodyLimitOverTheWire: an oversized body is refused by the
// server itself before any handler runs.
func TestPartneroBodyLimitOverTheWire(t *testing.T) {
	s, _ := partneroServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	defer s.Shutdown(context.Background())
	var req fasthttp.Request
	var resp fasthttp.Response
	req.SetRequestURI("http://" + ln.Addr().String() + "/v1/transactions")
	req.Header.SetMethod("POST")
	req.Header.Set("Authorization", "Bearer "+keyA)
	req.SetBodyString(`{"customer":{"key":"c"},"key":"t","amount":1,"action":"` + strings.Repeat("x", 70000) + `"}`)
	if err := fasthttp.DoTimeout(&req, &resp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 413 || !strings.Contains(string(resp.Body()), CodePayloadTooLarge) {
		t.Errorf("oversized body: %d %s", resp.StatusCode(), resp.Body())
	}
	if n := partneroAppended(s); n != 0 {
		t.Errorf("oversized body wrote %d rows", n)
	}
}

// partneroFuzzCheck asserts the invariant of every Partnero write: a 2xx
// committed exactly one row, a 4xx is a JSON error with a code and wrote
// nothing; nothing else is answered.
func partneroFuzzCheck(t *testing.T, s *Server, method, path string, hdr map[string]string, body string) {
	before := partneroAppended(s)
	ctx := do(s, method, path, hdr, body)
	code := ctx.Response.StatusCode()
	after := partneroAppended(s)
	switch {
	case code >= 200 && code < 300:
		if after != before+1 {
			t.Fatalf("%d but %d rows appended for %q", code, after-before, body)
		}
		var env struct {
			Data   json.RawMessage
			Status string
		}
		if err := json.Unmarshal(ctx.Response.Body(), &env); err != nil || len(env.Data) == 0 || env.Status == "" {
			t.Fatalf("%d without the envelope: %s", code, ctx.Response.Body())
		}
	case code >= 400 && code < 500:
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(ctx.Response.Body(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%d without a JSON error code: %s", code, ctx.Response.Body())
		}
		if StatusOf(e.Error.Code) != code {
			t.Fatalf("code %q answered with %d, registered as %d", e.Error.Code, code, StatusOf(e.Error.Code))
		}
		if after != before {
			t.Fatalf("rejected body (%d %s) wrote %d rows: %q", code, e.Error.Code, after-before, body)
		}
	default:
		t.Fatalf("status %d for %q: %s", code, body, ctx.Response.Body())
	}
}

func partneroSeedCorpus(f *testing.F, extra ...string) {
	files, _ := filepath.Glob(filepath.Join(partneroDir, "*.request.json"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(string(b))
		}
	}
	for _, e := range extra {
		f.Add(e)
	}
}

func FuzzPartneroCustomer(f *testing.F) {
	partneroSeedCorpus(f, `{"key":1}`, `{"key":"c","tags":["a",""]}`, `{"key":"c","partner":null}`, `{"key":"c"}/*`, `null`, `{}`)
	s, _ := partneroServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		partneroFuzzCheck(t, s, "POST", "/v1/customers", partneroAuthA, body)
	})
}

func FuzzPartneroTransaction(f *testing.F) {
	partneroSeedCorpus(f, `{"customer":{"key":"c"},"amount":"1.5","amount_units":"JPY"}`,
		`{"customer":{"key":"c"},"key":"t","amount":-0,"options":{"create_customer":"true"}}`,
		`{"customer":{"key":"c"},"key":"t","amount":1e2}`, `{"customer":{"key":"c","partner":{"id":7}},"key":"t","amount":"0.10"}`)
	s, _ := partneroServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		partneroFuzzCheck(t, s, "POST", "/v1/transactions", partneroAuthA, body)
	})
}

func FuzzPartneroCredit(f *testing.F) {
	partneroSeedCorpus(f, `{"amount":0.01}`, `{"amount":"5","currency":"kwd","note":"x"}`, `{"amount":0}`, `{"amount":"NaN"}`)
	s, fb := partneroServer(f)
	fb.customers = append(fb.customers, partneroCustomer123())
	f.Fuzz(func(t *testing.T, body string) {
		partneroFuzzCheck(t, s, "POST", "/v1/customers/customer_123/balance/credit", partneroAuthA, body)
	})
}

// FuzzPartneroDeleteKey: any path key is a 2xx for the one existing
// transaction and a 404 otherwise.
func FuzzPartneroDeleteKey(f *testing.F) {
	for _, k := range []string{"invoice_123", "conv_5k2m7q4w9x3z8c6v1b0n4m2l", "", "a/b", "..", "%00", strings.Repeat("k", 300), "invoice_123\n"} {
		f.Add(k)
	}
	s, fb := partneroServer(f)
	fb.conversions = append(fb.conversions, partneroInvoice123())
	f.Fuzz(func(t *testing.T, key string) {
		before := partneroAppended(s)
		ctx := do(s, "DELETE", "/v1/transactions/"+url.PathEscape(key), partneroAuthA, "")
		code := ctx.Response.StatusCode()
		switch {
		case code >= 200 && code < 300:
			if partneroAppended(s) != before+1 {
				t.Fatalf("%d for key %q without one row", code, key)
			}
		case code == 404 || code == 405:
			if partneroAppended(s) != before {
				t.Fatalf("%d for key %q wrote rows", code, key)
			}
		default:
			t.Fatalf("status %d for key %q: %s", code, key, ctx.Response.Body())
		}
	})
}

// FuzzPartneroStripComments: the result keeps the input's length and line
// breaks, valid JSON passes through unchanged, stripping is idempotent, and
// what it changes is only comment text turned into spaces.
func FuzzPartneroStripComments(f *testing.F) {
	partneroSeedCorpus(f, `{"a":"//"}//`, "/*\n*/", `"\"/*"`, `/`, `{"a":1/*`)
	f.Fuzz(func(t *testing.T, in string) {
		out, err := partneroStripComments([]byte(in))
		if err != nil {
			if !strings.Contains(in, "/*") {
				t.Fatalf("error %v without a block comment in %q", err, in)
			}
			return
		}
		if len(out) != len(in) {
			t.Fatalf("length %d, want %d", len(out), len(in))
		}
		if json.Valid([]byte(in)) && string(out) != in {
			t.Fatalf("valid JSON %q changed to %q", in, out)
		}
		for i := range out {
			if out[i] != in[i] && out[i] != ' ' {
				t.Fatalf("byte %d changed to %q, not a space", i, out[i])
			}
			if (in[i] == '\n' || in[i] == '\r') && out[i] != in[i] {
				t.Fatalf("line break at %d removed", i)
			}
		}
		again, err := partneroStripComments(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("second pass changed %q to %q (%v)", out, again, err)
		}
	})
}

func BenchmarkPartneroTransaction(b *testing.B) {
	s, _ := partneroServer(b)
	body, err := os.ReadFile(filepath.Join(partneroDir, "seed003_transaction_create_customer.request.json"))
	if err != nil {
		b.Fatal(err)
	}
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/v1/transactions")
	req.Header.Set("Authorization", "Bearer "+keyA)
	req.Header.SetContentType("application/json")
	req.SetBody(body)
	h := s.Handler()
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 5555}, nil)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		h(ctx)
		if ctx.Response.StatusCode() != 202 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

func BenchmarkPartneroParseTransaction(b *testing.B) {
	body, err := os.ReadFile(filepath.Join(partneroDir, "seed003_transaction_create_customer.request.json"))
	if err != nil {
		b.Fatal(err)
	}
	next := func() (string, *apiError) { return "", nil }
	b.ReportAllocs()
	for b.Loop() {
		clean, err := partneroStripComments(body)
		if err != nil {
			b.Fatal(err)
		}
		var req partneroTransactionRequest
		if err := json.Unmarshal(clean, &req); err != nil {
			b.Fatal(err)
		}
		if _, aerr := partneroConversionEvent("ma", &req, next); aerr != nil {
			b.Fatal(aerr)
		}
	}
}

// TestPartneroCustomerEventIDs: a retried customer request is one event; a
// corrected one (another partner key) or an update is a new event, so an
// earlier ignored request never blocks the customer.
func TestPartneroCustomerEventIDs(t *testing.T) {
	s, _ := partneroServer(t)
	hdr := map[string]string{"Authorization": "Bearer " + keyA}
	send := func(body string) string {
		t.Helper()
		before, _ := outboxEvents(s)
		if code := do(s, "POST", "/v1/customers", hdr, body).Response.StatusCode(); code != 202 {
			t.Fatalf("status %d for %s", code, body)
		}
		evs, _ := outboxEvents(s)
		if len(evs) != len(before)+1 {
			t.Fatalf("events %d, want %d", len(evs), len(before)+1)
		}
		return evs[len(evs)-1].ID
	}
	typo := send(`{"partner":{"key":"ALCIE"},"key":"c1"}`)
	retry := send(`{"partner":{"key":"ALCIE"},"key":"c1"}`)
	fixed := send(`{"partner":{"key":"ALICE"},"key":"c1"}`)
	update := send(`{"partner":{"key":"ALICE"},"key":"c1","tags":["vip"]}`)
	if typo != retry {
		t.Errorf("a retry got a new id: %q vs %q", typo, retry)
	}
	if fixed == typo || update == fixed {
		t.Errorf("corrected or updated customer reused an id: %q %q %q", typo, fixed, update)
	}
}
