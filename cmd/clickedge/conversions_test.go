package main

import (
	"context"

	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/clickedge/clickedge/redirect"
)

// call sends a JSON request with the demo key and decodes the JSON answer.
func call(t *testing.T, method, u, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, u, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode, out
}

func data(m map[string]any) map[string]any {
	d, _ := m["data"].(map[string]any)
	return d
}

// clickID follows a demo link and returns the click id and the cookie it set.
func clickID(t *testing.T, addr, code, param string) (string, *http.Cookie) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/r/"+code, nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	id := loc.Query().Get(param)
	if resp.StatusCode != http.StatusFound || id == "" || len(resp.Cookies()) != 1 {
		t.Fatalf("/r/%s: %d %q %v", code, resp.StatusCode, resp.Header.Get("Location"), resp.Header["Set-Cookie"])
	}
	return id, resp.Cookies()[0]
}

// TestConversionsEndToEnd follows links through `serve`, fires each
// dialect's conversion with the click id (and the pixel with only the
// cookie), and reads the commission back through each dialect's listing.
func TestConversionsEndToEnd(t *testing.T) {
	a := startServe(t)
	base := "http://" + a.EdgeAddr

	// Partnac: the click id in session_id attributes to alice, 10 % of 99.00.
	aliceClick, _ := clickID(t, a.EdgeAddr, "alice", "click_id")
	code, resp := call(t, "POST", base+"/v1/tracking/conversions", `{"partnership_code":"BOB20","unique_id":"order_1",
		"conversion_type":"sale","amount":99.00,"session_id":"`+aliceClick+`","metadata":{"currency":"USD","customer_id":"cus_1"}}`)
	if d := data(resp); code != 201 || d["partnership_id"] != "alice" || d["commission_amount"] != "9.90" || d["attributed_by"] != "click_id" {
		t.Fatalf("Partnac track: %d %v; want 201, alice by click id, commission 9.90", code, resp)
	}
	// The same unique_id again returns the original and books nothing.
	if code, resp = call(t, "POST", base+"/v1/tracking/conversions", `{"partnership_code":"BOB20","unique_id":"order_1","conversion_type":"sale","amount":5}`); code != 200 || data(resp)["amount"] != "99.00" {
		t.Fatalf("Partnac repeat: %d %v; want 200 with the original", code, resp)
	}

	// Affilync: click_id from the afk_cid redirect parameter, 10 % of 50.00.
	carolClick, _ := clickID(t, a.EdgeAddr, "carol-afk", "afk_cid")
	code, resp = call(t, "POST", base+"/api/conversions/track", `{"click_id":"`+carolClick+`","order_id":"order_2","amount":"50.00","currency":"USD","event_type":"sale"}`)
	if d := data(resp); code != 201 || d["affiliate_id"] != "carol" || d["commission_amount"] != "5.00" || d["click_id"] != carolClick {
		t.Fatalf("Affilync track: %d %v; want 201, carol, commission 5.00", code, resp)
	}

	// The image pixel carries only the cookie of a second click.
	_, cookie := clickID(t, a.EdgeAddr, "carol-afk", "afk_cid")
	req, _ := http.NewRequest(http.MethodGet, base+"/pixel.gif?pid=px_demo&order_id=order_3&amount=20.00&currency=USD", nil)
	req.AddCookie(cookie)
	pix, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	gif, _ := io.ReadAll(pix.Body)
	pix.Body.Close()
	if pix.StatusCode != 200 || len(gif) != 43 || pix.Header.Get("Content-Type") != "image/gif" {
		t.Fatalf("pixel.gif: %d %q %d bytes", pix.StatusCode, pix.Header.Get("Content-Type"), len(gif))
	}

	// Partnero: a customer referred by alice's key, then a transaction.
	if code, resp = call(t, "POST", base+"/v1/customers", `{"partner":{"key":"ALICE10"},"key":"cust_9","email":"c9@example.com"}`); code != 201 {
		t.Fatalf("Partnero customer: %d %v", code, resp)
	}
	// The customer's refer-a-friend link sets the code cookie; a friend who
	// signs up with that code as referring_customer.key is recorded as referred.
	link, _ := data(resp)["referral_link"].(string)
	lu, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(lu.Path, "/f/demo/") {
		t.Fatalf("referral_link = %q", link)
	}
	ref, err := noRedirect.Get(base + lu.Path)
	if err != nil {
		t.Fatal(err)
	}
	ref.Body.Close()
	refCode := strings.TrimPrefix(lu.Path, "/f/demo/")
	if ref.StatusCode != http.StatusFound || len(ref.Cookies()) != 1 || ref.Cookies()[0].Value != refCode ||
		!strings.Contains(ref.Header.Get("Location"), "ref="+refCode) {
		t.Fatalf("referral link: %d %q %v", ref.StatusCode, ref.Header.Get("Location"), ref.Header["Set-Cookie"])
	}
	code, resp = call(t, "POST", base+"/v1/customers", `{"referring_customer":{"key":"`+refCode+`"},"key":"friend_1"}`)
	if d := data(resp); code != 201 {
		t.Fatalf("referred friend: %d %v", code, resp)
	} else if rc, _ := d["referring_customer"].(map[string]any); rc == nil || rc["key"] != "cust_9" {
		t.Errorf("referred friend: referring_customer = %v, want cust_9", d["referring_customer"])
	}

	code, resp = call(t, "POST", base+"/v1/transactions", `{"customer":{"key":"cust_9"},"key":"tx_1","amount":100,"action":"sale"}`)
	if d := data(resp); code != 201 || d["commission"] != 10.0 {
		t.Fatalf("Partnero transaction: %d %v; want 201 with commission 10.00", code, resp)
	}

	// Read the commissions back through the listings.
	var pixelConv map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for pixelConv == nil && time.Now().Before(deadline) {
		_, list := call(t, "GET", base+"/api/conversions?per_page=100", "")
		items, _ := list["data"].([]any)
		for _, it := range items {
			if m, _ := it.(map[string]any); m["order_id"] == "order_3" {
				pixelConv = m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pixelConv == nil || pixelConv["affiliate_id"] != "carol" || pixelConv["commission_amount"] != "2.00" {
		t.Fatalf("Affilync listing: pixel conversion = %v; want carol by cookie, commission 2.00", pixelConv)
	}
	_, list := call(t, "GET", base+"/v1/tracking/conversions?limit=100", "")
	byID := map[string]map[string]any{}
	items, _ := list["data"].([]any)
	for _, it := range items {
		m, _ := it.(map[string]any)
		byID[m["unique_id"].(string)] = m
	}
	if byID["order_1"]["commission_amount"] != "9.90" || byID["order_2"]["commission_amount"] != "5.00" || byID["tx_1"]["commission_amount"] != "10.00" {
		t.Errorf("Partnac listing = %v", list)
	}
}

// TestTenantIsolationEndToEnd: with two merchants in one serve, merchant B's
// key gets 404 (or an empty listing) for every id of merchant A on every
// endpoint, and B reusing A's order id makes B's own conversion.
func TestTenantIsolationEndToEnd(t *testing.T) {
	a := startServe(t)
	base := "http://" + a.EdgeAddr
	const keyB = "ce_live_othermerchantkeyothermerchant99"
	c, err := a.Worker.Catalog()
	if err != nil || c == nil {
		t.Fatalf("catalog: %v", err)
	}
	c.Merchants = append(c.Merchants, redirect.Merchant{ID: "other", Name: "Other", APIKeyHashes: []string{redirect.HashAPIKey(keyB)}})
	c.Campaigns = append(c.Campaigns, redirect.Campaign{ID: "o_camp", MerchantID: "other", DefaultDestination: "https://other.example/",
		Commissions: []redirect.CommissionRule{{PercentBPS: 500}}})
	c.Partners = append(c.Partners, redirect.Partner{ID: "o_partner", MerchantID: "other", Key: "OTHER1"})
	c.Links = append(c.Links, redirect.Link{Code: "o-link", CampaignID: "o_camp", PartnerID: "o_partner"})
	if _, err := a.Worker.SetCatalog(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the edge to serve the new catalog", 10*time.Second, func() bool {
		code, _ := followCode(t, a.EdgeAddr, "o-link")
		return code == http.StatusFound
	})

	// Merchant A (the demo) records a click, a conversion and a customer.
	aliceClick, _ := clickID(t, a.EdgeAddr, "alice", "click_id")
	code, resp := call(t, "POST", base+"/v1/tracking/conversions", `{"partnership_code":"ALICE10","unique_id":"order_a","conversion_type":"sale","amount":10,"session_id":"`+aliceClick+`"}`)
	if code != 201 {
		t.Fatalf("A's conversion: %d %v", code, resp)
	}
	convID, _ := data(resp)["id"].(string)
	if code, resp = call(t, "POST", base+"/v1/customers", `{"partner":{"key":"ALICE10"},"key":"cust_a"}`); code != 201 {
		t.Fatalf("A's customer: %d %v", code, resp)
	}
	if code, resp = call(t, "POST", base+"/v1/transactions", `{"customer":{"key":"cust_a"},"key":"tx_a","amount":5}`); code != 201 {
		t.Fatalf("A's transaction: %d %v", code, resp)
	}

	callB := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+keyB)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		r, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(r.Body).Decode(&out)
		return r.StatusCode, out
	}
	for _, tt := range []struct{ method, path, body string }{
		{"GET", "/v1/tracking/conversions/order_a", ""},
		{"GET", "/v1/tracking/conversions/" + convID, ""},
		{"PATCH", "/v1/tracking/conversions/order_a", `{"amount":1}`},
		{"POST", "/v1/tracking/conversions/order_a/refund", `{}`},
		{"GET", "/v1/tracking/conversions?campaign_id=spring", ""},
		{"GET", "/v1/tracking/conversions?partnership_id=alice", ""},
		{"GET", "/v1/tracking/clicks?campaign_id=spring", ""},
		{"GET", "/v1/tracking/clicks?partnership_id=alice", ""},
		{"PATCH", "/api/conversions/" + convID, `{"status":"approved"}`},
		{"PATCH", "/api/conversions/order_a", `{"status":"rejected"}`},
		{"GET", "/api/conversions?campaign_id=spring", ""},
		{"GET", "/api/conversions?affiliate_id=alice", ""},
		{"DELETE", "/v1/transactions/tx_a", ""},
		{"POST", "/v1/customers/cust_a/balance/credit", `{"amount":5}`},
	} {
		if code, out := callB(tt.method, tt.path, tt.body); code != http.StatusNotFound {
			t.Errorf("B %s %s = %d %v, want 404", tt.method, tt.path, code, out)
		}
	}
	// B's listings hold only B's own records (B followed its own link above).
	for _, path := range []string{"/v1/tracking/conversions", "/v1/tracking/clicks", "/api/conversions"} {
		code, out := callB("GET", path, "")
		items, ok := out["data"].([]any)
		if code != 200 || !ok {
			t.Fatalf("B GET %s = %d %v", path, code, out)
		}
		for _, it := range items {
			if m, _ := it.(map[string]any); m["campaign_id"] != "o_camp" {
				t.Errorf("B GET %s lists %v, which is not B's", path, m)
			}
		}
	}
	// B's own order_a is B's conversion, not a duplicate of A's.
	code, out := callB("POST", "/v1/tracking/conversions", `{"partnership_code":"OTHER1","unique_id":"order_a","conversion_type":"sale","amount":20}`)
	if d := data(out); code != 201 || d["amount"] != "20.00" || d["partnership_id"] != "o_partner" || d["id"] == convID {
		t.Errorf("B's order_a = %d %v, want B's own new conversion", code, out)
	}
	// And A still sees its own, unchanged.
	if code, resp = call(t, "GET", base+"/v1/tracking/conversions/order_a", ""); code != 200 || data(resp)["amount"] != "10.00" {
		t.Errorf("A's order_a after B's requests = %d %v", code, resp)
	}
}
