package attribution

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/clickedge/clickedge/money"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// Defaults of the worker's event side.
const (
	// DefaultEventDurableSuffix is appended to the worker's Durable to name
	// the event consumer when EventDurable is empty, so that the default is
	// "clickedge-worker-events".
	DefaultEventDurableSuffix = "-events"
	// DefaultClickWait bounds how long a batch of events naming clicks the
	// store does not hold yet waits for the click consumer to catch up.
	DefaultClickWait = 10 * time.Second
	// DefaultApproveInterval is how often the worker looks for pending
	// conversions whose hold period has passed.
	DefaultApproveInterval = time.Second
)

const (
	// approveBatch bounds the automatic approvals published per look.
	approveBatch = 1000
	// republishAfter is how long an automatic approval that has not been
	// applied yet waits before it is published again (under the same id,
	// so the stream or the store drops the extra copy).
	republishAfter = time.Minute
	// clickPoll is how often the click barrier asks JetStream.
	clickPoll = 20 * time.Millisecond
)

// Metric label values of events that never reached the engine.
const (
	labelUnknown = "unknown"
	// OutcomeInvalid labels event messages terminated undecoded: bad JSON,
	// unknown version, no payload, or a merchant that is not the subject's.
	OutcomeInvalid = "invalid"
)

var _ sink.Backend = (*Worker)(nil)

// handleEvents applies one batch of event messages in one transaction, in
// stream order, then wakes the EventResult calls waiting for them. Messages
// that can never be applied are terminated and counted; the batch's error,
// if any, is the store's (or a panic of the engine), and redelivery may
// cure it.
func (w *Worker) handleEvents(ctx context.Context, m *workerMetrics, msgs []jetstream.Msg) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("apply %d event messages: engine panicked: %v", len(msgs), p)
		}
	}()
	evs := make([]sink.Event, 0, len(msgs))
	for _, msg := range msgs {
		ev, err := sink.DecodeEvent(msg.Data())
		// Partitioning (and tenant isolation) rests on the subject: an
		// event must travel on its own merchant's subject, whatever
		// mapping put a partition token in front of it.
		if err == nil && !strings.HasSuffix(msg.Subject(), "."+ev.MerchantID) {
			err = fmt.Errorf("event %s of merchant %q arrived on subject %s", ev.ID, ev.MerchantID, msg.Subject())
		}
		if err != nil {
			w.terminateEvent(m, msg, kindLabel(ev.Kind), err)
			continue
		}
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		return nil
	}
	w.awaitClicks(ctx, evs)
	res, err := w.Store.applyEvents(w.index(), w.Minter, evs)
	if err != nil {
		return fmt.Errorf("handle %d event messages: %w", len(msgs), err)
	}
	m.eventCommits.Inc()
	for _, r := range res {
		m.events.WithLabelValues(kindLabel(r.kind), dialectLabel(r.dialect), r.outcome).Inc()
		if r.attributedBy != "" {
			m.conversions.WithLabelValues(dialectLabel(r.dialect), r.attributedBy).Inc()
		}
		for _, e := range r.ledger {
			m.ledger.WithLabelValues(e.Kind).Inc()
			m.ledgerMinor.WithLabelValues(e.Kind, currencyLabel(e.Currency)).Add(float64(max(e.AmountMinor, -e.AmountMinor)))
		}
	}
	for i := range evs {
		w.waiters.notify(evs[i].MerchantID, evs[i].ID)
	}
	return nil
}

func (w *Worker) terminateEvent(m *workerMetrics, msg jetstream.Msg, kind string, cause error) {
	m.events.WithLabelValues(kind, "unknown", OutcomeInvalid).Inc()
	var seq uint64
	if meta, err := msg.Metadata(); err == nil {
		seq = meta.Sequence.Stream
	}
	w.log.Warn("terminating undecodable event message", "subject", msg.Subject(), "seq", seq, "err", cause)
	if err := msg.Term(); err != nil {
		w.log.Warn("terminate event message", "subject", msg.Subject(), "seq", seq, "err", err)
	}
}

var eventKinds = []sink.EventKind{sink.KindConversion, sink.KindRefund, sink.KindUpdate, sink.KindStatus, sink.KindCustomer, sink.KindCredit}

