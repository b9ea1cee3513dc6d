package redirect

import (
	"fmt"
	"net/url"
	"strings"
)

// macro names a value substituted into a destination template.
type macro uint8

const (
	macroNone macro = iota
	macroClickID
	macroPartnerKey
	macroCampaignID
	macroLinkCode
	macroSub1 // macroSub1+i is sub(i+1)
	macroSub2
	macroSub3
	macroSub4
	macroSub5
)

var macroNames = map[string]macro{
	"click_id":    macroClickID,
	"partner_key": macroPartnerKey,
	"campaign_id": macroCampaignID,
	"link_code":   macroLinkCode,
	"sub1":        macroSub1,
	"sub2":        macroSub2,
	"sub3":        macroSub3,
	"sub4":        macroSub4,
	"sub5":        macroSub5,
}

// segment is a piece of a compiled template: literal text already in its
// final escaped form, or a macro whose value is escaped when substituted.
type segment struct {
	lit string
	m   macro
}

// template is a destination URL template compiled once per catalog version.
type template struct {
	raw string
	// host is the template's host name in normDomain form: the one host a
	// destination may always point to.
	host string
	// base is everything before '#', starting with "scheme://authority".
	base []segment
	// frag is the fragment without '#'; hasFrag tells an empty fragment
	// from none.
	frag    []segment
	hasFrag bool
	// hasQuery is set when base contains '?', so appended parameters
	// continue with '&'.
	hasQuery bool
	// usesClickID is set when a {click_id} macro places the click id, so it
	// is not appended again.
	usesClickID bool
	// queryKeys are the decoded literal parameter names of the template's
	// query: the merchant's parameters win over the visitor's.
	queryKeys []string
}

// compileTemplate parses and checks a destination template: an absolute
// http(s) URL without userinfo, whose authority holds no macro and no
// escaped or exotic bytes. Everything after the authority is split into
// literals and macros; literal bytes unsafe in a URL are escaped now so the
// redirect path only copies them.
func compileTemplate(raw string) (*template, error) {
	if !absHTTPURL(raw) {
		return nil, fmt.Errorf("template %q: not an absolute http(s) URL", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("template %q: %w", raw, err)
	}
	if u.User != nil {
		return nil, fmt.Errorf("template %q: userinfo not allowed", raw)
	}
	var scheme, rest string
	switch {
	case hasPrefixFold(raw, "https://"):
		scheme, rest = "https://", raw[len("https://"):]
	case hasPrefixFold(raw, "http://"):
		scheme, rest = "http://", raw[len("http://"):]
	default:
		return nil, fmt.Errorf("template %q: want it to start with http:// or https://", raw)
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if strings.ContainsAny(authority, "{}") {
		return nil, fmt.Errorf("template %q: host must not contain a macro", raw)
	}
	if authority != u.Host {
		return nil, fmt.Errorf("template %q: host %q must be written literally", raw, authority)
	}
	host, _, ok := splitAuthority(authority)
	if !ok {
		return nil, fmt.Errorf("template %q: malformed host %q", raw, authority)
	}
	if host[0] != '[' {
		if err := checkDomain(strings.TrimSuffix(host, ".")); err != nil {
			return nil, fmt.Errorf("template %q: %w", raw, err)
		}
	}
	t := &template{raw: raw, host: normDomain(host)}
	prefix := scheme + lowerASCII(authority)
	baseTail, frag, hasFrag := strings.Cut(tail, "#")
	t.hasFrag = hasFrag
	t.base = compileSegments(prefix, baseTail)
	if hasFrag {
		t.frag = compileSegments("", frag)
	}
	if _, q, ok := strings.Cut(baseTail, "?"); ok {
		t.hasQuery = true
		for pair := range strings.SplitSeq(q, "&") {
			k, _, _ := strings.Cut(pair, "=")
			if k == "" || strings.ContainsAny(k, "{}") {
				continue
			}
			if dk, err := url.QueryUnescape(k); err == nil {
				t.queryKeys = append(t.queryKeys, dk)
			}
		}
	}
	for _, segs := range [][]segment{t.base, t.frag} {
		for _, s := range segs {
			if s.m == macroClickID {
				t.usesClickID = true
			}
		}
	}
	return t, nil
}

// compileSegments splits s into literals and known macros. prefix is
// prepended to the first literal verbatim. An unknown "{...}" stays as text,
// its braces escaped.
func compileSegments(prefix, s string) []segment {
	var segs []segment
	lit := []byte(prefix)
	flush := func() {
		if len(lit) > 0 {
			segs = append(segs, segment{lit: string(lit)})
			lit = lit[:0]
		}
	}
	for len(s) > 0 {
		open := strings.IndexByte(s, '{')
		if open < 0 {
			lit = appendCanonical(lit, s)
			break
		}
		lit = appendCanonical(lit, s[:open])
		s = s[open:]
		if close := strings.IndexByte(s, '}'); close > 0 {
			if m, ok := macroNames[s[1:close]]; ok {
				flush()
				segs = append(segs, segment{m: m})
				s = s[close+1:]
				continue
			}
		}
		lit = append(lit, "%7B"...)
		s = s[1:]
	}
	flush()
	return segs
}

// appendCanonical appends s to dst with every byte that is not safe in a
// URL's path, query or fragment percent-escaped. Valid %XX escapes and the
// delimiters that may appear after the authority ('/', '?', '&', '=', ...)
// are kept, so the structure of s is preserved; '#' is always escaped.
func appendCanonical[T string | []byte](dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			dst = append(dst, s[i:i+3]...)
			i += 2
		case urlSafe[c]:
			dst = append(dst, c)
		default:
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return dst
}

const upperHex = "0123456789ABCDEF"

// unreserved marks RFC 3986 unreserved bytes: the only bytes a substituted
// value keeps unescaped, so a value can never change a URL's structure.
var unreserved = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~" {
		t[c] = true
	}
	return t
}()

// urlSafe marks bytes kept as they are in canonical URL text: unreserved,
// sub-delimiters, ':', '@', '/' and '?'. Everything else ('%' aside, handled
// by the callers) is escaped: controls, space, '"', '<', '>', '\\', '^', '`',
// '{', '|', '}', '[', ']', '#' and every non-ASCII byte.
var urlSafe = func() (t [256]bool) {
	t = unreserved
	for _, c := range "!$&'()*+,;=:@/?" {
		t[c] = true
	}
	return t
}()

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func hasPrefixFold[T string | []byte](s T, lowerPrefix string) bool {
	return len(s) >= len(lowerPrefix) && equalFoldASCII(s[:len(lowerPrefix)], lowerPrefix)
}
