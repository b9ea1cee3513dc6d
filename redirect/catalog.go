package redirect

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// DefaultWindow is the attribution window of a campaign that sets none.
const DefaultWindow = 30 * 24 * time.Hour

// DefaultClickParam is the query parameter that carries the click id to the
// destination when a campaign names none.
const DefaultClickParam = "click_id"

// CookieHolds says what a campaign's first-party cookie carries.
type CookieHolds string

const (
	// CookieClickID stores the click id (Partnac session_id, Affilync afk_cid style).
	CookieClickID CookieHolds = "click_id"
	// CookiePartnerKey stores the partner key (Partnero partnero_partner style).
	CookiePartnerKey CookieHolds = "partner_key"
)

// Merchant is a tenant: it owns campaigns and API keys.
type Merchant struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// APIKeyHashes are hex SHA-256 digests of the merchant's API keys; keys
	// themselves are never stored. See HashAPIKey.
	APIKeyHashes []string `json:"api_key_hashes,omitempty"`
	// APIKeys are the keys issued through the admin API, each with an id so
	// that it can be listed and revoked; only its hash is kept.
	APIKeys []APIKey `json:"api_keys,omitempty"`
	// CookieDomain is set as the cookie's Domain attribute when the edge is
	// reached through a merchant CNAME (track.merchant.com); empty means host-only.
	CookieDomain string `json:"cookie_domain,omitempty"`
	// AllowedDomains are the hosts (and their subdomains) that destinations and
	// deep links of this merchant may point to.
	AllowedDomains []string `json:"allowed_domains,omitempty"`
	// FallbackURL receives visitors of unknown or paused codes of this merchant.
	FallbackURL string `json:"fallback_url,omitempty"`
}

