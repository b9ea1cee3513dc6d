package money

import (
	"fmt"
	"slices"
)

// Currency is an ISO 4217 alphabetic code with its minor-unit exponent: an
// amount of Currency is a count of 10^-Exponent units (Exponent 2 for USD
// cents, 0 for JPY, 3 for KWD fils).
type Currency struct {
	Code     string
	Exponent int
}

// DefaultCurrency is the currency of an amount sent without one.
const DefaultCurrency = "USD"

// maxExponent bounds the exponent Parse and ParseJSON accept from a
// hand-built Currency: with MaxMinor = 10^15 a larger exponent could only
// express amounts below one major unit. ISO 4217 itself goes up to 4.
const maxExponent = 15

// active is ISO 4217 List One (currencies and funds) as published by the
// maintenance agency on 2026-01-01 (amendments up to 180), sorted by code.
// Codes whose minor unit the list gives as "N.A." (XAG, XAU, XBA, XBB, XBC,
// XBD, XDR, XPD, XPT, XSU, XTS, XUA, XXX: precious metals, bond-market and
// accounting units, the test code and "no currency") are left out on purpose:
// they have no minor unit to count in, and no merchant pays a commission in
// troy ounces. MGA and MRU are listed with exponent 2, as ISO lists them,
// although their minor units are fifths.
var active = []Currency{
	{"AED", 2}, {"AFN", 2}, {"ALL", 2}, {"AMD", 2}, {"AOA", 2}, {"ARS", 2},
	{"AUD", 2}, {"AWG", 2}, {"AZN", 2}, {"BAM", 2}, {"BBD", 2}, {"BDT", 2},
	{"BHD", 3}, {"BIF", 0}, {"BMD", 2}, {"BND", 2}, {"BOB", 2}, {"BOV", 2},
	{"BRL", 2}, {"BSD", 2}, {"BTN", 2}, {"BWP", 2}, {"BYN", 2}, {"BZD", 2},
	{"CAD", 2}, {"CDF", 2}, {"CHE", 2}, {"CHF", 2}, {"CHW", 2}, {"CLF", 4},
	{"CLP", 0}, {"CNY", 2}, {"COP", 2}, {"COU", 2}, {"CRC", 2}, {"CUP", 2},
	{"CVE", 2}, {"CZK", 2}, {"DJF", 0}, {"DKK", 2}, {"DOP", 2}, {"DZD", 2},
	{"EGP", 2}, {"ERN", 2}, {"ETB", 2}, {"EUR", 2}, {"FJD", 2}, {"FKP", 2},
	{"GBP", 2}, {"GEL", 2}, {"GHS", 2}, {"GIP", 2}, {"GMD", 2}, {"GNF", 0},
	{"GTQ", 2}, {"GYD", 2}, {"HKD", 2}, {"HNL", 2}, {"HTG", 2}, {"HUF", 2},
	{"IDR", 2}, {"ILS", 2}, {"INR", 2}, {"IQD", 3}, {"IRR", 2}, {"ISK", 0},
	{"JMD", 2}, {"JOD", 3}, {"JPY", 0}, {"KES", 2}, {"KGS", 2}, {"KHR", 2},
	{"KMF", 0}, {"KPW", 2}, {"KRW", 0}, {"KWD", 3}, {"KYD", 2}, {"KZT", 2},
	{"LAK", 2}, {"LBP", 2}, {"LKR", 2}, {"LRD", 2}, {"LSL", 2}, {"LYD", 3},
	{"MAD", 2}, {"MDL", 2}, {"MGA", 2}, {"MKD", 2}, {"MMK", 2}, {"MNT", 2},
	{"MOP", 2}, {"MRU", 2}, {"MUR", 2}, {"MVR", 2}, {"MWK", 2}, {"MXN", 2},
	{"MXV", 2}, {"MYR", 2}, {"MZN", 2}, {"NAD", 2}, {"NGN", 2}, {"NIO", 2},
	{"NOK", 2}, {"NPR", 2}, {"NZD", 2}, {"OMR", 3}, {"PAB", 2}, {"PEN", 2},
	{"PGK", 2}, {"PHP", 2}, {"PKR", 2}, {"PLN", 2}, {"PYG", 0}, {"QAR", 2},
	{"RON", 2}, {"RSD", 2}, {"RUB", 2}, {"RWF", 0}, {"SAR", 2}, {"SBD", 2},
	{"SCR", 2}, {"SDG", 2}, {"SEK", 2}, {"SGD", 2}, {"SHP", 2}, {"SLE", 2},
	{"SOS", 2}, {"SRD", 2}, {"SSP", 2}, {"STN", 2}, {"SVC", 2}, {"SYP", 2},
	{"SZL", 2}, {"THB", 2}, {"TJS", 2}, {"TMT", 2}, {"TND", 3}, {"TOP", 2},
	{"TRY", 2}, {"TTD", 2}, {"TWD", 2}, {"TZS", 2}, {"UAH", 2}, {"UGX", 0},
	{"USD", 2}, {"USN", 2}, {"UYI", 0}, {"UYU", 2}, {"UYW", 4}, {"UZS", 2},
	{"VED", 2}, {"VES", 2}, {"VND", 0}, {"VUV", 0}, {"WST", 2}, {"XAD", 2},
	{"XAF", 0}, {"XCD", 2}, {"XCG", 2}, {"XOF", 0}, {"XPF", 0}, {"YER", 2},
	{"ZAR", 2}, {"ZMW", 2}, {"ZWG", 2},
}

