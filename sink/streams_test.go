package sink

import (
	"context"
	"testing"
	"time"

	"github.com/clickedge/clickedge/sink/sinktest"
	"github.com/nats-io/nats.go/jetstream"
)

func TestEnsureStreams(t *testing.T) {
	_, _, js := startJS(t) // already ensured once with defaults
	ctx := testCtx(t)
	tests := []struct {
		name    string
		cfg     StreamConfig
		wantErr bool
		want    StreamConfig
	}{
		{"defaults again", StreamConfig{}, false, StreamConfig{Replicas: 1, MaxAge: DefaultStreamMaxAge, Duplicates: DefaultStreamDuplicates}},
		{"update", StreamConfig{MaxAge: 48 * time.Hour, Duplicates: time.Hour}, false, StreamConfig{Replicas: 1, MaxAge: 48 * time.Hour, Duplicates: time.Hour}},
		{"too many replicas", StreamConfig{Replicas: 7}, true, StreamConfig{}},
		{"window longer than age", StreamConfig{MaxAge: time.Hour, Duplicates: 2 * time.Hour}, true, StreamConfig{}},
		{"negative age", StreamConfig{MaxAge: -time.Hour}, true, StreamConfig{}},
	}
	for _, tt := range tests {
		err := EnsureStreams(ctx, js, tt.cfg)
		if (err != nil) != tt.wantErr {
			t.Fatalf("%s: EnsureStreams error = %v, want error %v", tt.name, err, tt.wantErr)
		}
		if tt.wantErr {
			continue
		}
		st, err := js.Stream(ctx, ClickStream)
		if err != nil {
			t.Fatal(err)
		}
		c := st.CachedInfo().Config
		got := StreamConfig{Replicas: c.Replicas, MaxAge: c.MaxAge, Duplicates: c.Duplicates}
		if got != tt.want {
			t.Errorf("%s: stream config = %+v, want %+v", tt.name, got, tt.want)
		}
		if c.Storage != jetstream.FileStorage || len(c.Subjects) != 1 || c.Subjects[0] != ClickSubjectPrefix+">" {
			t.Errorf("%s: storage %v subjects %v", tt.name, c.Storage, c.Subjects)
		}
	}
}

func TestEnsureCatalogKV(t *testing.T) {
	_, _, js := startJS(t)
	ctx := testCtx(t)
	for range 2 { // idempotent
		kv, err := EnsureCatalogKV(ctx, js, 0)
		if err != nil {
			t.Fatalf("EnsureCatalogKV: %v", err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Bucket() != CatalogBucket || st.History() != CatalogHistory {
			t.Fatalf("bucket %s history %d, want %s history %d", st.Bucket(), st.History(), CatalogBucket, CatalogHistory)
		}
	}
	if _, err := EnsureCatalogKV(ctx, js, 9); err == nil {
		t.Fatal("EnsureCatalogKV with 9 replicas succeeded")
	}
}

type catalogUpdate struct {
	data string
	rev  uint64
}

// watch runs WatchCatalog in the background and returns its updates.
func watch(t *testing.T, port int) <-chan catalogUpdate {
	t.Helper()
	nc := sinktest.Connect(t, port)
	updates := make(chan catalogUpdate, 16)
	runInBackground(t, func(ctx context.Context) error {
		return WatchCatalog(ctx, nc, func(data []byte, rev uint64) {
			updates <- catalogUpdate{string(data), rev}
		}, nil)
	})
	return updates
}

func nextUpdate(t *testing.T, updates <-chan catalogUpdate) catalogUpdate {
	t.Helper()
	select {
	case u := <-updates:
		return u
	case <-time.After(30 * time.Second):
		t.Fatal("no catalog update")
		return catalogUpdate{}
	}
}

func TestWatchCatalogInitialAndUpdates(t *testing.T) {
	s, _, js := startJS(t)
	ctx := testCtx(t)
	kv, err := EnsureCatalogKV(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	rev1, err := PutCatalog(ctx, kv, []byte("v1"))
	if err != nil {
		t.Fatal(err)
	}
	updates := watch(t, sinktest.Port(s))
	if got, want := nextUpdate(t, updates), (catalogUpdate{"v1", rev1}); got != want {
		t.Fatalf("initial = %+v, want %+v", got, want)
	}
	rev2, err := PutCatalog(ctx, kv, []byte("v2"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := nextUpdate(t, updates), (catalogUpdate{"v2", rev2}); got != want {
		t.Fatalf("update = %+v, want %+v", got, want)
	}
	// A delete is not applied: the next update is the next put.
	if err := kv.Delete(ctx, CatalogKey); err != nil {
		t.Fatal(err)
	}
	rev3, err := PutCatalog(ctx, kv, []byte("v3"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := nextUpdate(t, updates), (catalogUpdate{"v3", rev3}); got != want {
		t.Fatalf("after delete = %+v, want %+v", got, want)
	}
}

func TestWatchCatalogBeforeServerAndAcrossRestart(t *testing.T) {
	port, dir := sinktest.FreePort(t), t.TempDir()
	updates := watch(t, port) // NATS not up yet

	s := sinktest.RunServer(t, dir, port)
	nc := sinktest.Connect(t, port)
	js := newJS(t, nc)
	ctx := testCtx(t)
	kv, err := EnsureCatalogKV(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	rev1, err := PutCatalog(ctx, kv, []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := nextUpdate(t, updates), (catalogUpdate{"first", rev1}); got != want {
		t.Fatalf("once up = %+v, want %+v", got, want)
	}

	sinktest.Restart(t, s)
	var rev2 uint64
	waitFor(t, "put after restart", func() bool {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		kv, err := js.KeyValue(pctx, CatalogBucket)
		if err != nil {
			return false
		}
		rev2, err = PutCatalog(pctx, kv, []byte("second"))
		return err == nil
	})
	if got, want := nextUpdate(t, updates), (catalogUpdate{"second", rev2}); got != want {
		t.Fatalf("after restart = %+v, want %+v", got, want)
	}
}
