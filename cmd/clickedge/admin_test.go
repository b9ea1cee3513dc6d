package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clickedge/clickedge/attribution"
)

const adminTestToken = "test-admin-token-0123456789abcdef"

// adm calls the admin API of a with the admin token (or tok when given).
func adm(t *testing.T, a *App, method, path, body string, tok ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+a.AdminAddr+path, strings.NewReader(body))
	token := a.AdminToken
	if len(tok) > 0 {
		token = tok[0]
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON: %v", method, path, resp.StatusCode, raw, err)
	}
	return resp.StatusCode, out
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func catalogVersion(t *testing.T, a *App) float64 {
	t.Helper()
	code, out := adm(t, a, "GET", "/admin/v1/catalog", "")
	if code != 200 {
		t.Fatalf("GET catalog: %d %v", code, out)
	}
	return out["catalog_version"].(float64)
}

// partnacStatus is the status of a Partnac clicks list with key.
func partnacStatus(t *testing.T, a *App, key string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.EdgeAddr+"/v1/tracking/clicks", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestAdminCatalogObjectsReachTheEdge(t *testing.T) {
	a := startServe(t, "--admin-token", adminTestToken)
	if a.AdminAddr == "" || a.AdminToken != adminTestToken {
		t.Fatalf("admin API not started: %q %q", a.AdminAddr, a.AdminToken)
	}
	steps := []struct{ method, path, body string }{
		{"POST", "/admin/v1/merchants", `{"id":"acme","name":"Acme","allowed_domains":["acme.example"]}`},
		{"POST", "/admin/v1/campaigns", `{"id":"acme-spring","merchant_id":"acme","default_destination":"https://acme.example/shop",
			"commissions":[{"type":"sale","percent_bps":1500}],"window_seconds":86400,"hold_seconds":0}`},
		{"POST", "/admin/v1/partners", `{"id":"dave","merchant_id":"acme","key":"DAVE1","email":"dave@example.com","coupon_codes":["DAVE"]}`},
		{"POST", "/admin/v1/links", `{"code":"dave-spring","campaign_id":"acme-spring","partner_id":"dave"}`},
	}
	for _, s := range steps {
		if code, out := adm(t, a, s.method, s.path, s.body); code != 201 {
			t.Fatalf("%s %s: %d %v", s.method, s.path, code, out)
		}
	}
	// A generated link code.
	code, out := adm(t, a, "POST", "/admin/v1/links", `{"campaign_id":"acme-spring","partner_id":"dave","destination":"https://acme.example/sale?c={click_id}"}`)
	gen, _ := data(out)["code"].(string)
	if code != 201 || len(gen) != 8 {
		t.Fatalf("generated link: %d %v", code, out)
	}
	// The new link redirects within a second of its creation.
	waitFor(t, "the new link to redirect", time.Second, func() bool {
		c, loc := followCode(t, a.EdgeAddr, "dave-spring")
		return c == http.StatusFound && strings.HasPrefix(loc, "https://acme.example/shop?")
	})
	// Pausing takes it out of service as fast; resuming brings it back.
	if code, out := adm(t, a, "POST", "/admin/v1/links/dave-spring/pause", ""); code != 200 || data(out)["paused"] != true {
		t.Fatalf("pause: %d %v", code, out)
	}
	waitFor(t, "the paused link to stop redirecting", time.Second, func() bool {
		c, _ := followCode(t, a.EdgeAddr, "dave-spring")
		return c != http.StatusFound
	})
	if code, out := adm(t, a, "POST", "/admin/v1/links/dave-spring/resume", ""); code != 200 || data(out)["paused"] != nil {
		t.Fatalf("resume: %d %v", code, out)
	}
	waitFor(t, "the resumed link to redirect", time.Second, func() bool {
		c, _ := followCode(t, a.EdgeAddr, "dave-spring")
		return c == http.StatusFound
	})

	// PATCH is a merge patch: given fields change, others stay, null clears.
	code, out = adm(t, a, "PATCH", "/admin/v1/campaigns/acme-spring", `{"name":"Spring","window_seconds":null,"hold_seconds":3600}`)
	if d := data(out); code != 200 || d["name"] != "Spring" || d["window_seconds"] != nil || d["hold_seconds"] != 3600.0 ||
		d["default_destination"] != "https://acme.example/shop" {
		t.Fatalf("patch campaign: %d %v", code, out)
	}
	if code, out = adm(t, a, "GET", "/admin/v1/partners?merchant_id=acme", ""); code != 200 || len(out["data"].([]any)) != 1 {
		t.Fatalf("list partners: %d %v", code, out)
	}
	if code, out = adm(t, a, "GET", "/admin/v1/links?partner_id=dave", ""); code != 200 || len(out["data"].([]any)) != 2 {
		t.Fatalf("list links: %d %v", code, out)
	}

	// API keys: shown once, several per merchant, revocable.
	code, out = adm(t, a, "POST", "/admin/v1/merchants/acme/keys", `{"name":"shop backend"}`)
	key1, _ := data(out)["key"].(string)
	id1, _ := data(out)["id"].(string)
	if code != 201 || !strings.HasPrefix(key1, "ce_live_") || len(key1) != 40 || data(out)["prefix"] != key1[:12] {
		t.Fatalf("create key: %d %v", code, out)
	}
	code, out = adm(t, a, "POST", "/admin/v1/merchants/acme/keys", "")
	key2, _ := data(out)["key"].(string)
	if code != 201 || key2 == "" || key2 == key1 {
		t.Fatalf("second key: %d %v", code, out)
	}
	waitFor(t, "both keys to authenticate at the edge", time.Second, func() bool {
		return partnacStatus(t, a, key1) == 200 && partnacStatus(t, a, key2) == 200
	})
	code, out = adm(t, a, "GET", "/admin/v1/merchants/acme/keys", "")
	if code != 200 || len(out["data"].([]any)) != 2 || bytes.Contains(mustJSON(out), []byte(key1)) {
		t.Fatalf("list keys: %d %v (the secret must never be listed)", code, out)
	}
	if code, out = adm(t, a, "DELETE", "/admin/v1/merchants/acme/keys/"+id1, ""); code != 200 || data(out)["revoked_at"] == nil {
		t.Fatalf("revoke: %d %v", code, out)
	}
	waitFor(t, "the revoked key to be refused", time.Second, func() bool { return partnacStatus(t, a, key1) == 401 })
	if partnacStatus(t, a, key2) != 200 {
		t.Fatal("revoking one key refused the other")
	}
	// The key is never stored: neither the worker's store nor the edge's files hold it.
	for _, f := range dataFiles(t, a) {
		raw, err := os.ReadFile(f)
		if err == nil && (bytes.Contains(raw, []byte(key1)) || bytes.Contains(raw, []byte(key2))) {
			t.Fatalf("%s holds an API key in clear", f)
		}
	}
	// Merchant PATCH cannot touch keys.
	if code, out = adm(t, a, "PATCH", "/admin/v1/merchants/acme", `{"api_key_hashes":["`+strings.Repeat("a", 64)+`"]}`); code != 422 || errCode(out) != "immutable_field" {
		t.Fatalf("patch keys: %d %v", code, out)
	}
	if code, out = adm(t, a, "PATCH", "/admin/v1/merchants/acme", `{"name":"Acme Inc"}`); code != 200 || data(out)["name"] != "Acme Inc" || len(data(out)["api_keys"].([]any)) != 2 {
		t.Fatalf("patch merchant: %d %v", code, out)
	}
}

// dataFiles lists every file under the serve data directory.
func dataFiles(t *testing.T, a *App) []string {
	t.Helper()
	var out []string
	dir := a.DataDir
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if len(out) < 3 {
		t.Fatalf("data dir %s: only %v", dir, out)
	}
	return out
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestAdminBadInput(t *testing.T) {
	a := startServe(t, "--admin-token", adminTestToken)
	before := catalogVersion(t, a)
	long := `{"id":"big","name":"` + strings.Repeat("x", 1<<20) + `"}`
	cases := []struct {
		name, method, path, body, tok string
		status                        int
		code                          string
	}{
		{"no token", "GET", "/admin/v1/merchants", "", "-", 401, "unauthorized"},
		{"wrong token", "POST", "/admin/v1/merchants", `{"id":"x"}`, "test-admin-token-0123456789abcdeX", 401, "unauthorized"},
		{"token prefix", "GET", "/admin/v1/merchants", "", adminTestToken[:20], 401, "unauthorized"},
		{"unknown path", "GET", "/admin/v1/nothing", "", "", 404, "not_found"},
		{"method", "DELETE", "/admin/v1/merchants", "", "", 405, "method_not_allowed"},
		{"malformed", "POST", "/admin/v1/merchants", `{"id":`, "", 400, "invalid_json"},
		{"empty body", "POST", "/admin/v1/campaigns", ``, "", 400, "invalid_json"},
		{"unknown field", "POST", "/admin/v1/merchants", `{"id":"m2","colour":"red"}`, "", 400, "invalid_json"},
		{"wrong type", "POST", "/admin/v1/campaigns", `{"id":"c2","merchant_id":"demo","default_destination":"https://shop.example","window_seconds":"long"}`, "", 400, "invalid_json"},
		{"two values", "POST", "/admin/v1/merchants", `{"id":"m3"} {"id":"m4"}`, "", 400, "invalid_json"},
		{"too large", "POST", "/admin/v1/merchants", long, "", 413, "body_too_large"},
		{"duplicate", "POST", "/admin/v1/merchants", `{"id":"demo"}`, "", 409, "already_exists"},
		{"bad id", "POST", "/admin/v1/merchants", `{"id":"has space"}`, "", 422, "invalid_catalog"},
		{"keys in create", "POST", "/admin/v1/merchants", `{"id":"m5","api_key_hashes":["` + strings.Repeat("b", 64) + `"]}`, "", 422, "invalid_field"},
		{"unknown merchant", "POST", "/admin/v1/campaigns", `{"id":"c3","merchant_id":"nobody","default_destination":"https://shop.example"}`, "", 422, "invalid_catalog"},
		{"bad destination", "POST", "/admin/v1/campaigns", `{"id":"c4","merchant_id":"demo","default_destination":"javascript:alert(1)"}`, "", 422, "invalid_catalog"},
		{"cross-merchant link", "POST", "/admin/v1/links", `{"campaign_id":"spring","partner_id":"ghost"}`, "", 422, "invalid_catalog"},
		{"change id", "PATCH", "/admin/v1/campaigns/spring", `{"id":"autumn"}`, "", 422, "immutable_field"},
		{"change owner", "PATCH", "/admin/v1/partners/alice", `{"merchant_id":"other"}`, "", 422, "immutable_field"},
		{"patch not object", "PATCH", "/admin/v1/links/alice", `[1]`, "", 400, "invalid_json"},
		{"patch makes invalid", "PATCH", "/admin/v1/campaigns/spring", `{"attribution":"middle_click"}`, "", 422, "invalid_catalog"},
		{"missing link", "PATCH", "/admin/v1/links/nope", `{"paused":true}`, "", 404, "not_found"},
		{"missing partner", "GET", "/admin/v1/partners/nope/balance", "", "", 404, "not_found"},
		{"missing key", "DELETE", "/admin/v1/merchants/demo/keys/key_nope", "", "", 404, "not_found"},
		{"bad status", "POST", "/admin/v1/merchants/demo/conversions/x/status", `{"status":"refunded"}`, "", 422, "invalid_field"},
		{"missing conversion", "POST", "/admin/v1/merchants/demo/conversions/nope/status", `{"status":"approved"}`, "", 404, "not_found"},
		{"status of unknown merchant", "POST", "/admin/v1/merchants/nobody/conversions/x/status", `{"status":"approved"}`, "", 404, "not_found"},
		{"payout foreign partner", "POST", "/admin/v1/merchants/demo/payouts", `{"partner_id":"ghost"}`, "", 422, "invalid_field"},
		{"bad limit", "GET", "/admin/v1/merchants/demo/conversions?limit=0", "", "", 422, "invalid_field"},
		{"invalid catalog put", "PUT", "/admin/v1/catalog", `{"merchants":[{"id":"a"}],"links":[{"code":"x","campaign_id":"none","partner_id":"p"}]}`, "", 422, "invalid_catalog"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := []string{}
			switch c.tok {
			case "-":
				tok = []string{""}
			case "":
			default:
				tok = []string{c.tok}
			}
			code, out := adm(t, a, c.method, c.path, c.body, tok...)
			if code != c.status || errCode(out) != c.code {
				t.Fatalf("%s %s: %d %v; want %d %s", c.method, c.path, code, out, c.status, c.code)
			}
		})
	}
	if after := catalogVersion(t, a); after != before {
		t.Fatalf("catalog version %v after bad requests, want %v: something was written", after, before)
	}
	// Health needs no token.
	resp, err := http.Get("http://" + a.AdminAddr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestAdminApprovePayout(t *testing.T) {
	a := startServe(t, "--admin-token", adminTestToken)
	base := "http://" + a.EdgeAddr
	click, _ := clickID(t, a.EdgeAddr, "alice", "click_id")
	for i, order := range []string{"po_1", "po_2"} {
		code, resp := call(t, "POST", base+"/v1/tracking/conversions", `{"partnership_code":"ALICE10","unique_id":"`+order+`",
			"conversion_type":"sale","amount":"`+[]string{"100.00", "50.00"}[i]+`","session_id":"`+click+`"}`)
		if code != 201 {
			t.Fatalf("conversion %s: %d %v", order, code, resp)
		}
	}
	// Paid before approved is refused; nothing is booked.
	code, out := adm(t, a, "POST", "/admin/v1/merchants/demo/conversions/po_1/status", `{"status":"paid"}`)
	if code != 422 || errCode(out) != "invalid_status" {
		t.Fatalf("paid while pending: %d %v", code, out)
	}
	code, out = adm(t, a, "POST", "/admin/v1/merchants/demo/conversions/po_1/status", `{"status":"approved","note":"checked"}`)
	if code != 200 || data(out)["status"] != "approved" || data(out)["unique_id"] != "po_1" {
		t.Fatalf("approve: %d %v", code, out)
	}
	// Approving twice is idempotent.
	if code, out = adm(t, a, "POST", "/admin/v1/merchants/demo/conversions/po_1/status", `{"status":"approved"}`); code != 200 || data(out)["status"] != "approved" {
		t.Fatalf("approve again: %d %v", code, out)
	}
	code, out = adm(t, a, "GET", "/admin/v1/merchants/demo/conversions?status=approved&partner_id=alice", "")
	if code != 200 || out["total"] != 1.0 {
		t.Fatalf("list approved: %d %v", code, out)
	}
	// The payout pays the approved conversion only: 10 % of 100.00.
	code, out = adm(t, a, "POST", "/admin/v1/merchants/demo/payouts", `{"partner_id":"alice","reference":"2026-11"}`)
	d := data(out)
	if code != 200 || len(d["conversions"].([]any)) != 1 || d["totals"].([]any)[0].(map[string]any)["amount_minor"] != 1000.0 {
		t.Fatalf("payout: %d %v", code, out)
	}
	// The same payout again pays nothing more.
	code, out = adm(t, a, "POST", "/admin/v1/merchants/demo/payouts", `{"partner_id":"alice","reference":"2026-11"}`)
	if code != 200 || len(data(out)["conversions"].([]any)) != 0 {
		t.Fatalf("payout again: %d %v", code, out)
	}
	code, out = adm(t, a, "GET", "/admin/v1/partners/alice/balance", "")
	d = data(out)
	// Earned 10.00 + 5.00, paid 10.00: balance 5.00; the ledger sums to it.
	if code != 200 || d["balance_minor"] != 500.0 || d["paid_minor"] != 1000.0 {
		t.Fatalf("balance: %d %v", code, out)
	}
	var sum float64
	kinds := map[string]int{}
	for _, e := range d["ledger"].([]any) {
		sum += e.(map[string]any)["amount_minor"].(float64)
		kinds[e.(map[string]any)["kind"].(string)]++
	}
	if sum != 500 || kinds["payout"] != 1 {
		t.Fatalf("ledger sums to %v with %v, want 500 with one payout", sum, kinds)
	}
	if code, out = adm(t, a, "GET", "/admin/v1/merchants/demo/conversions/po_1", ""); code != 200 || data(out)["status"] != "paid" {
		t.Fatalf("paid conversion: %d %v", code, out)
	}
}

// TestCatalogFileSeedsOnce: a restart with the same catalog file keeps the
// admin API's changes; a changed file is applied.
func TestCatalogFileSeedsOnce(t *testing.T) {
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.json")
	src, err := os.ReadFile("../../docs/catalog.example.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cat, src, 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() (*App, func()) {
		return serveIn(t, filepath.Join(dir, "data"), "--admin-token", adminTestToken, "--catalog", cat)
	}
	a, stop := start()
	if code, out := adm(t, a, "POST", "/admin/v1/merchants", `{"id":"added_by_admin"}`); code != 201 {
		t.Fatalf("create: %d %v", code, out)
	}
	stop()
	a, stop = start()
	if code, out := adm(t, a, "GET", "/admin/v1/merchants/added_by_admin", ""); code != 200 {
		t.Fatalf("after a restart with the same file the admin change is gone: %d %v", code, out)
	}
	stop()
	if err := os.WriteFile(cat, append(src, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	a, stop = start()
	defer stop()
	if code, out := adm(t, a, "GET", "/admin/v1/merchants/added_by_admin", ""); code != 404 {
		t.Fatalf("a changed file was not applied: %d %v", code, out)
	}
}

// serveIn runs serve on the data directory dir (kept across calls) with the
// admin API on a random port; stop ends it and waits.
func serveIn(t *testing.T, dir string, extra ...string) (a *App, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	appc, errc := make(chan *App, 1), make(chan error, 1)
	args := append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--metrics-addr", "",
		"--nats-listen", "", "--admin-listen", "127.0.0.1:0", "--drain-delay", "0", "--log-level", "error"}, extra...)
	go func() { errc <- run(ctx, args, io.Discard, io.Discard, func(a *App) { appc <- a }) }()
	select {
	case a := <-appc:
		stopped := false
		stop = func() {
			if stopped {
				return
			}
			stopped = true
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
		t.Cleanup(stop)
		return a, stop
	case err := <-errc:
		cancel()
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve did not start")
	}
	return nil, nil
}

// workerState is what a rebuilt worker must reproduce.
type workerState struct {
	clicks, conversions float64
	balance, paid       float64
	ledger              int
}

func readState(t *testing.T, a *App) workerState {
	t.Helper()
	var st workerState
	var clicks listed
	if code := getJSON(t, "http://"+a.EdgeAddr+"/v1/tracking/clicks?limit=1", testKey, &clicks); code != 200 {
		t.Fatalf("clicks: %d", code)
	}
	st.clicks = float64(clicks.Pagination.Total)
	code, out := adm(t, a, "GET", "/admin/v1/merchants/demo/conversions", "")
	if code != 200 {
		t.Fatalf("conversions: %d %v", code, out)
	}
	st.conversions = out["total"].(float64)
	code, out = adm(t, a, "GET", "/admin/v1/partners/alice/balance", "")
	if code != 200 {
		t.Fatalf("balance: %d %v", code, out)
	}
	d := data(out)
	st.balance, st.paid, st.ledger = d["balance_minor"].(float64), d["paid_minor"].(float64), len(d["ledger"].([]any))
	return st
}

// TestBackupAndRebuild: a backup taken through the admin API, restored and
// caught up with --rebuild, and an empty store rebuilt from the streams,
// both end with exactly the state of the worker they replace.
func TestBackupAndRebuild(t *testing.T) {
	dir := t.TempDir()
	a, stop := serveIn(t, dir, "--demo", "--demo-api-key", testKey, "--admin-token", adminTestToken)
	base := "http://" + a.EdgeAddr
	fire := func(order, amount string) {
		t.Helper()
		click, _ := clickID(t, a.EdgeAddr, "alice", "click_id")
		code, resp := call(t, "POST", base+"/v1/tracking/conversions", `{"partnership_code":"ALICE10","unique_id":"`+order+
			`","conversion_type":"sale","amount":"`+amount+`","session_id":"`+click+`"}`)
		if code != 201 {
			t.Fatalf("conversion %s: %d %v", order, code, resp)
		}
	}
	fire("bk_1", "100.00")
	fire("bk_2", "40.00")
	if code, out := adm(t, a, "POST", "/admin/v1/merchants/demo/conversions/bk_1/status", `{"status":"approved"}`); code != 200 {
		t.Fatalf("approve: %d %v", code, out)
	}
	if code, out := adm(t, a, "POST", "/admin/v1/merchants/demo/payouts", `{"partner_id":"alice","reference":"r1"}`); code != 200 {
		t.Fatalf("payout: %d %v", code, out)
	}
	waitFor(t, "both clicks at the worker", 10*time.Second, func() bool { return readState(t, a).clicks == 2 })

	// The backup is a bbolt file holding the store as it was.
	req, _ := http.NewRequest("GET", "http://"+a.AdminAddr+"/admin/v1/backup", nil)
	req.Header.Set("Authorization", "Bearer "+adminTestToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	snapshot, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || int64(len(snapshot)) != resp.ContentLength || len(snapshot) < 4096 {
		t.Fatalf("backup: %d, %d bytes of %d", resp.StatusCode, len(snapshot), resp.ContentLength)
	}
	if code, _ := adm(t, a, "GET", "/admin/v1/backup", "", "wrong-token-wrong-token-wrong"); code != 401 {
		t.Fatalf("backup without the token: %d", code)
	}
	// The same through the CLI: a bbolt file that opens as a store.
	cliCopy := filepath.Join(t.TempDir(), "copy.db")
	if _, errOut, err := adminRunApp(t, a, "backup", "save", "--file", cliCopy); err != nil || !strings.Contains(errOut, "copied to "+cliCopy) {
		t.Fatalf("admin backup save: %v %q", err, errOut)
	}
	copyStore := attribution.NewStore(cliCopy)
	if err := copyStore.Open(); err != nil {
		t.Fatal(err)
	}
	n, err := copyStore.ClickCount()
	copyStore.Close()
	if err != nil || n != 2 {
		t.Fatalf("the CLI's copy holds %d clicks (%v), want 2", n, err)
	}
	if _, _, err := adminRunApp(t, a, "backup", "save"); err == nil {
		t.Fatal("backup save without --file succeeded")
	}
	// Changes after the backup: the restore must get them from the streams.
	fire("bk_3", "10.00")
	if code, out := adm(t, a, "POST", "/admin/v1/merchants/demo/conversions/bk_2/status", `{"status":"rejected"}`); code != 200 {
		t.Fatalf("reject: %d %v", code, out)
	}
	waitFor(t, "the third click at the worker", 10*time.Second, func() bool { return readState(t, a).clicks == 3 })
	want := readState(t, a)
	if want.conversions != 3 || want.paid != 1000 || want.balance != 100 {
		t.Fatalf("state before the restore: %+v", want)
	}
	stop()

	// Restore the backup, then catch up from the streams.
	store := filepath.Join(dir, "worker.db")
	if err := os.WriteFile(store, snapshot, 0o600); err != nil {
		t.Fatal(err)
	}
	a, stop = serveIn(t, dir, "--demo", "--demo-api-key", testKey, "--admin-token", adminTestToken, "--rebuild")
	waitFor(t, "the restored store to catch up", 10*time.Second, func() bool { return readState(t, a) == want })
	stop()

	// An empty store rebuilt from the streams, the catalog taken from the KV bucket.
	if err := os.Remove(store); err != nil {
		t.Fatal(err)
	}
	a, stop = serveIn(t, dir, "--demo", "--demo-api-key", testKey, "--admin-token", adminTestToken, "--rebuild")
	defer stop()
	waitFor(t, "the empty store to be rebuilt", 10*time.Second, func() bool { return readState(t, a) == want })
	if code, out := adm(t, a, "GET", "/admin/v1/merchants/demo/conversions/bk_2", ""); code != 200 || data(out)["status"] != "rejected" {
		t.Fatalf("rebuilt bk_2: %d %v", code, out)
	}
}
