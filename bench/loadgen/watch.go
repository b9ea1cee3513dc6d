package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// WatchResult is the click → worker part of the result.
type WatchResult struct {
	// Tracked is the number of 302s whose click id was captured.
	Tracked int `json:"tracked"`
	// InStream and Stored are how many of those were found in the stream
	// and acknowledged by the worker within -watch-wait.
	InStream int `json:"in_stream"`
	Stored   int `json:"stored"`
	// ToStream is 302 received → message stored in JetStream (its
	// timestamp); ToWorker is 302 received → worker's ack seen.
	ToStream Percentiles `json:"to_stream_us"`
	ToWorker Percentiles `json:"to_worker_us"`
	// AcksSeen counts every ack of the consumer seen, warm-up clicks included.
	AcksSeen int `json:"acks_seen"`
}

type ack struct {
	seq uint64
	at  time.Time
}

type watcher struct {
	nc       *nats.Conn
	sub      *nats.Subscription
	stream   string
	consumer string

	mu   sync.Mutex
	acks []ack
	last time.Time
}

func startWatch(url, stream, consumer string) (*watcher, error) {
	nc, err := nats.Connect(url, nats.Name("clickedge-bench-watch"))
	if err != nil {
		return nil, fmt.Errorf("watch: connect %s: %w", url, err)
	}
	w := &watcher{nc: nc, stream: stream, consumer: consumer}
	// Ack subjects: $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>
	// or, with a domain and account hash, $JS.ACK.<domain>.<acc>.<stream>.<consumer>.<delivered>.<stream seq>….
	w.sub, err = nc.Subscribe("$JS.ACK.>", func(m *nats.Msg) {
		now := time.Now()
		tok := strings.Split(m.Subject, ".")
		var s, c, seq string
		switch {
		case len(tok) == 9:
			s, c, seq = tok[2], tok[3], tok[5]
		case len(tok) >= 11:
			s, c, seq = tok[4], tok[5], tok[7]
		default:
			return
		}
		if s != stream || c != consumer {
			return
		}
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil {
			return
		}
		w.mu.Lock()
		w.acks = append(w.acks, ack{n, now})
		w.last = now
		w.mu.Unlock()
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("watch: subscribe to acks: %w", err)
	}
	// Many acks arrive in bursts: give the subscription room.
	_ = w.sub.SetPendingLimits(1<<22, 1<<30)
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("watch: flush: %w", err)
	}
	return w, nil
}

func (w *watcher) close() { w.nc.Close() }

// finish waits for the acks of the tracked clicks (bounded by wait; it
// stops early once 1 s passes without a new ack after the load), then maps
// stream sequences to click ids and computes the latencies.
func (w *watcher) finish(clicks []clickSeen, wait time.Duration, quiet bool) *WatchResult {
	res := &WatchResult{Tracked: len(clicks)}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		w.mu.Lock()
		n, last := len(w.acks), w.last
		w.mu.Unlock()
		if n >= len(clicks) && time.Since(last) > time.Second {
			break
		}
	}
	_ = w.sub.Unsubscribe()
	w.mu.Lock()
	acks := w.acks
	w.mu.Unlock()
	res.AcksSeen = len(acks)
	ackAt := make(map[uint64]time.Time, len(acks))
	for _, a := range acks {
		if _, dup := ackAt[a.seq]; !dup {
			ackAt[a.seq] = a.at
		}
	}

	// Stream sequence → click id and stream timestamp, read after the load
	// so that the measurement itself adds no consumer while it runs.
	type meta struct {
		seq uint64
		ts  time.Time
	}
	byID := make(map[string]meta, len(clicks))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, err := jetstream.New(w.nc)
	if err == nil {
		var st jetstream.Stream
		st, err = js.Stream(ctx, w.stream)
		if err == nil {
			info, ierr := st.Info(ctx)
			if ierr != nil {
				err = ierr
			} else if info.State.Msgs > 0 {
				err = w.readStream(ctx, js, info.State.FirstSeq, info.State.LastSeq, func(seq uint64, ts time.Time, data []byte) {
					var c struct {
						ID string `json:"id"`
					}
					if json.Unmarshal(data, &c) == nil && c.ID != "" {
						byID[c.ID] = meta{seq, ts}
					}
				})
			}
		}
	}
	if err != nil && !quiet {
		fmt.Fprintln(os.Stderr, "loadgen: watch: read stream:", err)
	}
	toStream, toWorker := newHist(), newHist()
	for _, c := range clicks {
		m, ok := byID[c.id]
		if !ok {
			continue
		}
		res.InStream++
		recordNS(toStream, m.ts.Sub(c.done))
		if at, ok := ackAt[m.seq]; ok {
			res.Stored++
			recordNS(toWorker, at.Sub(c.done))
		}
	}
	res.ToStream = percentiles(toStream)
	res.ToWorker = percentiles(toWorker)
	return res
}

func (w *watcher) readStream(ctx context.Context, js jetstream.JetStream, first, last uint64,
	fn func(seq uint64, ts time.Time, data []byte)) error {
	cons, err := js.OrderedConsumer(ctx, w.stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: first,
	})
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return err
	}
	defer it.Stop()
	done := make(chan error, 1)
	go func() {
		for {
			m, err := it.Next()
			if err != nil {
				done <- err
				return
			}
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			fn(md.Sequence.Stream, md.Timestamp, m.Data())
			if md.Sequence.Stream >= last {
				done <- nil
				return
			}
		}
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		it.Stop()
		<-done
		return ctx.Err()
	}
}
