package attribution

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// List limits. The edge enforces its own bounds; the store clamps again so
// that no caller can ask it for an unbounded page.
const (
	// DefaultListLimit is the page size used when a query sets no limit.
	DefaultListLimit = 50
	// MaxListLimit is the largest page the store returns.
	MaxListLimit = 100
	// MaxKeyPartLen bounds the id, merchant, campaign and partner of a
	// stored click, in bytes: they are index key parts.
	MaxKeyPartLen = 256
)

// ErrInvalidClick wraps every reason the store refuses a click: an empty or
// over-long id or merchant, or a key part holding a NUL byte (the index
// separator).
var ErrInvalidClick = errors.New("invalid click")

// ErrInvalidQuery is returned by ListClicks for a query without a merchant or
// with a negative offset.
var ErrInvalidQuery = errors.New("invalid click query")

// ErrStoreClosed is returned by every method of a store that is not open.
var ErrStoreClosed = errors.New("attribution store is not open")

// Bucket names. Each index has its own bucket so that a prefix scan of one
// never sees the keys of another (merchant|0|… would otherwise also match
// merchant|0|campaign|0|…).
var (
	bucketClicks = []byte("clicks")
	// Index keys are prefix | ts (8 bytes, big endian) | id, so that a reverse
	// cursor from the end of a prefix yields the newest click first even when
	// an id is forged and does not sort by time.
	bucketByMerchant = []byte("idx_merchant")         // merchant 0
	bucketByCampaign = []byte("idx_campaign")         // merchant 0 campaign 0
	bucketByPartner  = []byte("idx_partner")          // merchant 0 partner 0
	bucketByBoth     = []byte("idx_campaign_partner") // merchant 0 campaign 0 partner 0
	bucketCounts     = []byte("counts")               // index bucket name 0 prefix → uint64; "clicks" 0 → all clicks
	bucketMeta       = []byte("meta")                 // catalog
	keyCatalog       = []byte("catalog")
	allBuckets       = [][]byte{bucketClicks, bucketByMerchant, bucketByCampaign, bucketByPartner, bucketByBoth, bucketCounts, bucketMeta,
		bucketConversions, bucketConvIndex, bucketConvCounts, bucketEvents, bucketCustomers, bucketReferrals, bucketLedger, bucketHolds}
)

// Store is the worker's bbolt database: clicks by id, secondary indexes for
// newest-first listing, per-filter counters and the current catalog. It is
// safe for concurrent use once open; bbolt serialises writers.
type Store struct {
	// Path is the bbolt file; it is created if missing.
	Path string
	// NoSync skips fsync on commit and after growing the file. Only for
	// tests and benchmarks: a crash can lose or corrupt committed data.
	NoSync bool

	db *bolt.DB
}

// NewStore returns a store for the file at path; call Open before use.
func NewStore(path string) *Store {
	return &Store{Path: path}
}

// Open opens (creating if needed) the database file and its buckets. It
// fails rather than waits when another process holds the file.
func (s *Store) Open() error {
	if s.db != nil {
		return fmt.Errorf("open attribution store %s: already open", s.Path)
	}
	db, err := bolt.Open(s.Path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: s.NoSync, NoGrowSync: s.NoSync})
	if err != nil {
		return fmt.Errorf("open attribution store %s: %w", s.Path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("open attribution store %s: %w", s.Path, err)
	}
	s.db = db
	return nil
}

// Close closes the database; the store may be opened again afterwards.
func (s *Store) Close() error {
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("close attribution store %s: %w", s.Path, err)
	}
	return nil
}

// CheckClick reports, wrapping ErrInvalidClick, why the store would refuse c.
// The worker calls it before PutClicks so that one bad message cannot fail a
// whole batch.
func CheckClick(c *sink.Click) error {
	if c.ID == "" || c.MerchantID == "" {
		return fmt.Errorf("%w: missing id or merchant", ErrInvalidClick)
	}
	for _, part := range [...]struct{ name, v string }{
		{"id", c.ID}, {"merchant", c.MerchantID}, {"campaign", c.CampaignID}, {"partner", c.PartnerID},
	} {
		if len(part.v) > MaxKeyPartLen {
			return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalidClick, part.name, MaxKeyPartLen)
		}
		if strings.IndexByte(part.v, 0) >= 0 {
			return fmt.Errorf("%w: %s holds a NUL byte", ErrInvalidClick, part.name)
		}
	}
	return nil
}

// PutClicks stores clicks in one bbolt transaction, idempotent on click id:
// a click whose id is already stored (or appears earlier in the same batch)
// is left untouched and not counted. It returns how many clicks were new.
// If any click is invalid (see CheckClick) nothing is stored.
func (s *Store) PutClicks(clicks []sink.Click) (int, error) {
	isNew, err := s.putClicks(clicks)
	n := 0
	for _, ok := range isNew {
		if ok {
			n++
		}
	}
	return n, err
}

