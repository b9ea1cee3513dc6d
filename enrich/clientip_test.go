package enrich

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func mustPrefixes(t testing.TB, s string) []netip.Prefix {
	t.Helper()
	p, err := ParseTrustedProxies(s)
	if err != nil {
		t.Fatalf("ParseTrustedProxies(%q): %v", s, err)
	}
	return p
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestParseTrustedProxies(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "", want: nil},
		{in: " , ", want: nil},
		{in: "10.0.0.0/8", want: []string{"10.0.0.0/8"}},
		{in: "10.0.0.0/8, 192.0.2.7 ,::1,2001:db8::/32", want: []string{"10.0.0.0/8", "192.0.2.7/32", "::1/128", "2001:db8::/32"}},
		{in: "10.1.2.3/8", want: []string{"10.0.0.0/8"}},
		{in: "::ffff:10.0.0.0/104", want: []string{"10.0.0.0/8"}},
		{in: "10.0.0.0/33", wantErr: true},
		{in: "bogus", wantErr: true},
		{in: "10.0.0.1, nope", wantErr: true},
		{in: "fe80::1%eth0", wantErr: true},
		{in: "10.0.0.01", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseTrustedProxies(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseTrustedProxies(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		var gotS []string
		for _, p := range got {
			gotS = append(gotS, p.String())
		}
		if !slices.Equal(gotS, tt.want) {
			t.Errorf("ParseTrustedProxies(%q) = %v, want %v", tt.in, gotS, tt.want)
		}
	}
}

func TestClientIP(t *testing.T) {
	trusted := "10.0.0.0/8, 192.168.1.1, 2001:db8:ffff::/48"
	tests := []struct {
		name     string
		peer     string
		xff, fwd string
		want     string
	}{
		{name: "untrusted peer, no headers", peer: "203.0.113.9", want: "203.0.113.9"},
		{name: "untrusted peer spoofs XFF", peer: "203.0.113.9", xff: "198.51.100.1", want: "203.0.113.9"},
		{name: "untrusted peer spoofs Forwarded", peer: "203.0.113.9", fwd: "for=198.51.100.1", want: "203.0.113.9"},
		{name: "untrusted v4-mapped peer", peer: "::ffff:203.0.113.9", xff: "198.51.100.1", want: "203.0.113.9"},
		{name: "trusted v4-mapped peer", peer: "::ffff:10.0.0.2", xff: "198.51.100.1", want: "198.51.100.1"},
		{name: "trusted peer without headers", peer: "10.0.0.2", want: "10.0.0.2"},
		{name: "trusted peer, one hop", peer: "10.0.0.2", xff: "198.51.100.1", want: "198.51.100.1"},
		{name: "client spoofs left of the real hop", peer: "10.0.0.2", xff: "1.1.1.1, 198.51.100.1", want: "198.51.100.1"},
		{name: "chain of trusted proxies", peer: "10.0.0.2", xff: "198.51.100.1, 10.1.1.1, 192.168.1.1", want: "198.51.100.1"},
		{name: "spoofed trusted address left of client", peer: "10.0.0.2", xff: "10.9.9.9, 198.51.100.1, 10.1.1.1", want: "198.51.100.1"},
		{name: "all hops trusted", peer: "10.0.0.2", xff: "10.3.3.3, 10.1.1.1", want: "10.3.3.3"},
		{name: "malformed hop returns last good", peer: "10.0.0.2", xff: "198.51.100.1, garbage, 10.1.1.1", want: "10.1.1.1"},
		{name: "malformed rightmost returns peer", peer: "10.0.0.2", xff: "198.51.100.1, 999.1.1.1", want: "10.0.0.2"},
		{name: "unknown hop", peer: "10.0.0.2", xff: "198.51.100.1, unknown", want: "10.0.0.2"},
		{name: "ports", peer: "10.0.0.2", xff: "198.51.100.1:4711, 10.1.1.1:80", want: "198.51.100.1"},
		{name: "bracketed v6 with port", peer: "10.0.0.2", xff: "[2001:db8:1::7]:443", want: "2001:db8:1::7"},
		{name: "bare v6", peer: "10.0.0.2", xff: "2001:db8:1::7", want: "2001:db8:1::7"},
		{name: "v6 peer and chain", peer: "2001:db8:ffff::1", xff: "2001:db8:1::7, 2001:db8:ffff::2", want: "2001:db8:1::7"},
		{name: "v4-mapped hop is unmapped", peer: "10.0.0.2", xff: "::ffff:198.51.100.1", want: "198.51.100.1"},
		{name: "zone dropped", peer: "10.0.0.2", xff: "fe80::1%eth0", want: "fe80::1"},
		{name: "empty elements ignored", peer: "10.0.0.2", xff: " ,198.51.100.1,, ", want: "198.51.100.1"},
		{name: "whitespace-only XFF", peer: "10.0.0.2", xff: "  ", want: "10.0.0.2"},
		{name: "Forwarded preferred", peer: "10.0.0.2", xff: "198.51.100.1", fwd: "for=198.51.100.2", want: "198.51.100.2"},
		{name: "Forwarded chain", peer: "10.0.0.2", fwd: `for=198.51.100.2;proto=https, for="10.1.1.1:8080";by=10.0.0.2`, want: "198.51.100.2"},
		{name: "Forwarded quoted v6 with port", peer: "10.0.0.2", fwd: `For="[2001:db8:cafe::17]:4711"`, want: "2001:db8:cafe::17"},
		{name: "Forwarded obfuscated hop", peer: "10.0.0.2", fwd: `for=198.51.100.2, for=_hidden, for=10.1.1.1`, want: "10.1.1.1"},
		{name: "Forwarded unknown hop", peer: "10.0.0.2", fwd: `for=unknown`, want: "10.0.0.2"},
		{name: "Forwarded without for", peer: "10.0.0.2", fwd: `proto=https`, want: "10.0.0.2"},
		{name: "Forwarded garbage", peer: "10.0.0.2", fwd: `;;;==`, want: "10.0.0.2"},
		{name: "Forwarded duplicate for", peer: "10.0.0.2", fwd: `for=198.51.100.2;for=198.51.100.3`, want: "10.0.0.2"},
		{name: "untrusted peer is returned even if garbage", peer: "203.0.113.9", fwd: "for=", want: "203.0.113.9"},
		{name: "invalid peer", peer: "", xff: "198.51.100.1", want: ""},
	}
	tp := mustPrefixes(t, trusted)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var peer netip.Addr
			if tt.peer != "" {
				peer = netip.MustParseAddr(tt.peer)
			}
			var xff, fwd []byte
			if tt.xff != "" {
				xff = []byte(tt.xff)
			}
			if tt.fwd != "" {
				fwd = []byte(tt.fwd)
			}
			got := ClientIP(peer, xff, fwd, tp)
			want := netip.Addr{}
			if tt.want != "" {
				want = netip.MustParseAddr(tt.want)
			}
			if got != want {
				t.Errorf("ClientIP(%s, %q, %q) = %v, want %v", tt.peer, tt.xff, tt.fwd, got, want)
			}
		})
	}
}

