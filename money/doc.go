// Package money holds exact amounts: integer minor units of an ISO 4217
// currency, parsed from decimal text and JSON without ever passing through a
// float, and commissions computed with exactly one rounding.
//
// # Why no floats
//
// A binary float cannot represent 0.10 or 99.99; a JSON decoder that reads
// "99.99" into a float64 and multiplies by 100 may store 9998. One lost cent
// per conversion is a reconciliation failure a merchant or partner will find,
// so amounts are parsed digit by digit into int64 minor units (cents for USD,
// yen for JPY, fils for KWD) and every later operation is integer arithmetic.
// Percentages are basis points (1 bp = 0.01 %), also integers.
//
// # Accepted input
//
// Parse reads decimal text with this grammar (no other byte is accepted):
//
//	amount   = [ "-" ] integer [ "." fraction ]
//	integer  = digit { digit }
//	fraction = digit { digit }
//
// So "99", "99.9", "99.90", "0.5" and "-5.00" (the sign only when the caller
// allows negatives) are accepted; "", "+5", ".5", "5.", "1e3", "0x10",
// "1,000", " 5", "NaN" and "Infinity" are not. A fraction may have more
// digits than the currency's exponent only if every extra digit is zero:
// "99.000" in USD is 9900, but "99.001" is ErrTooManyDecimals. Magnitudes
// above MaxMinor minor units are ErrTooLarge.
//
// ParseJSON reads one raw JSON value, as found in a json.RawMessage: either a
// number token, which must also be valid JSON (so no leading zeros such as
// 007), or a string holding the grammar above (leading zeros allowed,
// escapes and surrounding spaces inside the quotes not). Whitespace around the
// value is ignored; null, true, false, objects and arrays are rejected.
//
// Every error wraps one of the sentinels ErrInvalidAmount, ErrTooManyDecimals,
// ErrNegative, ErrTooLarge or ErrUnknownCurrency, so a caller maps it to a
// stable API error code with errors.Is.
//
// # Rounding
//
// Percent and Ratio compute x·num/den exactly in 128 bits and round once, half
// away from zero: 0.5 cent becomes 1 cent and -0.5 cent becomes -1 cent. This
// is the rule of common accounting practice and of spreadsheet ROUND(), so a
// partner who checks a commission by hand gets the same cent; and it is
// symmetric, so the commission of a refund is exactly the negation of the
// commission of the sale. Banker's rounding (half to even) is less biased
// over many sums, but each commission here is shown to a person on its own.
//
// Partial refunds claw back commission with ProportionalRefund, which rounds
// the cumulative refunded share rather than each part, so the parts always add
// up to what one full refund would take back and never exceed the commission.
package money
