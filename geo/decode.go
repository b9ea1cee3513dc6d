package geo

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2/mmdbdata"
)

// maxField bounds every string a record decoder reads. Files are downloaded
// from the internet and not verified as a whole (see detectSchema), so the
// decoders bound their own work: a fixed depth, and no string above this.
const maxField = 256

// mmRecord decodes the few fields clickedge needs from a GeoIP2/GeoLite2
// Country or City record, skipping the rest (continent, location, postal,
// traits, the other languages) without materialising it.
type mmRecord struct{ loc Location }

// flatRecord decodes ip-location-db's flat records.
type flatRecord struct{ loc Location }

// The records escape through Result.Decode's interface argument; pooling
// them keeps a lookup free of heap allocation.
var (
	mmPool   = sync.Pool{New: func() any { return new(mmRecord) }}
	flatPool = sync.Pool{New: func() any { return new(flatRecord) }}
)

// UnmarshalMaxMindDBCursor implements mmdbdata.CursorUnmarshaler.
func (r *mmRecord) UnmarshalMaxMindDBCursor(c mmdbdata.Cursor) (mmdbdata.Cursor, error) {
	m, err := c.Map()
	if err != nil {
		return mmdbdata.Cursor{}, fmt.Errorf("record: %w", err)
	}
	var next mmdbdata.Cursor
	for {
		key, val, ok := m.Next(next)
		if !ok {
			break
		}
		switch string(key) {
		case "country":
			r.loc.Country, next, err = readMapString(val, "iso_code")
		case "subdivisions":
			r.loc.Region, next, err = readFirstSubdivision(val)
		case "city":
			r.loc.City, next, err = readNamesEn(val)
		default:
			next, err = val.Skip()
		}
		if err != nil {
			return mmdbdata.Cursor{}, fmt.Errorf("record field %s: %w", key, err)
		}
	}
	return m.End()
}

// UnmarshalMaxMindDBCursor implements mmdbdata.CursorUnmarshaler.
func (r *flatRecord) UnmarshalMaxMindDBCursor(c mmdbdata.Cursor) (mmdbdata.Cursor, error) {
	m, err := c.Map()
	if err != nil {
		return mmdbdata.Cursor{}, fmt.Errorf("record: %w", err)
	}
	var next mmdbdata.Cursor
	for {
		key, val, ok := m.Next(next)
		if !ok {
			break
		}
		switch string(key) {
		case "country_code":
			r.loc.Country, next, err = val.ReadStringMaxSize(maxField)
		case "state1":
			r.loc.Region, next, err = val.ReadStringMaxSize(maxField)
		case "city":
			r.loc.City, next, err = val.ReadStringMaxSize(maxField)
		default:
			next, err = val.Skip()
		}
		if err != nil {
			return mmdbdata.Cursor{}, fmt.Errorf("record field %s: %w", key, err)
		}
	}
	return m.End()
}

// readMapString reads key from the map at c, skipping the other entries.
func readMapString(c mmdbdata.Cursor, want string) (string, mmdbdata.Cursor, error) {
	return readMapField(c, want, func(v mmdbdata.Cursor) (string, mmdbdata.Cursor, error) {
		return v.ReadStringMaxSize(maxField)
	})
}

// readNamesEn reads names.en from the map at c (a city or subdivision).
func readNamesEn(c mmdbdata.Cursor) (string, mmdbdata.Cursor, error) {
	return readMapField(c, "names", func(v mmdbdata.Cursor) (string, mmdbdata.Cursor, error) {
		return readMapString(v, "en")
	})
}

// readMapField reads the value under key want of the map at c with read,
// skipping the other entries, and returns the cursor after the map.
func readMapField(c mmdbdata.Cursor, want string, read func(mmdbdata.Cursor) (string, mmdbdata.Cursor, error)) (string, mmdbdata.Cursor, error) {
	m, err := c.Map()
	if err != nil {
		return "", mmdbdata.Cursor{}, err
	}
	var out string
	var next mmdbdata.Cursor
	for {
		key, val, ok := m.Next(next)
		if !ok {
			break
		}
		if string(key) == want {
			out, next, err = read(val)
		} else {
			next, err = val.Skip()
		}
		if err != nil {
			return "", mmdbdata.Cursor{}, err
		}
	}
	next, err = m.End()
	return out, next, err
}

// readFirstSubdivision returns the ISO code of the first subdivision, or its
// English name when it has no code.
func readFirstSubdivision(c mmdbdata.Cursor) (string, mmdbdata.Cursor, error) {
	s, err := c.Slice()
	if err != nil {
		return "", mmdbdata.Cursor{}, err
	}
	var out string
	var next mmdbdata.Cursor
	for {
		i, val, ok := s.Next(next)
		if !ok {
			break
		}
		if i > 0 {
			next, err = val.Skip()
		} else {
			out, next, err = readSubdivision(val)
		}
		if err != nil {
			return "", mmdbdata.Cursor{}, err
		}
	}
	next, err = s.End()
	return out, next, err
}

