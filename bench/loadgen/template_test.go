package main

import "testing"

func TestTemplate(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{`{"unique_id":"pc-{{id}}","n":{{seq}}}`, `{"unique_id":"pc-r1-42","n":42}`},
		{"/r/alice?sub1={{ seq }}&run={{runid}}", "/r/alice?sub1=42&run=r1"},
		{"no placeholder", "no placeholder"},
		{"", ""},
	} {
		tpl, err := parseTemplate(tc.in)
		if err != nil {
			t.Fatalf("parseTemplate(%q): %v", tc.in, err)
		}
		if got := string(tpl.appendTo(nil, "r1", 42)); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"{{nope}}", "x{{id"} {
		if _, err := parseTemplate(bad); err == nil {
			t.Errorf("parseTemplate(%q): no error", bad)
		}
	}
}

func TestParamFromLocation(t *testing.T) {
	for _, tc := range []struct{ loc, want string }{
		{"https://example.com/landing?click_id=abc", "abc"},
		{"https://example.com/shop?utm=x&afk_cid=zz&click_id=def&y=1", "def"},
		{"https://example.com/", ""},
	} {
		if got := paramFromLocation([]byte(tc.loc), "click_id="); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.loc, got, tc.want)
		}
	}
}

func TestExpect(t *testing.T) {
	e, err := parseExpect("2xx,302")
	if err != nil {
		t.Fatal(err)
	}
	for code, want := range map[int]bool{200: true, 202: true, 302: true, 301: false, 404: false} {
		if got := e.ok(code); got != want {
			t.Errorf("ok(%d) = %v, want %v", code, got, want)
		}
	}
	if _, err := parseExpect("2x"); err == nil {
		t.Error("parseExpect(2x): no error")
	}
}
