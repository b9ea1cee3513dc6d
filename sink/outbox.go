package sink

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DefaultOutboxMaxBytes is the cap on pending payload bytes of an Outbox that
// sets no MaxBytes.
const DefaultOutboxMaxBytes int64 = 1 << 30

// Errors returned by Outbox.
var (
	// ErrOutboxFull means an Append would push the pending payload bytes past
	// MaxBytes; nothing of that Append was written.
	ErrOutboxFull = errors.New("outbox full")
	// ErrOutboxClosed means the outbox is not open (never opened, or closed).
	ErrOutboxClosed = errors.New("outbox closed")
	// ErrInvalidRecord means a Record can never be published (empty or
	// malformed subject, empty or malformed message id); nothing was written.
	ErrInvalidRecord = errors.New("invalid outbox record")
)

var (
	rowsBucket  = []byte("rows")
	blobsBucket = []byte("blobs")
)

// Record is one message waiting in the outbox: published to Subject with the
// Nats-Msg-Id header MsgID so that JetStream drops a re-publish of it.
type Record struct {
	Subject string
	MsgID   string
	Data    []byte
}

// Row is a Record as stored in the outbox, with its append-order sequence and
// the wall-clock time of the commit that stored it.
type Row struct {
	Seq uint64
	Record
	AppendedUnixMilli int64
}

// OutboxStats is a snapshot of an Outbox.
type OutboxStats struct {
	// Rows and Bytes count the rows waiting in the file and their payload
	// (Record.Data) bytes.
	Rows, Bytes int64
	// OldestUnixMilli is when the oldest waiting row was committed; 0 when empty.
	OldestUnixMilli int64
	// Commits counts bbolt transactions that stored appended rows, Appended
	// the rows they stored, Deleted the rows removed by Delete. They count
	// since Open.
	Commits, Appended, Deleted uint64
	// Lost counts records accepted by Enqueue whose commit then failed:
	// they are not in the outbox and nobody was told. Since Open.
	Lost uint64
}

// Outbox is the edge's durable queue of messages bound for JetStream, kept in
// a bbolt file. Append returns only once the records are committed (and, unless
// NoSync, fsynced); concurrent Appends share one commit (group commit).
// Enqueue (async capture) queues records for the same commits without
// waiting for them. Rows leave the outbox only through Delete, which the
// Shipper calls after JetStream acknowledged them; deletes join the group
// commits too, so that one writer owns the file and the shipper costs no
// fsync of its own.
//
// Loss window: a record passed to Append is durable when Append returns nil.
// A record passed to Enqueue is durable only once the next commit ends: at
// most CommitInterval plus one commit (a few milliseconds) after Enqueue
// returned. A crash or power loss in that window loses it; a clean Close
// commits everything queued first.
//
// Set the exported fields before Open and do not change them afterwards.
type Outbox struct {
	// Path is the bbolt file; its directory is created if missing.
	Path string
	// MaxBytes caps the pending payload bytes (stored plus being appended);
	// 0 means DefaultOutboxMaxBytes. An Append that would exceed it fails
	// with ErrOutboxFull and writes nothing.
	MaxBytes int64
	// NoSync skips fsync on commit. It breaks the promise that an
	// acknowledged Append survives a power loss: for tests and benchmarks only.
	NoSync bool
	// CommitInterval is the least time from the start of one commit to the
	// start of the next: what queues meanwhile shares the next commit. 0
	// commits as soon as the previous commit ends (the fsync itself is the
	// window in which the next batch gathers). A larger interval means fewer,
	// larger commits, a longer wait for Append and a longer loss window for
	// Enqueue.
	CommitInterval time.Duration
	// Logger receives commit failures; nil discards.
	Logger *slog.Logger

	mu      sync.Mutex
	db      *bolt.DB
	state   int
	cur     *commitBatch
	spare   batchBufs // the buffers of the last committed batch, for reuse
	pending int64     // stored + queued payload bytes: what MaxBytes caps
	stats   OutboxStats
	log     *slog.Logger

	wake   chan struct{}
	stop   chan struct{} // closed by Close: the writer stops waiting out CommitInterval
	done   chan struct{}
	notify chan struct{}

	// Owned by the writer goroutine: commit buffers reused across commits
	// (bbolt holds on to keys and values only until the commit ends).
	keyBuf, rowBuf []byte

	// commitHook, if set by a test, runs before each commit.
	commitHook func()
}

