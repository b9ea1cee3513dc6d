package sink

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blockFirstCommit makes the writer stop inside its first commit until
// release is closed; entered is closed when it got there.
func blockFirstCommit(o *Outbox) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	o.commitHook = func() {
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
	}
	return entered, release
}

// TestOutboxEnqueueDoesNotWait: Enqueue returns while the writer is stuck in
// a commit, the record is committed by the next one, and the caller's
// buffer can be reused at once.
func TestOutboxEnqueueDoesNotWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := NewOutbox(path)
	entered, release := blockFirstCommit(o)
	if err := o.Open(); err != nil {
		t.Fatal(err)
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- o.Append(context.Background(), rec(0, "durable")) }()
	<-entered
	buf := []byte("async-1")
	if err := o.Enqueue(Record{Subject: "clickedge.clicks.m1", MsgID: "id-00001", Data: buf}); err != nil {
		t.Fatalf("Enqueue while the writer is busy: %v", err)
	}
	copy(buf, "XXXXXXX") // the outbox holds its own copy
	if st := o.Stats(); st.Appended != 0 {
		t.Fatalf("stats before the commit = %+v", st)
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the enqueued record's commit", func() bool { return o.Stats().Appended == 2 })
	want := []Record{rec(0, "durable"), {Subject: "clickedge.clicks.m1", MsgID: "id-00001", Data: []byte("async-1")}}
	if got := records(peekAll(t, o)); !reflect.DeepEqual(got, want) {
		t.Fatalf("rows = %+v, want %+v", got, want)
	}
	if st := o.Stats(); st.Commits != 2 || st.Lost != 0 {
		t.Errorf("stats = %+v, want 2 commits, nothing lost", st)
	}
}

// TestOutboxCloseCommitsEnqueued: a clean shutdown loses nothing that was
// enqueued, even with a long commit interval pending.
func TestOutboxCloseCommitsEnqueued(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := NewOutbox(path)
	o.CommitInterval = time.Hour
	if err := o.Open(); err != nil {
		t.Fatal(err)
	}
	// The first commit starts at once (no commit before it); the rest wait
	// out the interval, which Close cuts short.
	var want []Record
	for i := range 50 {
		r := rec(i, "x")
		want = append(want, r)
		if err := o.Enqueue(r); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Close waited %s for the commit interval", d)
	}
	o2 := openOutbox(t, path)
	if got := records(peekAll(t, o2)); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Close, %d rows; want all %d enqueued", len(got), len(want))
	}
}

func TestOutboxEnqueueErrors(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), func(o *Outbox) { o.MaxBytes = 10 })
	if err := o.Enqueue(Record{Subject: "bad subject", MsgID: "x"}); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("invalid record: %v, want ErrInvalidRecord", err)
	}
	if err := o.Enqueue(rec(1, "12345678901")); !errors.Is(err, ErrOutboxFull) {
		t.Errorf("over the cap: %v, want ErrOutboxFull", err)
	}
	if err := o.Enqueue(); err != nil {
		t.Errorf("empty Enqueue: %v", err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Enqueue(rec(1, "x")); !errors.Is(err, ErrOutboxClosed) {
		t.Errorf("after Close: %v, want ErrOutboxClosed", err)
	}
}

// TestOutboxCommitInterval: with an interval, commits start at least that
// far apart, and each holds what queued meanwhile.
func TestOutboxCommitInterval(t *testing.T) {
	const interval = 40 * time.Millisecond
	o := NewOutbox(filepath.Join(t.TempDir(), "outbox.db"))
	o.NoSync = true
	o.CommitInterval = interval
	var mu sync.Mutex
	var starts []time.Time
	o.commitHook = func() {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
	}
	if err := o.Open(); err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	begin := time.Now()
	var wg sync.WaitGroup
	for i := range 60 {
		if i%2 == 0 {
			if err := o.Enqueue(rec(i, "a")); err != nil {
				t.Fatal(err)
			}
		} else {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := o.Append(context.Background(), rec(i, "d")); err != nil {
					t.Error(err)
				}
			}()
		}
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	waitFor(t, "every record committed", func() bool { return o.Stats().Appended == 60 })
	elapsed := time.Since(begin)
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < interval-time.Millisecond {
			t.Errorf("commits %d and %d started %s apart, want >= %s", i-1, i, gap, interval)
		}
	}
	if max := int(elapsed/interval) + 2; len(starts) > max {
		t.Errorf("%d commits in %s, want at most %d", len(starts), elapsed, max)
	}
}

