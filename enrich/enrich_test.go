package enrich

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/clickedge/clickedge/geo"
	"github.com/clickedge/clickedge/geo/geotest"
)

func TestParsePrivacy(t *testing.T) {
	tests := []struct {
		in      string
		want    Privacy
		wantErr bool
	}{
		{"", PrivacyTruncate, false},
		{"full", PrivacyFull, false},
		{" Truncate ", PrivacyTruncate, false},
		{"DROP", PrivacyDrop, false},
		{"none", "", true},
		{"trunc", "", true},
	}
	for _, tt := range tests {
		got, err := ParsePrivacy(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParsePrivacy(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestAnonymize(t *testing.T) {
	tests := []struct {
		ip   string
		p    Privacy
		want string
	}{
		{"203.0.113.77", PrivacyFull, "203.0.113.77"},
		{"203.0.113.77", PrivacyTruncate, "203.0.113.0"},
		{"203.0.113.77", PrivacyDrop, ""},
		{"203.0.113.77", "", "203.0.113.0"},
		{"203.0.113.77", "bogus", "203.0.113.0"},
		{"::ffff:203.0.113.77", PrivacyTruncate, "203.0.113.0"},
		{"::ffff:203.0.113.77", PrivacyFull, "203.0.113.77"},
		{"2001:db8:1:2:3:4:5:6", PrivacyFull, "2001:db8:1:2:3:4:5:6"},
		{"2001:db8:1:2:3:4:5:6", PrivacyTruncate, "2001:db8:1::"},
		{"2001:db8:1:2:3:4:5:6", PrivacyDrop, ""},
		{"fe80::1%eth0", PrivacyFull, "fe80::1"},
		{"", PrivacyFull, ""},
	}
	for _, tt := range tests {
		var ip netip.Addr
		if tt.ip != "" {
			ip = netip.MustParseAddr(tt.ip)
		}
		if got := Anonymize(ip, tt.p); got != tt.want {
			t.Errorf("Anonymize(%s, %q) = %q, want %q", tt.ip, tt.p, got, tt.want)
		}
	}
}

// clock is an injectable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestUniqueness(t *testing.T) {
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	c := &clock{t: start}
	e := New(Config{Now: c.now})
	click := func(ip, ua, link string) bool {
		var f Facts
		e.Enrich(&Input{Peer: netip.MustParseAddr(ip), UserAgent: []byte(ua), LinkKey: link}, &f)
		return f.NonUnique
	}
	steps := []struct {
		name    string
		advance time.Duration
		ip, ua  string
		link    string
		want    bool
	}{
		{"first click", 0, "203.0.113.1", uaChromeWin, "abc", false},
		{"repeat", time.Minute, "203.0.113.1", uaChromeWin, "abc", true},
		{"other link", 0, "203.0.113.1", uaChromeWin, "xyz", false},
		{"other agent", 0, "203.0.113.1", uaIPhone, "abc", false},
		{"other address", 0, "203.0.113.2", uaChromeWin, "abc", false},
		{"same /24 is still another address", 0, "203.0.113.3", uaChromeWin, "abc", false},
		{"repeat just inside the window (sliding from last click)", time.Hour - time.Nanosecond, "203.0.113.1", uaChromeWin, "abc", true},
		{"after the window", time.Hour, "203.0.113.1", uaChromeWin, "abc", false},
		{"repeat again", time.Second, "203.0.113.1", uaChromeWin, "abc", true},
		{"long after", 5 * time.Hour, "203.0.113.1", uaChromeWin, "abc", false},
	}
	for _, s := range steps {
		c.t = c.t.Add(s.advance)
		if got := click(s.ip, s.ua, s.link); got != s.want {
			t.Errorf("%s (at %v): NonUnique = %v, want %v", s.name, c.t.Sub(start), got, s.want)
		}
	}
}

// TestInputTime: a request's own time replaces the Enricher's clock.
func TestInputTime(t *testing.T) {
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	c := &clock{t: start}
	e := New(Config{Now: c.now})
	in := Input{Peer: netip.MustParseAddr("203.0.113.1"), UserAgent: []byte(uaChromeWin), LinkKey: "abc"}
	var f Facts
	e.Enrich(&in, &f) // at the clock's time
	in.Time = start.Add(2 * time.Hour)
	if e.Enrich(&in, &f); f.NonUnique {
		t.Error("a click two hours later (by Input.Time) counted as a repeat")
	}
	in.Time = time.Time{}
	c.t = start.Add(2*time.Hour + time.Minute)
	if e.Enrich(&in, &f); !f.NonUnique {
		t.Error("without Input.Time the clock's time is not used")
	}
}

func TestUniquenessAcrossMidnight(t *testing.T) {
	c := &clock{t: time.Date(2025, 3, 1, 23, 59, 30, 0, time.UTC)}
	e := New(Config{Now: c.now})
	in := &Input{Peer: netip.MustParseAddr("203.0.113.1"), UserAgent: []byte(uaChromeWin), LinkKey: "abc"}
	var f Facts
	e.Enrich(in, &f)
	before := e.uniq.salt.Load()
	c.t = c.t.Add(time.Minute)
	e.Enrich(in, &f)
	if !f.NonUnique {
		t.Errorf("repeat one minute later, after midnight: NonUnique = false, want true")
	}
	after := e.uniq.salt.Load()
	if after == before || after.cur == before.cur || !after.hasPrev || after.prev != before.cur {
		t.Errorf("salt did not rotate at midnight: before %+v, after %+v", before, after)
	}
	c.t = c.t.Add(2 * time.Hour)
	e.Enrich(in, &f)
	if f.NonUnique {
		t.Errorf("two hours later: NonUnique = true, want false")
	}
}

func TestUniquenessBoundedUnderFlood(t *testing.T) {
	c := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	const maxEntries = 256
	e := New(Config{Now: c.now, UniqueMaxEntries: maxEntries})
	var f Facts
	for i := range 20000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		e.Enrich(&Input{Peer: ip, UserAgent: []byte(uaChromeWin), LinkKey: "abc"}, &f)
		if f.NonUnique {
			t.Fatalf("distinct key %d flagged as repeat", i)
		}
	}
	n := 0
	for i := range e.uniq.shards {
		s := &e.uniq.shards[i]
		n += len(s.cur) + len(s.old)
	}
	if n > maxEntries {
		t.Errorf("uniqueness holds %d keys after a flood, want at most %d", n, maxEntries)
	}
	// The most recent keys are still remembered.
	e.Enrich(&Input{Peer: netip.AddrFrom4([4]byte{10, 0, 78, 31}), UserAgent: []byte(uaChromeWin), LinkKey: "abc"}, &f)
	if !f.NonUnique {
		t.Errorf("the last key of the flood was forgotten")
	}
}

func TestEnrich(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	geotest.WriteCityDB(t, path, map[string]geo.Location{
		"198.51.100.0/24": {Country: "DE", Region: "BE", City: "Berlin"},
		"2001:db8:1::/48": {Country: "FR", Region: "IDF", City: "Paris"},
	})
	db := geo.New(path)
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	trusted := mustPrefixes(t, "10.0.0.0/8")

	tests := []struct {
		name    string
		privacy Privacy
		geo     geo.Lookuper
		in      Input
		want    Facts
	}{
		{
			name: "behind trusted proxy, truncated", geo: db,
			in: Input{Peer: netip.MustParseAddr("10.0.0.2"), XForwardedFor: []byte("198.51.100.77, 10.1.1.1"), UserAgent: []byte(uaChromeWin), LinkKey: "a"},
			want: Facts{
				ClientIP: netip.MustParseAddr("198.51.100.77"), StoredIP: "198.51.100.0",
				Country: "DE", Region: "BE", City: "Berlin",
				Browser: "Chrome", BrowserVersion: "120.0.0.0", OS: "Windows", Device: DeviceDesktop,
			},
		},
		{
			name: "untrusted peer with spoofed header, full", privacy: PrivacyFull, geo: db,
			in: Input{Peer: netip.MustParseAddr("2001:db8:1::9"), XForwardedFor: []byte("198.51.100.77"), UserAgent: []byte(uaIPhone), LinkKey: "a"},
			want: Facts{
				ClientIP: netip.MustParseAddr("2001:db8:1::9"), StoredIP: "2001:db8:1::9",
				Country: "FR", Region: "IDF", City: "Paris",
				Browser: "Safari", BrowserVersion: "17.1", OS: "iOS", Device: DeviceMobile,
			},
		},
		{
			name: "Forwarded, drop, no geo", privacy: PrivacyDrop,
			in: Input{Peer: netip.MustParseAddr("10.0.0.2"), Forwarded: []byte(`for="[2001:db8:1::5]:4711"`), UserAgent: []byte(uaIPad), LinkKey: "a"},
			want: Facts{
				ClientIP: netip.MustParseAddr("2001:db8:1::5"),
				Browser:  "Safari", BrowserVersion: "16.6", OS: "iOS", Device: DeviceTablet,
			},
		},
		{
			name: "HEAD from a browser agent", geo: db,
			in: Input{Peer: netip.MustParseAddr("192.0.2.1"), UserAgent: []byte(uaAndroidPhone), Head: true, LinkKey: "a"},
			want: Facts{
				ClientIP: netip.MustParseAddr("192.0.2.1"), StoredIP: "192.0.2.0",
				Browser: "Chrome", BrowserVersion: "120.0.0.0", OS: "Android", Device: DeviceBot,
				Bot: true, BotReason: BotReasonHead,
			},
		},
		{
			name: "HEAD from a preview agent keeps the preview reason",
			in:   Input{Peer: netip.MustParseAddr("192.0.2.1"), UserAgent: []byte("Twitterbot/1.0"), Head: true, LinkKey: "a"},
			want: Facts{
				ClientIP: netip.MustParseAddr("192.0.2.1"), StoredIP: "192.0.2.0",
				Browser: "Twitterbot", Device: DeviceBot, Bot: true, BotReason: "preview:Twitterbot",
			},
		},
		{
			name: "library bot",
			in:   Input{Peer: netip.MustParseAddr("192.0.2.1"), UserAgent: []byte(uaAhrefs), LinkKey: "a"},
			want: Facts{
				ClientIP: netip.MustParseAddr("192.0.2.1"), StoredIP: "192.0.2.0",
				Browser: "AhrefsBot", BrowserVersion: "7.0", Device: DeviceBot, Bot: true, BotReason: BotReasonUA,
			},
		},
		{
			name: "no peer, no agent",
			in:   Input{LinkKey: "a"},
			want: Facts{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New(Config{TrustedProxies: trusted, Privacy: tt.privacy, Geo: tt.geo})
			f := Facts{Country: "stale", NonUnique: true}
			e.Enrich(&tt.in, &f)
			if f != tt.want {
				t.Errorf("Enrich =\n %+v, want\n %+v", f, tt.want)
			}
		})
	}
}

func TestEnrichLongUserAgent(t *testing.T) {
	e := New(Config{UACacheSize: 8})
	long := []byte(uaChromeWin + " " + string(make([]byte, 10000)))
	var f Facts
	e.Enrich(&Input{Peer: netip.MustParseAddr("192.0.2.1"), UserAgent: long}, &f)
	if f.Browser != "Chrome" {
		t.Errorf("Browser = %q, want Chrome", f.Browser)
	}
	e.ua.shards[0].mu.RLock()
	for k := range e.ua.shards[0].cur {
		if len(k) > maxUALen {
			t.Errorf("cached key of %d bytes, want at most %d", len(k), maxUALen)
		}
	}
	e.ua.shards[0].mu.RUnlock()
}

func TestEnrichAllocs(t *testing.T) {
	trusted := mustPrefixes(t, "10.0.0.0/8")
	for _, p := range []Privacy{PrivacyTruncate, PrivacyFull, PrivacyDrop} {
		e := New(Config{TrustedProxies: trusted, Privacy: p})
		in := &Input{
			Peer: netip.MustParseAddr("10.0.0.2"), XForwardedFor: []byte("198.51.100.77, 10.1.1.1"),
			UserAgent: []byte(uaChromeWin), LinkKey: "abc",
		}
		var f Facts
		e.Enrich(in, &f) // fill the caches
		if n := testing.AllocsPerRun(200, func() { e.Enrich(in, &f) }); n != 0 {
			t.Errorf("privacy %s: Enrich allocs on a cache hit = %v, want 0", p, n)
		}
	}
}

func BenchmarkEnrich(b *testing.B) {
	path := filepath.Join(b.TempDir(), "city.mmdb")
	nets := map[string]geo.Location{}
	for i := range 64 {
		nets[fmt.Sprintf("198.51.%d.0/24", i)] = geo.Location{Country: "DE", Region: "BE", City: "Berlin"}
	}
	geotest.WriteCityDB(b, path, nets)
	db := geo.New(path)
	if err := db.Open(); err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, bc := range []struct {
		name string
		geo  geo.Lookuper
	}{{"nogeo", nil}, {"geo", db}} {
		b.Run(bc.name, func(b *testing.B) {
			e := New(Config{TrustedProxies: mustPrefixes(b, "10.0.0.0/8"), Geo: bc.geo})
			inputs := make([]Input, 256)
			for i := range inputs {
				inputs[i] = Input{
					Peer:          netip.MustParseAddr("10.0.0.2"),
					XForwardedFor: fmt.Appendf(nil, "198.51.%d.%d, 10.1.1.1", i%64, i),
					UserAgent:     []byte(uaCorpus[i%len(uaCorpus)]),
					LinkKey:       fmt.Sprintf("link%d", i%7),
				}
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var f Facts
				i := 0
				for pb.Next() {
					e.Enrich(&inputs[i%len(inputs)], &f)
					i++
				}
			})
		})
	}
}
