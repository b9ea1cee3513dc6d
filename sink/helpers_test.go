package sink

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/clickedge/clickedge/sink/sinktest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// waitFor polls cond until it holds. The deadline only turns a hang into a
// failure; no test depends on how fast anything happens.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// newJS returns a JetStream on nc that, like production, forgets acks that
// never come.
func newJS(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(2*time.Second))
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	return js
}

// startJS starts an embedded server with the click stream and connects to it.
func startJS(t testing.TB) (*server.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	s := sinktest.RunServer(t, t.TempDir(), -1)
	nc := sinktest.Connect(t, sinktest.Port(s))
	js := newJS(t, nc)
	if err := EnsureStreams(testCtx(t), js, StreamConfig{}); err != nil {
		t.Fatalf("EnsureStreams: %v", err)
	}
	return s, nc, js
}

// testCtx is cancelled when the test ends.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// streamMsgs returns the number of messages in a stream.
func streamMsgs(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	st, err := js.Stream(testCtx(t), stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := st.Info(testCtx(t))
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	return info.State.Msgs
}

// runInBackground runs f until the test ends and fails the test if it
// returns an error.
func runInBackground(t testing.TB, f func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("background run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
