// Package redirect holds what an edge needs to answer a link click, with no
// knowledge of HTTP: the catalog types and their validation, an immutable
// per-version lookup Index, click id minting and checking, destination
// building (macros, passthrough, deep links: the open-redirect defence) and
// the campaign cookie codec. It imports only the standard library.
//
// # Click id format
//
// A click id is 20 raw bytes encoded as exactly 32 characters (ClickIDLen):
//
//	bytes  0..5   mint time, Unix milliseconds, 48-bit big-endian
//	bytes  6..14  9 bytes from crypto/rand
//	bytes 15..19  tag: the first 5 bytes of HMAC-SHA256(secret, bytes 0..14)
//
// The bytes are read as one 160-bit big-endian number and written five bits
// at a time, most significant first, in Crockford's base32 alphabet in
// lowercase, "0123456789abcdefghjkmnpqrstvwxyz", without padding (160 is a
// multiple of 5, so there are no spare bits and every valid string decodes
// to exactly one id). The first 10 characters carry the time (the tenth also
// 2 random bits) and the last 8 exactly the tag.
//
// The alphabet is in ascending ASCII order, so byte-wise string order equals
// numeric order: ids minted in a later millisecond sort after earlier ones
// (ids of the same millisecond sort randomly), which keeps storage keys
// append-friendly. The 72 random bits make ids unique across edges without
// coordination and unguessable. The ids are URL- and cookie-safe. The 40-bit
// tag proves, to anyone holding the cluster secret, that the cluster minted
// the id unaltered: a forger's guess succeeds with probability 2^-40.
// Only lowercase is accepted; times outside 1970 to year 10889 are clamped.
//
// Several secrets can be configured for rotation (NewMinter): the first
// mints, every one verifies.
//
// # Destinations
//
// AppendDestination never redirects outside the template's own host and the
// merchant's and campaign's allowed domains, and never emits control
// characters, spaces, backslashes or userinfo; see its documentation for the
// rules, and Catalog.Validate for what templates may contain.
package redirect
