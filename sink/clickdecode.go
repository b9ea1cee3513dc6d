package sink

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeClickFast parses data into c, which must be zero, without
// reflection. It returns false, with c in an undefined state, for anything it
// does not read exactly as encoding/json.Unmarshal would: unknown,
// duplicate or differently cased keys, null, numbers that are not plain
// integers, invalid UTF-8, surrogate escapes, malformed JSON. Callers then use
// encoding/json.
//
// The strings of c that need no unescaping share one copy of data.
func decodeClickFast(data []byte, c *Click) bool {
	p := clickParser{data: data, all: string(data)}
	p.ws()
	if !p.byte('{') {
		return false
	}
	var seen uint64
	p.ws()
	if p.peek() == '}' {
		p.i++
		p.ws()
		return p.i == len(p.data)
	}
	for {
		p.ws()
		key, ok := p.rawKey()
		if !ok {
			return false
		}
		p.ws()
		if !p.byte(':') {
			return false
		}
		p.ws()
		f, ok := clickFields[key]
		if !ok || seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		if !p.field(c, f) {
			return false
		}
		p.ws()
		switch p.next() {
		case ',':
			continue
		case '}':
			p.ws()
			return p.i == len(p.data)
		default:
			return false
		}
	}
}

// Fields of Click by wire name.
const (
	cfV = iota
	cfID
	cfTS
	cfEdge
	cfSource
	cfMerchantID
	cfCampaignID
	cfPartnerID
	cfPartnerKey
	cfLinkCode
	cfOrphan
	cfPrevClickID
	cfIP
	cfCountry
	cfRegion
	cfCity
	cfUserAgent
	cfBrowser
	cfBrowserVersion
	cfOS
	cfDevice
	cfBot
	cfBotReason
	cfNonUnique
	cfReferrer
	cfLandingURL
	cfDestination
	cfSubs
	cfUTM
	cfScreenWidth
	cfForged
	cfReceivedAt
)

var clickFields = map[string]uint{
	"v": cfV, "id": cfID, "ts": cfTS, "edge": cfEdge, "source": cfSource, "merchant_id": cfMerchantID,
	"campaign_id": cfCampaignID, "partner_id": cfPartnerID, "partner_key": cfPartnerKey, "link_code": cfLinkCode,
	"orphan": cfOrphan, "prev_click_id": cfPrevClickID, "ip": cfIP, "country": cfCountry, "region": cfRegion,
	"city": cfCity, "user_agent": cfUserAgent, "browser": cfBrowser, "browser_version": cfBrowserVersion,
	"os": cfOS, "device": cfDevice, "bot": cfBot, "bot_reason": cfBotReason, "non_unique": cfNonUnique,
	"referrer": cfReferrer, "landing_url": cfLandingURL, "destination": cfDestination, "subs": cfSubs,
	"utm": cfUTM, "screen_width": cfScreenWidth, "forged": cfForged, "received_at": cfReceivedAt,
}

type clickParser struct {
	data []byte
	all  string // data as one string: values without escapes are its substrings
	i    int
}

func (p *clickParser) peek() byte {
	if p.i < len(p.data) {
		return p.data[p.i]
	}
	return 0
}

func (p *clickParser) next() byte {
	if p.i < len(p.data) {
		p.i++
		return p.data[p.i-1]
	}
	return 0
}

func (p *clickParser) byte(b byte) bool {
	if p.peek() != b {
		return false
	}
	p.i++
	return true
}

func (p *clickParser) ws() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// rawKey reads a key without escapes (a key with one is not ours).
func (p *clickParser) rawKey() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.data) {
		switch b := p.data[p.i]; {
		case b == '"':
			k := p.all[start:p.i]
			p.i++
			return k, true
		case b == '\\' || b < 0x20 || b >= utf8.RuneSelf:
			return "", false
		}
		p.i++
	}
	return "", false
}

func (p *clickParser) field(c *Click, f uint) bool {
	var ok bool
	switch f {
	case cfV:
		var n int64
		n, ok = p.int(strconv.IntSize)
		c.V = int(n)
	case cfTS:
		c.TS, ok = p.int(64)
	case cfScreenWidth:
		var n int64
		n, ok = p.int(strconv.IntSize)
		c.ScreenWidth = int(n)
	case cfReceivedAt:
		c.ReceivedAt, ok = p.int(64)
	case cfOrphan:
		c.Orphan, ok = p.bool()
	case cfBot:
		c.Bot, ok = p.bool()
	case cfNonUnique:
		c.NonUnique, ok = p.bool()
	case cfForged:
		c.Forged, ok = p.bool()
	case cfSubs:
		ok = p.subs(&c.Subs)
	case cfUTM:
		c.UTM, ok = p.utm()
	default:
		var s string
		if s, ok = p.string(); ok {
			*clickString(c, f) = s
		}
	}
	return ok
}

