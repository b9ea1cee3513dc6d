package money

import (
	"fmt"
	"math"
	"math/bits"
)

// bpsPerWhole is the number of basis points in 100 %.
const bpsPerWhole = 10_000

// Percent returns bps basis points of minor (1 bp = 0.01 %, so 1000 is 10 %)
// in the same minor units, rounded once, half away from zero: 10 % of 5 cents
// is 1 cent (0.5 rounds up) and of -5 cents is -1 cent, so
// Percent(-x, b) == -Percent(x, b) and a refund's commission mirrors the
// sale's exactly. The product is formed in 128 bits, so it never overflows
// for |minor| <= MaxMinor and |bps| <= MaxRate; Percent panics only if the
// result itself cannot be an int64, which needs inputs far outside those
// bounds (use MulDiv to get an error instead).
func Percent(minor, bps int64) int64 {
	v, err := MulDiv(minor, bps, bpsPerWhole)
	if err != nil {
		panic(fmt.Sprintf("money.Percent(%d, %d): %v", minor, bps, err))
	}
	return v
}

// Ratio returns minor * num / den with one rounding, half away from zero;
// it is how a proportional share is taken, e.g. the commission of a partial
// refund is Ratio(commission, refunded, amount). The product is formed in
// 128 bits, so it is exact for any int64 inputs whose result fits, and in
// particular for |minor|, |num|, den <= MaxMinor with |num| <= den. Ratio
// panics if den <= 0 or the result does not fit in int64; call MulDiv
// where those can come from outside input.
func Ratio(minor, num, den int64) int64 {
	v, err := MulDiv(minor, num, den)
	if err != nil {
		panic(fmt.Sprintf("money.Ratio(%d, %d, %d): %v", minor, num, den, err))
	}
	return v
}

// MulDiv is Ratio that reports a denominator that is not positive
// (ErrInvalidAmount) or a result outside int64 (ErrTooLarge) as an error
// instead of panicking. The result is x*num/den rounded half away from zero,
// computed exactly with a 128-bit intermediate.
func MulDiv(x, num, den int64) (int64, error) {
	if den <= 0 {
		return 0, fmt.Errorf("compute %d*%d/%d: %w: denominator must be positive", x, num, den, ErrInvalidAmount)
	}
	neg := (x < 0) != (num < 0)
	hi, lo := bits.Mul64(abs(x), abs(num))
	d := uint64(den)
	// Long division of the 128-bit product in two 64-bit steps: hi%d < d,
	// so the second Div64 cannot overflow whatever the size of hi.
	qhi, r := hi/d, hi%d
	qlo, rem := bits.Div64(r, lo, d)
	// rem >= d-rem is 2*rem >= d without the overflow of 2*rem: the
	// fractional part is at least one half, so round the magnitude up.
	if rem >= d-rem {
		var carry uint64
		qlo, carry = bits.Add64(qlo, 1, 0)
		qhi += carry
	}
	limit := uint64(math.MaxInt64)
	if neg {
		limit++ // math.MinInt64 has no positive counterpart but is a valid result
	}
	if qhi != 0 || qlo > limit {
		return 0, fmt.Errorf("compute %d*%d/%d: %w: result does not fit in int64", x, num, den, ErrTooLarge)
	}
	if neg {
		return int64(-qlo), nil
	}
	return int64(qlo), nil
}

// ProportionalRefund returns the part of minor (a commission) to claw back
// when refunding more of a sale of total: refundedBefore was refunded
// earlier and refunding is refunded now. It rounds the cumulative share,
// Ratio(minor, refundedBefore+refunding, total) minus
// Ratio(minor, refundedBefore, total), instead of each part on its own, so
// however a sale is refunded in pieces the clawbacks add up to exactly what
// one refund of the same sum would take, never more than minor, and exactly
// minor once total is refunded. (Rounding each piece alone would not: two
// refunds of half of a sale that earned 1 cent would each take back 1 cent.)
// Cumulative refunds above total count as total. total must be positive
// (ErrInvalidAmount) and both refund amounts non-negative (ErrNegative).
func ProportionalRefund(minor, refundedBefore, refunding, total int64) (int64, error) {
	if total <= 0 {
		return 0, fmt.Errorf("proportional refund of %d: %w: sale total %d must be positive", minor, ErrInvalidAmount, total)
	}
	if refundedBefore < 0 || refunding < 0 {
		return 0, fmt.Errorf("proportional refund of %d: %w: refunded %d then %d", minor, ErrNegative, refundedBefore, refunding)
	}
	before := min(refundedBefore, total)
	after := total
	if refunding < total-before {
		after = before + refunding
	}
	// Both shares have |num| <= den, so each is at most |minor| and MulDiv
	// cannot fail here.
	a, err := MulDiv(minor, after, total)
	if err != nil {
		return 0, fmt.Errorf("proportional refund: %w", err)
	}
	b, err := MulDiv(minor, before, total)
	if err != nil {
		return 0, fmt.Errorf("proportional refund: %w", err)
	}
	return a - b, nil
}

// abs returns |x| as uint64, which is exact also for math.MinInt64.
func abs(x int64) uint64 {
	if x < 0 {
		return -uint64(x)
	}
	return uint64(x)
}
