package sink

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openOutbox(t testing.TB, path string, configure ...func(*Outbox)) *Outbox {
	t.Helper()
	o := NewOutbox(path)
	for _, c := range configure {
		c(o)
	}
	if err := o.Open(); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = o.Close() })
	return o
}

func rec(i int, data string) Record {
	return Record{Subject: fmt.Sprintf("clickedge.clicks.m%d", i%3), MsgID: fmt.Sprintf("id-%05d", i), Data: []byte(data)}
}

func peekAll(t testing.TB, o *Outbox) []Row {
	t.Helper()
	rows, err := o.Peek(0, 1<<30)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	return rows
}

func records(rows []Row) []Record {
	out := make([]Record, len(rows))
	for i, r := range rows {
		out[i] = r.Record
	}
	return out
}

// queued is the number of Append calls waiting for the writer.
func queued(o *Outbox) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.cur.entries)
}

func TestOutboxAppendVisibleAndDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openOutbox(t, path)
	want := []Record{rec(1, "a"), rec(2, ""), rec(3, "ccc")}
	for _, r := range want {
		if err := o.Append(context.Background(), r); err != nil {
			t.Fatalf("Append: %v", err)
		}
		// Committed before Append returned: a new read transaction sees it.
		var found bool
		if err := o.db.View(func(tx *bolt.Tx) error {
			tx.Bucket(rowsBucket).ForEach(func(_, v []byte) error {
				got, err := decodeRow(v)
				if err == nil && got.MsgID == r.MsgID {
					found = true
				}
				return nil
			})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !found {
			t.Fatalf("record %s not committed when Append returned", r.MsgID)
		}
	}
	if err := o.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	o2 := openOutbox(t, path)
	got := peekAll(t, o2)
	if !reflect.DeepEqual(records(got), want) {
		t.Fatalf("after reopen got %+v, want %+v", records(got), want)
	}
	for i, r := range got {
		if r.Seq != uint64(i+1) {
			t.Errorf("row %d seq = %d, want %d", i, r.Seq, i+1)
		}
		if r.AppendedUnixMilli <= 0 {
			t.Errorf("row %d appended at %d", i, r.AppendedUnixMilli)
		}
	}
}

// TestOutboxGroupCommit holds the writer inside its first commit while 99
// other Appends queue: they must all land in one second commit.
func TestOutboxGroupCommit(t *testing.T) {
	o := NewOutbox(filepath.Join(t.TempDir(), "outbox.db"))
	release := make(chan struct{})
	var first atomic.Bool
	entered := make(chan struct{})
	o.commitHook = func() {
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
	}
	if err := o.Open(); err != nil {
		t.Fatal(err)
	}
	defer o.Close()

	const waiting = 99
	var wg sync.WaitGroup
	errs := make(chan error, waiting+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs <- o.Append(context.Background(), rec(0, "first"))
	}()
	<-entered
	for i := 1; i <= waiting; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- o.Append(context.Background(), rec(i, "x"))
		}()
	}
	waitFor(t, "appends queued behind the first commit", func() bool { return queued(o) == waiting })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	st := o.Stats()
	if st.Commits != 2 || st.Appended != waiting+1 || st.Rows != waiting+1 {
		t.Fatalf("stats = %+v, want 2 commits holding %d rows", st, waiting+1)
	}
}

func TestOutboxConcurrentAppendsKeepOrder(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"))
	const writers, each = 16, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := Record{Subject: "clickedge.clicks.m", MsgID: fmt.Sprintf("w%d-%03d", w, i), Data: []byte{byte(w), byte(i)}}
				if err := o.Append(context.Background(), r); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rows := peekAll(t, o)
	if len(rows) != writers*each {
		t.Fatalf("got %d rows, want %d", len(rows), writers*each)
	}
	next := make([]int, writers)
	for i, r := range rows {
		if i > 0 && r.Seq <= rows[i-1].Seq {
			t.Fatalf("seq %d after %d", r.Seq, rows[i-1].Seq)
		}
		w, n := int(r.Data[0]), int(r.Data[1])
		if n != next[w] {
			t.Fatalf("writer %d: row %d came where %d was due", w, n, next[w])
		}
		next[w]++
	}
	st := o.Stats()
	if st.Appended != writers*each || st.Commits == 0 || st.Commits > st.Appended {
		t.Fatalf("stats = %+v", st)
	}
}

