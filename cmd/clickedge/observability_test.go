package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/clickedge/clickedge/geo"
	"github.com/clickedge/clickedge/geo/geotest"
)

// The observability deliverables in deploy/ are checked against the real
// Prometheus tools (Debian package prometheus: promtool and prometheus). Each
// test skips when its tool is missing, unless CLICKEDGE_REQUIRE_TOOLS=1 (CI
// sets it after installing them): then it fails.

// obsNeedTool returns the path of name, or skips (fails under
// CLICKEDGE_REQUIRE_TOOLS=1) when it is not on PATH.
func obsNeedTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CLICKEDGE_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s is not on PATH and CLICKEDGE_REQUIRE_TOOLS=1: %v", name, err)
		}
		t.Skipf("%s is not on PATH (apt-get install prometheus); set CLICKEDGE_REQUIRE_TOOLS=1 to fail instead", name)
	}
	return p
}

// obsDeployPath returns the absolute path of a file under deploy/ and fails the
// test when it does not exist.
func obsDeployPath(t *testing.T, parts ...string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(append([]string{"..", "..", "deploy"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("deliverable missing: %v", err)
	}
	return p
}

// obsRunTool runs a command for at most a minute and returns its combined output.
func obsRunTool(t *testing.T, stdin io.Reader, dir, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s %s: timed out after 1m: %w", name, strings.Join(args, " "), ctx.Err())
	}
	return string(out), err
}

// startObservedServe starts serve with a geo database, so that every metric
// the deliverables use is registered.
func startObservedServe(t *testing.T) *App {
	t.Helper()
	mmdb := filepath.Join(t.TempDir(), "city.mmdb")
	geotest.WriteCityDB(t, mmdb, map[string]geo.Location{"81.2.69.0/24": {Country: "GB", City: "London"}})
	return startServe(t, "--geoip", mmdb)
}

// obsExercise follows the demo link alice n times from one client (the first
// click is recorded, the others are non-unique repeats within the hour),
// fires one Partnac conversion with the first click's id, and asks for an
// unknown conversion pixel (which registers the pixel counter and records
// nothing). It returns once the worker has attributed the conversion.
func obsExercise(t *testing.T, a *App, n int) {
	t.Helper()
	var first string
	for i := 0; i < n; i++ {
		id, _ := clickID(t, a.EdgeAddr, "alice", "click_id")
		if first == "" {
			first = id
		}
	}
	base := "http://" + a.EdgeAddr
	code, resp := call(t, "POST", base+"/v1/tracking/conversions", `{"partnership_code":"ALICE10","unique_id":"obs_order_1",
		"conversion_type":"sale","amount":42.00,"session_id":"`+first+`","metadata":{"currency":"USD"}}`)
	if d := data(resp); code != http.StatusCreated || d["attributed_by"] != "click_id" || d["partnership_id"] != "alice" {
		t.Fatalf("conversion: %d %v; want 201, alice by click_id", code, resp)
	}
	pix, err := noRedirect.Get(base + "/pixel.gif?pid=px_does_not_exist&order_id=obs_px&amount=1.00&currency=USD")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, pix.Body)
	pix.Body.Close()
}

