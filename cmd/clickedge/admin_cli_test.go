package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/clickedge/clickedge/money"
)

const cliTestToken = "cli-test-token-0123456789abcdef"

// cliRequest is one request the fake admin API received.
type cliRequest struct {
	Method, Path, Query, Auth, ContentType string
	Body                                   []byte
}

// cliFake is an admin API stand-in that records requests and answers with
// reply (by default 200 {"data":{},"catalog_version":1}).
type cliFake struct {
	URL   string
	mu    sync.Mutex
	reqs  []cliRequest
	reply func(r *http.Request) (int, string)
}

func newCLIFake(t *testing.T, reply func(r *http.Request) (int, string)) *cliFake {
	t.Helper()
	f := &cliFake{reply: reply}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, cliRequest{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"), Body: body})
		f.mu.Unlock()
		status, out := 200, `{"data":{},"catalog_version":1}`
		if f.reply != nil {
			status, out = f.reply(r)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, out)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *cliFake) requests() []cliRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]cliRequest(nil), f.reqs...)
}

// cliEnv is a lookupEnv over a map, so that the test process's own
// environment never leaks in.
func cliEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// cliRun runs `clickedge admin ARGS` with env as the environment.
func cliRun(env map[string]string, args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	err = runAdmin(context.Background(), args, cliEnv(env), &out, &errb)
	return out.String(), errb.String(), err
}

// cliFakeEnv points the client at f with the test token.
func cliFakeEnv(f *cliFake) map[string]string {
	return map[string]string{"CLICKEDGE_ADMIN_URL": f.URL, "CLICKEDGE_ADMIN_TOKEN": cliTestToken}
}

