package redirect

import (
	"errors"
	"maps"
	"net/url"
	"strings"
	"testing"
)

const testID = "0123456789abcdefghjkmnpqrstvwxyz"

func lookup(t testing.TB, x *Index, code string) Resolved {
	t.Helper()
	r, ok := x.Lookup([]byte(code))
	if !ok {
		t.Fatalf("Lookup(%q) not found", code)
	}
	return r
}

func TestAppendDestination(t *testing.T) {
	x := NewIndex(testCatalog(t))
	tests := []struct {
		name     string
		code     string
		query    string
		clickID  string
		want     string
		subs     [5]string
		utm      map[string]string
		rejected bool
	}{
		{name: "plain", code: "abc", want: "https://shop.example/landing?src=aff&click_id=" + testID},
		{name: "no click id", code: "abc", clickID: "-", want: "https://shop.example/landing?src=aff"},
		{name: "passthrough subs utm", code: "abc", query: "utm_source=nl&sub1=x%20y&foo=bar+baz&utm_source=again&sub1=second",
			want: "https://shop.example/landing?src=aff&utm_source=nl&sub1=x%20y&foo=bar+baz&utm_source=again&sub1=second&click_id=" + testID,
			subs: [5]string{"x y"}, utm: map[string]string{"utm_source": "nl"}},
		{name: "all subs", code: "abc", query: "sub5=e&sub4=d&sub3=c&sub2=b&sub1=a&SUB1=z",
			want: "https://shop.example/landing?src=aff&sub5=e&sub4=d&sub3=c&sub2=b&sub1=a&SUB1=z&click_id=" + testID,
			subs: [5]string{"a", "b", "c", "d", "e"}},
		{name: "visitor cannot inject click id or partner key", code: "abc",
			query: "click_id=FAKE&aff=evil&CLICK.ID=x&click%5Fid=y&Click+Id=w&aff[]=y&AFF=z&src=override&ok=1",
			want:  "https://shop.example/landing?src=aff&ok=1&click_id=" + testID},
		{name: "empty pairs and bare keys", code: "abc", query: "&&flag&=v&x=",
			want: "https://shop.example/landing?src=aff&flag&x=&click_id=" + testID},
		{name: "unsafe bytes re-escaped", code: "abc", query: "q=a b\r\n\"<x>\\`{|}^é&p=%0d%0a%zz",
			want: "https://shop.example/landing?src=aff&q=a%20b%0D%0A%22%3Cx%3E%5C%60%7B%7C%7D%5E%C3%A9&p=%0d%0a%25zz&click_id=" + testID},
		{name: "hash in query escaped", code: "abc", query: "a=%23&b=#x",
			want: "https://shop.example/landing?src=aff&a=%23&b=%23x&click_id=" + testID},
		{name: "deep link", code: "abc",
			query: "url=https%3A%2F%2Fwww.shop.example%2Fp%2F1%3Fa%3D1%26click_id%3Dfake%26aff%3Dx%23frag&x=2",
			want:  "https://www.shop.example/p/1?a=1&x=2&click_id=" + testID + "#frag"},
		{name: "deep link unescaped with own params", code: "abc", query: "url=https://shop.example/p?a=1&b=2",
			want: "https://shop.example/p?a=1&b=2&click_id=" + testID},
		{name: "deep link plus kept", code: "abc", query: "url=https://shop.example/s?q=a+b",
			want: "https://shop.example/s?q=a+b&click_id=" + testID},
		{name: "deep link upper case", code: "abc", query: "url=HTTPS://WWW.SHOP.EXAMPLE:8443/A",
			want: "https://www.shop.example:8443/A?click_id=" + testID},
		{name: "deep link star domain", code: "abc", query: "url=http://a.b.cdn.example",
			want: "http://a.b.cdn.example?click_id=" + testID},
		{name: "deep link star domain apex", code: "abc", query: "url=http://cdn.example/",
			want: "http://cdn.example/?click_id=" + testID},
		{name: "deep link trailing dot", code: "abc", query: "url=https://shop.example./",
			want: "https://shop.example./?click_id=" + testID},
		{name: "deep link path re-escaped", code: "abc", query: "url=https://shop.example/a%2520b/c d|é?q=x y",
			want: "https://shop.example/a%20b/c%20d%7C%C3%A9?q=x%20y&click_id=" + testID},
		{name: "deep link bad escape", code: "abc", query: "url=https://shop.example/a%25",
			rejected: true, want: "https://shop.example/landing?src=aff&click_id=" + testID},
		{name: "deep link control", code: "abc", query: "url=https://shop.example/a%09b",
			rejected: true, want: "https://shop.example/landing?src=aff&click_id=" + testID},
		{name: "deep link elsewhere", code: "abc", query: "url=https://evil.example/&x=1",
			rejected: true, want: "https://shop.example/landing?src=aff&x=1&click_id=" + testID},
		{name: "deep link suffix trick", code: "abc", query: "url=https://evilshop.example/",
			rejected: true, want: "https://shop.example/landing?src=aff&click_id=" + testID},
		{name: "deep link userinfo", code: "abc", query: "url=https://shop.example@evil.example/",
			rejected: true, want: "https://shop.example/landing?src=aff&click_id=" + testID},
		{name: "deep link backslash", code: "abc", query: "url=https://evil.example\\@shop.example/",
			rejected: true, want: "https://shop.example/landing?src=aff&click_id=" + testID},
		{name: "deep link scheme-relative", code: "abc", query: "url=//shop.example/",
			rejected: true, want: "https://shop.example/landing?src=aff&click_id=" + testID},
		{name: "deep link javascript", code: "abc", query: "url=javascript:alert(1)//shop.example",
			rejected: true, want: "https://shop.example/landing?src=aff&click_id=" + testID},
		{name: "deep link idn lookalike", code: "abc", query: "url=https://sh%D0%BEp.example/",
			rejected: true, want: "https://shop.example/landing?src=aff&click_id=" + testID},
		{name: "deep link escaped host", code: "abc", query: "url=https://shop%252Eexample/",
			rejected: true, want: "https://shop.example/landing?src=aff&click_id=" + testID},
		{name: "deep link first only", code: "abc", query: "url=https://evil.example/&url=https://shop.example/",
			rejected: true, want: "https://shop.example/landing?src=aff&click_id=" + testID},
		{name: "deep link empty", code: "abc", query: "url=",
			rejected: true, want: "https://shop.example/landing?src=aff&click_id=" + testID},
		{name: "no passthrough still records", code: "ghi", query: "foo=1&utm_source=a&sub2=s&url=https://evil.example/",
			rejected: true, want: "https://shop.example/landing?src=aff&click_id=" + testID,
			subs: [5]string{1: "s"}, utm: map[string]string{"utm_source": "a"}},
		{name: "no passthrough deep link", code: "ghi", query: "foo=1&url=https://shop.example/x%3Fa%3D1",
			want: "https://shop.example/x?a=1&click_id=" + testID},
		{name: "macros fragment partner key", code: "def", query: "sub1=a/b?c&x=1",
			want: "https://shop.example/p/a%2Fb%3Fc?cid=" + testID + "&k=alice&sub1=a/b?c&x=1&aff=alice#top",
			subs: [5]string{"a/b?c"}},
		{name: "template params win", code: "def", query: "cid=FAKE&k=mallory&ref_id=FAKE&x=1",
			want: "https://shop.example/p/?cid=" + testID + "&k=alice&x=1&aff=alice#top"},
		{name: "crlf in macro", code: "def", query: "sub1=%0d%0aSet-Cookie:%20a=b",
			want: "https://shop.example/p/%0D%0ASet-Cookie%3A%20a%3Db?cid=" + testID + "&k=alice&sub1=%0d%0aSet-Cookie:%20a=b&aff=alice#top",
			subs: [5]string{"\r\nSet-Cookie: a=b"}},
		{name: "campaign allowed domain deep link", code: "def", query: "url=https://partner-landing.example/x#f",
			want: "https://partner-landing.example/x?ref_id=" + testID + "&aff=alice#f"},
		{name: "other merchant's domain refused", code: "m2link", query: "url=https://shop.example/",
			rejected: true, want: "https://m2.example:8443/x?click_id=" + testID},
		{name: "template host deep link", code: "m2link", query: "url=https://M2.example/deep",
			want: "https://m2.example/deep?click_id=" + testID},
		{name: "template subdomain refused", code: "m2link", query: "url=https://sub.m2.example/",
			rejected: true, want: "https://m2.example:8443/x?click_id=" + testID},
		{name: "literal idn domain", code: "m2link", query: "url=https://b%C3%BCcher.example/b",
			want: "https://bücher.example/b?click_id=" + testID},
		{name: "literal idn subdomain", code: "m2link", query: "url=https://www.b%C3%BCcher.example/",
			want: "https://www.bücher.example/?click_id=" + testID},
		{name: "punycode of idn refused", code: "m2link", query: "url=https://xn--bcher-kva.example/",
			rejected: true, want: "https://m2.example:8443/x?click_id=" + testID},
		{name: "idn prefix refused", code: "m2link", query: "url=https://%C3%BC.b%C3%BCcher.example/",
			rejected: true, want: "https://m2.example:8443/x?click_id=" + testID},
		{name: "unknown macro literal", code: "custom", query: "sub1=zz",
			want: "https://other.example/custom/c1/%7Bunknown%7D/%7Bsub1?sub1=zz&click_id=" + testID, subs: [5]string{"zz"}},
		{name: "ip template", code: "m3link", query: "a=1",
			want: "http://127.0.0.1:8080/?a=1&click_id=" + testID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := testID
			if tt.clickID == "-" {
				id = ""
			}
			in := &DestInput{R: lookup(t, x, tt.code), ClickID: id, Query: []byte(tt.query)}
			var res DestResult
			got, err := AppendDestination([]byte("prefix:"), in, &res)
			if err != nil {
				t.Fatalf("AppendDestination: %v", err)
			}
			if want := "prefix:" + tt.want; string(got) != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
			if res.Subs != tt.subs {
				t.Errorf("Subs = %q, want %q", res.Subs, tt.subs)
			}
			if !maps.Equal(res.UTM, tt.utm) || (tt.utm == nil) != (res.UTM == nil) {
				t.Errorf("UTM = %v, want %v", res.UTM, tt.utm)
			}
			if res.DeepLinkRejected != tt.rejected {
				t.Errorf("DeepLinkRejected = %v, want %v", res.DeepLinkRejected, tt.rejected)
			}
			// A hand-built Resolved (no precompiled plan) gives the same URL.
			hand := &DestInput{R: Resolved{Link: in.R.Link, Campaign: in.R.Campaign, Partner: in.R.Partner, Merchant: in.R.Merchant},
				ClickID: id, Query: in.Query}
			again, err := AppendDestination(nil, hand, nil)
			if err != nil || string(again) != tt.want {
				t.Errorf("hand-built Resolved: got %s, %v; want %s", again, err, tt.want)
			}
		})
	}
}

