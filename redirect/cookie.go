package redirect

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidCookie is wrapped by every ParseCookieValue error. Callers treat
// such a cookie as absent.
var ErrInvalidCookie = errors.New("invalid cookie value")

// The reasons are built once: a visitor's stale or foreign cookie must not
// cost an allocation on the redirect path.
var (
	errCookieNoCampaign = fmt.Errorf("%w: no campaign", ErrInvalidCookie)
	errCookieClickID    = fmt.Errorf("%w: not a click id", ErrInvalidCookie)
	errCookiePartnerKey = fmt.Errorf("%w: not a partner key (1-64 of [A-Za-z0-9_-])", ErrInvalidCookie)
)

// maxPartnerKeyLen matches the catalog's limit on partner keys.
const maxPartnerKeyLen = 64

// CookieValue returns the value the campaign's cookie holds for this click:
// the click id, or the partner key when the campaign's cookie holds partner
// keys. Both are cookie-octet safe by construction.
func CookieValue(c *Campaign, clickID, partnerKey string) string {
	if c.Holds() == CookiePartnerKey {
		return partnerKey
	}
	return clickID
}

// CookieContent is what a campaign cookie read back from a visitor says;
// exactly one field is set.
type CookieContent struct {
	ClickID    string
	PartnerKey string
}

// ParseCookieValue validates a cookie value read back from a visitor for
// campaign c: a click id must pass LooksLikeClickID; a partner key must match
// [A-Za-z0-9_-]{1,64}. One pair of surrounding double quotes (allowed by RFC
// 6265) is removed first. Anything else is an error wrapping
// ErrInvalidCookie, which callers ignore. It allocates only the returned
// string.
func ParseCookieValue(c *Campaign, v []byte) (CookieContent, error) {
	if c == nil {
		return CookieContent{}, errCookieNoCampaign
	}
	if n := len(v); n >= 2 && v[0] == '"' && v[n-1] == '"' {
		v = v[1 : n-1]
	}
	if c.Holds() == CookiePartnerKey {
		if !isPartnerKey(v) {
			return CookieContent{}, errCookiePartnerKey
		}
		return CookieContent{PartnerKey: string(v)}, nil
	}
	if !LooksLikeClickID(v) {
		return CookieContent{}, errCookieClickID
	}
	return CookieContent{ClickID: string(v)}, nil
}

func isPartnerKey(v []byte) bool {
	if len(v) == 0 || len(v) > maxPartnerKeyLen {
		return false
	}
	for _, c := range v {
		if !isHostByte(c) {
			return false
		}
	}
	return true
}

// CookieMaxAge returns the Max-Age in seconds of the campaign's cookie: its
// attribution window, so the cookie never outlives the click's credit.
func CookieMaxAge(c *Campaign) int {
	return int(c.Window() / time.Second)
}
