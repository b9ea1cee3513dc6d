package money

import (
	"fmt"
)

// MaxRate is the largest rate ParseRate accepts, in basis points: 100000 %.
const MaxRate int64 = 10_000_000

// rateExponent: a rate in percent has at most two decimals, so basis points
// are the percent text scaled by 10^2.
const rateExponent = 2

// Parse parses decimal text (see the package documentation for the grammar)
// exactly into minor units of cur: "99.9" in USD is 9990, "1000" in JPY is
// 1000, "1.5" in KWD is 1500. A fraction longer than cur.Exponent is
// accepted only if the extra digits are zeros. A minus sign is ErrNegative
// unless allowNegative; magnitudes above MaxMinor are ErrTooLarge.
func Parse(s string, cur Currency, allowNegative bool) (int64, error) {
	if err := checkExponent(cur); err != nil {
		return 0, fmt.Errorf("parse amount %s: %w", quote(s), err)
	}
	v, f := parseDecimal(s, cur.Exponent, MaxMinor, allowNegative, false)
	if f.err != nil {
		return 0, f.wrap("parse amount", s, cur.Code)
	}
	return v, nil
}

// ParseJSON parses one raw JSON value into minor units of cur without
// going through float64. The value is a JSON number (99.90, -5) or a JSON
// string holding decimal text ("99.90"); whitespace around it is ignored.
// null, booleans, objects, arrays, exponents (1e3), leading '+', hex,
// NaN/Infinity, escapes, empty strings and whitespace inside the value are
// ErrInvalidAmount; the other rules are those of Parse. A successful call
// does not allocate.
func ParseJSON(raw []byte, cur Currency, allowNegative bool) (int64, error) {
	if err := checkExponent(cur); err != nil {
		return 0, fmt.Errorf("parse JSON amount %s: %w", quote(raw), err)
	}
	v, f := parseJSONDecimal(raw, cur.Exponent, MaxMinor, allowNegative)
	if f.err != nil {
		return 0, f.wrap("parse JSON amount", raw, cur.Code)
	}
	return v, nil
}

// ParseRate parses a percentage in decimal text, "10", "12.5", "0.25",
// exactly into basis points (1000, 1250, 25). It accepts the grammar of
// Parse without a sign (ErrNegative), at most two significant decimals
// (ErrTooManyDecimals; trailing zeros are fine) and at most 100000 %
// (ErrTooLarge). No '%' suffix.
func ParseRate(s string) (int64, error) {
	v, f := parseDecimal(s, rateExponent, MaxRate, false, false)
	if f.err != nil {
		return 0, f.wrap("parse rate", s, "")
	}
	return v, nil
}

// ParseRateJSON is ParseRate for a raw JSON value: a number (12.5) or a
// string ("12.5"), with the same rejections as ParseJSON.
func ParseRateJSON(raw []byte) (int64, error) {
	v, f := parseJSONDecimal(raw, rateExponent, MaxRate, false)
	if f.err != nil {
		return 0, f.wrap("parse JSON rate", raw, "")
	}
	return v, nil
}

// failure says why parsing failed without allocating; the caller turns it
// into an error only on the error path.
type failure struct {
	err    error  // one of the sentinels; nil means success
	detail string // constant text, never built from input
	at     int    // byte offset of the offending character, -1 if none
	c      byte   // the offending character when at >= 0
}

func fail(err error, detail string) failure { return failure{err: err, detail: detail, at: -1} }

