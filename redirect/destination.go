package redirect

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrUnsafeDestination is wrapped by AppendDestination's errors when the URL
// it would redirect to is not an absolute http(s) URL on the template's host
// or an allowed domain, or holds bytes unsafe in a Location header. No
// visitor input can cause it on a validated catalog; it is the last line of
// the open-redirect defence.
var ErrUnsafeDestination = errors.New("unsafe destination")

// DestInput is what AppendDestination builds a destination from.
type DestInput struct {
	// R is the resolved link. A Resolved from Index.Lookup carries the
	// link's precompiled template; a hand-built one is compiled per call.
	R Resolved
	// ClickID is the click id minted for this visit; empty appends none.
	ClickID string
	// Query is the visitor's raw query string, without '?'.
	Query []byte
	// SkipValues leaves DestResult.Subs and UTM empty: only the deep-link
	// decision is reported, and nothing is allocated for the values (for a
	// caller that records nothing).
	SkipValues bool
}

// DestResult is what AppendDestination learned from the visitor's query.
type DestResult struct {
	// Subs are the decoded values of sub1..sub5 (first occurrence of each).
	Subs [5]string
	// UTM maps decoded utm_* names to decoded values (first occurrence, at
	// most MaxUTMParams); nil when the query has none.
	UTM map[string]string
	// DeepLinkRejected is set when a url= deep link was present but not
	// allowed, so the template destination was used instead.
	DeepLinkRejected bool
}

// MaxUTMParams bounds DestResult.UTM so that a visitor cannot inflate the
// recorded click; further utm_* parameters are still passed through.
const MaxUTMParams = 16

// maxDeepLinkLen bounds a deep link; longer ones are rejected.
const maxDeepLinkLen = 4096

// DeepLinkParam is the visitor query parameter carrying a deep link. It is
// consumed: never passed through.
const DeepLinkParam = "url"

// DefaultPartnerKeyParam is the destination query parameter that carries
// the partner key when Campaign.PassPartnerKey is set and the campaign names
// no Campaign.PartnerKeyParam: Partnero's own example (?aff=REFERRAL_KEY).
// A visitor's own parameter of the campaign's name is never passed through.
const DefaultPartnerKeyParam = "aff"

// destPlan is everything about a link's destination that depends only on
// the catalog: Index builds one per link and campaign per catalog version.
type destPlan struct {
	// link, campaign and merchant are the values the plan was built for;
	// a Resolved whose pointers differ is planned afresh.
	link     *Link
	campaign *Campaign
	merchant *Merchant
	tmpl     *template
	err      error
	// allowed are the merchant's and campaign's allowed domains in
	// normDomain form.
	allowed []string
	// cookie is the campaign's cookie name (Campaign.Cookie).
	cookie string
}

// CookieName returns the name of r's campaign cookie, Campaign.Cookie(),
// without building it per call when r comes from Index.Lookup.
func (r *Resolved) CookieName() string {
	if p := r.plan; p != nil && p.campaign == r.Campaign && r.Campaign != nil {
		return p.cookie
	}
	return r.Campaign.Cookie()
}

// newDestPlan plans the destination of link l (nil for a campaign's default)
// in campaign c of merchant m. base, when not nil, is the plan of c's default
// destination, whose template and allowed domains are shared.
func newDestPlan(l *Link, c *Campaign, m *Merchant, base *destPlan) *destPlan {
	p := &destPlan{link: l, campaign: c, merchant: m, cookie: c.Cookie()}
	if base != nil {
		p.allowed = base.allowed
	} else {
		p.allowed = allowedDomains(m, c)
	}
	switch {
	case l != nil && l.Destination != "":
		p.tmpl, p.err = compileTemplate(l.Destination)
	case base != nil:
		p.tmpl, p.err = base.tmpl, base.err
	default:
		p.tmpl, p.err = compileTemplate(c.DefaultDestination)
	}
	return p
}

// allowedDomains merges the merchant's and campaign's allowed domains in
// normDomain form, dropping duplicates and malformed entries.
func allowedDomains(m *Merchant, c *Campaign) []string {
	var out []string
	add := func(ds []string) {
		for _, d := range ds {
			d = normDomain(d)
			if checkDomain(d) != nil {
				continue
			}
			dup := false
			for _, o := range out {
				dup = dup || o == d
			}
			if !dup {
				out = append(out, d)
			}
		}
	}
	if m != nil {
		add(m.AllowedDomains)
	}
	if c != nil {
		add(c.AllowedDomains)
	}
	return out
}

// AppendDestination appends to dst the URL a visitor of in.R is redirected
// to, and reports in res (which may be nil) the subs, UTM parameters and
// deep-link decision it took from in.Query.
//
// The template is the link's Destination, else the campaign's
// DefaultDestination. Its macros {click_id}, {partner_key}, {campaign_id},
// {link_code} and {sub1}..{sub5} are replaced by their values with every
// byte but RFC 3986 unreserved ones percent-escaped; any other "{...}"
// stays as text with its braces escaped. A url= deep link replaces the
// template when it is an absolute http(s) URL whose host is the template's
// host or (a subdomain of) an allowed domain of the merchant or campaign;
// otherwise res.DeepLinkRejected is set. Then, unless Link.NoPassthrough,
// the visitor's parameters follow in their order, canonically escaped,
// except url=, the click parameter and the partner key parameter
// (Campaign.PartnerParam, aff= by default; compared loosely: ASCII case,
// '.' or ' ' for '_', a "[...]" suffix ignored, so that no server can read
// them as ours) and, with a template, names the template's own query sets.
// The click id follows as Campaign.Param()=id unless the template placed it
// with {click_id}, then PartnerParam()=key when Campaign.PassPartnerKey,
// then the fragment.
//
// The result is checked before it is returned: an error wrapping
// ErrUnsafeDestination means it was not an absolute http(s) URL on an
// allowed host made only of safe bytes, and dst is returned unchanged. It
// allocates only for what it reports in res (sub and utm strings other than
// the common utm_ names, the UTM map) and for a deep link; a Resolved from
// Index.Lookup needs no more. With a nil res it reports nothing and so
// allocates nothing but for a deep link. A res whose UTM map is not nil has
// that map cleared and reused, so that a caller that keeps res between calls
// does not allocate a map per call.
func AppendDestination(dst []byte, in *DestInput, res *DestResult) ([]byte, error) {
	if res != nil {
		utm := res.UTM
		*res = DestResult{}
		if utm != nil {
			clear(utm)
			res.UTM = utm
		}
	}
	r := &in.R
	if r.Campaign == nil {
		return dst, errors.New("build destination: resolved link has no campaign")
	}
	p := r.plan
	if p == nil || p.link != r.Link || p.campaign != r.Campaign || p.merchant != r.Merchant {
		p = newDestPlan(r.Link, r.Campaign, r.Merchant, nil)
	}
	if p.err != nil {
		return dst, fmt.Errorf("build destination of campaign %s: %w: %w", r.Campaign.ID, ErrUnsafeDestination, p.err)
	}
	t := p.tmpl
	param := r.Campaign.Param()
	keyParam := r.Campaign.PartnerParam()

	// First pass: what the query tells us. Values stay raw (escaped) until
	// they are reported or substituted.
	var deep []byte
	haveDeep := false
	var subsSeen uint8
	vals := macroValues{clickID: in.ClickID, campaignID: r.Campaign.ID}
	for q := in.Query; len(q) > 0; {
		var k, v []byte
		k, v, _, q = nextPair(q)
		switch {
		case len(k) == 0:
		case keyIs(k, DeepLinkParam):
			if !haveDeep {
				deep, haveDeep = v, true
			}
		case keyHasPrefix(k, "utm_"):
			if res == nil || in.SkipValues {
				break
			}
			if res.UTM == nil {
				res.UTM = make(map[string]string, 4)
			}
			if len(res.UTM) < MaxUTMParams {
				name := decodeUTMName(k)
				if _, dup := res.UTM[name]; !dup {
					res.UTM[name] = decodeString(v, true)
				}
			}
		default:
			if i := subIndex(k); i >= 0 && subsSeen&(1<<i) == 0 {
				subsSeen |= 1 << i
				vals.subs[i] = v
				if res != nil && !in.SkipValues {
					res.Subs[i] = decodeString(v, true)
				}
			}
		}
	}

	if r.Link != nil {
		vals.linkCode = r.Link.Code
	}
	if r.Partner != nil {
		vals.partnerKey = r.Partner.Key
	}
	n0 := len(dst)
	var dl deepLink
	useDeep := false
	if haveDeep {
		dl, useDeep = parseDeepLink(decodeString(deep, false), t.host, p.allowed)
		if res != nil {
			res.DeepLinkRejected = !useDeep
		}
	}
	var hasQuery bool
	if useDeep {
		dst = append(dst, dl.scheme...)
		for i := 0; i < len(dl.authority); i++ {
			c := dl.authority[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
		dst = appendCanonical(dst, dl.path)
		for q := dl.query; len(q) > 0; {
			var k, v string
			var eq bool
			k, v, eq, q = nextPair(q)
			if len(k) == 0 || keyLike(k, param) || keyLike(k, keyParam) {
				continue
			}
			dst, hasQuery = appendSep(dst, hasQuery)
			dst = appendPair(dst, k, v, eq)
		}
	} else {
		dst = vals.expand(dst, t.base)
		hasQuery = t.hasQuery
	}

	if r.Link == nil || !r.Link.NoPassthrough {
		for q := in.Query; len(q) > 0; {
			var k, v []byte
			var eq bool
			k, v, eq, q = nextPair(q)
			if len(k) == 0 || keyIs(k, DeepLinkParam) || keyLike(k, param) || keyLike(k, keyParam) {
				continue
			}
			if !useDeep && t.setsKey(k) {
				continue
			}
			dst, hasQuery = appendSep(dst, hasQuery)
			dst = appendPair(dst, k, v, eq)
		}
	}
	if in.ClickID != "" && (useDeep || !t.usesClickID) {
		dst, hasQuery = appendSep(dst, hasQuery)
		dst = append(dst, param...)
		dst = append(dst, '=')
		dst = appendEscaped(dst, in.ClickID)
	}
	if r.Campaign.PassPartnerKey && r.Partner != nil && r.Partner.Key != "" {
		dst, _ = appendSep(dst, hasQuery)
		dst = append(dst, keyParam...)
		dst = append(dst, '=')
		dst = appendEscaped(dst, r.Partner.Key)
	}
	if useDeep {
		if dl.hasFrag {
			dst = append(dst, '#')
			dst = appendCanonical(dst, dl.frag)
		}
	} else if t.hasFrag {
		dst = append(dst, '#')
		dst = vals.expand(dst, t.frag)
	}
	if err := checkDest(dst[n0:], t.host, p.allowed); err != nil {
		return dst[:n0], fmt.Errorf("build destination of campaign %s: %w", r.Campaign.ID, err)
	}
	return dst, nil
}

// macroValues are the values substituted for a template's macros; subs are
// the raw (still escaped) values from the visitor's query.
type macroValues struct {
	clickID, partnerKey, campaignID, linkCode string
	subs                                      [5][]byte
}

func (v *macroValues) expand(dst []byte, segs []segment) []byte {
	for _, s := range segs {
		switch s.m {
		case macroNone:
			dst = append(dst, s.lit...)
		case macroClickID:
			dst = appendEscaped(dst, v.clickID)
		case macroPartnerKey:
			dst = appendEscaped(dst, v.partnerKey)
		case macroCampaignID:
			dst = appendEscaped(dst, v.campaignID)
		case macroLinkCode:
			dst = appendEscaped(dst, v.linkCode)
		default:
			dst = appendDecodedEscaped(dst, v.subs[s.m-macroSub1])
		}
	}
	return dst
}

// setsKey reports whether the template's own query sets the parameter
// whose raw (escaped) name is k.
func (t *template) setsKey(k []byte) bool {
	for _, name := range t.queryKeys {
		if keyIs(k, name) {
			return true
		}
	}
	return false
}

// appendEscaped appends s with every byte but the RFC 3986 unreserved ones
// percent-escaped, so a value cannot add a path, query, fragment or header.
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved[c] {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return dst
}

// appendDecodedEscaped appends the query component raw decoded (as
// decodeString with plus) and then escaped (as appendEscaped), without
// building the decoded string.
func appendDecodedEscaped(dst []byte, raw []byte) []byte {
	for i := 0; i < len(raw); {
		var c byte
		c, i = decodeByte(raw, i, true)
		if unreserved[c] {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return dst
}

// utmNames are the common UTM parameter names, returned by decodeUTMName
// without allocating.
var utmNames = [...]string{"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "utm_id"}

// decodeUTMName decodes a utm_ parameter name; the common names cost no
// allocation.
func decodeUTMName(k []byte) string {
	for _, n := range utmNames {
		if string(k) == n {
			return n
		}
	}
	return decodeString(k, true)
}

// appendSep appends the separator before another query parameter.
func appendSep(dst []byte, hasQuery bool) ([]byte, bool) {
	if !hasQuery {
		return append(dst, '?'), true
	}
	if last := dst[len(dst)-1]; last != '?' && last != '&' {
		dst = append(dst, '&')
	}
	return dst, true
}

// appendPair appends one query parameter as the visitor wrote it, only
// re-escaping bytes unsafe in a URL. Keeping the visitor's escaping, and
// '+' as '+', passes the exact value through.
func appendPair[T string | []byte](dst []byte, k, v T, eq bool) []byte {
	dst = appendCanonical(dst, k)
	if eq {
		dst = append(dst, '=')
		dst = appendCanonical(dst, v)
	}
	return dst
}

// nextPair cuts the first '&'-separated parameter off q.
func nextPair[T string | []byte](q T) (key, val T, eq bool, rest T) {
	pair := q
	if i := indexByte(q, '&'); i >= 0 {
		pair, rest = q[:i], q[i+1:]
	} else {
		rest = q[len(q):]
	}
	if i := indexByte(pair, '='); i >= 0 {
		return pair[:i], pair[i+1:], true, rest
	}
	return pair, pair[len(pair):], false, rest
}

// decodeByte decodes the byte of a query component at i: a valid %XX
// escape, '+' as a space when plus is set, else the byte itself. A malformed
// escape is taken literally, as browsers do.
func decodeByte[T string | []byte](raw T, i int, plus bool) (byte, int) {
	c := raw[i]
	if c == '%' && i+2 < len(raw) && isHex(raw[i+1]) && isHex(raw[i+2]) {
		return unhex(raw[i+1])<<4 | unhex(raw[i+2]), i + 3
	}
	if c == '+' && plus {
		return ' ', i + 1
	}
	return c, i + 1
}

// keyIs reports whether the raw query name k decodes exactly to want.
func keyIs[T string | []byte](k T, want string) bool {
	i, j := 0, 0
	for i < len(k) {
		if j == len(want) {
			return false
		}
		var c byte
		c, i = decodeByte(k, i, true)
		if c != want[j] {
			return false
		}
		j++
	}
	return j == len(want)
}

// keyHasPrefix reports whether the raw query name k decodes to a string
// starting with prefix.
func keyHasPrefix(k []byte, prefix string) bool {
	i, j := 0, 0
	for j < len(prefix) {
		if i == len(k) {
			return false
		}
		var c byte
		c, i = decodeByte(k, i, true)
		if c != prefix[j] {
			return false
		}
		j++
	}
	return true
}

// looseByte folds the differences between parameter names that some servers
// ignore: ASCII case, and PHP's mapping of '.' and ' ' to '_'.
func looseByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case c == '.' || c == ' ':
		return '_'
	}
	return c
}

// keyLike reports whether a server could read the raw query name k as want:
// it compares decoded bytes under looseByte and ends k at '[' (PHP and Rails
// read "name[]" as name).
func keyLike[T string | []byte](k T, want string) bool {
	i, j := 0, 0
	for i < len(k) {
		var c byte
		c, i = decodeByte(k, i, true)
		if c == '[' {
			break
		}
		if j == len(want) || looseByte(c) != looseByte(want[j]) {
			return false
		}
		j++
	}
	return j == len(want)
}

// subIndex returns i for a raw query name decoding to "sub<i+1>", i in 0..4,
// else -1.
func subIndex(k []byte) int {
	for i, name := range [...]string{"sub1", "sub2", "sub3", "sub4", "sub5"} {
		if keyIs(k, name) {
			return i
		}
	}
	return -1
}

// decodeString decodes a query component: %XX escapes, and '+' as a space
// when plus is set.
func decodeString(raw []byte, plus bool) string {
	simple := true
	for _, c := range raw {
		if c == '%' || c == '+' && plus {
			simple = false
			break
		}
	}
	if simple {
		return string(raw)
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); {
		var c byte
		c, i = decodeByte(raw, i, plus)
		b.WriteByte(c)
	}
	return b.String()
}

// deepLink is a deep link split into the parts AppendDestination rebuilds.
type deepLink struct {
	scheme            string // "http://" or "https://"
	authority         string
	path, query, frag string
	hasQuery, hasFrag bool
}

// parseDeepLink accepts d, a decoded url= value, only if it is an absolute
// http(s) URL whose host is trusted or allowed (see hostAllowed) and in which
// no parser could see another host: no controls or backslashes, no spaces
// in the host (elsewhere they are escaped on output), no userinfo, no escaped or non-ASCII bytes in the host other than a
// configured IDN spelled literally, and net/url must read the same host.
func parseDeepLink(d string, trusted string, allowed []string) (deepLink, bool) {
	var dl deepLink
	if len(d) > maxDeepLinkLen {
		return dl, false
	}
	// Browsers drop tabs and newlines anywhere in a URL and read '\\' as
	// '/', so either could move the host; spaces are only harmless once
	// escaped after the host, which splitAuthority and the path escaping see to.
	for i := 0; i < len(d); i++ {
		if c := d[i]; c < ' ' || c == 0x7f || c == '\\' {
			return dl, false
		}
	}
	var rest string
	switch {
	case hasPrefixFold(d, "https://"):
		dl.scheme, rest = "https://", d[len("https://"):]
	case hasPrefixFold(d, "http://"):
		dl.scheme, rest = "http://", d[len("http://"):]
	default:
		return dl, false
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	dl.authority = rest[:end]
	host, _, ok := splitAuthority(dl.authority)
	if !ok || !hostAllowed(host, trusted, allowed) {
		return dl, false
	}
	u, err := url.Parse(d)
	if err != nil || u.User != nil || u.Opaque != "" || u.Host != dl.authority ||
		u.Scheme+"://" != dl.scheme {
		return dl, false
	}
	tail := rest[end:]
	tail, dl.frag, dl.hasFrag = strings.Cut(tail, "#")
	dl.path, dl.query, dl.hasQuery = strings.Cut(tail, "?")
	return dl, true
}

// unsafeError explains why a built destination was refused.
type unsafeError struct {
	reason string
	dest   string
}

func (e *unsafeError) Error() string {
	return fmt.Sprintf("%s: %s: %q", ErrUnsafeDestination, e.reason, e.dest)
}

func (e *unsafeError) Unwrap() error { return ErrUnsafeDestination }

// checkDest is the final check of every built destination: an absolute
// http(s) URL, authority without userinfo on the trusted host or an allowed
// domain, and after it only canonical URL bytes (no controls, spaces,
// backslashes, quotes, braces or non-ASCII; '%' only in valid escapes; one
// '#' at most).
func checkDest(out []byte, trusted string, allowed []string) error {
	var rest []byte
	switch {
	case hasPrefixFold(out, "https://"):
		rest = out[len("https://"):]
	case hasPrefixFold(out, "http://"):
		rest = out[len("http://"):]
	default:
		return &unsafeError{"not an absolute http(s) URL", string(out)}
	}
	end := len(rest)
	for i, c := range rest {
		if c == '/' || c == '?' || c == '#' {
			end = i
			break
		}
	}
	host, _, ok := splitAuthority(rest[:end])
	if !ok {
		return &unsafeError{"malformed authority", string(out)}
	}
	if !hostAllowed(host, trusted, allowed) {
		return &unsafeError{"host not allowed", string(out)}
	}
	for _, c := range rest[:end] {
		if c <= ' ' || c == 0x7f || c == '\\' {
			return &unsafeError{"unsafe byte in host", string(out)}
		}
	}
	tail := rest[end:]
	frag := false
	for i := 0; i < len(tail); i++ {
		c := tail[i]
		switch {
		case urlSafe[c]:
		case c == '%':
			if i+2 >= len(tail) || !isHex(tail[i+1]) || !isHex(tail[i+2]) {
				return &unsafeError{"malformed escape", string(out)}
			}
			i += 2
		case c == '#' && !frag:
			frag = true
		default:
			return &unsafeError{"unsafe byte", string(out)}
		}
	}
	return nil
}
