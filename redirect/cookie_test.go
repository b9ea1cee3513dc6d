package redirect

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCookieValue(t *testing.T) {
	byID := &Campaign{ID: "c1"}
	byKey := &Campaign{ID: "c2", CookieHolds: CookiePartnerKey, WindowSeconds: 3600}
	tests := []struct {
		name string
		c    *Campaign
		want string
	}{
		{"default holds click id", byID, testID},
		{"explicit click id", &Campaign{CookieHolds: CookieClickID}, testID},
		{"partner key", byKey, "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CookieValue(tt.c, testID, "alice")
			if got != tt.want {
				t.Fatalf("CookieValue = %q, want %q", got, tt.want)
			}
			back, err := ParseCookieValue(tt.c, []byte(got))
			if err != nil {
				t.Fatalf("ParseCookieValue(%q): %v", got, err)
			}
			if back.ClickID+back.PartnerKey != tt.want || back.ClickID != "" && back.PartnerKey != "" {
				t.Errorf("ParseCookieValue(%q) = %+v", got, back)
			}
		})
	}
	if got, want := CookieMaxAge(byID), 30*24*3600; got != want {
		t.Errorf("CookieMaxAge(default) = %d, want %d", got, want)
	}
	if got, want := CookieMaxAge(byKey), 3600; got != want {
		t.Errorf("CookieMaxAge(1h) = %d, want %d", got, want)
	}
}

func TestParseCookieValue(t *testing.T) {
	byID := &Campaign{ID: "c1"}
	byKey := &Campaign{ID: "c2", CookieHolds: CookiePartnerKey}
	id := newTestMinter(t).New(time.Now())
	tests := []struct {
		name string
		c    *Campaign
		v    string
		want CookieContent
		ok   bool
	}{
		{"click id", byID, id, CookieContent{ClickID: id}, true},
		{"quoted click id", byID, `"` + id + `"`, CookieContent{ClickID: id}, true},
		{"half quoted", byID, `"` + id, CookieContent{}, false},
		{"partner key in click id campaign", byID, "alice", CookieContent{}, false},
		{"upper-case click id", byID, strings.ToUpper(id), CookieContent{}, false},
		{"click id with space", byID, " " + id[1:], CookieContent{}, false},
		{"empty", byID, "", CookieContent{}, false},
		{"partner key", byKey, "alice_B-9", CookieContent{PartnerKey: "alice_B-9"}, true},
		{"quoted partner key", byKey, `"alice"`, CookieContent{PartnerKey: "alice"}, true},
		{"longest partner key", byKey, strings.Repeat("k", 64), CookieContent{PartnerKey: strings.Repeat("k", 64)}, true},
		{"partner key too long", byKey, strings.Repeat("k", 65), CookieContent{}, false},
		{"partner key with dot", byKey, "al.ice", CookieContent{}, false},
		{"partner key with semicolon", byKey, "alice;x=y", CookieContent{}, false},
		{"empty quoted", byKey, `""`, CookieContent{}, false},
		{"no campaign", nil, id, CookieContent{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCookieValue(tt.c, []byte(tt.v))
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseCookieValue(%q) = %+v, %v; want %+v, ok=%v", tt.v, got, err, tt.want, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidCookie) {
				t.Errorf("err = %v, want ErrInvalidCookie", err)
			}
		})
	}
}

func TestParseCookieValueAllocs(t *testing.T) {
	c := &Campaign{ID: "c1"}
	bad := []byte("garbage")
	if got := testing.AllocsPerRun(100, func() { _, _ = ParseCookieValue(c, bad) }); got != 0 {
		t.Errorf("allocs on a bad cookie = %v, want 0", got)
	}
}

func FuzzParseCookieValue(f *testing.F) {
	for _, s := range []string{testID, `"` + testID + `"`, "alice", "", `""`, "a;b", strings.Repeat("k", 65), "\xff"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, v string, partnerKey bool) {
		c := &Campaign{ID: "c"}
		if partnerKey {
			c.CookieHolds = CookiePartnerKey
		}
		got, err := ParseCookieValue(c, []byte(v))
		if err != nil {
			if !errors.Is(err, ErrInvalidCookie) || got != (CookieContent{}) {
				t.Fatalf("ParseCookieValue(%q) = %+v, %v", v, got, err)
			}
			return
		}
		// What parses is safe to set again and round-trips through CookieValue.
		switch {
		case partnerKey:
			if got.ClickID != "" || !idPattern.MatchString(got.PartnerKey) {
				t.Fatalf("ParseCookieValue(%q) = %+v", v, got)
			}
		default:
			if got.PartnerKey != "" || !LooksLikeClickID([]byte(got.ClickID)) {
				t.Fatalf("ParseCookieValue(%q) = %+v", v, got)
			}
		}
		if back := CookieValue(c, got.ClickID, got.PartnerKey); back != got.ClickID+got.PartnerKey ||
			(back != v && `"`+back+`"` != v) {
			t.Fatalf("CookieValue(%+v) = %q, want the parsed %q", got, back, v)
		}
	})
}
