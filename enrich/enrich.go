// Package enrich turns what the edge knows about a request (socket peer,
// forwarding headers, User-Agent) into the facts stored with a click: the
// real client address behind trusted proxies, its stored form under the
// privacy mode, geo, browser, OS, device, bot verdict and uniqueness.
//
// It knows nothing of fasthttp: the edge passes header bytes, which are not
// retained after Enrich returns.
package enrich

import (
	"net/netip"
	"time"

	"github.com/clickedge/clickedge/geo"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultUACacheSize      = 4096
	DefaultUniqueWindow     = time.Hour
	DefaultUniqueMaxEntries = 1 << 20
)

// Config configures an Enricher. Zero fields take the documented defaults.
type Config struct {
	// TrustedProxies are the peers whose forwarding headers are believed
	// (load balancers, CDNs); see ParseTrustedProxies. Empty means the
	// socket peer is always the client.
	TrustedProxies []netip.Prefix
	// Privacy is how the client address is stored; empty means
	// PrivacyTruncate, and so does an unknown value (check configuration
	// with ParsePrivacy).
	Privacy Privacy
	// Geo resolves client addresses; nil leaves the location empty.
	Geo geo.Lookuper
	// UACacheSize bounds the cache of parsed User-Agents (by their first
	// 512 bytes); 0 means DefaultUACacheSize, the minimum is 2.
	UACacheSize int
	// UniqueWindow is how long a click of the same client IP, User-Agent
	// and link counts as a repeat; 0 means DefaultUniqueWindow.
	UniqueWindow time.Duration
	// UniqueMaxEntries bounds the keys remembered for uniqueness (about 40
	// bytes each); 0 means DefaultUniqueMaxEntries. Under a flood of
	// distinct keys the oldest are forgotten early.
	UniqueMaxEntries int
	// Now is the clock; nil means time.Now. Tests inject one.
	Now func() time.Time
}

// Input is one request as the edge saw it. The byte slices are read during
// Enrich only.
type Input struct {
	// Peer is the socket's remote address.
	Peer netip.Addr
	// XForwardedFor and Forwarded are the header values, several lines
	// joined with ","; nil when absent.
	XForwardedFor []byte
	Forwarded     []byte
	UserAgent     []byte
	// Head is set for HEAD requests.
	Head bool
	// LinkKey identifies what was clicked for uniqueness: the link code, or
	// merchant + partner for S2S clicks.
	LinkKey string
	// Time is when the request arrived, for uniqueness; zero means now by
	// the Enricher's clock. A caller that already read the clock saves a
	// read.
	Time time.Time
}

// Facts is what Enrich learns about a request.
type Facts struct {
	// ClientIP is the real client address (for geo and uniqueness); it is
	// stored only through StoredIP.
	ClientIP netip.Addr
	// StoredIP is ClientIP under the privacy mode: full text, the /24 or
	// /48 network address, or "".
	StoredIP string
	// Country (ISO 3166-1 alpha-2), Region and City from Config.Geo.
	Country, Region, City string
	// Browser, BrowserVersion and OS as the User-Agent states them (OS
	// normalised: Windows, macOS, iOS, Android, Linux, ChromeOS, ...).
	Browser, BrowserVersion, OS string
	// Device is DeviceDesktop, DeviceMobile, DeviceTablet, DeviceBot, or
	// "" when there is no User-Agent.
	Device string
	// Bot is set for crawlers, link previews and HEAD requests; BotReason
	// says why: BotReasonUA, BotReasonHead or BotReasonPreviewPrefix+name.
	Bot       bool
	BotReason string
	// NonUnique is set when the same client IP, User-Agent and LinkKey
	// clicked within the unique window.
	NonUnique bool
}

// Enricher computes Facts. It is safe for concurrent use and needs no
// closing: its caches are bounded and expire lazily.
type Enricher struct {
	trusted []netip.Prefix
	privacy Privacy
	geo     geo.Lookuper
	now     func() time.Time
	ua      *uaCache
	uniq    *uniques
	ipText  addrText
}

// New returns an Enricher for cfg, with defaults for zero fields.
func New(cfg Config) *Enricher {
	e := &Enricher{
		privacy: cfg.Privacy,
		geo:     cfg.Geo,
		now:     cfg.Now,
	}
	for _, p := range cfg.TrustedProxies {
		if p.IsValid() {
			e.trusted = append(e.trusted, normPrefix(p))
		}
	}
	switch e.privacy {
	case PrivacyFull, PrivacyDrop:
	default:
		e.privacy = PrivacyTruncate
	}
	if e.now == nil {
		e.now = time.Now
	}
	size := cfg.UACacheSize
	if size == 0 {
		size = DefaultUACacheSize
	}
	e.ua = newUACache(size)
	window := cfg.UniqueWindow
	if window <= 0 {
		window = DefaultUniqueWindow
	}
	maxEntries := cfg.UniqueMaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultUniqueMaxEntries
	}
	e.uniq = newUniques(window, maxEntries)
	return e
}

// Enrich fills f from in, overwriting every field. When the User-Agent is
// cached, the stored address text is cached and Geo is nil or does not
// allocate, Enrich does not allocate.
func (e *Enricher) Enrich(in *Input, f *Facts) {
	*f = Facts{}
	ip := ClientIP(in.Peer, in.XForwardedFor, in.Forwarded, e.trusted)
	f.ClientIP = ip
	if a, ok := storedAddr(ip, e.privacy); ok {
		f.StoredIP = e.ipText.get(a)
	}
	if e.geo != nil && ip.IsValid() {
		loc := e.geo.Lookup(ip)
		f.Country, f.Region, f.City = loc.Country, loc.Region, loc.City
	}

	ua := in.UserAgent
	if len(ua) > maxUALen {
		ua = ua[:maxUALen]
	}
	info := e.ua.get(ua)
	f.Browser, f.BrowserVersion, f.OS, f.Device = info.browser, info.browserVersion, info.os, info.device
	f.Bot, f.BotReason = info.bot, info.botReason
	if !f.Bot && in.Head {
		f.Bot, f.BotReason, f.Device = true, BotReasonHead, DeviceBot
	}

	now := in.Time
	if now.IsZero() {
		now = e.now()
	}
	f.NonUnique = e.uniq.seen(now, ip, in.UserAgent, in.LinkKey)
}