const (
	outboxNew = iota
	outboxOpen
	outboxClosed
)

// commitBatch is what queued between two commits. Its waiters block on done
// and then read err, which the writer sets before closing done; they touch
// nothing else once the writer has taken the batch, so the writer recycles
// the buffers (batchBufs) of a committed batch.
type commitBatch struct {
	batchBufs
	done chan struct{}
	err  error
}

// batchBufs holds the records of a batch copied into arena chunks, so that
// an Append or Enqueue neither allocates (once the chunks exist) nor keeps the
// caller's memory, and a large backlog grows by new chunks instead of
// copying what it holds.
type batchBufs struct {
	// chunks hold each record's tail: its row encoding after the commit
	// time (subject, msg id and data with their lengths). A tail never spans
	// two chunks.
	chunks [][]byte
	// free are emptied chunks kept for reuse.
	free [][]byte
	// tails locate the records' tails in chunks.
	tails []tailRef
	// entries are the Append and Enqueue calls, in order.
	entries []batchEntry
	// dels are the sequences Delete calls asked to remove.
	dels []uint64
	// size is the payload bytes of the records not withdrawn; async counts
	// the records of Enqueue calls (nobody waits for their verdict).
	size  int64
	async int
}

type tailRef struct{ chunk, start, end int }

type batchEntry struct {
	first, n  int // the entry's records are tails[first:first+n]
	size      int64
	cancelled bool
}

// arenaChunk is the size of an arena chunk; a larger record gets a chunk
// of its own size.
const arenaChunk = 64 << 10

// maxKeptBuf bounds the memory a batch's buffers (and the writer's commit
// buffers) keep for the next batch, so that one burst does not pin its
// memory for good.
const maxKeptBuf = 4 << 20

func (b *batchBufs) empty() bool { return len(b.entries) == 0 && len(b.dels) == 0 }

// reset empties the buffers, keeping chunks and capacity up to maxKeptBuf.
func (b *batchBufs) reset() {
	kept := len(b.free) * arenaChunk
	for _, c := range b.chunks {
		if cap(c) == arenaChunk && kept+arenaChunk <= maxKeptBuf {
			b.free = append(b.free, c[:0])
			kept += arenaChunk
		}
	}
	clear(b.chunks)
	b.chunks = b.chunks[:0]
	if cap(b.tails) > maxKeptBuf/64 {
		b.tails, b.entries = nil, nil
	}
	b.tails, b.entries, b.dels = b.tails[:0], b.entries[:0], b.dels[:0]
	b.size, b.async = 0, 0
}

// tail returns the bytes of a record's tail.
func (b *batchBufs) tail(t tailRef) []byte { return b.chunks[t.chunk][t.start:t.end] }

// add copies recs into the batch as one entry and returns its index.
func (b *batchBufs) add(recs []Record, size int64) int {
	first := len(b.tails)
	for i := range recs {
		need := rowTailLen(&recs[i])
		last := len(b.chunks) - 1
		if last < 0 || cap(b.chunks[last])-len(b.chunks[last]) < need {
			var c []byte
			if n := len(b.free); n > 0 && need <= arenaChunk {
				c, b.free = b.free[n-1], b.free[:n-1]
			} else {
				c = make([]byte, 0, max(arenaChunk, need))
			}
			b.chunks = append(b.chunks, c)
			last++
		}
		c := b.chunks[last]
		start := len(c)
		c = appendRowTail(c, &recs[i])
		b.chunks[last] = c
		b.tails = append(b.tails, tailRef{last, start, len(c)})
	}
	b.entries = append(b.entries, batchEntry{first: first, n: len(recs), size: size})
	b.size += size
	return len(b.entries) - 1
}

func newCommitBatch(bufs batchBufs) *commitBatch {
	return &commitBatch{batchBufs: bufs, done: make(chan struct{})}
}

