package redirect

import (
	"fmt"
	"strings"
)

// maxHostLen bounds host names: DNS names are at most 253 octets, plus a
// trailing root dot.
const maxHostLen = 254

// normDomain returns the canonical form of a configured domain (allowed
// domain or cookie domain): ASCII lowercased, without a leading "*." or "."
// (both mean "this domain and its subdomains" here) and without the trailing
// root dot. Non-ASCII bytes are kept as they are: an IDN domain matches only
// when spelled exactly the same way.
func normDomain(d string) string {
	d = strings.TrimPrefix(d, "*.")
	d = strings.TrimPrefix(d, ".")
	d = strings.TrimSuffix(d, ".")
	return lowerASCII(d)
}

// checkDomain validates a configured domain after normDomain: non-empty
// dot-separated labels of letters, digits, '-', '_' or non-ASCII bytes (an IDN
// written literally), nothing that could end a host or smuggle a port,
// userinfo, path or macro.
func checkDomain(d string) error {
	if d == "" || len(d) > maxHostLen {
		return fmt.Errorf("domain %q: want 1-253 characters", d)
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			return fmt.Errorf("domain %q: empty label", d)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isHostByte(c) && c < 0x80 {
				return fmt.Errorf("domain %q: character %q not allowed in a host name", d, c)
			}
		}
	}
	return nil
}

// isHostByte reports whether c may appear in an ASCII host name label.
func isHostByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// ldhLabels reports whether s is one or more non-empty dot-separated labels of
// ASCII letters, digits, '-' and '_'. Subdomain prefixes a visitor chooses must
// pass it, so that no look-alike or mapped character can be hidden in them.
func ldhLabels[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	prevDot := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if prevDot {
				return false
			}
			prevDot = true
			continue
		}
		if !isHostByte(c) {
			return false
		}
		prevDot = false
	}
	return !prevDot
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// equalFoldASCII compares s with the lowercase string lower, folding only
// ASCII letters of s: non-ASCII bytes must match exactly.
func equalFoldASCII[T string | []byte](s T, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// splitAuthority splits a URL authority into host name and port. It fails on
// userinfo, on an empty host, on a port that is not 1-5 digits in 1-65535,
// and on a malformed IPv6 literal. The host name keeps its brackets.
func splitAuthority[T string | []byte](a T) (host, port T, ok bool) {
	if len(a) == 0 || indexByte(a, '@') >= 0 {
		return host, port, false
	}
	if a[0] == '[' {
		end := indexByte(a, ']')
		if end < 2 {
			return host, port, false
		}
		host, a = a[:end+1], a[end+1:]
		for i := 1; i < len(host)-1; i++ {
			c := host[i]
			if !isHex(c) && c != ':' && c != '.' {
				return host, port, false
			}
		}
		if len(a) > 0 {
			if a[0] != ':' {
				return host, port, false
			}
			port = a[1:]
			if len(port) == 0 {
				return host, port, false
			}
		}
	} else {
		host = a
		if i := indexByte(a, ':'); i >= 0 {
			host, port = a[:i], a[i+1:]
			if len(port) == 0 {
				return host, port, false
			}
		}
		if len(host) == 0 {
			return host, port, false
		}
	}
	if len(port) > 0 {
		if len(port) > 5 {
			return host, port, false
		}
		n := 0
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return host, port, false
			}
			n = n*10 + int(port[i]-'0')
		}
		if n == 0 || n > 65535 {
			return host, port, false
		}
	}
	return host, port, true
}

func indexByte[T string | []byte](s T, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// hostAllowed reports whether host (as written in a URL, any ASCII case, an
// optional trailing root dot) is the trusted template host or an allowed
// domain or a subdomain of one. trusted and every allowed domain are in
// normDomain form. A subdomain prefix must be plain ASCII labels: non-ASCII
// bytes are accepted only where they match a configured name literally.
func hostAllowed[T string | []byte](host T, trusted string, allowed []string) bool {
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if len(host) == 0 {
		return false
	}
	if trusted != "" && equalFoldASCII(host, trusted) {
		return true
	}
	for _, d := range allowed {
		if len(host) == len(d) {
			if equalFoldASCII(host, d) {
				return true
			}
			continue
		}
		cut := len(host) - len(d) - 1
		if cut > 0 && host[cut] == '.' && equalFoldASCII(host[cut+1:], d) && ldhLabels(host[:cut]) {
			return true
		}
	}
	return false
}
