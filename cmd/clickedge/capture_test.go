package main

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// metricValue reads one sample (name with labels, as exposed) from /metrics.
func metricValue(t *testing.T, a *App, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sample, err)
			}
			return f
		}
	}
	return -1
}

func listedTotal(t *testing.T, a *App) int {
	t.Helper()
	var l listed
	if code := getJSON(t, "http://"+a.EdgeAddr+"/v1/tracking/clicks?limit=100", testKey, &l); code != 200 {
		t.Fatalf("list status %d", code)
	}
	return l.Pagination.Total
}

func waitTotal(t *testing.T, a *App, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := listedTotal(t, a)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker lists %d clicks, want %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func postS2SClick(t *testing.T, a *App) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.EdgeAddr+"/v1/tracking/clicks",
		strings.NewReader(`{"partnership_code":"ALICE10","click_url":"https://example.com/?sub1=x"}`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestCaptureAsyncEndToEnd: under --capture async the clicks still go
// through the outbox to NATS and the worker, and a merchant write is still
// answered after its commit.
func TestCaptureAsyncEndToEnd(t *testing.T) {
	a := startServe(t, "--capture", "async", "--commit-interval", "5ms")
	const n = 25
	for range n {
		if code, loc := followCode(t, a.EdgeAddr, "alice"); code != http.StatusFound || !strings.Contains(loc, "click_id=") {
			t.Fatalf("redirect: %d %q", code, loc)
		}
	}
	if code := postS2SClick(t, a); code != http.StatusCreated {
		t.Fatalf("S2S click: %d", code)
	}
	waitTotal(t, a, n+1)
	if got := metricValue(t, a, "clickedge_outbox_published_total"); got != n+1 {
		t.Errorf("published = %v, want %d", got, n+1)
	}
	if got := metricValue(t, a, `clickedge_clicks_total{outcome="not_captured"}`); got != 0 {
		t.Errorf("not_captured = %v under async", got)
	}
	if got := metricValue(t, a, "clickedge_outbox_async_lost_total"); got != 0 {
		t.Errorf("async lost = %v", got)
	}
}

// TestCaptureNoneEndToEnd: --capture none redirects and records nothing, but
// merchant writes are recorded as always.
func TestCaptureNoneEndToEnd(t *testing.T) {
	a := startServe(t, "--capture", "none")
	for range 5 {
		if code, loc := followCode(t, a.EdgeAddr, "alice"); code != http.StatusFound || !strings.Contains(loc, "click_id=") {
			t.Fatalf("redirect: %d %q", code, loc)
		}
	}
	if code, _ := followCode(t, a.EdgeAddr, "nope"); code != http.StatusNotFound {
		t.Fatalf("unknown code: %d", code)
	}
	if got := metricValue(t, a, `clickedge_clicks_total{outcome="not_captured"}`); got != 6 {
		t.Errorf("not_captured = %v, want 6", got)
	}
	if got := metricValue(t, a, "clickedge_outbox_commits_total"); got != 0 {
		t.Errorf("outbox commits = %v, want 0", got)
	}
	if code := postS2SClick(t, a); code != http.StatusCreated {
		t.Fatalf("S2S click: %d", code)
	}
	waitTotal(t, a, 1)
}

func TestCaptureUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--capture", "sometimes"}, "--capture"},
		{[]string{"--capture", "async", "--commit-interval", "6ms"}, "--commit-interval"},
		{[]string{"--commit-interval", "-1ms"}, "--commit-interval"},
	} {
		args := append([]string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--metrics-addr", "", "--nats-listen", "",
			"--admin-listen", "", "--log-level", "error"}, tt.args...)
		err := run(context.Background(), args, io.Discard, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) != 2 {
			t.Errorf("run(%q) = %v, want a usage error about %q", tt.args, err, tt.want)
		}
	}
	// Durable capture may wait longer between commits.
	c, err := parseFlags("edge", []string{"--commit-interval", "20ms"}, io.Discard, func(string) (string, bool) { return "", false })
	if err != nil || c.CommitInterval != 20*time.Millisecond || c.Capture != "durable" {
		t.Errorf("parseFlags = %+v, %v", c, err)
	}
}
