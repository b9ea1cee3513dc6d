package redirect

import (
	"strings"
	"testing"
)

func TestIndexLookup(t *testing.T) {
	c := testCatalog(t)
	x := NewIndex(c)
	if x.Version() != 7 || x.Catalog() != c {
		t.Fatalf("Version, Catalog = %d, %p; want 7, %p", x.Version(), x.Catalog(), c)
	}
	tests := []struct {
		code                        string
		ok                          bool
		campaign, partner, merchant string
		paused                      bool
	}{
		{code: "abc", ok: true, campaign: "c1", partner: "p1", merchant: "m1"},
		{code: "m2link", ok: true, campaign: "c3", partner: "p3", merchant: "m2"},
		{code: "paused", ok: true, campaign: "c1", partner: "p2", merchant: "m1", paused: true},
		{code: "ABC"},
		{code: ""},
		{code: "abc\x00"},
	}
	for _, tt := range tests {
		r, ok := x.Lookup([]byte(tt.code))
		if ok != tt.ok {
			t.Errorf("Lookup(%q) ok = %v, want %v", tt.code, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		got := [4]string{r.Link.Code, r.Campaign.ID, r.Partner.ID, r.Merchant.ID}
		if want := [4]string{tt.code, tt.campaign, tt.partner, tt.merchant}; got != want {
			t.Errorf("Lookup(%q) = %q, want %q", tt.code, got, want)
		}
		if r.Link.Paused != tt.paused {
			t.Errorf("Lookup(%q).Link.Paused = %v, want %v", tt.code, r.Link.Paused, tt.paused)
		}
		if r.Link != &c.Links[indexOfLink(c, tt.code)] {
			t.Errorf("Lookup(%q) does not point into the catalog", tt.code)
		}
	}
}

func indexOfLink(c *Catalog, code string) int {
	for i := range c.Links {
		if c.Links[i].Code == code {
			return i
		}
	}
	return -1
}

func TestIndexLookupAllocs(t *testing.T) {
	x := NewIndex(testCatalog(t))
	code, host := []byte("def"), []byte("A.Track.Shop.Example:8443")
	got := testing.AllocsPerRun(100, func() {
		if _, ok := x.Lookup(code); !ok {
			t.Fatal("not found")
		}
		if _, ok := x.MerchantByHost(host); !ok {
			t.Fatal("host not found")
		}
		if _, ok := x.MerchantByKey(testKeyM1); !ok {
			t.Fatal("key not found")
		}
		if _, ok := x.PartnerByKey("m1", "bob"); !ok {
			t.Fatal("partner not found")
		}
	})
	if got != 0 {
		t.Errorf("allocs = %v, want 0", got)
	}
}

// TestResolvedCookieName: the precomputed name is Campaign.Cookie(), also
// for a hand-built Resolved, and costs nothing per call.
func TestResolvedCookieName(t *testing.T) {
	x := NewIndex(testCatalog(t))
	for _, code := range []string{"abc", "def", "m2link"} {
		r, _ := x.Lookup([]byte(code))
		if got, want := r.CookieName(), r.Campaign.Cookie(); got != want {
			t.Errorf("%s: CookieName = %q, want %q", code, got, want)
		}
		hand := Resolved{Link: r.Link, Campaign: r.Campaign, Partner: r.Partner, Merchant: r.Merchant}
		if got, want := hand.CookieName(), r.Campaign.Cookie(); got != want {
			t.Errorf("%s hand-built: CookieName = %q, want %q", code, got, want)
		}
		if n := testing.AllocsPerRun(100, func() { _ = r.CookieName() }); n != 0 {
			t.Errorf("%s: CookieName allocs = %v, want 0", code, n)
		}
	}
}

func TestIndexMerchantByKey(t *testing.T) {
	x := NewIndex(testCatalog(t))
	tests := []struct {
		key, want string
	}{
		{testKeyM1, "m1"},
		{strings.ToUpper(testKeyM1), ""},
		{testKeyM1 + " ", ""},
		{"", ""},
		{HashAPIKey(testKeyM1), ""}, // the stored hash is not a key
	}
	for _, tt := range tests {
		m, ok := x.MerchantByKey(tt.key)
		got := ""
		if ok {
			got = m.ID
		}
		if got != tt.want {
			t.Errorf("MerchantByKey(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestIndexMerchantByHost(t *testing.T) {
	x := NewIndex(testCatalog(t))
	tests := []struct {
		host, want string
	}{
		{"track.shop.example", "m1"},
		{"TRACK.Shop.Example:443", "m1"},
		{"a.b.track.shop.example", "m1"},
		{"track.shop.example.", "m1"},
		{"m2.example", "m2"}, // configured as ".M2.example."
		{"go.m2.example:80", "m2"},
		{"shop.example", ""},
		{"xtrack.shop.example", ""},
		{"track.shop.example.evil", ""},
		{"example", ""},
		{"", ""},
		{":443", ""},
		{"[::1]:443", ""},
		{strings.Repeat("a.", 200) + "m2.example", ""}, // longer than a host name can be
		{strings.Repeat("a.", 100) + "m2.example", "m2"},
	}
	for _, tt := range tests {
		m, ok := x.MerchantByHost([]byte(tt.host))
		got := ""
		if ok {
			got = m.ID
		}
		if got != tt.want {
			t.Errorf("MerchantByHost(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
}

func FuzzMerchantByHost(f *testing.F) {
	x := NewIndex(testCatalog(f))
	for _, s := range []string{"track.shop.example", "A.M2.EXAMPLE.:1", "[::1]:80", "", ".", "..m2.example", "m2.example\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, host []byte) {
		m, ok := x.MerchantByHost(host)
		if !ok {
			return
		}
		// The match must be the host itself or a parent domain of it.
		h := strings.ToLower(string(host))
		if i := strings.IndexByte(h, ':'); i >= 0 {
			h = h[:i]
		}
		h = strings.TrimSuffix(h, ".")
		d := normDomain(m.CookieDomain)
		if h != d && !strings.HasSuffix(h, "."+d) {
			t.Fatalf("MerchantByHost(%q) = %s with cookie domain %q", host, m.ID, d)
		}
	})
}

func TestIndexEntities(t *testing.T) {
	x := NewIndex(testCatalog(t))
	if m, ok := x.Merchant("m2"); !ok || m.ID != "m2" {
		t.Errorf("Merchant(m2) = %v, %v", m, ok)
	}
	if _, ok := x.Merchant("m9"); ok {
		t.Errorf("Merchant(m9) found")
	}
	if k, ok := x.Campaign("c2"); !ok || k.ID != "c2" {
		t.Errorf("Campaign(c2) = %v, %v", k, ok)
	}
	if _, ok := x.Campaign("m1"); ok {
		t.Errorf("Campaign(m1) found")
	}
	if p, ok := x.Partner("p3"); !ok || p.Key != "carol" {
		t.Errorf("Partner(p3) = %v, %v", p, ok)
	}
	tests := []struct {
		merchant, key, want string
	}{
		{"m1", "alice", "p1"},
		{"m1", "bob", "p2"},
		{"m2", "carol", "p3"},
		{"m2", "alice", ""},
		{"m1", "Alice", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		p, ok := x.PartnerByKey(tt.merchant, tt.key)
		got := ""
		if ok {
			got = p.ID
		}
		if got != tt.want {
			t.Errorf("PartnerByKey(%q, %q) = %q, want %q", tt.merchant, tt.key, got, tt.want)
		}
	}
}

func TestIndexDefaultCampaignAndLinkFor(t *testing.T) {
	x := NewIndex(testCatalog(t))
	campaigns := []struct {
		merchant, partner, want string
	}{
		{"m1", "p1", "c1"}, // first link abc
		{"m1", "p2", "c1"},
		{"m1", "p4", "c1"}, // no links: merchant's first campaign
		{"m1", "", "c1"},
		{"m1", "p3", "c1"}, // partner of another merchant
		{"m2", "p3", "c3"},
		{"m9", "p1", ""},
	}
	for _, tt := range campaigns {
		k, ok := x.DefaultCampaign(tt.merchant, tt.partner)
		got := ""
		if ok {
			got = k.ID
		}
		if got != tt.want {
			t.Errorf("DefaultCampaign(%q, %q) = %q, want %q", tt.merchant, tt.partner, got, tt.want)
		}
	}
	links := []struct {
		campaign, partner, want string
	}{
		{"c1", "p1", "abc"},
		{"c2", "p1", "def"}, // def before def2
		{"c1", "p2", "ghi"},
		{"c3", "p3", "m2link"},
		{"c1", "p4", ""},
		{"c3", "p1", ""},
	}
	for _, tt := range links {
		l, ok := x.LinkFor(tt.campaign, tt.partner)
		got := ""
		if ok {
			got = l.Code
		}
		if got != tt.want {
			t.Errorf("LinkFor(%q, %q) = %q, want %q", tt.campaign, tt.partner, got, tt.want)
		}
	}
}

func TestIndexPartnerSecondCampaign(t *testing.T) {
	c := testCatalog(t)
	c.Links = append([]Link{{Code: "first", CampaignID: "c2", PartnerID: "p4"}}, c.Links...)
	x := NewIndex(c)
	if k, ok := x.DefaultCampaign("m1", "p4"); !ok || k.ID != "c2" {
		t.Errorf("DefaultCampaign(m1, p4) = %v, %v; want c2", k, ok)
	}
}

func TestNewIndexNil(t *testing.T) {
	x := NewIndex(nil)
	if x.Version() != 0 {
		t.Errorf("Version = %d, want 0", x.Version())
	}
	if _, ok := x.Lookup([]byte("abc")); ok {
		t.Error("Lookup found a link in an empty index")
	}
	if _, ok := x.MerchantByHost([]byte("a.example")); ok {
		t.Error("MerchantByHost found a merchant in an empty index")
	}
}

func BenchmarkLookup(b *testing.B) {
	x := NewIndex(testCatalog(b))
	code := []byte("def")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := x.Lookup(code); !ok {
			b.Fatal("not found")
		}
	}
}

func TestIndexConversionLookups(t *testing.T) {
	c := &Catalog{
		Merchants: []Merchant{{ID: "m"}, {ID: "n"}},
		Campaigns: []Campaign{{ID: "k", MerchantID: "m", DefaultDestination: "https://a.example/", PixelID: "px_1"}},
		Partners: []Partner{
			{ID: "p", MerchantID: "m", Key: "P", Email: "Pat@Example.com", CouponCodes: []string{"summer20"}},
			{ID: "q", MerchantID: "n", Key: "Q", CouponCodes: []string{"SUMMER20"}},
		},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	x := NewIndex(c)
	if k, ok := x.CampaignByPixel("px_1"); !ok || k.ID != "k" {
		t.Errorf("CampaignByPixel = %v, %v", k, ok)
	}
	if _, ok := x.CampaignByPixel("px_2"); ok {
		t.Error("unknown pixel found")
	}
	tests := []struct {
		merchant, code, want string
	}{
		{"m", "SUMMER20", "p"}, {"m", "Summer20", "p"}, {"n", "summer20", "q"}, {"m", "WINTER", ""},
	}
	for _, tt := range tests {
		got := ""
		if p, ok := x.PartnerByCoupon(tt.merchant, tt.code); ok {
			got = p.ID
		}
		if got != tt.want {
			t.Errorf("PartnerByCoupon(%s, %s) = %q, want %q", tt.merchant, tt.code, got, tt.want)
		}
	}
	if p, ok := x.PartnerByEmail("m", "pat@example.COM"); !ok || p.ID != "p" {
		t.Errorf("PartnerByEmail = %v, %v", p, ok)
	}
	if _, ok := x.PartnerByEmail("n", "pat@example.com"); ok {
		t.Error("PartnerByEmail crossed merchants")
	}
}