// NewOutbox returns an unopened Outbox on path with default settings.
func NewOutbox(path string) *Outbox {
	return &Outbox{Path: path, MaxBytes: DefaultOutboxMaxBytes}
}

// Open opens (creating if needed) the bbolt file, counts the rows already in
// it so that Stats is right after a restart, and starts the commit writer.
// It fails if the file holds a row this version cannot decode, rather than
// start an outbox that could never drain.
func (o *Outbox) Open() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state != outboxNew {
		return fmt.Errorf("open outbox %s: already opened", o.Path)
	}
	if o.Path == "" {
		return fmt.Errorf("open outbox: empty path")
	}
	if o.MaxBytes < 0 {
		return fmt.Errorf("open outbox %s: negative MaxBytes %d", o.Path, o.MaxBytes)
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultOutboxMaxBytes
	}
	o.log = o.Logger
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	o.log = o.log.With("component", "outbox")
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o700); err != nil {
		return fmt.Errorf("open outbox %s: create directory: %w", o.Path, err)
	}
	db, err := bolt.Open(o.Path, 0o600, &bolt.Options{
		// A second process holding the file lock must fail loudly, not hang.
		Timeout: 2 * time.Second,
		NoSync:  o.NoSync,
		// Rows are appended and deleted all day: the hashmap freelist stays
		// fast under fragmentation, and not persisting it saves a page write
		// per commit (as etcd and containerd do).
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if err != nil {
		return fmt.Errorf("open outbox %s: %w", o.Path, err)
	}
	var rows, size int64
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(blobsBucket); err != nil {
			return fmt.Errorf("create blobs bucket: %w", err)
		}
		b, err := tx.CreateBucketIfNotExists(rowsBucket)
		if err != nil {
			return fmt.Errorf("create rows bucket: %w", err)
		}
		return b.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("row key %x: want 8 bytes", k)
			}
			rv, err := parseRow(v)
			if err != nil {
				return fmt.Errorf("row %d: %w", binary.BigEndian.Uint64(k), err)
			}
			rows++
			size += int64(len(rv.data))
			return nil
		})
	})
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("open outbox %s: %w", o.Path, err)
	}
	o.db = db
	o.state = outboxOpen
	o.cur = newCommitBatch(batchBufs{})
	o.pending = size
	o.stats = OutboxStats{Rows: rows, Bytes: size}
	o.wake = make(chan struct{}, 1)
	o.stop = make(chan struct{})
	o.done = make(chan struct{})
	o.notify = make(chan struct{}, 1)
	go o.writer()
	return nil
}

// Close lets the writer commit what is already queued, stops it and closes
// the file. Appends after Close fail with ErrOutboxClosed. Closing twice is a
// no-op.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.state != outboxOpen {
		o.state = outboxClosed
		o.mu.Unlock()
		return nil
	}
	o.state = outboxClosed
	o.mu.Unlock()
	close(o.stop)
	o.kick()
	<-o.done
	if err := o.db.Close(); err != nil {
		return fmt.Errorf("close outbox %s: %w", o.Path, err)
	}
	return nil
}

func (o *Outbox) kick() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Append stores recs in one commit shared with whatever else is queued, and
// returns nil only once that commit is durable. It returns an error, having
// written nothing, when a record is invalid (ErrInvalidRecord), the cap would
// be exceeded (ErrOutboxFull), the outbox is closed (ErrOutboxClosed), the
// commit fails, or ctx ends before the writer took the records. Once the
// writer has taken them, Append waits for the commit's verdict even if ctx
// ends, so that a nil error always means durable and an error never does.
// The records are copied: the caller may reuse their memory once Append
// returns. Append does not allocate (beyond the batch's buffers growing).
func (o *Outbox) Append(ctx context.Context, recs ...Record) error {
	b, idx, err := o.queue(recs, false)
	if err != nil || b == nil {
		return err
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
	}
	o.mu.Lock()
	if o.cur == b {
		// Not taken by the writer yet: withdraw, nothing is written.
		e := &b.entries[idx]
		e.cancelled = true
		b.size -= e.size
		o.pending -= e.size
		o.mu.Unlock()
		return fmt.Errorf("append to outbox: %w", ctx.Err())
	}
	o.mu.Unlock()
	<-b.done
	return b.err
}

