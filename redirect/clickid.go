package redirect

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"
	"time"
)

// ClickIDLen is the length in characters of every click id.
const ClickIDLen = 32

// MinSecretLen is the shortest cluster secret NewMinter accepts, in bytes.
const MinSecretLen = 16

// Layout of the 20 raw bytes behind a click id; see the package documentation.
const (
	idTimeLen   = 6
	idRandLen   = 9
	idTagLen    = 5
	idSignedLen = idTimeLen + idRandLen // bytes covered by the tag
	idRawLen    = idSignedLen + idTagLen
	maxIDMillis = 1<<(8*idTimeLen) - 1
)

// clickIDAlphabet is Crockford's base32 alphabet in lowercase. Its characters
// are in ascending ASCII order, so comparing encoded ids as strings compares
// the raw bytes, which start with the big-endian mint time.
const clickIDAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// clickIDDecode maps a character to its 5-bit value, or 0xff outside the alphabet.
var clickIDDecode = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(clickIDAlphabet); i++ {
		t[clickIDAlphabet[i]] = byte(i)
	}
	return t
}()

// ErrMalformedClickID is wrapped by every error about a click id's syntax:
// wrong length or a character outside the alphabet.
var ErrMalformedClickID = errors.New("malformed click id")

// ErrForgedClickID is returned by Minter.Verify for a well-formed id whose tag
// matches none of the minter's secrets: it was not minted by this cluster, or
// it was altered.
var ErrForgedClickID = errors.New("forged click id")

// Minter mints and verifies click ids under the cluster's secrets. It is safe
// for concurrent use. The first secret mints; every secret verifies, so a new
// secret can be rolled out first in second place, then promoted, and the old
// one removed once no click inside any attribution window carries it.
type Minter struct {
	secrets [][]byte
	// pools holds one pool of keyed HMAC states per secret; keying an HMAC
	// costs allocations that the redirect path must not pay per click.
	pools []sync.Pool
}

// macState is a keyed HMAC together with the buffers it reads and writes.
// The buffers live beside the hash so that passing them through the
// hash.Hash interface does not force a heap allocation per call.
type macState struct {
	h   hash.Hash
	msg [idSignedLen]byte
	sum [sha256.Size]byte
}

// NewMinter returns a Minter. At least one secret is required and each must
// be at least MinSecretLen bytes; the secrets are copied.
func NewMinter(secrets ...[]byte) (*Minter, error) {
	if len(secrets) == 0 {
		return nil, errors.New("new click id minter: no secret")
	}
	m := &Minter{
		secrets: make([][]byte, len(secrets)),
		pools:   make([]sync.Pool, len(secrets)),
	}
	for i, s := range secrets {
		if len(s) < MinSecretLen {
			return nil, fmt.Errorf("new click id minter: secret %d is %d bytes, want at least %d", i, len(s), MinSecretLen)
		}
		key := append([]byte(nil), s...)
		m.secrets[i] = key
		m.pools[i].New = func() any {
			return &macState{h: hmac.New(sha256.New, key)}
		}
	}
	return m, nil
}

// tag computes the tag of signed under secret i into out.
func (m *Minter) tag(i int, signed *[idSignedLen]byte, out *[idTagLen]byte) {
	st := m.pools[i].Get().(*macState)
	st.msg = *signed
	st.h.Reset()
	st.h.Write(st.msg[:])
	st.h.Sum(st.sum[:0])
	copy(out[:], st.sum[:idTagLen])
	m.pools[i].Put(st)
}

// New returns a fresh click id minted at now.
func (m *Minter) New(now time.Time) string {
	var buf [ClickIDLen]byte
	return string(m.AppendNew(buf[:0], now))
}

// AppendNew appends a fresh click id minted at now to dst and returns the
// extended slice. It does not allocate when dst has room for ClickIDLen more
// bytes. Times before the Unix epoch mint as the epoch, times past the 48-bit
// millisecond range (year 10889) as its end.
func (m *Minter) AppendNew(dst []byte, now time.Time) []byte {
	ms := now.UnixMilli()
	if ms < 0 {
		ms = 0
	} else if ms > maxIDMillis {
		ms = maxIDMillis
	}
	var raw [idRawLen]byte
	for i := idTimeLen - 1; i >= 0; i-- {
		raw[i] = byte(ms)
		ms >>= 8
	}
	st := m.pools[0].Get().(*macState)
	// crypto/rand.Read never fails: it crashes the program rather than
	// return predictable bytes.
	rand.Read(st.msg[idTimeLen:])
	copy(st.msg[:idTimeLen], raw[:idTimeLen])
	st.h.Reset()
	st.h.Write(st.msg[:])
	st.h.Sum(st.sum[:0])
	copy(raw[:idSignedLen], st.msg[:])
	copy(raw[idSignedLen:], st.sum[:idTagLen])
	m.pools[0].Put(st)
	return appendClickID(dst, &raw)
}

