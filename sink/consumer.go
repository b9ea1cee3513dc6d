package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Consumer defaults.
const (
	DefaultConsumerBatch         = 256
	DefaultConsumerAckWait       = 30 * time.Second
	DefaultConsumerMaxAckPending = 20000
	DefaultConsumerNakDelay      = time.Second
	DefaultConsumerFetchWait     = 5 * time.Second
)

const (
	consumerRetryMin = 100 * time.Millisecond
	consumerRetryMax = 5 * time.Second
)

// Consumer is the worker's durable pull consumer with explicit acks: a
// message is acked only after the handler that received it returned nil
// (having committed), so every message is handled at least once. The
// consumer is created (or updated to this configuration) by Run itself, with
// unlimited deliveries: a message that keeps failing is retried, never dropped.
// A handler that wants to drop a message for good (unknown version) calls
// Term on it; Run's later Ack of that message is a harmless no-op.
type Consumer struct {
	JS            jetstream.JetStream
	Stream        string
	Durable       string
	FilterSubject string // empty means the whole stream
	// Batch is the most messages handed to one handle call; 0 means
	// DefaultConsumerBatch.
	Batch int
	// AckWait is how long the server waits for an ack before redelivering;
	// 0 means DefaultConsumerAckWait. It must exceed the slowest handle call.
	AckWait time.Duration
	// MaxAckPending caps delivered-but-unacked messages; 0 means
	// DefaultConsumerMaxAckPending.
	MaxAckPending int
	// NakDelay is how long a failed batch waits before redelivery; 0 means
	// DefaultConsumerNakDelay.
	NakDelay time.Duration
	// FetchWait bounds one pull request on an idle stream; 0 means
	// DefaultConsumerFetchWait.
	FetchWait time.Duration
	Logger    *slog.Logger
}

func (c *Consumer) config() jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:       c.Durable,
		Description:   "clickedge worker",
		FilterSubject: c.FilterSubject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultConsumerAckWait
	}
	if cfg.MaxAckPending <= 0 {
		cfg.MaxAckPending = DefaultConsumerMaxAckPending
	}
	return cfg
}

// Run fetches batches and hands them to handle until ctx ends, then returns
// nil. When handle returns nil every message of the batch is acked; on error
// they are Nak'ed with NakDelay and come back. NATS being down, the stream
// missing or the consumer being deleted are retried with backoff. Run returns
// an error only for a Consumer that is not set up.
func (c *Consumer) Run(ctx context.Context, handle func(ctx context.Context, msgs []jetstream.Msg) error) error {
	if c.JS == nil || c.Stream == "" || c.Durable == "" || handle == nil {
		return fmt.Errorf("run consumer: JS, Stream, Durable and handle must be set")
	}
	batchSize := c.Batch
	if batchSize <= 0 {
		batchSize = DefaultConsumerBatch
	}
	nakDelay := c.NakDelay
	if nakDelay <= 0 {
		nakDelay = DefaultConsumerNakDelay
	}
	fetchWait := c.FetchWait
	if fetchWait <= 0 {
		fetchWait = DefaultConsumerFetchWait
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "consumer", "stream", c.Stream, "durable", c.Durable)
	cfg := c.config()

	var cons jetstream.Consumer
	backoff := consumerRetryMin
	failing := false
	// trouble logs the first of a run of failures and backs off.
	trouble := func(msg string, err error) bool {
		if !failing {
			log.Warn(msg, "err", err)
			failing = true
		}
		t := time.NewTimer(jitter(backoff))
		defer t.Stop()
		backoff = min(2*backoff, consumerRetryMax)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		if cons == nil {
			var err error
			cons, err = c.JS.CreateOrUpdateConsumer(ctx, c.Stream, cfg)
			if err != nil {
				cons = nil
				if ctx.Err() != nil || !trouble("create consumer", err) {
					return nil
				}
				continue
			}
		}
		msgs, err := c.fetch(ctx, cons, batchSize, fetchWait)
		if ctx.Err() != nil {
			// Shutting down: hand back what arrived at once instead of
			// letting it wait out AckWait.
			for _, m := range msgs {
				_ = m.Nak()
			}
			return nil
		}
		if err != nil && len(msgs) == 0 {
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
				errors.Is(err, jetstream.ErrStreamNotFound) {
				cons = nil
			}
			if !trouble("fetch", err) {
				return nil
			}
			continue
		}
		if failing {
			log.Info("consuming again")
			failing = false
		}
		backoff = consumerRetryMin
		if len(msgs) == 0 {
			continue
		}
		if err := handle(ctx, msgs); err != nil {
			log.Error("handle batch failed, redelivering", "messages", len(msgs), "delay", nakDelay, "err", err)
			for _, m := range msgs {
				_ = m.NakWithDelay(nakDelay)
			}
			continue
		}
		var ackErr error
		for _, m := range msgs {
			if err := m.Ack(); err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) && ackErr == nil {
				ackErr = err
			}
		}
		if ackErr != nil {
			// Redelivered after AckWait; the worker is idempotent.
			log.Warn("ack failed", "messages", len(msgs), "err", ackErr)
		}
	}
	return nil
}

// fetch pulls up to n messages: what is available at once or, on an idle
// stream, the first message to arrive within wait plus whatever came with it.
// A plain Fetch(n) would hold a lone message until n arrived or wait expired.
func (c *Consumer) fetch(ctx context.Context, cons jetstream.Consumer, n int, wait time.Duration) ([]jetstream.Msg, error) {
	msgs := make([]jetstream.Msg, 0, n)
	msgs, err := c.collect(msgs, func() (jetstream.MessageBatch, error) { return cons.FetchNoWait(n) })
	if err != nil || len(msgs) > 0 {
		return msgs, err
	}
	fctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	msgs, err = c.collect(msgs, func() (jetstream.MessageBatch, error) { return cons.Fetch(1, jetstream.FetchContext(fctx)) })
	if err != nil || len(msgs) == 0 || n == 1 || ctx.Err() != nil {
		return msgs, err
	}
	return c.collect(msgs, func() (jetstream.MessageBatch, error) { return cons.FetchNoWait(n - 1) })
}

// collect appends the messages of one pull request to msgs.
func (c *Consumer) collect(msgs []jetstream.Msg, pull func() (jetstream.MessageBatch, error)) ([]jetstream.Msg, error) {
	batch, err := pull()
	if err != nil {
		return msgs, fmt.Errorf("fetch from %s/%s: %w", c.Stream, c.Durable, err)
	}
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return msgs, fmt.Errorf("fetch from %s/%s: %w", c.Stream, c.Durable, err)
	}
	return msgs, nil
}

// Pending returns the messages the consumer still has to handle: those not
// yet delivered plus those delivered and not yet acked.
func (c *Consumer) Pending(ctx context.Context) (uint64, error) {
	cons, err := c.JS.Consumer(ctx, c.Stream, c.Durable)
	if err != nil {
		return 0, fmt.Errorf("consumer %s/%s pending: %w", c.Stream, c.Durable, err)
	}
	info := cons.CachedInfo()
	return info.NumPending + uint64(max(info.NumAckPending, 0)), nil
}
