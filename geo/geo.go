// Package geo resolves IP addresses to a country, region and city from an
// mmdb file (MaxMind GeoIP2/GeoLite2 or an ip-location-db database) and
// reloads the file when it changes on disk.
//
// It knows nothing of HTTP: the edge passes addresses in, Locations come out.
package geo

import (
	"fmt"
	"iter"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// DefaultReloadInterval is how often an open DB checks its file for changes
// when ReloadInterval is zero.
const DefaultReloadInterval = 30 * time.Second

// Schemas a DB can read; Info.Schema holds one of them.
const (
	// SchemaMaxMindCity is the GeoIP2/GeoLite2 City record layout (also
	// Enterprise and DB-IP's MaxMind-compatible City files).
	SchemaMaxMindCity = "maxmind-city"
	// SchemaMaxMindCountry is the GeoIP2/GeoLite2 Country record layout.
	SchemaMaxMindCountry = "maxmind-country"
	// SchemaIPLocationCountry is ip-location-db's flat {country_code} layout
	// (geo-whois-asn-country, iptoasn-country, dbip-country, ...).
	SchemaIPLocationCountry = "ip-location-db-country"
	// SchemaIPLocationCity is ip-location-db's flat city layout
	// (dbip-city-mmdb, geolite2-city-mmdb: country_code, state1, city, ...).
	SchemaIPLocationCity = "ip-location-db-city"
)

// Location is where an address is, as far as the database knows. Every field
// may be empty.
type Location struct {
	// Country is the ISO 3166-1 alpha-2 code in upper case ("DE"); empty
	// when unknown or when the database holds something that is not two
	// ASCII letters.
	Country string
	// Region is the first (largest) subdivision: its ISO code when a
	// MaxMind-layout database has one, else its English name (ip-location-db
	// city files carry names only: state1).
	Region string
	// City is the English city name.
	City string
}

// Lookuper resolves an address to a Location. It is what enrich depends on;
// *DB implements it. Implementations must be safe for concurrent use and
// return the zero Location for unknown addresses.
type Lookuper interface {
	Lookup(ip netip.Addr) Location
}

// Info describes the database a DB currently serves.
type Info struct {
	// Path is the file the DB reads.
	Path string
	// Schema is one of the Schema constants, empty when nothing is loaded.
	Schema string
	// DatabaseType is the file's metadata database_type ("GeoLite2-City",
	// "country ipvAll", ...).
	DatabaseType string
	// BuildTime is the file's metadata build_epoch.
	BuildTime time.Time
	// LoadedAt is when the serving reader was loaded.
	LoadedAt time.Time
	// Loaded reports whether a reader is serving lookups.
	Loaded bool
	// LastError is the error of the most recent load attempt, empty when it
	// succeeded. A failed reload keeps the previous reader serving.
	LastError string
}

// DB is a hot-reloading mmdb reader. Set the exported fields after New and
// before Open. Lookup and Info are safe for concurrent use, also while a
// reload swaps the reader.
type DB struct {
	// Path of the .mmdb file.
	Path string
	// ReloadInterval is how often the file's identity, size and mtime are
	// polled; a change loads the new file. Zero means DefaultReloadInterval,
	// a negative value turns polling off (Reload still works).
	ReloadInterval time.Duration
	// Logger receives load and reload outcomes; nil discards them. Nothing
	// is logged per lookup.
	Logger *slog.Logger

	cur       atomic.Pointer[handle]
	loadMu    sync.Mutex // serialises loads; guards lastErr and lastStat
	lastErr   error
	lastStat  os.FileInfo
	decodeErr atomic.Uint64

	stop chan struct{}
	done chan struct{}
	log  *slog.Logger
}

// New returns a DB for the file at path with default settings. Nothing is
// read until Open.
func New(path string) *DB {
	return &DB{Path: path, ReloadInterval: DefaultReloadInterval}
}

// Open loads the file, detects its schema and starts the reload watcher.
// It fails when the file cannot be read or is not a supported database; in
// that case nothing is started and the DB can be discarded.
func (d *DB) Open() error {
	d.log = d.Logger
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With("component", "geo")
	if d.stop != nil {
		return fmt.Errorf("open geo database %s: already open", d.Path)
	}
	if err := d.Reload(); err != nil {
		return err
	}
	h := d.cur.Load()
	d.log.Info("geo database loaded", "path", d.Path, "schema", h.schema,
		"database_type", h.dbType, "build_time", h.buildTime)
	interval := d.ReloadInterval
	if interval == 0 {
		interval = DefaultReloadInterval
	}
	d.stop = make(chan struct{})
	d.done = make(chan struct{})
	go d.watch(interval)
	return nil
}

// Close stops the watcher and releases the reader. Lookups after Close
// return the zero Location. Close is idempotent; a closed DB cannot be
// opened again.
func (d *DB) Close() error {
	if d.stop != nil {
		select {
		case <-d.stop:
		default:
			close(d.stop)
		}
		<-d.done
	}
	if old := d.cur.Swap(nil); old != nil {
		old.release()
	}
	return nil
}

// Reload loads the file now, whether or not it changed, and swaps it in. On
// failure the previous reader keeps serving and the error is returned (and
// shown in Info.LastError).
func (d *DB) Reload() error {
	d.loadMu.Lock()
	defer d.loadMu.Unlock()
	st, err := os.Stat(d.Path)
	if err != nil {
		d.lastErr = fmt.Errorf("stat geo database %s: %w", d.Path, err)
		return d.lastErr
	}
	d.lastStat = st
	return d.loadLocked()
}

// reloadIfChanged loads the file when its identity, size or mtime differ
// from the last attempt. A failed attempt is remembered too, so that a bad
// file is reported once rather than at every poll.
func (d *DB) reloadIfChanged() (bool, error) {
	d.loadMu.Lock()
	defer d.loadMu.Unlock()
	st, err := os.Stat(d.Path)
	if err != nil {
		err = fmt.Errorf("stat geo database %s: %w", d.Path, err)
		changed := d.lastErr == nil || d.lastErr.Error() != err.Error()
		d.lastErr = err
		d.lastStat = nil // whatever appears next is loaded
		return changed, err
	}
	if prev := d.lastStat; prev != nil && os.SameFile(prev, st) &&
		prev.Size() == st.Size() && prev.ModTime().Equal(st.ModTime()) {
		return false, nil
	}
	d.lastStat = st
	return true, d.loadLocked()
}

func (d *DB) loadLocked() error {
	h, err := load(d.Path)
	if err != nil {
		d.lastErr = err
		return err
	}
	d.lastErr = nil
	if old := d.cur.Swap(h); old != nil {
		// Lookups that already hold the old reader finish on it; the last
		// of them closes it.
		old.release()
	}
	return nil
}

func (d *DB) watch(interval time.Duration) {
	defer close(d.done)
	if interval < 0 {
		<-d.stop
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			changed, err := d.reloadIfChanged()
			switch {
			case err != nil && changed:
				d.log.Error("geo database reload failed; keeping previous", "path", d.Path, "err", err)
			case changed:
				h := d.cur.Load()
				d.log.Info("geo database reloaded", "path", d.Path, "schema", h.schema,
					"database_type", h.dbType, "build_time", h.buildTime)
			}
		}
	}
}

