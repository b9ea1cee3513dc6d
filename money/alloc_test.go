//go:build !race

// The race detector's instrumentation changes allocation counts, so this
// guard runs only in the plain build (`go test ./money/`).

package money

import "testing"

// TestHotPathDoesNotAllocate guards the calls the edge makes per conversion:
// they must not allocate when they succeed.
func TestHotPathDoesNotAllocate(t *testing.T) {
	num, str := []byte(`1299.90`), []byte(`"1299.90"`)
	buf := make([]byte, 0, 32)
	var sink int64
	tests := []struct {
		name string
		f    func()
	}{
		{"ParseJSON number", func() { v, _ := ParseJSON(num, usd, false); sink += v }},
		{"ParseJSON string", func() { v, _ := ParseJSON(str, usd, false); sink += v }},
		{"Parse", func() { v, _ := Parse("1299.90", usd, false); sink += v }},
		{"ParseRate", func() { v, _ := ParseRate("12.5"); sink += v }},
		{"LookupCurrency", func() { c, _ := LookupCurrency("eur"); sink += int64(c.Exponent) }},
		{"Percent", func() { sink += Percent(1234567, 1250) }},
		{"Ratio", func() { sink += Ratio(1234567, 3, 7) }},
		{"AppendFormat", func() { buf = AppendFormat(buf[:0], -129990, usd) }},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.f); got != 0 {
			t.Errorf("%s: %v allocations per call, want 0", tt.name, got)
		}
	}
	_ = sink
}
