package redirect

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateDestinationsAndDomains(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Catalog)
		errHas string // empty: valid
	}{
		{"fixture", func(c *Catalog) {}, ""},
		{"macro in campaign host", func(c *Catalog) { c.Campaigns[0].DefaultDestination = "https://{sub1}.shop.example/" }, "default_destination"},
		{"macro in host after name", func(c *Catalog) { c.Campaigns[0].DefaultDestination = "https://shop.example{sub1}/" }, "default_destination"},
		{"macro in port", func(c *Catalog) { c.Campaigns[0].DefaultDestination = "https://shop.example:{sub1}/" }, "default_destination"},
		{"userinfo in template", func(c *Catalog) { c.Campaigns[0].DefaultDestination = "https://u:p@shop.example/" }, "default_destination"},
		{"escaped host", func(c *Catalog) { c.Campaigns[0].DefaultDestination = "https://sh%6Fp.example/" }, "default_destination"},
		{"macros after host", func(c *Catalog) {
			c.Campaigns[0].DefaultDestination = "https://shop.example/{sub1}?a={click_id}#{partner_key}"
		}, ""},
		{"ipv6 host", func(c *Catalog) { c.Campaigns[0].DefaultDestination = "http://[::1]:8080/" }, ""},
		{"link destination not a URL", func(c *Catalog) { c.Links[0].Destination = "/relative" }, "link \"abc\": destination"},
		{"link destination macro host", func(c *Catalog) { c.Links[0].Destination = "https://{link_code}.example/" }, "link \"abc\": destination"},
		{"link destination javascript", func(c *Catalog) { c.Links[0].Destination = "javascript:alert(1)" }, "link \"abc\": destination"},
		{"allowed domain with scheme", func(c *Catalog) { c.Merchants[0].AllowedDomains = []string{"https://shop.example"} }, "allowed_domains"},
		{"allowed domain with path", func(c *Catalog) { c.Campaigns[1].AllowedDomains = []string{"shop.example/x"} }, "allowed_domains"},
		{"allowed domain empty", func(c *Catalog) { c.Merchants[0].AllowedDomains = []string{""} }, "allowed_domains"},
		{"allowed domain empty label", func(c *Catalog) { c.Merchants[0].AllowedDomains = []string{"a..example"} }, "allowed_domains"},
		{"allowed domain wildcard", func(c *Catalog) { c.Merchants[0].AllowedDomains = []string{"*.Shop.Example."} }, ""},
		{"cookie domain with port", func(c *Catalog) { c.Merchants[0].CookieDomain = "track.shop.example:443" }, "cookie_domain"},
		{"cookie domain shared", func(c *Catalog) { c.Merchants[1].CookieDomain = "Track.Shop.Example" }, "cookie_domain"},
		{"api key shared", func(c *Catalog) { c.Merchants[1].APIKeyHashes = c.Merchants[0].APIKeyHashes }, "api key hash"},
		{"partner_key_param", func(c *Catalog) { c.Campaigns[1].PartnerKeyParam = "ref" }, ""},
		{"partner_key_param needs escaping", func(c *Catalog) { c.Campaigns[1].PartnerKeyParam = "a b" }, "partner_key_param"},
		{"partner_key_param with ampersand", func(c *Catalog) { c.Campaigns[1].PartnerKeyParam = "a&b=c" }, "partner_key_param"},
		{"partner_key_param is the click param", func(c *Catalog) { c.Campaigns[1].PartnerKeyParam = "Ref.Id" }, "partner_key_param"},
		{"partner_key_param is url", func(c *Catalog) { c.Campaigns[0].PartnerKeyParam = "URL" }, "partner_key_param"},
		{"default aff clashes with click param", func(c *Catalog) { c.Campaigns[1].ClickParam = "aff" }, "partner_key_param"},
		{"click param aff without pass_partner_key", func(c *Catalog) { c.Campaigns[0].ClickParam = "aff" }, ""},
		{"api key listed twice", func(c *Catalog) {
			c.Merchants[0].APIKeyHashes = append(c.Merchants[0].APIKeyHashes, c.Merchants[0].APIKeyHashes[0])
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testCatalog(t)
			tt.change(c)
			err := c.Validate()
			switch {
			case tt.errHas == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.errHas != "" && (err == nil || !errors.Is(err, ErrInvalidCatalog) || !strings.Contains(err.Error(), tt.errHas)):
				t.Fatalf("Validate = %v, want ErrInvalidCatalog mentioning %q", err, tt.errHas)
			}
		})
	}
}