// putClicks is PutClicks reporting, per click, whether it was new.
func (s *Store) putClicks(clicks []sink.Click) ([]bool, error) {
	if s.db == nil {
		return nil, ErrStoreClosed
	}
	for i := range clicks {
		if err := CheckClick(&clicks[i]); err != nil {
			return nil, fmt.Errorf("store clicks: click %d: %w", i, err)
		}
	}
	isNew := make([]bool, len(clicks))
	// bbolt keeps references to keys and values until the transaction
	// commits, so nothing put may be overwritten. Every key and value is
	// appended to one arena instead; when append reallocates, earlier slices
	// keep the old array, which is never written again.
	arena := make([]byte, 0, len(clicks)*1024)
	err := s.db.Update(func(tx *bolt.Tx) error {
		clicksB := tx.Bucket(bucketClicks)
		counts := tx.Bucket(bucketCounts)
		// Counter deltas are summed in memory and written once per prefix:
		// a batch of one merchant's clicks then rewrites a few counters, not
		// a few per click.
		deltas := map[string]*uint64{}
		var ck []byte
		count := func(key []byte) {
			if d, ok := deltas[string(key)]; ok {
				*d++
				return
			}
			n := uint64(1)
			deltas[string(key)] = &n
		}
		for i := range clicks {
			c := &clicks[i]
			if clicksB.Get([]byte(c.ID)) != nil {
				continue
			}
			start := len(arena)
			arena = append(arena, c.ID...)
			id := arena[start:len(arena):len(arena)]
			start = len(arena)
			var err error
			arena, err = sink.AppendClick(arena, c)
			if err != nil {
				return err
			}
			if err := clicksB.Put(id, arena[start:len(arena):len(arena)]); err != nil {
				return fmt.Errorf("put click %s: %w", c.ID, err)
			}
			for _, ix := range indexes {
				if !ix.applies(c) {
					continue
				}
				start := len(arena)
				arena = ix.appendPrefix(arena, c.MerchantID, c.CampaignID, c.PartnerID)
				prefixLen := len(arena) - start
				// A negative ts sorts as 0 so that a bogus timestamp cannot
				// pin a click to the top of every page.
				arena = binary.BigEndian.AppendUint64(arena, uint64(max(c.TS, 0)))
				arena = append(arena, c.ID...)
				key := arena[start:len(arena):len(arena)]
				if err := tx.Bucket(ix.bucket).Put(key, nil); err != nil {
					return fmt.Errorf("index click %s in %s: %w", c.ID, ix.bucket, err)
				}
				ck = appendCounterKey(ck[:0], ix.bucket, key[:prefixLen])
				count(ck)
			}
			count(totalCounterKey)
			isNew[i] = true
		}
		for k, d := range deltas {
			n := readCount(counts.Get([]byte(k))) + *d
			if err := counts.Put([]byte(k), binary.BigEndian.AppendUint64(nil, n)); err != nil {
				return fmt.Errorf("update counter: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return make([]bool, len(clicks)), fmt.Errorf("store %d clicks: %w", len(clicks), err)
	}
	return isNew, nil
}

// Click returns the stored click with the given id, and whether there is one.
func (s *Store) Click(id string) (sink.Click, bool, error) {
	if s.db == nil {
		return sink.Click{}, false, ErrStoreClosed
	}
	var (
		c     sink.Click
		found bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketClicks).Get([]byte(id))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &c)
	})
	if err != nil {
		return sink.Click{}, false, fmt.Errorf("read click %s: %w", id, err)
	}
	return c, found, nil
}

// ListClicks returns one merchant's clicks newest first, filtered by campaign
// and partner when set. Limit is clamped to 1..MaxListLimit (0 means
// DefaultListLimit); Offset skips that many matching clicks. Total counts
// every match regardless of Limit and Offset and costs one read. A query
// without a merchant or with a negative offset fails with ErrInvalidQuery.
func (s *Store) ListClicks(q sink.ClickQuery) (sink.ClickPage, error) {
	if s.db == nil {
		return sink.ClickPage{}, ErrStoreClosed
	}
	if q.MerchantID == "" {
		return sink.ClickPage{}, fmt.Errorf("%w: merchant_id is required", ErrInvalidQuery)
	}
	if q.Offset < 0 {
		return sink.ClickPage{}, fmt.Errorf("%w: negative offset", ErrInvalidQuery)
	}
	limit := q.Limit
	switch {
	case limit <= 0:
		limit = DefaultListLimit
	case limit > MaxListLimit:
		limit = MaxListLimit
	}
	ix, prefix := queryIndex(q)
	page := sink.ClickPage{Clicks: []sink.Click{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		page.Total = int(readCount(tx.Bucket(bucketCounts).Get(appendCounterKey(nil, ix.bucket, prefix))))
		if q.Offset >= page.Total {
			return nil
		}
		clicksB := tx.Bucket(bucketClicks)
		cur := tx.Bucket(ix.bucket).Cursor()
		skip := q.Offset
		for k := seekLast(cur, prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Prev() {
			if skip > 0 {
				skip--
				continue
			}
			id := k[len(prefix)+8:]
			v := clicksB.Get(id)
			if v == nil {
				return fmt.Errorf("index %s names missing click %s", ix.bucket, id)
			}
			var c sink.Click
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("decode stored click %s: %w", id, err)
			}
			page.Clicks = append(page.Clicks, c)
			if len(page.Clicks) == limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return sink.ClickPage{}, fmt.Errorf("list clicks of merchant %s: %w", q.MerchantID, err)
	}
	return page, nil
}

// ClickCount returns how many clicks the store holds in total, from a
// counter kept in the same transaction as the clicks.
func (s *Store) ClickCount() (int, error) {
	if s.db == nil {
		return 0, ErrStoreClosed
	}
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		n = int(readCount(tx.Bucket(bucketCounts).Get(totalCounterKey)))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count clicks: %w", err)
	}
	return n, nil
}

// SaveCatalog stores c as the current catalog, replacing any earlier one. It
// stores what it is given: validation and versioning are the caller's.
func (s *Store) SaveCatalog(c *redirect.Catalog) error {
	if s.db == nil {
		return ErrStoreClosed
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode catalog version %d: %w", c.Version, err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyCatalog, data)
	})
	if err != nil {
		return fmt.Errorf("save catalog version %d: %w", c.Version, err)
	}
	return nil
}

// Backup writes a consistent copy of the whole database to w while the
// store stays in use (one read transaction), and returns its size; size, when
// not nil, is told the copy's size before it is written. The copy is a bbolt
// file: restore it by putting it in place of the store's file while the
// worker is stopped, then start the worker with Rebuild to replay what the
// stream holds beyond it.
func (s *Store) Backup(w io.Writer, size func(int64)) (int64, error) {
	if s.db == nil {
		return 0, ErrStoreClosed
	}
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		if size != nil {
			size(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("backup %s: %w", s.Path, err)
	}
	return n, nil
}

// Catalog returns the saved catalog, or nil and no error when none was saved.
func (s *Store) Catalog() (*redirect.Catalog, error) {
	if s.db == nil {
		return nil, ErrStoreClosed
	}
	var c *redirect.Catalog
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyCatalog)
		if v == nil {
			return nil
		}
		c = new(redirect.Catalog)
		return json.Unmarshal(v, c)
	})
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	return c, nil
}

