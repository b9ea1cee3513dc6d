package money

import (
	"errors"
	"strings"
	"testing"
)

var (
	usd = Currency{"USD", 2}
	jpy = Currency{"JPY", 0}
	kwd = Currency{"KWD", 3}
	clf = Currency{"CLF", 4}
	uyw = Currency{"UYW", 4}
)

func TestParse(t *testing.T) {
	tests := []struct {
		in    string
		cur   Currency
		neg   bool
		want  int64
		err   error
		label string
	}{
		{"99", usd, false, 9900, nil, "integer"},
		{"99.9", usd, false, 9990, nil, "one decimal"},
		{"99.90", usd, false, 9990, nil, "two decimals"},
		{"99.000", usd, false, 9900, nil, "trailing zeros beyond the exponent"},
		{"99.9900000", usd, false, 9999, nil, "many trailing zeros"},
		{"0.01", usd, false, 1, nil, "one cent"},
		{"0", usd, false, 0, nil, "zero"},
		{"007.50", usd, false, 750, nil, "leading zeros in text"},
		{"0000000000000000000000000001", usd, false, 100, nil, "many leading zeros do not overflow"},
		{"-5.00", usd, true, -500, nil, "negative allowed"},
		{"-0.5", usd, true, -50, nil, "negative fraction"},
		{"-0", usd, true, 0, nil, "negative zero"},
		{"-5.00", usd, false, 0, ErrNegative, "negative refused"},
		{"-0", usd, false, 0, ErrNegative, "minus sign refused even on zero"},
		{"-99.001", usd, false, 0, ErrNegative, "sign is checked before decimals"},
		{"99.001", usd, false, 0, ErrTooManyDecimals, "third significant decimal"},
		{"0.009", usd, false, 0, ErrTooManyDecimals, "sub-cent"},
		{"", usd, false, 0, ErrInvalidAmount, "empty"},
		{"-", usd, true, 0, ErrInvalidAmount, "sign alone"},
		{"--5", usd, true, 0, ErrInvalidAmount, "double sign"},
		{"+5", usd, false, 0, ErrInvalidAmount, "plus sign"},
		{".5", usd, false, 0, ErrInvalidAmount, "no integer digits"},
		{"-.5", usd, true, 0, ErrInvalidAmount, "no integer digits after sign"},
		{"5.", usd, false, 0, ErrInvalidAmount, "no fraction digits"},
		{"5.5.5", usd, false, 0, ErrInvalidAmount, "two points"},
		{"1e3", usd, false, 0, ErrInvalidAmount, "exponent"},
		{"1E3", usd, false, 0, ErrInvalidAmount, "upper-case exponent"},
		{"1.5e2", usd, false, 0, ErrInvalidAmount, "fraction with exponent"},
		{"0x10", usd, false, 0, ErrInvalidAmount, "hex"},
		{"1,000.00", usd, false, 0, ErrInvalidAmount, "grouping"},
		{"1_000", usd, false, 0, ErrInvalidAmount, "underscore"},
		{" 5", usd, false, 0, ErrInvalidAmount, "leading space"},
		{"5 ", usd, false, 0, ErrInvalidAmount, "trailing space"},
		{"5 .00", usd, false, 0, ErrInvalidAmount, "inner space"},
		{"5\n", usd, false, 0, ErrInvalidAmount, "newline"},
		{"NaN", usd, false, 0, ErrInvalidAmount, "NaN"},
		{"Infinity", usd, false, 0, ErrInvalidAmount, "Infinity"},
		{"-Infinity", usd, true, 0, ErrInvalidAmount, "-Infinity"},
		{"-1x", usd, false, 0, ErrInvalidAmount, "syntax is checked before sign"},
		{"１", usd, false, 0, ErrInvalidAmount, "full-width digit"},
		{`"5"`, usd, false, 0, ErrInvalidAmount, "quotes are JSON, not text"},
		{"5$", usd, false, 0, ErrInvalidAmount, "symbol"},

		{"1000", jpy, false, 1000, nil, "JPY integer"},
		{"1000.00", jpy, false, 1000, nil, "JPY trailing zeros"},
		{"1000.5", jpy, false, 0, ErrTooManyDecimals, "JPY has no minor unit"},
		{"-7", jpy, true, -7, nil, "JPY negative"},
		{"1.5", kwd, false, 1500, nil, "KWD fils"},
		{"0.001", kwd, false, 1, nil, "KWD one fils"},
		{"1.2340", kwd, false, 1234, nil, "KWD trailing zero"},
		{"0.0001", kwd, false, 0, ErrTooManyDecimals, "KWD fourth decimal"},
		{"1.2345", clf, false, 12345, nil, "CLF four decimals"},
		{"1.23456", clf, false, 0, ErrTooManyDecimals, "CLF fifth decimal"},
		{"0.0001", uyw, false, 1, nil, "UYW smallest unit"},

		{"10000000000000", usd, false, MaxMinor, nil, "MaxMinor in USD"},
		{"10000000000000.00", usd, false, MaxMinor, nil, "MaxMinor with decimals"},
		{"9999999999999.99", usd, false, MaxMinor - 1, nil, "just below MaxMinor"},
		{"10000000000000.01", usd, false, 0, ErrTooLarge, "one cent above MaxMinor"},
		{"-10000000000000", usd, true, -MaxMinor, nil, "-MaxMinor"},
		{"-10000000000000.01", usd, true, 0, ErrTooLarge, "one cent below -MaxMinor"},
		{"1000000000000000", jpy, false, MaxMinor, nil, "MaxMinor in JPY"},
		{"1000000000000001", jpy, false, 0, ErrTooLarge, "MaxMinor+1 in JPY"},
		{"100000000000", clf, false, MaxMinor, nil, "MaxMinor in CLF"},
		{"100000000000.0001", clf, false, 0, ErrTooLarge, "MaxMinor+1 in CLF"},
		{"99999999999999999999999999999", usd, false, 0, ErrTooLarge, "huge does not overflow"},

		{"5", Currency{"BAD", -1}, false, 0, ErrUnknownCurrency, "negative exponent"},
		{"5", Currency{"BAD", 16}, false, 0, ErrUnknownCurrency, "exponent too large"},
		{"5", Currency{}, false, 5, nil, "zero Currency counts whole units"},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			got, err := Parse(tt.in, tt.cur, tt.neg)
			if sentinelOf(err) != tt.err || (err == nil) != (tt.err == nil) {
				t.Fatalf("Parse(%q, %v, %v) error = %v, want %v", tt.in, tt.cur, tt.neg, err, tt.err)
			}
			if got != tt.want {
				t.Errorf("Parse(%q, %v, %v) = %d, want %d", tt.in, tt.cur, tt.neg, got, tt.want)
			}
			if tt.err == nil || tt.err == ErrUnknownCurrency {
				return
			}
			// The independent implementation agrees on every row.
			owant, oerr := oracleDecimal(tt.in, max(tt.cur.Exponent, 0), MaxMinor, tt.neg, false)
			if oerr != tt.err || owant != tt.want {
				t.Errorf("oracle(%q) = %d, %v; table says %d, %v", tt.in, owant, oerr, tt.want, tt.err)
			}
		})
	}
}

