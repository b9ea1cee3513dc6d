package attribution

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

func openStore(t testing.TB) *Store {
	t.Helper()
	s := NewStore(filepath.Join(t.TempDir(), "worker.db"))
	s.NoSync = true
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func click(id string, ts int64, merchant, campaign, partner string) sink.Click {
	return sink.Click{
		V: sink.ClickVersion, ID: id, TS: ts, Source: sink.SourceRedirect,
		MerchantID: merchant, CampaignID: campaign, PartnerID: partner,
	}
}

func ids(clicks []sink.Click) []string {
	out := make([]string, len(clicks))
	for i, c := range clicks {
		out[i] = c.ID
	}
	return out
}

func TestPutClicksIdempotent(t *testing.T) {
	s := openStore(t)
	first := []sink.Click{
		click("a1", 1, "m", "k", "p"),
		click("a2", 2, "m", "k", "p"),
		click("a3", 3, "m", "", ""),
	}
	first[0].Edge = "edge-1"
	tests := []struct {
		name  string
		batch []sink.Click
		want  int
	}{
		{"new batch", first, 3},
		{"same batch again", first, 0},
		{"one old, one new, one repeated in batch", []sink.Click{
			func() sink.Click { c := first[0]; c.Edge = "edge-2"; return c }(),
			click("a4", 4, "m", "k", "p"),
			click("a4", 4, "m", "k", "q"),
		}, 1},
		{"empty batch", nil, 0},
	}
	for _, tt := range tests {
		got, err := s.PutClicks(tt.batch)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("%s: PutClicks = %d new, want %d", tt.name, got, tt.want)
		}
	}
	c, ok, err := s.Click("a1")
	if err != nil || !ok {
		t.Fatalf("Click(a1) = %v, %v", ok, err)
	}
	if c.Edge != "edge-1" {
		t.Errorf("a replayed click overwrote the stored one: edge = %q, want edge-1", c.Edge)
	}
	c, _, _ = s.Click("a4")
	if c.PartnerID != "p" {
		t.Errorf("the second copy of a4 in one batch won: partner = %q, want p", c.PartnerID)
	}
	for _, tt := range []struct {
		q    sink.ClickQuery
		want int
	}{
		{sink.ClickQuery{MerchantID: "m"}, 4},
		{sink.ClickQuery{MerchantID: "m", CampaignID: "k"}, 3},
		{sink.ClickQuery{MerchantID: "m", PartnerID: "q"}, 0},
	} {
		page, err := s.ListClicks(tt.q)
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != tt.want || len(page.Clicks) != tt.want {
			t.Errorf("%+v: total %d, %d clicks, want %d: duplicates were counted", tt.q, page.Total, len(page.Clicks), tt.want)
		}
	}
	if n, err := s.ClickCount(); err != nil || n != 4 {
		t.Errorf("ClickCount = %d, %v, want 4", n, err)
	}
}

func TestPutClicksRejectsInvalidBatch(t *testing.T) {
	s := openStore(t)
	tests := []struct {
		name string
		bad  sink.Click
	}{
		{"empty id", click("", 1, "m", "", "")},
		{"empty merchant", click("x", 1, "", "", "")},
		{"NUL in merchant", click("x", 1, "m\x00k", "", "")},
		{"NUL in campaign", click("x", 1, "m", "k\x00", "")},
		{"NUL in partner", click("x", 1, "m", "", "\x00")},
		{"NUL in id", click("x\x00y", 1, "m", "", "")},
		{"long id", click(string(make([]byte, MaxKeyPartLen+1)), 1, "m", "", "")},
	}
	for _, tt := range tests {
		n, err := s.PutClicks([]sink.Click{click("good", 1, "m", "", ""), tt.bad})
		if !errors.Is(err, ErrInvalidClick) {
			t.Errorf("%s: err = %v, want ErrInvalidClick", tt.name, err)
		}
		if n != 0 {
			t.Errorf("%s: %d stored, want 0", tt.name, n)
		}
	}
	if _, ok, _ := s.Click("good"); ok {
		t.Error("a batch with an invalid click was partly stored")
	}
}

