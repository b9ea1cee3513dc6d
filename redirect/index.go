package redirect

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Index is an immutable lookup view of one validated catalog version. It is
// safe for concurrent use. Build a new Index for every catalog version and
// swap it in atomically; lookups on the hot path do not allocate.
type Index struct {
	cat       *Catalog
	links     map[string]Resolved
	merchants map[string]*Merchant
	campaigns map[string]*Campaign
	partners  map[string]*Partner
	keys      map[[sha256.Size]byte]*Merchant
	hosts     map[string]*Merchant
	byKey     map[partnerKey]*Partner
	// firstCampaign is the merchant's first campaign; partnerCampaign the
	// campaign of the partner's first link; linkFor the partner's first link
	// per campaign.
	firstCampaign   map[string]*Campaign
	partnerCampaign map[string]*Campaign
	linkFor         map[campaignPartner]*Link
	// pixels maps public pixel ids to campaigns; coupons and emails map
	// (merchant, upper-cased code / lower-cased email) to partners.
	pixels  map[string]*Campaign
	coupons map[partnerKey]*Partner
	emails  map[partnerKey]*Partner
}

// Resolved is a link code resolved to everything a redirect needs. Values
// from Index.Lookup also carry the link's precompiled destination, which
// AppendDestination uses while the pointers are unchanged.
type Resolved struct {
	Link     *Link
	Campaign *Campaign
	Partner  *Partner
	Merchant *Merchant

	plan *destPlan
}

type partnerKey struct{ merchant, key string }

// CampaignByPixel returns the campaign whose public pixel id is id.
func (x *Index) CampaignByPixel(id string) (*Campaign, bool) {
	k, ok := x.pixels[id]
	return k, ok
}

// PartnerByCoupon returns the merchant's partner owning a coupon code
// (compared case-insensitively, as checkout systems upper-case codes).
func (x *Index) PartnerByCoupon(merchantID, code string) (*Partner, bool) {
	p, ok := x.coupons[partnerKey{merchantID, strings.ToUpper(code)}]
	return p, ok
}

// PartnerByEmail returns the merchant's partner with that email
// (case-insensitive).
func (x *Index) PartnerByEmail(merchantID, email string) (*Partner, bool) {
	p, ok := x.emails[partnerKey{merchantID, strings.ToLower(email)}]
	return p, ok
}

type campaignPartner struct{ campaign, partner string }

// NewIndex builds the lookup view of c, which must have passed Validate. The
// Index keeps pointers into c: c must not be modified afterwards. A nil c
// gives an empty index of version 0. Where a catalog that did not pass
// Validate holds duplicates, the first in catalog order wins.
func NewIndex(c *Catalog) *Index {
	if c == nil {
		c = &Catalog{}
	}
	x := &Index{
		cat:             c,
		links:           make(map[string]Resolved, len(c.Links)),
		merchants:       make(map[string]*Merchant, len(c.Merchants)),
		campaigns:       make(map[string]*Campaign, len(c.Campaigns)),
		partners:        make(map[string]*Partner, len(c.Partners)),
		keys:            make(map[[sha256.Size]byte]*Merchant),
		hosts:           make(map[string]*Merchant),
		byKey:           make(map[partnerKey]*Partner, len(c.Partners)),
		firstCampaign:   make(map[string]*Campaign, len(c.Merchants)),
		partnerCampaign: make(map[string]*Campaign, len(c.Partners)),
		linkFor:         make(map[campaignPartner]*Link, len(c.Links)),
		pixels:          make(map[string]*Campaign),
		coupons:         make(map[partnerKey]*Partner),
		emails:          make(map[partnerKey]*Partner),
	}
	for i := range c.Merchants {
		m := &c.Merchants[i]
		if _, dup := x.merchants[m.ID]; dup {
			continue
		}
		x.merchants[m.ID] = m
		for _, h := range m.ActiveKeyHashes() {
			var sum [sha256.Size]byte
			if n, err := hex.Decode(sum[:], []byte(h)); err != nil || n != len(sum) {
				continue
			}
			if _, dup := x.keys[sum]; !dup {
				x.keys[sum] = m
			}
		}
		if m.CookieDomain != "" {
			d := normDomain(m.CookieDomain)
			if _, dup := x.hosts[d]; !dup && checkDomain(d) == nil {
				x.hosts[d] = m
			}
		}
	}
	campaignPlan := make(map[string]*destPlan, len(c.Campaigns))
	for i := range c.Campaigns {
		k := &c.Campaigns[i]
		if _, dup := x.campaigns[k.ID]; dup {
			continue
		}
		x.campaigns[k.ID] = k
		if _, ok := x.firstCampaign[k.MerchantID]; !ok {
			x.firstCampaign[k.MerchantID] = k
		}
		campaignPlan[k.ID] = newDestPlan(nil, k, x.merchants[k.MerchantID], nil)
		if k.PixelID != "" {
			x.pixels[k.PixelID] = k
		}
	}
	for i := range c.Partners {
		p := &c.Partners[i]
		if _, dup := x.partners[p.ID]; dup {
			continue
		}
		x.partners[p.ID] = p
		pk := partnerKey{p.MerchantID, p.Key}
		if _, dup := x.byKey[pk]; !dup {
			x.byKey[pk] = p
		}
		for _, code := range p.CouponCodes {
			ck := partnerKey{p.MerchantID, strings.ToUpper(code)}
			if _, dup := x.coupons[ck]; !dup {
				x.coupons[ck] = p
			}
		}
		if p.Email != "" {
			ek := partnerKey{p.MerchantID, strings.ToLower(p.Email)}
			if _, dup := x.emails[ek]; !dup {
				x.emails[ek] = p
			}
		}
	}
	for i := range c.Links {
		l := &c.Links[i]
		if _, dup := x.links[l.Code]; dup {
			continue
		}
		k, p := x.campaigns[l.CampaignID], x.partners[l.PartnerID]
		if k == nil || p == nil {
			continue
		}
		m := x.merchants[k.MerchantID]
		r := Resolved{Link: l, Campaign: k, Partner: p, Merchant: m}
		r.plan = newDestPlan(l, k, m, campaignPlan[k.ID])
		x.links[l.Code] = r
		if _, ok := x.partnerCampaign[p.ID]; !ok {
			x.partnerCampaign[p.ID] = k
		}
		cp := campaignPartner{k.ID, p.ID}
		if _, ok := x.linkFor[cp]; !ok {
			x.linkFor[cp] = l
		}
	}
	return x
}