func TestParseJSON(t *testing.T) {
	tests := []struct {
		in   string
		cur  Currency
		neg  bool
		want int64
		err  error
	}{
		{`99.00`, usd, false, 9900, nil},
		{`99`, usd, false, 9900, nil},
		{`"99.99"`, usd, false, 9999, nil},
		{`"99"`, usd, false, 9900, nil},
		{`99.000`, usd, false, 9900, nil},
		{`"99.000"`, usd, false, 9900, nil},
		{`0.5`, usd, false, 50, nil},
		{`0`, usd, false, 0, nil},
		{`"007"`, usd, false, 700, nil},
		{" \t\r\n99.5\n ", usd, false, 9950, nil},
		{` "1.25" `, usd, false, 125, nil},
		{`-0.5`, usd, true, -50, nil},
		{`"-0.50"`, usd, true, -50, nil},
		{`-0.5`, usd, false, 0, ErrNegative},
		{`"-1"`, usd, false, 0, ErrNegative},
		{`99.001`, usd, false, 0, ErrTooManyDecimals},
		{`"99.001"`, usd, false, 0, ErrTooManyDecimals},
		{`10000000000000`, usd, false, MaxMinor, nil},
		{`10000000000000.01`, usd, false, 0, ErrTooLarge},
		{`"-10000000000000.01"`, usd, true, 0, ErrTooLarge},
		{`1000`, jpy, false, 1000, nil},
		{`1000.0`, jpy, false, 1000, nil},
		{`"1000.5"`, jpy, false, 0, ErrTooManyDecimals},
		{`1.234`, kwd, false, 1234, nil},
		{`"0.0001"`, clf, false, 1, nil},

		{``, usd, false, 0, ErrInvalidAmount},
		{`   `, usd, false, 0, ErrInvalidAmount},
		{`""`, usd, false, 0, ErrInvalidAmount},
		{`"`, usd, false, 0, ErrInvalidAmount},
		{`"99`, usd, false, 0, ErrInvalidAmount},
		{`"99"x`, usd, false, 0, ErrInvalidAmount},
		{`99"`, usd, false, 0, ErrInvalidAmount},
		{`"9"9"`, usd, false, 0, ErrInvalidAmount},
		{`null`, usd, false, 0, ErrInvalidAmount},
		{`true`, usd, false, 0, ErrInvalidAmount},
		{`false`, usd, false, 0, ErrInvalidAmount},
		{`{}`, usd, false, 0, ErrInvalidAmount},
		{`{"amount":1}`, usd, false, 0, ErrInvalidAmount},
		{`[1]`, usd, false, 0, ErrInvalidAmount},
		{`NaN`, usd, false, 0, ErrInvalidAmount},
		{`"NaN"`, usd, false, 0, ErrInvalidAmount},
		{`Infinity`, usd, false, 0, ErrInvalidAmount},
		{`"Infinity"`, usd, false, 0, ErrInvalidAmount},
		{`"-Infinity"`, usd, true, 0, ErrInvalidAmount},
		{`1e3`, usd, false, 0, ErrInvalidAmount},
		{`1E3`, usd, false, 0, ErrInvalidAmount},
		{`1.5e2`, usd, false, 0, ErrInvalidAmount},
		{`"1e3"`, usd, false, 0, ErrInvalidAmount},
		{`+5`, usd, false, 0, ErrInvalidAmount},
		{`"+5"`, usd, false, 0, ErrInvalidAmount},
		{`0x10`, usd, false, 0, ErrInvalidAmount},
		{`"0x10"`, usd, false, 0, ErrInvalidAmount},
		{`007`, usd, false, 0, ErrInvalidAmount},
		{`-01`, usd, true, 0, ErrInvalidAmount},
		{`.5`, usd, false, 0, ErrInvalidAmount},
		{`5.`, usd, false, 0, ErrInvalidAmount},
		{`-`, usd, true, 0, ErrInvalidAmount},
		{`99 99`, usd, false, 0, ErrInvalidAmount},
		{`" 99"`, usd, false, 0, ErrInvalidAmount},
		{`"99 "`, usd, false, 0, ErrInvalidAmount},
		{"\"9\t9\"", usd, false, 0, ErrInvalidAmount},
		{`"9\u0039"`, usd, false, 0, ErrInvalidAmount},
		{`"1,000"`, usd, false, 0, ErrInvalidAmount},
		{`5`, Currency{"BAD", 99}, false, 0, ErrUnknownCurrency},
	}
	for _, tt := range tests {
		got, err := ParseJSON([]byte(tt.in), tt.cur, tt.neg)
		if sentinelOf(err) != tt.err || (err == nil) != (tt.err == nil) {
			t.Errorf("ParseJSON(%s, %v, %v) error = %v, want %v", tt.in, tt.cur, tt.neg, err, tt.err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseJSON(%s, %v, %v) = %d, want %d", tt.in, tt.cur, tt.neg, got, tt.want)
		}
		if tt.err == ErrUnknownCurrency {
			continue
		}
		owant, oerr := oracleJSON([]byte(tt.in), tt.cur.Exponent, MaxMinor, tt.neg)
		if oerr != tt.err || owant != tt.want {
			t.Errorf("oracle(%s) = %d, %v; table says %d, %v", tt.in, owant, oerr, tt.want, tt.err)
		}
	}
}

func TestParseErrorsSayWhat(t *testing.T) {
	tests := []struct {
		err  error
		want []string
	}{
		{func() error { _, err := Parse("1e3", usd, false); return err }(),
			[]string{"parse amount", `"1e3"`, "USD", "exponent", "offset 1"}},
		{func() error { _, err := ParseJSON([]byte(`"99.001"`), usd, false); return err }(),
			[]string{"parse JSON amount", `99.001`, "USD", "too many decimals"}},
		{func() error { _, err := ParseRate("12.345"); return err }(),
			[]string{"parse rate", `"12.345"`, "too many decimals"}},
		{func() error { _, err := Parse(strings.Repeat("9", 1000), usd, false); return err }(),
			[]string{"parse amount", "...", "too large"}},
		{func() error { _, err := LookupCurrency("bgn"); return err }(),
			[]string{"look up currency", `"bgn"`, "withdrawn"}},
	}
	for _, tt := range tests {
		if tt.err == nil {
			t.Fatalf("got no error, want one mentioning %q", tt.want)
		}
		msg := tt.err.Error()
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("error %q does not mention %q", msg, w)
			}
		}
		if len(msg) > 200 {
			t.Errorf("error message is %d bytes long; input must be cut short", len(msg))
		}
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  error
	}{
		{"10", 1000, nil},
		{"12.5", 1250, nil},
		{"0.25", 25, nil},
		{"0.01", 1, nil},
		{"0", 0, nil},
		{"100", 10000, nil},
		{"12.340", 1234, nil},
		{"100000", MaxRate, nil},
		{"100000.00", MaxRate, nil},
		{"100000.01", 0, ErrTooLarge},
		{"12.345", 0, ErrTooManyDecimals},
		{"0.001", 0, ErrTooManyDecimals},
		{"-1", 0, ErrNegative},
		{"10%", 0, ErrInvalidAmount},
		{"", 0, ErrInvalidAmount},
		{"1e1", 0, ErrInvalidAmount},
		{".5", 0, ErrInvalidAmount},
		{" 10", 0, ErrInvalidAmount},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if sentinelOf(err) != tt.err || (err == nil) != (tt.err == nil) {
			t.Errorf("ParseRate(%q) error = %v, want %v", tt.in, err, tt.err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseRate(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParseRateJSON(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  error
	}{
		{`12.5`, 1250, nil},
		{`"0.25"`, 25, nil},
		{`10`, 1000, nil},
		{`null`, 0, ErrInvalidAmount},
		{`-1`, 0, ErrNegative},
		{`1e2`, 0, ErrInvalidAmount},
		{`"12.345"`, 0, ErrTooManyDecimals},
		{`100001`, 0, ErrTooLarge},
	}
	for _, tt := range tests {
		got, err := ParseRateJSON([]byte(tt.in))
		if sentinelOf(err) != tt.err || (err == nil) != (tt.err == nil) {
			t.Errorf("ParseRateJSON(%s) error = %v, want %v", tt.in, err, tt.err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseRateJSON(%s) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestAmountFromJSON(t *testing.T) {
	tests := []struct {
		raw, code string
		neg       bool
		want      Amount
		err       error
	}{
		{`"99.90"`, "usd", false, Amount{9990, "USD"}, nil},
		{`5`, "", false, Amount{500, DefaultCurrency}, nil},
		{`5`, "JPY", false, Amount{5, "JPY"}, nil},
		{`-1.5`, "kwd", true, Amount{-1500, "KWD"}, nil},
		{`-1.5`, "kwd", false, Amount{}, ErrNegative},
		{`5.5`, "JPY", false, Amount{}, ErrTooManyDecimals},
		{`5`, "XAU", false, Amount{}, ErrUnknownCurrency},
		{`5`, "BGN", false, Amount{}, ErrUnknownCurrency},
		{`null`, "USD", false, Amount{}, ErrInvalidAmount},
	}
	for _, tt := range tests {
		got, err := AmountFromJSON([]byte(tt.raw), tt.code, tt.neg)
		if sentinelOf(err) != tt.err || (err == nil) != (tt.err == nil) {
			t.Errorf("AmountFromJSON(%s, %q) error = %v, want %v", tt.raw, tt.code, err, tt.err)
			continue
		}
		if got != tt.want {
			t.Errorf("AmountFromJSON(%s, %q) = %+v, want %+v", tt.raw, tt.code, got, tt.want)
		}
	}
}

func TestErrorsWrapOneSentinel(t *testing.T) {
	inputs := []string{"", "x", "-1", "1.001", "1e999", strings.Repeat("9", 30), `"`, "null"}
	for _, in := range inputs {
		_, err := ParseJSON([]byte(in), usd, false)
		if err == nil {
			t.Fatalf("ParseJSON(%q) accepted", in)
		}
		n := 0
		for _, s := range sentinels {
			if errors.Is(err, s) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("ParseJSON(%q) error %q wraps %d sentinels, want 1", in, err, n)
		}
	}
}
