package edge

import (
	"net/url"
	"strings"
	"testing"
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
			if !strings.Contains(sc, ReferralCookie+"=abcdefgh2345") || !strings.Contains(strings.ToLower(sc), "httponly") {
				t.Errorf("Set-Cookie = %q", sc)
			}
			if len(cs) != before+1 || cs[len(cs)-1].Source != SourceReferral || cs[len(cs)-1].LinkCode != "abcdefgh2345" {
				t.Errorf("recorded = %+v", cs[len(cs)-1:])
			}
		})
	}
}