// seed stores clicks of two merchants whose ids and timestamps disagree in
// order, so that a test passes only if listing sorts by time.
func seed(t *testing.T, s *Store) {
	t.Helper()
	var batch []sink.Click
	for i := range 30 {
		// ts 1000..1029, inserted in a shuffled order, ids sort the other way.
		ts := int64(1000 + (i*7)%30)
		id := fmt.Sprintf("id%02d", 99-(ts-1000))
		campaign := []string{"spring", "s2s"}[ts%2]
		partner := []string{"alice", "bob", ""}[ts%3]
		batch = append(batch, click(id, ts, "demo", campaign, partner))
	}
	// Merchant "dem" and a merchant whose id extends "demo" must never leak in.
	batch = append(batch, click("other1", 5000, "dem", "spring", "alice"), click("other2", 5001, "demo2", "spring", "alice"))
	if _, err := s.PutClicks(batch); err != nil {
		t.Fatal(err)
	}
}

// wantIDs lists the ids of the seeded demo clicks matching keep, newest first.
func wantIDs(keep func(ts int64) bool) []string {
	var out []string
	for ts := int64(1029); ts >= 1000; ts-- {
		if keep(ts) {
			out = append(out, fmt.Sprintf("id%02d", 99-(ts-1000)))
		}
	}
	return out
}

func TestListClicks(t *testing.T) {
	s := openStore(t)
	seed(t, s)
	all := func(int64) bool { return true }
	spring := func(ts int64) bool { return ts%2 == 0 }
	bob := func(ts int64) bool { return ts%3 == 1 }
	tests := []struct {
		name      string
		q         sink.ClickQuery
		wantIDs   []string
		wantTotal int
	}{
		{"merchant, newest first", sink.ClickQuery{MerchantID: "demo", Limit: 100}, wantIDs(all), 30},
		{"campaign", sink.ClickQuery{MerchantID: "demo", CampaignID: "spring", Limit: 100}, wantIDs(spring), 15},
		{"partner", sink.ClickQuery{MerchantID: "demo", PartnerID: "bob", Limit: 100}, wantIDs(bob), 10},
		{"campaign and partner", sink.ClickQuery{MerchantID: "demo", CampaignID: "spring", PartnerID: "bob", Limit: 100},
			wantIDs(func(ts int64) bool { return spring(ts) && bob(ts) }), 5},
		{"limit", sink.ClickQuery{MerchantID: "demo", Limit: 3}, wantIDs(all)[:3], 30},
		{"offset and limit", sink.ClickQuery{MerchantID: "demo", Limit: 4, Offset: 10}, wantIDs(all)[10:14], 30},
		{"offset and limit under filter", sink.ClickQuery{MerchantID: "demo", CampaignID: "spring", Limit: 2, Offset: 13}, wantIDs(spring)[13:], 15},
		{"offset at end", sink.ClickQuery{MerchantID: "demo", Limit: 5, Offset: 30}, []string{}, 30},
		{"offset past end", sink.ClickQuery{MerchantID: "demo", Limit: 5, Offset: 1000}, []string{}, 30},
		{"zero limit means default", sink.ClickQuery{MerchantID: "demo"}, wantIDs(all), 30},
		{"limit clamped", sink.ClickQuery{MerchantID: "demo", Limit: 1 << 30}, wantIDs(all), 30},
		{"short merchant prefix", sink.ClickQuery{MerchantID: "dem", Limit: 100}, []string{"other1"}, 1},
		{"unknown merchant", sink.ClickQuery{MerchantID: "nobody"}, []string{}, 0},
		{"unknown partner", sink.ClickQuery{MerchantID: "demo", PartnerID: "carol"}, []string{}, 0},
		{"partner of another campaign", sink.ClickQuery{MerchantID: "demo", CampaignID: "nope", PartnerID: "bob"}, []string{}, 0},
	}
	for _, tt := range tests {
		page, err := s.ListClicks(tt.q)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := ids(page.Clicks); !slices.Equal(got, tt.wantIDs) {
			t.Errorf("%s: ids = %v, want %v", tt.name, got, tt.wantIDs)
		}
		if page.Total != tt.wantTotal {
			t.Errorf("%s: total = %d, want %d", tt.name, page.Total, tt.wantTotal)
		}
	}
}

