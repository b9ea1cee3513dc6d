package sink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
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

// benchClick is a redirect click as the edge records it.
func benchClick() *Click {
	return &Click{V: ClickVersion, ID: "06h0rq6mdaqxf1s91rbp33a63nvdrjf5", TS: 1_700_000_000_000, Edge: "edge-fra-1",
		Source: SourceRedirect, MerchantID: "demo", CampaignID: "spring", PartnerID: "p_alice", PartnerKey: "ALICE10",
		LinkCode: "alice", IP: "81.2.69.0", Country: "GB", City: "London",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
		Browser:   "Firefox", BrowserVersion: "120.0", OS: "Linux", Device: "desktop",
		Referrer:    "https://blog.example.org/post-3",
		Destination: "https://shop.example.com/spring?utm_source=bench&sub1=s3&click_id=06h0rq6mdaqxf1s91rbp33a63nvdrjf5",
		Subs:        [5]string{"s3"}, UTM: map[string]string{"utm_source": "bench"}}
}

// TestAppendClickMatchesJSON: the hand-written encoder writes exactly what
// encoding/json writes, so stored and shipped clicks keep their bytes.
func TestAppendClickMatchesJSON(t *testing.T) {
	odd := "a\"b\\c\x00\x1f\b\f\n\r\t<>&\x7f é \u2028\u2029 \xff\xfe 🎉"
	clicks := []*Click{
		{},
		{V: ClickVersion, ID: "x", MerchantID: "m"},
		benchClick(),
		{V: -3, ID: odd, TS: -1, Edge: odd, Source: odd, MerchantID: odd, CampaignID: odd, PartnerID: odd, PartnerKey: odd,
			LinkCode: odd, Orphan: true, PrevClickID: odd, IP: odd, Country: odd, Region: odd, City: odd, UserAgent: odd,
			Browser: odd, BrowserVersion: odd, OS: odd, Device: odd, Bot: true, BotReason: odd, NonUnique: true,
			Referrer: odd, LandingURL: odd, Destination: odd, Subs: [5]string{"", "", "", "", odd},
			UTM:         map[string]string{odd: odd, "utm_b": "", "utm_a": "1", "": "e", "Z": "z"},
			ScreenWidth: -1280, Forged: true, ReceivedAt: 42},
		{V: 1, ID: "i", MerchantID: "m", UTM: map[string]string{}},
	}
	big := map[string]string{}
	for i := range 40 {
		big[fmt.Sprintf("utm_%02d", 39-i)] = fmt.Sprint(i)
	}
	clicks = append(clicks, &Click{V: 1, ID: "i", MerchantID: "m", UTM: big})
	for i, c := range clicks {
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendClick([]byte("pre"), c)
		if err != nil || string(got) != "pre"+string(want) {
			t.Errorf("click %d:\n got %s (%v)\nwant pre%s", i, got, err, want)
		}
	}
}