// TestOutboxDeleteJoinsGroupCommit: a Delete queued behind a commit shares
// the next commit with the appends queued beside it.
func TestOutboxDeleteJoinsGroupCommit(t *testing.T) {
	o := NewOutbox(filepath.Join(t.TempDir(), "outbox.db"))
	o.NoSync = true
	if err := o.Open(); err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	for i := range 3 {
		if err := o.Append(context.Background(), rec(i, "old")); err != nil {
			t.Fatal(err)
		}
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	o.commitHook = func() { once.Do(func() { close(entered); <-release }) }
	firstDone := make(chan error, 1)
	go func() { firstDone <- o.Append(context.Background(), rec(3, "new")) }()
	<-entered
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := o.Delete([]uint64{1, 2, 2, 99}); err != nil {
			t.Error(err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := o.Append(context.Background(), rec(4, "newer")); err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, "delete and append queued", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.cur.dels) == 4 && len(o.cur.entries) == 1
	})
	before := o.Stats().Commits
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	st := o.Stats()
	if st.Commits != before+2 || st.Deleted != 2 || st.Rows != 3 || st.Bytes != int64(len("old")+len("new")+len("newer")) {
		t.Errorf("stats = %+v; want 2 more commits (the blocked one, then appends and deletes together), 2 deleted, 3 rows", st)
	}
	var seqs []uint64
	for _, r := range peekAll(t, o) {
		seqs = append(seqs, r.Seq)
	}
	if !reflect.DeepEqual(seqs, []uint64{3, 4, 5}) {
		t.Errorf("rows left = %v, want [3 4 5]", seqs)
	}
}

// BenchmarkOutboxEnqueue is async capture's side of the outbox: Enqueue
// copies into the batch and returns. Every 1024 clicks a durable Append
// waits for the group commit (fsync) that holds them, and the committed rows
// are deleted (as the shipper would, in the next commit), so that ns/op is
// the enqueue plus its share of commit and delete, with a bounded file.
func BenchmarkOutboxEnqueue(b *testing.B) {
	o := openOutbox(b, filepath.Join(b.TempDir(), "outbox.db"))
	data := bytes.Repeat([]byte{'c'}, 700)
	id := []byte("06h0rq6mdaqxf1s91rbp33a63nvdrjf5")
	var seqs []uint64
	var next uint64 = 1
	flush := func() {
		if err := o.Append(context.Background(), Record{Subject: "clickedge.clicks.m1", MsgID: "flush", Data: data}); err != nil {
			b.Fatal(err)
		}
		last := o.Stats().Appended
		seqs = seqs[:0]
		for ; next <= last; next++ {
			seqs = append(seqs, next)
		}
		if err := o.Delete(seqs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		id[31] = "0123456789abcdefghjkmnpqrstvwxyz"[i%32]
		if err := o.Enqueue(Record{Subject: "clickedge.clicks.m1", MsgID: string(id), Data: data}); err != nil {
			b.Fatal(err)
		}
		if i%1024 == 1023 {
			flush()
		}
	}
	flush()
	b.StopTimer()
	if st := o.Stats(); st.Commits > 0 {
		b.ReportMetric(float64(st.Appended)/float64(st.Commits), "records/commit")
	}
}

// TestOutboxDeleteSubsets deletes random subsets (with repeats and absent
// sequences) in single commits and checks exactly those rows went.
func TestOutboxDeleteSubsets(t *testing.T) {
	o := openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), func(o *Outbox) { o.NoSync = true })
	const n = 3000
	for i := range n {
		if err := o.Enqueue(rec(i, strings.Repeat("x", i%700))); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Append(context.Background(), rec(n, "last")); err != nil {
		t.Fatal(err)
	}
	left := map[uint64]bool{}
	for s := uint64(1); s <= n+1; s++ {
		left[s] = true
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 6 {
		var seqs []uint64
		for range 700 {
			seqs = append(seqs, uint64(rng.IntN(n+50))+1)
		}
		if round == 5 {
			for s := range left {
				seqs = append(seqs, s)
			}
		}
		if err := o.Delete(seqs); err != nil {
			t.Fatal(err)
		}
		for _, s := range seqs {
			delete(left, s)
		}
		rows := peekAll(t, o)
		if len(rows) != len(left) {
			t.Fatalf("round %d: %d rows, want %d", round, len(rows), len(left))
		}
		var size int64
		for _, r := range rows {
			if !left[r.Seq] {
				t.Fatalf("round %d: row %d survived its delete", round, r.Seq)
			}
			size += int64(len(r.Data))
		}
		if st := o.Stats(); st.Rows != int64(len(left)) || st.Bytes != size {
			t.Fatalf("round %d: stats %+v, want %d rows of %d bytes", round, st, len(left), size)
		}
	}
}