func TestListClicksManyPages(t *testing.T) {
	s := openStore(t)
	var batch []sink.Click
	for i := range 250 {
		batch = append(batch, click(fmt.Sprintf("c%03d", i), int64(i), "m", "", ""))
	}
	if _, err := s.PutClicks(batch); err != nil {
		t.Fatal(err)
	}
	page, err := s.ListClicks(sink.ClickQuery{MerchantID: "m", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(page.Clicks), MaxListLimit; got != want {
		t.Errorf("len = %d, want %d (clamped)", got, want)
	}
	var got []string
	for off := 0; ; off += 7 {
		page, err := s.ListClicks(sink.ClickQuery{MerchantID: "m", Limit: 7, Offset: off})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Clicks) == 0 {
			break
		}
		got = append(got, ids(page.Clicks)...)
	}
	want := ids(batch)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Errorf("paging returned %d ids %v…, want %d newest first", len(got), got[:min(5, len(got))], len(want))
	}
}

func TestListClicksInvalidQuery(t *testing.T) {
	s := openStore(t)
	for _, q := range []sink.ClickQuery{{}, {CampaignID: "k"}, {MerchantID: "m", Offset: -1}} {
		if _, err := s.ListClicks(q); !errors.Is(err, ErrInvalidQuery) {
			t.Errorf("ListClicks(%+v) err = %v, want ErrInvalidQuery", q, err)
		}
	}
}

func TestListClicksNegativeTimestamp(t *testing.T) {
	s := openStore(t)
	if _, err := s.PutClicks([]sink.Click{click("neg", -5, "m", "", ""), click("pos", 10, "m", "", "")}); err != nil {
		t.Fatal(err)
	}
	page, err := s.ListClicks(sink.ClickQuery{MerchantID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(page.Clicks), []string{"pos", "neg"}; !slices.Equal(got, want) {
		t.Errorf("ids = %v, want %v", got, want)
	}
}

func TestStoreReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.db")
	s := NewStore(path)
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	if err := s.Open(); err == nil {
		t.Error("second Open of an open store succeeded")
	}
	in := click("r1", 42, "demo", "spring", "alice")
	in.Subs = [5]string{"a", "", "", "", "e"}
	in.UTM = map[string]string{"utm_source": "news"}
	in.ReceivedAt = 43
	if _, err := s.PutClicks([]sink.Click{in}); err != nil {
		t.Fatal(err)
	}
	cat := DemoCatalog("k")
	cat.Version = 7
	cat.UpdatedAt = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := s.SaveCatalog(cat); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Click("r1"); !errors.Is(err, ErrStoreClosed) {
		t.Errorf("Click on a closed store: err = %v, want ErrStoreClosed", err)
	}

	s2 := NewStore(path)
	if err := s2.Open(); err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, ok, err := s2.Click("r1")
	if err != nil || !ok {
		t.Fatalf("Click after reopen = %v, %v", ok, err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("click after reopen = %+v, want %+v", got, in)
	}
	gotCat, err := s2.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotCat, cat) {
		t.Errorf("catalog after reopen = %+v, want %+v", gotCat, cat)
	}
	page, err := s2.ListClicks(sink.ClickQuery{MerchantID: "demo", PartnerID: "alice"})
	if err != nil || page.Total != 1 {
		t.Errorf("list after reopen: total %d, %v, want 1", page.Total, err)
	}
	if n, _ := s2.PutClicks([]sink.Click{in}); n != 0 {
		t.Errorf("PutClicks of a click stored before reopen = %d new, want 0", n)
	}
}

func TestCatalogNoneSaved(t *testing.T) {
	s := openStore(t)
	c, err := s.Catalog()
	if c != nil || err != nil {
		t.Errorf("Catalog() = %v, %v, want nil, nil", c, err)
	}
	if err := s.SaveCatalog(&redirect.Catalog{Version: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCatalog(&redirect.Catalog{Version: 2}); err != nil {
		t.Fatal(err)
	}
	c, err = s.Catalog()
	if err != nil || c == nil || c.Version != 2 {
		t.Errorf("Catalog() = %+v, %v, want version 2", c, err)
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct{ in, want []byte }{
		{[]byte("a\x00"), []byte("a\x01")},
		{[]byte("a\xff"), []byte("b")},
		{[]byte("\xff\xff"), nil},
	}
	for _, tt := range tests {
		if got := prefixEnd(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("prefixEnd(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func BenchmarkPutClicks(b *testing.B) {
	s := openStore(b)
	batch := make([]sink.Click, 256)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for i := range batch {
			batch[i] = click(fmt.Sprintf("bench%012d", n), int64(n), "demo", "spring", []string{"alice", "bob"}[n%2])
			batch[i].UserAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
			batch[i].IP = "203.0.113.0"
			n++
		}
		if _, err := s.PutClicks(batch); err != nil {
			b.Fatal(err)
		}
	}
}