func clickString(c *Click, f uint) *string {
	switch f {
	case cfID:
		return &c.ID
	case cfEdge:
		return &c.Edge
	case cfSource:
		return &c.Source
	case cfMerchantID:
		return &c.MerchantID
	case cfCampaignID:
		return &c.CampaignID
	case cfPartnerID:
		return &c.PartnerID
	case cfPartnerKey:
		return &c.PartnerKey
	case cfLinkCode:
		return &c.LinkCode
	case cfPrevClickID:
		return &c.PrevClickID
	case cfIP:
		return &c.IP
	case cfCountry:
		return &c.Country
	case cfRegion:
		return &c.Region
	case cfCity:
		return &c.City
	case cfUserAgent:
		return &c.UserAgent
	case cfBrowser:
		return &c.Browser
	case cfBrowserVersion:
		return &c.BrowserVersion
	case cfOS:
		return &c.OS
	case cfDevice:
		return &c.Device
	case cfBotReason:
		return &c.BotReason
	case cfReferrer:
		return &c.Referrer
	case cfLandingURL:
		return &c.LandingURL
	default: // cfDestination
		return &c.Destination
	}
}

// int reads a JSON integer (no fraction or exponent) that fits in bits.
func (p *clickParser) int(bits int) (int64, bool) {
	start := p.i
	if p.peek() == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
		p.i++
	}
	switch {
	case p.i == digits:
		return 0, false
	case p.data[digits] == '0' && p.i-digits > 1:
		return 0, false // leading zero: not JSON
	}
	switch p.peek() {
	case '.', 'e', 'E':
		return 0, false
	}
	n, err := strconv.ParseInt(p.all[start:p.i], 10, bits)
	return n, err == nil
}

func (p *clickParser) bool() (bool, bool) {
	rest := p.data[p.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		p.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		p.i += 5
		return false, true
	}
	return false, false
}

// string reads a JSON string. Without escapes it is a substring of p.all.
func (p *clickParser) string() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start := p.i
	ascii := true
	for p.i < len(p.data) {
		b := p.data[p.i]
		switch {
		case b == '"':
			s := p.all[start:p.i]
			p.i++
			if !ascii && !utf8.ValidString(s) {
				return "", false
			}
			return s, true
		case b == '\\':
			return p.escaped(start)
		case b < 0x20:
			return "", false
		case b >= utf8.RuneSelf:
			ascii = false
		}
		p.i++
	}
	return "", false
}

// escaped finishes a string that starts at start and has an escape at p.i.
func (p *clickParser) escaped(start int) (string, bool) {
	buf := make([]byte, 0, p.i-start+32)
	buf = append(buf, p.data[start:p.i]...)
	for p.i < len(p.data) {
		b := p.data[p.i]
		switch {
		case b == '"':
			p.i++
			if !utf8.Valid(buf) {
				return "", false
			}
			return string(buf), true
		case b < 0x20:
			return "", false
		case b != '\\':
			buf = append(buf, b)
			p.i++
			continue
		}
		if p.i+1 >= len(p.data) {
			return "", false
		}
		e := p.data[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			if p.i+4 > len(p.data) {
				return "", false
			}
			r, err := strconv.ParseUint(p.all[p.i:p.i+4], 16, 32)
			if err != nil || utf16.IsSurrogate(rune(r)) {
				return "", false
			}
			p.i += 4
			buf = utf8.AppendRune(buf, rune(r))
		default:
			return "", false
		}
	}
	return "", false
}

// subs reads an array of at most five strings.
func (p *clickParser) subs(dst *[5]string) bool {
	if !p.byte('[') {
		return false
	}
	p.ws()
	if p.byte(']') {
		return true
	}
	for i := 0; ; i++ {
		p.ws()
		if i == len(dst) {
			return false
		}
		s, ok := p.string()
		if !ok {
			return false
		}
		dst[i] = s
		p.ws()
		switch p.next() {
		case ',':
		case ']':
			return true
		default:
			return false
		}
	}
}

// utm reads an object of strings; {} is an empty map, as encoding/json makes.
func (p *clickParser) utm() (map[string]string, bool) {
	if !p.byte('{') {
		return nil, false
	}
	m := make(map[string]string, 4)
	p.ws()
	if p.byte('}') {
		return m, true
	}
	for {
		p.ws()
		k, ok := p.string()
		if !ok {
			return nil, false
		}
		p.ws()
		if !p.byte(':') {
			return nil, false
		}
		p.ws()
		v, ok := p.string()
		if !ok {
			return nil, false
		}
		m[k] = v
		p.ws()
		switch p.next() {
		case ',':
		case '}':
			return m, true
		default:
			return nil, false
		}
	}
}