// withdrawn are codes that left List One recently (moved to List Three). New
// input in them is refused, but amounts already stored in them must still
// render and replay, so LookupAnyCurrency knows them. A code is added here
// when it leaves List One and never removed.
var withdrawn = []Currency{
	{"ANG", 2}, // replaced by XCG, 2025
	{"BGN", 2}, // Bulgaria adopted the euro, 2026-01-01
	{"CUC", 2}, // withdrawn by Cuba, amendment 178
	{"HRK", 2}, // Croatia adopted the euro, 2023-01-01
	{"SLL", 2}, // redenominated to SLE
	{"ZWL", 2}, // replaced by ZWG, 2024
}

var (
	activeByCode = index(active)
	anyByCode    = index(append(slices.Clone(active), withdrawn...))
)

func index(list []Currency) map[string]Currency {
	m := make(map[string]Currency, len(list))
	for _, c := range list {
		m[c.Code] = c
	}
	return m
}

// LookupCurrency returns the active ISO 4217 currency with the given code,
// matched case-insensitively; the returned Code is upper case. A code that
// is not on the active list (including withdrawn codes and the "N.A." units
// such as XAU) is ErrUnknownCurrency.
func LookupCurrency(code string) (Currency, error) {
	if c, ok := lookup(activeByCode, code); ok {
		return c, nil
	}
	if c, ok := lookup(anyByCode, code); ok {
		return Currency{}, fmt.Errorf("look up currency %s: %w: %s is withdrawn from ISO 4217", quote(code), ErrUnknownCurrency, c.Code)
	}
	return Currency{}, fmt.Errorf("look up currency %s: %w", quote(code), ErrUnknownCurrency)
}

// LookupAnyCurrency is LookupCurrency that also knows recently withdrawn
// codes (ANG, BGN, CUC, HRK, SLL, ZWL). It exists to render and replay amounts
// stored while those codes were active; new input must use LookupCurrency.
func LookupAnyCurrency(code string) (Currency, error) {
	if c, ok := lookup(anyByCode, code); ok {
		return c, nil
	}
	return Currency{}, fmt.Errorf("look up currency %s: %w", quote(code), ErrUnknownCurrency)
}

// Currencies returns the active currencies, sorted by code. The slice is a
// copy the caller may keep or change.
func Currencies() []Currency {
	return slices.Clone(active)
}

// lookup upper-cases code on the stack so that a lookup does not allocate.
func lookup(m map[string]Currency, code string) (Currency, bool) {
	if len(code) != 3 {
		return Currency{}, false
	}
	var b [3]byte
	for i := range 3 {
		c := code[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b[i] = c
	}
	c, ok := m[string(b[:])]
	return c, ok
}

func checkExponent(cur Currency) error {
	if cur.Exponent < 0 || cur.Exponent > maxExponent {
		return fmt.Errorf("%w: currency %q has exponent %d, want 0..%d", ErrUnknownCurrency, cur.Code, cur.Exponent, maxExponent)
	}
	return nil
}
