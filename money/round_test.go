package money

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestPercent(t *testing.T) {
	tests := []struct {
		minor, bps, want int64
	}{
		{10000, 1000, 1000},     // 10 % of 100.00
		{5, 1000, 1},            // 0.5 rounds away from zero
		{-5, 1000, -1},          // and symmetrically
		{4, 1000, 0},            // 0.4
		{14, 1000, 1},           // 1.4
		{15, 1000, 2},           // 1.5
		{25, 1000, 3},           // 2.5: half away from zero, not half to even
		{-25, 1000, -3},         // -2.5
		{35, 1000, 4},           // 3.5
		{5000, 1, 1},            // 0.5
		{4999, 1, 0},            // 0.4999
		{9999, 1, 1},            // 0.9999
		{1234567, 1250, 154321}, // 154320.875
		{1999, 1250, 250},       // 249.875
		{1996, 1250, 250},       // 249.5
		{1995, 1250, 249},       // 249.375
		{12345, 10000, 12345},   // 100 %
		{12345, 0, 0},           // 0 %
		{0, 1_000_000, 0},       // 10000 % of nothing
		{12345, -1000, -1235},   // negative rate, -1234.5
		{-12345, -1000, 1235},   // both negative
		{MaxMinor, 1_000_000, 1e17},
		{-MaxMinor, 1_000_000, -1e17},
		{MaxMinor, MaxRate, 1e18},
		{MaxMinor, 1, 1e11},
		{MaxMinor - 1, 1, 1e11}, // 99999999999.9999
		{1, 1_000_000, 100},     // 10000 % of one cent
		{1, 4999, 0},            // 0.4999
		{1, 5000, 1},            // 0.5
		{-1, 5000, -1},          // -0.5
		{3, 3333, 1},            // 0.9999
		{7, 7142, 5},            // 4.9994
	}
	for _, tt := range tests {
		if got := Percent(tt.minor, tt.bps); got != tt.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", tt.minor, tt.bps, got, tt.want)
		}
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		minor, num, den, want int64
	}{
		{100, 1, 3, 33},
		{200, 1, 3, 67},
		{-200, 1, 3, -67},
		{1, 1, 2, 1},
		{-1, 1, 2, -1},
		{3, 1, 2, 2},
		{5, 1, 2, 3},
		{7, 0, 5, 0},
		{0, 7, 5, 0},
		{1000, 250, 1000, 250},
		{999, 1, 2, 500},
		{MaxMinor, MaxMinor, MaxMinor, MaxMinor},
		{MaxMinor, MaxMinor - 1, MaxMinor, MaxMinor - 1},
		{MaxMinor, 1, MaxMinor, 1},
		{MaxMinor - 1, 1, MaxMinor, 1}, // 0.999999999999999
		{MaxMinor, MaxMinor / 2, MaxMinor, MaxMinor / 2},
		{math.MaxInt64, math.MaxInt64, math.MaxInt64, math.MaxInt64},
		{math.MinInt64, 1, 1, math.MinInt64},
		{math.MinInt64, math.MaxInt64, math.MaxInt64, math.MinInt64},
		{math.MaxInt64, 1, math.MaxInt64, 1},
		{math.MaxInt64, 1, 2, 1 << 62}, // 4611686018427387903.5
	}
	for _, tt := range tests {
		if got := Ratio(tt.minor, tt.num, tt.den); got != tt.want {
			t.Errorf("Ratio(%d, %d, %d) = %d, want %d", tt.minor, tt.num, tt.den, got, tt.want)
		}
	}
}

func TestMulDivErrors(t *testing.T) {
	tests := []struct {
		x, num, den int64
		err         error
	}{
		{1, 1, 0, ErrInvalidAmount},
		{1, 1, -1, ErrInvalidAmount},
		{math.MaxInt64, 2, 1, ErrTooLarge},
		{math.MinInt64, -1, 1, ErrTooLarge},
		{math.MinInt64, 2, 1, ErrTooLarge},
		{math.MaxInt64, math.MaxInt64, 1, ErrTooLarge},
		{MaxMinor, MaxMinor, 1, ErrTooLarge},
		{math.MaxInt64, 3, 2, ErrTooLarge},
	}
	for _, tt := range tests {
		got, err := MulDiv(tt.x, tt.num, tt.den)
		if sentinelOf(err) != tt.err {
			t.Errorf("MulDiv(%d, %d, %d) = %d, %v, want error %v", tt.x, tt.num, tt.den, got, err, tt.err)
		}
	}
}

func TestRatioPanicsOutsideDomain(t *testing.T) {
	tests := []struct {
		name string
		f    func()
	}{
		{"Ratio den 0", func() { Ratio(1, 1, 0) }},
		{"Ratio overflow", func() { Ratio(math.MaxInt64, 2, 1) }},
		{"Percent overflow", func() { Percent(math.MaxInt64, math.MaxInt64) }},
	}
	for _, tt := range tests {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: did not panic", tt.name)
				}
			}()
			tt.f()
		}()
	}
}