func TestClientIPLongChain(t *testing.T) {
	tp := mustPrefixes(t, "10.0.0.0/8")
	hops := []string{"198.51.100.1"}
	for range 2 * maxHops {
		hops = append(hops, "10.1.1.1")
	}
	// Only the rightmost maxHops hops are considered: all trusted, so the
	// leftmost of them is returned.
	got := ClientIP(netip.MustParseAddr("10.0.0.2"), []byte(strings.Join(hops, ",")), nil, tp)
	if want := netip.MustParseAddr("10.1.1.1"); got != want {
		t.Errorf("ClientIP(long chain) = %v, want %v", got, want)
	}
	hops = append(hops[:1], hops[len(hops)-maxHops+1:]...)
	got = ClientIP(netip.MustParseAddr("10.0.0.2"), []byte(strings.Join(hops, ",")), nil, tp)
	if want := netip.MustParseAddr("198.51.100.1"); got != want {
		t.Errorf("ClientIP(chain of maxHops) = %v, want %v", got, want)
	}
}

func TestParseXForwardedFor(t *testing.T) {
	tests := []struct {
		in   string
		want []netip.Addr
	}{
		{"", nil},
		{"198.51.100.1", addrs("198.51.100.1")},
		{"198.51.100.1, 10.0.0.1,\t2001:db8::1", addrs("198.51.100.1", "10.0.0.1", "2001:db8::1")},
		{"198.51.100.1:80, [2001:db8::1]:443, [2001:db8::2]", addrs("198.51.100.1", "2001:db8::1", "2001:db8::2")},
		{"unknown, 198.51.100.1, _hidden, 1.2.3", addrs("198.51.100.1")},
		{"198.51.100.1:99999, 198.51.100.2:x, [2001:db8::1]x, [2001:db8::1", nil},
		{"01.2.3.4, 1.2.3.4.5, 256.1.1.1", nil},
		{"[198.51.100.1]:80", nil},
		{"::ffff:198.51.100.1", addrs("198.51.100.1")},
		{"::ffff:c633:6401", addrs("198.51.100.1")},
	}
	for _, tt := range tests {
		if got := ParseXForwardedFor([]byte(tt.in)); !slices.Equal(got, tt.want) {
			t.Errorf("ParseXForwardedFor(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseForwarded(t *testing.T) {
	tests := []struct {
		in   string
		want []netip.Addr
	}{
		{"", nil},
		{"for=192.0.2.60;proto=http;by=203.0.113.43", addrs("192.0.2.60")},
		{`for="_gazonk"`, nil},
		{`For="[2001:db8:cafe::17]:4711"`, addrs("2001:db8:cafe::17")},
		{"for=192.0.2.43, for=198.51.100.17", addrs("192.0.2.43", "198.51.100.17")},
		{`for=192.0.2.43,for="[2001:db8:cafe::17]",for=unknown`, addrs("192.0.2.43", "2001:db8:cafe::17")},
		{`for="192.0.2.43:_port"`, addrs("192.0.2.43")},
		{` ; for = 192.0.2.1`, nil}, // no spaces around "=" in RFC 7239
		{`by="a,b";for=192.0.2.1, for=192.0.2.2`, addrs("192.0.2.1", "192.0.2.2")},
		{`for="192.0.2.1`, nil},
		{`for="192.0.2.\1"`, addrs("192.0.2.1")},
		{`host="ex\"ample";for=192.0.2.9`, addrs("192.0.2.9")},
		{`for=192.0.2.1 x, for=192.0.2.2`, addrs("192.0.2.2")},
		{`,,for=192.0.2.1,,`, addrs("192.0.2.1")},
		{`for=[2001:db8::1]`, addrs("2001:db8::1")},
		{`for=[2001:db8::1]:8080;proto=https, for=2001:db8::2`, addrs("2001:db8::1", "2001:db8::2")},
		{`for="` + strings.Repeat(`\1`, 100) + `"`, nil},
	}
	for _, tt := range tests {
		if got := ParseForwarded([]byte(tt.in)); !slices.Equal(got, tt.want) {
			t.Errorf("ParseForwarded(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseAddrMatchesNetip(t *testing.T) {
	inputs := []string{
		"0.0.0.0", "255.255.255.255", "1.2.3.4", "01.2.3.4", "1.2.3", "1.2.3.4.", ".1.2.3", "1..2.3", "256.0.0.0", "1.2.3.4x",
		"::", "::1", "1::", "2001:db8::1", "2001:DB8:0:0:0:0:0:1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:8:9",
		"1::2::3", ":1", "1:", "12345::", "::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:1.2.3.4", "::1.2.3.4.5",
		"fe80::1%eth0", "fe80::1%", "::%x", "g::", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8",
	}
	for _, s := range inputs {
		checkParseAddr(t, s)
	}
}

func checkParseAddr(t *testing.T, s string) {
	t.Helper()
	want, err := netip.ParseAddr(s)
	var got netip.Addr
	var ok bool
	switch {
	case strings.IndexByte(s, ':') >= 0 && (strings.IndexByte(s, '.') < 0 || strings.IndexByte(s, ':') < strings.IndexByte(s, '.')):
		got, ok = parseIPv6([]byte(s))
	case strings.IndexByte(s, '.') >= 0:
		got, ok = parseIPv4([]byte(s))
	default:
		if err == nil {
			t.Errorf("netip parsed %q without '.' or ':'", s)
		}
		return
	}
	if ok != (err == nil) || (ok && got != want.WithZone("")) {
		t.Errorf("parse(%q) = %v, %v; netip.ParseAddr = %v, %v", s, got, ok, want, err)
	}
}

func TestClientIPAllocs(t *testing.T) {
	tp := mustPrefixes(t, "10.0.0.0/8, 2001:db8:ffff::/48")
	peer := netip.MustParseAddr("10.0.0.2")
	xff := []byte("198.51.100.1, 2001:db8:1::7, 10.1.1.1")
	fwd := []byte(`for=198.51.100.2, for="[2001:db8:cafe::17]:4711";proto=https, for="10.1.1.1:8080"`)
	if n := testing.AllocsPerRun(100, func() { ClientIP(peer, xff, nil, tp) }); n != 0 {
		t.Errorf("ClientIP(XFF) allocs = %v, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { ClientIP(peer, nil, fwd, tp) }); n != 0 {
		t.Errorf("ClientIP(Forwarded) allocs = %v, want 0", n)
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "2001:db8::1", "::ffff:1.2.3.4", "fe80::1%eth0", "1:2:3:4:5:6:7:8", "01.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkParseAddr(t, s) })
}

// FuzzParseXForwardedFor checks that every address found is canonical
// (unmapped, no zone), that an IPv4 result appears verbatim in the input,
// that no element yields two addresses, and
// that the canonical re-serialisation parses back to the same list.
func FuzzParseXForwardedFor(f *testing.F) {
	for _, s := range []string{"198.51.100.1", "198.51.100.1, 10.0.0.1", "[2001:db8::1]:443, 1.2.3.4:80", "unknown, _x", " , ,", "::ffff:1.2.3.4%z"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, h []byte) {
		got := ParseXForwardedFor(h)
		if len(got) > strings.Count(string(h), ",")+1 {
			t.Fatalf("ParseXForwardedFor(%q) = %d addresses from at most %d elements", h, len(got), strings.Count(string(h), ",")+1)
		}
		var parts []string
		for _, a := range got {
			checkCanonical(t, a)
			// An IPv4 result has one text form, which must be in the input
			// unless it came from a hex IPv4-mapped IPv6 (::ffff:102:304).
			if a.Is4() && !strings.Contains(string(h), a.String()) && !strings.Contains(strings.ToLower(string(h)), "ffff") {
				t.Fatalf("ParseXForwardedFor(%q) returned %v, not in the input", h, a)
			}
			parts = append(parts, a.String())
		}
		if again := ParseXForwardedFor([]byte(strings.Join(parts, ", "))); !slices.Equal(again, got) {
			t.Fatalf("round trip of %v = %v", got, again)
		}
	})
}

// FuzzParseForwarded checks canonical results, at most one address per
// element, and that re-serialising as quoted for= pairs round-trips.
func FuzzParseForwarded(f *testing.F) {
	for _, s := range []string{
		"for=192.0.2.60;proto=http;by=203.0.113.43", `For="[2001:db8:cafe::17]:4711"`, `for=192.0.2.43, for=unknown`,
		`for="_gazonk"`, `by="a,b";for="192.0.2.\1"`, `for="unterminated`, ";;,,=",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, h []byte) {
		got := ParseForwarded(h)
		if len(got) > strings.Count(string(h), ",")+1 {
			t.Fatalf("ParseForwarded(%q) = %d addresses from at most %d elements", h, len(got), strings.Count(string(h), ",")+1)
		}
		var parts []string
		for _, a := range got {
			checkCanonical(t, a)
			if a.Is4() {
				parts = append(parts, "for="+a.String())
			} else {
				parts = append(parts, `for="[`+a.String()+`]"`)
			}
		}
		if again := ParseForwarded([]byte(strings.Join(parts, ", "))); !slices.Equal(again, got) {
			t.Fatalf("round trip of %v = %v", got, again)
		}
	})
}

func checkCanonical(t *testing.T, a netip.Addr) {
	t.Helper()
	if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
		t.Fatalf("address %v is not canonical (valid, unmapped, no zone)", a)
	}
}

// FuzzClientIP checks that the result is the peer or an address that the
// consulted header holds, and that an untrusted peer is always the answer.
func FuzzClientIP(f *testing.F) {
	f.Add("10.0.0.2", "10.0.0.0/8", []byte("198.51.100.1, 10.1.1.1"), []byte(nil))
	f.Add("10.0.0.2", "10.0.0.0/8", []byte(nil), []byte(`for=198.51.100.2, for="10.1.1.1:80"`))
	f.Add("203.0.113.9", "10.0.0.0/8", []byte("198.51.100.1"), []byte("for=198.51.100.2"))
	f.Add("::ffff:10.0.0.2", "10.0.0.0/8,2001:db8::/32", []byte("[2001:db8::7]:1, garbage"), []byte(nil))
	f.Fuzz(func(t *testing.T, peerS, trustedS string, xff, fwd []byte) {
		peer, err := netip.ParseAddr(peerS)
		if err != nil {
			return
		}
		trusted, err := ParseTrustedProxies(trustedS)
		if err != nil {
			return
		}
		got := ClientIP(peer, xff, fwd, trusted)
		want := peer.Unmap().WithZone("")
		if got == want {
			return
		}
		if !trustedAddr(want, trusted) {
			t.Fatalf("untrusted peer %v: ClientIP = %v, want the peer", peer, got)
		}
		header := ParseXForwardedFor(xff)
		if len(trimOWS(fwd)) > 0 {
			header = ParseForwarded(fwd)
		}
		if !slices.Contains(header, got) {
			t.Fatalf("ClientIP = %v: neither the peer %v nor in the header %v", got, peer, header)
		}
	})
}
