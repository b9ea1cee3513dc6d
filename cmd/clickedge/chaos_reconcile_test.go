package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/clickedge/clickedge/attribution"
	"github.com/clickedge/clickedge/sink"
)

// ---- settling and reading the worker's state ----

// settle waits until every edge's outbox is empty and the worker's two
// consumers have nothing pending or unacknowledged.
func settle(t *testing.T, js jetstream.JetStream, limit time.Duration, edges ...*cxEdge) bool {
	t.Helper()
	stable := 0
	return cxWait(limit, func() bool {
		for _, e := range edges {
			if e.running() && e.outboxRows() != 0 {
				stable = 0
				return false
			}
		}
		for _, c := range []struct{ stream, durable string }{
			{sink.ClickStream, attribution.DefaultDurable},
			{sink.EventStream, attribution.DefaultDurable + attribution.DefaultEventDurableSuffix},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			cons, err := js.Consumer(ctx, c.stream, c.durable)
			var info *jetstream.ConsumerInfo
			if err == nil {
				info, err = cons.Info(ctx)
			}
			cancel()
			if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
				stable = 0
				return false
			}
		}
		stable++
		return stable >= 3
	})
}

// cxState is what the reconciliation reads from the worker: conversions and
// partner ledgers through the admin API, clicks and the integrity counters
// from its store file (opened read-only after the worker stopped).
type cxState struct {
	conversions map[string]sink.ConversionRecord // by unique id
	balances    map[string]cxBalance             // by partner
	clicks      map[string][]byte                // click id → stored JSON
	dupNotes    []string                         // what made dups
	dups        int
}

type cxBalance struct {
	BalanceMinor int64                     `json:"balance_minor"`
	PaidMinor    int64                     `json:"paid_minor"`
	Currency     string                    `json:"currency"`
	Ledger       []attribution.LedgerEntry `json:"ledger"`
}

// readAdmin reads every conversion of the demo merchant and the balances of
// the demo partners through the running worker's admin API.
func readAdmin(t *testing.T, w *cxWorker, st *cxState) {
	t.Helper()
	st.conversions = map[string]sink.ConversionRecord{}
	for offset := 0; offset < 1_000_000; offset += 100 {
		var page struct {
			Data  []sink.ConversionRecord `json:"data"`
			Total int                     `json:"total"`
		}
		code, err := w.adminGet(fmt.Sprintf("/admin/v1/merchants/demo/conversions?limit=100&offset=%d", offset), &page)
		if err != nil || code != 200 {
			t.Fatalf("admin list conversions at %d: %d %v", offset, code, err)
		}
		for _, c := range page.Data {
			if _, dup := st.conversions[c.UniqueID]; dup {
				st.dups++
				st.dupNotes = append(st.dupNotes, "conversion "+c.UniqueID+" listed twice")
			}
			st.conversions[c.UniqueID] = c
		}
		if offset+100 >= page.Total {
			if len(st.conversions) != page.Total {
				st.dupNotes = append(st.dupNotes, fmt.Sprintf("conversion total %d but %d listed", page.Total, len(st.conversions)))
				st.dups += max(0, page.Total-len(st.conversions))
			}
			break
		}
	}
	st.balances = map[string]cxBalance{}
	for _, p := range []string{"alice", "bob", "carol"} {
		var out struct {
			Data cxBalance `json:"data"`
		}
		if code, err := w.adminGet("/admin/v1/partners/"+p+"/balance", &out); err != nil || code != 200 {
			t.Fatalf("admin balance of %s: %d %v", p, code, err)
		}
		st.balances[p] = out.Data
	}
	checkLedgers(st)
}

// checkLedgers counts in st the duplicates a double apply leaves in the
// partners' ledgers and conversions.
func checkLedgers(st *cxState) {
	// A ledger entry booked twice: the same event booking the same kind on
	// the same conversion and account; a conversion earning commission twice.
	for p, b := range st.balances {
		seen := map[string]bool{}
		commissions := map[string]int{}
		var sum int64
		for _, e := range b.Ledger {
			k := strings.Join([]string{e.Account, e.Kind, e.ConversionID, e.EventID}, "|")
			if seen[k] {
				st.dups++
				st.dupNotes = append(st.dupNotes, "ledger entry booked twice: "+k)
			}
			seen[k] = true
			if e.Kind == attribution.LedgerCommission {
				if commissions[e.ConversionID]++; commissions[e.ConversionID] == 2 {
					st.dups++
					st.dupNotes = append(st.dupNotes, "two commissions for "+e.ConversionID)
				}
			}
			sum += e.AmountMinor
		}
		if sum != b.BalanceMinor {
			st.dups++
			st.dupNotes = append(st.dupNotes, fmt.Sprintf("%s: ledger sums to %d, balance says %d", p, sum, b.BalanceMinor))
		}
	}
	// Each conversion's commission is the sum of its ledger entries.
	byConv := map[string]int64{}
	for _, b := range st.balances {
		for _, e := range b.Ledger {
			if e.Kind != attribution.LedgerPayout {
				byConv[e.ConversionID] += e.AmountMinor
			}
		}
	}
	for _, c := range st.conversions {
		if c.PartnerID != "" && byConv[c.ID] != c.CommissionMinor {
			st.dups++
			st.dupNotes = append(st.dupNotes, fmt.Sprintf("conversion %s commission %d but ledger %d", c.UniqueID, c.CommissionMinor, byConv[c.ID]))
		}
	}
}