func readSubdivision(c mmdbdata.Cursor) (string, mmdbdata.Cursor, error) {
	m, err := c.Map()
	if err != nil {
		return "", mmdbdata.Cursor{}, err
	}
	var code, name string
	var next mmdbdata.Cursor
	for {
		key, val, ok := m.Next(next)
		if !ok {
			break
		}
		switch string(key) {
		case "iso_code":
			code, next, err = val.ReadStringMaxSize(maxField)
		case "names":
			name, next, err = readMapString(val, "en")
		default:
			next, err = val.Skip()
		}
		if err != nil {
			return "", mmdbdata.Cursor{}, err
		}
	}
	next, err = m.End()
	if code != "" {
		return code, next, err
	}
	return name, next, err
}

// ErrUnsupported is wrapped by Open and Reload errors for files that are
// valid mmdb but hold no country data (ASN, ISP, unknown layouts).
var ErrUnsupported = errors.New("unsupported geo database")

// detectSchema picks the record layout from the file's metadata and, when
// the metadata names no known type, from the keys of its first record.
//
// The whole file is not checked with maxminddb's Reader.Verify because
// ip-location-db files fail its metadata check (they ship an empty
// description); the record decoders bound their own work instead, and load
// decodes a sample of records before the file serves.
func detectSchema(data []byte, r *maxminddb.Reader) (string, error) {
	dbType := r.Metadata.DatabaseType

	// geoip2-golang keeps the list of database types that share the
	// GeoIP2 Country/City record layout (MaxMind's and DB-IP's); its
	// Country method refuses the others (ASN, ISP, Domain, ...).
	gr, err := geoip2.OpenBytes(data)
	var unknown geoip2.UnknownDatabaseTypeError
	switch {
	case err == nil:
		_, cerr := gr.Country(netip.IPv6Unspecified())
		_ = gr.Close()
		var invalid geoip2.InvalidMethodError
		if errors.As(cerr, &invalid) {
			return "", fmt.Errorf("%w: type %q has no country data", ErrUnsupported, dbType)
		}
		if strings.Contains(dbType, "Country") {
			return SchemaMaxMindCountry, nil
		}
		return SchemaMaxMindCity, nil
	case !errors.As(err, &unknown):
		return "", fmt.Errorf("read metadata: %w", err)
	}

	// ip-location-db (ip-location-to-mmdb) names its files
	// "<kind> ipv4|ipv6|ipvAll".
	if kind, ver, ok := strings.Cut(dbType, " "); ok && strings.HasPrefix(ver, "ipv") {
		switch kind {
		case "country":
			return SchemaIPLocationCountry, nil
		case "city":
			return SchemaIPLocationCity, nil
		default:
			return "", fmt.Errorf("%w: ip-location-db type %q has no country data", ErrUnsupported, dbType)
		}
	}
	return schemaFromLayout(r, dbType)
}

// schemaFromLayout recognises a layout by the top-level keys of the first
// record, for files whose database_type is custom.
func schemaFromLayout(r *maxminddb.Reader, dbType string) (string, error) {
	for res := range firstNetworks(r) {
		if err := res.Err(); err != nil {
			return "", fmt.Errorf("walk networks: %w", err)
		}
		if !res.Found() {
			continue
		}
		var keys keySet
		if err := res.Decode(&keys); err != nil {
			return "", fmt.Errorf("decode record of %s: %w", res.Prefix(), err)
		}
		switch {
		case keys.has("country") && (keys.has("city") || keys.has("subdivisions")):
			return SchemaMaxMindCity, nil
		case keys.has("country"):
			return SchemaMaxMindCountry, nil
		case keys.has("country_code") && (keys.has("city") || keys.has("state1")):
			return SchemaIPLocationCity, nil
		case keys.has("country_code"):
			return SchemaIPLocationCountry, nil
		}
		return "", fmt.Errorf("%w: type %q: records have neither country nor country_code", ErrUnsupported, dbType)
	}
	return "", fmt.Errorf("%w: type %q: no records in the first %d networks", ErrUnsupported, dbType, maxProbeLeaves)
}

// keySet collects the top-level keys of a record (at most maxKeys of them).
type keySet struct{ keys []string }

const maxKeys = 64

func (k *keySet) has(s string) bool {
	for _, x := range k.keys {
		if x == s {
			return true
		}
	}
	return false
}

// UnmarshalMaxMindDBCursor implements mmdbdata.CursorUnmarshaler.
func (k *keySet) UnmarshalMaxMindDBCursor(c mmdbdata.Cursor) (mmdbdata.Cursor, error) {
	m, err := c.Map()
	if err != nil {
		return mmdbdata.Cursor{}, err
	}
	var next mmdbdata.Cursor
	for {
		key, val, ok := m.Next(next)
		if !ok {
			break
		}
		if len(k.keys) < maxKeys {
			k.keys = append(k.keys, string(key))
		}
		if next, err = val.Skip(); err != nil {
			return mmdbdata.Cursor{}, err
		}
	}
	return m.End()
}
