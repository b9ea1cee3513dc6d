package money

import (
	"encoding/json"
	"testing"
)

// fuzzCurrencies maps the fuzzer's exponent byte to real exponents 0, 2, 3, 4.
var fuzzCurrencies = []Currency{jpy, usd, kwd, clf}

var jsonSeeds = []string{
	`99.90`, `"99.99"`, `99`, `0`, `-0`, `-5.00`, `"-5.00"`, `99.000`, `"99.001"`,
	`0.5`, `007`, `"007"`, ` 1.25 `, `""`, `"`, `null`, `true`, `{}`, `[]`,
	`1e3`, `"1e3"`, `+5`, `0x10`, `NaN`, `"Infinity"`, `.5`, `5.`, `-`,
	`"9\u0039"`, `" 99"`, `99 99`, `10000000000000`, `10000000000000.01`,
	`1000000000000000`, `99999999999999999999999`, "\"9\t9\"", `"１"`,
}

// FuzzParseJSON checks that ParseJSON never panics, agrees with the
// regexp/math/big oracle on every input (value or sentinel), accepts only
// valid JSON, and that an accepted value formats and re-parses to the same
// minor units.
func FuzzParseJSON(f *testing.F) {
	for i, s := range jsonSeeds {
		f.Add([]byte(s), uint8(i), i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, raw []byte, e uint8, allowNeg bool) {
		cur := fuzzCurrencies[int(e)%len(fuzzCurrencies)]
		got, err := ParseJSON(raw, cur, allowNeg)
		want, werr := oracleJSON(raw, cur.Exponent, MaxMinor, allowNeg)
		if sentinelOf(err) != werr || got != want {
			t.Fatalf("ParseJSON(%q, %v, %v) = %d, %v; oracle says %d, %v", raw, cur, allowNeg, got, err, want, werr)
		}
		if err != nil {
			if sentinelOf(err) == nil {
				t.Fatalf("ParseJSON(%q) error %v wraps no sentinel", raw, err)
			}
			return
		}
		if !json.Valid(raw) {
			t.Fatalf("ParseJSON accepted %q, which is not valid JSON", raw)
		}
		if got > MaxMinor || got < -MaxMinor || (!allowNeg && got < 0) {
			t.Fatalf("ParseJSON(%q, allowNegative=%v) = %d, out of range", raw, allowNeg, got)
		}
		s := Format(got, cur)
		back, err := ParseJSON([]byte(s), cur, allowNeg || got == 0)
		if err != nil || back != got {
			t.Fatalf("ParseJSON(Format(%d) = %q) = %d, %v", got, s, back, err)
		}
	})
}

// FuzzParse checks Parse against the oracle and the Format round trip.
func FuzzParse(f *testing.F) {
	for i, s := range jsonSeeds {
		f.Add(s, uint8(i), i%2 == 1)
	}
	f.Fuzz(func(t *testing.T, s string, e uint8, allowNeg bool) {
		cur := fuzzCurrencies[int(e)%len(fuzzCurrencies)]
		got, err := Parse(s, cur, allowNeg)
		want, werr := oracleDecimal(s, cur.Exponent, MaxMinor, allowNeg, false)
		if sentinelOf(err) != werr || got != want {
			t.Fatalf("Parse(%q, %v, %v) = %d, %v; oracle says %d, %v", s, cur, allowNeg, got, err, want, werr)
		}
		if err != nil {
			return
		}
		if back, err := Parse(Format(got, cur), cur, true); err != nil || back != got {
			t.Fatalf("Parse(Format(%d)) = %d, %v", got, back, err)
		}
	})
}

// FuzzParseRate checks ParseRate and ParseRateJSON against the oracle: basis
// points in 0..MaxRate, two decimals, no sign.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"10", "12.5", "0.25", "12.345", "12.340", "-1", "100000", "100000.01", "10%", `"7.5"`, "1e2", "null"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseRate(s)
		want, werr := oracleDecimal(s, rateExponent, MaxRate, false, false)
		if sentinelOf(err) != werr || got != want {
			t.Fatalf("ParseRate(%q) = %d, %v; oracle says %d, %v", s, got, err, want, werr)
		}
		got, err = ParseRateJSON([]byte(s))
		want, werr = oracleJSON([]byte(s), rateExponent, MaxRate, false)
		if sentinelOf(err) != werr || got != want {
			t.Fatalf("ParseRateJSON(%q) = %d, %v; oracle says %d, %v", s, got, err, want, werr)
		}
		if err == nil && (got < 0 || got > MaxRate) {
			t.Fatalf("ParseRateJSON(%q) = %d, outside 0..%d", s, got, MaxRate)
		}
	})
}

// FuzzMulDiv checks the 128-bit rounding against math/big for any int64s.
func FuzzMulDiv(f *testing.F) {
	f.Add(int64(5), int64(1000), int64(10000))
	f.Add(int64(-5), int64(1000), int64(10000))
	f.Add(int64(1), int64(1), int64(2))
	f.Add(MaxMinor, MaxMinor, int64(1))
	f.Add(int64(-9223372036854775808), int64(1), int64(1))
	f.Add(int64(9223372036854775807), int64(9223372036854775807), int64(9223372036854775807))
	f.Add(int64(7), int64(3), int64(0))
	f.Fuzz(func(t *testing.T, x, num, den int64) {
		got, err := MulDiv(x, num, den)
		want, werr := oracleMulDiv(x, num, den)
		if sentinelOf(err) != werr || got != want {
			t.Fatalf("MulDiv(%d, %d, %d) = %d, %v; math/big says %d, %v", x, num, den, got, err, want, werr)
		}
	})
}