// kindLabel bounds the kind label to the known kinds.
func kindLabel(k sink.EventKind) string {
	for _, known := range eventKinds {
		if k == known {
			return string(k)
		}
	}
	return labelUnknown
}

var dialects = []string{sink.DialectPartnac, sink.DialectPartnero, sink.DialectAffilync, sink.DialectPixel, sink.DialectAdmin}

// dialectLabel bounds the dialect label to the known dialects.
func dialectLabel(d string) string {
	for _, known := range dialects {
		if d == known {
			return d
		}
	}
	return labelUnknown
}

// currencyLabel bounds the currency label to ISO 4217 codes.
func currencyLabel(code string) string {
	if _, err := money.LookupAnyCurrency(code); err == nil {
		return code
	}
	return labelUnknown
}

// awaitClicks holds a batch whose conversions name verified clicks that the
// store does not hold yet until the click consumer has caught up with the
// click stream as it is now (or ClickWait passes). Clicks and events travel
// on separate streams: without this, a conversion could overtake its own
// click, above all when a new worker replays both streams from the start,
// and a replay would not reproduce the store.
func (w *Worker) awaitClicks(ctx context.Context, evs []sink.Event) {
	wait := w.ClickWait
	if wait == 0 {
		wait = DefaultClickWait
	}
	if wait < 0 {
		return
	}
	missing, err := w.Store.missingClicks(w.Minter, evs)
	if err != nil || !missing {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	stream, err := w.JS.Stream(cctx, sink.ClickStream)
	if err != nil {
		w.log.Debug("click barrier: read click stream", "err", err)
		return
	}
	target := stream.CachedInfo().State.LastSeq
	for {
		if cons, err := w.JS.Consumer(cctx, sink.ClickStream, w.Durable); err == nil {
			info := cons.CachedInfo()
			if info.AckFloor.Stream >= target || info.NumPending == 0 && info.NumAckPending == 0 {
				return
			}
		}
		select {
		case <-cctx.Done():
			if ctx.Err() == nil {
				w.log.Warn("conversions name clicks the store does not hold and the click consumer did not catch up; applying without them", "waited", wait)
			}
			return
		case <-time.After(clickPoll):
		}
	}
}

// missingClicks reports whether a conversion among evs names a click id that
// verifies but is not stored, following first-click chains.
func (s *Store) missingClicks(minter *redirect.Minter, evs []sink.Event) (bool, error) {
	if minter == nil || s.db == nil {
		return false, nil
	}
	missing := false
	err := s.db.View(func(tx *bolt.Tx) error {
		clicks := tx.Bucket(bucketClicks)
		a := &applier{tx: tx}
		for i := range evs {
			c := evs[i].Conversion
			if evs[i].Kind != sink.KindConversion || c == nil {
				continue
			}
			for _, id := range [...]string{c.ClickID, c.CookieClickID} {
				for range maxClickChain {
					if id == "" || len(id) > MaxKeyPartLen {
						break
					}
					if _, err := minter.Verify(id); err != nil {
						break
					}
					if clicks.Get([]byte(id)) == nil {
						missing = true
						return nil
					}
					click, err := a.click(id)
					if err != nil || click == nil {
						break
					}
					id = click.PrevClickID
				}
			}
		}
		return nil
	})
	return missing, err
}

// --- automatic approval ---------------------------------------------------

// approveLoop publishes the automatic approvals of conversions whose hold
// has passed. The approval is an event on the stream like any other, so
// that replaying the stream reproduces it exactly.
func (w *Worker) approveLoop(ctx context.Context, m *workerMetrics, events *sink.Consumer) {
	interval := w.ApproveInterval
	if interval <= 0 {
		interval = DefaultApproveInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	published := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.approveDue(ctx, m, events, published)
	}
}

func (w *Worker) approveDue(ctx context.Context, m *workerMetrics, events *sink.Consumer, published map[string]time.Time) {
	now := w.Now()
	due, err := w.Store.dueHolds(now.UnixMilli(), approveBatch)
	if err != nil {
		w.log.Warn("read due holds", "err", err)
		return
	}
	if len(due) == 0 {
		return
	}
	// A worker still replaying the stream must not approve what a later
	// event in it rejects or approves.
	if n, err := events.Pending(ctx); err != nil || n > 0 {
		return
	}
	for k, at := range published {
		if time.Since(at) > republishAfter {
			delete(published, k)
		}
	}
	for _, d := range due {
		ev := sink.Event{
			V: sink.EventVersion, ID: sink.EventID(d.merchant, sink.KindStatus, d.conversion+":auto-approve"),
			Kind: sink.KindStatus, TS: now.UnixMilli(), Edge: "worker", Dialect: sink.DialectAdmin, MerchantID: d.merchant,
			Status: &sink.StatusEvent{ConversionID: d.conversion, Status: sink.StatusApproved, Note: "approved automatically after the hold period"},
		}
		if _, ok := published[ev.ID]; ok {
			continue
		}
		data, err := sink.AppendEvent(nil, &ev)
		if err != nil {
			w.log.Error("encode automatic approval", "err", err)
			continue
		}
		if _, err := w.JS.Publish(ctx, sink.EventSubjectPrefix+d.merchant, data, jetstream.WithMsgID(ev.ID)); err != nil {
			if ctx.Err() == nil {
				w.log.Warn("publish automatic approval", "conversion", d.conversion, "err", err)
			}
			return
		}
		published[ev.ID] = time.Now()
		m.autoApprovals.Inc()
	}
}

type dueHold struct{ merchant, conversion string }

// dueHolds returns up to limit held conversions due at or before now.
func (s *Store) dueHolds(now int64, limit int) ([]dueHold, error) {
	if s.db == nil {
		return nil, ErrStoreClosed
	}
	var out []dueHold
	bound := appendTS(nil, now+1)
	err := s.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketHolds).Cursor()
		for k, v := cur.First(); k != nil && len(out) < limit; k, v = cur.Next() {
			if len(k) <= 8 {
				continue
			}
			if bytes.Compare(k[:8], bound) >= 0 {
				break
			}
			out = append(out, dueHold{merchant: string(v), conversion: string(k[8:])})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read due holds: %w", err)
	}
	return out, nil
}

