package money

import (
	"errors"
	"math"
	"math/big"
	"regexp"
)

// This file holds a second, deliberately different implementation of the
// parsing and rounding rules (regular expressions and math/big), against
// which property and fuzz tests compare the real one.

var (
	textGrammar = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)
	jsonGrammar = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)
	sentinels   = []error{ErrUnknownCurrency, ErrInvalidAmount, ErrTooManyDecimals, ErrNegative, ErrTooLarge}
)

// oracleDecimal returns what parsing text must give: the value scaled by
// 10^exp, or the sentinel it must fail with. The checks run in the order
// the package documents: syntax, sign, decimals, size.
func oracleDecimal(text string, exp int, limit int64, allowNeg, jsonNumber bool) (int64, error) {
	grammar := textGrammar
	if jsonNumber {
		grammar = jsonGrammar
	}
	if !grammar.MatchString(text) {
		return 0, ErrInvalidAmount
	}
	if text[0] == '-' && !allowNeg {
		return 0, ErrNegative
	}
	r, ok := new(big.Rat).SetString(text)
	if !ok {
		panic("oracle: big.Rat rejected grammar-valid text " + text)
	}
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil)
	r.Mul(r, new(big.Rat).SetInt(scale))
	if !r.IsInt() {
		return 0, ErrTooManyDecimals
	}
	v := r.Num()
	if new(big.Int).Abs(v).Cmp(big.NewInt(limit)) > 0 {
		return 0, ErrTooLarge
	}
	return v.Int64(), nil
}

// oracleJSON is oracleDecimal for a raw JSON value.
func oracleJSON(raw []byte, exp int, limit int64, allowNeg bool) (int64, error) {
	s := string(raw)
	for len(s) > 0 && isOracleSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isOracleSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[0] == '"' {
		if len(s) < 2 || s[len(s)-1] != '"' {
			return 0, ErrInvalidAmount
		}
		inner := s[1 : len(s)-1]
		for i := 0; i < len(inner); i++ {
			if c := inner[i]; c == '"' || c == '\\' || c < 0x20 {
				return 0, ErrInvalidAmount
			}
		}
		return oracleDecimal(inner, exp, limit, allowNeg, false)
	}
	return oracleDecimal(s, exp, limit, allowNeg, true)
}

func isOracleSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// oracleMulDiv computes x*num/den rounded half away from zero with math/big.
func oracleMulDiv(x, num, den int64) (int64, error) {
	if den <= 0 {
		return 0, ErrInvalidAmount
	}
	p := new(big.Int).Mul(big.NewInt(x), big.NewInt(num))
	neg := p.Sign() < 0
	p.Abs(p)
	d := big.NewInt(den)
	q, r := new(big.Int).QuoRem(p, d, new(big.Int))
	if new(big.Int).Lsh(r, 1).Cmp(d) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if neg {
		q.Neg(q)
	}
	if q.Cmp(big.NewInt(math.MaxInt64)) > 0 || q.Cmp(big.NewInt(math.MinInt64)) < 0 {
		return 0, ErrTooLarge
	}
	return q.Int64(), nil
}

// sentinelOf returns the one sentinel err wraps, or nil.
func sentinelOf(err error) error {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}