func TestProportionalRefund(t *testing.T) {
	tests := []struct {
		commission, before, now, total int64
		want                           int64
		err                            error
	}{
		{1000, 0, 100, 100, 1000, nil},
		{1000, 0, 50, 100, 500, nil},
		{1000, 50, 50, 100, 500, nil},
		{1000, 0, 200, 100, 1000, nil}, // refund above the sale counts as the sale
		{1000, 150, 10, 100, 0, nil},   // already fully refunded
		{1000, 50, 100, 100, 500, nil}, // only the rest is left
		{1000, 0, 0, 100, 0, nil},
		{-1000, 0, 50, 100, -500, nil},
		{1, 0, 1, 2, 1, nil}, // first half takes the rounded-up cent
		{1, 1, 1, 2, 0, nil}, // second half takes nothing: total stays 1
		{1000, math.MaxInt64, math.MaxInt64, 100, 0, nil},
		{1000, 0, math.MaxInt64, 100, 1000, nil},
		{math.MaxInt64, 0, 1, 1, math.MaxInt64, nil},
		{1000, 0, 1, 0, 0, ErrInvalidAmount},
		{1000, 0, 1, -5, 0, ErrInvalidAmount},
		{1000, -1, 1, 100, 0, ErrNegative},
		{1000, 0, -1, 100, 0, ErrNegative},
	}
	for _, tt := range tests {
		got, err := ProportionalRefund(tt.commission, tt.before, tt.now, tt.total)
		if sentinelOf(err) != tt.err || (err == nil) != (tt.err == nil) {
			t.Errorf("ProportionalRefund(%d, %d, %d, %d) error = %v, want %v", tt.commission, tt.before, tt.now, tt.total, err, tt.err)
			continue
		}
		if got != tt.want {
			t.Errorf("ProportionalRefund(%d, %d, %d, %d) = %d, want %d", tt.commission, tt.before, tt.now, tt.total, got, tt.want)
		}
	}
}

func TestPropertyMulDivMatchesBig(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	pick := func() int64 {
		switch r.IntN(4) {
		case 0:
			return r.Int64N(2*MaxMinor+1) - MaxMinor
		case 1:
			return r.Int64N(20001) - 10000
		case 2:
			return []int64{0, 1, -1, MaxMinor, -MaxMinor, math.MaxInt64, math.MinInt64}[r.IntN(7)]
		}
		return int64(r.Uint64())
	}
	for range 50000 {
		x, num, den := pick(), pick(), pick()
		if r.IntN(2) == 0 {
			den = r.Int64N(MaxMinor) + 1
		}
		got, err := MulDiv(x, num, den)
		want, werr := oracleMulDiv(x, num, den)
		if sentinelOf(err) != werr || got != want {
			t.Fatalf("MulDiv(%d, %d, %d) = %d, %v; math/big says %d, %v", x, num, den, got, err, want, werr)
		}
	}
}

func TestPropertyRatioComplement(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	for range 50000 {
		x := randomMinor(r)
		b := r.Int64N(MaxMinor) + 1
		if r.IntN(2) == 0 {
			b = r.Int64N(100) + 1
		}
		a := r.Int64N(b + 1)
		sum := Ratio(x, a, b) + Ratio(x, b-a, b)
		if d := sum - x; d < -1 || d > 1 {
			t.Fatalf("Ratio(%d, %d, %d) + Ratio(%d, %d, %d) = %d, more than 1 away from %d", x, a, b, x, b-a, b, sum, x)
		}
	}
}

func TestPropertyPercentSymmetric(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 17))
	for range 50000 {
		x := randomMinor(r)
		bps := r.Int64N(MaxRate + 1)
		p := Percent(x, bps)
		if got := Percent(-x, bps); got != -p {
			t.Fatalf("Percent(%d, %d) = %d, but Percent(%d, %d) = %d", -x, bps, got, x, bps, p)
		}
		if got := Percent(x, -bps); got != -p {
			t.Fatalf("Percent(%d, %d) = %d, but Percent(%d, %d) = %d", x, -bps, got, x, bps, p)
		}
		if x >= 0 && bps <= bpsPerWhole && (p < 0 || p > x) {
			t.Fatalf("Percent(%d, %d) = %d, outside [0, %d]", x, bps, p, x)
		}
	}
}

// TestPropertyPartialRefunds refunds random sales in random pieces and
// checks that the clawed-back commission never exceeds the commission, that
// every piece has the commission's sign, and that the pieces add up to what
// one refund of the same sum would take.
func TestPropertyPartialRefunds(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 23))
	for range 20000 {
		total := r.Int64N(MaxMinor) + 1
		if r.IntN(2) == 0 {
			total = r.Int64N(1000) + 1
		}
		commission := Percent(total, r.Int64N(bpsPerWhole+1))
		if r.IntN(4) == 0 {
			commission = -commission
		}
		pieces := r.IntN(12) + 1
		var refunded, clawed int64
		for range pieces {
			now := r.Int64N(total/int64(pieces) + 2) // sometimes overshoots total in sum
			part, err := ProportionalRefund(commission, refunded, now, total)
			if err != nil {
				t.Fatal(err)
			}
			if (commission >= 0 && part < 0) || (commission <= 0 && part > 0) {
				t.Fatalf("piece %d of commission %d has the wrong sign", part, commission)
			}
			refunded += now
			clawed += part
			if abs(clawed) > abs(commission) {
				t.Fatalf("clawed back %d of commission %d (sale %d, refunded %d)", clawed, commission, total, refunded)
			}
			if want := Ratio(commission, min(refunded, total), total); clawed != want {
				t.Fatalf("pieces add up to %d, one refund of %d would take %d", clawed, refunded, want)
			}
		}
		rest, err := ProportionalRefund(commission, refunded, total, total)
		if err != nil {
			t.Fatal(err)
		}
		if clawed+rest != commission {
			t.Fatalf("full refund in pieces took %d, want the whole commission %d", clawed+rest, commission)
		}
	}
}
