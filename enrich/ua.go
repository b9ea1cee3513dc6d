package enrich

import (
	"hash/maphash"
	"strings"
	"sync"

	"github.com/mssola/useragent"
)

// Bot reasons carried in Facts.BotReason.
const (
	// BotReasonUA means the user-agent library classified the agent as a bot.
	BotReasonUA = "ua"
	// BotReasonHead means the request was a HEAD: browsers following a link
	// send GET, link checkers and unfurlers send HEAD.
	BotReasonHead = "head"
	// BotReasonPreviewPrefix prefixes the name of a known link-preview agent
	// or search crawler: "preview:Slackbot".
	BotReasonPreviewPrefix = "preview:"
)

// Device classes carried in Facts.Device.
const (
	DeviceDesktop = "desktop"
	DeviceMobile  = "mobile"
	DeviceTablet  = "tablet"
	DeviceBot     = "bot"
)

// maxUALen bounds the part of a User-Agent that is parsed and cached: real
// agents are far shorter, and the bound keeps the cache's memory bounded.
const maxUALen = 512

// previewAgents are link unfurlers and crawlers that fetch a link without a
// person behind the click, matched case-insensitively, first match wins
// (TelegramBot says "like TwitterBot", iMessage sends both facebookexternalhit
// and Twitterbot). curl, wget and HTTP libraries are deliberately absent:
// they are often a merchant's own server-side redirect check or an app, and
// are left to the library's verdict.
var previewAgents = []struct {
	needle string // lower case
	prefix bool   // match only at the start of the agent
	name   string
}{
	{"telegrambot", false, "TelegramBot"},
	{"whatsapp/", true, "WhatsApp"},
	{"slackbot", false, "Slackbot"},
	{"slack-imgproxy", false, "Slackbot"},
	{"discordbot", false, "Discordbot"},
	{"linkedinbot", false, "LinkedInBot"},
	{"facebookexternalhit", false, "facebookexternalhit"},
	{"facebot", false, "Facebot"},
	{"twitterbot", false, "Twitterbot"},
	{"skypeuripreview", false, "SkypeUriPreview"},
	{"pinterestbot", false, "Pinterestbot"},
	{"redditbot", false, "redditbot"},
	{"embedly", false, "Embedly"},
	{"vkshare", false, "vkShare"},
	{"viber", false, "Viber"},
	{"googlebot", false, "Googlebot"},
	{"adsbot-google", false, "AdsBot-Google"},
	{"google-inspectiontool", false, "Google-InspectionTool"},
	{"bingbot", false, "bingbot"},
	{"bingpreview", false, "BingPreview"},
	{"applebot", false, "Applebot"},
	{"yandexbot", false, "YandexBot"},
	{"baiduspider", false, "Baiduspider"},
	{"duckduckbot", false, "DuckDuckBot"},
}

// uaInfo is what a User-Agent says, parsed once and shared read-only.
type uaInfo struct {
	ua             string
	browser        string
	browserVersion string
	os             string
	device         string
	bot            bool
	botReason      string
}

// parseUA classifies one User-Agent string.
func parseUA(ua string) *uaInfo {
	info := &uaInfo{ua: ua}
	if ua == "" {
		return info
	}
	p := useragent.New(ua)
	info.browser, info.browserVersion = p.Browser()
	info.os = osName(p)
	lower := strings.ToLower(ua)
	for _, a := range previewAgents {
		if (a.prefix && strings.HasPrefix(lower, a.needle)) || (!a.prefix && strings.Contains(lower, a.needle)) {
			info.bot, info.botReason, info.device = true, BotReasonPreviewPrefix+a.name, DeviceBot
			info.browser, info.browserVersion = a.name, ""
			return info
		}
	}
	switch {
	case p.Bot():
		info.bot, info.botReason, info.device = true, BotReasonUA, DeviceBot
	case isTablet(ua):
		info.device = DeviceTablet
	case p.Mobile():
		info.device = DeviceMobile
	default:
		info.device = DeviceDesktop
	}
	return info
}

// isTablet recognises tablets the library reports as mobile: iPads, Android
// without the "Mobile" token (Google's convention for tablets), Firefox's
// "Tablet" token, Kindle and PlayBook.
func isTablet(ua string) bool {
	switch {
	case strings.Contains(ua, "iPad"),
		strings.Contains(ua, "Kindle"), strings.Contains(ua, "Silk/"),
		strings.Contains(ua, "PlayBook"):
		return true
	case strings.Contains(ua, "Tablet") && !strings.Contains(ua, "Tablet PC"):
		return true
	case strings.Contains(ua, "Android") && !strings.Contains(ua, "Mobile"):
		return true
	}
	return false
}

// osName normalises the library's OS names to the ones people search for.
func osName(p *useragent.UserAgent) string {
	switch p.Platform() {
	case "iPhone", "iPad", "iPod", "iPod touch":
		return "iOS"
	}
	switch name := p.OSInfo().Name; {
	case name == "iPhone OS":
		return "iOS"
	case name == "Mac OS X" || name == "Mac OS":
		return "macOS"
	case strings.HasPrefix(name, "CrOS"):
		return "ChromeOS"
	default:
		return name
	}
}

// uaCache is a bounded, sharded cache of parsed agents. Each shard keeps
// two generations: hits come from cur (or are promoted from old), and when
// cur is full it becomes old and the previous old is dropped. A flood of
// distinct agents therefore costs at most the configured number of entries,
// while agents in steady use survive.
type uaCache struct {
	seed   maphash.Seed
	shards []uaShard
	perGen int
}

type uaShard struct {
	mu       sync.RWMutex
	cur, old map[string]*uaInfo
}

const maxUAShards = 16

// newUACache returns a cache holding at most size entries; size < 2 is
// raised to 2 (one entry per generation).
func newUACache(size int) *uaCache {
	size = max(size, 2)
	n := 1
	for n < maxUAShards && size/(2*n*2) >= 1 {
		n *= 2
	}
	c := &uaCache{seed: maphash.MakeSeed(), shards: make([]uaShard, n), perGen: size / (2 * n)}
	for i := range c.shards {
		c.shards[i].cur = make(map[string]*uaInfo)
	}
	return c
}

// get returns the parsed agent, parsing it on a miss. A hit does not
// allocate.
func (c *uaCache) get(ua []byte) *uaInfo {
	s := &c.shards[maphash.Bytes(c.seed, ua)&uint64(len(c.shards)-1)]
	s.mu.RLock()
	info, ok := s.cur[string(ua)]
	s.mu.RUnlock()
	if ok {
		return info
	}
	s.mu.Lock()
	if info, ok = s.old[string(ua)]; ok {
		s.put(info, c.perGen)
	}
	s.mu.Unlock()
	if ok {
		return info
	}
	info = parseUA(string(ua))
	s.mu.Lock()
	if prev, ok := s.cur[info.ua]; ok {
		info = prev // parsed concurrently; keep one copy
	} else {
		s.put(info, c.perGen)
	}
	s.mu.Unlock()
	return info
}

func (s *uaShard) put(info *uaInfo, perGen int) {
	if len(s.cur) >= perGen {
		s.old, s.cur = s.cur, make(map[string]*uaInfo, perGen)
	}
	s.cur[info.ua] = info
}

// len counts cached entries.
func (c *uaCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.cur) + len(s.old)
		s.mu.RUnlock()
	}
	return n
}
