package sink

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clickedge/clickedge/sink/sinktest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func shipOutbox(t testing.TB) *Outbox {
	return openOutbox(t, filepath.Join(t.TempDir(), "outbox.db"), func(o *Outbox) { o.NoSync = true })
}

func flush(t testing.TB, s *Shipper) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v (shipper %+v, outbox %+v)", err, s.Stats(), s.Outbox.Stats())
	}
}

// streamContents reads every message of a stream: msg id → data.
func streamContents(t testing.TB, js jetstream.JetStream, stream string) map[string]string {
	t.Helper()
	ctx := testCtx(t)
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer on %s: %v", stream, err)
	}
	n := streamMsgs(t, js, stream)
	got := make(map[string]string)
	for i := uint64(0); i < n; i++ {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("read message %d of %d from %s: %v", i+1, n, stream, err)
		}
		id := m.Headers().Get(jetstream.MsgIDHeader)
		if _, dup := got[id]; dup {
			t.Fatalf("message id %q twice in %s", id, stream)
		}
		got[id] = string(m.Data())
	}
	return got
}

func TestShipperPublishesEveryRowOnce(t *testing.T) {
	_, _, js := startJS(t)
	o := shipOutbox(t)
	want := make(map[string]string)
	for i := range 300 {
		r := rec(i, fmt.Sprintf(`{"n":%d}`, i))
		want[r.MsgID] = string(r.Data)
		if err := o.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	// An edge that retried its own appends: same message ids again.
	for i := range 30 {
		if err := o.Append(context.Background(), rec(i, fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	s := &Shipper{Outbox: o, JS: js, Batch: 64}
	runInBackground(t, s.Run)
	flush(t, s)

	if got := streamContents(t, js, ClickStream); len(got) != len(want) {
		t.Fatalf("stream holds %d messages, want %d", len(got), len(want))
	} else {
		for id, data := range want {
			if got[id] != data {
				t.Errorf("message %s = %q, want %q", id, got[id], data)
			}
		}
	}
	st := s.Stats()
	if st.Published != 330 || st.PublishErrors != 0 || st.LastPublishUnixMilli == 0 {
		t.Fatalf("shipper stats = %+v, want 330 published, no errors", st)
	}
	if ost := o.Stats(); ost.Rows != 0 || ost.Deleted != 330 {
		t.Fatalf("outbox stats = %+v, want empty after 330 deletes", ost)
	}
	// Later appends are shipped too (Notify wakes the idle shipper).
	if err := o.Append(context.Background(), rec(1000, "late")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "late row shipped", func() bool { return o.Stats().Rows == 0 })
	if got := streamMsgs(t, js, ClickStream); got != 301 {
		t.Fatalf("stream holds %d messages, want 301", got)
	}
}

func TestShipperNATSDownAtStart(t *testing.T) {
	port, dir := sinktest.FreePort(t), t.TempDir()
	nc := sinktest.Connect(t, port)
	js := newJS(t, nc)
	o := shipOutbox(t)
	for i := range 300 {
		if err := o.Append(context.Background(), rec(i, "buffered")); err != nil {
			t.Fatal(err)
		}
	}
	s := &Shipper{Outbox: o, JS: js, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond}
	s.init()
	passed := s.progressChan()
	runInBackground(t, s.Run)
	<-passed // a whole pass ran with NATS down
	if st := o.Stats(); st.Rows != 300 {
		t.Fatalf("outbox rows with NATS down = %d, want 300", st.Rows)
	}

	sinktest.RunServer(t, dir, port)
	waitFor(t, "click stream created after reconnect", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return EnsureStreams(ctx, js, StreamConfig{}) == nil
	})
	flush(t, s)
	if got := streamMsgs(t, js, ClickStream); got != 300 {
		t.Fatalf("stream holds %d messages, want 300", got)
	}
}

// lostAckJS delivers publishes but loses the first ack of chosen message ids,
// as when a connection drops right after the server stored the message.
type lostAckJS struct {
	jetstream.JetStream
	mu        sync.Mutex
	lose      map[string]bool
	publishes map[string]int
}

type lostAckFuture struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *lostAckFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *lostAckFuture) Err() <-chan error            { return f.err }
func (f *lostAckFuture) Msg() *nats.Msg               { return f.msg }

func (j *lostAckJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f, err := j.JetStream.PublishMsgAsync(m, opts...)
	if err != nil {
		return f, err
	}
	id := m.Header.Get(jetstream.MsgIDHeader)
	j.mu.Lock()
	j.publishes[id]++
	lose := j.lose[id]
	delete(j.lose, id)
	j.mu.Unlock()
	if !lose {
		return f, nil
	}
	lf := &lostAckFuture{msg: m, ok: make(chan *jetstream.PubAck), err: make(chan error, 1)}
	go func() {
		// Stored (or failed) for real; only then is the ack "lost".
		select {
		case <-f.Ok():
		case <-f.Err():
		}
		lf.err <- errors.New("ack lost in transit")
	}()
	return lf, nil
}

func TestShipperLostAckDoesNotDuplicate(t *testing.T) {
	_, _, js := startJS(t)
	o := shipOutbox(t)
	ljs := &lostAckJS{JetStream: js, lose: map[string]bool{}, publishes: map[string]int{}}
	for i := range 100 {
		r := rec(i, "x")
		if i%10 == 0 {
			ljs.lose[r.MsgID] = true
		}
		if err := o.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	s := &Shipper{Outbox: o, JS: ljs, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond}
	runInBackground(t, s.Run)
	flush(t, s)

	if got := streamMsgs(t, js, ClickStream); got != 100 {
		t.Fatalf("stream holds %d messages, want 100 (lost acks must not duplicate)", got)
	}
	ljs.mu.Lock()
	defer ljs.mu.Unlock()
	for i := 0; i < 100; i += 10 {
		id := rec(i, "").MsgID
		if n := ljs.publishes[id]; n < 2 {
			t.Errorf("row %s published %d times, want a retry after its lost ack", id, n)
		}
	}
	if st := s.Stats(); st.PublishErrors < 10 {
		t.Fatalf("publish errors = %d, want at least the 10 lost acks", st.PublishErrors)
	}
}

func TestShipperKeepsRowsWithoutStream(t *testing.T) {
	_, _, js := startJS(t)
	o := shipOutbox(t)
	for i := range 5 {
		orphan := Record{Subject: "clickedge.other.x", MsgID: fmt.Sprintf("o%d", i), Data: []byte("o")}
		if err := o.Append(context.Background(), orphan, rec(i, "c")); err != nil {
			t.Fatal(err)
		}
	}
	s := &Shipper{Outbox: o, JS: js, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}
	runInBackground(t, s.Run)
	waitFor(t, "two failing passes", func() bool { return s.Stats().PublishErrors >= 10 })
	if got := streamMsgs(t, js, ClickStream); got != 5 {
		t.Fatalf("click stream holds %d, want the 5 publishable rows", got)
	}
	if got := o.Stats().Rows; got != 5 {
		t.Fatalf("outbox rows = %d, want the 5 unpublishable rows kept", got)
	}
	if _, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"clickedge.other.>"}}); err != nil {
		t.Fatal(err)
	}
	flush(t, s)
	if got := streamMsgs(t, js, "OTHER"); got != 5 {
		t.Fatalf("late stream holds %d, want 5", got)
	}
}

func TestShipperSetup(t *testing.T) {
	closed := NewOutbox(filepath.Join(t.TempDir(), "o.db"))
	_, _, js := startJS(t)
	tests := []struct {
		name string
		s    *Shipper
	}{
		{"no outbox", &Shipper{JS: js}},
		{"no js", &Shipper{Outbox: shipOutbox(t)}},
		{"outbox not open", &Shipper{Outbox: closed, JS: js}},
	}
	for _, tt := range tests {
		if err := tt.s.Run(context.Background()); err == nil {
			t.Errorf("%s: Run succeeded", tt.name)
		}
	}
	// Flush without Run only waits.
	s := &Shipper{Outbox: shipOutbox(t), JS: js}
	if err := s.Outbox.Append(context.Background(), rec(1, "x")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Flush(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush with cancelled ctx = %v, want context.Canceled", err)
	}
}