func FuzzAppendClickMatchesJSON(f *testing.F) {
	f.Add("06h0rq6mdaqxf1s91rbp33a63nvdrjf5", "Mozilla/5.0", "utm_source", "bench", "s1", int64(1), true)
	f.Add("a\"<>&\u2028", "\xff\x00", "", "\t", "é", int64(-5), false)
	f.Fuzz(func(t *testing.T, id, ua, k, v, sub string, ts int64, flag bool) {
		c := &Click{V: 1, ID: id, TS: ts, MerchantID: sub, UserAgent: ua, Referrer: k + v, Bot: flag,
			Subs: [5]string{sub, "", v}, UTM: map[string]string{k: v, v: k}, ScreenWidth: int(ts)}
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := AppendClick(nil, c)
		if !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}

func TestAppendClickAllocs(t *testing.T) {
	c := benchClick()
	buf := make([]byte, 0, 2048)
	if n := testing.AllocsPerRun(100, func() { buf, _ = AppendClick(buf[:0], c) }); n != 0 {
		t.Errorf("AppendClick: %v allocs/op, want 0", n)
	}
}

func BenchmarkAppendClick(b *testing.B) {
	c := benchClick()
	buf, _ := AppendClick(nil, c)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendClick(buf[:0], c)
	}
}

// BenchmarkMarshalClick is encoding/json on the same click: what
// AppendClick replaced.
func BenchmarkMarshalClick(b *testing.B) {
	c := benchClick()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeClick(b *testing.B) {
	data, _ := AppendClick(nil, benchClick())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeClick(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalClick is encoding/json on the same click: what
// DecodeClick's fast path replaced (and still its fallback).
func BenchmarkUnmarshalClick(b *testing.B) {
	data, _ := AppendClick(nil, benchClick())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var c Click
		if err := json.Unmarshal(data, &c); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEvent() *Event {
	return &Event{V: EventVersion, ID: EventID("demo", KindConversion, "order-1001"), Kind: KindConversion,
		TS: 1_700_000_000_000, Edge: "edge-fra-1", Dialect: "partnac", MerchantID: "demo",
		Conversion: &ConversionEvent{UniqueID: "order-1001", Type: "sale", AmountMinor: 4999, Currency: "EUR",
			ClickID: "06h0rq6mdaqxf1s91rbp33a63nvdrjf5", CustomerID: "cus_42", PartnerKey: "ALICE10",
			IP: "81.2.69.0", Country: "GB", Metadata: json.RawMessage(`{"cart":3}`)}}
}

func BenchmarkAppendEvent(b *testing.B) {
	e := benchEvent()
	buf, err := AppendEvent(nil, e)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendEvent(buf[:0], e)
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	data, err := AppendEvent(nil, benchEvent())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvent(data); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzDecodeClickFast: whatever the fast parser accepts, encoding/json reads
// the same way.
func FuzzDecodeClickFast(f *testing.F) {
	for _, c := range []*Click{benchClick(), {V: 1, ID: "i", MerchantID: "m", UTM: map[string]string{}}} {
		b, _ := AppendClick(nil, c)
		f.Add(b)
	}
	f.Add([]byte(` { "v" : 1 , "id":"a\u00e9\n\"\\\/b", "subs":["x",""], "utm":{}, "ts":-0, "bot":false } `))
	f.Add([]byte(`{"v":1,"ID":"x"}`))
	f.Add([]byte(`{"v":1,"id":"x","id":"y"}`))
	f.Add([]byte(`{"v":1.0,"subs":["a","b","c","d","e","f"],"utm":{"a":"1","a":"2"}}`))
	f.Add([]byte(`{"v":1,"id":"\ud83c\udf89","city":"\xff"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast Click
		if !decodeClickFast(data, &fast) {
			return
		}
		var slow Click
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("fast parser accepted what encoding/json rejects (%v): %q", err, data)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("input %q:\nfast %+v\njson %+v", data, fast, slow)
		}
	})
}

// TestDecodeClickFastReadsOwnOutput: the fast parser reads everything
// AppendClick writes, as encoding/json does.
func TestDecodeClickFastReadsOwnOutput(t *testing.T) {
	odd := "a\"b\\c\x00\x1f\b\f\n\r\t<>&\x7f é \u2028\u2029 🎉"
	for i, c := range []*Click{
		benchClick(),
		{V: 1, ID: odd, TS: -7, MerchantID: odd, Subs: [5]string{odd, "", "", "", "e"}, UTM: map[string]string{odd: odd, "k": ""},
			Orphan: true, Bot: true, NonUnique: true, Forged: true, ScreenWidth: 1 << 40, ReceivedAt: 1, Destination: "https://x.example/?a=1&b=<2>"},
		{V: 1, ID: "i", MerchantID: "m", UTM: map[string]string{}},
	} {
		b, _ := AppendClick(nil, c)
		var fast, slow Click
		if !decodeClickFast(b, &fast) {
			t.Errorf("click %d: fast parser fell back on %s", i, b)
			continue
		}
		if err := json.Unmarshal(b, &slow); err != nil || !reflect.DeepEqual(fast, slow) {
			t.Errorf("click %d:\nfast %+v\njson %+v (%v)", i, fast, slow, err)
		}
	}
}
