package redirect

import "testing"

// testKeyM1 is merchant m1's API key in the fixture catalog.
const testKeyM1 = "key-m1-0123456789abcdef"

// testCatalog returns a validated catalog exercising every destination
// feature: default and per-link templates, macros, a fragment, a custom click
// parameter, partner key passing, allowed domains with "*." and IDN forms, and
// a merchant without allowed domains.
func testCatalog(t testing.TB) *Catalog {
	t.Helper()
	c := &Catalog{
		Version: 7,
		Merchants: []Merchant{
			{ID: "m1", Name: "Shop", APIKeyHashes: []string{HashAPIKey(testKeyM1)},
				CookieDomain: "track.shop.example", AllowedDomains: []string{"shop.example", "*.cdn.example"},
				FallbackURL: "https://shop.example/"},
			{ID: "m2", CookieDomain: ".M2.example.", AllowedDomains: []string{"bücher.example"}},
			{ID: "m3"},
		},
		Campaigns: []Campaign{
			{ID: "c1", MerchantID: "m1", DefaultDestination: "https://shop.example/landing?src=aff"},
			{ID: "c2", MerchantID: "m1", DefaultDestination: "https://shop.example/p/{sub1}?cid={click_id}&k={partner_key}#top",
				ClickParam: "ref_id", PassPartnerKey: true, AllowedDomains: []string{"partner-landing.example"}},
			{ID: "c3", MerchantID: "m2", DefaultDestination: "https://m2.example:8443/x"},
			{ID: "c4", MerchantID: "m3", DefaultDestination: "http://127.0.0.1:8080/"},
		},
		Partners: []Partner{
			{ID: "p1", MerchantID: "m1", Key: "alice"},
			{ID: "p2", MerchantID: "m1", Key: "bob"},
			{ID: "p3", MerchantID: "m2", Key: "carol"},
			{ID: "p4", MerchantID: "m1", Key: "dave"},
			{ID: "p5", MerchantID: "m3", Key: "erin"},
		},
		Links: []Link{
			{Code: "abc", CampaignID: "c1", PartnerID: "p1"},
			{Code: "def", CampaignID: "c2", PartnerID: "p1"},
			{Code: "ghi", CampaignID: "c1", PartnerID: "p2", NoPassthrough: true},
			{Code: "paused", CampaignID: "c1", PartnerID: "p2", Paused: true},
			{Code: "m2link", CampaignID: "c3", PartnerID: "p3"},
			{Code: "custom", CampaignID: "c1", PartnerID: "p1", Destination: "https://Other.example/{link_code}/{campaign_id}/{unknown}/{sub1"},
			{Code: "def2", CampaignID: "c2", PartnerID: "p1"},
			{Code: "m3link", CampaignID: "c4", PartnerID: "p5"},
		},
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("fixture catalog: %v", err)
	}
	return c
}
