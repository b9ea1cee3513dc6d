package sink

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// ClickVersion is the schema version of Click on the wire. A consumer rejects
// (terminates, never silently drops) a message whose version it does not know.
const ClickVersion = 1

// Stream and subject names shared by edges and workers.
const (
	// ClickStream holds every click, subject ClickSubjectPrefix + merchant id.
	ClickStream        = "CLICKEDGE_CLICKS"
	ClickSubjectPrefix = "clickedge.clicks."
	// CatalogBucket is the JetStream KV bucket the worker publishes the catalog to.
	CatalogBucket = "clickedge_catalog"
	// CatalogKey is the one key of CatalogBucket holding the whole catalog document.
	CatalogKey = "catalog"
	// APISubjectPrefix is the request/reply prefix on which the worker answers reads.
	APISubjectPrefix = "clickedge.api."
)

// Click sources.
const (
	SourceRedirect = "redirect" // GET/HEAD /r/{code}
	SourceS2S      = "s2s"      // POST /v1/tracking/clicks
)

// Click is one visit as the edge saw it: the one contract between edge and
// worker. Fields are only ever added; renaming or changing one needs a new
// ClickVersion.
type Click struct {
	V  int    `json:"v"`
	ID string `json:"id"`
	// TS is when the edge minted the click, Unix milliseconds.
	TS     int64  `json:"ts"`
	Edge   string `json:"edge,omitempty"`
	Source string `json:"source"`

	MerchantID string `json:"merchant_id"`
	CampaignID string `json:"campaign_id,omitempty"`
	PartnerID  string `json:"partner_id,omitempty"`
	PartnerKey string `json:"partner_key,omitempty"`
	LinkCode   string `json:"link_code,omitempty"`
	// Orphan is set for unknown or paused codes: recorded, never attributed.
	Orphan bool `json:"orphan,omitempty"`
	// PrevClickID is the click id the visitor already held in the campaign cookie.
	PrevClickID string `json:"prev_click_id,omitempty"`

	// IP is the client address as stored under the edge's privacy mode
	// (truncated by default, empty under "drop").
	IP      string `json:"ip,omitempty"`
	Country string `json:"country,omitempty"`
	Region  string `json:"region,omitempty"`
	City    string `json:"city,omitempty"`

	UserAgent      string `json:"user_agent,omitempty"`
	Browser        string `json:"browser,omitempty"`
	BrowserVersion string `json:"browser_version,omitempty"`
	OS             string `json:"os,omitempty"`
	Device         string `json:"device,omitempty"` // desktop, mobile, tablet, bot
	Bot            bool   `json:"bot,omitempty"`
	BotReason      string `json:"bot_reason,omitempty"`
	// NonUnique marks a repeat of the same IP + UA + link within an hour.
	NonUnique bool `json:"non_unique,omitempty"`

	Referrer    string            `json:"referrer,omitempty"`
	LandingURL  string            `json:"landing_url,omitempty"`
	Destination string            `json:"destination,omitempty"`
	Subs        [5]string         `json:"subs,omitzero"`
	UTM         map[string]string `json:"utm,omitempty"`
	ScreenWidth int               `json:"screen_width,omitempty"`

	// Forged is set by the worker when the id's tag does not verify; such a
	// click is stored but never attributes.
	Forged bool `json:"forged,omitempty"`
	// ReceivedAt is set by the worker: when it stored the click, Unix ms.
	ReceivedAt int64 `json:"received_at,omitempty"`
}

