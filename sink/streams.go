package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream defaults.
const (
	DefaultStreamMaxAge     = 30 * 24 * time.Hour
	DefaultStreamDuplicates = 10 * time.Minute
	// CatalogHistory is how many revisions of the catalog the KV keeps.
	CatalogHistory = 5
)

// StreamConfig sizes the click stream. Zero fields take the defaults.
type StreamConfig struct {
	// Replicas is the stream's replication factor (1..5); 0 means 1.
	Replicas int
	// MaxAge is how long clicks stay in the stream (the replay horizon for
	// rebuilding a worker); 0 means DefaultStreamMaxAge.
	MaxAge time.Duration
	// Duplicates is the Nats-Msg-Id dedupe window; 0 means
	// DefaultStreamDuplicates. It must not exceed MaxAge.
	Duplicates time.Duration
}

func (c StreamConfig) withDefaults() (StreamConfig, error) {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultStreamMaxAge
	}
	if c.Duplicates == 0 {
		c.Duplicates = DefaultStreamDuplicates
	}
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return c, fmt.Errorf("replicas %d: want 1..5", c.Replicas)
	case c.MaxAge < 0 || c.Duplicates < 0:
		return c, fmt.Errorf("negative max age %s or duplicates window %s", c.MaxAge, c.Duplicates)
	case c.Duplicates > c.MaxAge:
		return c, fmt.Errorf("duplicates window %s longer than max age %s", c.Duplicates, c.MaxAge)
	}
	return c, nil
}

// EnsureStreams creates the click stream (ClickStream on
// ClickSubjectPrefix+">", file storage, limits retention) and the merchant
// event stream (EventStream on EventSubjectPrefix+">", no age limit), or
// updates them to cfg. Calling it again with the same cfg changes nothing.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", ClickStream, err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        ClickStream,
		Description: "clickedge clicks, subject " + ClickSubjectPrefix + "<merchant id>",
		Subjects:    []string{ClickSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxAge:      cfg.MaxAge,
		Duplicates:  cfg.Duplicates,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", ClickStream, err)
	}
	// Merchant events carry money: the stream keeps them all, so that the
	// worker's store and ledger can be rebuilt by replaying it.
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        EventStream,
		Description: "clickedge merchant events (conversions, refunds, updates, status, customers, credits), subject " + EventSubjectPrefix + "<merchant id>",
		Subjects:    []string{EventSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.Duplicates,
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", EventStream, err)
	}
	return nil
}

// EnsureCatalogKV creates the catalog bucket (CatalogBucket, file storage,
// CatalogHistory revisions) or updates it, and returns it. replicas 0 means 1.
func EnsureCatalogKV(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	if replicas == 0 {
		replicas = 1
	}
	if replicas < 1 || replicas > 5 {
		return nil, fmt.Errorf("ensure kv %s: replicas %d: want 1..5", CatalogBucket, replicas)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      CatalogBucket,
		Description: "clickedge catalog: links, merchant key hashes, campaign rules",
		History:     CatalogHistory,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure kv %s: %w", CatalogBucket, err)
	}
	return kv, nil
}

// PutCatalog stores data as the current catalog and returns its revision.
func PutCatalog(ctx context.Context, kv jetstream.KeyValue, data []byte) (uint64, error) {
	rev, err := kv.Put(ctx, CatalogKey, data)
	if err != nil {
		return 0, fmt.Errorf("put catalog (%d bytes) in %s: %w", len(data), CatalogBucket, err)
	}
	return rev, nil
}

const (
	watchRetryMin = 250 * time.Millisecond
	watchRetryMax = 5 * time.Second
)

var errWatchClosed = errors.New("catalog watcher closed")

// WatchCatalog follows CatalogKey and calls apply(data, revision) for the
// current value and every later put, one call at a time, until ctx ends; then
// it returns nil. It never gives up: while NATS is down or the bucket does not
// exist yet it retries with backoff, and it watches again when the watch ends
// (as nats.go does on connection loss) and whenever the connection is
// re-established, since a watch can otherwise stall after a server restart.
// The same revision is never applied twice in a row; deletes and purges of the
// key are ignored (the edge keeps serving its last catalog). data belongs to
// apply, which may keep it.
func WatchCatalog(ctx context.Context, nc *nats.Conn, apply func(data []byte, revision uint64), logger *slog.Logger) error {
	if nc == nil || apply == nil {
		return fmt.Errorf("watch catalog: nil connection or apply")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("component", "catalog_watch")
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("watch catalog: %w", err)
	}
	connected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(connected)
	var last uint64
	backoff := watchRetryMin
	failing := false
	for {
		// Connection events from before this attempt are stale.
		for drained := false; !drained; {
			select {
			case <-connected:
			default:
				drained = true
			}
		}
		watching, err := watchCatalogOnce(ctx, js, connected, apply, &last, func() {
			if failing {
				log.Info("watching catalog again", "bucket", CatalogBucket)
				failing = false
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errReconnected) {
			log.Info("nats reconnected, watching catalog again")
			backoff = watchRetryMin
			continue
		}
		if watching {
			backoff = watchRetryMin
		}
		if !failing {
			log.Warn("catalog watch interrupted, retrying", "err", err)
			failing = true
		} else {
			log.Debug("catalog watch retry failed", "err", err)
		}
		t := time.NewTimer(jitter(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-connected:
			t.Stop()
		}
		backoff = min(2*backoff, watchRetryMax)
	}
}

var errReconnected = errors.New("nats reconnected")

// watchCatalogOnce binds to the bucket and applies updates until the watcher
// ends, the connection is re-established, or ctx ends. watching reports
// whether the watch was established.
func watchCatalogOnce(ctx context.Context, js jetstream.JetStream, connected <-chan nats.Status, apply func([]byte, uint64), last *uint64, established func()) (watching bool, err error) {
	kv, err := js.KeyValue(ctx, CatalogBucket)
	if err != nil {
		return false, fmt.Errorf("bind kv %s: %w", CatalogBucket, err)
	}
	w, err := kv.Watch(ctx, CatalogKey)
	if err != nil {
		return false, fmt.Errorf("watch %s/%s: %w", CatalogBucket, CatalogKey, err)
	}
	defer func() { _ = w.Stop() }()
	established()
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case <-connected:
			return true, errReconnected
		case e, ok := <-w.Updates():
			if !ok {
				return true, errWatchClosed
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut || e.Revision() == *last {
				continue
			}
			*last = e.Revision()
			apply(e.Value(), e.Revision())
		}
	}
}