// A campaign's partner_key_param names the parameter that carries the
// partner key (Partnero: "the exact query parameter depends on your
// program"); only that name is ours, so only it is dropped from the visitor.
func TestAppendDestinationPartnerKeyParam(t *testing.T) {
	c := testCatalog(t)
	c.Campaigns = append(c.Campaigns,
		Campaign{ID: "c5", MerchantID: "m1", DefaultDestination: "https://shop.example/signup", PassPartnerKey: true, PartnerKeyParam: "ref"},
		Campaign{ID: "c6", MerchantID: "m1", DefaultDestination: "https://shop.example/signup", PartnerKeyParam: "via"})
	c.Links = append(c.Links,
		Link{Code: "refkey", CampaignID: "c5", PartnerID: "p1"},
		Link{Code: "viakey", CampaignID: "c6", PartnerID: "p1"})
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	x := NewIndex(c)
	tests := []struct {
		name, code, query, want string
	}{
		{"custom name", "refkey", "",
			"https://shop.example/signup?click_id=" + testID + "&ref=alice"},
		{"visitor's ref dropped, aff is not ours", "refkey", "ref=evil&REF=x&re%66=y&ref[]=z&aff=kept&x=1",
			"https://shop.example/signup?aff=kept&x=1&click_id=" + testID + "&ref=alice"},
		{"deep link's own ref dropped", "refkey", "url=https://shop.example/p%3Fref%3Devil%26aff%3D1",
			"https://shop.example/p?aff=1&click_id=" + testID + "&ref=alice"},
		{"name without pass_partner_key appends nothing", "viakey", "via=evil&aff=kept",
			"https://shop.example/signup?aff=kept&click_id=" + testID},
		{"default name is aff", "def2", "aff=evil&ref=kept",
			"https://shop.example/p/?cid=" + testID + "&k=alice&ref=kept&aff=alice#top"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := lookup(t, x, tt.code)
			got, err := AppendDestination(nil, &DestInput{R: r, ClickID: testID, Query: []byte(tt.query)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			checkInvariants(t, r, testID, got, r.plan.tmpl.host, r.plan.allowed)
		})
	}
	if got, want := (&Campaign{}).PartnerParam(), "aff"; got != want {
		t.Errorf("default PartnerParam() = %q, want %q", got, want)
	}
}

func TestAppendDestinationUTMCap(t *testing.T) {
	x := NewIndex(testCatalog(t))
	var q []string
	for i := 0; i < 40; i++ {
		q = append(q, "utm_k"+strings.Repeat("x", i)+"=v")
	}
	var res DestResult
	out, err := AppendDestination(nil, &DestInput{R: lookup(t, x, "abc"), ClickID: testID, Query: []byte(strings.Join(q, "&"))}, &res)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(res.UTM); got != MaxUTMParams {
		t.Errorf("len(UTM) = %d, want %d", got, MaxUTMParams)
	}
	if got := strings.Count(string(out), "utm_k"); got != 40 {
		t.Errorf("passed through %d utm parameters, want 40", got)
	}
}

func TestAppendDestinationErrors(t *testing.T) {
	m := &Merchant{ID: "m"}
	tests := []struct {
		name   string
		r      Resolved
		unsafe bool
	}{
		{"no campaign", Resolved{Merchant: m}, false},
		{"javascript template", Resolved{Campaign: &Campaign{ID: "c", DefaultDestination: "javascript:alert(1)"}, Merchant: m}, true},
		{"relative template", Resolved{Campaign: &Campaign{ID: "c", DefaultDestination: "/landing"}, Merchant: m}, true},
		{"userinfo template", Resolved{Campaign: &Campaign{ID: "c", DefaultDestination: "https://shop.example@evil.example/"}, Merchant: m}, true},
		{"macro in host", Resolved{Campaign: &Campaign{ID: "c", DefaultDestination: "https://{sub1}.example/"}, Merchant: m}, true},
		{"link template", Resolved{Link: &Link{Code: "l", Destination: "https:evil.example"},
			Campaign: &Campaign{ID: "c", DefaultDestination: "https://shop.example/"}, Merchant: m}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppendDestination([]byte("keep"), &DestInput{R: tt.r, ClickID: testID, Query: []byte("sub1=evil.example/")}, nil)
			if err == nil {
				t.Fatalf("AppendDestination = %q, nil; want an error", got)
			}
			if errors.Is(err, ErrUnsafeDestination) != tt.unsafe {
				t.Errorf("err = %v, want ErrUnsafeDestination: %v", err, tt.unsafe)
			}
			if string(got) != "keep" {
				t.Errorf("dst = %q after error, want it unchanged", got)
			}
		})
	}
}