// Lookup returns the Location of ip, or the zero Location when the address
// is unknown, invalid, or no database is loaded. IPv4-mapped IPv6 addresses
// are looked up as IPv4. It is safe for concurrent use and does not allocate
// beyond what the reader needs for strings missing from its cache.
func (d *DB) Lookup(ip netip.Addr) Location {
	if d == nil {
		return Location{}
	}
	h := d.acquire()
	if h == nil {
		return Location{}
	}
	loc, err := h.lookup(ip)
	h.release()
	if err != nil {
		d.decodeErr.Add(1)
	}
	return loc
}

// DecodeErrors counts lookups whose record could not be decoded since New;
// such lookups returned the zero Location.
func (d *DB) DecodeErrors() uint64 { return d.decodeErr.Load() }

// acquire returns the serving handle with a reference held, or nil.
func (d *DB) acquire() *handle {
	for {
		h := d.cur.Load()
		if h == nil {
			return nil
		}
		if h.tryAcquire() {
			return h
		}
		// h was swapped out and fully released between Load and
		// tryAcquire; d.cur already holds its successor.
	}
}

// Info describes the serving database and the last load attempt.
func (d *DB) Info() Info {
	info := Info{Path: d.Path}
	d.loadMu.Lock()
	if d.lastErr != nil {
		info.LastError = d.lastErr.Error()
	}
	d.loadMu.Unlock()
	if h := d.acquire(); h != nil {
		info.Schema = h.schema
		info.DatabaseType = h.dbType
		info.BuildTime = h.buildTime
		info.LoadedAt = h.loadedAt
		info.Loaded = true
		h.release()
	}
	return info
}

