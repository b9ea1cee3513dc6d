package attribution

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/clickedge/clickedge/redirect"
)

// Catalog file formats accepted by DecodeCatalog.
const (
	FormatJSON = "json"
	FormatYAML = "yaml"
)

// APIKeyPrefix starts every key NewAPIKey makes, so that a leaked key is
// recognisable by secret scanners and in logs.
const APIKeyPrefix = "ce_live_"

// LoadCatalogFile reads a catalog from a .json, .yaml or .yml file. Field
// names are the JSON tags of redirect.Catalog in both formats; an unknown or
// (in YAML) duplicated field is an error, and the catalog must pass
// Validate. The version and updated_at in the file are kept as written:
// Worker.SetCatalog assigns the published ones.
func LoadCatalogFile(path string) (*redirect.Catalog, error) {
	var format string
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		format = FormatJSON
	case ".yaml", ".yml":
		format = FormatYAML
	default:
		return nil, fmt.Errorf("load catalog %s: unknown extension, want .json, .yaml or .yml", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load catalog: %w", err)
	}
	c, err := DecodeCatalog(data, format)
	if err != nil {
		return nil, fmt.Errorf("load catalog %s: %w", path, err)
	}
	return c, nil
}

// DecodeCatalog parses a catalog document in format FormatJSON or FormatYAML
// with the same rules as LoadCatalogFile: strict fields, one document, and a
// catalog that passes Validate (validation failures wrap
// redirect.ErrInvalidCatalog).
func DecodeCatalog(data []byte, format string) (*redirect.Catalog, error) {
	var c redirect.Catalog
	switch format {
	case FormatJSON:
		if len(bytes.TrimSpace(data)) == 0 || bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			return nil, errors.New("decode catalog: empty document")
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("decode catalog: %w", err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("decode catalog: data after the catalog object")
		}
	case FormatYAML:
		j, err := yaml.YAMLToJSONStrict(data)
		if err != nil {
			return nil, fmt.Errorf("decode catalog: %w", err)
		}
		// An empty or comment-only file converts to null, which would
		// silently decode as an empty catalog.
		if t := bytes.TrimSpace(j); len(t) == 0 || t[0] != '{' {
			return nil, errors.New("decode catalog: document is not a mapping")
		}
		if err := yaml.UnmarshalStrict(data, &c); err != nil {
			return nil, fmt.Errorf("decode catalog: %w", err)
		}
	default:
		return nil, fmt.Errorf("decode catalog: unknown format %q", format)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("decode catalog: %w", err)
	}
	return &c, nil
}

// DemoCatalog returns the demo catalog: merchant "demo" (Demo Shop) whose API
// key is apiKey (no key when apiKey is empty); a regular campaign "spring" in
// USD paying 10 % of sales and 5.00 per lead (pixel id "px_spring_demo"); a
// Partnero-style pure S2S campaign "s2s" whose cookie holds the partner key;
// an Affilync-style campaign "affilync" (cookie and click parameter afk_cid,
// pixel id "px_demo", 10 % of sales); partners "alice" (coupon ALICE10),
// "bob" and "carol" (key CAROL5, coupon SUMMER20); and links "alice", "bob",
// "alice-s2s", the deep link "bob-deep" and "carol-afk". Every destination is
// on example.com. Each call returns a fresh value the caller may modify.
func DemoCatalog(apiKey string) *redirect.Catalog {
	var hashes []string
	if apiKey != "" {
		hashes = []string{redirect.HashAPIKey(apiKey)}
	}
	const m = "demo"
	return &redirect.Catalog{
		Version: 1,
		Merchants: []redirect.Merchant{{
			ID:             m,
			Name:           "Demo Shop",
			APIKeyHashes:   hashes,
			AllowedDomains: []string{"example.com"},
			FallbackURL:    "https://example.com/",
		}},
		Campaigns: []redirect.Campaign{
			{
				ID:                 "spring",
				MerchantID:         m,
				Name:               "Spring sale",
				DefaultDestination: "https://example.com/landing",
				WindowSeconds:      30 * 24 * 3600,
				Currency:           "USD",
				Commissions: []redirect.CommissionRule{
					{Type: "sale", PercentBPS: 1000},
					{Type: "lead", FlatMinor: 500},
				},
				PixelID: "px_spring_demo",
			},
			{
				ID:                 "s2s",
				MerchantID:         m,
				Name:               "Partnero-style S2S signup",
				DefaultDestination: "https://example.com/signup",
				CookieName:         "partnero_partner",
				CookieHolds:        redirect.CookiePartnerKey,
				PassPartnerKey:     true,
			},
			{
				ID:                 "affilync",
				MerchantID:         m,
				Name:               "Affilync-style conversions",
				DefaultDestination: "https://example.com/shop",
				ClickParam:         "afk_cid",
				CookieName:         "afk_cid",
				Currency:           "USD",
				Commissions:        []redirect.CommissionRule{{Type: "sale", PercentBPS: 1000}},
				PixelID:            "px_demo",
			},
		},
		Partners: []redirect.Partner{
			{ID: "alice", MerchantID: m, Key: "ALICE10", Email: "alice@example.com", CouponCodes: []string{"ALICE10"}},
			{ID: "bob", MerchantID: m, Key: "BOB20", Email: "bob@example.com"},
			{ID: "carol", MerchantID: m, Key: "CAROL5", Email: "carol@example.com", CouponCodes: []string{"SUMMER20"}},
		},
		Links: []redirect.Link{
			{Code: "alice", CampaignID: "spring", PartnerID: "alice"},
			{Code: "bob", CampaignID: "spring", PartnerID: "bob"},
			{Code: "alice-s2s", CampaignID: "s2s", PartnerID: "alice"},
			{Code: "bob-deep", CampaignID: "spring", PartnerID: "bob", Destination: "https://example.com/p/{sub1}?ref={partner_key}"},
			{Code: "carol-afk", CampaignID: "affilync", PartnerID: "carol"},
		},
	}
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewAPIKey returns a fresh merchant API key: APIKeyPrefix followed by 32
// uniformly random base62 characters (about 190 bits) from crypto/rand.
func NewAPIKey() (string, error) {
	key := make([]byte, 0, len(APIKeyPrefix)+32)
	key = append(key, APIKeyPrefix...)
	var buf [64]byte
	for len(key) < cap(key) {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", fmt.Errorf("new api key: %w", err)
		}
		for _, b := range buf {
			// Rejection sampling: 248 = 4*62, so b%62 is uniform below it.
			if b < 248 && len(key) < cap(key) {
				key = append(key, base62[b%62])
			}
		}
	}
	return string(key), nil
}