// A plan is used only for the pointers it was built for: swapping the link
// of a looked-up Resolved must not reuse the other link's template.
func TestAppendDestinationStalePlan(t *testing.T) {
	x := NewIndex(testCatalog(t))
	r := lookup(t, x, "abc")
	r.Link = lookup(t, x, "custom").Link
	got, err := AppendDestination(nil, &DestInput{R: r, ClickID: testID}, nil)
	if want := "https://other.example/custom/c1/%7Bunknown%7D/%7Bsub1?click_id=" + testID; err != nil || string(got) != want {
		t.Errorf("got %s, %v; want %s", got, err, want)
	}
}

func TestAppendDestinationAllocs(t *testing.T) {
	x := NewIndex(testCatalog(t))
	buf := make([]byte, 0, 512)
	tests := []struct {
		code, query string
		want        float64
	}{
		{"abc", "", 0},
		{"abc", "gclid=xyz&ref=nl&foo=bar+baz", 0},
		{"def", "", 0},
		{"abc", "sub1=alpha&sub2=beta", 2},
		// The kept res's map is reused; common utm_ names are not copied.
		{"abc", "utm_source=news&utm_medium=mail", 2},
		{"abc", "utm_other=news", 2},
	}
	for _, tt := range tests {
		in := &DestInput{R: lookup(t, x, tt.code), ClickID: testID, Query: []byte(tt.query)}
		var res DestResult
		got := testing.AllocsPerRun(200, func() {
			var err error
			if buf, err = AppendDestination(buf[:0], in, &res); err != nil {
				t.Fatal(err)
			}
		})
		if got != tt.want {
			t.Errorf("AppendDestination(%s?%s) allocs = %v, want %v", tt.code, tt.query, got, tt.want)
		}
		// Without a report, nothing is allocated, macros included.
		for _, code := range []string{tt.code, "def"} {
			in := &DestInput{R: lookup(t, x, code), ClickID: testID, Query: []byte(tt.query + "&sub1=x%20y")}
			if got := testing.AllocsPerRun(200, func() { buf, _ = AppendDestination(buf[:0], in, nil) }); got != 0 {
				t.Errorf("AppendDestination(%s?%s, nil res) allocs = %v, want 0", code, in.Query, got)
			}
		}
	}
}

