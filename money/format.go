package money

import "strconv"

// Format renders minor units of cur as a decimal string with exactly
// cur.Exponent decimals and no grouping: 1000 USD is "10.00", -50 USD is
// "-0.50", 1000 JPY is "1000", 1 KWD is "0.001". The result is valid JSON
// number text and Parse(Format(m, cur), cur, true) == m for every m within
// ±MaxMinor. A negative exponent is treated as 0.
func Format(minor int64, cur Currency) string {
	var buf [48]byte
	return string(AppendFormat(buf[:0], minor, cur))
}

// AppendFormat appends Format(minor, cur) to dst and returns the extended
// buffer; it does not allocate when dst has room.
func AppendFormat(dst []byte, minor int64, cur Currency) []byte {
	u := uint64(minor)
	if minor < 0 {
		dst = append(dst, '-')
		u = -u // two's complement: also right for math.MinInt64
	}
	var buf [20]byte
	digits := strconv.AppendUint(buf[:0], u, 10)
	exp := max(cur.Exponent, 0)
	if exp == 0 {
		return append(dst, digits...)
	}
	if len(digits) <= exp {
		dst = append(dst, '0', '.')
		for range exp - len(digits) {
			dst = append(dst, '0')
		}
		return append(dst, digits...)
	}
	cut := len(digits) - exp
	dst = append(dst, digits[:cut]...)
	dst = append(dst, '.')
	return append(dst, digits[cut:]...)
}