// --- the conversion API (sink.Backend) ----------------------------------

// waiterSet wakes EventResult calls when their event is applied.
type waiterSet struct {
	mu sync.Mutex
	m  map[string][]chan struct{}
}

func waiterKey(merchantID, eventID string) string { return merchantID + "\x00" + eventID }

func (s *waiterSet) add(merchantID, eventID string) chan struct{} {
	ch := make(chan struct{})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]chan struct{}{}
	}
	k := waiterKey(merchantID, eventID)
	s.m[k] = append(s.m[k], ch)
	return ch
}

func (s *waiterSet) remove(merchantID, eventID string, ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := waiterKey(merchantID, eventID)
	list := s.m[k]
	for i, c := range list {
		if c == ch {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.m, k)
	} else {
		s.m[k] = list
	}
}

func (s *waiterSet) notify(merchantID, eventID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := waiterKey(merchantID, eventID)
	for _, ch := range s.m[k] {
		close(ch)
	}
	delete(s.m, k)
}

// wakeAll wakes every waiter, so that none outlives the worker.
func (s *waiterSet) wakeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, list := range s.m {
		for _, ch := range list {
			close(ch)
		}
		delete(s.m, k)
	}
}

// errStopped answers API calls that reach a stopped worker.
var errStopped = &sink.APIError{Code: sink.APICodeWorkerUnavailable, Message: "the attribution worker has stopped"}

// read runs fn, an API read of the store, unless the worker has stopped.
func (w *Worker) read(fn func() error) error {
	w.apiMu.RLock()
	defer w.apiMu.RUnlock()
	if w.apiStopped {
		return errStopped
	}
	return fn()
}