func TestOutboxBatchOrder(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"))
	want := []Record{rec(5, "e"), rec(1, "a"), rec(3, "c")}
	if err := o.Append(context.Background(), want...); err != nil {
		t.Fatal(err)
	}
	if got := records(peekAll(t, o)); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestOutboxFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openOutbox(t, path, func(o *Outbox) { o.MaxBytes = 100 })
	steps := []struct {
		name    string
		sizes   []int
		wantErr error
	}{
		{"fits", []int{60}, nil},
		{"single over", []int{50}, ErrOutboxFull},
		{"batch over as a whole", []int{30, 30}, ErrOutboxFull},
		{"fills exactly", []int{20, 20}, nil},
		{"one byte over", []int{1}, ErrOutboxFull},
		{"empty data still fits", []int{0}, nil},
	}
	wantRows := 0
	for i, s := range steps {
		var recs []Record
		for j, n := range s.sizes {
			recs = append(recs, rec(i*10+j, string(bytes.Repeat([]byte{'x'}, n))))
		}
		err := o.Append(context.Background(), recs...)
		if !errors.Is(err, s.wantErr) || (s.wantErr == nil) != (err == nil) {
			t.Fatalf("%s: Append error = %v, want %v", s.name, err, s.wantErr)
		}
		if err == nil {
			wantRows += len(recs)
		}
		if got := o.Stats().Rows; got != int64(wantRows) {
			t.Fatalf("%s: rows = %d, want %d", s.name, got, wantRows)
		}
	}
	if got, want := o.Stats().Bytes, int64(100); got != want {
		t.Fatalf("bytes = %d, want %d", got, want)
	}
	// Deleting frees room.
	rows := peekAll(t, o)
	if err := o.Delete([]uint64{rows[0].Seq}); err != nil {
		t.Fatal(err)
	}
	if err := o.Append(context.Background(), rec(99, string(bytes.Repeat([]byte{'y'}, 60)))); err != nil {
		t.Fatalf("Append after Delete: %v", err)
	}
	// The cap counts rows already in the file after a reopen.
	o.Close()
	o2 := openOutbox(t, path, func(o *Outbox) { o.MaxBytes = 100 })
	if err := o2.Append(context.Background(), rec(100, "z")); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("Append to full reopened outbox = %v, want ErrOutboxFull", err)
	}
	if got := len(peekAll(t, o2)); got != wantRows {
		t.Fatalf("rows after reopen = %d, want %d", got, wantRows)
	}
}

func TestOutboxStatsAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openOutbox(t, path)
	if got := o.Stats(); got != (OutboxStats{}) {
		t.Fatalf("empty stats = %+v", got)
	}
	for i := range 10 {
		if err := o.Append(context.Background(), rec(i, string(bytes.Repeat([]byte{'d'}, i)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Delete([]uint64{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	before := o.Stats()
	want := OutboxStats{Rows: 7, Bytes: 3 + 4 + 5 + 6 + 7 + 8 + 9, Commits: 10, Appended: 10, Deleted: 3}
	if before.OldestUnixMilli <= 0 {
		t.Fatalf("oldest = %d, want a time", before.OldestUnixMilli)
	}
	want.OldestUnixMilli = before.OldestUnixMilli
	if before != want {
		t.Fatalf("stats = %+v, want %+v", before, want)
	}
	o.Close()
	o2 := openOutbox(t, path)
	got := o2.Stats()
	// Counters of events restart at Open; the content is counted from the file.
	want = OutboxStats{Rows: 7, Bytes: want.Bytes, OldestUnixMilli: peekAll(t, o2)[0].AppendedUnixMilli}
	if got != want {
		t.Fatalf("stats after reopen = %+v, want %+v", got, want)
	}
	// Sequences keep growing after a reopen, even past deleted rows.
	if err := o2.Append(context.Background(), rec(50, "n")); err != nil {
		t.Fatal(err)
	}
	rows := peekAll(t, o2)
	if last := rows[len(rows)-1].Seq; last != 11 {
		t.Fatalf("seq after reopen = %d, want 11", last)
	}
}

func TestOutboxDeleteIdempotent(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"))
	if err := o.Append(context.Background(), rec(1, "aa"), rec(2, "bbb"), rec(3, "c")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		seqs        []uint64
		wantRows    int64
		wantBytes   int64
		wantDeleted uint64
	}{
		{[]uint64{2, 2, 42}, 2, 3, 1},
		{[]uint64{2}, 2, 3, 1},
		{nil, 2, 3, 1},
		{[]uint64{3, 1, 2}, 0, 0, 3},
		{[]uint64{1, 2, 3}, 0, 0, 3},
	}
	for i, tt := range tests {
		if err := o.Delete(tt.seqs); err != nil {
			t.Fatalf("step %d: Delete(%v): %v", i, tt.seqs, err)
		}
		st := o.Stats()
		if st.Rows != tt.wantRows || st.Bytes != tt.wantBytes || st.Deleted != tt.wantDeleted {
			t.Fatalf("step %d: stats = %+v, want rows %d bytes %d deleted %d", i, st, tt.wantRows, tt.wantBytes, tt.wantDeleted)
		}
	}
}

func TestOutboxPeek(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"))
	for i := range 5 {
		if err := o.Append(context.Background(), rec(i, "p")); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Delete([]uint64{3}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		after uint64
		max   int
		want  []uint64
	}{
		{0, 10, []uint64{1, 2, 4, 5}},
		{0, 2, []uint64{1, 2}},
		{2, 1, []uint64{4}},
		{2, 10, []uint64{4, 5}},
		{5, 10, nil},
		{^uint64(0), 10, nil},
		{0, 0, nil},
	}
	for _, tt := range tests {
		rows, err := o.Peek(tt.after, tt.max)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, r := range rows {
			got = append(got, r.Seq)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Peek(%d, %d) = %v, want %v", tt.after, tt.max, got, tt.want)
		}
	}
}

func TestOutboxCancelledAppendWritesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := NewOutbox(path)
	release := make(chan struct{})
	entered := make(chan struct{})
	var first atomic.Bool
	o.commitHook = func() {
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
	}
	if err := o.Open(); err != nil {
		t.Fatal(err)
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- o.Append(context.Background(), rec(1, "kept")) }()
	<-entered

	ctx, cancel := context.WithCancel(context.Background())
	cancelledDone := make(chan error, 1)
	go func() { cancelledDone <- o.Append(ctx, rec(2, "withdrawn")) }()
	waitFor(t, "second append queued", func() bool { return queued(o) == 1 })
	cancel()
	if err := <-cancelledDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Append = %v, want context.Canceled", err)
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatalf("first Append: %v", err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o2 := openOutbox(t, path)
	if got, want := records(peekAll(t, o2)), []Record{rec(1, "kept")}; !reflect.DeepEqual(got, want) {
		t.Fatalf("rows = %+v, want %+v", got, want)
	}
	if got := o2.Stats().Bytes; got != 4 {
		t.Fatalf("bytes = %d, want 4", got)
	}
}

func TestOutboxLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "outbox.db")
	o := NewOutbox(path)
	if err := o.Append(context.Background(), rec(1, "x")); !errors.Is(err, ErrOutboxClosed) {
		t.Fatalf("Append before Open = %v, want ErrOutboxClosed", err)
	}
	if err := o.Open(); err != nil {
		t.Fatalf("Open creating directories: %v", err)
	}
	if err := o.Open(); err == nil {
		t.Fatal("second Open succeeded")
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := o.Append(context.Background(), rec(1, "x")); !errors.Is(err, ErrOutboxClosed) {
		t.Fatalf("Append after Close = %v, want ErrOutboxClosed", err)
	}
	if _, err := o.Peek(0, 1); !errors.Is(err, ErrOutboxClosed) {
		t.Fatalf("Peek after Close = %v, want ErrOutboxClosed", err)
	}
	if err := o.Delete([]uint64{1}); !errors.Is(err, ErrOutboxClosed) {
		t.Fatalf("Delete after Close = %v, want ErrOutboxClosed", err)
	}
	if got := o.Stats(); got.Rows != 0 || got.OldestUnixMilli != 0 {
		t.Fatalf("Stats after Close = %+v", got)
	}
}

func TestOutboxInvalidRecords(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"))
	tests := []struct {
		name string
		rec  Record
		ok   bool
	}{
		{"valid", Record{Subject: "clickedge.clicks.m1", MsgID: "c1"}, true},
		{"empty subject", Record{Subject: "", MsgID: "c1"}, false},
		{"space in subject", Record{Subject: "a b", MsgID: "c1"}, false},
		{"empty token", Record{Subject: "a..b", MsgID: "c1"}, false},
		{"trailing dot", Record{Subject: "a.b.", MsgID: "c1"}, false},
		{"wildcard", Record{Subject: "a.*", MsgID: "c1"}, false},
		{"full wildcard", Record{Subject: "a.>", MsgID: "c1"}, false},
		{"empty msg id", Record{Subject: "a.b", MsgID: ""}, false},
		{"newline in msg id", Record{Subject: "a.b", MsgID: "c\r\n1"}, false},
	}
	for _, tt := range tests {
		err := o.Append(context.Background(), Record{Subject: "a.ok", MsgID: "before"}, tt.rec)
		if got := err == nil; got != tt.ok {
			t.Errorf("%s: Append error = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if !tt.ok && !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: error %v is not ErrInvalidRecord", tt.name, err)
		}
	}
	// Only the valid case wrote (both of its records).
	if got := o.Stats().Rows; got != 2 {
		t.Fatalf("rows = %d, want 2", got)
	}
}

func TestOutboxBlobs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openOutbox(t, path)
	if got, err := o.Blob("catalog"); err != nil || got != nil {
		t.Fatalf("absent blob = %q, %v; want nil, nil", got, err)
	}
	if err := o.PutBlob("catalog", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := o.PutBlob("catalog", []byte(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := o.PutBlob("empty", nil); err != nil {
		t.Fatal(err)
	}
	if err := o.PutBlob("", []byte("x")); err == nil {
		t.Fatal("PutBlob with empty name succeeded")
	}
	if st := o.Stats(); st.Rows != 0 {
		t.Fatalf("blobs counted as rows: %+v", st)
	}
	o.Close()
	o2 := openOutbox(t, path)
	tests := []struct {
		name string
		want []byte
	}{
		{"catalog", []byte(`{"v":2}`)},
		{"empty", []byte{}},
		{"missing", nil},
	}
	for _, tt := range tests {
		got, err := o2.Blob(tt.name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Errorf("Blob(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestOutboxOpenRejectsCorruptRow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openOutbox(t, path)
	if err := o.Append(context.Background(), rec(1, "ok")); err != nil {
		t.Fatal(err)
	}
	if err := o.db.Update(func(tx *bolt.Tx) error {
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], 7)
		return tx.Bucket(rowsBucket).Put(k[:], []byte{9, 9, 9})
	}); err != nil {
		t.Fatal(err)
	}
	o.Close()
	o2 := NewOutbox(path)
	if err := o2.Open(); err == nil || !errors.Is(err, errRowCorrupt) {
		o2.Close()
		t.Fatalf("Open of corrupt outbox = %v, want errRowCorrupt", err)
	}
}

func TestRowEncoding(t *testing.T) {
	tests := []struct {
		name string
		ms   int64
		rec  Record
	}{
		{"typical", 1_700_000_000_123, Record{Subject: "clickedge.clicks.m1", MsgID: "01HXYZ", Data: []byte(`{"v":1}`)}},
		{"empty data", 1, Record{Subject: "a", MsgID: "b"}},
		{"negative time", -5, Record{Subject: "a", MsgID: "b", Data: []byte{0}}},
		{"long data", 42, Record{Subject: "a", MsgID: "b", Data: bytes.Repeat([]byte{0xff}, 300)}},
	}
	for _, tt := range tests {
		enc := appendRow(nil, tt.ms, &tt.rec)
		if got, want := len(enc), rowLen(&tt.rec, tt.ms); got != want {
			t.Errorf("%s: encoded %d bytes, rowLen says %d", tt.name, got, want)
		}
		got, err := decodeRow(enc)
		if err != nil {
			t.Fatalf("%s: decode: %v", tt.name, err)
		}
		want := Row{Record: tt.rec, AppendedUnixMilli: tt.ms}
		if want.Data == nil {
			want.Data = []byte{}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, want)
		}
	}
	bad := []struct {
		name string
		v    []byte
	}{
		{"empty", nil},
		{"version 2", []byte{2, 0, 1, 'a', 1, 'b', 0}},
		{"truncated", []byte{1, 0, 5, 'a'}},
		{"trailing", []byte{1, 0, 1, 'a', 1, 'b', 0, 0}},
		{"overlong varint", []byte{1, 0x80, 0x00, 1, 'a', 1, 'b', 0}},
		{"huge length", []byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	}
	for _, tt := range bad {
		if _, err := decodeRow(tt.v); !errors.Is(err, errRowCorrupt) {
			t.Errorf("%s: decode error = %v, want errRowCorrupt", tt.name, err)
		}
	}
}

func FuzzDecodeRow(f *testing.F) {
	f.Add(appendRow(nil, 1_700_000_000_000, &Record{Subject: "clickedge.clicks.m1", MsgID: "id1", Data: []byte(`{"v":1}`)}))
	f.Add(appendRow(nil, -1, &Record{Subject: "a", MsgID: "b"}))
	f.Add([]byte{})
	f.Add([]byte{1, 0x80, 0x00, 1, 'a', 1, 'b', 0})
	f.Add([]byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := decodeRow(v)
		if err != nil {
			if !errors.Is(err, errRowCorrupt) {
				t.Fatalf("error %v does not wrap errRowCorrupt", err)
			}
			return
		}
		// The encoding is canonical: what decodes re-encodes to the same bytes.
		re := appendRow(nil, got.AppendedUnixMilli, &got.Record)
		if !bytes.Equal(re, v) {
			t.Fatalf("re-encoded %x, input %x", re, v)
		}
		if rowLen(&got.Record, got.AppendedUnixMilli) != len(v) {
			t.Fatalf("rowLen %d for %d input bytes", rowLen(&got.Record, got.AppendedUnixMilli), len(v))
		}
		// The decoded row owns its memory.
		if len(got.Data) > 0 {
			got.Data[0]++
			if again, _ := decodeRow(v); bytes.Equal(again.Data, got.Data) {
				t.Fatal("decoded data aliases the stored value")
			}
		}
	})
}

func BenchmarkOutboxAppend(b *testing.B) {
	o := openOutbox(b, filepath.Join(b.TempDir(), "outbox.db"))
	data := bytes.Repeat([]byte{'c'}, 400)
	var n atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			r := Record{Subject: "clickedge.clicks.m1", MsgID: fmt.Sprintf("b%d", i), Data: data}
			if err := o.Append(context.Background(), r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if st := o.Stats(); st.Commits > 0 {
		b.ReportMetric(float64(st.Appended)/float64(st.Commits), "appends/commit")
	}
}
