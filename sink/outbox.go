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
}

// Outbox is the edge's durable queue of messages bound for JetStream, kept in
// a bbolt file. Append returns only once the records are committed (and, unless
// NoSync, fsynced); concurrent Appends share one commit (group commit). Rows
// leave the outbox only through Delete, which the Shipper calls after
// JetStream acknowledged them.
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
	// Logger receives commit failures; nil discards.
	Logger *slog.Logger

	mu      sync.Mutex
	db      *bolt.DB
	state   int
	cur     *commitBatch
	pending int64 // stored + queued payload bytes: what MaxBytes caps
	stats   OutboxStats
	log     *slog.Logger

	wake   chan struct{}
	done   chan struct{}
	notify chan struct{}

	// commitHook, if set by a test, runs before each commit.
	commitHook func()
}

const (
	outboxNew = iota
	outboxOpen
	outboxClosed
)

// commitBatch is what queued between two commits. Its waiters block on done
// and then read err, which the writer sets before closing done.
type commitBatch struct {
	entries []batchEntry
	done    chan struct{}
	err     error
}

type batchEntry struct {
	recs      []Record
	size      int64
	cancelled bool
}

func newCommitBatch(capacity int) *commitBatch {
	return &commitBatch{entries: make([]batchEntry, 0, capacity), done: make(chan struct{})}
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
	o.cur = newCommitBatch(64)
	o.pending = size
	o.stats = OutboxStats{Rows: rows, Bytes: size}
	o.wake = make(chan struct{}, 1)
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
// recs' Data must not be modified until Append returns.
func (o *Outbox) Append(ctx context.Context, recs ...Record) error {
	var size int64
	for i := range recs {
		if err := recs[i].validate(); err != nil {
			return fmt.Errorf("append to outbox: record %d: %w", i, err)
		}
		size += int64(len(recs[i].Data))
	}
	o.mu.Lock()
	if o.state != outboxOpen {
		o.mu.Unlock()
		return fmt.Errorf("append to outbox: %w", ErrOutboxClosed)
	}
	if len(recs) == 0 {
		o.mu.Unlock()
		return nil
	}
	if o.pending+size > o.MaxBytes {
		pending := o.pending
		o.mu.Unlock()
		return fmt.Errorf("append %d records (%d bytes) to outbox holding %d of %d bytes: %w",
			len(recs), size, pending, o.MaxBytes, ErrOutboxFull)
	}
	o.pending += size
	b := o.cur
	idx := len(b.entries)
	b.entries = append(b.entries, batchEntry{recs: recs, size: size})
	o.mu.Unlock()
	o.kick()

	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
	}
	o.mu.Lock()
	if o.cur == b {
		// Not taken by the writer yet: withdraw, nothing is written.
		b.entries[idx].cancelled = true
		b.entries[idx].recs = nil
		o.pending -= size
		o.mu.Unlock()
		return fmt.Errorf("append to outbox: %w", ctx.Err())
	}
	o.mu.Unlock()
	<-b.done
	return b.err
}

// writer is the one goroutine that commits appends: it takes everything
// queued, commits it in one transaction, releases the waiters and starts over
// at once with what queued meanwhile. No timer: the fsync itself is the window
// in which the next batch gathers.
func (o *Outbox) writer() {
	defer close(o.done)
	for {
		o.mu.Lock()
		b := o.cur
		if len(b.entries) == 0 {
			closing := o.state == outboxClosed
			o.mu.Unlock()
			if closing {
				return
			}
			<-o.wake
			continue
		}
		o.cur = newCommitBatch(cap(b.entries))
		o.mu.Unlock()
		o.commit(b)
	}
}

func (o *Outbox) commit(b *commitBatch) {
	if o.commitHook != nil {
		o.commitHook()
	}
	var n, encLen int
	var size int64
	for _, e := range b.entries {
		if e.cancelled {
			continue
		}
		n += len(e.recs)
		size += e.size
		for i := range e.recs {
			encLen += rowLen(&e.recs[i], 0)
		}
	}
	if n == 0 {
		close(b.done)
		return
	}
	now := time.Now().UnixMilli()
	// bbolt keeps references to keys and values until commit, so each gets
	// its own region of two batch-sized buffers that are never reused.
	keys := make([]byte, 8*n)
	buf := make([]byte, 0, encLen+n*binary.MaxVarintLen64)
	err := o.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(rowsBucket)
		// Keys only ever grow: fill pages completely instead of half.
		bk.FillPercent = 1.0
		seq := bk.Sequence()
		i := 0
		for _, e := range b.entries {
			if e.cancelled {
				continue
			}
			for j := range e.recs {
				seq++
				k := keys[i*8 : i*8+8 : i*8+8]
				binary.BigEndian.PutUint64(k, seq)
				start := len(buf)
				buf = appendRow(buf, now, &e.recs[j])
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
		o.pending -= size
	} else {
		o.stats.Rows += int64(n)
		o.stats.Bytes += size
		o.stats.Commits++
		o.stats.Appended += uint64(n)
	}
	o.mu.Unlock()
	if err != nil {
		b.err = fmt.Errorf("commit %d records to outbox %s: %w", n, o.Path, err)
		o.log.Error("outbox commit failed", "records", n, "err", err)
	}
	close(b.done)
	if err == nil {
		select {
		case o.notify <- struct{}{}:
		default:
		}
	}
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
		for k, v := c.Seek(start[:]); k != nil && len(rows) < max; k, v = c.Next() {
			seq := binary.BigEndian.Uint64(k)
			r, err := decodeRow(v)
			if err != nil {
				return fmt.Errorf("row %d: %w", seq, err)
			}
			r.Seq = seq
			rows = append(rows, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("peek outbox %s after %d: %w", o.Path, after, err)
	}
	return rows, nil
}

// Delete removes the rows with the given sequences in one durable commit.
// Sequences that are absent (already deleted) are ignored, so repeating a
// Delete is harmless.
func (o *Outbox) Delete(seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	db, err := o.openDB()
	if err != nil {
		return fmt.Errorf("delete %d outbox rows: %w", len(seqs), err)
	}
	sorted := slices.Clone(seqs)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	var n, size int64
	err = db.Update(func(tx *bolt.Tx) error {
		n, size = 0, 0
		bk := tx.Bucket(rowsBucket)
		var k [8]byte
		for _, s := range sorted {
			binary.BigEndian.PutUint64(k[:], s)
			v := bk.Get(k[:])
			if v == nil {
				continue
			}
			rv, err := parseRow(v)
			if err != nil {
				return fmt.Errorf("row %d: %w", s, err)
			}
			if err := bk.Delete(k[:]); err != nil {
				return fmt.Errorf("row %d: %w", s, err)
			}
			n++
			size += int64(len(rv.data))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete %d rows from outbox %s: %w", len(sorted), o.Path, err)
	}
	o.mu.Lock()
	o.stats.Rows -= n
	o.stats.Bytes -= size
	o.stats.Deleted += uint64(n)
	o.pending -= size
	o.mu.Unlock()
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