func (f failure) wrap(op string, input any, code string) error {
	var in string
	switch v := input.(type) {
	case string:
		in = quote(v)
	case []byte:
		in = quote(v)
	}
	unit := ""
	if code != "" {
		unit = " " + code
	}
	if f.at >= 0 {
		return fmt.Errorf("%s %s%s: %w: %s %q at offset %d", op, in, unit, f.err, f.detail, f.c, f.at)
	}
	return fmt.Errorf("%s %s%s: %w: %s", op, in, unit, f.err, f.detail)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isJSONSpace reports the four whitespace bytes of RFC 8259.
func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// parseJSONDecimal dispatches on the kind of JSON value.
func parseJSONDecimal(raw []byte, exp int, limit int64, allowNeg bool) (int64, failure) {
	i, j := 0, len(raw)
	for i < j && isJSONSpace(raw[i]) {
		i++
	}
	for j > i && isJSONSpace(raw[j-1]) {
		j--
	}
	s := raw[i:j]
	if len(s) == 0 {
		return 0, fail(ErrInvalidAmount, "empty value")
	}
	switch s[0] {
	case '"':
		if len(s) < 2 || s[len(s)-1] != '"' {
			return 0, fail(ErrInvalidAmount, "unterminated string")
		}
		inner := s[1 : len(s)-1]
		for k, c := range inner {
			if c == '"' || c == '\\' || c < 0x20 {
				return 0, failure{err: ErrInvalidAmount, detail: "escape, quote or control character in string", at: 1 + k, c: c}
			}
		}
		v, f := parseDecimal(inner, exp, limit, allowNeg, false)
		if f.at >= 0 {
			f.at++ // report offsets within the whole value
		}
		return v, f
	case 'n':
		return 0, fail(ErrInvalidAmount, "null is not an amount")
	case 't', 'f':
		return 0, fail(ErrInvalidAmount, "a boolean is not an amount")
	case '{':
		return 0, fail(ErrInvalidAmount, "an object is not an amount")
	case '[':
		return 0, fail(ErrInvalidAmount, "an array is not an amount")
	}
	return parseDecimal(s, exp, limit, allowNeg, true)
}

// parseDecimal parses ["-"] digits ["." digits] into a value scaled by
// 10^exp. It first checks the whole syntax, so that "-1x" is reported as
// malformed rather than negative, then accumulates with a bound check after
// every digit: the running value never exceeds limit (≤ 10^15), so v*10+9
// cannot overflow. jsonNumber adds the JSON rule against leading zeros.
func parseDecimal[T ~string | ~[]byte](s T, exp int, limit int64, allowNeg, jsonNumber bool) (int64, failure) {
	n := len(s)
	if n == 0 {
		return 0, fail(ErrInvalidAmount, "empty value")
	}
	i := 0
	neg := false
	switch s[0] {
	case '-':
		neg = true
		i++
	case '+':
		return 0, fail(ErrInvalidAmount, "leading '+' is not accepted")
	}
	intStart := i
	for i < n && isDigit(s[i]) {
		i++
	}
	intEnd := i
	if intEnd == intStart {
		if i < n && s[i] == '.' {
			return 0, fail(ErrInvalidAmount, "digits required before '.'")
		}
		if i < n {
			return 0, unexpected(s[i], i)
		}
		return 0, fail(ErrInvalidAmount, "no digits")
	}
	if jsonNumber && intEnd-intStart > 1 && s[intStart] == '0' {
		return 0, fail(ErrInvalidAmount, "leading zero in JSON number")
	}
	fracStart, fracEnd := n, n
	if i < n && s[i] == '.' {
		i++
		fracStart = i
		for i < n && isDigit(s[i]) {
			i++
		}
		fracEnd = i
		if fracEnd == fracStart {
			return 0, fail(ErrInvalidAmount, "digits required after '.'")
		}
	}
	if i < n {
		return 0, unexpected(s[i], i)
	}
	if neg && !allowNeg {
		return 0, fail(ErrNegative, "negative values are not accepted here")
	}
	for k := fracStart + exp; k < fracEnd; k++ {
		if s[k] != '0' {
			return 0, fail(ErrTooManyDecimals, "more significant decimals than the currency has")
		}
	}
	var v int64
	for k := intStart; k < intEnd; k++ {
		v = v*10 + int64(s[k]-'0')
		if v > limit {
			return 0, fail(ErrTooLarge, "magnitude above the limit")
		}
	}
	for k := range exp {
		v *= 10
		if p := fracStart + k; p < fracEnd {
			v += int64(s[p] - '0')
		}
		if v > limit {
			return 0, fail(ErrTooLarge, "magnitude above the limit")
		}
	}
	if neg {
		v = -v
	}
	return v, failure{at: -1}
}

func unexpected(c byte, at int) failure {
	switch {
	case c == 'e' || c == 'E':
		return failure{err: ErrInvalidAmount, detail: "exponent notation is not accepted:", at: at, c: c}
	case isJSONSpace(c):
		return failure{err: ErrInvalidAmount, detail: "whitespace is not accepted:", at: at, c: c}
	case c == ',':
		return failure{err: ErrInvalidAmount, detail: "digit grouping is not accepted:", at: at, c: c}
	}
	return failure{err: ErrInvalidAmount, detail: "unexpected character", at: at, c: c}
}
