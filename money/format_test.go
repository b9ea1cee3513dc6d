package money

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		minor int64
		cur   Currency
		want  string
	}{
		{1000, usd, "10.00"},
		{-50, usd, "-0.50"},
		{0, usd, "0.00"},
		{1, usd, "0.01"},
		{-1, usd, "-0.01"},
		{99, usd, "0.99"},
		{100, usd, "1.00"},
		{1000, jpy, "1000"},
		{-7, jpy, "-7"},
		{0, jpy, "0"},
		{1, kwd, "0.001"},
		{1500, kwd, "1.500"},
		{-1500, kwd, "-1.500"},
		{12345, clf, "1.2345"},
		{1, uyw, "0.0001"},
		{MaxMinor, usd, "10000000000000.00"},
		{-MaxMinor, usd, "-10000000000000.00"},
		{math.MaxInt64, usd, "92233720368547758.07"},
		{math.MinInt64, usd, "-92233720368547758.08"},
		{math.MinInt64, jpy, "-9223372036854775808"},
		{5, Currency{"X", -3}, "5"},
		{5, Currency{"X", 25}, "0.0000000000000000000000005"},
	}
	for _, tt := range tests {
		if got := Format(tt.minor, tt.cur); got != tt.want {
			t.Errorf("Format(%d, %v) = %q, want %q", tt.minor, tt.cur, got, tt.want)
		}
		prefix := []byte("x=")
		if got := string(AppendFormat(prefix, tt.minor, tt.cur)); got != "x="+tt.want {
			t.Errorf("AppendFormat(%q, %d, %v) = %q, want %q", prefix, tt.minor, tt.cur, got, "x="+tt.want)
		}
	}
}

func TestAmountString(t *testing.T) {
	tests := []struct {
		a    Amount
		want string
	}{
		{Amount{1000, "USD"}, "10.00 USD"},
		{Amount{1000, "usd"}, "10.00 USD"},
		{Amount{-500, "KWD"}, "-0.500 KWD"},
		{Amount{1000, "JPY"}, "1000 JPY"},
		{Amount{100, "BGN"}, "1.00 BGN"},
		{Amount{1050, "XYZ"}, `1050 minor units of "XYZ"`},
		{Amount{1050, ""}, `1050 minor units of ""`},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.a, got, tt.want)
		}
	}
}

func TestAmountJSON(t *testing.T) {
	b, err := json.Marshal(Amount{Minor: 9990, Currency: "USD"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"minor":9990,"currency":"USD"}`; got != want {
		t.Errorf("json.Marshal(Amount) = %s, want %s", got, want)
	}
}

// randomMinor returns amounts across every magnitude, with the boundaries
// over-represented.
func randomMinor(r *rand.Rand) int64 {
	switch r.IntN(8) {
	case 0:
		return []int64{0, 1, -1, MaxMinor, -MaxMinor, MaxMinor - 1, -MaxMinor + 1}[r.IntN(7)]
	case 1:
		return r.Int64N(2001) - 1000
	case 2:
		// log-uniform magnitude
		m := r.Int64N(int64(math.Pow10(r.IntN(16))) + 1)
		if r.IntN(2) == 0 {
			m = -m
		}
		return m
	}
	return r.Int64N(2*MaxMinor+1) - MaxMinor
}

func TestPropertyFormatParseRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(2026, 4217))
	all := Currencies()
	for range 20000 {
		cur := all[r.IntN(len(all))]
		m := randomMinor(r)
		s := Format(m, cur)
		if got, err := Parse(s, cur, true); err != nil || got != m {
			t.Fatalf("Parse(Format(%d, %v) = %q) = %d, %v", m, cur, s, got, err)
		}
		if got, err := ParseJSON([]byte(s), cur, true); err != nil || got != m {
			t.Fatalf("ParseJSON(%s) in %v = %d, %v, want %d", s, cur, got, err, m)
		}
		if got, err := ParseJSON([]byte(`"`+s+`"`), cur, true); err != nil || got != m {
			t.Fatalf(`ParseJSON("%s") in %v = %d, %v, want %d`, s, cur, got, err, m)
		}
		if !json.Valid([]byte(s)) {
			t.Fatalf("Format(%d, %v) = %q is not a JSON number", m, cur, s)
		}
		_, err := Parse(s, cur, false)
		if (m < 0) != (sentinelOf(err) == ErrNegative) {
			t.Fatalf("Parse(%q, allowNegative=false) error = %v", s, err)
		}
	}
}