// jsonEq reports whether two JSON texts hold the same value.
func jsonEq(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("body %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %q is not JSON: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

func TestAdminCLIRequests(t *testing.T) {
	dir := t.TempDir()
	catJSON := filepath.Join(dir, "catalog.json")
	os.WriteFile(catJSON, []byte(`{"merchants":[]}`), 0o600)
	partnerFile := filepath.Join(dir, "partner.yaml")
	os.WriteFile(partnerFile, []byte("email: old@example.com\ncoupon_codes: [OLD]\nkey: FROMFILE\n"), 0o600)

	tests := []struct {
		name                string
		args                []string
		method, path, query string
		body                string // JSON; "" means no body
	}{
		{"merchants list", []string{"merchants", "list"}, "GET", "/admin/v1/merchants", "", ""},
		{"merchants get", []string{"merchants", "get", "acme"}, "GET", "/admin/v1/merchants/acme", "", ""},
		{"merchants get escapes", []string{"merchants", "get", "a/b c?"}, "GET", "/admin/v1/merchants/a%2Fb%20c%3F", "", ""},
		{"merchants create", []string{"merchants", "create", "--id", "acme", "--name", "Acme", "--cookie-domain", "acme.example",
			"--allowed-domain", "acme.example", "--allowed-domain", "shop.example", "--fallback-url", "https://acme.example/"},
			"POST", "/admin/v1/merchants", "",
			`{"id":"acme","name":"Acme","cookie_domain":"acme.example","allowed_domains":["acme.example","shop.example"],"fallback_url":"https://acme.example/"}`},
		{"merchants update sends only given fields", []string{"merchants", "update", "acme", "--name", "Acme Inc"},
			"PATCH", "/admin/v1/merchants/acme", "", `{"name":"Acme Inc"}`},
		{"merchants update clears with --json null", []string{"merchants", "update", "acme", "--json", `{"fallback_url":null}`, "--name", "N"},
			"PATCH", "/admin/v1/merchants/acme", "", `{"fallback_url":null,"name":"N"}`},
		{"merchants create: flags win over --json", []string{"merchants", "create", "--json", `{"id":"acme","name":"Old","fallback_url":"https://a.example/"}`, "--name", "New"},
			"POST", "/admin/v1/merchants", "", `{"id":"acme","name":"New","fallback_url":"https://a.example/"}`},

		{"keys list", []string{"keys", "list", "acme"}, "GET", "/admin/v1/merchants/acme/keys", "", ""},
		{"keys create named", []string{"keys", "create", "acme", "--name", "prod"}, "POST", "/admin/v1/merchants/acme/keys", "", `{"name":"prod"}`},
		{"keys create", []string{"keys", "create", "acme"}, "POST", "/admin/v1/merchants/acme/keys", "", `{}`},
		{"keys revoke", []string{"keys", "revoke", "acme", "key_123"}, "DELETE", "/admin/v1/merchants/acme/keys/key_123", "", ""},

		{"campaigns list", []string{"campaigns", "list"}, "GET", "/admin/v1/campaigns", "", ""},
		{"campaigns list by merchant", []string{"campaigns", "list", "--merchant", "acme"}, "GET", "/admin/v1/campaigns", "merchant_id=acme", ""},
		{"campaigns get", []string{"campaigns", "get", "spring"}, "GET", "/admin/v1/campaigns/spring", "", ""},
		{"campaigns create", []string{"campaigns", "create", "--id", "spring", "--merchant", "acme", "--destination", "https://acme.example/shop",
			"--name", "Spring", "--window", "24h", "--hold", "0s", "--currency", "EUR", "--attribution", "first_click",
			"--click-param", "cid", "--cookie-name", "ce_s", "--cookie-holds", "partner_key", "--pass-partner-key", "--partner-key-param", "ref", "--pixel-id", "px_1",
			"--allowed-domain", "shop.example", "--commission", "type=sale,percent=10", "--commission", "type=lead,flat=5.00",
			"--commission", "product_id=p1,percent=12.5", "--recurring-months", "12", "--recurring-lifetime", "--min-click-to-conversion", "1m30s"},
			"POST", "/admin/v1/campaigns", "", `{"id":"spring","merchant_id":"acme","default_destination":"https://acme.example/shop",
			"name":"Spring","window_seconds":86400,"hold_seconds":0,"currency":"EUR","attribution":"first_click","click_param":"cid",
			"cookie_name":"ce_s","cookie_holds":"partner_key","pass_partner_key":true,"partner_key_param":"ref","pixel_id":"px_1","allowed_domains":["shop.example"],
			"commissions":[{"type":"sale","percent_bps":1000},{"type":"lead","flat_minor":500},{"product_id":"p1","percent_bps":1250}],
			"recurring_months":12,"recurring_lifetime":true,"min_click_to_conversion_seconds":90}`},
		{"campaigns create in JPY", []string{"campaigns", "create", "--id", "c", "--merchant", "m", "--destination", "https://x.example/",
			"--currency", "JPY", "--commission", "type=lead,flat=500"},
			"POST", "/admin/v1/campaigns", "", `{"id":"c","merchant_id":"m","default_destination":"https://x.example/","currency":"JPY",
			"commissions":[{"type":"lead","flat_minor":500}]}`},
		{"campaigns create takes the currency of --json", []string{"campaigns", "create", "--json", `{"id":"c","merchant_id":"m","default_destination":"https://x.example/","currency":"KWD"}`,
			"--commission", "flat=1.5"},
			"POST", "/admin/v1/campaigns", "", `{"id":"c","merchant_id":"m","default_destination":"https://x.example/","currency":"KWD","commissions":[{"flat_minor":1500}]}`},
		{"campaigns update", []string{"campaigns", "update", "spring", "--window", "48h", "--pass-partner-key=false", "--commission", "type=sale,percent=7.5"},
			"PATCH", "/admin/v1/campaigns/spring", "", `{"window_seconds":172800,"pass_partner_key":false,"commissions":[{"type":"sale","percent_bps":750}]}`},

		{"partners list", []string{"partners", "list", "--merchant", "acme"}, "GET", "/admin/v1/partners", "merchant_id=acme", ""},
		{"partners get", []string{"partners", "get", "dave"}, "GET", "/admin/v1/partners/dave", "", ""},
		{"partners create", []string{"partners", "create", "--id", "dave", "--merchant", "acme", "--key", "DAVE1", "--email", "d@example.com",
			"--coupon", "DAVE", "--coupon", "DAVE10"}, "POST", "/admin/v1/partners", "",
			`{"id":"dave","merchant_id":"acme","key":"DAVE1","email":"d@example.com","coupon_codes":["DAVE","DAVE10"]}`},
		{"partners create from a YAML file", []string{"partners", "create", "--file", partnerFile, "--id", "dave", "--merchant", "acme", "--coupon", "NEW"},
			"POST", "/admin/v1/partners", "", `{"id":"dave","merchant_id":"acme","key":"FROMFILE","email":"old@example.com","coupon_codes":["NEW"]}`},
		{"partners update", []string{"partners", "update", "dave", "--email", "new@example.com"}, "PATCH", "/admin/v1/partners/dave", "", `{"email":"new@example.com"}`},
		{"partners balance", []string{"partners", "balance", "dave"}, "GET", "/admin/v1/partners/dave/balance", "", ""},

		{"links list", []string{"links", "list", "--merchant", "acme", "--campaign", "spring", "--partner", "dave"}, "GET", "/admin/v1/links",
			"campaign_id=spring&merchant_id=acme&partner_id=dave", ""},
		{"links get", []string{"links", "get", "dave-spring"}, "GET", "/admin/v1/links/dave-spring", "", ""},
		{"links create", []string{"links", "create", "--campaign", "spring", "--partner", "dave", "--code", "ds", "--destination", "https://acme.example/p/{sub1}",
			"--no-passthrough", "--fallback-url", "https://acme.example/paused"}, "POST", "/admin/v1/links", "",
			`{"campaign_id":"spring","partner_id":"dave","code":"ds","destination":"https://acme.example/p/{sub1}","no_passthrough":true,"fallback_url":"https://acme.example/paused"}`},
		{"links create without code", []string{"links", "create", "--campaign", "spring", "--partner", "dave"}, "POST", "/admin/v1/links", "",
			`{"campaign_id":"spring","partner_id":"dave"}`},
		{"links update", []string{"links", "update", "ds", "--destination", "https://acme.example/new", "--paused"}, "PATCH", "/admin/v1/links/ds", "",
			`{"destination":"https://acme.example/new","paused":true}`},
		{"links pause", []string{"links", "pause", "ds"}, "POST", "/admin/v1/links/ds/pause", "", ""},
		{"links resume", []string{"links", "resume", "ds"}, "POST", "/admin/v1/links/ds/resume", "", ""},
		{"links get after --", []string{"links", "get", "--", "-odd"}, "GET", "/admin/v1/links/-odd", "", ""},
		{"every word after -- is an argument", []string{"conversions", "get", "--", "acme", "-odd"}, "GET", "/admin/v1/merchants/acme/conversions/-odd", "", ""},

		{"conversions list", []string{"conversions", "list", "acme", "--partner", "dave", "--campaign", "spring", "--status", "approved",
			"--limit", "10", "--offset", "20"}, "GET", "/admin/v1/merchants/acme/conversions",
			"campaign_id=spring&limit=10&offset=20&partner_id=dave&status=approved", ""},
		{"conversions get by order id", []string{"conversions", "get", "acme", "order/42"}, "GET", "/admin/v1/merchants/acme/conversions/order%2F42", "", ""},
		{"conversions approve", []string{"conversions", "approve", "acme", "conv_1", "--note", "checked"}, "POST",
			"/admin/v1/merchants/acme/conversions/conv_1/status", "", `{"status":"approved","note":"checked"}`},
		{"conversions reject", []string{"conversions", "reject", "acme", "conv_1"}, "POST",
			"/admin/v1/merchants/acme/conversions/conv_1/status", "", `{"status":"rejected"}`},
		{"conversions paid", []string{"conversions", "paid", "acme", "conv_1"}, "POST",
			"/admin/v1/merchants/acme/conversions/conv_1/status", "", `{"status":"paid"}`},

		{"payouts create", []string{"payouts", "create", "acme", "--partner", "dave", "--reference", "2026-05"}, "POST",
			"/admin/v1/merchants/acme/payouts", "", `{"partner_id":"dave","reference":"2026-05"}`},
		{"payouts create without reference", []string{"payouts", "create", "acme", "--partner", "dave"}, "POST",
			"/admin/v1/merchants/acme/payouts", "", `{"partner_id":"dave"}`},

		{"catalog export", []string{"catalog", "export"}, "GET", "/admin/v1/catalog", "", ""},
		{"catalog import", []string{"catalog", "import", catJSON}, "PUT", "/admin/v1/catalog", "", `{"merchants":[]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newCLIFake(t, nil)
			// JSON output, so that no answer shape matters; after "--" every
			// word is an argument, so the flag goes first.
			_, stderr, err := cliRun(cliFakeEnv(f), append([]string{"--output", "json"}, tc.args...)...)
			if err != nil {
				t.Fatalf("admin %v: %v (stderr %q)", tc.args, err, stderr)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("got %d requests, want 1: %+v", len(reqs), reqs)
			}
			got := reqs[0]
			if got.Method != tc.method || got.Path != tc.path || got.Query != tc.query {
				t.Errorf("got %s %s?%s, want %s %s?%s", got.Method, got.Path, got.Query, tc.method, tc.path, tc.query)
			}
			if got.Auth != "Bearer "+cliTestToken {
				t.Errorf("Authorization %q", got.Auth)
			}
			if tc.body == "" {
				if len(got.Body) != 0 {
					t.Errorf("got body %s, want none", got.Body)
				}
				return
			}
			if !jsonEq(t, got.Body, tc.body) {
				t.Errorf("got body %s\nwant %s", got.Body, tc.body)
			}
			if got.ContentType == "" {
				t.Errorf("no Content-Type with body %s", got.Body)
			}
		})
	}
}

func TestAdminCLIGlobalFlagsAnywhere(t *testing.T) {
	f := newCLIFake(t, func(*http.Request) (int, string) {
		return 200, `{"data":{"id":"acme","name":"Acme"},"catalog_version":3}`
	})
	env := map[string]string{"CLICKEDGE_ADMIN_TOKEN": "env-token-0123456789abcdefgh"} // no URL: --url must be used
	for _, args := range [][]string{
		{"--url", f.URL, "--output", "json", "merchants", "get", "acme"},
		{"--url=" + f.URL, "merchants", "--output", "json", "get", "acme"},
		{"merchants", "get", "acme", "--url", f.URL, "--output", "json"},
		{"merchants", "get", "-o", "json", "--url", f.URL, "acme"},
		{"merchants", "get", "acme", "-o=json", "--timeout", "5s", "--url", strings.TrimPrefix(f.URL, "http://")},
	} {
		stdout, _, err := cliRun(env, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if want := "{\n  \"id\": \"acme\",\n  \"name\": \"Acme\"\n}\n"; stdout != want {
			t.Errorf("%v: got %q, want %q", args, stdout, want)
		}
	}
	reqs := f.requests()
	if len(reqs) != 5 {
		t.Fatalf("got %d requests, want 5", len(reqs))
	}
	for _, r := range reqs {
		if r.Path != "/admin/v1/merchants/acme" || r.Auth != "Bearer env-token-0123456789abcdefgh" {
			t.Errorf("got %s with %q", r.Path, r.Auth)
		}
	}
	// --token wins over the environment.
	if _, _, err := cliRun(env, "merchants", "list", "--url", f.URL, "--token", "flag-token-0123456789abcdefgh"); err != nil {
		t.Fatal(err)
	}
	if got := f.requests()[5].Auth; got != "Bearer flag-token-0123456789abcdefgh" {
		t.Errorf("--token: Authorization %q", got)
	}
}

func TestAdminCLIURLPrefix(t *testing.T) {
	f := newCLIFake(t, nil)
	env := map[string]string{"CLICKEDGE_ADMIN_URL": f.URL + "/ce/", "CLICKEDGE_ADMIN_TOKEN": cliTestToken}
	if _, _, err := cliRun(env, "merchants", "get", "acme"); err != nil {
		t.Fatal(err)
	}
	if got := f.requests()[0].Path; got != "/ce/admin/v1/merchants/acme" {
		t.Errorf("got path %q, want /ce/admin/v1/merchants/acme", got)
	}
}

func TestAdminCLIParseCommission(t *testing.T) {
	usd, _ := money.LookupCurrency("USD")
	jpy, _ := money.LookupCurrency("JPY")
	kwd, _ := money.LookupCurrency("KWD")
	good := []struct {
		spec string
		cur  money.Currency
		want commissionRule
	}{
		{"type=sale,percent=10", usd, commissionRule{Type: "sale", PercentBPS: 1000}},
		{"type=lead,flat=5.00", usd, commissionRule{Type: "lead", FlatMinor: 500}},
		{"product_id=p1,percent=12.5", usd, commissionRule{ProductID: "p1", PercentBPS: 1250}},
		{" type = sale , percent = 0.25 , flat = 1 ", usd, commissionRule{Type: "sale", PercentBPS: 25, FlatMinor: 100}},
		{"product_type=premium,percent=15%", usd, commissionRule{ProductType: "premium", PercentBPS: 1500}},
		{"percent=33.33", usd, commissionRule{PercentBPS: 3333}},
		{"percent=12.50", usd, commissionRule{PercentBPS: 1250}},
		{"flat=99.99", usd, commissionRule{FlatMinor: 9999}},
		{"flat=0.10", usd, commissionRule{FlatMinor: 10}},
		{"type=lead,flat=500", jpy, commissionRule{Type: "lead", FlatMinor: 500}},
		{"flat=1.5", kwd, commissionRule{FlatMinor: 1500}},
		{"percent_bps=1250,flat_minor=99", usd, commissionRule{PercentBPS: 1250, FlatMinor: 99}},
		{"type=sale,percent=0", usd, commissionRule{Type: "sale"}},
	}
	for _, tc := range good {
		got, err := parseCommission(tc.spec, tc.cur)
		if err != nil || got != tc.want {
			t.Errorf("parseCommission(%q, %s) = %+v, %v; want %+v", tc.spec, tc.cur.Code, got, err, tc.want)
		}
	}
	bad := []struct {
		spec string
		cur  money.Currency
		want string // part of the error
	}{
		{"", usd, "empty spec"},
		{"type=sale", usd, "percent= and/or flat="},
		{"percent=abc", usd, "invalid amount"},
		{"percent=12.345", usd, "too many decimals"},
		{"percent=-1", usd, "negative"},
		{"percent=1e3", usd, "invalid amount"},
		{"percent=100001", usd, "too large"},
		{"flat=5.001", usd, "too many decimals"},
		{"flat=5.5", jpy, "too many decimals"},
		{"flat=-1", usd, "negative"},
		{"flat=1,000", usd, "not key=value"},
		{"type=sale,percent=10,percent=5", usd, "percent given twice"},
		{"percent=10,percent_bps=5", usd, "percent given twice"},
		{"flat=1,flat_minor=5", usd, "flat given twice"},
		{"colour=red,percent=1", usd, `unknown key "colour"`},
		{"percent", usd, "not key=value"},
		{"=5,percent=1", usd, "not key=value"},
		{"type=,percent=1", usd, "type has no value"},
		{"percent_bps=12.5", usd, "want an integer"},
		{"flat_minor=-3", usd, "want an integer"},
	}
	for _, tc := range bad {
		got, err := parseCommission(tc.spec, tc.cur)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseCommission(%q, %s) = %+v, %v; want an error with %q", tc.spec, tc.cur.Code, got, err, tc.want)
		}
	}
}

func TestAdminCLICommissionRoundTrip(t *testing.T) {
	usd, _ := money.LookupCurrency("USD")
	for _, spec := range []string{"type=sale,percent=10", "type=lead,flat=5.00", "product_id=p1,percent=12.5",
		"type=sale,product_type=premium,percent=0.25,flat=1.00"} {
		rule, err := parseCommission(spec, usd)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(rule)
		v, _ := decodeAny(raw)
		got := formatCommission(v.(map[string]any), usd)
		back, err := parseCommission(got, usd)
		if err != nil || back != rule {
			t.Errorf("%q: formatted as %q, which parses to %+v, %v", spec, got, back, err)
		}
	}
}

func TestAdminCLIBadFlagsAreUsageErrors(t *testing.T) {
	f := newCLIFake(t, nil)
	env := cliFakeEnv(f)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"campaigns", "create", "--id", "c", "--merchant", "m", "--destination", "https://x/", "--commission", "type=sale"}, "percent= and/or flat="},
		{[]string{"campaigns", "create", "--id", "c", "--merchant", "m", "--destination", "https://x/", "--commission", "flat=1.5", "--currency", "JPY"}, "too many decimals"},
		{[]string{"campaigns", "create", "--id", "c", "--merchant", "m", "--destination", "https://x/", "--commission", "flat=1", "--currency", "XXX"}, "unknown currency"},
		{[]string{"campaigns", "create", "--id", "c", "--merchant", "m"}, "--destination is required"},
		{[]string{"campaigns", "create", "--id", "c", "--merchant", "m", "--destination", "https://x/", "--window", "30d"}, "--window"},
		{[]string{"campaigns", "create", "--id", "c", "--merchant", "m", "--destination", "https://x/", "--hold", "1.5s"}, "whole seconds"},
		{[]string{"campaigns", "create", "--id", "c", "--merchant", "m", "--destination", "https://x/", "--hold", "-1h"}, "negative"},
		{[]string{"campaigns", "create", "--id", "c", "--merchant", "m", "--destination", "https://x/", "--attribution", "linear"}, "last_click or first_click"},
		{[]string{"campaigns", "update", "c", "--cookie-holds", "email"}, "click_id or partner_key"},
		{[]string{"campaigns", "update", "c", "--recurring-months", "x"}, "non-negative integer"},
		{[]string{"campaigns", "update", "c", "--id", "d"}, "flag provided but not defined: -id"},
		{[]string{"merchants", "update", "acme"}, "nothing to change"},
		{[]string{"merchants", "create", "--name", "x"}, "--id is required"},
		{[]string{"merchants", "create", "--json", "[1]"}, "want a JSON object"},
		{[]string{"merchants", "create", "--json", "{", "--id", "x"}, "not JSON"},
		{[]string{"merchants", "create", "--json", "{}", "--file", "x.json"}, "not both"},
		{[]string{"merchants", "get"}, "want ID, got 0"},
		{[]string{"merchants", "get", "a", "b"}, "want ID, got 2"},
		{[]string{"merchants", "list", "extra"}, "want no arguments"},
		{[]string{"keys", "revoke", "acme"}, "want MERCHANT KEY_ID"},
		{[]string{"merchants", "list", "--output", "yaml"}, `--output "yaml": want table or json`},
		{[]string{"merchants", "list", "--url", "ftp://x"}, "--url"},
		{[]string{"merchants", "list", "--timeout", "0s"}, "--timeout"},
		{[]string{"merchants", "list", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"conversions", "list", "acme", "--status", "done"}, "pending, approved, rejected or paid"},
		{[]string{"conversions", "list", "acme", "--limit", "ten"}, "--limit"},
		{[]string{"payouts", "create", "acme"}, "--partner is required"},
		{[]string{"frob"}, "unknown admin command \"frob\": want merchants, keys, campaigns, partners, links, conversions, payouts, catalog or backup"},
		{[]string{"merchants", "frob"}, "unknown admin merchants command \"frob\": want list, get, create or update"},
		{[]string{"links"}, "want list, get, create, update, pause or resume"},
		{[]string{}, "no command given"},
	}
	for _, tc := range tests {
		_, _, err := cliRun(env, tc.args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("admin %q: got %v, want a usage error with %q", tc.args, err, tc.want)
		}
		if err != nil && exitCode(err) != 2 {
			t.Errorf("admin %q: exit code %d, want 2", tc.args, exitCode(err))
		}
	}
	if reqs := f.requests(); len(reqs) != 0 {
		t.Errorf("usage errors sent %d requests: %+v", len(reqs), reqs)
	}
}

func TestAdminCLIMissingToken(t *testing.T) {
	f := newCLIFake(t, nil)
	for _, env := range []map[string]string{
		{"CLICKEDGE_ADMIN_URL": f.URL},
		{"CLICKEDGE_ADMIN_URL": f.URL, "CLICKEDGE_ADMIN_TOKEN": ""},
	} {
		_, _, err := cliRun(env, "merchants", "list")
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "no admin token: set --token or CLICKEDGE_ADMIN_TOKEN") {
			t.Errorf("env %v: got %v, want the missing token usage error", env, err)
		}
	}
	if reqs := f.requests(); len(reqs) != 0 {
		t.Errorf("a request was sent without a token: %+v", reqs)
	}
}

func TestAdminCLIErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"401", 401, `{"error":{"code":"unauthorized","message":"missing or wrong admin token"}}`,
			"the admin token was refused: set --token or CLICKEDGE_ADMIN_TOKEN"},
		{"404", 404, `{"error":{"code":"not_found","message":"no merchant \"nope\""}}`, `error: not_found: no merchant "nope"`},
		{"422", 422, `{"error":{"code":"invalid_catalog","message":"link x: partner of another merchant"}}`,
			"error: invalid_catalog: link x: partner of another merchant"},
		{"not the admin API", 502, "<html>Bad Gateway</html>", "answered 502 Bad Gateway: <html>Bad Gateway</html> (is --url the admin API?)"},
		{"200 without data", 200, `{"ok":true}`, "without a JSON data field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newCLIFake(t, func(*http.Request) (int, string) { return tc.status, tc.body })
			_, _, err := cliRun(cliFakeEnv(f), "merchants", "get", "nope")
			if err == nil || err.Error() != tc.want && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if exitCode(err) != 1 {
				t.Errorf("exit code %d, want 1", exitCode(err))
			}
		})
	}
	// The API error is exactly "error: <code>: <message>".
	f := newCLIFake(t, func(*http.Request) (int, string) {
		return 409, `{"error":{"code":"already_exists","message":"merchant \"acme\" exists"}}`
	})
	_, _, err := cliRun(cliFakeEnv(f), "merchants", "create", "--id", "acme")
	if err == nil || err.Error() != `error: already_exists: merchant "acme" exists` {
		t.Errorf("got %v", err)
	}
}

func TestAdminCLIConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, _, err = cliRun(map[string]string{"CLICKEDGE_ADMIN_TOKEN": cliTestToken}, "--url", "http://"+addr, "merchants", "list")
	want := "cannot reach the admin API at http://" + addr + ": is clickedge running with --admin-listen and --admin-token?"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
	if exitCode(err) != 1 {
		t.Errorf("exit code %d, want 1", exitCode(err))
	}
}

func TestAdminCLITimeout(t *testing.T) {
	release := make(chan struct{})
	f := newCLIFake(t, func(r *http.Request) (int, string) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return 200, `{"data":[]}`
	})
	defer close(release)
	start := time.Now()
	_, _, err := cliRun(cliFakeEnv(f), "merchants", "list", "--timeout", "100ms")
	if err == nil || !strings.Contains(err.Error(), "did not answer within 100ms") {
		t.Fatalf("got %v, want a timeout error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the timeout took %s", d)
	}
}

// cliLines splits a table into the fields of each line.
func cliLines(s string) [][]string {
	var out [][]string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		out = append(out, strings.Fields(l))
	}
	return out
}

func TestAdminCLITableOutput(t *testing.T) {
	answers := map[string]string{
		"/admin/v1/merchants": `{"data":[{"id":"acme","name":"Acme","allowed_domains":["a.example","b.example"],
			"api_key_hashes":["abc"],"api_keys":[{"id":"key_1","prefix":"ce_live_AbCd","hash":"x","created_at":"2026-01-02T03:04:05.123Z"},
			{"id":"key_2","prefix":"ce_live_EfGh","hash":"y","created_at":"2026-01-02T03:04:05Z","revoked_at":"2026-01-03T00:00:00Z"}],
			"fallback_url":"https://acme.example/"},{"id":"zed","name":"Zed"}],"catalog_version":4}`,
		"/admin/v1/campaigns/spring": `{"data":{"id":"spring","merchant_id":"acme","default_destination":"https://acme.example/",
			"window_seconds":2592000,"currency":"EUR","commissions":[{"type":"sale","percent_bps":1250},{"type":"lead","flat_minor":500}]},"catalog_version":4}`,
		"/admin/v1/links": `{"data":[{"code":"a1","campaign_id":"spring","partner_id":"dave"},{"code":"a2","campaign_id":"spring","partner_id":"eve","paused":true,
			"destination":"https://acme.example/x"}],"catalog_version":4}`,
		"/admin/v1/partners": `{"data":[],"catalog_version":4}`,
		"/admin/v1/merchants/acme/conversions": `{"data":[{"id":"conv_1","unique_id":"o1","type":"sale","amount_minor":9990,"currency":"USD",
			"status":"approved","commission_minor":999,"partner_id":"dave","campaign_id":"spring","created_at":1767225600000}],"total":120,"catalog_version":4}`,
		"/admin/v1/merchants/acme/conversions/o%2F1": `{"data":{"id":"conv_1","unique_id":"o/1","amount_minor":1000,"currency":"JPY","note":"two\nlines","created_at":1767225600000},"catalog_version":4}`,
		"/admin/v1/partners/dave/balance": `{"data":{"partner_id":"dave","merchant_id":"acme","currency":"USD","balance_minor":250,"paid_minor":1000,
			"ledger":[{"seq":1,"kind":"commission","amount_minor":1250,"currency":"USD","conversion_id":"conv_1","ts":1767225600000},
			{"seq":2,"kind":"payout","amount_minor":-1000,"currency":"USD","conversion_id":"conv_1","ts":1767229200000,"note":"payout p1"}]},"catalog_version":4}`,
		"/admin/v1/merchants/acme/keys": `{"data":{"id":"key_9","name":"prod","prefix":"ce_live_Zz12","created_at":"2026-01-02T03:04:05.999Z",
			"key":"ce_live_Zz12SECRETSECRETSECRETSECRETSECR"},"catalog_version":5}`,
		"/admin/v1/merchants/acme/payouts": `{"data":{"partner_id":"dave","reference":"p1","totals":[{"currency":"USD","amount_minor":1250}],
			"conversions":["conv_1","conv_2"],"queued":[],"rejected":[{"conversion_id":"conv_3","code":"invalid_status","message":"not approved"}]},"catalog_version":5}`,
	}
	f := newCLIFake(t, func(r *http.Request) (int, string) {
		if a, ok := answers[r.URL.EscapedPath()]; ok {
			return 200, a
		}
		return 404, `{"error":{"code":"not_found","message":"no such path"}}`
	})
	env := cliFakeEnv(f)
	run := func(args ...string) (string, string) {
		t.Helper()
		out, errOut, err := cliRun(env, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out, errOut
	}

	out, _ := run("merchants", "list")
	want := [][]string{
		{"ID", "NAME", "COOKIE_DOMAIN", "ALLOWED_DOMAINS", "KEYS", "FALLBACK_URL"},
		{"acme", "Acme", "-", "a.example,b.example", "2", "https://acme.example/"},
		{"zed", "Zed", "-", "-", "0", "-"},
	}
	if got := cliLines(out); !reflect.DeepEqual(got, want) {
		t.Errorf("merchants list:\n%s\ngot %q\nwant %q", out, got, want)
	}

	out, _ = run("campaigns", "get", "spring")
	want = [][]string{
		{"id", "spring"}, {"merchant_id", "acme"}, {"default_destination", "https://acme.example/"},
		{"window_seconds", "720h0m0s"}, {"currency", "EUR"},
		{"commissions", "type=sale,percent=12.5"}, {"type=lead,flat=5.00"},
	}
	if got := cliLines(out); !reflect.DeepEqual(got, want) {
		t.Errorf("campaigns get:\n%s\ngot %q\nwant %q", out, got, want)
	}

	out, _ = run("links", "list")
	want = [][]string{
		{"CODE", "CAMPAIGN", "PARTNER", "STATUS", "DESTINATION"},
		{"a1", "spring", "dave", "active", "-"},
		{"a2", "spring", "eve", "paused", "https://acme.example/x"},
	}
	if got := cliLines(out); !reflect.DeepEqual(got, want) {
		t.Errorf("links list:\n%s\ngot %q\nwant %q", out, got, want)
	}

	out, errOut := run("partners", "list")
	if out != "" || errOut != "no partners\n" {
		t.Errorf("empty list: stdout %q stderr %q", out, errOut)
	}

	out, errOut = run("conversions", "list", "acme")
	want = [][]string{
		{"ID", "UNIQUE_ID", "TYPE", "STATUS", "AMOUNT", "COMMISSION", "PARTNER", "CAMPAIGN", "CREATED"},
		{"conv_1", "o1", "sale", "approved", "99.90", "USD", "9.99", "USD", "dave", "spring", "2026-01-01T00:00:00Z"},
	}
	if got := cliLines(out); !reflect.DeepEqual(got, want) {
		t.Errorf("conversions list:\n%s\ngot %q\nwant %q", out, got, want)
	}
	if errOut != "1 of 120 conversions shown; --offset 1 for more\n" {
		t.Errorf("conversions list footer %q", errOut)
	}

	out, _ = run("conversions", "get", "acme", "o/1")
	want = [][]string{{"id", "conv_1"}, {"unique_id", "o/1"}, {"amount_minor", "1000", "JPY"}, {"currency", "JPY"},
		{"note", "two", "lines"}, {"created_at", "2026-01-01T00:00:00Z"}}
	if got := cliLines(out); !reflect.DeepEqual(got, want) {
		t.Errorf("conversions get:\n%s\ngot %q\nwant %q", out, got, want)
	}

	out, _ = run("partners", "balance", "dave")
	want = [][]string{{"partner_id", "dave"}, {"merchant_id", "acme"}, {"currency", "USD"}, {"balance_minor", "2.50", "USD"},
		{"paid_minor", "10.00", "USD"}, {},
		{"SEQ", "TIME", "KIND", "AMOUNT", "CONVERSION", "NOTE"},
		{"1", "2026-01-01T00:00:00Z", "commission", "12.50", "USD", "conv_1", "-"},
		{"2", "2026-01-01T01:00:00Z", "payout", "-10.00", "USD", "conv_1", "payout", "p1"}}
	if got := cliLines(out); !reflect.DeepEqual(got, want) {
		t.Errorf("partners balance:\n%s\ngot %q\nwant %q", out, got, want)
	}

	out, _ = run("keys", "create", "acme", "--name", "prod")
	if !strings.Contains(out, "(shown once, store it now") || !strings.Contains(out, "\n    ce_live_Zz12SECRETSECRETSECRETSECRETSECR\n") {
		t.Errorf("keys create does not show the key prominently:\n%s", out)
	}
	if !strings.Contains(out, "created_at   2026-01-02T03:04:05Z") || strings.Count(out, "ce_live_Zz12SECRET") != 1 {
		t.Errorf("keys create:\n%s", out)
	}
	out, errOut = run("keys", "create", "acme", "-o", "json")
	if !strings.Contains(errOut, "shown once, store it now") || !strings.Contains(out, `"key": "ce_live_Zz12SECRETSECRETSECRETSECRETSECR"`) {
		t.Errorf("keys create -o json: stdout %q stderr %q", out, errOut)
	}

	out, _ = run("payouts", "create", "acme", "--partner", "dave")
	want = [][]string{{"partner_id", "dave"}, {"reference", "p1"}, {"totals", "12.50", "USD"}, {"conversions", "conv_1,conv_2"},
		{"queued", "-"}, {"rejected", "conv_3:", "invalid_status:", "not", "approved"}}
	if got := cliLines(out); !reflect.DeepEqual(got, want) {
		t.Errorf("payouts create:\n%s\ngot %q\nwant %q", out, got, want)
	}
}

func TestAdminCLIJSONOutputIsData(t *testing.T) {
	data := `[{"id":"acme","name":"Acme","n":12345678901234567890,"amount":1.10}]`
	f := newCLIFake(t, func(*http.Request) (int, string) {
		return 200, `{"data":` + data + `,"catalog_version":9}`
	})
	out, _, err := cliRun(cliFakeEnv(f), "merchants", "list", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	json.Indent(&want, []byte(data), "", "  ")
	want.WriteByte('\n')
	if out != want.String() {
		t.Errorf("got %q, want %q", out, want.String())
	}
	// CLICKEDGE_ADMIN_OUTPUT sets the default.
	env := cliFakeEnv(f)
	env["CLICKEDGE_ADMIN_OUTPUT"] = "json"
	if out, _, err = cliRun(env, "merchants", "list"); err != nil || out != want.String() {
		t.Errorf("CLICKEDGE_ADMIN_OUTPUT=json: got %q, %v", out, err)
	}
}

func TestAdminCLIUpdateLooksUpCurrency(t *testing.T) {
	f := newCLIFake(t, func(r *http.Request) (int, string) {
		return 200, `{"data":{"id":"c","currency":"KWD"},"catalog_version":2}`
	})
	if _, _, err := cliRun(cliFakeEnv(f), "campaigns", "update", "c", "--commission", "type=lead,flat=1.5", "--commission", "type=sale,percent=5"); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if len(reqs) != 2 || reqs[0].Method != "GET" || reqs[0].Path != "/admin/v1/campaigns/c" || reqs[1].Method != "PATCH" {
		t.Fatalf("got %+v, want GET then PATCH of the campaign", reqs)
	}
	if !jsonEq(t, reqs[1].Body, `{"commissions":[{"type":"lead","flat_minor":1500},{"type":"sale","percent_bps":500}]}`) {
		t.Errorf("got body %s", reqs[1].Body)
	}
	// With --currency, or without a flat amount, there is nothing to look up.
	for _, args := range [][]string{
		{"campaigns", "update", "c", "--currency", "JPY", "--commission", "flat=7"},
		{"campaigns", "update", "c", "--commission", "percent=7"},
	} {
		f := newCLIFake(t, nil)
		if _, _, err := cliRun(cliFakeEnv(f), args...); err != nil {
			t.Fatal(err)
		}
		if reqs := f.requests(); len(reqs) != 1 || reqs[0].Method != "PATCH" {
			t.Errorf("%v: got %+v, want one PATCH", args, reqs)
		}
	}
}

func TestAdminCLIStatusQueued(t *testing.T) {
	f := newCLIFake(t, func(*http.Request) (int, string) {
		return 202, `{"data":{"event_id":"e1","conversion_id":"conv_1"},"status":"queued","catalog_version":2}`
	})
	out, errOut, err := cliRun(cliFakeEnv(f), "conversions", "approve", "acme", "o1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "queued") || !strings.Contains(out, "conversion_id") {
		t.Errorf("stdout %q stderr %q", out, errOut)
	}
}

func TestAdminCLICatalogFiles(t *testing.T) {
	dir := t.TempDir()
	yml := "merchants:\n  - id: demo\n    name: Demo\n"
	in := filepath.Join(dir, "in.yaml")
	os.WriteFile(in, []byte(yml), 0o600)
	catalog := `{"version":7,"updated_at":"2026-01-01T00:00:00Z","merchants":[{"id":"demo","name":"Demo"}],"campaigns":[],"partners":[],"links":[]}`
	f := newCLIFake(t, func(*http.Request) (int, string) { return 200, `{"data":` + catalog + `,"catalog_version":7}` })
	env := cliFakeEnv(f)

	out, _, err := cliRun(env, "catalog", "import", in)
	if err != nil {
		t.Fatal(err)
	}
	if out != "catalog imported as version 7: 1 merchants, 0 campaigns, 0 partners, 0 links\n" {
		t.Errorf("import printed %q", out)
	}
	r := f.requests()[0]
	if r.ContentType != "application/yaml" || string(r.Body) != yml {
		t.Errorf("import sent %q %q, want the YAML as application/yaml", r.ContentType, r.Body)
	}
	if _, _, err := cliRun(env, "catalog", "import", filepath.Join(dir, "missing.json")); err == nil {
		t.Error("import of a missing file succeeded")
	}

	// Export: JSON on stdout whatever --output; YAML into a .yaml file.
	out, _, err = cliRun(env, "catalog", "export")
	if err != nil || !jsonEq(t, []byte(out), catalog) {
		t.Errorf("export: %q, %v", out, err)
	}
	outFile := filepath.Join(dir, "out.yml")
	if _, errOut, err := cliRun(env, "catalog", "export", "--file", outFile); err != nil || !strings.Contains(errOut, "version 7 written to "+outFile) {
		t.Fatalf("export --file: %v %q", err, errOut)
	}
	raw, _ := os.ReadFile(outFile)
	j, err := yaml.YAMLToJSON(raw)
	if err != nil || bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) || !jsonEq(t, j, catalog) {
		t.Errorf("export --file wrote %q (%v), want the catalog as YAML", raw, err)
	}
}

func TestAdminCLIHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "Resources and commands:"},
		{[]string{"-h"}, "Global flags (accepted anywhere on the line):"},
		{[]string{"help"}, "Resources and commands:"},
		{[]string{"links", "--help"}, "clickedge admin links pause CODE"},
		{[]string{"help", "links"}, "clickedge admin links resume CODE"},
		{[]string{"--output", "json", "keys", "-h"}, "clickedge admin keys revoke MERCHANT KEY_ID"},
		{[]string{"campaigns", "create", "--help"}, "--commission SPEC"},
		{[]string{"campaigns", "update", "c", "--help"}, "a JSON merge patch"},
		{[]string{"conversions", "list", "--help"}, "--status S"},
	}
	for _, tc := range tests {
		// No environment at all: help needs neither URL nor token.
		out, _, err := cliRun(nil, tc.args...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("admin %q: %v, output lacks %q:\n%s", tc.args, err, tc.want, out)
		}
	}
	if out, _, _ := cliRun(nil, "campaigns", "update", "--help"); strings.Contains(out, "--id ") || strings.Contains(out, "--merchant ") {
		t.Errorf("update help offers immutable fields:\n%s", out)
	}
}

func TestAdminCLIThroughRun(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"admin", "--help"}, &out, &errb, nil); err != nil || !strings.Contains(out.String(), "clickedge admin") {
		t.Errorf("run admin --help: %v %q", err, out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"--help"}, &out, &errb, nil); err != nil || !strings.Contains(out.String(), "clickedge admin") {
		t.Errorf("the top-level usage does not mention admin: %q", out.String())
	}
	err := run(context.Background(), []string{"admin", "frob"}, &out, &errb, nil)
	if exitCode(err) != 2 {
		t.Errorf("run admin frob: %v, exit code %d", err, exitCode(err))
	}
}

// ---- against a real server ----

// adminRunApp runs `clickedge admin ARGS` against the admin API of a.
func adminRunApp(t *testing.T, a *App, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	env := map[string]string{"CLICKEDGE_ADMIN_URL": "http://" + a.AdminAddr, "CLICKEDGE_ADMIN_TOKEN": a.AdminToken}
	return cliRun(env, args...)
}

// adminOut runs `clickedge admin ARGS` against a and returns its output,
// failing the test on an error.
func adminOut(t *testing.T, a *App, args ...string) string {
	t.Helper()
	out, errOut, err := adminRunApp(t, a, args...)
	if err != nil {
		t.Fatalf("clickedge admin %s: %v (stderr %q)", strings.Join(args, " "), err, errOut)
	}
	return out
}

// adminJSON runs `clickedge admin ARGS --output json` against a and decodes
// the output into v.
func adminJSON(t *testing.T, a *App, v any, args ...string) {
	t.Helper()
	out := adminOut(t, a, append(args, "--output", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("clickedge admin %s: output %q is not JSON: %v", strings.Join(args, " "), out, err)
	}
}

func TestAdminCLIAgainstServe(t *testing.T) {
	a := startServe(t, "--admin-token", cliTestToken)
	if a.AdminAddr == "" {
		t.Fatal("serve started no admin API")
	}

	var m map[string]any
	adminJSON(t, a, &m, "merchants", "create", "--id", "acme", "--name", "Acme", "--allowed-domain", "acme.example")
	if m["id"] != "acme" || m["name"] != "Acme" {
		t.Fatalf("merchants create: %v", m)
	}
	var c struct {
		ID            string
		WindowSeconds int64 `json:"window_seconds"`
		Currency      string
		Commissions   []commissionRule
	}
	adminJSON(t, a, &c, "campaigns", "create", "--id", "acme-spring", "--merchant", "acme", "--destination", "https://acme.example/shop",
		"--currency", "JPY", "--window", "24h", "--commission", "type=sale,percent=12.5", "--commission", "type=lead,flat=500")
	if c.ID != "acme-spring" || c.WindowSeconds != 86400 || c.Currency != "JPY" ||
		!reflect.DeepEqual(c.Commissions, []commissionRule{{Type: "sale", PercentBPS: 1250}, {Type: "lead", FlatMinor: 500}}) {
		t.Fatalf("campaigns create: %+v", c)
	}
	// The update learns the currency (JPY: no decimals) from the campaign.
	var u struct {
		WindowSeconds int64 `json:"window_seconds"`
		Commissions   []commissionRule
	}
	adminJSON(t, a, &u, "campaigns", "update", "acme-spring", "--commission", "type=lead,flat=700")
	if !reflect.DeepEqual(u.Commissions, []commissionRule{{Type: "lead", FlatMinor: 700}}) || u.WindowSeconds != 86400 {
		t.Fatalf("campaigns update: %+v", u)
	}
	adminOut(t, a, "partners", "create", "--id", "dave", "--merchant", "acme", "--key", "DAVE1", "--coupon", "DAVE")
	adminOut(t, a, "links", "create", "--campaign", "acme-spring", "--partner", "dave", "--code", "dave-spring")
	var l map[string]any
	adminJSON(t, a, &l, "links", "pause", "dave-spring")
	if l["paused"] != true {
		t.Fatalf("links pause: %v", l)
	}
	if out := adminOut(t, a, "links", "list", "--merchant", "acme"); !strings.Contains(out, "dave-spring") || !strings.Contains(out, "paused") {
		t.Errorf("links list:\n%s", out)
	}
	var resumed map[string]any // a fresh map: Unmarshal keeps the keys of an old one
	adminJSON(t, a, &resumed, "links", "resume", "dave-spring")
	if resumed["code"] != "dave-spring" || resumed["paused"] != nil && resumed["paused"] != false {
		t.Fatalf("links resume: %v", resumed)
	}

	out := adminOut(t, a, "keys", "create", "acme", "--name", "prod")
	if !strings.Contains(out, "shown once, store it now") || !strings.Contains(out, "ce_live_") {
		t.Fatalf("keys create:\n%s", out)
	}
	var keys []map[string]any
	adminJSON(t, a, &keys, "keys", "list", "acme")
	if len(keys) != 1 || keys[0]["key"] != nil {
		t.Fatalf("keys list: %v", keys)
	}
	var k map[string]any
	adminJSON(t, a, &k, "keys", "revoke", "acme", keys[0]["id"].(string))
	if k["revoked_at"] == nil {
		t.Fatalf("keys revoke: %v", k)
	}

	if _, _, err := adminRunApp(t, a, "merchants", "get", "nope"); err == nil || !strings.HasPrefix(err.Error(), "error: not_found: ") {
		t.Errorf("merchants get nope: %v", err)
	}
	if _, _, err := adminRunApp(t, a, "merchants", "list", "--token", "wrong-token-0123456789abcdef"); err == nil ||
		err.Error() != "the admin token was refused: set --token or CLICKEDGE_ADMIN_TOKEN" {
		t.Errorf("wrong token: %v", err)
	}
	if out := adminOut(t, a, "merchants", "list"); !strings.Contains(out, "acme") || !strings.Contains(out, "demo") {
		t.Errorf("merchants list:\n%s", out)
	}

	// A conversion of the demo catalog, approved and paid out.
	click, _ := clickID(t, a.EdgeAddr, "alice", "click_id")
	if code, resp := call(t, "POST", "http://"+a.EdgeAddr+"/v1/tracking/conversions", `{"partnership_code":"ALICE10","unique_id":"cli_1",
		"conversion_type":"sale","amount":"100.00","session_id":"`+click+`"}`); code != 201 {
		t.Fatalf("conversion: %d %v", code, resp)
	}
	var conv map[string]any
	adminJSON(t, a, &conv, "conversions", "approve", "demo", "cli_1", "--note", "checked")
	if conv["status"] != "approved" {
		t.Fatalf("conversions approve: %v", conv)
	}
	var p struct {
		Conversions []string
		Totals      []struct {
			Currency    string
			AmountMinor int64 `json:"amount_minor"`
		}
	}
	adminJSON(t, a, &p, "payouts", "create", "demo", "--partner", "alice", "--reference", "cli-payout-1")
	if len(p.Conversions) != 1 || len(p.Totals) != 1 || p.Totals[0].AmountMinor <= 0 {
		t.Fatalf("payouts create: %+v", p)
	}
	if out := adminOut(t, a, "conversions", "list", "demo", "--status", "paid"); !strings.Contains(out, "cli_1") {
		t.Errorf("conversions list --status paid:\n%s", out)
	}
	if out := adminOut(t, a, "partners", "balance", "alice"); !strings.Contains(out, "payout") {
		t.Errorf("partners balance:\n%s", out)
	}

	// The exported catalog imports again.
	file := filepath.Join(t.TempDir(), "catalog.yaml")
	adminOut(t, a, "catalog", "export", "--file", file)
	if out := adminOut(t, a, "catalog", "import", file); !strings.HasPrefix(out, "catalog imported as version ") {
		t.Errorf("catalog import: %q", out)
	}
	if out := adminOut(t, a, "links", "get", "dave-spring"); !strings.Contains(out, "acme-spring") {
		t.Errorf("links get after import:\n%s", out)
	}
}
