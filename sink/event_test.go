package sink

import (
	"bytes"
	"testing"
)

func TestClickRoundTrip(t *testing.T) {
	c := Click{V: ClickVersion, ID: "06h0rq6mdaqxf1s91rbp33a63nvdrjf5", TS: 1, MerchantID: "m", Source: SourceRedirect,
		Subs: [5]string{"a", "", "c"}, UTM: map[string]string{"utm_source": "x"}, Bot: true}
	b, err := AppendClick([]byte("prefix"), &c)
	if err != nil || !bytes.HasPrefix(b, []byte("prefix")) {
		t.Fatalf("AppendClick = %q, %v", b, err)
	}
	got, err := DecodeClick(b[len("prefix"):])
	if err != nil || got.ID != c.ID || got.Subs != c.Subs || got.UTM["utm_source"] != "x" || !got.Bot {
		t.Errorf("round trip = %+v, %v", got, err)
	}
	for _, bad := range []string{`{"v":2,"id":"x","merchant_id":"m"}`, `{"v":1,"merchant_id":"m"}`, `{"v":1,"id":"x"}`, `nope`} {
		if _, err := DecodeClick([]byte(bad)); err == nil {
			t.Errorf("DecodeClick(%s) accepted", bad)
		}
	}
}

// FuzzDecodeClick: whatever reaches the worker, decoding never panics, and an
// accepted click re-encodes to a click that decodes equal.
func FuzzDecodeClick(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"06h0rq6mdaqxf1s91rbp33a63nvdrjf5","ts":1,"source":"redirect","merchant_id":"demo","subs":["a","","","",""]}`))
	f.Add([]byte(`{"v":1,"id":"x","merchant_id":"m","utm":{"utm_source":"y"}}`))
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeClick(data)
		if err != nil {
			return
		}
		b, err := AppendClick(nil, &c)
		if err != nil {
			t.Fatalf("accepted click does not encode: %v", err)
		}
		c2, err := DecodeClick(b)
		if err != nil || c2.ID != c.ID || c2.MerchantID != c.MerchantID || c2.Subs != c.Subs || c2.TS != c.TS {
			t.Fatalf("re-decode = %+v, %v; want %+v", c2, err, c)
		}
	})
}
