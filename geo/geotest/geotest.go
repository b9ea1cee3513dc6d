// Package geotest builds small mmdb fixtures for tests, in every schema that
// package geo reads, with github.com/maxmind/mmdbwriter. Nothing touches the
// network.
package geotest

import (
	"bytes"
	"cmp"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clickedge/clickedge/geo"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// BuildEpoch is the build_epoch written into every fixture (2024-01-01 UTC),
// so that tests can compare geo.Info.BuildTime.
const BuildEpoch = 1704067200

// WriteCityDB writes a GeoIP2-City database to path that maps each network
// (a CIDR such as "203.0.113.0/24" or a bare address) to its Location. The
// file is written to a temporary name and renamed, so a watching geo.DB never
// sees it half written. It fails the test on any error.
func WriteCityDB(t testing.TB, path string, nets map[string]geo.Location) {
	t.Helper()
	WriteDB(t, path, geo.SchemaMaxMindCity, nets)
}

// WriteDB writes a database in schema (one of the geo.Schema constants) to
// path, atomically like WriteCityDB.
func WriteDB(t testing.TB, path, schema string, nets map[string]geo.Location) {
	t.Helper()
	writeFile(t, path, Build(t, schema, nets))
}

// Build returns the bytes of a database in schema mapping each network to its
// Location:
//   - geo.SchemaMaxMindCity: database_type "GeoIP2-City", GeoIP2 records with
//     country, registered_country, continent, location, two subdivisions
//     (the first with iso_code = Region and names.en = Region, the second a
//     "ZZZ" level that must be ignored) and city names in en and de;
//   - geo.SchemaMaxMindCountry: "GeoIP2-Country", no subdivision or city;
//   - geo.SchemaIPLocationCountry: "country ipvAll", {country_code} records
//     as ip-location-db's geo-whois-asn-country-mmdb;
//   - geo.SchemaIPLocationCity: "city ipv4" (IPv4 networks only) or
//     "city ipv6", all-string records as ip-location-db's dbip-city-mmdb.
//
// Empty Location fields are left out of the record.
func Build(t testing.TB, schema string, nets map[string]geo.Location) []byte {
	t.Helper()
	recs := make(map[string]mmdbtype.DataType, len(nets))
	for n, loc := range nets {
		recs[n] = Record(schema, loc)
	}
	opts := mmdbwriter.Options{
		DatabaseType:            "",
		IPVersion:               6,
		RecordSize:              28,
		IncludeReservedNetworks: true,
		BuildEpoch:              BuildEpoch,
		Description:             map[string]string{"en": "clickedge test fixture"},
		Languages:               []string{"en"},
	}
	switch schema {
	case geo.SchemaMaxMindCity:
		opts.DatabaseType = "GeoIP2-City"
	case geo.SchemaMaxMindCountry:
		opts.DatabaseType = "GeoIP2-Country"
	case geo.SchemaIPLocationCountry:
		// As ip-location-to-mmdb writes them: no description, no aliases.
		opts.DatabaseType = "country ipvAll"
		opts.RecordSize = 24
		opts.DisableIPv4Aliasing = true
		opts.Description = nil
		opts.Languages = nil
	case geo.SchemaIPLocationCity:
		opts.DatabaseType = "city ipv6"
		if allIPv4(t, nets) {
			opts.DatabaseType = "city ipv4"
			opts.IPVersion = 4
		}
		opts.DisableIPv4Aliasing = true
		opts.Description = nil
		opts.Languages = nil
	default:
		t.Fatalf("geotest: unknown schema %q", schema)
	}
	return BuildRecords(t, opts, recs)
}

// Record returns the record Build writes for loc in schema.
func Record(schema string, loc geo.Location) mmdbtype.Map {
	str := func(s string) mmdbtype.String { return mmdbtype.String(s) }
	switch schema {
	case geo.SchemaIPLocationCountry:
		return mmdbtype.Map{"country_code": str(loc.Country)}
	case geo.SchemaIPLocationCity:
		return mmdbtype.Map{
			"country_code": str(loc.Country),
			"state1":       str(loc.Region),
			"state2":       str(""),
			"city":         str(loc.City),
			"postcode":     str(""),
			"latitude":     str("0.0"),
			"longitude":    str("0.0"),
			"timezone":     str("UTC"),
		}
	}
	names := func(s string) mmdbtype.Map {
		return mmdbtype.Map{"en": str(s), "de": str(s + " (de)")}
	}
	rec := mmdbtype.Map{
		"continent": mmdbtype.Map{"code": str("EU"), "geoname_id": mmdbtype.Uint32(6255148), "names": names("Europe")},
	}
	if loc.Country != "" {
		country := mmdbtype.Map{"iso_code": str(loc.Country), "geoname_id": mmdbtype.Uint32(1), "names": names(loc.Country)}
		rec["country"] = country
		rec["registered_country"] = country
	}
	if schema == geo.SchemaMaxMindCountry {
		return rec
	}
	rec["location"] = mmdbtype.Map{
		"latitude": mmdbtype.Float64(0), "longitude": mmdbtype.Float64(0),
		"accuracy_radius": mmdbtype.Uint16(100), "time_zone": str("UTC"),
	}
	if loc.Region != "" {
		rec["subdivisions"] = mmdbtype.Slice{
			mmdbtype.Map{"iso_code": str(loc.Region), "geoname_id": mmdbtype.Uint32(2), "names": names(loc.Region)},
			mmdbtype.Map{"iso_code": str("ZZZ"), "geoname_id": mmdbtype.Uint32(3), "names": names("second level")},
		}
	}
	if loc.City != "" {
		rec["city"] = mmdbtype.Map{"geoname_id": mmdbtype.Uint32(4), "names": names(loc.City)}
	}
	return rec
}

// BuildRecords returns the bytes of a database written with opts that maps
// each network (CIDR or bare address) to its record as given, for fixtures
// with layouts Build does not produce.
func BuildRecords(t testing.TB, opts mmdbwriter.Options, recs map[string]mmdbtype.DataType) []byte {
	t.Helper()
	tree, err := mmdbwriter.New(opts)
	if err != nil {
		t.Fatalf("geotest: new mmdb writer: %v", err)
	}
	// Insert wider networks first so that a more specific one nested in
	// them wins, whatever the map's order.
	keys := make([]string, 0, len(recs))
	for n := range recs {
		keys = append(keys, n)
	}
	bits := func(n string) int {
		p, err := parsePrefix(n)
		if err != nil {
			t.Fatalf("geotest: network %q: %v", n, err)
		}
		return p.Bits()
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(bits(a), bits(b)), cmp.Compare(a, b)) })
	for _, n := range keys {
		if err := tree.Insert(ipNet(t, n), recs[n]); err != nil {
			t.Fatalf("geotest: insert %s: %v", n, err)
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		t.Fatalf("geotest: write mmdb: %v", err)
	}
	return buf.Bytes()
}

// WriteRecords writes BuildRecords' output to path atomically.
func WriteRecords(t testing.TB, path string, opts mmdbwriter.Options, recs map[string]mmdbtype.DataType) {
	t.Helper()
	writeFile(t, path, BuildRecords(t, opts, recs))
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(path), ".geotest-*")
	if err != nil {
		t.Fatalf("geotest: create temp file: %v", err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		_ = os.Remove(f.Name())
		t.Fatalf("geotest: write %s: %v %v", f.Name(), werr, cerr)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		_ = os.Remove(f.Name())
		t.Fatalf("geotest: rename to %s: %v", path, err)
	}
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func ipNet(t testing.TB, s string) *net.IPNet {
	t.Helper()
	p, err := parsePrefix(s)
	if err != nil {
		t.Fatalf("geotest: network %q: %v", s, err)
	}
	return &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}

func allIPv4(t testing.TB, nets map[string]geo.Location) bool {
	t.Helper()
	for n := range nets {
		p, err := parsePrefix(n)
		if err != nil {
			t.Fatalf("geotest: network %q: %v", n, err)
		}
		if !p.Addr().Is4() {
			return false
		}
	}
	return true
}
