package main

// The fault suite of issue 6: real `clickedge edge`, `clickedge worker` and
// nats-server processes on loopback, bounded load driven from Go, faults
// injected (SIGKILL, a TCP proxy that cuts or half-blocks the edge's NATS
// link, an outbox size cap, a JetStream cluster losing nodes), then a
// reconciliation of every acknowledged click and conversion against the
// worker's state. One table at the end.
//
//	CLICKEDGE_CHAOS=1 go test -count=1 -run TestChaos -v ./cmd/clickedge/
//
// CHAOS_SECONDS (default 8) is the length of each scenario's fault phase;
// CHAOS_SECONDS=60 gives the full figures. Every loop is bounded in
// count and in time; every process is started by the test and ended by its
// own pid. The clock scenario (7) runs its edge in this process, the only
// way to skew an edge's clock without a product hook.
//
// Files: chaos_test.go (entry, table, self-check), chaos_proc_test.go
// (processes), chaos_load_test.go (load generator, NATS proxy),
// chaos_reconcile_test.go (settling, reading the worker, reconciliation),
// chaos_scenarios_test.go and chaos_clock_test.go (the scenarios).

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clickedge/clickedge/attribution"
	"github.com/clickedge/clickedge/sink"
)

const (
	chaosSecret     = "chaos-test-secret-0123456789abcdef"
	chaosAdminToken = "chaos-admin-token-0123456789abcdef"
	chaosUA         = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
	// chaosDefaultSeconds keeps the whole suite within about four minutes on
	// the project's 2-core machine.
	chaosDefaultSeconds = 8
)

// chaosEnv is what every scenario shares: the binaries built once and the
// length of a fault phase.
type chaosEnv struct {
	bin, natsBin string
	seconds      time.Duration
}

// dur is a fraction of the fault phase, at least lo.
func (e *chaosEnv) dur(frac float64, lo time.Duration) time.Duration {
	return max(time.Duration(float64(e.seconds)*frac), lo)
}

// chaosRow is one line of the table.
type chaosRow struct {
	scenario  string
	requests  int
	acked     int
	found     int
	lost      int
	dups      int
	p99       time.Duration // redirects answered during the fault; <0: not applicable
	result    string
	notes     []string
	failures  []string
	ran       bool
	startedAt time.Time
	took      time.Duration
}

func (r *chaosRow) note(format string, a ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, a...))
}

// fail records a failed check; the row's result becomes FAIL.
func (r *chaosRow) fail(format string, a ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, a...))
}

func TestChaos(t *testing.T) {
	if os.Getenv("CLICKEDGE_CHAOS") != "1" {
		t.Skip("the fault suite runs real processes for minutes: set CLICKEDGE_CHAOS=1 (make chaos)")
	}
	secs := chaosDefaultSeconds
	if s := os.Getenv("CHAOS_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 || n > 600 {
			t.Fatalf("CHAOS_SECONDS=%q: want whole seconds in 2..600", s)
		}
		secs = n
	}
	env := &chaosEnv{seconds: time.Duration(secs) * time.Second}
	dir := t.TempDir()
	env.bin = filepath.Join(dir, "clickedge")
	env.natsBin = filepath.Join(dir, "nats-server")
	for _, b := range []struct{ out, pkg string }{{env.bin, "."}, {env.natsBin, "github.com/nats-io/nats-server/v2"}} {
		var out []byte
		var err error
		// Other changes may land while the suite starts: retry a broken build briefly.
		for try := 0; try < 3; try++ {
			if out, err = exec.Command("go", "build", "-o", b.out, b.pkg).CombinedOutput(); err == nil {
				break
			}
			time.Sleep(10 * time.Second)
		}
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}

	scenarios := []struct {
		name string
		fn   func(*testing.T, *chaosEnv, *chaosRow)
	}{
		{"1 kill -9 edge", chaosEdgeKill},
		{"3 kill -9 worker", chaosWorkerKill},
		{"2 NATS unreachable", chaosNATSDown},
		{"8 rebuild", chaosRebuild},
		{"6 outbox cap", chaosOutboxCap},
		{"4 R3 cluster kills", chaosCluster},
		{"5 dup window", chaosDupWindow},
		{"7 clock jump", chaosClockJump},
	}
	t.Run("0_reconciler_self_check", chaosSelfCheck)
	var rows []*chaosRow
	for _, sc := range scenarios {
		row := &chaosRow{scenario: sc.name, p99: -1, startedAt: time.Now()}
		rows = append(rows, row)
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
			row.ran = true
			defer func() {
				row.took = time.Since(row.startedAt)
				switch {
				case row.result == "SKIP":
				case t.Failed() && len(row.failures) == 0:
					row.result = "ERROR"
				case len(row.failures) > 0:
					row.result = "FAIL"
					for _, f := range row.failures {
						t.Errorf("%s: %s", sc.name, f)
					}
				default:
					row.result = "PASS"
				}
			}()
			sc.fn(t, env, row)
		})
	}
	fmt.Print(chaosTable(rows, env))
}

