package money

import "testing"

func BenchmarkParseJSON(b *testing.B) {
	for _, bc := range []struct {
		name string
		raw  []byte
		cur  Currency
	}{
		{"number", []byte(`1299.90`), usd},
		{"string", []byte(`"1299.90"`), usd},
		{"trailing-zeros", []byte(`1299.9000`), usd},
		{"jpy", []byte(`129990`), jpy},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseJSON(bc.raw, bc.cur, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("1299.90", usd, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPercent(b *testing.B) {
	b.ReportAllocs()
	var sink int64
	for b.Loop() {
		sink += Percent(1234567, 1250)
	}
	_ = sink
}

func BenchmarkRatio(b *testing.B) {
	b.ReportAllocs()
	var sink int64
	for b.Loop() {
		sink += Ratio(MaxMinor-1, 333333333333, MaxMinor)
	}
	_ = sink
}

func BenchmarkAppendFormat(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 32)
	for b.Loop() {
		buf = AppendFormat(buf[:0], 129990, usd)
	}
}

func BenchmarkLookupCurrency(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LookupCurrency("eur"); err != nil {
			b.Fatal(err)
		}
	}
}
