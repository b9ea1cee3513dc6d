package redirect

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestIssuedKeysAuthenticateUntilRevoked(t *testing.T) {
	c := testCatalog(t)
	revokedAt := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	m := &c.Merchants[0]
	m.APIKeys = []APIKey{
		{ID: "key_live", Prefix: "ce_live_live", Hash: HashAPIKey("ce_live_live-key"), CreatedAt: revokedAt},
		{ID: "key_gone", Prefix: "ce_live_gone", Hash: HashAPIKey("ce_live_gone-key"), CreatedAt: revokedAt, RevokedAt: &revokedAt},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	x := NewIndex(c)
	if got, ok := x.MerchantByKey("ce_live_live-key"); !ok || got.ID != m.ID {
		t.Fatalf("active issued key: %v %v", got, ok)
	}
	if _, ok := x.MerchantByKey("ce_live_gone-key"); ok {
		t.Fatal("a revoked key still authenticates")
	}
	for _, h := range m.APIKeyHashes {
		found := false
		for _, a := range m.ActiveKeyHashes() {
			found = found || a == h
		}
		if !found {
			t.Fatalf("file hash %s missing from the active hashes", h)
		}
	}
}

func TestIssuedKeysValidated(t *testing.T) {
	for name, mut := range map[string]func(*Merchant){
		"bad id": func(m *Merchant) { m.APIKeys = []APIKey{{ID: "key one", Hash: HashAPIKey("a")}} },
		"duplicate id": func(m *Merchant) {
			m.APIKeys = []APIKey{{ID: "k", Hash: HashAPIKey("a")}, {ID: "k", Hash: HashAPIKey("b")}}
		},
		"bad hash": func(m *Merchant) { m.APIKeys = []APIKey{{ID: "k", Hash: strings.Repeat("Z", 64)}} },
	} {
		c := testCatalog(t)
		mut(&c.Merchants[0])
		if err := c.Validate(); !errors.Is(err, ErrInvalidCatalog) {
			t.Errorf("%s: %v, want ErrInvalidCatalog", name, err)
		}
	}
	// The same key hash in two merchants is refused even across the two lists.
	c := testCatalog(t)
	if len(c.Merchants) < 2 || len(c.Merchants[0].APIKeyHashes) == 0 {
		t.Fatal("fixture needs two merchants with a file key")
	}
	c.Merchants[1].APIKeys = []APIKey{{ID: "k", Hash: c.Merchants[0].APIKeyHashes[0]}}
	if err := c.Validate(); !errors.Is(err, ErrInvalidCatalog) {
		t.Errorf("shared hash: %v", err)
	}
}