func chaosTable(rows []*chaosRow, env *chaosEnv) string {
	var b strings.Builder
	raw, _ := os.ReadFile("/proc/loadavg")
	load := strings.Fields(string(raw))
	fmt.Fprintf(&b, "\nclickedge chaos: CHAOS_SECONDS=%d, load average %s\n", int(env.seconds/time.Second), strings.Join(load[:min(3, len(load))], " "))
	head := []string{"scenario", "requests", "acknowledged", "found at worker", "lost", "duplicates", "p99 during fault", "result", "took", "notes"}
	cells := [][]string{head}
	for _, r := range rows {
		if !r.ran {
			continue
		}
		p99 := "-"
		if r.p99 >= 0 {
			p99 = fmtMS(r.p99)
		}
		notes := strings.Join(r.notes, "; ")
		if len(r.failures) > 0 {
			notes = "FAILED: " + strings.Join(r.failures, "; ") + "; " + notes
		}
		cells = append(cells, []string{r.scenario, strconv.Itoa(r.requests), strconv.Itoa(r.acked), strconv.Itoa(r.found),
			strconv.Itoa(r.lost), strconv.Itoa(r.dups), p99, r.result, fmt.Sprintf("%.0fs", r.took.Seconds()), notes})
	}
	width := make([]int, len(head)-1)
	for _, c := range cells {
		for i := range width {
			width[i] = max(width[i], len(c[i]))
		}
	}
	for n, c := range cells {
		for i := range width {
			fmt.Fprintf(&b, "%-*s  ", width[i], c[i])
		}
		b.WriteString(c[len(c)-1] + "\n")
		if n == 0 {
			for i := range width {
				b.WriteString(strings.Repeat("-", width[i]) + "  ")
			}
			b.WriteString("-----\n")
		}
	}
	b.WriteString("acknowledged: clicks answered 302 (less those the edge counted as dropped) + conversions and refunds answered 2xx; " +
		"duplicates: a click, conversion, ledger entry or refund counted twice in the worker's state; p99: redirects answered during the fault\n")
	return b.String()
}

func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// chaosSelfCheck plants the traces of a double apply in a real store and in
// a ledger, and fails unless the reconciliation finds each of them: a suite
// whose checker is blind would pass everything.
func chaosSelfCheck(t *testing.T) {
	p := filepath.Join(t.TempDir(), "worker.db")
	s := attribution.NewStore(p)
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutClicks([]sink.Click{{ID: "a", MerchantID: "demo", TS: 5}, {ID: "b", MerchantID: "demo", TS: 6}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	st := &cxState{}
	readStore(t, p, st)
	if st.dups != 0 || len(st.clicks) != 2 {
		t.Fatalf("a clean store reads as %d clicks with duplicates %v", len(st.clicks), st.dupNotes)
	}
	db, err := bolt.Open(p, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		// Click "a" counted and indexed a second time, as a non-idempotent
		// apply of its redelivery would.
		if err := tx.Bucket([]byte("counts")).Put([]byte("clicks\x00"), binary.BigEndian.AppendUint64(nil, 3)); err != nil {
			return err
		}
		return tx.Bucket([]byte("idx_merchant")).Put(append(append([]byte("demo\x00"), binary.BigEndian.AppendUint64(nil, 9)...), 'a'), nil)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	st = &cxState{}
	readStore(t, p, st)
	if st.dups != 2 {
		t.Fatalf("planted a double count and a double index entry, found %d: %v", st.dups, st.dupNotes)
	}

	entry := attribution.LedgerEntry{MerchantID: "demo", Account: "alice", Kind: attribution.LedgerCommission,
		AmountMinor: 100, Currency: "USD", ConversionID: "conv_x", EventID: "e1"}
	again := entry
	again.EventID = "e2" // the same sale booked by a second event
	st = &cxState{
		conversions: map[string]sink.ConversionRecord{"x": {ID: "conv_x", UniqueID: "x", PartnerID: "alice", CommissionMinor: 100}},
		balances:    map[string]cxBalance{"alice": {BalanceMinor: 300, Ledger: []attribution.LedgerEntry{entry, entry, again}}},
	}
	checkLedgers(st)
	// entry twice; two commissions for conv_x; its commission 100 vs ledger 300.
	if st.dups != 3 {
		t.Fatalf("planted a repeated entry and a second commission, found %d: %v", st.dups, st.dupNotes)
	}
}
