package money

import (
	"errors"
	"testing"
)

func TestLookupCurrency(t *testing.T) {
	tests := []struct {
		in   string
		want Currency
		err  error
	}{
		{"USD", Currency{"USD", 2}, nil},
		{"usd", Currency{"USD", 2}, nil},
		{"uSd", Currency{"USD", 2}, nil},
		{"EUR", Currency{"EUR", 2}, nil},
		{"GBP", Currency{"GBP", 2}, nil},
		{"JPY", Currency{"JPY", 0}, nil},
		{"KRW", Currency{"KRW", 0}, nil},
		{"VND", Currency{"VND", 0}, nil},
		{"ISK", Currency{"ISK", 0}, nil},
		{"CLP", Currency{"CLP", 0}, nil},
		{"XOF", Currency{"XOF", 0}, nil},
		{"UYI", Currency{"UYI", 0}, nil},
		{"KWD", Currency{"KWD", 3}, nil},
		{"BHD", Currency{"BHD", 3}, nil},
		{"JOD", Currency{"JOD", 3}, nil},
		{"OMR", Currency{"OMR", 3}, nil},
		{"TND", Currency{"TND", 3}, nil},
		{"LYD", Currency{"LYD", 3}, nil},
		{"IQD", Currency{"IQD", 3}, nil},
		{"CLF", Currency{"CLF", 4}, nil},
		{"UYW", Currency{"UYW", 4}, nil},
		{"XCG", Currency{"XCG", 2}, nil},
		{"ZWG", Currency{"ZWG", 2}, nil},
		{"SLE", Currency{"SLE", 2}, nil},
		{"VED", Currency{"VED", 2}, nil},
		{"VES", Currency{"VES", 2}, nil},
		{"XAD", Currency{"XAD", 2}, nil},
		{"MGA", Currency{"MGA", 2}, nil},
		{"", Currency{}, ErrUnknownCurrency},
		{"US", Currency{}, ErrUnknownCurrency},
		{"USDD", Currency{}, ErrUnknownCurrency},
		{"USD ", Currency{}, ErrUnknownCurrency},
		{"U$D", Currency{}, ErrUnknownCurrency},
		{"ZZZ", Currency{}, ErrUnknownCurrency},
		{"XAU", Currency{}, ErrUnknownCurrency}, // minor unit N.A.
		{"XTS", Currency{}, ErrUnknownCurrency},
		{"XXX", Currency{}, ErrUnknownCurrency},
		{"BGN", Currency{}, ErrUnknownCurrency}, // withdrawn
		{"ANG", Currency{}, ErrUnknownCurrency},
		{"HRK", Currency{}, ErrUnknownCurrency},
	}
	for _, tt := range tests {
		got, err := LookupCurrency(tt.in)
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("LookupCurrency(%q) error = %v, want %v", tt.in, err, tt.err)
		}
		if got != tt.want {
			t.Errorf("LookupCurrency(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestLookupAnyCurrency(t *testing.T) {
	tests := []struct {
		in   string
		want Currency
		err  error
	}{
		{"usd", Currency{"USD", 2}, nil},
		{"bgn", Currency{"BGN", 2}, nil},
		{"HRK", Currency{"HRK", 2}, nil},
		{"ANG", Currency{"ANG", 2}, nil},
		{"XAU", Currency{}, ErrUnknownCurrency},
		{"", Currency{}, ErrUnknownCurrency},
	}
	for _, tt := range tests {
		got, err := LookupAnyCurrency(tt.in)
		if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
			t.Errorf("LookupAnyCurrency(%q) error = %v, want %v", tt.in, err, tt.err)
		}
		if got != tt.want {
			t.Errorf("LookupAnyCurrency(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestCurrencyTable(t *testing.T) {
	list := Currencies()
	// ISO 4217 List One of 2026-01-01 has 178 entries, 13 of them with minor
	// unit "N.A.", which this package leaves out.
	if got, want := len(list), 165; got != want {
		t.Errorf("len(Currencies()) = %d, want %d", got, want)
	}
	withdrawnCodes := map[string]bool{}
	for _, c := range withdrawn {
		withdrawnCodes[c.Code] = true
	}
	for i, c := range list {
		if len(c.Code) != 3 || c.Code[0] < 'A' || c.Code[0] > 'Z' || c.Code[1] < 'A' || c.Code[1] > 'Z' || c.Code[2] < 'A' || c.Code[2] > 'Z' {
			t.Errorf("code %q is not three upper-case letters", c.Code)
		}
		switch c.Exponent {
		case 0, 2, 3, 4:
		default:
			t.Errorf("%s exponent %d, want one of 0, 2, 3, 4", c.Code, c.Exponent)
		}
		if i > 0 && list[i-1].Code >= c.Code {
			t.Errorf("table not strictly sorted at %s after %s", c.Code, list[i-1].Code)
		}
		if withdrawnCodes[c.Code] {
			t.Errorf("%s is both active and withdrawn", c.Code)
		}
		got, err := LookupCurrency(c.Code)
		if err != nil || got != c {
			t.Errorf("LookupCurrency(%q) = %+v, %v, want %+v", c.Code, got, err, c)
		}
	}
	list[0].Exponent = 9
	if Currencies()[0].Exponent == 9 {
		t.Error("Currencies returned the package's own slice")
	}
}