// Enqueue queues recs for the next commit and returns at once, without
// waiting for it: the records are durable only when that commit ends (see
// the loss window in the Outbox documentation). It fails, having queued
// nothing, for the reasons Append fails before the commit: an invalid
// record, the cap, a closed outbox. A commit that fails later loses the
// records; it is logged and counted in OutboxStats.Lost. The records are
// copied before Enqueue returns. Enqueue does not allocate (beyond the
// batch's buffers growing).
func (o *Outbox) Enqueue(recs ...Record) error {
	_, _, err := o.queue(recs, true)
	return err
}

// queue validates recs and copies them into the current batch. It returns
// a nil batch, and no error, for an empty recs.
func (o *Outbox) queue(recs []Record, async bool) (*commitBatch, int, error) {
	var size int64
	for i := range recs {
		if err := recs[i].validate(); err != nil {
			return nil, 0, fmt.Errorf("append to outbox: record %d: %w", i, err)
		}
		size += int64(len(recs[i].Data))
	}
	o.mu.Lock()
	if o.state != outboxOpen {
		o.mu.Unlock()
		return nil, 0, fmt.Errorf("append to outbox: %w", ErrOutboxClosed)
	}
	if len(recs) == 0 {
		o.mu.Unlock()
		return nil, 0, nil
	}
	if o.pending+size > o.MaxBytes {
		pending := o.pending
		o.mu.Unlock()
		return nil, 0, fmt.Errorf("append %d records (%d bytes) to outbox holding %d of %d bytes: %w",
			len(recs), size, pending, o.MaxBytes, ErrOutboxFull)
	}
	o.pending += size
	b := o.cur
	first := b.empty()
	idx := b.add(recs, size)
	if async {
		b.async += len(recs)
	}
	o.mu.Unlock()
	if first {
		o.kick()
	}
	return b, idx, nil
}

// writer is the one goroutine that writes the file: it takes everything
// queued (appends and deletes), commits it in one transaction, releases the
// waiters and starts over with what queued meanwhile, at once or, with a
// CommitInterval, once the interval since the previous commit's start has
// passed.
func (o *Outbox) writer() {
	defer close(o.done)
	var timer *time.Timer
	var lastStart time.Time
	for {
		o.mu.Lock()
		b := o.cur
		closing := o.state == outboxClosed
		if b.empty() {
			o.mu.Unlock()
			if closing {
				return
			}
			<-o.wake
			continue
		}
		if o.CommitInterval > 0 && !closing {
			if d := o.CommitInterval - time.Since(lastStart); d > 0 {
				o.mu.Unlock()
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-o.stop:
					timer.Stop()
				}
				continue
			}
		}
		o.cur = newCommitBatch(o.spare)
		o.spare = batchBufs{}
		o.mu.Unlock()
		lastStart = time.Now()
		o.commit(b)
		if cap(o.rowBuf) > maxKeptBuf {
			o.keyBuf, o.rowBuf = nil, nil
		}
		bufs := b.batchBufs
		b.batchBufs = batchBufs{}
		bufs.reset()
		o.mu.Lock()
		o.spare = bufs
		o.mu.Unlock()
	}
}

