package attribution

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/clickedge/clickedge/redirect"
)

func TestExampleCatalogs(t *testing.T) {
	fromYAML, err := LoadCatalogFile(filepath.Join("..", "docs", "catalog.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := LoadCatalogFile(filepath.Join("..", "docs", "catalog.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromYAML, fromJSON) {
		t.Errorf("the YAML and JSON examples differ:\nyaml %+v\njson %+v", fromYAML, fromJSON)
	}
	// The example documents every field: each must be set somewhere, or a
	// field added to the catalog types went undocumented.
	for _, unset := range zeroFields(reflect.ValueOf(*fromYAML), "catalog") {
		if unset == "catalog.Version" || unset == "catalog.UpdatedAt" || unset == "catalog.SourceDigest" {
			continue // assigned by the worker; documented as such
		}
		t.Errorf("example catalog never sets %s", unset)
	}
}

// zeroFields names the struct fields that are zero in v and in every element
// of every slice of v.
func zeroFields(v reflect.Value, path string) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Struct:
			if v.Type().PkgPath() == "time" {
				return
			}
			for i := range v.NumField() {
				name := path + "." + v.Type().Field(i).Name
				f := v.Field(i)
				if !f.IsZero() {
					seen[name] = true
				} else if _, ok := seen[name]; !ok {
					seen[name] = false
				}
				walk(f, name)
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i), path)
			}
		}
	}
	walk(v, path)
	for name, set := range seen {
		if !set {
			out = append(out, name)
		}
	}
	return out
}

func TestLoadCatalogFile(t *testing.T) {
	dir := t.TempDir()
	demo, err := json.Marshal(DemoCatalog("ce_live_x"))
	if err != nil {
		t.Fatal(err)
	}
	demoYAML, err := yaml.JSONToYAML(demo)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    string
		data    string
		wantErr string // substring; "" means success
		wantIs  error
	}{
		{"json demo", "c.json", string(demo), "", nil},
		{"yaml demo", "c.yaml", string(demoYAML), "", nil},
		{"yml extension", "c.YML", string(demoYAML), "", nil},
		{"json unknown field", "c.json", `{"merchants":[{"id":"m","nmae":"typo"}]}`, "unknown field", nil},
		{"yaml unknown field", "c.yaml", "merchants:\n- id: m\n  nmae: typo\n", "unknown field", nil},
		{"yaml duplicate field", "c.yaml", "merchants: []\nmerchants: []\n", "already set", nil},
		{"json trailing data", "c.json", `{"version":1} {}`, "data after", nil},
		{"json empty", "c.json", " \n", "empty", nil},
		{"yaml comment only", "c.yaml", "# nothing\n", "not a mapping", nil},
		{"yaml list", "c.yaml", "- a\n", "not a mapping", nil},
		{"invalid reference", "c.yaml", "merchants: [{id: m}]\ncampaigns: [{id: k, merchant_id: x, default_destination: 'https://e.com/'}]\n",
			"unknown merchant", redirect.ErrInvalidCatalog},
		{"bad extension", "c.toml", "version = 1", "unknown extension", nil},
	}
	for _, tt := range tests {
		path := filepath.Join(dir, tt.file)
		if err := os.WriteFile(path, []byte(tt.data), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := LoadCatalogFile(path)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantErr == "" && !reflect.DeepEqual(got, DemoCatalog("ce_live_x")):
			t.Errorf("%s: got %+v, want the demo catalog", tt.name, got)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.wantErr)
		case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
			t.Errorf("%s: err = %v, want it to wrap %v", tt.name, err, tt.wantIs)
		}
	}
	if _, err := LoadCatalogFile(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want ErrNotExist", err)
	}
}