// Verify checks the id's syntax and its tag against every secret and returns
// the time the id was minted (UTC, millisecond resolution). Bad syntax gives
// an error wrapping ErrMalformedClickID; a tag that matches no secret gives
// one wrapping ErrForgedClickID. The time is zero whenever err is not nil.
func (m *Minter) Verify(id string) (time.Time, error) {
	var raw [idRawLen]byte
	if err := decodeClickID(id, &raw); err != nil {
		return time.Time{}, fmt.Errorf("verify click id: %w", err)
	}
	var signed [idSignedLen]byte
	copy(signed[:], raw[:idSignedLen])
	var got [idTagLen]byte
	copy(got[:], raw[idSignedLen:])
	for i := range m.secrets {
		var want [idTagLen]byte
		m.tag(i, &signed, &want)
		if hmac.Equal(got[:], want[:]) {
			return clickIDTime(&raw), nil
		}
	}
	return time.Time{}, fmt.Errorf("verify click id %s: %w", id, ErrForgedClickID)
}

// ParseClickID checks a click id's syntax and returns the mint time it
// claims (UTC, millisecond resolution). It needs no secret and so proves
// nothing about who minted the id: use Minter.Verify for that. Errors wrap
// ErrMalformedClickID.
func ParseClickID(id string) (time.Time, error) {
	var raw [idRawLen]byte
	if err := decodeClickID(id, &raw); err != nil {
		return time.Time{}, fmt.Errorf("parse click id: %w", err)
	}
	return clickIDTime(&raw), nil
}

// LooksLikeClickID reports whether b has a click id's syntax: exactly
// ClickIDLen characters of the lowercase alphabet. It does not allocate.
func LooksLikeClickID(b []byte) bool {
	if len(b) != ClickIDLen {
		return false
	}
	for _, c := range b {
		if clickIDDecode[c] == 0xff {
			return false
		}
	}
	return true
}

func clickIDTime(raw *[idRawLen]byte) time.Time {
	var ms int64
	for _, b := range raw[:idTimeLen] {
		ms = ms<<8 | int64(b)
	}
	return time.UnixMilli(ms).UTC()
}

// appendClickID encodes 20 bytes as 32 characters, five bits each, most
// significant first: four groups of 5 bytes become four groups of 8 characters.
func appendClickID(dst []byte, raw *[idRawLen]byte) []byte {
	for g := 0; g < idRawLen; g += 5 {
		v := uint64(raw[g])<<32 | uint64(raw[g+1])<<24 | uint64(raw[g+2])<<16 | uint64(raw[g+3])<<8 | uint64(raw[g+4])
		for shift := 35; shift >= 0; shift -= 5 {
			dst = append(dst, clickIDAlphabet[(v>>uint(shift))&31])
		}
	}
	return dst
}

// malformedError carries the reason of a syntax failure without allocating
// until it is formatted.
type malformedError struct {
	length int // the id's length when wrong, else -1
	pos    int // the position of the first bad character
	c      byte
}

func (e *malformedError) Error() string {
	if e.length >= 0 {
		return fmt.Sprintf("%s: %d characters, want %d", ErrMalformedClickID, e.length, ClickIDLen)
	}
	return fmt.Sprintf("%s: character %q at %d outside the alphabet", ErrMalformedClickID, e.c, e.pos)
}

func (e *malformedError) Unwrap() error { return ErrMalformedClickID }

func decodeClickID(id string, raw *[idRawLen]byte) error {
	if len(id) != ClickIDLen {
		return &malformedError{length: len(id)}
	}
	for g := 0; g < 4; g++ {
		var v uint64
		for j := 0; j < 8; j++ {
			c := id[g*8+j]
			d := clickIDDecode[c]
			if d == 0xff {
				return &malformedError{length: -1, pos: g*8 + j, c: c}
			}
			v = v<<5 | uint64(d)
		}
		raw[g*5] = byte(v >> 32)
		raw[g*5+1] = byte(v >> 24)
		raw[g*5+2] = byte(v >> 16)
		raw[g*5+3] = byte(v >> 8)
		raw[g*5+4] = byte(v)
	}
	return nil
}