// AppendClick appends the wire form of c to dst: the JSON that
// encoding/json.Marshal produces for c, byte for byte (same field order,
// omissions, sorted UTM keys and HTML-safe string escaping), written without
// reflection. It does not allocate when dst has room and c.UTM holds at most
// 16 entries. The error is always nil; it is kept so that a future field
// that can fail to encode does not change the signature.
func AppendClick(dst []byte, c *Click) ([]byte, error) {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, int64(c.V), 10)
	dst = append(dst, `,"id":`...)
	dst = appendJSONString(dst, c.ID)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, c.TS, 10)
	dst = appendOptString(dst, `,"edge":`, c.Edge)
	dst = append(dst, `,"source":`...)
	dst = appendJSONString(dst, c.Source)
	dst = append(dst, `,"merchant_id":`...)
	dst = appendJSONString(dst, c.MerchantID)
	dst = appendOptString(dst, `,"campaign_id":`, c.CampaignID)
	dst = appendOptString(dst, `,"partner_id":`, c.PartnerID)
	dst = appendOptString(dst, `,"partner_key":`, c.PartnerKey)
	dst = appendOptString(dst, `,"link_code":`, c.LinkCode)
	dst = appendOptBool(dst, `,"orphan":true`, c.Orphan)
	dst = appendOptString(dst, `,"prev_click_id":`, c.PrevClickID)
	dst = appendOptString(dst, `,"ip":`, c.IP)
	dst = appendOptString(dst, `,"country":`, c.Country)
	dst = appendOptString(dst, `,"region":`, c.Region)
	dst = appendOptString(dst, `,"city":`, c.City)
	dst = appendOptString(dst, `,"user_agent":`, c.UserAgent)
	dst = appendOptString(dst, `,"browser":`, c.Browser)
	dst = appendOptString(dst, `,"browser_version":`, c.BrowserVersion)
	dst = appendOptString(dst, `,"os":`, c.OS)
	dst = appendOptString(dst, `,"device":`, c.Device)
	dst = appendOptBool(dst, `,"bot":true`, c.Bot)
	dst = appendOptString(dst, `,"bot_reason":`, c.BotReason)
	dst = appendOptBool(dst, `,"non_unique":true`, c.NonUnique)
	dst = appendOptString(dst, `,"referrer":`, c.Referrer)
	dst = appendOptString(dst, `,"landing_url":`, c.LandingURL)
	dst = appendOptString(dst, `,"destination":`, c.Destination)
	if c.Subs != [5]string{} {
		dst = append(dst, `,"subs":[`...)
		for i, s := range c.Subs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, s)
		}
		dst = append(dst, ']')
	}
	if len(c.UTM) > 0 {
		dst = append(dst, `,"utm":{`...)
		dst = appendSortedMap(dst, c.UTM)
		dst = append(dst, '}')
	}
	if c.ScreenWidth != 0 {
		dst = append(dst, `,"screen_width":`...)
		dst = strconv.AppendInt(dst, int64(c.ScreenWidth), 10)
	}
	dst = appendOptBool(dst, `,"forged":true`, c.Forged)
	if c.ReceivedAt != 0 {
		dst = append(dst, `,"received_at":`...)
		dst = strconv.AppendInt(dst, c.ReceivedAt, 10)
	}
	return append(dst, '}'), nil
}

func appendOptString(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return appendJSONString(append(dst, key...), s)
}

func appendOptBool(dst []byte, keyTrue string, b bool) []byte {
	if !b {
		return dst
	}
	return append(dst, keyTrue...)
}

// appendSortedMap appends the members of m (without braces) in key order, as
// encoding/json does.
func appendSortedMap(dst []byte, m map[string]string) []byte {
	var small [16]string
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, m[k])
	}
	return dst
}

// jsonSafe marks the ASCII bytes encoding/json writes as they are (its
// htmlSafeSet): printable ASCII and DEL, except '"', '\\', '<', '>' and '&'.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

const lowerHex = "0123456789abcdef"

// appendJSONString appends s as a JSON string exactly as encoding/json.Marshal
// does: HTML-safe escapes, short escapes for \b \f \n \r \t, invalid UTF-8
// as \ufffd, and U+2028/U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', lowerHex[b>>4], lowerHex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', lowerHex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// DecodeClick parses the wire form of a click and checks its version. The
// form AppendClick writes (any field order, no duplicate or unknown fields,
// no nulls) is read by a parser without reflection; anything else goes to
// encoding/json, whose result the fast parser matches.
func DecodeClick(data []byte) (Click, error) {
	var c Click
	if !decodeClickFast(data, &c) {
		c = Click{}
		if err := json.Unmarshal(data, &c); err != nil {
			return c, fmt.Errorf("decode click: %w", err)
		}
	}
	if c.V != ClickVersion {
		return c, fmt.Errorf("decode click %s: unknown version %d", c.ID, c.V)
	}
	if c.ID == "" || c.MerchantID == "" {
		return c, fmt.Errorf("decode click: missing id or merchant")
	}
	return c, nil
}

// ClickQuery asks the worker for one merchant's clicks, newest first.
type ClickQuery struct {
	MerchantID string `json:"merchant_id"`
	CampaignID string `json:"campaign_id,omitempty"`
	PartnerID  string `json:"partner_id,omitempty"`
	Limit      int    `json:"limit"`
	Offset     int    `json:"offset"`
}

// ClickPage is the worker's answer to a ClickQuery.
type ClickPage struct {
	Clicks []Click `json:"clicks"`
	// Total counts every click matching the filter, ignoring Limit and Offset.
	Total int `json:"total"`
}

// APIError is the error shape of request/reply answers from the worker.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }
