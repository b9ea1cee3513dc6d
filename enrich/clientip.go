package enrich

import (
	"fmt"
	"net/netip"
	"strings"
)

// maxHops is how many of the rightmost forwarding hops ClientIP considers.
// Only the right end of a chain can be trusted, so a longer header costs a
// linear scan but no memory.
const maxHops = 32

// ParseTrustedProxies parses a comma-separated list of CIDR prefixes and
// bare addresses ("10.0.0.0/8, 192.0.2.7, ::1") into prefixes. Prefixes are
// masked, IPv4-mapped IPv6 ones converted to IPv4; empty items are ignored.
// The empty string yields no prefixes and no error.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var p netip.Prefix
		if strings.Contains(item, "/") {
			var err error
			if p, err = netip.ParsePrefix(item); err != nil {
				return nil, fmt.Errorf("parse trusted proxy %q: %w", item, err)
			}
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("parse trusted proxy %q: %w", item, err)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("parse trusted proxy %q: zones are not allowed", item)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, normPrefix(p))
	}
	return out, nil
}

// normPrefix masks p and turns an IPv4-mapped IPv6 prefix into the IPv4
// prefix it covers, since addresses are compared unmapped.
func normPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

func trustedAddr(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the address of the client that made a request, given the
// socket peer and the X-Forwarded-For and Forwarded header values (several
// header lines joined with ","). Headers are consulted only when the peer is
// in trusted: then the chain is walked from the right, skipping trusted
// hops, and the first untrusted address is the client. Forwarded is preferred
// when it is present. A malformed, obfuscated or "unknown" hop ends the walk
// and the last good hop is returned; so is the leftmost hop when every hop is
// trusted. The result is unmapped (IPv4-mapped IPv6 becomes IPv4) and has no
// zone. It does not allocate.
func ClientIP(peer netip.Addr, xff, forwarded []byte, trusted []netip.Prefix) netip.Addr {
	peer = peer.Unmap().WithZone("")
	if !peer.IsValid() || !trustedAddr(peer, trusted) {
		return peer
	}
	var hs hopRing
	switch {
	case len(trimOWS(forwarded)) > 0:
		scanForwarded(forwarded, hs.push)
	case len(trimOWS(xff)) > 0:
		scanXForwardedFor(xff, hs.push)
	default:
		return peer
	}
	last := peer
	for i := hs.n - 1; i >= 0 && i >= hs.n-maxHops; i-- {
		h := hs.buf[i%maxHops]
		if !h.ok {
			return last
		}
		if !trustedAddr(h.addr, trusted) {
			return h.addr
		}
		last = h.addr
	}
	return last
}

type hop struct {
	addr netip.Addr
	ok   bool
}

// hopRing keeps the last maxHops hops of a header.
type hopRing struct {
	buf [maxHops]hop
	n   int
}

func (r *hopRing) push(a netip.Addr, ok bool) {
	r.buf[r.n%maxHops] = hop{a, ok}
	r.n++
}

// ParseXForwardedFor returns the addresses of an X-Forwarded-For value in
// order, left (client) to right (nearest proxy). Elements may carry a port
// ("192.0.2.1:4711", "[2001:db8::1]:4711"); elements that are not addresses
// ("unknown", garbage) are skipped.
func ParseXForwardedFor(h []byte) []netip.Addr {
	var out []netip.Addr
	scanXForwardedFor(h, func(a netip.Addr, ok bool) {
		if ok {
			out = append(out, a)
		}
	})
	return out
}

// ParseForwarded returns the for= addresses of an RFC 7239 Forwarded value
// in order. Values may be quoted, bracketed IPv6 with a port
// (for="[2001:db8::17]:4711"), or IPv4 with a port; unquoted IPv6, which
// the RFC forbids but proxies send, is accepted too. Obfuscated identifiers
// ("_hidden"), "unknown", elements without for= and malformed elements are
// skipped.
func ParseForwarded(h []byte) []netip.Addr {
	var out []netip.Addr
	scanForwarded(h, func(a netip.Addr, ok bool) {
		if ok {
			out = append(out, a)
		}
	})
	return out
}

// scanXForwardedFor calls emit for every non-empty element, with ok false
// for an element that is not an address.
func scanXForwardedFor(h []byte, emit func(netip.Addr, bool)) {
	for len(h) > 0 {
		var el []byte
		if i := indexByte(h, ','); i >= 0 {
			el, h = h[:i], h[i+1:]
		} else {
			el, h = h, nil
		}
		el = trimOWS(el)
		if len(el) == 0 {
			continue
		}
		emit(parseNode(el))
	}
}

// scanForwarded calls emit for every non-empty element of a Forwarded
// value: the parsed for= node, or ok false when the element has no usable
// for= (missing, duplicated, obfuscated, malformed).
func scanForwarded(h []byte, emit func(netip.Addr, bool)) {
	var unq [64]byte // unescaped quoted-string values
	i := 0
	for i < len(h) {
		var forVal []byte
		haveFor, bad, empty := false, false, true
		// Pairs of one element, separated by ';'.
	pairs:
		for {
			i = skipOWS(h, i)
			if i >= len(h) {
				break
			}
			switch h[i] {
			case ',':
				i++
				break pairs
			case ';':
				i++
				continue
			}
			empty = false
			start := i
			for i < len(h) && isTChar(h[i]) {
				i++
			}
			name := h[start:i]
			if len(name) == 0 || i >= len(h) || h[i] != '=' {
				bad = true
				i = skipElement(h, i)
				break
			}
			i++ // '='
			isFor := equalFoldASCII(name, "for")
			var val []byte
			if i < len(h) && h[i] == '"' {
				buf := unq[:0]
				if !isFor {
					buf = nil // only for= values are kept
				}
				var ok bool
				val, i, ok = readQuoted(h, i, buf)
				if !ok {
					bad = true
					i = skipElement(h, i)
					break
				}
			} else {
				// RFC 7239 wants IPv6 and ports quoted; proxies that do not
				// quote them are common, so an unquoted value runs to the
				// next delimiter and parseNode judges it.
				start = i
				for i < len(h) && h[i] != ';' && h[i] != ',' && h[i] != '"' && !isOWS(h[i]) {
					i++
				}
				val = h[start:i]
			}
			if isFor {
				if haveFor {
					bad = true // two for= in one element: which hop is it?
				}
				haveFor = true
				forVal = val
			}
			i = skipOWS(h, i)
			if i < len(h) && h[i] != ';' && h[i] != ',' {
				bad = true
				i = skipElement(h, i)
				break
			}
		}
		if empty && !bad {
			continue
		}
		if !haveFor || bad {
			emit(netip.Addr{}, false)
			continue
		}
		emit(parseNode(forVal))
	}
}

// readQuoted reads the quoted-string starting at h[i] (a '"'). It returns
// the unescaped content (a sub-slice of h when there are no escapes, else
// built in buf; nil buf only finds the end), the index after the closing
// quote, and false when the string is unterminated or longer than buf can
// hold.
func readQuoted(h []byte, i int, buf []byte) ([]byte, int, bool) {
	i++ // opening quote
	start := i
	collect := buf != nil
	escaped := false
	for ; i < len(h); i++ {
		c := h[i]
		if c == '"' {
			if escaped {
				return buf, i + 1, true
			}
			return h[start:i], i + 1, true
		}
		if c == '\\' && !collect {
			if i++; i >= len(h) {
				return nil, i, false
			}
			continue
		}
		if c == '\\' {
			if !escaped {
				if i-start > cap(buf) {
					return nil, i, false
				}
				buf = append(buf[:0], h[start:i]...)
				escaped = true
			}
			if i++; i >= len(h) {
				return nil, i, false
			}
			c = h[i]
		}
		if escaped {
			if len(buf) == cap(buf) {
				return nil, i, false
			}
			buf = append(buf, c)
		}
	}
	return nil, i, false
}

// skipElement moves past the rest of a malformed element, honouring quoted
// strings so that a quoted comma does not start a new element.
func skipElement(h []byte, i int) int {
	inQuote := false
	for ; i < len(h); i++ {
		switch c := h[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == ',':
			return i
		}
	}
	return i
}

// parseNode parses an RFC 7239 node or an X-Forwarded-For element: IPv4 with
// an optional port, IPv6 bare or bracketed with an optional port. It returns
// the unmapped address without zone, or false for "unknown", obfuscated
// identifiers and anything malformed.
func parseNode(b []byte) (netip.Addr, bool) {
	if len(b) == 0 {
		return netip.Addr{}, false
	}
	var a netip.Addr
	var ok bool
	if b[0] == '[' {
		end := indexByte(b, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		if rest := b[end+1:]; len(rest) > 0 && (rest[0] != ':' || !validPort(rest[1:])) {
			return netip.Addr{}, false
		}
		if a, ok = parseIPv6(b[1:end]); !ok {
			return netip.Addr{}, false
		}
	} else {
		dot, colon := indexByte(b, '.'), indexByte(b, ':')
		switch {
		case dot >= 0 && (colon < 0 || dot < colon):
			host := b
			if colon >= 0 {
				if !validPort(b[colon+1:]) {
					return netip.Addr{}, false
				}
				host = b[:colon]
			}
			a, ok = parseIPv4(host)
		case colon >= 0:
			a, ok = parseIPv6(b)
		}
		if !ok {
			return netip.Addr{}, false
		}
	}
	return a.Unmap(), true
}

// validPort accepts an RFC 7239 node-port: 1-5 digits up to 65535, or an
// obfuscated port ("_" followed by ALPHA / DIGIT / "." / "_" / "-").
func validPort(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	if b[0] == '_' {
		for _, c := range b[1:] {
			if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
				return false
			}
		}
		return len(b) > 1
	}
	if len(b) > 5 {
		return false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

// parseIPv4 parses dotted-quad IPv4 exactly as netip.ParseAddr does (no
// leading zeros, four fields), without converting b to a string.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var f [4]byte
	if !parseIPv4Fields(b, f[:]) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(f), true
}

func parseIPv4Fields(b []byte, f []byte) bool {
	val, pos, digits := 0, 0, 0
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if digits == 1 && val == 0 {
				return false // leading zero
			}
			val = val*10 + int(c-'0')
			digits++
			if val > 255 {
				return false
			}
		case c == '.':
			if i == 0 || i == len(b)-1 || b[i-1] == '.' || pos == 3 {
				return false
			}
			f[pos] = byte(val)
			pos++
			val, digits = 0, 0
		default:
			return false
		}
	}
	if pos < 3 || digits == 0 {
		return false
	}
	f[3] = byte(val)
	return true
}

// parseIPv6 parses IPv6 text exactly as netip.ParseAddr does, dropping any
// zone, without converting b to a string (which would allocate).
func parseIPv6(in []byte) (netip.Addr, bool) {
	s := in
	if i := indexByte(s, '%'); i >= 0 {
		if i == len(s)-1 {
			return netip.Addr{}, false // empty zone
		}
		s = s[:i]
	}
	var ip [16]byte
	ellipsis := -1
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = 0
		s = s[2:]
		if len(s) == 0 {
			return netip.IPv6Unspecified(), true
		}
	}
	i := 0
	for i < 16 {
		off, acc := 0, uint32(0)
		for ; off < len(s); off++ {
			c := s[off]
			switch {
			case c >= '0' && c <= '9':
				acc = acc<<4 + uint32(c-'0')
			case c >= 'a' && c <= 'f':
				acc = acc<<4 + uint32(c-'a'+10)
			case c >= 'A' && c <= 'F':
				acc = acc<<4 + uint32(c-'A'+10)
			default:
				goto group
			}
			if off > 3 || acc > 0xffff {
				return netip.Addr{}, false
			}
		}
	group:
		if off == 0 {
			return netip.Addr{}, false
		}
		if off < len(s) && s[off] == '.' {
			// Trailing embedded IPv4.
			if (ellipsis < 0 && i != 12) || i+4 > 16 {
				return netip.Addr{}, false
			}
			if !parseIPv4Fields(s, ip[i:i+4]) {
				return netip.Addr{}, false
			}
			s = nil
			i += 4
			break
		}
		ip[i], ip[i+1] = byte(acc>>8), byte(acc)
		i += 2
		s = s[off:]
		if len(s) == 0 {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return netip.Addr{}, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false
			}
			ellipsis = i
			s = s[1:]
			if len(s) == 0 {
				break
			}
		}
	}
	if len(s) != 0 {
		return netip.Addr{}, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		n := 16 - i
		for j := i - 1; j >= ellipsis; j-- {
			ip[j+n] = ip[j]
		}
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom16(ip), true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

func skipOWS(b []byte, i int) int {
	for i < len(b) && isOWS(b[i]) {
		i++
	}
	return i
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && isOWS(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isOWS(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isAlnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// isTChar reports an RFC 9110 token character.
func isTChar(c byte) bool {
	if isAlnum(c) {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// equalFoldASCII compares b with the lower-case ASCII string s, ignoring
// case.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
