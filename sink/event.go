package sink

import (
	"encoding/json"
	"fmt"
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

// AppendClick appends the wire form of c to dst.
func AppendClick(dst []byte, c *Click) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return dst, fmt.Errorf("encode click %s: %w", c.ID, err)
	}
	return append(dst, b...), nil
}

// DecodeClick parses the wire form of a click and checks its version.
func DecodeClick(data []byte) (Click, error) {
	var c Click
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("decode click: %w", err)
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
