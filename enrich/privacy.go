package enrich

import (
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
)

// Privacy says how much of the client address is stored with a click.
type Privacy string

const (
	// PrivacyFull stores the address as is.
	PrivacyFull Privacy = "full"
	// PrivacyTruncate stores the /24 of an IPv4 and the /48 of an IPv6
	// address ("203.0.113.0", "2001:db8:1::"). It is the default.
	PrivacyTruncate Privacy = "truncate"
	// PrivacyDrop stores no address at all.
	PrivacyDrop Privacy = "drop"
)

// ParsePrivacy parses a privacy mode, ignoring case and surrounding space.
// The empty string means PrivacyTruncate.
func ParsePrivacy(s string) (Privacy, error) {
	switch p := Privacy(strings.ToLower(strings.TrimSpace(s))); p {
	case "":
		return PrivacyTruncate, nil
	case PrivacyFull, PrivacyTruncate, PrivacyDrop:
		return p, nil
	}
	return "", fmt.Errorf("parse privacy mode %q: want full, truncate or drop", s)
}

// Anonymize returns ip as stored under p: its text (full), the text of its
// /24 or /48 network address (truncate, and any unknown mode, so that a
// typo never stores more than the default), or "" (drop, or an invalid ip).
// IPv4-mapped addresses are treated as IPv4; zones are dropped.
func Anonymize(ip netip.Addr, p Privacy) string {
	a, ok := storedAddr(ip, p)
	if !ok {
		return ""
	}
	return a.String()
}

// storedAddr is the address whose text Anonymize returns.
func storedAddr(ip netip.Addr, p Privacy) (netip.Addr, bool) {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() || p == PrivacyDrop {
		return netip.Addr{}, false
	}
	if p == PrivacyFull {
		return ip, true
	}
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	pfx, _ := ip.Prefix(bits)
	return pfx.Addr(), true
}

// addrText caches the text of recently stored addresses, so that the
// common case (the same networks clicking again) does not allocate a new
// string per click. It is direct-mapped: a colliding address replaces the
// slot. Entries are immutable and swapped atomically.
type addrText struct {
	slots [256]atomic.Pointer[addrTextEntry]
}

type addrTextEntry struct {
	addr netip.Addr
	text string
}

func (c *addrText) get(a netip.Addr) string {
	b := a.As16()
	h := uint32(2166136261)
	for _, x := range b {
		h = (h ^ uint32(x)) * 16777619
	}
	slot := &c.slots[h%uint32(len(c.slots))]
	if e := slot.Load(); e != nil && e.addr == a {
		return e.text
	}
	e := &addrTextEntry{addr: a, text: a.String()}
	slot.Store(e)
	return e.text
}
