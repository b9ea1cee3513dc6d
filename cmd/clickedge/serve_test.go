package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clickedge/clickedge/geo"
	"github.com/clickedge/clickedge/geo/geotest"
)

const testKey = "ce_live_testkeytestkeytestkeytestkey01"

// noRedirect is an HTTP client that shows redirects instead of following them.
var noRedirect = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// startServe runs `clickedge serve` in-process on random ports and returns its App.
func startServe(t *testing.T, extra ...string) *App {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
		"--nats-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--demo", "--demo-api-key", testKey, "--drain-delay", "0",
		"--log-level", "warn"}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	appc := make(chan *App, 1)
	errc := make(chan error, 1)
	var out bytes.Buffer
	go func() { errc <- run(ctx, args, &out, io.Discard, func(a *App) { appc <- a }) }()
	select {
	case a := <-appc:
		t.Cleanup(func() {
			cancel()
			if err := <-errc; err != nil {
				t.Errorf("serve exited: %v", err)
			}
		})
		return a
	case err := <-errc:
		cancel()
		t.Fatalf("serve did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve did not start in 30s")
	}
	return nil
}

func getJSON(t *testing.T, u, key string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %d %s: %v", u, resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode
}

type listed struct {
	Data []struct {
		ID, ClickID, Country, City, Browser, OS, Device, IPAddress, CampaignID, PartnershipID string
		Bot                                                                                   bool
	} `json:"data"`
	Pagination struct{ Limit, Offset, Total int } `json:"pagination"`
}

func (l *listed) UnmarshalJSON(b []byte) error {
	type raw struct {
		Data       []map[string]any `json:"data"`
		Pagination struct {
			Limit, Offset, Total int
		} `json:"pagination"`
	}
	var r raw
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	l.Pagination = r.Pagination
	for _, d := range r.Data {
		s := func(k string) string { v, _ := d[k].(string); return v }
		b, _ := d["bot"].(bool)
		l.Data = append(l.Data, struct {
			ID, ClickID, Country, City, Browser, OS, Device, IPAddress, CampaignID, PartnershipID string
			Bot                                                                                   bool
		}{s("id"), s("click_id"), s("country"), s("city"), s("browser"), s("os"), s("device"), s("ip_address"),
			s("campaign_id"), s("partnership_id"), b})
	}
	return nil
}

// TestServeEndToEnd follows a demo link through `serve` and finds the click,
// with UA and geo filled from a generated mmdb, through the Partnac API.
func TestServeEndToEnd(t *testing.T) {
	mmdb := filepath.Join(t.TempDir(), "city.mmdb")
	geotest.WriteCityDB(t, mmdb, map[string]geo.Location{
		"81.2.69.0/24": {Country: "GB", Region: "ENG", City: "London"},
	})
	a := startServe(t, "--geoip", mmdb, "--trusted-proxies", "127.0.0.1/32")

	req, _ := http.NewRequest(http.MethodGet, "http://"+a.EdgeAddr+"/r/alice?utm_source=news&sub1=s1", nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36")
	req.Header.Set("X-Forwarded-For", "81.2.69.160")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusFound; got != want {
		t.Fatalf("status = %d, want %d", got, want)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Host != "example.com" {
		t.Fatalf("Location = %q, want example.com", resp.Header.Get("Location"))
	}
	id := loc.Query().Get("click_id")
	if len(id) != 32 {
		t.Fatalf("click_id %q in Location, want 32 chars", id)
	}
	if loc.Query().Get("utm_source") != "news" {
		t.Errorf("utm_source not passed through: %s", loc)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Value != id || !cookies[0].HttpOnly || cookies[0].MaxAge != 30*24*3600 {
		t.Errorf("Set-Cookie = %v, want one HttpOnly cookie with the click id and a 30-day Max-Age", resp.Header["Set-Cookie"])
	}

	var l listed
	deadline := time.Now().Add(2 * time.Second)
	for {
		if code := getJSON(t, "http://"+a.EdgeAddr+"/v1/tracking/clicks", testKey, &l); code != 200 {
			t.Fatalf("list status %d", code)
		}
		if len(l.Data) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(l.Data) != 1 {
		t.Fatalf("listed %d clicks within 2s, want 1", len(l.Data))
	}
	got := l.Data[0]
	if got.ID != id || got.Country != "GB" || got.City != "London" || got.Browser != "Chrome" || got.Device != "desktop" {
		t.Errorf("listed click = %+v, want id %s from London on desktop Chrome", got, id)
	}
	if got.IPAddress != "81.2.69.0" {
		t.Errorf("stored IP = %q, want the truncated 81.2.69.0", got.IPAddress)
	}
	if l.Pagination.Total != 1 || l.Pagination.Limit != 20 {
		t.Errorf("pagination = %+v", l.Pagination)
	}

	// Metrics count the click.
	resp, err = http.Get("http://" + a.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`clickedge_clicks_total{outcome="recorded"} 1`, "clickedge_outbox_rows", "go_goroutines", "clickedge_worker_"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestCatalogChangeReachesEdge changes the catalog at the worker: the edge
// serves the new link within 1 s, and a second start of the same data keeps
// the demo key (it is printed only once).
func TestCatalogChangeReachesEdge(t *testing.T) {
	a := startServe(t)
	if code, _ := followCode(t, a.EdgeAddr, "carol"); code != http.StatusNotFound {
		t.Fatalf("unknown code answered %d, want 404", code)
	}
	c, err := a.Worker.Catalog()
	if err != nil || c == nil {
		t.Fatalf("worker catalog: %v", err)
	}
	c.Links = append(c.Links, c.Links[0])
	c.Links[len(c.Links)-1].Code = "carol"
	start := time.Now()
	if _, err := a.Worker.SetCatalog(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	for {
		code, _ := followCode(t, a.EdgeAddr, "carol")
		if code == http.StatusFound {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("the new link was not served within 1s (still %d)", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func followCode(t *testing.T, addr, code string) (int, string) {
	t.Helper()
	resp, err := noRedirect.Get("http://" + addr + "/r/" + code)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// TestGracefulShutdown: on the stop signal /readyz answers 503 while the
// listener still accepts (load balancers drain first), then run returns.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	appc := make(chan *App, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"serve", "--data", dir, "--listen", "127.0.0.1:0", "--metrics-addr", "",
			"--nats-listen", "", "--admin-listen", "", "--demo", "--drain-delay", "1s", "--log-level", "error"}, io.Discard, io.Discard, func(a *App) { appc <- a })
	}()
	var a *App
	select {
	case a = <-appc:
	case err := <-errc:
		t.Fatalf("serve: %v", err)
	}
	if code, _ := followCode(t, a.EdgeAddr, "alice"); code != http.StatusFound {
		t.Fatalf("before shutdown: %d", code)
	}
	cancel()
	saw503 := false
	for i := 0; i < 200 && !saw503; i++ {
		resp, err := http.Get("http://" + a.EdgeAddr + "/readyz")
		if err != nil {
			break
		}
		resp.Body.Close()
		saw503 = resp.StatusCode == http.StatusServiceUnavailable
		time.Sleep(5 * time.Millisecond)
	}
	if !saw503 {
		t.Error("/readyz never answered 503 before the listener closed")
	}
	if err := <-errc; err != nil {
		t.Errorf("serve returned %v", err)
	}
	if _, err := http.Get("http://" + a.EdgeAddr + "/healthz"); err == nil {
		t.Error("the listener still accepts after run returned")
	}
}