func TestDemoCatalog(t *testing.T) {
	c := DemoCatalog("ce_live_abc")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Merchants[0].APIKeyHashes, []string{redirect.HashAPIKey("ce_live_abc")}; !reflect.DeepEqual(got, want) {
		t.Errorf("key hashes = %v, want %v", got, want)
	}
	if got := DemoCatalog("").Merchants[0].APIKeyHashes; got != nil {
		t.Errorf("no key: hashes = %v, want none", got)
	}
	links := map[string]redirect.Link{}
	for _, l := range c.Links {
		links[l.Code] = l
	}
	tests := []struct{ code, campaign, partner, dest string }{
		{"alice", "spring", "alice", ""},
		{"bob", "spring", "bob", ""},
		{"alice-s2s", "s2s", "alice", ""},
		{"bob-deep", "spring", "bob", "https://example.com/p/{sub1}?ref={partner_key}"},
		{"carol-afk", "affilync", "carol", ""},
	}
	for _, tt := range tests {
		l, ok := links[tt.code]
		got := []string{l.CampaignID, l.PartnerID, l.Destination}
		if want := []string{tt.campaign, tt.partner, tt.dest}; !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("link %s = %v (found %v), want %v", tt.code, got, ok, want)
		}
	}
	s2s := c.Campaigns[1]
	if s2s.ID != "s2s" || s2s.Cookie() != "partnero_partner" || s2s.Holds() != redirect.CookiePartnerKey || !s2s.PassPartnerKey {
		t.Errorf("s2s campaign = %+v, want Partnero style", s2s)
	}
	if w := c.Campaigns[0].Window(); w != redirect.DefaultWindow {
		t.Errorf("spring window = %v, want %v", w, redirect.DefaultWindow)
	}
	x := redirect.NewIndex(c)
	spring, _ := x.CampaignByPixel("px_spring_demo")
	afk, _ := x.CampaignByPixel("px_demo")
	if spring == nil || spring.ID != "spring" || spring.Currency != "USD" || spring.Cookie() != "ce_spring" ||
		!reflect.DeepEqual(spring.Commissions, []redirect.CommissionRule{{Type: "sale", PercentBPS: 1000}, {Type: "lead", FlatMinor: 500}}) {
		t.Errorf("spring campaign = %+v, want USD, 10 %% of sales, 5.00 per lead, cookie unchanged", spring)
	}
	if afk == nil || afk.ID != "affilync" || afk.Cookie() != "afk_cid" || afk.Param() != "afk_cid" ||
		!reflect.DeepEqual(afk.Commissions, []redirect.CommissionRule{{Type: "sale", PercentBPS: 1000}}) {
		t.Errorf("affilync campaign = %+v, want Affilync style", afk)
	}
	if p, ok := x.PartnerByCoupon("demo", "summer20"); !ok || p.ID != "carol" || p.Key != "CAROL5" {
		t.Errorf("coupon SUMMER20 belongs to %+v, want carol (CAROL5)", p)
	}
	if p, ok := x.PartnerByCoupon("demo", "ALICE10"); !ok || p.ID != "alice" {
		t.Errorf("coupon ALICE10 belongs to %+v, want alice", p)
	}
	// Callers may edit the demo: each call must be independent.
	c.Merchants[0].AllowedDomains[0] = "evil.example"
	if DemoCatalog("ce_live_abc").Merchants[0].AllowedDomains[0] != "example.com" {
		t.Error("DemoCatalog shares slices between calls")
	}
}

func TestNewAPIKey(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		k, err := NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		rest, ok := strings.CutPrefix(k, APIKeyPrefix)
		if !ok || len(rest) != 32 || strings.Trim(rest, base62) != "" {
			t.Fatalf("key %q: want %s + 32 base62 characters", k, APIKeyPrefix)
		}
		if seen[k] {
			t.Fatalf("key %q returned twice", k)
		}
		seen[k] = true
	}
}

// FuzzLoadCatalog feeds arbitrary bytes to both decoders. Neither may panic;
// whatever is accepted must validate and must survive a round trip through
// its canonical JSON and through YAML unchanged.
func FuzzLoadCatalog(f *testing.F) {
	// Seeds stay small: the fuzzer minimises every new interesting input by
	// rerunning the target on cuts of it, which on kilobyte documents (the
	// demo, the documented examples; tested elsewhere) takes a minute each.
	f.Add([]byte(`{"merchants":[{"id":"m","allowed_domains":["a"]}],"campaigns":[{"id":"k","merchant_id":"m",` +
		`"default_destination":"http://a/"}],"partners":[{"id":"p","merchant_id":"m","key":"K"}],` +
		`"links":[{"code":"c","campaign_id":"k","partner_id":"p"}]}`))
	f.Add([]byte("merchants: [{id: m}]\ncampaigns: [{id: k, merchant_id: m, default_destination: 'http://a/', cookie_holds: partner_key}]\n" +
		"partners: [{id: p, merchant_id: m, key: K, coupon_codes: [X]}]\nlinks: [{code: c, campaign_id: k, partner_id: p, paused: true}]\n"))
	f.Add([]byte(`{"version":18446744073709551615,"updated_at":"2024-02-29T23:59:59.999999999+14:00","merchants":[]}`))
	f.Add([]byte("merchants:\n- id: m\n  name: yes\ncampaigns: [{id: k, merchant_id: m, default_destination: 'http://a/', window_seconds: 0x10}]\n"))
	f.Add([]byte("version: 1\nupdated_at: 2024-01-01T00:00:00Z\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []string{FormatJSON, FormatYAML} {
			c, err := DecodeCatalog(data, format)
			if err != nil {
				continue
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("%s: accepted a catalog that does not validate: %v", format, err)
			}
			canon, err := json.Marshal(c)
			if err != nil {
				t.Fatalf("%s: accepted catalog does not marshal: %v", format, err)
			}
			back, err := DecodeCatalog(canon, FormatJSON)
			if err != nil {
				t.Fatalf("%s: canonical JSON %s does not load: %v", format, canon, err)
			}
			again, _ := json.Marshal(back)
			if !bytes.Equal(again, canon) {
				t.Fatalf("%s: JSON round trip changed the catalog:\n%s\n%s", format, canon, again)
			}
			y, err := yaml.JSONToYAML(canon)
			if err != nil {
				t.Fatalf("%s: canonical JSON does not convert to YAML: %v", format, err)
			}
			backY, err := DecodeCatalog(y, FormatYAML)
			if err != nil {
				t.Fatalf("%s: YAML form %s does not load: %v", format, y, err)
			}
			againY, _ := json.Marshal(backY)
			if !bytes.Equal(againY, canon) {
				t.Fatalf("%s: YAML round trip changed the catalog:\n%s\n%s", format, canon, againY)
			}
		}
	})
}