// readStore opens a stopped worker's store read-only: every click, and the
// duplicates that a double apply would leave (counters above the keys they
// count, an id indexed twice).
func readStore(t *testing.T, path string, st *cxState) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open worker store %s read-only: %v", path, err)
	}
	defer db.Close()
	st.clicks = map[string][]byte{}
	dup := func(format string, a ...any) {
		st.dups++
		if len(st.dupNotes) < 10 {
			st.dupNotes = append(st.dupNotes, fmt.Sprintf(format, a...))
		}
	}
	err = db.View(func(tx *bolt.Tx) error {
		clicks := tx.Bucket([]byte("clicks"))
		if clicks == nil {
			return fmt.Errorf("no clicks bucket")
		}
		_ = clicks.ForEach(func(k, v []byte) error {
			st.clicks[string(k)] = bytes.Clone(v)
			return nil
		})
		counts := tx.Bucket([]byte("counts"))
		if v := counts.Get([]byte("clicks\x00")); len(v) == 8 {
			if n := binary.BigEndian.Uint64(v); int(n) != len(st.clicks) {
				dup("click counter %d for %d stored clicks", n, len(st.clicks))
			}
		} else if len(st.clicks) > 0 {
			dup("no click counter for %d stored clicks", len(st.clicks))
		}
		// idx_merchant: merchant 0 ts(8) id — one entry per click.
		perID := map[string]int{}
		_ = tx.Bucket([]byte("idx_merchant")).ForEach(func(k, _ []byte) error {
			if i := bytes.IndexByte(k, 0); i >= 0 && len(k) > i+9 {
				perID[string(k[i+9:])]++
			}
			return nil
		})
		for id, n := range perID {
			if n > 1 {
				dup("click %s indexed %d times", id, n)
			}
		}
		if len(perID) != len(st.clicks) {
			dup("%d clicks indexed, %d stored", len(perID), len(st.clicks))
		}
		// Conversions: the listing counter of the merchant against the records.
		convs := 0
		_ = tx.Bucket([]byte("conversions")).ForEach(func(_, v []byte) error {
			if bytes.Contains(v, []byte(`"merchant_id":"demo"`)) {
				convs++
			}
			return nil
		})
		prefix := []byte("\x00demo\x00") // the merchant's unfiltered listing
		if v := tx.Bucket([]byte("conv_counts")).Get(prefix); len(v) == 8 {
			if n := binary.BigEndian.Uint64(v); int(n) != convs {
				dup("conversion counter %d for %d stored conversions", n, convs)
			}
		} else if convs > 0 {
			dup("no conversion counter for %d stored conversions", convs)
		}
		// idx_conversions: prefix created_at(8) id — once per conversion.
		perConv := map[string]int{}
		cur := tx.Bucket([]byte("idx_conversions")).Cursor()
		for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
			if len(k) > len(prefix)+8 {
				perConv[string(k[len(prefix)+8:])]++
			}
		}
		for id, n := range perConv {
			if n > 1 {
				dup("conversion %s listed %d times", id, n)
			}
		}
		if len(perConv) != convs {
			dup("%d conversions listed, %d stored", len(perConv), convs)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read worker store: %v", err)
	}
}

// bboltCheck runs bbolt's consistency check (what `bbolt check` does) on a
// file no process holds, and returns the problems found.
func bboltCheck(path string) []string {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return []string{err.Error()}
	}
	defer db.Close()
	var out []string
	_ = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			out = append(out, err.Error())
		}
		return nil
	})
	return out
}