// obsSampleValue returns the value of one series in an exposition.
func obsSampleValue(exposition, series string) (float64, bool) {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

func obsScrape(t *testing.T, a *App) string {
	t.Helper()
	resp, err := noRedirect.Get("http://" + a.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(body)
}

// obsScrapedNames returns the metric names a Prometheus server would store from
// an exposition: every family named by a TYPE line, with the _bucket, _sum
// and _count series of histograms and the _sum and _count of summaries.
func obsScrapedNames(exposition string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(exposition, "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		names[f[2]] = true
		switch f[3] {
		case "histogram":
			names[f[2]+"_bucket"], names[f[2]+"_sum"], names[f[2]+"_count"] = true, true, true
		case "summary":
			names[f[2]+"_sum"], names[f[2]+"_count"] = true, true
		}
	}
	return names
}

// TestPromtoolCheckMetrics lints a live scrape of serve, with labelled series
// of every kind present, with promtool check metrics: any problem it reports
// (errors and lint warnings alike) fails.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := obsNeedTool(t, "promtool")
	a := startObservedServe(t)
	obsExercise(t, a, 3)
	body := obsScrape(t, a)
	// The scrape must hold the labelled series the lint is meant to cover.
	for series, want := range map[string]float64{
		`clickedge_clicks_total{outcome="recorded"}`:                                     1,
		`clickedge_edge_request_duration_seconds_bucket{route="redirect",le="+Inf"}`:     3,
		`clickedge_worker_conversions_total{attributed_by="click_id",dialect="partnac"}`: 1,
		`clickedge_edge_pixel_requests_total{outcome="unknown_pixel"}`:                   1,
		`clickedge_geo_database_build_timestamp_seconds`:                                 geotest.BuildEpoch,
	} {
		if got, ok := obsSampleValue(body, series); !ok || got != want {
			t.Errorf("scrape: %s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	// No lint is ignored: promtool reports nothing for a clean exposition.
	out, err := obsRunTool(t, strings.NewReader(body), "", promtool, "check", "metrics")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// alertRules is the part of a Prometheus rules file the tests read.
type alertRules struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func obsReadYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

// TestPromtoolRules checks deploy/prometheus with promtool (check rules, test
// rules, check config) and that the files say what the deployment needs:
// every alert has a severity, summary, description and runbook, and unit
// tests where it fires and where it does not; the scrape config names the
// compose targets.
func TestPromtoolRules(t *testing.T) {
	dir := filepath.Dir(obsDeployPath(t, "prometheus", "alerts.yml"))

	var rules alertRules
	obsReadYAML(t, filepath.Join(dir, "alerts.yml"), &rules)
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("alert %s: severity %q, want critical or warning", r.Alert, s)
			}
			for _, k := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					t.Errorf("alert %s has no %s annotation", r.Alert, k)
				}
			}
		}
	}
	for _, want := range []string{"ClickedgeOutboxGrowing", "ClickedgeOutboxOldestRowTooOld", "ClickedgeNATSDisconnected",
		"ClickedgeEdgeHigh5xxRatio", "ClickedgeClicksDropped", "ClickedgeOutboxPublishErrors", "ClickedgeGeoDatabaseStale",
		"ClickedgeGeoDatabaseMissing", "ClickedgeEdgeCatalogBehind", "ClickedgeWorkerClickLagHigh", "ClickedgeWorkerClickLagGrowing"} {
		if !alerts[want] {
			t.Errorf("alerts.yml lacks %s", want)
		}
	}

	var tests struct {
		RuleFiles []string `json:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string            `json:"alertname"`
				ExpAlerts []json.RawMessage `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	obsReadYAML(t, filepath.Join(dir, "alerts_test.yml"), &tests)
	if !slices.Equal(tests.RuleFiles, []string{"alerts.yml"}) {
		t.Errorf("alerts_test.yml rule_files = %v, want [alerts.yml]", tests.RuleFiles)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, at := range tc.AlertRuleTest {
			if !alerts[at.Alertname] {
				t.Errorf("alerts_test.yml tests unknown alert %s", at.Alertname)
			}
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			} else {
				quiet[at.Alertname] = true
			}
		}
	}
	for a := range alerts {
		if !fires[a] || !quiet[a] {
			t.Errorf("alert %s: tested firing %v, tested quiet %v; want both", a, fires[a], quiet[a])
		}
	}

	var cfg struct {
		RuleFiles     []string `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	obsReadYAML(t, filepath.Join(dir, "prometheus.yml"), &cfg)
	if !slices.Contains(cfg.RuleFiles, "alerts.yml") {
		t.Errorf("prometheus.yml rule_files = %v, want alerts.yml", cfg.RuleFiles)
	}
	jobs := map[string][]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, s := range sc.StaticConfigs {
			jobs[sc.JobName] = append(jobs[sc.JobName], s.Targets...)
		}
	}
	for job, want := range map[string][]string{
		"clickedge-edge":   {"edge1:9090", "edge2:9090"},
		"clickedge-worker": {"worker:9090"},
	} {
		if got := jobs[job]; !slices.Equal(got, want) {
			t.Errorf("prometheus.yml job %s targets = %v, want %v", job, got, want)
		}
	}

	promtool := obsNeedTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		out, err := obsRunTool(t, nil, dir, promtool, args...)
		if err != nil || !strings.Contains(out, "SUCCESS") || strings.Contains(out, "FAILED") || strings.Contains(out, "WARNING") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// grafanaDashboard is the part of the Grafana dashboard model the tests read.
type grafanaDashboard struct {
	SchemaVersion int `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashPanel `json:"panels"`
}

type dashPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource *dashDatasource `json:"datasource"`
	Targets    []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource *dashDatasource `json:"datasource"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // collapsed rows
}

type dashDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// dashQuery is one panel target's expression, with Grafana's variables
// replaced by what a query of the whole fleet would use.
type dashQuery struct {
	Panel, RefID, Raw, Expr string
}

// grafanaBuiltins are the Grafana variables the dashboard may use without
// defining them, with the value the tests substitute.
var grafanaBuiltins = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "15s",
	"__range":         "5m",
}

var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)

// loadDashboard parses deploy/grafana/dashboards/clickedge.json, checks its
// model (schema version, the datasource and instance variables, every panel
// and target on ${datasource}) and returns its queries.
func loadDashboard(t *testing.T) []dashQuery {
	t.Helper()
	raw, err := os.ReadFile(obsDeployPath(t, "grafana", "dashboards", "clickedge.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("clickedge.json: %v", err)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion = %d, want a current one (39)", d.SchemaVersion)
	}
	vars := map[string]string{}
	for k, v := range grafanaBuiltins {
		vars[k] = v
	}
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			if v.Query != "prometheus" {
				t.Errorf("variable %s: datasource query %v, want prometheus", v.Name, v.Query)
			}
			vars[v.Name] = "" // never inside an expression
		case "query", "custom":
			vars[v.Name] = ".*" // the All value, a regex
		default:
			t.Errorf("variable %s of type %s: the tests do not know how to substitute it", v.Name, v.Type)
		}
	}
	if _, ok := vars["datasource"]; !ok {
		t.Error("dashboard has no datasource variable")
	}
	if _, ok := vars["instance"]; !ok {
		t.Error("dashboard has no instance variable")
	}

	var qs []dashQuery
	ids := map[int]bool{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
				t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q target %s: datasource %+v, want ${datasource}", p.Title, tg.RefID, tg.Datasource)
				}
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q target %s has no expr", p.Title, tg.RefID)
					continue
				}
				expr := grafanaVar.ReplaceAllStringFunc(tg.Expr, func(m string) string {
					sm := grafanaVar.FindStringSubmatch(m)
					name := sm[1] + sm[2] + sm[3]
					if v, ok := vars[name]; ok {
						return v
					}
					if _, err := strconv.Atoi(name); err == nil {
						return m // a regex group reference such as label_replace's "$1"
					}
					t.Errorf("panel %q target %s uses undefined variable %s", p.Title, tg.RefID, m)
					return m
				})
				qs = append(qs, dashQuery{Panel: p.Title, RefID: tg.RefID, Raw: tg.Expr, Expr: expr})
			}
		}
	}
	walk(d.Panels)
	if len(qs) < 10 {
		t.Fatalf("dashboard has %d queries, want the full set of panels", len(qs))
	}
	return qs
}

// promqlNotMetrics are the PromQL words that look like metric names.
var promqlNotMetrics = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true, "atan2": true,
	// Aggregation operators may be followed by a by/without clause rather
	// than by "(".
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true}

// obsMetricNames returns the metric names an expression selects: identifiers
// outside strings, label matchers, ranges and grouping lists that are not
// followed by "(" (functions, aggregations) and are not keywords.
func obsMetricNames(expr string) []string {
	var out []string
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
	}
	skipQuoted := func(i int) int { // i at the opening quote; returns the index after the closing one
		q := expr[i]
		for i++; i < len(expr); i++ {
			if expr[i] == '\\' && q != '`' {
				i++
				continue
			}
			if expr[i] == q {
				return i + 1
			}
		}
		return i
	}
	skipTo := func(i int, closing byte) int { // i at the opening bracket
		for i++; i < len(expr) && expr[i] != closing; {
			if c := expr[i]; c == '"' || c == '\'' || c == '`' {
				i = skipQuoted(i)
			} else {
				i++
			}
		}
		return i + 1
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipQuoted(i)
		case c == '{':
			i = skipTo(i, '}')
		case c == '[':
			i = skipTo(i, ']')
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			j := i
			for j < len(expr) && isIdent(expr[j], false) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\t' || expr[k] == '\n') {
				k++
			}
			followedByParen := k < len(expr) && expr[k] == '('
			switch {
			case word == "by" || word == "without" || word == "on" || word == "ignoring" || word == "group_left" || word == "group_right":
				if followedByParen {
					j = skipTo(k, ')')
				}
			case promqlNotMetrics[strings.ToLower(word)] || followedByParen:
			default:
				out = append(out, word)
			}
			i = j
		default:
			i++
		}
	}
	return out
}