// APIKey is a merchant API key issued by the admin API. The key itself is
// shown once when it is created; the catalog holds its SHA-256 (see
// HashAPIKey) and a short prefix by which an operator recognises it.
type APIKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name,omitempty"`
	Prefix    string     `json:"prefix"`
	Hash      string     `json:"hash"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Active reports whether the key authenticates: it is not revoked.
func (k *APIKey) Active() bool { return k.RevokedAt == nil }

// ActiveKeyHashes returns the hashes of every key that authenticates the
// merchant: the catalog file's APIKeyHashes and the unrevoked APIKeys.
func (m *Merchant) ActiveKeyHashes() []string {
	out := make([]string, 0, len(m.APIKeyHashes)+len(m.APIKeys))
	out = append(out, m.APIKeyHashes...)
	for i := range m.APIKeys {
		if m.APIKeys[i].Active() {
			out = append(out, m.APIKeys[i].Hash)
		}
	}
	return out
}

// Campaign groups links under one destination, window and cookie policy.
type Campaign struct {
	ID                 string `json:"id"`
	MerchantID         string `json:"merchant_id"`
	Name               string `json:"name,omitempty"`
	DefaultDestination string `json:"default_destination"`
	// WindowSeconds is the attribution window; 0 means DefaultWindow.
	WindowSeconds int64 `json:"window_seconds,omitempty"`
	// ClickParam is the destination query parameter holding the click id; empty means DefaultClickParam.
	ClickParam string `json:"click_param,omitempty"`
	// CookieName is the first-party cookie set on redirect; empty means "ce_<campaign id>".
	CookieName string `json:"cookie_name,omitempty"`
	// CookieHolds says whether the cookie carries the click id or the partner key; empty means click id.
	CookieHolds CookieHolds `json:"cookie_holds,omitempty"`
	// PassPartnerKey appends the partner key to the destination as
	// PartnerParam() (Partnero pure S2S).
	PassPartnerKey bool `json:"pass_partner_key,omitempty"`
	// PartnerKeyParam is the destination query parameter holding the partner
	// key when PassPartnerKey is set ("the exact query parameter depends on
	// your program"); empty means DefaultPartnerKeyParam. A visitor's own
	// parameter of this name is never passed through.
	PartnerKeyParam string `json:"partner_key_param,omitempty"`
	// AllowedDomains adds to the merchant's allowed domains for this campaign's deep links.
	AllowedDomains []string `json:"allowed_domains,omitempty"`

	// Currency is the campaign's default currency (ISO 4217); empty means USD.
	Currency string `json:"currency,omitempty"`
	// Attribution is AttributionLastClick (default) or AttributionFirstClick.
	Attribution string `json:"attribution,omitempty"`
	// MinClickToConversionSeconds flags a conversion sooner than this after
	// its click as suspect; 0 turns the check off.
	MinClickToConversionSeconds int64 `json:"min_click_to_conversion_seconds,omitempty"`
	// HoldSeconds approves a pending conversion automatically this long after
	// it was recorded; 0 means only an explicit approval does.
	HoldSeconds int64 `json:"hold_seconds,omitempty"`
	// Commissions are the campaign's commission rules; the most specific
	// match wins (see CommissionRule). No match earns nothing.
	Commissions []CommissionRule `json:"commissions,omitempty"`
	// RecurringMonths: later subscription payments of an attributed customer
	// earn for this many months after the customer's first attributed
	// conversion; with RecurringLifetime they earn for the customer's
	// lifetime. Both zero: only the first subscription payment earns.
	RecurringMonths   int  `json:"recurring_months,omitempty"`
	RecurringLifetime bool `json:"recurring_lifetime,omitempty"`
	// PixelID is the public id the campaign's browser pixels authenticate
	// with; pixels never carry the merchant's secret key.
	PixelID string `json:"pixel_id,omitempty"`
}

// Attribution models of a campaign.
const (
	AttributionLastClick  = "last_click"
	AttributionFirstClick = "first_click"
)

// CommissionRule says what a partner earns on a conversion. A rule matches
// when each of its non-empty fields equals the conversion's; among matches
// the most specific wins: ProductID, then ProductType, then Type, then the
// catch-all (all empty). A rule pays PercentBPS of the amount plus FlatMinor.
type CommissionRule struct {
	// Type matches the conversion type (sale, lead, referral, subscription,
	// custom, signup, trial, or a Partnero action); empty matches any.
	Type        string `json:"type,omitempty"`
	ProductID   string `json:"product_id,omitempty"`
	ProductType string `json:"product_type,omitempty"`
	// PercentBPS is the commission in basis points of the amount (1000 = 10 %).
	PercentBPS int64 `json:"percent_bps,omitempty"`
	// FlatMinor is a flat commission in minor units of the conversion's currency.
	FlatMinor int64 `json:"flat_minor,omitempty"`
}

// Partner is an affiliate who shares links.
type Partner struct {
	ID         string `json:"id"`
	MerchantID string `json:"merchant_id"`
	// Key is the referral key / partnership code (Partnero ?aff=, Partnac partnership_code).
	Key         string   `json:"key"`
	Email       string   `json:"email,omitempty"`
	CouponCodes []string `json:"coupon_codes,omitempty"`
}

// Link is a short code that redirects a visitor for one partner in one campaign.
type Link struct {
	Code       string `json:"code"`
	CampaignID string `json:"campaign_id"`
	PartnerID  string `json:"partner_id"`
	// Destination is a URL template with macros {click_id}, {partner_key},
	// {campaign_id}, {link_code}, {sub1}…{sub5}; empty means the campaign's
	// default destination. See AppendDestination.
	Destination string `json:"destination,omitempty"`
	// NoPassthrough turns off passing the visitor's query parameters to the destination.
	NoPassthrough bool `json:"no_passthrough,omitempty"`
	// FallbackURL overrides the merchant's fallback for this link when it is paused.
	FallbackURL string `json:"fallback_url,omitempty"`
	Paused      bool   `json:"paused,omitempty"`
}

// Catalog is everything an edge needs to answer redirects and authenticate
// merchants. It is published by the worker as one versioned document.
type Catalog struct {
	// Version increases with every change the worker publishes.
	Version   uint64    `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
	// SourceDigest is the hex SHA-256 of the catalog file this catalog was
	// last seeded from (set by the worker; empty when it never was). A
	// worker started again with the same file keeps the catalog as it is,
	// admin changes included.
	SourceDigest string     `json:"source_digest,omitempty"`
	Merchants    []Merchant `json:"merchants"`
	Campaigns    []Campaign `json:"campaigns"`
	Partners     []Partner  `json:"partners"`
	Links        []Link     `json:"links"`
}

// HashAPIKey returns the hex SHA-256 digest under which an API key is stored.
// Keys are random and long, so an unsalted fast hash is enough to make the
// stored form useless to a thief while keeping lookup O(1).
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Window returns the campaign's attribution window.
func (c *Campaign) Window() time.Duration {
	if c.WindowSeconds <= 0 {
		return DefaultWindow
	}
	return time.Duration(c.WindowSeconds) * time.Second
}

// Param returns the query parameter that carries the click id.
func (c *Campaign) Param() string {
	if c.ClickParam == "" {
		return DefaultClickParam
	}
	return c.ClickParam
}

// PartnerParam returns the query parameter that carries the partner key.
func (c *Campaign) PartnerParam() string {
	if c.PartnerKeyParam == "" {
		return DefaultPartnerKeyParam
	}
	return c.PartnerKeyParam
}

