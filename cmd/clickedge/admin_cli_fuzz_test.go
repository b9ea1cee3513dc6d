package main

import (
	"strings"
	"testing"

	"github.com/clickedge/clickedge/money"
)

// FuzzParseCommission: a --commission spec either parses into a rule with
// non-negative exact amounts that says what it pays (an explicit zero is a
// rule that pays nothing, e.g. for an excluded product), or is refused; it
// never panics.
func FuzzParseCommission(f *testing.F) {
	for _, s := range []string{"type=sale,percent=10", "type=lead,flat=5.00", "product_id=p1,percent=12.5",
		"percent_bps=1000", "flat_minor=1", "type=sale,percent=-1", "flat=1e3", "percent=10,percent=20", "=", ",,,"} {
		f.Add(s, "USD")
	}
	f.Add("flat=5", "JPY")
	f.Add("flat=0.001", "KWD")
	f.Fuzz(func(t *testing.T, spec, code string) {
		cur, err := money.LookupCurrency(code)
		if err != nil {
			cur, _ = money.LookupCurrency("USD")
		}
		rule, err := parseCommission(spec, cur)
		if err != nil {
			return
		}
		if rule.PercentBPS < 0 || rule.FlatMinor < 0 || !strings.Contains(spec, "percent") && !strings.Contains(spec, "flat") {
			t.Fatalf("%q parsed into %+v", spec, rule)
		}
		if strings.ContainsAny(rule.Type+rule.ProductID+rule.ProductType, "=,") {
			t.Fatalf("%q: a key or separator leaked into %+v", spec, rule)
		}
	})
}