// Catalog returns the catalog the index was built from; it must not be modified.
func (x *Index) Catalog() *Catalog { return x.cat }

// Version returns the catalog's version.
func (x *Index) Version() uint64 { return x.cat.Version }

// Lookup resolves a link code, paused links included (the caller checks
// Link.Paused). It does not allocate.
func (x *Index) Lookup(code []byte) (Resolved, bool) {
	r, ok := x.links[string(code)]
	return r, ok
}

// MerchantByKey returns the merchant owning the API key: the merchant one of
// whose active key hashes (Merchant.ActiveKeyHashes) holds HashAPIKey(apiKey). The digest is compared as
// raw bytes, so the lookup is one SHA-256 and one map access.
func (x *Index) MerchantByKey(apiKey string) (*Merchant, bool) {
	if apiKey == "" {
		return nil, false
	}
	m, ok := x.keys[sha256.Sum256([]byte(apiKey))]
	return m, ok
}

// MerchantByHost returns the merchant whose CookieDomain is host or a parent
// domain of host, the longest such domain winning. host is a Host header
// value: a port is ignored, ASCII case and a trailing root dot too. It does
// not allocate.
func (x *Index) MerchantByHost(host []byte) (*Merchant, bool) {
	if len(x.hosts) == 0 || len(host) == 0 {
		return nil, false
	}
	if host[0] == '[' {
		if end := indexByte(host, ']'); end > 0 {
			host = host[:end+1]
		}
	} else if i := indexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	var buf [maxHostLen]byte
	if len(host) == 0 || len(host) > len(buf) {
		return nil, false
	}
	h := buf[:len(host)]
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h[i] = c
	}
	for {
		if m, ok := x.hosts[string(h)]; ok {
			return m, true
		}
		i := indexByte(h, '.')
		if i < 0 {
			return nil, false
		}
		h = h[i+1:]
	}
}

// Merchant returns the merchant with that id.
func (x *Index) Merchant(id string) (*Merchant, bool) {
	m, ok := x.merchants[id]
	return m, ok
}

// Campaign returns the campaign with that id.
func (x *Index) Campaign(id string) (*Campaign, bool) {
	k, ok := x.campaigns[id]
	return k, ok
}

// Partner returns the partner with that id.
func (x *Index) Partner(id string) (*Partner, bool) {
	p, ok := x.partners[id]
	return p, ok
}

// PartnerByKey returns the merchant's partner with that referral key
// (case-sensitive).
func (x *Index) PartnerByKey(merchantID, key string) (*Partner, bool) {
	p, ok := x.byKey[partnerKey{merchantID, key}]
	return p, ok
}

// DefaultCampaign returns the campaign a conversion or click of this partner
// belongs to when none is named: the campaign of the partner's first link in
// catalog order (paused links count), else the merchant's first campaign. A
// partner of another merchant is treated as unknown.
func (x *Index) DefaultCampaign(merchantID, partnerID string) (*Campaign, bool) {
	if p, ok := x.partners[partnerID]; ok && p.MerchantID == merchantID {
		if k, ok := x.partnerCampaign[partnerID]; ok {
			return k, true
		}
	}
	k, ok := x.firstCampaign[merchantID]
	return k, ok
}

// LinkFor returns the partner's first link in catalog order in that campaign
// (paused links count), used to name the link of S2S clicks.
func (x *Index) LinkFor(campaignID, partnerID string) (*Link, bool) {
	l, ok := x.linkFor[campaignPartner{campaignID, partnerID}]
	return l, ok
}
