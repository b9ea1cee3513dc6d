package enrich

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

const uniqueShards = 16

// uniques remembers which (client IP, UA, link) keys clicked recently. Keys
// are 64-bit hashes under a random salt that is made in memory, rotates at
// every UTC midnight and is never written anywhere, so the set cannot be
// reversed into addresses. Each shard keeps two generations of
// key -> last-seen time, swapped every window, so that a key is remembered
// for at least one window; a generation that fills up is swapped early,
// which bounds memory under a flood at the price of forgetting sooner.
type uniques struct {
	window time.Duration
	perGen int
	salt   atomic.Pointer[salt]
	saltMu sync.Mutex
	shards [uniqueShards]uniqueShard
}

type uniqueShard struct {
	mu       sync.Mutex
	cur, old map[uint64]int64 // key -> last seen, Unix ns
	start    int64            // when cur began, Unix ns
}

// salt is one day's hashing seed, plus the previous day's so that a repeat
// shortly after midnight is still recognised.
type salt struct {
	day     int64 // days since the Unix epoch, UTC
	cur     maphash.Seed
	prev    maphash.Seed
	hasPrev bool
}

const nsPerDay = int64(24 * time.Hour)

func newUniques(window time.Duration, maxEntries int) *uniques {
	u := &uniques{window: window, perGen: max(1, maxEntries/(2*uniqueShards))}
	for i := range u.shards {
		u.shards[i].cur = make(map[uint64]int64)
	}
	return u
}

// seen records a click of key (ip, ua, link) at now and reports whether the
// same key clicked within the window before.
func (u *uniques) seen(now time.Time, ip netip.Addr, ua []byte, link string) bool {
	t := now.UnixNano()
	s := u.saltAt(t)
	if u.touch(uniqueKey(s.cur, ip, ua, link), t) {
		return true
	}
	if s.hasPrev && t-s.day*nsPerDay < int64(u.window) {
		return u.recent(uniqueKey(s.prev, ip, ua, link), t)
	}
	return false
}

// touch sets key's last-seen time to t and reports whether it was seen
// within the window before.
func (u *uniques) touch(key uint64, t int64) bool {
	sh := &u.shards[key%uniqueShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.rotate(t, int64(u.window), u.perGen)
	last, ok := sh.cur[key]
	if !ok {
		last, ok = sh.old[key]
	}
	sh.cur[key] = t
	return ok && t-last < int64(u.window)
}

// recent reports whether key was seen within the window, without recording.
func (u *uniques) recent(key uint64, t int64) bool {
	sh := &u.shards[key%uniqueShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	last, ok := sh.cur[key]
	if !ok {
		last, ok = sh.old[key]
	}
	return ok && t-last < int64(u.window)
}

func (sh *uniqueShard) rotate(t, window int64, perGen int) {
	switch age := t - sh.start; {
	case age >= 2*window:
		// Both generations are older than a window: drop them.
		sh.old, sh.cur, sh.start = nil, make(map[uint64]int64), t
	case age >= window || len(sh.cur) >= perGen:
		sh.old, sh.cur, sh.start = sh.cur, make(map[uint64]int64, len(sh.cur)), t
	}
}

// saltAt returns the salt of t's UTC day, making it on the first click of
// the day.
func (u *uniques) saltAt(t int64) *salt {
	day := t / nsPerDay
	if t < 0 && t%nsPerDay != 0 {
		day--
	}
	if s := u.salt.Load(); s != nil && day <= s.day {
		return s
	}
	u.saltMu.Lock()
	defer u.saltMu.Unlock()
	s := u.salt.Load()
	if s != nil && day <= s.day {
		return s
	}
	ns := &salt{day: day, cur: maphash.MakeSeed()}
	if s != nil && s.day == day-1 {
		ns.prev, ns.hasPrev = s.cur, true
	}
	u.salt.Store(ns)
	return ns
}

// uniqueKey hashes the parts with length prefixes, so that no two different
// (ua, link) pairs produce the same byte stream.
func uniqueKey(seed maphash.Seed, ip netip.Addr, ua []byte, link string) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	a := ip.As16()
	_, _ = h.Write(a[:])
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(ua)))
	_, _ = h.Write(n[:])
	_, _ = h.Write(ua)
	_, _ = h.WriteString(link)
	return h.Sum64()
}