// handle is one loaded reader with a reference count: the DB holds one
// reference while the handle serves, each Lookup holds one while it reads.
// maxminddb.Reader.Close must not run concurrently with lookups, so the
// reader is closed by whoever drops the last reference.
type handle struct {
	r         *maxminddb.Reader
	schema    string
	flat      bool
	dbType    string
	buildTime time.Time
	loadedAt  time.Time
	refs      atomic.Int64
}

func (h *handle) tryAcquire() bool {
	for {
		n := h.refs.Load()
		if n <= 0 {
			return false
		}
		if h.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (h *handle) release() {
	if h.refs.Add(-1) == 0 {
		_ = h.r.Close()
	}
}

func (h *handle) lookup(ip netip.Addr) (Location, error) {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return Location{}, nil
	}
	if ip.Is6() && h.r.Metadata.IPVersion == 4 {
		return Location{}, nil
	}
	res := h.r.Lookup(ip)
	if !res.Found() {
		return Location{}, res.Err()
	}
	var loc Location
	var err error
	if h.flat {
		rec := flatPool.Get().(*flatRecord)
		err = res.Decode(rec)
		loc = rec.loc
		*rec = flatRecord{}
		flatPool.Put(rec)
	} else {
		rec := mmPool.Get().(*mmRecord)
		err = res.Decode(rec)
		loc = rec.loc
		*rec = mmRecord{}
		mmPool.Put(rec)
	}
	if err != nil {
		return Location{}, err
	}
	loc.Country = normCountry(loc.Country)
	return loc, nil
}

// load reads the whole file into memory rather than mapping it: an operator
// who rewrites the file in place (cp over it instead of mv) would otherwise
// change or truncate pages under a live reader, which can crash the process
// with SIGBUS.
func load(path string) (*handle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read geo database %s: %w", path, err)
	}
	r, err := maxminddb.OpenBytes(data)
	if err != nil {
		return nil, fmt.Errorf("open geo database %s: %w", path, err)
	}
	schema, err := detectSchema(data, r)
	if err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("detect schema of geo database %s: %w", path, err)
	}
	h := &handle{
		r:         r,
		schema:    schema,
		flat:      schema == SchemaIPLocationCountry || schema == SchemaIPLocationCity,
		dbType:    r.Metadata.DatabaseType,
		buildTime: r.Metadata.BuildTime().UTC(),
		loadedAt:  time.Now().UTC(),
	}
	h.refs.Store(1)
	if err := h.probe(); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("check geo database %s as %s: %w", path, schema, err)
	}
	return h, nil
}

// probe decodes the first records of the file with the decoder its schema
// picked, so that a file whose layout does not match is refused at load
// rather than failing every lookup.
func (h *handle) probe() error {
	n := 0
	for res := range firstNetworks(h.r) {
		if err := res.Err(); err != nil {
			return fmt.Errorf("walk networks: %w", err)
		}
		if !res.Found() {
			continue
		}
		var err error
		if h.flat {
			var rec flatRecord
			err = res.Decode(&rec)
		} else {
			var rec mmRecord
			err = res.Decode(&rec)
		}
		if err != nil {
			return fmt.Errorf("decode record of %s: %w", res.Prefix(), err)
		}
		if n++; n == probeRecords {
			break
		}
	}
	return nil
}

const probeRecords = 16

// maxProbeLeaves bounds how many networks (with or without data) a load
// walks. The tree is not verified, and a corrupt one can point back at
// earlier nodes: a full walk could then take practically forever, while
// each leaf costs at most 128 steps.
const maxProbeLeaves = 4096

// firstNetworks yields the first maxProbeLeaves networks of the tree, empty
// ones included (with Found false), so that the walk stays bounded.
func firstNetworks(r *maxminddb.Reader) iter.Seq[maxminddb.Result] {
	return func(yield func(maxminddb.Result) bool) {
		n := 0
		for res := range r.Networks(maxminddb.IncludeNetworksWithoutData()) {
			if !yield(res) {
				return
			}
			if n++; n == maxProbeLeaves {
				return
			}
		}
	}
}

// normCountry upper-cases a two-letter code and drops anything else; it does
// not allocate for codes already in upper case.
func normCountry(s string) string {
	if len(s) != 2 {
		return ""
	}
	a, b := s[0], s[1]
	if isUpper(a) && isUpper(b) {
		return s
	}
	if !isLetter(a) || !isLetter(b) {
		return ""
	}
	return string([]byte{a &^ 0x20, b &^ 0x20})
}

func isUpper(c byte) bool  { return c >= 'A' && c <= 'Z' }
func isLetter(c byte) bool { return isUpper(c) || (c >= 'a' && c <= 'z') }
