package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Shipper defaults.
const (
	DefaultShipBatch      = 512
	DefaultShipRetryMin   = 100 * time.Millisecond
	DefaultShipRetryMax   = 5 * time.Second
	DefaultShipAckTimeout = 5 * time.Second
)

// ShipperStats is a snapshot of a Shipper's counters.
type ShipperStats struct {
	// Published counts rows JetStream acknowledged (including acks that
	// reported a duplicate: the message is in the stream either way).
	Published uint64
	// PublishErrors counts row publishes that failed or were not
	// acknowledged in time; each is retried, never dropped.
	PublishErrors uint64
	// LastPublishUnixMilli is when the last acknowledged round finished; 0
	// before the first.
	LastPublishUnixMilli int64
}

// Shipper moves outbox rows to JetStream: it publishes a round of rows
// asynchronously with Nats-Msg-Id set to each row's MsgID, waits for the
// round's acks and deletes exactly the acknowledged rows. Everything else
// stays in the outbox and is published again after a backoff; since the
// message id is the same, JetStream drops the copy of a row whose ack was
// lost (within the stream's duplicate window).
//
// Create the JetStream with jetstream.WithPublishAsyncTimeout (AckTimeout or
// so): the shipper stops waiting for an ack after AckTimeout, but only that
// option makes the client forget an ack that never comes.
type Shipper struct {
	Outbox *Outbox
	JS     jetstream.JetStream
	Logger *slog.Logger
	// Batch is the number of rows per round; 0 means DefaultShipBatch.
	Batch int
	// RetryMin and RetryMax bound the exponential backoff after a round with
	// failed publishes; 0 means DefaultShipRetryMin / DefaultShipRetryMax.
	RetryMin, RetryMax time.Duration
	// AckTimeout is how long a round waits for its acks; 0 means
	// DefaultShipAckTimeout.
	AckTimeout time.Duration

	initOnce sync.Once
	mu       sync.Mutex
	progress chan struct{} // closed and replaced whenever rows were deleted or a pass ended
	kick     chan struct{}

	published     atomic.Uint64
	publishErrors atomic.Uint64
	lastPublish   atomic.Int64
}

var errDisconnected = errors.New("nats not connected")

func (s *Shipper) init() {
	s.initOnce.Do(func() {
		s.progress = make(chan struct{})
		s.kick = make(chan struct{}, 1)
	})
}

// signalProgress wakes every Flush waiting on the current progress channel.
func (s *Shipper) signalProgress() {
	s.mu.Lock()
	close(s.progress)
	s.progress = make(chan struct{})
	s.mu.Unlock()
}

func (s *Shipper) progressChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.progress
}

// Stats returns the shipper's counters.
func (s *Shipper) Stats() ShipperStats {
	return ShipperStats{
		Published:            s.published.Load(),
		PublishErrors:        s.publishErrors.Load(),
		LastPublishUnixMilli: s.lastPublish.Load(),
	}
}

// Flush asks a running Run to ship now and blocks until the outbox is empty
// (nil) or ctx ends (ctx's error, wrapped with the rows left). It does not
// ship by itself: without Run it only waits.
func (s *Shipper) Flush(ctx context.Context) error {
	s.init()
	for {
		ch := s.progressChan()
		rows := s.Outbox.Stats().Rows
		if rows == 0 {
			return nil
		}
		select {
		case s.kick <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("flush outbox: %d rows left: %w", rows, ctx.Err())
		}
	}
}

// Run ships until ctx ends, then returns nil. It tolerates NATS being down
// (at start or later): rows wait in the outbox until the connection is back.
// It returns an error only for a Shipper that is not set up (no Outbox, no
// JS, outbox not open).
func (s *Shipper) Run(ctx context.Context) error {
	if s.Outbox == nil || s.JS == nil {
		return fmt.Errorf("run shipper: Outbox and JS must be set")
	}
	notify := s.Outbox.Notify()
	if notify == nil {
		return fmt.Errorf("run shipper: %w", ErrOutboxClosed)
	}
	s.init()
	cfg := s.config()
	backoff := cfg.retryMin
	wasDown := false
	for {
		failed, err := s.pass(ctx, cfg)
		s.signalProgress()
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		switch {
		case errors.Is(err, errDisconnected):
			// Poll the connection state; reconnects are handled by nats.go.
			if !wasDown {
				cfg.log.Warn("nats not connected, rows wait in the outbox", "rows", s.Outbox.Stats().Rows)
				wasDown = true
			}
			wait = cfg.retryMin
		case err != nil || failed > 0:
			if err != nil {
				cfg.log.Error("ship outbox", "err", err)
			}
			wait = jitter(backoff)
			backoff = min(2*backoff, cfg.retryMax)
		default:
			if wasDown {
				cfg.log.Info("nats connected, outbox drained")
				wasDown = false
			}
			backoff = cfg.retryMin
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-notify:
		case <-s.kick:
		}
	}
}

