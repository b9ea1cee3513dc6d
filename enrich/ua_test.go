package enrich

import (
	"fmt"
	"testing"
)

const (
	uaChromeWin     = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	uaEdgeWin       = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0"
	uaSafariMac     = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"
	uaFirefoxLinux  = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
	uaChromeOS      = "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	uaIPhone        = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
	uaIPad          = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
	uaAndroidPhone  = "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"
	uaAndroidTablet = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	uaFirefoxTablet = "Mozilla/5.0 (Android 13; Tablet; rv:120.0) Gecko/120.0 Firefox/120.0"
	uaKindle        = "Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; KFTT Build/IML74K) AppleWebKit/537.36 (KHTML, like Gecko) Silk/3.68 like Chrome/39.0.2171.93 Safari/537.36"
	uaAhrefs        = "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"
)

func TestParseUA(t *testing.T) {
	tests := []struct {
		name string
		ua   string
		want uaInfo
	}{
		{"chrome windows", uaChromeWin, uaInfo{browser: "Chrome", browserVersion: "120.0.0.0", os: "Windows", device: DeviceDesktop}},
		{"edge windows", uaEdgeWin, uaInfo{browser: "Edge", browserVersion: "120.0.0.0", os: "Windows", device: DeviceDesktop}},
		{"safari mac", uaSafariMac, uaInfo{browser: "Safari", browserVersion: "17.1", os: "macOS", device: DeviceDesktop}},
		{"firefox linux", uaFirefoxLinux, uaInfo{browser: "Firefox", browserVersion: "121.0", os: "Linux", device: DeviceDesktop}},
		{"chromebook", uaChromeOS, uaInfo{browser: "Chrome", browserVersion: "120.0.0.0", os: "ChromeOS", device: DeviceDesktop}},
		{"iphone", uaIPhone, uaInfo{browser: "Safari", browserVersion: "17.1", os: "iOS", device: DeviceMobile}},
		{"ipad", uaIPad, uaInfo{browser: "Safari", browserVersion: "16.6", os: "iOS", device: DeviceTablet}},
		{"android phone", uaAndroidPhone, uaInfo{browser: "Chrome", browserVersion: "120.0.0.0", os: "Android", device: DeviceMobile}},
		{"android tablet", uaAndroidTablet, uaInfo{browser: "Chrome", browserVersion: "120.0.0.0", os: "Android", device: DeviceTablet}},
		{"firefox tablet", uaFirefoxTablet, uaInfo{browser: "Firefox", browserVersion: "120.0", os: "Android", device: DeviceTablet}},
		{"kindle", uaKindle, uaInfo{browser: "Android", browserVersion: "3.68", os: "Android", device: DeviceTablet}},
		{"curl is not a bot", "curl/8.4.0", uaInfo{browser: "curl", browserVersion: "8.4.0", device: DeviceDesktop}},
		{"empty", "", uaInfo{}},
		{"library bot verdict", uaAhrefs, uaInfo{browser: "AhrefsBot", browserVersion: "7.0", device: DeviceBot, bot: true, botReason: BotReasonUA}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := *parseUA(tt.ua)
			want := tt.want
			want.ua = tt.ua
			if got != want {
				t.Errorf("parseUA(%q) =\n %+v, want\n %+v", tt.ua, got, want)
			}
		})
	}
}

func TestPreviewAgents(t *testing.T) {
	tests := []struct{ ua, name string }{
		{"Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "Slackbot"},
		{"Slackbot 1.0 (+https://api.slack.com/robots)", "Slackbot"},
		{"Twitterbot/1.0", "Twitterbot"},
		{"facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "facebookexternalhit"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0", "facebookexternalhit"},
		{"LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)", "LinkedInBot"},
		{"Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", "Discordbot"},
		{"WhatsApp/2.23.20.0 A", "WhatsApp"},
		{"TelegramBot (like TwitterBot)", "TelegramBot"},
		{"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot"},
		{"Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.71 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot"},
		{"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bingbot"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)", "Applebot"},
		{"Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", "YandexBot"},
		{"Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5", "SkypeUriPreview"},
	}
	for _, tt := range tests {
		got := parseUA(tt.ua)
		if !got.bot || got.botReason != BotReasonPreviewPrefix+tt.name || got.device != DeviceBot || got.browser != tt.name {
			t.Errorf("parseUA(%q) = %+v, want bot with reason %q, device bot, browser %q", tt.ua, *got, BotReasonPreviewPrefix+tt.name, tt.name)
		}
	}
	// Browsers that merely mention an app are not previews.
	for _, ua := range []string{
		uaChromeWin,
		"Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 WhatsApp-InApp",
	} {
		if got := parseUA(ua); got.bot {
			t.Errorf("parseUA(%q) = bot %q, want a person", ua, got.botReason)
		}
	}
}

func TestUACacheBound(t *testing.T) {
	for _, size := range []int{1, 2, 5, 64, 4096} {
		c := newUACache(size)
		hot := []byte(uaChromeWin)
		first := c.get(hot)
		for i := range 3 * max(size, 100) {
			c.get(fmt.Appendf(nil, "agent/%d", i))
			if got := c.get(hot); got != first && size >= 64 {
				t.Fatalf("size %d: hot agent was evicted after %d others", size, i)
			}
			if n := c.len(); n > max(size, 2) {
				t.Fatalf("size %d: cache holds %d entries", size, n)
			}
		}
		if got := c.get(hot); *got != *first {
			t.Errorf("size %d: re-parsed agent = %+v, want %+v", size, *got, *first)
		}
	}
}

func TestUACacheHitAllocs(t *testing.T) {
	c := newUACache(64)
	ua := []byte(uaIPhone)
	c.get(ua)
	if n := testing.AllocsPerRun(100, func() { c.get(ua) }); n != 0 {
		t.Errorf("cache hit allocs = %v, want 0", n)
	}
}

var uaCorpus = []string{uaChromeWin, uaEdgeWin, uaSafariMac, uaFirefoxLinux, uaIPhone, uaIPad, uaAndroidPhone, uaAndroidTablet, uaAhrefs}

func BenchmarkParseUA(b *testing.B) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		parseUA(uaCorpus[i%len(uaCorpus)])
		i++
	}
}

func BenchmarkParseUACached(b *testing.B) {
	c := newUACache(DefaultUACacheSize)
	corpus := make([][]byte, len(uaCorpus))
	for i, s := range uaCorpus {
		corpus[i] = []byte(s)
		c.get(corpus[i])
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.get(corpus[i%len(corpus)])
			i++
		}
	})
}
