package money

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors. Every error of this package wraps exactly one of them
// together with what was being parsed, so callers test with errors.Is and
// show Error() to people.
var (
	// ErrUnknownCurrency: the code is not an active ISO 4217 currency, or a
	// hand-built Currency has an exponent outside 0..15.
	ErrUnknownCurrency = errors.New("unknown currency")
	// ErrInvalidAmount: the input does not follow the accepted grammar (see
	// the package documentation), or an arithmetic argument is out of its
	// domain (a denominator that is not positive).
	ErrInvalidAmount = errors.New("invalid amount")
	// ErrTooManyDecimals: the fraction has a non-zero digit beyond the
	// currency's exponent (or beyond two decimals for a rate).
	ErrTooManyDecimals = errors.New("too many decimals")
	// ErrNegative: a minus sign where the caller does not allow negatives.
	ErrNegative = errors.New("negative amount")
	// ErrTooLarge: the magnitude exceeds MaxMinor (or 100000 % for a rate),
	// or an arithmetic result does not fit in int64.
	ErrTooLarge = errors.New("amount too large")
)

// MaxMinor is the largest magnitude, in minor units, that Parse and ParseJSON
// accept: 10^13 USD, far beyond any real order, and small enough that the
// product of two such values fits in 128 bits and any sum of a few thousand of
// them fits in int64.
const MaxMinor int64 = 1e15

// Amount is an exact amount in minor units of a currency: Minor 1050 with
// Currency "USD" is 10.50 US dollars.
type Amount struct {
	Minor    int64  `json:"minor"`
	Currency string `json:"currency"`
}

// String renders the amount for people and logs as its decimal value and
// code, "10.00 USD", "-0.500 KWD", "1000 JPY". Withdrawn codes still render
// with their exponent; a code this package does not know renders its raw
// minor units, "1050 minor units of XYZ", rather than guess a decimal point.
func (a Amount) String() string {
	cur, err := LookupAnyCurrency(a.Currency)
	if err != nil {
		return strconv.FormatInt(a.Minor, 10) + " minor units of " + strconv.Quote(a.Currency)
	}
	return string(AppendFormat(nil, a.Minor, cur)) + " " + cur.Code
}

// AmountFromJSON parses a raw JSON amount (see ParseJSON) in the currency
// named by code, which is matched case-insensitively and defaults to
// DefaultCurrency when empty. The returned Amount carries the canonical
// upper-case code.
func AmountFromJSON(raw []byte, code string, allowNegative bool) (Amount, error) {
	if code == "" {
		code = DefaultCurrency
	}
	cur, err := LookupCurrency(code)
	if err != nil {
		return Amount{}, fmt.Errorf("parse amount: %w", err)
	}
	minor, err := ParseJSON(raw, cur, allowNegative)
	if err != nil {
		return Amount{}, err
	}
	return Amount{Minor: minor, Currency: cur.Code}, nil
}

// quote renders untrusted input for an error message, cut short so that a
// megabyte of digits does not end up in a log line.
func quote[T ~string | ~[]byte](s T) string {
	const keep = 40
	if len(s) > keep {
		return strconv.Quote(string(s[:keep])) + "..."
	}
	return strconv.Quote(string(s))
}
