package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func publishClicks(t *testing.T, js jetstream.JetStream, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		id := fmt.Sprintf("c%04d", i)
		if _, err := js.Publish(testCtx(t), ClickSubjectPrefix+"m1", []byte(id), jetstream.WithMsgID(id)); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
	}
}

// recorder is a handler that counts how often each message was handled and
// fails the calls that fail says to.
type recorder struct {
	mu        sync.Mutex
	handled   map[string]int // successful handlings
	delivered map[string]uint64
	calls     int
	fail      func(call int) bool
}

func newRecorder(fail func(int) bool) *recorder {
	return &recorder{handled: map[string]int{}, delivered: map[string]uint64{}, fail: fail}
}

func (r *recorder) handle(_ context.Context, msgs []jetstream.Msg) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		id := string(m.Data())
		r.delivered[id] = max(r.delivered[id], md.NumDelivered)
	}
	if r.fail != nil && r.fail(r.calls) {
		return errors.New("store unavailable")
	}
	for _, m := range msgs {
		r.handled[string(m.Data())]++
	}
	return nil
}

func (r *recorder) handledCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.handled)
}

func waitPending(t *testing.T, c *Consumer, want uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("consumer pending %d", want), func() bool {
		n, err := c.Pending(testCtx(t))
		return err == nil && n == want
	})
}

func TestConsumerAckedNotRedelivered(t *testing.T) {
	_, _, js := startJS(t)
	publishClicks(t, js, 0, 50)
	c := &Consumer{JS: js, Stream: ClickStream, Durable: "worker", FilterSubject: ClickSubjectPrefix + ">", Batch: 16}
	rec := newRecorder(nil)
	stop := runInBackground(t, func(ctx context.Context) error { return c.Run(ctx, rec.handle) })
	waitFor(t, "50 handled", func() bool { return rec.handledCount() == 50 })
	waitPending(t, c, 0) // every ack reached the server
	stop()

	// A new run (a worker restart) gets only what came since.
	publishClicks(t, js, 50, 60)
	stop = runInBackground(t, func(ctx context.Context) error { return c.Run(ctx, rec.handle) })
	waitFor(t, "60 handled", func() bool { return rec.handledCount() == 60 })
	waitPending(t, c, 0)
	stop()

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for id, n := range rec.handled {
		if n != 1 || rec.delivered[id] != 1 {
			t.Errorf("%s handled %d times, delivered %d times; want once", id, n, rec.delivered[id])
		}
	}
}

func TestConsumerRedeliversOnError(t *testing.T) {
	_, _, js := startJS(t)
	publishClicks(t, js, 0, 20)
	c := &Consumer{JS: js, Stream: ClickStream, Durable: "worker", Batch: 100, NakDelay: 10 * time.Millisecond}
	rec := newRecorder(func(call int) bool { return call == 1 })
	runInBackground(t, func(ctx context.Context) error { return c.Run(ctx, rec.handle) })
	waitFor(t, "20 handled", func() bool { return rec.handledCount() == 20 })
	waitPending(t, c, 0)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	redelivered := 0
	for id, n := range rec.handled {
		if n != 1 {
			t.Errorf("%s handled %d times, want once", id, n)
		}
		if rec.delivered[id] == 2 {
			redelivered++
		}
	}
	if redelivered == 0 {
		t.Fatal("no message was redelivered after the failed batch")
	}
}

func TestConsumerWaitsForStream(t *testing.T) {
	_, nc, _ := startJS(t)
	js := newJS(t, nc)
	const stream = "LATER"
	c := &Consumer{JS: js, Stream: stream, Durable: "w"}
	rec := newRecorder(nil)
	runInBackground(t, func(ctx context.Context) error { return c.Run(ctx, rec.handle) })
	if _, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: stream, Subjects: []string{"later.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(testCtx(t), "later.x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "message from a stream created after Run", func() bool { return rec.handledCount() == 1 })
}

func TestConsumerSetup(t *testing.T) {
	_, _, js := startJS(t)
	tests := []struct {
		name string
		c    *Consumer
	}{
		{"no js", &Consumer{Stream: ClickStream, Durable: "w"}},
		{"no stream", &Consumer{JS: js, Durable: "w"}},
		{"no durable", &Consumer{JS: js, Stream: ClickStream}},
	}
	for _, tt := range tests {
		if err := tt.c.Run(context.Background(), newRecorder(nil).handle); err == nil {
			t.Errorf("%s: Run succeeded", tt.name)
		}
	}
	if _, err := (&Consumer{JS: js, Stream: ClickStream, Durable: "absent"}).Pending(testCtx(t)); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("Pending of absent consumer = %v, want ErrConsumerNotFound", err)
	}
}