// EventResult returns the stored result of the merchant's event, waiting up
// to wait (clamped to 0..sink.MaxResultWait) for the worker to apply it: the
// wait ends as soon as the batch holding the event commits. An event not
// applied by then, or another merchant's, gives *sink.APIError code
// sink.APICodePending. A repeat of an applied event keeps its original
// result (an edge can tell a repeat from its own event's time: the result's
// conversion was created earlier).
func (w *Worker) EventResult(ctx context.Context, merchantID, eventID string, wait time.Duration) (sink.EventResult, error) {
	if merchantID == "" || eventID == "" {
		return sink.EventResult{}, &sink.APIError{Code: CodeInvalidRequest, Message: "merchant_id and event_id are required"}
	}
	wait = min(max(wait, 0), sink.MaxResultWait)
	ch := w.waiters.add(merchantID, eventID)
	defer w.waiters.remove(merchantID, eventID, ch)
	var (
		r  sink.EventResult
		ok bool
	)
	look := func() error {
		return w.read(func() (err error) {
			r, ok, err = w.Store.EventResult(merchantID, eventID)
			return err
		})
	}
	if err := look(); err != nil || ok {
		return r, err
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ch:
		case <-t.C:
			// One last look below: the commit may have raced the timer.
		case <-ctx.Done():
			return sink.EventResult{}, fmt.Errorf("event result %s: %w", eventID, ctx.Err())
		}
		if err := look(); err != nil || ok {
			return r, err
		}
	}
	return sink.EventResult{}, &sink.APIError{Code: sink.APICodePending, Message: "the worker has not processed event " + eventID + " yet"}
}

// ListConversions answers a conversion query from the store. A query without
// a merchant or with a negative limit or offset gets *sink.APIError code
// CodeInvalidRequest.
func (w *Worker) ListConversions(_ context.Context, q sink.ConversionQuery) (sink.ConversionPage, error) {
	var page sink.ConversionPage
	err := w.read(func() (err error) {
		page, err = w.Store.ListConversions(q)
		return err
	})
	if errors.Is(err, ErrInvalidQuery) {
		return sink.ConversionPage{}, &sink.APIError{Code: CodeInvalidRequest, Message: err.Error()}
	}
	return page, err
}

// Conversion returns the merchant's conversion by worker id or unique id;
// *sink.APIError code sink.APICodeNotFound when the merchant has none,
// another merchant's conversion included.
func (w *Worker) Conversion(_ context.Context, merchantID, ref string) (sink.ConversionRecord, error) {
	var (
		r  sink.ConversionRecord
		ok bool
	)
	err := w.read(func() (err error) {
		r, ok, err = w.Store.Conversion(merchantID, ref)
		return err
	})
	if err != nil {
		return r, err
	}
	if !ok {
		return r, &sink.APIError{Code: sink.APICodeNotFound, Message: "no conversion " + ref}
	}
	return r, nil
}

// Customer returns the merchant's customer by key; *sink.APIError code
// sink.APICodeNotFound when the merchant has none.
func (w *Worker) Customer(_ context.Context, merchantID, key string) (sink.CustomerRecord, error) {
	var (
		r  sink.CustomerRecord
		ok bool
	)
	err := w.read(func() (err error) {
		r, ok, err = w.Store.Customer(merchantID, key)
		return err
	})
	if err != nil {
		return r, err
	}
	if !ok {
		return r, &sink.APIError{Code: sink.APICodeNotFound, Message: "no customer " + key}
	}
	return r, nil
}

// PartnerBalance returns the sum of the partner's ledger entries (what the
// merchant owes the partner now), the sum moved out by payouts, and the
// currency; see Store.PartnerBalance.
func (w *Worker) PartnerBalance(merchantID, partnerID string) (balanceMinor, paidMinor int64, currency string, err error) {
	err = w.read(func() (err error) {
		balanceMinor, paidMinor, currency, err = w.Store.PartnerBalance(merchantID, partnerID)
		return err
	})
	return balanceMinor, paidMinor, currency, err
}

// Ledger returns the partner's ledger entries in booking order (pass
// CustomerAccount(key) for a customer's refer-a-friend balance).
func (w *Worker) Ledger(merchantID, partnerID string) ([]LedgerEntry, error) {
	var out []LedgerEntry
	err := w.read(func() (err error) {
		out, err = w.Store.Ledger(merchantID, partnerID)
		return err
	})
	return out, err
}

// Backup writes a consistent copy of the store to out (see Store.Backup).
func (w *Worker) Backup(out io.Writer, size func(int64)) (n int64, err error) {
	err = w.read(func() error {
		n, err = w.Store.Backup(out, size)
		return err
	})
	return n, err
}
