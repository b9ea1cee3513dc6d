package money_test

import (
	"fmt"

	"github.com/clickedge/clickedge/money"
)

func ExampleParseJSON() {
	usd, _ := money.LookupCurrency("usd")
	for _, raw := range []string{`99.90`, `"99.99"`, `99.000`, `99.001`, `1e2`} {
		minor, err := money.ParseJSON([]byte(raw), usd, false)
		fmt.Println(minor, err)
	}
	// Output:
	// 9990 <nil>
	// 9999 <nil>
	// 9900 <nil>
	// 0 parse JSON amount "99.001" USD: too many decimals: more significant decimals than the currency has
	// 0 parse JSON amount "1e2" USD: invalid amount: exponent notation is not accepted: 'e' at offset 1
}

func ExamplePercent() {
	rate, _ := money.ParseRate("12.5")      // 1250 bp
	fmt.Println(money.Percent(1999, rate))  // 249.875 cents
	fmt.Println(money.Percent(-1999, rate)) // the refund mirrors the sale
	fmt.Println(money.Percent(25, 1000))    // 2.5: half away from zero
	// Output:
	// 250
	// -250
	// 3
}

func ExampleProportionalRefund() {
	// A 10.00 sale earned 1.01 commission; it is refunded in three parts.
	const sale, commission = 1000, 101
	var refunded, clawed int64
	for _, part := range []int64{333, 333, 334} {
		c, _ := money.ProportionalRefund(commission, refunded, part, sale)
		refunded += part
		clawed += c
		fmt.Println(c)
	}
	fmt.Println(clawed == commission)
	// Output:
	// 34
	// 33
	// 34
	// true
}

func ExampleAmount_String() {
	fmt.Println(money.Amount{Minor: 1050, Currency: "USD"})
	fmt.Println(money.Amount{Minor: -500, Currency: "KWD"})
	fmt.Println(money.Amount{Minor: 1000, Currency: "JPY"})
	// Output:
	// 10.50 USD
	// -0.500 KWD
	// 1000 JPY
}