// checkInvariants asserts what every destination must satisfy whatever the
// visitor sent: only safe bytes, an absolute http(s) URL without userinfo as
// net/url reads it, a host that is the template's or an allowed one, exactly
// our click id under the click parameter (and nothing a lenient server could
// read as it), and the partner key only when the campaign passes it.
func checkInvariants(t *testing.T, r Resolved, clickID string, out []byte, trusted string, allowed []string) {
	t.Helper()
	s := string(out)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '\\' || c == '"' || c == '<' || c == '>' {
			t.Fatalf("unsafe byte %q at %d in %q", c, i, s)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Opaque != "" || u.User != nil || u.Host == "" {
		t.Fatalf("%q is not an absolute http(s) URL without userinfo", s)
	}
	if !strings.HasPrefix(s, u.Scheme+"://"+u.Host) {
		t.Fatalf("%q: host %q is not written literally after the scheme", s, u.Host)
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	ok := host == trusted
	for _, d := range allowed {
		ok = ok || host == d || strings.HasSuffix(host, "."+d) && isASCIIHost(strings.TrimSuffix(host, "."+d))
	}
	if !ok {
		t.Fatalf("%q: host %q is neither %q nor within %q", s, host, trusted, allowed)
	}
	param := r.Campaign.Param()
	keyParam := r.Campaign.PartnerParam()
	q := u.Query()
	for k, vs := range q {
		switch {
		case keyLike(k, param):
			if k != param || len(vs) != 1 || vs[0] != clickID {
				t.Fatalf("%q: click parameter %q = %q, want only %q = [%q]", s, k, vs, param, clickID)
			}
		case keyLike(k, keyParam):
			if !r.Campaign.PassPartnerKey || k != keyParam || len(vs) != 1 || vs[0] != r.Partner.Key {
				t.Fatalf("%q: partner key parameter %q = %q", s, k, vs)
			}
		}
	}
}

func isASCIIHost(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// openRedirectPayloads combines the usual open-redirect and header-injection
// tricks: scheme confusions, host spoofs (userinfo, suffix, escapes, IDN,
// fullwidth and ideographic dots, backslashes) and CRLF suffixes.
func openRedirectPayloads() []string {
	prefixes := []string{"https://", "http://", "HtTpS://", "//", "/\\", "\\\\", "https:", "https:/", "https:\\\\",
		"https:///", " https://", "\thttps://", "javascript:", "ftp://", "data:text/html,", "https:/\\/", "%68ttps://", "https%3A//"}
	hosts := []string{"evil.example", "shop.example.evil.example", "evilshop.example", "shop.example@evil.example",
		"shop.example%40evil.example", "sh\u043ep.example", "xn--shp-ued.example", "shop.example%2eevil.example",
		"shop.example\\.evil.example", "127.0.0.1", "[::1]", "shop.example:443@evil.example", "evil.example#.shop.example",
		"evil.example?.shop.example", "evil.example\\@shop.example", "shop.example%00.evil.example", "%65vil.example",
		"evil\u3002example", "evil\uff0eshop.example", "shop.example\r\n.evil.example", "shop.example%0d%0a", "SHOP.EXAMPLE"}
	suffixes := []string{"", "/", "/%0d%0aSet-Cookie:x=y", "/\r\nLocation: https://evil.example", "?x=%0a", "#@evil.example",
		"/..%2f..%2fevil.example", "\\@evil.example", "/%5c%5cevil.example", "?click_id=FAKE&aff=evil"}
	var out []string
	for _, p := range prefixes {
		for _, h := range hosts {
			for _, s := range suffixes {
				out = append(out, p+h+s)
			}
		}
	}
	return out
}

func TestOpenRedirectCorpus(t *testing.T) {
	x := NewIndex(testCatalog(t))
	type target struct {
		code, key string
	}
	targets := []target{{"abc", "url"}, {"def", "sub1"}, {"abc", "x"}, {"custom", "sub1"}}
	encodings := []func(string) string{
		func(s string) string { return s },
		url.QueryEscape,
		func(s string) string { return url.QueryEscape(url.QueryEscape(s)) },
		func(s string) string { return strings.NewReplacer(":", "%3A", "/", "%2F", "\\", "%5C").Replace(s) },
	}
	n := 0
	var buf []byte
	for i, p := range openRedirectPayloads() {
		for j, enc := range encodings {
			// Rotate targets and query shapes so that every payload meets
			// every encoding, and each target sees every trick.
			tg := targets[(i+j)%len(targets)]
			e := enc(p)
			query := tg.key + "=" + e
			if (i/len(targets)+j)%2 == 1 {
				query = e + "=1&" + tg.key + "=" + e + "&url=" + e
			}
			r := lookup(t, x, tg.code)
			in := &DestInput{R: r, ClickID: testID, Query: []byte(query)}
			var err error
			buf, err = AppendDestination(buf[:0], in, nil)
			if err != nil {
				t.Fatalf("AppendDestination(%s?%s): %v", tg.code, query, err)
			}
			checkInvariants(t, r, testID, buf, r.plan.tmpl.host, r.plan.allowed)
			n++
		}
	}
	if n < 10_000 {
		t.Fatalf("corpus has %d payloads, want at least 10000", n)
	}
	t.Logf("%d payloads", n)
}

func FuzzAppendDestination(f *testing.F) {
	x := NewIndex(testCatalog(f))
	codes := []string{"abc", "def", "ghi", "m2link", "custom", "m3link"}
	for i, p := range openRedirectPayloads()[:200] {
		f.Add(uint8(i), "url="+url.QueryEscape(p)+"&sub1="+p)
	}
	f.Add(uint8(1), "sub1=%0d%0a&utm_a=1&click_id=x&aff=y")
	f.Add(uint8(3), "url=https://b%C3%BCcher.example/x?y#z")
	f.Fuzz(func(t *testing.T, which uint8, query string) {
		r := lookup(t, x, codes[int(which)%len(codes)])
		var res DestResult
		out, err := AppendDestination(nil, &DestInput{R: r, ClickID: testID, Query: []byte(query)}, &res)
		if err != nil {
			t.Fatalf("AppendDestination(%q): %v", query, err)
		}
		checkInvariants(t, r, testID, out, r.plan.tmpl.host, r.plan.allowed)
		if len(res.UTM) > MaxUTMParams {
			t.Fatalf("len(UTM) = %d", len(res.UTM))
		}
		// Without res, the same destination; with a res kept from an
		// earlier call, the same report.
		bare, err := AppendDestination(nil, &DestInput{R: r, ClickID: testID, Query: []byte(query)}, nil)
		if err != nil || string(bare) != string(out) {
			t.Fatalf("with nil res: %q, %v; want %q", bare, err, out)
		}
		reused := DestResult{Subs: [5]string{"old"}, UTM: map[string]string{"utm_old": "x"}, DeepLinkRejected: true}
		again, err := AppendDestination(nil, &DestInput{R: r, ClickID: testID, Query: []byte(query)}, &reused)
		if err != nil || string(again) != string(out) {
			t.Fatalf("with a reused res: %q, %v; want %q", again, err, out)
		}
		if reused.Subs != res.Subs || reused.DeepLinkRejected != res.DeepLinkRejected || len(reused.UTM) != len(res.UTM) {
			t.Fatalf("reused res = %+v, want %+v", reused, res)
		}
		for k, v := range res.UTM {
			if reused.UTM[k] != v {
				t.Fatalf("reused res UTM = %v, want %v", reused.UTM, res.UTM)
			}
		}
	})
}

// TestAppendDestinationWithoutReport: a nil res changes nothing in the URL,
// macros included.
func TestAppendDestinationWithoutReport(t *testing.T) {
	x := NewIndex(testCatalog(t))
	for _, code := range []string{"abc", "def", "ghi", "m2link", "custom", "m3link"} {
		for _, q := range []string{"", "sub1=a%2Fb+c&sub1=second&utm_source=x&sub5=%zz", "sub1=%E2%82%AC&url=https%3A%2F%2Fshop.example%2Fdeep", "utm_Source=A&UTM_x=1&sub2=~._-"} {
			in := &DestInput{R: lookup(t, x, code), ClickID: testID, Query: []byte(q)}
			var res DestResult
			want, err := AppendDestination(nil, in, &res)
			if err != nil {
				t.Fatal(err)
			}
			got, err := AppendDestination(nil, in, nil)
			if err != nil || string(got) != string(want) {
				t.Errorf("%s?%s without res = %q, %v; want %q", code, q, got, err, want)
			}
			skip := *in
			skip.SkipValues = true
			var decision DestResult
			got, err = AppendDestination(nil, &skip, &decision)
			if err != nil || string(got) != string(want) || decision.DeepLinkRejected != res.DeepLinkRejected ||
				decision.Subs != [5]string{} || decision.UTM != nil {
				t.Errorf("%s?%s with SkipValues = %q, %+v, %v; want %q and only the deep-link decision %v",
					code, q, got, decision, err, want, res.DeepLinkRejected)
			}
			buf := make([]byte, 0, 1024)
			if n := testing.AllocsPerRun(50, func() { _, _ = AppendDestination(buf, &skip, &decision) }); n != 0 && !strings.Contains(q, "url=") {
				t.Errorf("%s?%s with SkipValues: %v allocs, want 0 (no deep link)", code, q, n)
			}
		}
	}
}

func BenchmarkAppendDestination(b *testing.B) {
	x := NewIndex(testCatalog(b))
	for _, bc := range []struct{ name, code, query string }{
		{"plain", "abc", ""},
		{"passthrough", "abc", "gclid=EAIaIQobChMI&utm_source=newsletter&utm_medium=email&sub1=banner"},
		{"macros", "def", "sub1=spring-sale&x=1"},
		{"deeplink", "abc", "url=https%3A%2F%2Fwww.shop.example%2Fp%2F123%3Fcolor%3Dred"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := &DestInput{R: lookup(b, x, bc.code), ClickID: testID, Query: []byte(bc.query)}
			buf := make([]byte, 0, 512)
			var res DestResult
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = AppendDestination(buf[:0], in, &res); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