type shipConfig struct {
	batch              int
	retryMin, retryMax time.Duration
	ackTimeout         time.Duration
	log                *slog.Logger
}

func (s *Shipper) config() shipConfig {
	c := shipConfig{batch: s.Batch, retryMin: s.RetryMin, retryMax: s.RetryMax, ackTimeout: s.AckTimeout, log: s.Logger}
	if c.batch <= 0 {
		c.batch = DefaultShipBatch
	}
	if c.retryMin <= 0 {
		c.retryMin = DefaultShipRetryMin
	}
	if c.retryMax <= 0 {
		c.retryMax = DefaultShipRetryMax
	}
	c.retryMax = max(c.retryMax, c.retryMin)
	if c.ackTimeout <= 0 {
		c.ackTimeout = DefaultShipAckTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "shipper")
	return c
}

// jitter spreads retries of many edges over [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// pass walks the outbox once from the start, round by round, so that rows
// that keep failing do not hide the rows behind them. It returns the number of
// rows that failed to publish.
func (s *Shipper) pass(ctx context.Context, cfg shipConfig) (int, error) {
	var after uint64
	failed := 0
	for ctx.Err() == nil {
		if nc := s.JS.Conn(); nc != nil && !nc.IsConnected() {
			return failed, errDisconnected
		}
		rows, err := s.Outbox.Peek(after, cfg.batch)
		if err != nil {
			return failed, err
		}
		if len(rows) == 0 {
			return failed, nil
		}
		acked, f, ferr := s.publishRound(ctx, cfg, rows)
		failed += f
		if f > 0 {
			cfg.log.Warn("publish round had failures", "rows", len(rows), "failed", f, "err", ferr)
		}
		if len(acked) > 0 {
			if err := s.Outbox.Delete(acked); err != nil {
				// The rows stay and are published again: dedupe absorbs it.
				return failed, err
			}
			s.signalProgress()
		}
		if len(acked) == 0 && f > 0 {
			// Nothing went through: back off rather than try the next round.
			return failed, nil
		}
		after = rows[len(rows)-1].Seq
	}
	return failed, nil
}

// publishRound publishes rows and waits up to the ack timeout for their acks.
// It returns the sequences of acknowledged rows, the number of failed rows and
// the first failure.
func (s *Shipper) publishRound(ctx context.Context, cfg shipConfig, rows []Row) ([]uint64, int, error) {
	futures := make([]jetstream.PubAckFuture, len(rows))
	failed := 0
	var firstErr error
	fail := func(err error) {
		failed++
		if firstErr == nil {
			firstErr = err
		}
	}
	for i := range rows {
		r := &rows[i]
		msg := &nats.Msg{Subject: r.Subject, Data: r.Data, Header: nats.Header{}}
		f, err := s.JS.PublishMsgAsync(msg, jetstream.WithMsgID(r.MsgID))
		if err != nil {
			fail(fmt.Errorf("publish row %d to %s: %w", r.Seq, r.Subject, err))
			continue
		}
		futures[i] = f
	}
	timer := time.NewTimer(cfg.ackTimeout)
	defer timer.Stop()
	acked := make([]uint64, 0, len(rows))
	expired := false
	for i, f := range futures {
		if f == nil {
			continue
		}
		if expired {
			// Take what has already arrived, without waiting any more.
			select {
			case <-f.Ok():
				acked = append(acked, rows[i].Seq)
			default:
				fail(fmt.Errorf("row %d: no ack within %s", rows[i].Seq, cfg.ackTimeout))
			}
			continue
		}
		select {
		case <-f.Ok():
			acked = append(acked, rows[i].Seq)
		case err := <-f.Err():
			fail(fmt.Errorf("row %d: %w", rows[i].Seq, err))
		case <-timer.C:
			expired = true
			fail(fmt.Errorf("row %d: no ack within %s", rows[i].Seq, cfg.ackTimeout))
		case <-ctx.Done():
			// Shutting down: keep the acks already in, the rest waits.
			for j := i; j < len(futures); j++ {
				if futures[j] == nil {
					continue
				}
				select {
				case <-futures[j].Ok():
					acked = append(acked, rows[j].Seq)
				default:
				}
			}
			s.count(len(acked), failed)
			return acked, failed, firstErr
		}
	}
	s.count(len(acked), failed)
	return acked, failed, firstErr
}

func (s *Shipper) count(acked, failed int) {
	if acked > 0 {
		s.published.Add(uint64(acked))
		s.lastPublish.Store(time.Now().UnixMilli())
	}
	if failed > 0 {
		s.publishErrors.Add(uint64(failed))
	}
}