func (o *Outbox) commit(b *commitBatch) {
	if o.commitHook != nil {
		o.commitHook()
	}
	var n, encLen int
	for _, e := range b.entries {
		if e.cancelled {
			continue
		}
		n += e.n
		for _, t := range b.tails[e.first : e.first+e.n] {
			encLen += t.end - t.start
		}
	}
	var dels []uint64
	if len(b.dels) > 0 {
		slices.Sort(b.dels)
		dels = slices.Compact(b.dels)
	}
	if n == 0 && len(dels) == 0 {
		close(b.done)
		return
	}
	now := time.Now().UnixMilli()
	// bbolt keeps references to keys and values until the commit ends: each
	// gets its own region of buffers sized before the first Put, reused by
	// the next commit.
	rowHead := 1 + uvarintLen(zigzag(now))
	keys := growBuf(&o.keyBuf, 8*n)
	buf := growBuf(&o.rowBuf, encLen+n*rowHead)[:0]
	var delRows, delSize int64
	err := o.db.Update(func(tx *bolt.Tx) error {
		delRows, delSize = 0, 0
		bk := tx.Bucket(rowsBucket)
		var dk [8]byte
		if len(dels) > 0 {
			// One seek per row: the cursor finds the row and deletes it.
			c := bk.Cursor()
			for _, s := range dels {
				binary.BigEndian.PutUint64(dk[:], s)
				k, v := c.Seek(dk[:])
				if k == nil || !bytes.Equal(k, dk[:]) {
					continue
				}
				rv, err := parseRow(v)
				if err != nil {
					return fmt.Errorf("row %d: %w", s, err)
				}
				if err := c.Delete(); err != nil {
					return fmt.Errorf("delete row %d: %w", s, err)
				}
				delRows++
				delSize += int64(len(rv.data))
			}
		}
		if n == 0 {
			return nil
		}
		// Keys only ever grow: fill pages completely instead of half.
		bk.FillPercent = 1.0
		seq := bk.Sequence()
		i := 0
		for _, e := range b.entries {
			if e.cancelled {
				continue
			}
			for _, t := range b.tails[e.first : e.first+e.n] {
				seq++
				k := keys[i*8 : i*8+8 : i*8+8]
				binary.BigEndian.PutUint64(k, seq)
				start := len(buf)
				buf = append(buf, rowVersion)
				buf = binary.AppendVarint(buf, now)
				buf = append(buf, b.tail(t)...)
				if err := bk.Put(k, buf[start:len(buf):len(buf)]); err != nil {
					return fmt.Errorf("put row %d: %w", seq, err)
				}
				i++
			}
		}
		if err := bk.SetSequence(seq); err != nil {
			return fmt.Errorf("set sequence %d: %w", seq, err)
		}
		return nil
	})
	o.mu.Lock()
	if err != nil {
		o.pending -= b.size
		o.stats.Lost += uint64(b.async)
	} else {
		if n > 0 {
			o.stats.Rows += int64(n)
			o.stats.Bytes += b.size
			o.stats.Commits++
			o.stats.Appended += uint64(n)
		}
		o.stats.Rows -= delRows
		o.stats.Bytes -= delSize
		o.stats.Deleted += uint64(delRows)
		o.pending -= delSize
	}
	o.mu.Unlock()
	if err != nil {
		b.err = fmt.Errorf("commit %d records and %d deletes to outbox %s: %w", n, len(dels), o.Path, err)
		o.log.Error("outbox commit failed", "records", n, "async_records_lost", b.async, "deletes", len(dels), "err", err)
	}
	close(b.done)
	if err == nil && n > 0 {
		select {
		case o.notify <- struct{}{}:
		default:
		}
	}
}

// growBuf returns (*p)[:n], growing *p first if its capacity is short.
func growBuf(p *[]byte, n int) []byte {
	if cap(*p) < n {
		*p = make([]byte, n, n+n/4)
	}
	return (*p)[:n]
}

// Notify returns a channel that receives (without blocking the writer, at
// most one pending signal) after each commit that added rows. It is meant
// for one reader, the Shipper; nil before Open.
func (o *Outbox) Notify() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.notify
}

// openDB returns the database if the outbox is open.
func (o *Outbox) openDB() (*bolt.DB, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.state != outboxOpen {
		return nil, ErrOutboxClosed
	}
	return o.db, nil
}

// Stats returns counters and the age of the oldest row; zero values when the
// outbox is not open.
func (o *Outbox) Stats() OutboxStats {
	o.mu.Lock()
	st := o.stats
	db := o.db
	open := o.state == outboxOpen
	o.mu.Unlock()
	if !open {
		return st
	}
	// A failed read (closed meanwhile) leaves OldestUnixMilli at 0.
	_ = db.View(func(tx *bolt.Tx) error {
		_, v := tx.Bucket(rowsBucket).Cursor().First()
		if v == nil {
			return nil
		}
		rv, err := parseRow(v)
		if err != nil {
			return err
		}
		st.OldestUnixMilli = rv.appended
		return nil
	})
	return st
}

