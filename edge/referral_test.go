package edge

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestReferralRedirect(t *testing.T) {
	s, _ := newTestServer(t)
	tests := []struct {
		name, path string
		status     int
		location   string
	}{
		{"known merchant", "/f/ma/abcdefgh2345", 302, "https://shop-a.example/landing?ref=abcdefgh2345"},
		{"HEAD", "/f/mb/abcdefgh2345", 302, "https://shop-b.example/?ref=abcdefgh2345"},
		{"unknown merchant", "/f/zz/abcdefgh2345", 404, ""},
		{"code too short", "/f/ma/abc", 404, ""},
		{"code outside the alphabet", "/f/ma/ABCDEFGH2345", 404, ""},
		{"injection in the code", "/f/ma/" + url.PathEscape("abcdefgh23\r\n"), 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(outboxClicks(t, s))
			method := "GET"
			if tt.name == "HEAD" {
				method = "HEAD"
			}
			ctx := do(s, method, tt.path, nil, "")
			if got := ctx.Response.StatusCode(); got != tt.status {
				t.Fatalf("status = %d, want %d", got, tt.status)
			}
			if got := string(ctx.Response.Header.Peek("Location")); got != tt.location {
				t.Errorf("Location = %q, want %q", got, tt.location)
			}
			cs := outboxClicks(t, s)
			if tt.status != 302 {
				if len(cs) != before {
					t.Error("a rejected referral link recorded a click")
				}
				return
			}
			sc := string(ctx.Response.Header.PeekCookie(ReferralCookie))
			if !strings.Contains(sc, "partnero_referral=abcdefgh2345") || !strings.Contains(strings.ToLower(sc), "httponly") {
				t.Errorf("Set-Cookie = %q", sc)
			}
			if len(cs) != before+1 || cs[len(cs)-1].Source != SourceReferral || cs[len(cs)-1].LinkCode != "abcdefgh2345" {
				t.Errorf("recorded = %+v", cs[len(cs)-1:])
			}
		})
	}
}

// TestReferralCookie: the refer-a-friend cookie has the name Partnero's
// hybrid path reads (partnero_referral), holds the code, and lives for the
// window of the merchant's first campaign, on the merchant's cookie domain
// when it has one, HttpOnly and SameSite=Lax.
func TestReferralCookie(t *testing.T) {
	if ReferralCookie != "partnero_referral" {
		t.Fatalf("ReferralCookie = %q, want partnero_referral", ReferralCookie)
	}
	s, _ := newTestServer(t)
	tests := []struct {
		name, path   string
		maxAge       int
		domain       string
		setCookieHas []string
	}{
		// ma: campaign ca, default 30-day window, cookie domain track.shop-a.example.
		{"merchant with a cookie domain", "/f/ma/abcdefgh2345", 30 * 24 * 3600, "track.shop-a.example",
			[]string{"partnero_referral=abcdefgh2345", "max-age=2592000", "domain=track.shop-a.example", "path=/", "HttpOnly", "SameSite=Lax"}},
		// mb: campaign cb, a 7-day window, host-only.
		{"host-only merchant, campaign window", "/f/mb/zzzzzzzz2222", 7 * 24 * 3600, "",
			[]string{"partnero_referral=zzzzzzzz2222", "max-age=604800", "path=/", "HttpOnly", "SameSite=Lax"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := do(s, "GET", tt.path, nil, "")
			if ctx.Response.StatusCode() != 302 {
				t.Fatalf("status %d", ctx.Response.StatusCode())
			}
			raw := string(ctx.Response.Header.PeekCookie(ReferralCookie))
			for _, want := range tt.setCookieHas {
				if !strings.Contains(strings.ToLower(raw), strings.ToLower(want)) {
					t.Errorf("Set-Cookie %q lacks %q", raw, want)
				}
			}
			var ck fasthttp.Cookie
			if err := ck.Parse(raw); err != nil {
				t.Fatal(err)
			}
			code := tt.path[len(tt.path)-12:]
			if string(ck.Value()) != code || ck.MaxAge() != tt.maxAge || string(ck.Domain()) != tt.domain ||
				string(ck.Path()) != "/" || !ck.HTTPOnly() || ck.SameSite() != fasthttp.CookieSameSiteLaxMode {
				t.Errorf("cookie value %q max-age %d domain %q path %q httponly %v samesite %v, want %q %d %q / true Lax",
					ck.Value(), ck.MaxAge(), ck.Domain(), ck.Path(), ck.HTTPOnly(), ck.SameSite(), code, tt.maxAge, tt.domain)
			}
			if len(ctx.Response.Header.PeekCookie("ce_ref")) != 0 {
				t.Errorf("the old ce_ref cookie is still set")
			}
		})
	}
}

// TestReferralRedirectNoMacros: the destination of a refer-a-friend link is
// the merchant's first campaign's default destination with only ref=<code>
// added. Its macros are not expanded (there is no click id, partner or link
// to put in), so they stay as escaped text, and no click id is appended.
func TestReferralRedirectNoMacros(t *testing.T) {
	s, _ := newTestServer(t)
	cat := testCatalog()
	cat.Version = 2
	cat.Campaigns[0].DefaultDestination = "https://shop-a.example/p/{sub1}?cid={click_id}&k={partner_key}&c={campaign_id}#{link_code}"
	data, err := json.Marshal(cat)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyCatalog(data); err != nil {
		t.Fatal(err)
	}
	ctx := do(s, "GET", "/f/ma/abcdefgh2345?sub1=x&click_id=FORGED", nil, "")
	want := "https://shop-a.example/p/%7Bsub1%7D?c=%7Bcampaign_id%7D&cid=%7Bclick_id%7D&k=%7Bpartner_key%7D&ref=abcdefgh2345#%7Blink_code%7D"
	if got := string(ctx.Response.Header.Peek("Location")); ctx.Response.StatusCode() != 302 || got != want {
		t.Errorf("%d Location\n got %s\nwant %s", ctx.Response.StatusCode(), got, want)
	}
	cs := outboxClicks(t, s)
	if len(cs) != 1 || cs[0].Destination != want || cs[0].CampaignID != "ca" || cs[0].PartnerID != "" {
		t.Errorf("recorded click = %+v", cs)
	}
}