// reconcile compares what the load saw acknowledged with the worker's state
// and fills the row's counts. dropped is the edge's count of clicks it
// redirected without storing (outbox full): exactly that many answered click
// ids may be missing, and they are not counted as acknowledged.
func reconcile(l *cxLoad, st *cxState, row *chaosRow, dropped int) (missingClicks []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	row.requests = l.redirects + l.convSent
	row.acked = len(l.clicks) - dropped + len(l.convAcked)
	for id := range l.clicks {
		if _, ok := st.clicks[id]; ok {
			row.found++
		} else {
			missingClicks = append(missingClicks, id)
		}
	}
	var missingConv []string
	for uid := range l.convAcked {
		if _, ok := st.conversions[uid]; ok {
			row.found++
		} else {
			missingConv = append(missingConv, uid)
		}
	}
	row.lost = row.acked - row.found
	if len(l.clicks) == 0 || len(l.convAcked) == 0 {
		row.fail("the load got %d clicks and %d conversions acknowledged: nothing to reconcile", len(l.clicks), len(l.convAcked))
	}
	if dropped > 0 && len(missingClicks) != dropped {
		row.fail("%d answered click ids missing but the edge counted %d dropped", len(missingClicks), dropped)
	}
	sort.Strings(missingClicks)
	sort.Strings(missingConv)
	if len(missingConv) > 0 {
		row.note("conversions lost: %v", missingConv[:min(5, len(missingConv))])
	}
	// Refunds: an acknowledged refund is applied once (and counts as an
	// acknowledged record); a refund never sent is never applied.
	for uid, acked := range l.refunds {
		if !acked {
			continue
		}
		row.acked++
		if c, ok := st.conversions[uid]; ok && c.RefundedMinor == 500 {
			row.found++
		} else {
			row.lost++
			row.note("refund of %s lost", uid)
		}
	}
	for uid, c := range st.conversions {
		_, sent := l.refunds[uid]
		switch {
		case c.RefundedMinor > 500:
			st.dups++
			st.dupNotes = append(st.dupNotes, fmt.Sprintf("%s refunded %d minor by one refund of 500", uid, c.RefundedMinor))
		case !sent && c.RefundedMinor != 0:
			row.fail("%s refunded %d minor without a refund", uid, c.RefundedMinor)
		}
		if strings.HasPrefix(uid, l.prefix+"-") && c.AmountMinor != 1000 {
			row.fail("conversion %s amount %d, want 1000", uid, c.AmountMinor)
		}
	}
	row.dups += st.dups
	if st.dups > 0 {
		row.note("duplicates: %s", strings.Join(st.dupNotes[:min(5, len(st.dupNotes))], ", "))
	}
	if row.lost > 0 {
		row.fail("%d acknowledged records lost", row.lost)
	}
	if row.dups > 0 {
		row.fail("%d duplicates in the worker's state", row.dups)
	}
	other := 0
	for _, n := range l.nonFound {
		other += n
	}
	if len(l.convOther) > 0 || len(l.convRefuse) > 0 || other > 0 || l.redirErrs > 0 {
		row.note("unanswered: redirects %d errors + %d non-302, conversions %d 503 + %d other", l.redirErrs, other, len(l.convRefuse), len(l.convOther))
	}
	return missingClicks
}

// finish settles, reads the admin API, runs beforeStop (if any), stops the
// worker and reads its store.
func finish(t *testing.T, js jetstream.JetStream, w *cxWorker, beforeStop func(), edges ...*cxEdge) *cxState {
	t.Helper()
	if !settle(t, js, 90*time.Second, edges...) {
		t.Logf("the system did not settle in 90s; reconciling what is there")
	}
	st := &cxState{}
	readAdmin(t, w, st)
	if beforeStop != nil {
		beforeStop()
	}
	w.stop(30 * time.Second)
	readStore(t, filepath.Join(w.data, "worker.db"), st)
	return st
}

// streamDups counts the messages of a stream whose Nats-Msg-Id an earlier
// message of the stream already carried; complete is false when the scan
// did not reach the stream's last message within a minute.
func streamDups(t *testing.T, js jetstream.JetStream, stream string) (msgs, dups int, complete bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return 0, 0, true
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("ordered consumer of %s: %v", stream, err)
	}
	seen := map[string]bool{}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			continue // the ordered consumer recreates itself
		}
		for m := range batch.Messages() {
			msgs++
			id := m.Headers().Get(jetstream.MsgIDHeader)
			if seen[id] {
				dups++
			}
			seen[id] = true
			if meta, err := m.Metadata(); err == nil && meta.Sequence.Stream >= last {
				return msgs, dups, true
			}
		}
	}
	return msgs, dups, false
}

// scanNote describes a stream scan for the table.
func scanNote(msgs int, complete bool) string {
	if complete {
		return strconv.Itoa(msgs)
	}
	return fmt.Sprintf("%d (scan incomplete)", msgs)
}

// killLoop calls kill(i) after each life (see life; default 1.5-3 s) and
// restart after pause, until until. It returns the number of kills and the
// mean time restart took.
func killLoop(until time.Time, life func(i int) time.Duration, pause func() time.Duration, kill func(i int), restart func()) (int, time.Duration) {
	if life == nil {
		life = func(int) time.Duration {
			return 1500*time.Millisecond + time.Duration(rand.Int64N(int64(1500*time.Millisecond)))
		}
	}
	kills := 0
	var restarts time.Duration
	for {
		wait := life(kills)
		if time.Now().Add(wait).After(until) {
			if kills == 0 {
				return 0, 0
			}
			return kills, restarts / time.Duration(kills)
		}
		time.Sleep(wait)
		kill(kills)
		kills++
		time.Sleep(pause())
		t0 := time.Now()
		restart()
		restarts += time.Since(t0)
	}
}