// Cookie returns the name of the campaign's first-party cookie.
func (c *Campaign) Cookie() string {
	if c.CookieName == "" {
		return "ce_" + c.ID
	}
	return c.CookieName
}

// Holds returns what the campaign's cookie carries.
func (c *Campaign) Holds() CookieHolds {
	if c.CookieHolds == "" {
		return CookieClickID
	}
	return c.CookieHolds
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ErrInvalidCatalog wraps every validation failure of Catalog.Validate.
var ErrInvalidCatalog = errors.New("invalid catalog")

// Validate checks references and formats. Ids are restricted to
// [A-Za-z0-9_-] so that they are safe as NATS subject tokens and bbolt keys.
// Destination templates must be absolute http(s) URLs without userinfo whose
// host is written literally (no macro, escape or "{"); allowed and cookie
// domains must be host names ("*." or "." prefixes allowed); an API key hash
// and a cookie domain belong to one merchant only.
func (c *Catalog) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidCatalog, fmt.Sprintf(format, a...))
	}
	merchants := map[string]bool{}
	keyHashes := map[string]string{}
	cookieDomains := map[string]string{}
	for _, m := range c.Merchants {
		if !idPattern.MatchString(m.ID) {
			return bad("merchant id %q: want 1-64 of [A-Za-z0-9_-]", m.ID)
		}
		if merchants[m.ID] {
			return bad("merchant %q defined twice", m.ID)
		}
		merchants[m.ID] = true
		keyIDs := map[string]bool{}
		for _, k := range m.APIKeys {
			if !idPattern.MatchString(k.ID) {
				return bad("merchant %q: api key id %q: want 1-64 of [A-Za-z0-9_-]", m.ID, k.ID)
			}
			if keyIDs[k.ID] {
				return bad("merchant %q: api key id %q used twice", m.ID, k.ID)
			}
			keyIDs[k.ID] = true
		}
		all := append([]string(nil), m.APIKeyHashes...)
		for _, k := range m.APIKeys {
			all = append(all, k.Hash)
		}
		for _, h := range all {
			if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
				return bad("merchant %q: api key hash must be 64 lowercase hex characters", m.ID)
			}
			if other, dup := keyHashes[h]; dup && other != m.ID {
				return bad("merchant %q: api key hash also belongs to merchant %q", m.ID, other)
			}
			keyHashes[h] = m.ID
		}
		if m.CookieDomain != "" {
			d := normDomain(m.CookieDomain)
			if err := checkDomain(d); err != nil {
				return bad("merchant %q: cookie_domain: %v", m.ID, err)
			}
			if other, dup := cookieDomains[d]; dup {
				return bad("merchant %q: cookie_domain %q also used by merchant %q", m.ID, m.CookieDomain, other)
			}
			cookieDomains[d] = m.ID
		}
		for _, d := range m.AllowedDomains {
			if err := checkDomain(normDomain(d)); err != nil {
				return bad("merchant %q: allowed_domains: %v", m.ID, err)
			}
		}
		if m.FallbackURL != "" && !absHTTPURL(m.FallbackURL) {
			return bad("merchant %q: fallback_url %q is not an absolute http(s) URL", m.ID, m.FallbackURL)
		}
	}
	campaigns := map[string]string{}
	pixels := map[string]bool{}
	for _, k := range c.Campaigns {
		if !idPattern.MatchString(k.ID) {
			return bad("campaign id %q: want 1-64 of [A-Za-z0-9_-]", k.ID)
		}
		if _, dup := campaigns[k.ID]; dup {
			return bad("campaign %q defined twice", k.ID)
		}
		if !merchants[k.MerchantID] {
			return bad("campaign %q: unknown merchant %q", k.ID, k.MerchantID)
		}
		campaigns[k.ID] = k.MerchantID
		if !absHTTPURL(k.DefaultDestination) {
			return bad("campaign %q: default_destination %q is not an absolute http(s) URL", k.ID, k.DefaultDestination)
		}
		if _, err := compileTemplate(k.DefaultDestination); err != nil {
			return bad("campaign %q: default_destination: %v", k.ID, err)
		}
		for _, d := range k.AllowedDomains {
			if err := checkDomain(normDomain(d)); err != nil {
				return bad("campaign %q: allowed_domains: %v", k.ID, err)
			}
		}
		if k.WindowSeconds < 0 {
			return bad("campaign %q: negative window", k.ID)
		}
		switch k.CookieHolds {
		case "", CookieClickID, CookiePartnerKey:
		default:
			return bad("campaign %q: cookie_holds %q: want click_id or partner_key", k.ID, k.CookieHolds)
		}
		if k.ClickParam != "" && url.QueryEscape(k.ClickParam) != k.ClickParam {
			return bad("campaign %q: click_param %q must not need escaping", k.ID, k.ClickParam)
		}
		if k.PartnerKeyParam != "" && url.QueryEscape(k.PartnerKeyParam) != k.PartnerKeyParam {
			return bad("campaign %q: partner_key_param %q must not need escaping", k.ID, k.PartnerKeyParam)
		}
		// The destination drops visitor parameters that look like either
		// name, so two names alike would give a server two values for one.
		if (k.PassPartnerKey || k.PartnerKeyParam != "") &&
			(keyLike(k.PartnerParam(), k.Param()) || keyLike(k.PartnerParam(), DeepLinkParam)) {
			return bad("campaign %q: partner_key_param %q must differ from click_param and %q", k.ID, k.PartnerParam(), DeepLinkParam)
		}
		switch k.Attribution {
		case "", AttributionLastClick, AttributionFirstClick:
		default:
			return bad("campaign %q: attribution %q: want last_click or first_click", k.ID, k.Attribution)
		}
		if k.Currency != "" && !currencyPattern.MatchString(k.Currency) {
			return bad("campaign %q: currency %q is not an ISO 4217 code", k.ID, k.Currency)
		}
		if k.MinClickToConversionSeconds < 0 || k.HoldSeconds < 0 || k.RecurringMonths < 0 {
			return bad("campaign %q: negative duration", k.ID)
		}
		for i, r := range k.Commissions {
			if r.PercentBPS < 0 || r.PercentBPS > 1_000_000 || r.FlatMinor < 0 || r.FlatMinor > 1e15 {
				return bad("campaign %q: commission rule %d: percent_bps 0..1000000 and flat_minor >= 0", k.ID, i)
			}
		}
		if k.PixelID != "" {
			if !idPattern.MatchString(k.PixelID) {
				return bad("campaign %q: pixel_id %q: want 1-64 of [A-Za-z0-9_-]", k.ID, k.PixelID)
			}
			if pixels[k.PixelID] {
				return bad("pixel_id %q used by two campaigns", k.PixelID)
			}
			pixels[k.PixelID] = true
		}
		if k.CookieName != "" && !cookieNamePattern.MatchString(k.CookieName) {
			return bad("campaign %q: cookie_name %q is not a cookie token", k.ID, k.CookieName)
		}
	}
	partners := map[string]string{}
	keys := map[string]bool{}
	for _, p := range c.Partners {
		if !idPattern.MatchString(p.ID) {
			return bad("partner id %q: want 1-64 of [A-Za-z0-9_-]", p.ID)
		}
		if _, dup := partners[p.ID]; dup {
			return bad("partner %q defined twice", p.ID)
		}
		if !merchants[p.MerchantID] {
			return bad("partner %q: unknown merchant %q", p.ID, p.MerchantID)
		}
		if !idPattern.MatchString(p.Key) {
			return bad("partner %q: key %q: want 1-64 of [A-Za-z0-9_-]", p.ID, p.Key)
		}
		mk := p.MerchantID + "\x00" + p.Key
		if keys[mk] {
			return bad("partner key %q used twice in merchant %q", p.Key, p.MerchantID)
		}
		keys[mk] = true
		partners[p.ID] = p.MerchantID
	}
	codes := map[string]bool{}
	for _, l := range c.Links {
		if !idPattern.MatchString(l.Code) {
			return bad("link code %q: want 1-64 of [A-Za-z0-9_-]", l.Code)
		}
		if codes[l.Code] {
			return bad("link code %q defined twice", l.Code)
		}
		codes[l.Code] = true
		m, ok := campaigns[l.CampaignID]
		if !ok {
			return bad("link %q: unknown campaign %q", l.Code, l.CampaignID)
		}
		if pm, ok := partners[l.PartnerID]; !ok || pm != m {
			return bad("link %q: partner %q is not a partner of merchant %q", l.Code, l.PartnerID, m)
		}
		if l.Destination != "" {
			if _, err := compileTemplate(l.Destination); err != nil {
				return bad("link %q: destination: %v", l.Code, err)
			}
		}
		if l.FallbackURL != "" && !absHTTPURL(l.FallbackURL) {
			return bad("link %q: fallback_url %q is not an absolute http(s) URL", l.Code, l.FallbackURL)
		}
	}
	return nil
}

var currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)

var cookieNamePattern = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]{1,64}$")

func absHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		!strings.ContainsAny(s, "\r\n\x00")
}