func TestDashboardMetricNameExtraction(t *testing.T) {
	for _, tt := range []struct {
		expr string
		want []string
	}{
		{`sum by (instance, le) (rate(a_bucket{route="redirect", instance=~"x|y"}[1m]))`, []string{"a_bucket"}},
		{`histogram_quantile(0.99, sum by (le) (rate(b_bucket[5m])))`, []string{"b_bucket"}},
		{`a / on () group_left (x) max(b) > bool 0.5 and c unless d offset 5m`, []string{"a", "b", "c", "d"}},
		{`sum by (d) (label_replace(rate(r{route=~"(p|q)_.*"}[1m]), "d", "$1", "route", "(p|q)_.*"))`, []string{"r"}},
		{`(time() - g{i=~".*"}) and g != 0`, []string{"g", "g"}},
		{`job:rate5m:sum{a='}'} * 1e3 + Inf`, []string{"job:rate5m:sum"}},
	} {
		if got := obsMetricNames(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("obsMetricNames(%s) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}

// TestDashboardQueries checks every query of the Grafana dashboard: after
// the variables are substituted it is valid PromQL (promtool check rules on
// the queries as recording rules), and every metric it names is in a live
// scrape of serve (histograms by their _bucket, _sum and _count series).
// It also checks the Grafana provisioning files.
func TestDashboardQueries(t *testing.T) {
	var ds struct {
		Datasources []struct {
			Name, Type, URL, UID string
			IsDefault            bool `json:"isDefault"`
		} `json:"datasources"`
	}
	obsReadYAML(t, obsDeployPath(t, "grafana", "provisioning", "datasources", "prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" || !ds.Datasources[0].IsDefault {
		t.Errorf("provisioned datasources = %+v, want the default prometheus at http://prometheus:9090", ds.Datasources)
	}
	var prov struct {
		Providers []struct {
			Type    string `json:"type"`
			Options struct {
				Path string `json:"path"`
			} `json:"options"`
		} `json:"providers"`
	}
	obsReadYAML(t, obsDeployPath(t, "grafana", "provisioning", "dashboards", "clickedge.yml"), &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path == "" {
		t.Errorf("dashboard providers = %+v, want one file provider with a path", prov.Providers)
	}

	qs := loadDashboard(t)

	// Every metric exists (no tool needed).
	a := startObservedServe(t)
	obsExercise(t, a, 2)
	names := obsScrapedNames(obsScrape(t, a))
	for _, q := range qs {
		ms := obsMetricNames(q.Expr)
		if len(ms) == 0 {
			t.Errorf("panel %q target %s selects no metric: %s", q.Panel, q.RefID, q.Raw)
		}
		for _, m := range ms {
			if !names[m] {
				t.Errorf("panel %q target %s uses %s, which serve does not export", q.Panel, q.RefID, m)
			}
		}
	}

	promtool := obsNeedTool(t, "promtool")
	// Valid PromQL: promtool parses each query as a recording rule.
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range qs {
		expr, _ := json.Marshal(q.Expr) // a JSON string is a YAML double-quoted scalar
		fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %s\n", i, expr)
	}
	rulesFile := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	if err := os.WriteFile(rulesFile, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := obsRunTool(t, nil, "", promtool, "check", "rules", rulesFile); err != nil || !strings.Contains(out, fmt.Sprintf("SUCCESS: %d rules found", len(qs))) {
		t.Errorf("dashboard queries are not all valid PromQL: %v\n%s\nqueries:\n%s", err, out, rules.String())
	}
}

// obsLogBuffer collects a child process's output for failure messages.
type obsLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *obsLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *obsLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// promServer is a real Prometheus on loopback.
type promServer struct {
	base string
	logs *obsLogBuffer
	done chan struct{}
}

// startPrometheus runs the prometheus binary with cfg on a free loopback
// port and waits (at most 30 s) until it is ready. It stops at cleanup.
func startPrometheus(t *testing.T, bin, cfg string) *promServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--log.level=warn")
	// Stop it gently first; CommandContext kills it after WaitDelay.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	p := &promServer{base: "http://" + addr, logs: &obsLogBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start prometheus: %v", err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("prometheus log:\n%s", p.logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("prometheus exited before it was ready:\n%s", p.logs.String())
		default:
		}
		resp, err := noRedirect.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready in 30s (last: %v)\n%s", err, p.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promResponse is the envelope of the Prometheus HTTP API.
type promResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

func (p *promServer) get(path string, form url.Values) (promResponse, error) {
	var r promResponse
	resp, err := noRedirect.Get(p.base + path + "?" + form.Encode())
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("%s: %d %s: %w", path, resp.StatusCode, body, err)
	}
	return r, nil
}

// query runs an instant query and returns the sample values of its vector
// (or scalar) result.
func (p *promServer) query(q string) ([]float64, promResponse, error) {
	r, err := p.get("/api/v1/query", url.Values{"query": {q}})
	if err != nil {
		return nil, r, err
	}
	if r.Status != "success" {
		return nil, r, fmt.Errorf("query %s: %s: %s", q, r.ErrorType, r.Error)
	}
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return nil, r, err
	}
	var raw [][2]any
	switch d.ResultType {
	case "vector":
		var vs []struct {
			Value [2]any `json:"value"`
		}
		if err := json.Unmarshal(d.Result, &vs); err != nil {
			return nil, r, err
		}
		for _, v := range vs {
			raw = append(raw, v.Value)
		}
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(d.Result, &v); err != nil {
			return nil, r, err
		}
		raw = append(raw, v)
	default:
		return nil, r, fmt.Errorf("query %s: result type %s", q, d.ResultType)
	}
	var out []float64
	for _, v := range raw {
		s, _ := v[1].(string)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, r, fmt.Errorf("query %s: value %v: %w", q, v[1], err)
		}
		out = append(out, f)
	}
	return out, r, nil
}

// TestPrometheusEndToEnd scrapes serve with the real Prometheus (every 1 s,
// with alerts.yml loaded), sends N redirects and one conversion, and reads
// the exact counts back through the query API; then every dashboard query
// must succeed, and return data, and every alert rule must evaluate cleanly.
func TestPrometheusEndToEnd(t *testing.T) {
	bin := obsNeedTool(t, "prometheus")
	alertsFile := obsDeployPath(t, "prometheus", "alerts.yml")
	qs := loadDashboard(t)

	a := startObservedServe(t)
	rulesJSON, _ := json.Marshal(alertsFile)
	p := startPrometheus(t, bin, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: clickedge-serve
    static_configs:
      - targets: [%q]
`, rulesJSON, a.MetricsAddr))

	const n = 5
	obsExercise(t, a, n)

	want := map[string]float64{
		`up{job="clickedge-serve"}`:                                                                   1,
		`sum(clickedge_clicks_total)`:                                                                 n,
		`sum(clickedge_clicks_total{outcome="recorded"})`:                                             1,
		`sum(clickedge_clicks_total{outcome="non_unique"})`:                                           n - 1,
		`sum(clickedge_edge_requests_total{route="redirect", code="3xx"})`:                            n,
		`sum(clickedge_edge_request_duration_seconds_count{route="redirect"})`:                        n,
		`sum(clickedge_worker_clicks_consumed_total{result="stored"})`:                                n,
		`sum(clickedge_worker_conversions_total)`:                                                     1,
		`sum(clickedge_worker_conversions_total{dialect="partnac", attributed_by="click_id"})`:        1,
		`sum(clickedge_worker_events_total{kind="conversion", outcome="applied"})`:                    1,
		`sum(clickedge_worker_ledger_entries_total{kind="commission"})`:                               1,
		`sum(clickedge_worker_ledger_minor_total{kind="commission", currency="USD"})`:                 420, // 10 % of 42.00
		`sum(clickedge_worker_events_total{kind="conversion", dialect="partnac", outcome="applied"})`: 1,
		`sum(clickedge_edge_pixel_requests_total{outcome="unknown_pixel"})`:                           1,
		`sum(clickedge_outbox_published_total)`:                                                       n + 1, // the clicks and the conversion
		`sum(clickedge_outbox_rows)`:                                                                  0,
		`sum(clickedge_clicks_dropped_total)`:                                                         0,
		`sum(clickedge_nats_connected)`:                                                               1,
		`sum(clickedge_geo_database_build_timestamp_seconds)`:                                         geotest.BuildEpoch,
		`count(clickedge_edge_catalog_version == on () group_left () clickedge_catalog_version)`:      1,
	}
	got := map[string]string{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mismatch := false
		for q, w := range want {
			vs, r, err := p.query(q)
			switch {
			case err != nil && r.Status == "error":
				t.Fatalf("query %s: %v", q, err) // a bad query never improves
			case err != nil:
				got[q] = err.Error()
				mismatch = true
			case len(vs) != 1:
				got[q] = fmt.Sprintf("%d samples", len(vs))
				mismatch = true
			case vs[0] != w:
				got[q] = strconv.FormatFloat(vs[0], 'g', -1, 64)
				mismatch = true
			default:
				delete(got, q)
			}
		}
		if !mismatch {
			break
		}
		if time.Now().After(deadline) {
			for q, g := range got {
				t.Errorf("after 30s, %s = %s, want %v", q, g, want[q])
			}
			t.FailNow()
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Every dashboard query succeeds, and all but the 5xx ratio (there are
	// no 5xx responses, so it is empty) return data once Prometheus has the
	// two scrapes a rate needs.
	deadline = time.Now().Add(30 * time.Second)
	for {
		var empty []dashQuery
		for _, q := range qs {
			vs, r, err := p.query(q.Expr)
			if err != nil || r.Status != "success" {
				t.Fatalf("panel %q target %s: %v\n%s", q.Panel, q.RefID, err, q.Expr)
			}
			if len(vs) == 0 && !strings.Contains(q.Expr, `code="5xx"`) {
				empty = append(empty, q)
			}
		}
		if len(empty) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, q := range empty {
				t.Errorf("panel %q target %s returned no data for 30s: %s", q.Panel, q.RefID, q.Expr)
			}
			break
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Every alert rule loaded and evaluated without error.
	var rules alertRules
	obsReadYAML(t, alertsFile, &rules)
	wantRules := 0
	for _, g := range rules.Groups {
		wantRules += len(g.Rules)
	}
	var lastProblem error
	deadline = time.Now().Add(30 * time.Second)
	for {
		lastProblem = checkRulesHealthy(p, wantRules)
		if lastProblem == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert rules after 30s: %v", lastProblem)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkRulesHealthy reports whether Prometheus has loaded want rules and
// evaluated each of them without error.
func checkRulesHealthy(p *promServer, want int) error {
	r, err := p.get("/api/v1/rules", nil)
	if err != nil {
		return err
	}
	if r.Status != "success" {
		return fmt.Errorf("rules API: %s: %s", r.ErrorType, r.Error)
	}
	var d struct {
		Groups []struct {
			Rules []struct {
				Name           string `json:"name"`
				Health         string `json:"health"`
				LastError      string `json:"lastError"`
				LastEvaluation string `json:"lastEvaluation"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return err
	}
	var errs []error
	got := 0
	for _, g := range d.Groups {
		for _, rule := range g.Rules {
			got++
			if rule.Health != "ok" {
				errs = append(errs, fmt.Errorf("rule %s: health %q %s", rule.Name, rule.Health, rule.LastError))
			}
		}
	}
	if got != want {
		errs = append(errs, fmt.Errorf("%d rules loaded, want %d", got, want))
	}
	return errors.Join(errs...)
}