// Peek returns up to max rows with Seq > after, in append order, as copies
// that stay valid after the call. max <= 0 returns nothing.
func (o *Outbox) Peek(after uint64, max int) ([]Row, error) {
	if max <= 0 {
		return nil, nil
	}
	db, err := o.openDB()
	if err != nil {
		return nil, fmt.Errorf("peek outbox after %d: %w", after, err)
	}
	var rows []Row
	err = db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(rowsBucket).Cursor()
		var start [8]byte
		if after == ^uint64(0) {
			return nil
		}
		binary.BigEndian.PutUint64(start[:], after+1)
		// The rows' data share arenas, and a subject equal to the previous
		// row's is shared too, so that a round of the shipper costs a few
		// allocations rather than three per row.
		var arena []byte
		var subject string
		for k, v := c.Seek(start[:]); k != nil && len(rows) < max; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			rv, err := parseRow(v)
			if err != nil {
				return fmt.Errorf("row %d: %w", seq, err)
			}
			if string(rv.subject) != subject {
				subject = string(rv.subject)
			}
			if arena == nil || cap(arena)-len(arena) < len(rv.data) {
				size := 64 << 10
				if len(rv.data) > size {
					size = len(rv.data)
				}
				arena = make([]byte, 0, size)
			}
			start := len(arena)
			arena = append(arena, rv.data...)
			if rows == nil {
				n := 1024
				if max < n {
					n = max
				}
				rows = make([]Row, 0, n)
			}
			rows = append(rows, Row{
				Seq:               seq,
				Record:            Record{Subject: subject, MsgID: string(rv.msgID), Data: arena[start:len(arena):len(arena)]},
				AppendedUnixMilli: rv.appended,
			})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("peek outbox %s after %d: %w", o.Path, after, err)
	}
	return rows, nil
}

// Delete removes the rows with the given sequences in one durable commit,
// the next group commit of the writer (shared with appends). Sequences that
// are absent (already deleted) are ignored, so repeating a Delete is
// harmless.
func (o *Outbox) Delete(seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	o.mu.Lock()
	if o.state != outboxOpen {
		o.mu.Unlock()
		return fmt.Errorf("delete %d outbox rows: %w", len(seqs), ErrOutboxClosed)
	}
	b := o.cur
	first := b.empty()
	b.dels = append(b.dels, seqs...)
	o.mu.Unlock()
	if first {
		o.kick()
	}
	<-b.done
	if b.err != nil {
		return fmt.Errorf("delete %d outbox rows: %w", len(seqs), b.err)
	}
	return nil
}

// PutBlob durably stores data under name in a side bucket that Peek and Stats
// ignore (the edge keeps its last catalog there).
func (o *Outbox) PutBlob(name string, data []byte) error {
	if name == "" {
		return fmt.Errorf("put outbox blob: empty name")
	}
	db, err := o.openDB()
	if err != nil {
		return fmt.Errorf("put outbox blob %q: %w", name, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(blobsBucket).Put([]byte(name), data)
	})
	if err != nil {
		return fmt.Errorf("put outbox blob %q in %s: %w", name, o.Path, err)
	}
	return nil
}

// Blob returns a copy of the blob stored under name, or nil, nil when there
// is none.
func (o *Outbox) Blob(name string) ([]byte, error) {
	db, err := o.openDB()
	if err != nil {
		return nil, fmt.Errorf("read outbox blob %q: %w", name, err)
	}
	var out []byte
	err = db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(blobsBucket).Get([]byte(name)); v != nil {
			out = bytes.Clone(v)
			if out == nil {
				out = []byte{}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read outbox blob %q from %s: %w", name, o.Path, err)
	}
	return out, nil
}

// validate rejects records that JetStream could never accept, so that they
// fail at Append instead of retrying forever in the shipper.
func (r *Record) validate() error {
	if !validPublishSubject(r.Subject) {
		return fmt.Errorf("subject %q: %w", r.Subject, ErrInvalidRecord)
	}
	if r.MsgID == "" || strings.ContainsAny(r.MsgID, "\r\n") {
		return fmt.Errorf("message id %q: %w", r.MsgID, ErrInvalidRecord)
	}
	return nil
}

// validPublishSubject reports whether s is a literal NATS subject: non-empty
// dot-separated tokens, no whitespace, no wildcards.
func validPublishSubject(s string) bool {
	if s == "" {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return false
		}
	}
	return true
}

