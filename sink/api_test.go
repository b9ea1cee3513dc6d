package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/clickedge/clickedge/sink/sinktest"
	"github.com/nats-io/nats.go"
)

// fakeLister serves a fixed set of clicks, or fails as told.
type fakeLister struct {
	clicks []Click
	err    error
	panic  bool
}

func (f *fakeLister) ListClicks(_ context.Context, q ClickQuery) (ClickPage, error) {
	if f.panic {
		panic("boom")
	}
	if f.err != nil {
		return ClickPage{}, f.err
	}
	var page ClickPage
	for _, c := range f.clicks {
		if c.MerchantID != q.MerchantID || (q.PartnerID != "" && c.PartnerID != q.PartnerID) {
			continue
		}
		page.Total++
		if page.Total > q.Offset && len(page.Clicks) < q.Limit {
			page.Clicks = append(page.Clicks, c)
		}
	}
	return page, nil
}

func serve(t *testing.T, l ClickLister) *nats.Conn {
	t.Helper()
	s := sinktest.RunServer(t, t.TempDir(), -1)
	server := sinktest.Connect(t, sinktest.Port(s))
	sub, err := ServeAPI(server, l)
	if err != nil {
		t.Fatalf("ServeAPI: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := server.Flush(); err != nil {
		t.Fatal(err)
	}
	return sinktest.Connect(t, sinktest.Port(s))
}

func TestAPIRoundTrip(t *testing.T) {
	clicks := []Click{
		{V: 1, ID: "c1", TS: 1, MerchantID: "m1", PartnerID: "p1", Source: SourceRedirect, Subs: [5]string{"a"}, UTM: map[string]string{"utm_source": "x"}},
		{V: 1, ID: "c2", TS: 2, MerchantID: "m1", PartnerID: "p2", Source: SourceS2S},
		{V: 1, ID: "c3", TS: 3, MerchantID: "m2", PartnerID: "p1", Source: SourceRedirect},
	}
	client := &APIClient{NC: serve(t, &fakeLister{clicks: clicks})}
	tests := []struct {
		name string
		q    ClickQuery
		want ClickPage
	}{
		{"merchant", ClickQuery{MerchantID: "m1", Limit: 10}, ClickPage{Clicks: clicks[:2], Total: 2}},
		{"partner", ClickQuery{MerchantID: "m1", PartnerID: "p2", Limit: 10}, ClickPage{Clicks: clicks[1:2], Total: 1}},
		{"offset", ClickQuery{MerchantID: "m1", Limit: 10, Offset: 1}, ClickPage{Clicks: clicks[1:2], Total: 2}},
		{"none", ClickQuery{MerchantID: "m9", Limit: 10}, ClickPage{Clicks: []Click{}, Total: 0}},
	}
	for _, tt := range tests {
		got, err := client.ListClicks(testCtx(t), tt.q)
		if err != nil {
			t.Fatalf("%s: ListClicks: %v", tt.name, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestAPIErrors(t *testing.T) {
	tests := []struct {
		name     string
		lister   *fakeLister
		wantCode string
		wantMsg  string
	}{
		{"api error passes through", &fakeLister{err: &APIError{Code: "merchant_not_found", Message: "no merchant m1"}}, "merchant_not_found", "no merchant m1"},
		{"wrapped api error passes through", &fakeLister{err: fmt.Errorf("lookup: %w", &APIError{Code: "forbidden", Message: "no"})}, "forbidden", "no"},
		{"other error is internal", &fakeLister{err: errors.New("disk on fire")}, APICodeInternal, "disk on fire"},
		{"panic is internal", &fakeLister{panic: true}, APICodeInternal, "list clicks panicked: boom"},
	}
	for _, tt := range tests {
		client := &APIClient{NC: serve(t, tt.lister)}
		_, err := client.ListClicks(testCtx(t), ClickQuery{MerchantID: "m1", Limit: 1})
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Fatalf("%s: error %v is not an *APIError", tt.name, err)
		}
		if ae.Code != tt.wantCode || ae.Message != tt.wantMsg {
			t.Errorf("%s: got %+v, want code %q message %q", tt.name, ae, tt.wantCode, tt.wantMsg)
		}
	}
}

func TestAPIBadRequest(t *testing.T) {
	nc := serve(t, &fakeLister{})
	tests := []string{`{`, `[]`, `{"merchant_id":"m1","limit":-1}`, `{"offset":-3}`, ``}
	for _, body := range tests {
		msg, err := nc.Request(APISubjectClicksList, []byte(body), 10*time.Second)
		if err != nil {
			t.Fatalf("request %q: %v", body, err)
		}
		_, err = decodeAPIReply(msg.Data)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != APICodeBadRequest {
			t.Errorf("body %q: got %v, want bad_request", body, err)
		}
	}
}

func TestAPIWorkerUnavailable(t *testing.T) {
	s := sinktest.RunServer(t, t.TempDir(), -1)
	client := &APIClient{NC: sinktest.Connect(t, sinktest.Port(s))}
	_, err := client.ListClicks(testCtx(t), ClickQuery{MerchantID: "m1", Limit: 1})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != APICodeWorkerUnavailable {
		t.Fatalf("no responders: got %v, want worker_unavailable", err)
	}

	// A caller that gives up gets its own context error, not a worker error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = client.ListClicks(ctx, ClickQuery{MerchantID: "m1", Limit: 1})
	if !errors.Is(err, context.Canceled) || errors.As(err, &ae) {
		t.Fatalf("cancelled caller: got %v, want context.Canceled", err)
	}
}

func TestDecodeAPIReply(t *testing.T) {
	tests := []struct {
		body     string
		wantPage *ClickPage
		wantCode string // "" with wantPage nil means a malformed reply
	}{
		{`{"page":{"clicks":[],"total":3}}`, &ClickPage{Clicks: []Click{}, Total: 3}, ""},
		{`{"page":{"total":0}}`, &ClickPage{Clicks: []Click{}}, ""},
		{`{"error":{"code":"x","message":"y"}}`, nil, "x"},
		{`{"error":{"message":"y"}}`, nil, ""},
		{`{"page":{},"error":{"code":"x"}}`, nil, ""},
		{`{}`, nil, ""},
		{`null`, nil, ""},
		{`nope`, nil, ""},
	}
	for _, tt := range tests {
		got, err := decodeAPIReply([]byte(tt.body))
		var ae *APIError
		switch {
		case tt.wantPage != nil:
			if err != nil || !reflect.DeepEqual(got, *tt.wantPage) {
				t.Errorf("%s: got %+v, %v; want %+v", tt.body, got, err, *tt.wantPage)
			}
		case tt.wantCode != "":
			if !errors.As(err, &ae) || ae.Code != tt.wantCode {
				t.Errorf("%s: got %v, want code %q", tt.body, err, tt.wantCode)
			}
		default:
			if err == nil || errors.As(err, &ae) {
				t.Errorf("%s: got %v, want a malformed-reply error", tt.body, err)
			}
		}
	}
}

func FuzzDecodeAPIReply(f *testing.F) {
	for _, seed := range []string{
		`{"page":{"clicks":[{"v":1,"id":"c","merchant_id":"m"}],"total":1}}`,
		`{"error":{"code":"internal","message":"x"}}`,
		`{"page":null}`, `{}`, `[]`, `"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		page, err := decodeAPIReply(body)
		if err != nil {
			if page.Clicks != nil || page.Total != 0 {
				t.Fatalf("error %v came with a page %+v", err, page)
			}
			var ae *APIError
			if errors.As(err, &ae) && ae.Code == "" {
				t.Fatalf("APIError without code: %+v", ae)
			}
			return
		}
		if page.Clicks == nil {
			t.Fatal("page without a clicks slice")
		}
		// A decoded page survives the round trip through the wire form.
		b, err := json.Marshal(apiReply{Page: &page})
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := decodeAPIReply(b)
		if err != nil || again.Total != page.Total || len(again.Clicks) != len(page.Clicks) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, page)
		}
	})
}

func FuzzDecodeClickQuery(f *testing.F) {
	for _, seed := range []string{
		`{"merchant_id":"m1","limit":10,"offset":0}`,
		`{"merchant_id":"m1","campaign_id":"c","partner_id":"p","limit":1,"offset":5}`,
		`{"limit":-1}`, `{`, `null`, `{"limit":1e100}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		q, err := decodeClickQuery(body)
		if err != nil {
			if q != (ClickQuery{}) {
				t.Fatalf("error %v came with a query %+v", err, q)
			}
			return
		}
		if q.Limit < 0 || q.Offset < 0 {
			t.Fatalf("accepted negative limit/offset: %+v", q)
		}
		b, err := json.Marshal(q)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeClickQuery(b)
		if err != nil || again != q {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, q)
		}
	})
}