// index is one secondary index: its bucket and which filters, beyond the
// merchant, its key prefix holds.
type index struct {
	bucket            []byte
	campaign, partner bool
}

// indexes are every index a click may get.
var indexes = [...]index{
	{bucketByMerchant, false, false},
	{bucketByCampaign, true, false},
	{bucketByPartner, false, true},
	{bucketByBoth, true, true},
}

// applies reports whether c is listed in ix: a click without campaign or
// partner is listed only under the filters it can match.
func (ix index) applies(c *sink.Click) bool {
	return (!ix.campaign || c.CampaignID != "") && (!ix.partner || c.PartnerID != "")
}

// appendPrefix appends ix's key prefix: merchant, then campaign and partner
// as ix holds them, each followed by a NUL byte. CheckClick keeps NUL out of
// stored parts, so that one prefix never matches another filter's keys
// ("a" 0 never prefixes "a" 0 "b" in the same bucket unless it should).
func (ix index) appendPrefix(dst []byte, merchant, campaign, partner string) []byte {
	dst = append(append(dst, merchant...), 0)
	if ix.campaign {
		dst = append(append(dst, campaign...), 0)
	}
	if ix.partner {
		dst = append(append(dst, partner...), 0)
	}
	return dst
}

// queryIndex picks the index whose prefix is exactly the query's filter, and
// that prefix.
func queryIndex(q sink.ClickQuery) (index, []byte) {
	ix := indexes[0]
	switch {
	case q.CampaignID != "" && q.PartnerID != "":
		ix = indexes[3]
	case q.CampaignID != "":
		ix = indexes[1]
	case q.PartnerID != "":
		ix = indexes[2]
	}
	return ix, ix.appendPrefix(nil, q.MerchantID, q.CampaignID, q.PartnerID)
}

// appendCounterKey appends the counter key of an index prefix:
// bucket name 0 prefix.
func appendCounterKey(dst, bucket, prefix []byte) []byte {
	return append(append(append(dst, bucket...), 0), prefix...)
}

// totalCounterKey counts every stored click.
var totalCounterKey = appendCounterKey(nil, bucketClicks, nil)

func readCount(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// seekLast positions cur on the last key that starts with prefix, or returns
// nil when there is none. Every key under prefix is shorter than or equal to
// prefix followed by 0xFF bytes, so seeking just past prefix's successor and
// stepping back lands on it.
func seekLast(cur *bolt.Cursor, prefix []byte) []byte {
	end := prefixEnd(prefix)
	var k []byte
	if end == nil {
		k, _ = cur.Last()
	} else if k, _ = cur.Seek(end); k == nil {
		k, _ = cur.Last()
	} else {
		k, _ = cur.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return nil
	}
	return k
}

// prefixEnd returns the smallest key greater than every key with the given
// prefix, or nil when there is none (prefix is all 0xFF).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
