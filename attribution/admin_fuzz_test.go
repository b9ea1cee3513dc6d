package attribution

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAdminAPI sends arbitrary methods, paths and bodies to the admin API
// over a store holding the demo catalog (no NATS: changes are saved and
// answered 503 unpublished). Every answer is JSON with data or a coded
// error, never a 500, and the stored catalog stays valid whatever was sent.
func FuzzAdminAPI(f *testing.F) {
	seeds := []struct{ method, path, body string }{
		{"POST", "/admin/v1/merchants", `{"id":"m2","name":"Two","allowed_domains":["two.example"]}`},
		{"PATCH", "/admin/v1/merchants/demo", `{"name":null,"fallback_url":"https://example.com/x"}`},
		{"POST", "/admin/v1/campaigns", `{"id":"c2","merchant_id":"demo","default_destination":"https://example.com/{click_id}","commissions":[{"percent_bps":5}]}`},
		{"PATCH", "/admin/v1/campaigns/spring", `{"commissions":[{"type":"sale","flat_minor":1}],"window_seconds":-1}`},
		{"POST", "/admin/v1/partners", `{"id":"p2","merchant_id":"demo","key":"K2","coupon_codes":["X"]}`},
		{"PATCH", "/admin/v1/partners/alice", `{"key":"bob"}`},
		{"POST", "/admin/v1/links", `{"campaign_id":"spring","partner_id":"alice","destination":"https://example.com/a?b={sub1}"}`},
		{"PATCH", "/admin/v1/links/alice", `{"paused":true,"code":"x"}`},
		{"POST", "/admin/v1/links/alice/pause", ``},
		{"POST", "/admin/v1/merchants/demo/keys", `{"name":"n"}`},
		{"DELETE", "/admin/v1/merchants/demo/keys/sha256_000000000000", ``},
		{"PUT", "/admin/v1/catalog", `{"merchants":[]}`},
		{"GET", "/admin/v1/merchants/demo/conversions?limit=5&status=paid", ``},
		{"POST", "/admin/v1/merchants/demo/payouts", `{"partner_id":"alice","reference":"r.1"}`},
		{"POST", "/admin/v1/merchants/demo/conversions/x/status", `{"status":"approved"}`},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, []byte(s.body))
	}
	s := openStore(f)
	if err := s.SaveCatalog(DemoCatalog("ce_live_fuzzfuzzfuzzfuzzfuzzfuzzfuzz0001")); err != nil {
		f.Fatal(err)
	}
	api := &AdminAPI{Worker: &Worker{Store: s}, Token: strings.Repeat("t", MinAdminTokenLen)}
	h, err := api.Handler()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#?") && !strings.Contains(path, "?") {
			path = "/" + path
		}
		req, err := http.NewRequest(method, "http://admin"+path, strings.NewReader(string(body)))
		if err != nil {
			return // not a request a client could send
		}
		req.Header.Set("Authorization", "Bearer "+api.Token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if path == "/admin/v1/backup" && rec.Code == http.StatusOK {
			return
		}
		var out struct {
			Data  json.RawMessage `json:"data"`
			Error *struct{ Code, Message string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s: %d %q is not JSON", method, path, rec.Code, rec.Body.Bytes())
		}
		switch {
		case rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable:
			t.Fatalf("%s %s %q: %d %s", method, path, body, rec.Code, rec.Body.Bytes())
		case rec.Code >= 400 && (out.Error == nil || out.Error.Code == ""):
			t.Fatalf("%s %s: %d without an error code: %s", method, path, rec.Code, rec.Body.Bytes())
		case rec.Code < 400 && len(out.Data) == 0 && path != "/healthz":
			t.Fatalf("%s %s: %d without data: %s", method, path, rec.Code, rec.Body.Bytes())
		}
		c, err := s.Catalog()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("after %s %s %q the stored catalog is invalid: %v", method, path, body, err)
		}
	})
}