// Row value encoding, version 1:
//
//	byte     version (1)
//	varint   commit time, Unix ms (zig-zag)
//	uvarint  len(subject), subject
//	uvarint  len(msg id),  msg id
//	uvarint  len(data),    data
//
// Varints must be minimal and nothing may follow the data, so every value has
// exactly one encoding.
const rowVersion = 1

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func zigzag(x int64) uint64 {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return ux
}

// rowLen is the encoded length of r committed at ms.
func rowLen(r *Record, ms int64) int {
	return 1 + uvarintLen(zigzag(ms)) +
		uvarintLen(uint64(len(r.Subject))) + len(r.Subject) +
		uvarintLen(uint64(len(r.MsgID))) + len(r.MsgID) +
		uvarintLen(uint64(len(r.Data))) + len(r.Data)
}

// appendRow appends the encoding of r committed at ms to dst.
func appendRow(dst []byte, ms int64, r *Record) []byte {
	dst = append(dst, rowVersion)
	dst = binary.AppendVarint(dst, ms)
	return appendRowTail(dst, r)
}

// rowTailLen is the length of appendRowTail's encoding of r.
func rowTailLen(r *Record) int {
	return uvarintLen(uint64(len(r.Subject))) + len(r.Subject) +
		uvarintLen(uint64(len(r.MsgID))) + len(r.MsgID) +
		uvarintLen(uint64(len(r.Data))) + len(r.Data)
}

// appendRowTail appends the part of r's row encoding that follows the
// commit time.
func appendRowTail(dst []byte, r *Record) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(r.Subject)))
	dst = append(dst, r.Subject...)
	dst = binary.AppendUvarint(dst, uint64(len(r.MsgID)))
	dst = append(dst, r.MsgID...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Data)))
	return append(dst, r.Data...)
}

// rowView points into an encoded row; valid only as long as the value is.
type rowView struct {
	appended             int64
	subject, msgID, data []byte
}

var errRowCorrupt = errors.New("corrupt outbox row")

func parseRow(v []byte) (rowView, error) {
	var rv rowView
	if len(v) == 0 {
		return rv, fmt.Errorf("empty value: %w", errRowCorrupt)
	}
	if v[0] != rowVersion {
		return rv, fmt.Errorf("unknown row version %d: %w", v[0], errRowCorrupt)
	}
	rest := v[1:]
	ms, n := binary.Varint(rest)
	if n <= 0 || n != uvarintLen(zigzag(ms)) {
		return rv, fmt.Errorf("commit time: %w", errRowCorrupt)
	}
	rv.appended = ms
	rest = rest[n:]
	field := func(name string) ([]byte, error) {
		l, n := binary.Uvarint(rest)
		if n <= 0 || n != uvarintLen(l) {
			return nil, fmt.Errorf("%s length: %w", name, errRowCorrupt)
		}
		rest = rest[n:]
		if l > uint64(len(rest)) {
			return nil, fmt.Errorf("%s length %d beyond %d bytes left: %w", name, l, len(rest), errRowCorrupt)
		}
		f := rest[:l:l]
		rest = rest[l:]
		return f, nil
	}
	var err error
	if rv.subject, err = field("subject"); err != nil {
		return rv, err
	}
	if rv.msgID, err = field("msg id"); err != nil {
		return rv, err
	}
	if rv.data, err = field("data"); err != nil {
		return rv, err
	}
	if len(rest) != 0 {
		return rv, fmt.Errorf("%d trailing bytes: %w", len(rest), errRowCorrupt)
	}
	return rv, nil
}

// decodeRow decodes a stored row into a Row (Seq left 0) that owns its memory.
func decodeRow(v []byte) (Row, error) {
	rv, err := parseRow(v)
	if err != nil {
		return Row{}, err
	}
	return Row{
		Record: Record{
			Subject: string(rv.subject),
			MsgID:   string(rv.msgID),
			Data:    bytes.Clone(rv.data),
		},
		AppendedUnixMilli: rv.appended,
	}, nil
}
