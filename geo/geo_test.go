package geo_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clickedge/clickedge/geo"
	"github.com/clickedge/clickedge/geo/geotest"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

var (
	berlin = geo.Location{Country: "DE", Region: "BE", City: "Berlin"}
	paris  = geo.Location{Country: "FR", Region: "IDF", City: "Paris"}
	tokyo  = geo.Location{Country: "JP", Region: "13", City: "Tokyo"}
)

// fixture is shared by the schema tests: IPv4 and IPv6 networks, a bare
// address, and a nested more specific network.
var fixture = map[string]geo.Location{
	"203.0.113.0/24":   berlin,
	"203.0.113.128/25": paris,
	"198.51.100.7":     tokyo,
	"2001:db8:1::/48":  paris,
}

func open(t *testing.T, path string) *geo.DB {
	t.Helper()
	d := geo.New(path)
	d.ReloadInterval = -1
	if err := d.Open(); err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// only keeps the fields a schema carries.
func only(schema string, l geo.Location) geo.Location {
	switch schema {
	case geo.SchemaMaxMindCountry, geo.SchemaIPLocationCountry:
		return geo.Location{Country: l.Country}
	}
	return l
}

func TestLookupSchemas(t *testing.T) {
	tests := []struct {
		schema   string
		dbType   string
		nets     map[string]geo.Location
		v6Result bool // the file holds IPv6 networks
	}{
		{geo.SchemaMaxMindCity, "GeoIP2-City", fixture, true},
		{geo.SchemaMaxMindCountry, "GeoIP2-Country", fixture, true},
		{geo.SchemaIPLocationCountry, "country ipvAll", fixture, true},
		{geo.SchemaIPLocationCity, "city ipv4", map[string]geo.Location{
			"203.0.113.0/24": berlin, "203.0.113.128/25": paris, "198.51.100.7": tokyo,
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "geo.mmdb")
			geotest.WriteDB(t, path, tt.schema, tt.nets)
			d := open(t, path)

			info := d.Info()
			if info.Schema != tt.schema || info.DatabaseType != tt.dbType || !info.Loaded || info.LastError != "" {
				t.Errorf("Info() = %+v, want schema %s, type %s, loaded", info, tt.schema, tt.dbType)
			}
			if want := time.Unix(geotest.BuildEpoch, 0).UTC(); !info.BuildTime.Equal(want) {
				t.Errorf("Info().BuildTime = %v, want %v", info.BuildTime, want)
			}
			if info.Path != path || info.LoadedAt.IsZero() {
				t.Errorf("Info() = %+v, want path %s and a load time", info, path)
			}

			v6 := geo.Location{}
			if tt.v6Result {
				v6 = only(tt.schema, paris)
			}
			lookups := []struct {
				ip   string
				want geo.Location
			}{
				{"203.0.113.1", only(tt.schema, berlin)},
				{"203.0.113.200", only(tt.schema, paris)},
				{"::ffff:203.0.113.1", only(tt.schema, berlin)},
				{"198.51.100.7", only(tt.schema, tokyo)},
				{"198.51.100.8", geo.Location{}},
				{"192.0.2.1", geo.Location{}},
				{"2001:db8:1:2::5", v6},
				{"2001:db8:1:2::5%eth0", v6},
				{"2001:db8:2::1", geo.Location{}},
			}
			for _, l := range lookups {
				if got := d.Lookup(netip.MustParseAddr(l.ip)); got != l.want {
					t.Errorf("Lookup(%s) = %+v, want %+v", l.ip, got, l.want)
				}
			}
			if got := d.Lookup(netip.Addr{}); got != (geo.Location{}) {
				t.Errorf("Lookup(invalid) = %+v, want zero", got)
			}
			if n := d.DecodeErrors(); n != 0 {
				t.Errorf("DecodeErrors() = %d, want 0", n)
			}
		})
	}
}

func names(en string) mmdbtype.Map { return mmdbtype.Map{"en": mmdbtype.String(en)} }

func TestRecordVariants(t *testing.T) {
	cityOpts := mmdbwriter.Options{DatabaseType: "GeoLite2-City", IncludeReservedNetworks: true}
	flatOpts := mmdbwriter.Options{DatabaseType: "country ipv6", IncludeReservedNetworks: true}
	tests := []struct {
		name string
		opts mmdbwriter.Options
		rec  mmdbtype.Map
		want geo.Location
	}{
		{"subdivision without iso code uses its name", cityOpts, mmdbtype.Map{
			"country":      mmdbtype.Map{"iso_code": mmdbtype.String("GB")},
			"subdivisions": mmdbtype.Slice{mmdbtype.Map{"names": names("England")}},
			"city":         mmdbtype.Map{"names": mmdbtype.Map{"de": mmdbtype.String("London (de)"), "en": mmdbtype.String("London")}},
		}, geo.Location{Country: "GB", Region: "England", City: "London"}},
		{"first subdivision wins", cityOpts, mmdbtype.Map{
			"country": mmdbtype.Map{"iso_code": mmdbtype.String("GB")},
			"subdivisions": mmdbtype.Slice{
				mmdbtype.Map{"iso_code": mmdbtype.String("ENG"), "names": names("England")},
				mmdbtype.Map{"iso_code": mmdbtype.String("OXF"), "names": names("Oxfordshire")},
			},
		}, geo.Location{Country: "GB", Region: "ENG"}},
		{"city without English name", cityOpts, mmdbtype.Map{
			"country": mmdbtype.Map{"iso_code": mmdbtype.String("DE")},
			"city":    mmdbtype.Map{"names": mmdbtype.Map{"de": mmdbtype.String("München")}},
		}, geo.Location{Country: "DE"}},
		{"only registered country", cityOpts, mmdbtype.Map{
			"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("US")},
		}, geo.Location{}},
		{"lower-case country is upper-cased", flatOpts, mmdbtype.Map{
			"country_code": mmdbtype.String("de"),
		}, geo.Location{Country: "DE"}},
		{"three-letter country is dropped", flatOpts, mmdbtype.Map{
			"country_code": mmdbtype.String("DEU"),
		}, geo.Location{}},
		{"non-letter country is dropped", flatOpts, mmdbtype.Map{
			"country_code": mmdbtype.String("1-"),
		}, geo.Location{}},
		{"extra flat fields are skipped", flatOpts, mmdbtype.Map{
			"asn":          mmdbtype.Uint32(64500),
			"country_code": mmdbtype.String("NL"),
			"extra":        mmdbtype.Slice{mmdbtype.Map{"x": mmdbtype.Bool(true)}},
		}, geo.Location{Country: "NL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "geo.mmdb")
			geotest.WriteRecords(t, path, tt.opts, map[string]mmdbtype.DataType{"192.0.2.0/24": tt.rec})
			d := open(t, path)
			if got := d.Lookup(netip.MustParseAddr("192.0.2.10")); got != tt.want {
				t.Errorf("Lookup = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSchemaFromLayout(t *testing.T) {
	tests := []struct {
		name string
		rec  mmdbtype.Map
		want string
	}{
		{"maxmind city keys", mmdbtype.Map{
			"country": mmdbtype.Map{"iso_code": mmdbtype.String("FR")},
			"city":    mmdbtype.Map{"names": names("Paris")},
		}, geo.SchemaMaxMindCity},
		{"maxmind country keys", mmdbtype.Map{
			"country": mmdbtype.Map{"iso_code": mmdbtype.String("FR")},
		}, geo.SchemaMaxMindCountry},
		{"flat city keys", mmdbtype.Map{
			"country_code": mmdbtype.String("FR"), "state1": mmdbtype.String("IDF"), "city": mmdbtype.String("Paris"),
		}, geo.SchemaIPLocationCity},
		{"flat country keys", mmdbtype.Map{"country_code": mmdbtype.String("FR")}, geo.SchemaIPLocationCountry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "geo.mmdb")
			opts := mmdbwriter.Options{DatabaseType: "acme-geo", IncludeReservedNetworks: true}
			geotest.WriteRecords(t, path, opts, map[string]mmdbtype.DataType{"192.0.2.0/24": tt.rec})
			d := open(t, path)
			if got := d.Info().Schema; got != tt.want {
				t.Errorf("Schema = %q, want %q", got, tt.want)
			}
			if got := d.Lookup(netip.MustParseAddr("192.0.2.1")).Country; got != "FR" {
				t.Errorf("Lookup().Country = %q, want FR", got)
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	asn := mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(64500)}
	tests := []struct {
		name        string
		write       func(t *testing.T, path string)
		unsupported bool
	}{
		{"missing file", func(*testing.T, string) {}, false},
		{"empty file", func(t *testing.T, path string) { writeBytes(t, path, nil) }, false},
		{"not an mmdb", func(t *testing.T, path string) { writeBytes(t, path, []byte("hello, world")) }, false},
		{"truncated mmdb", func(t *testing.T, path string) {
			b := geotest.Build(t, geo.SchemaMaxMindCity, fixture)
			writeBytes(t, path, b[:len(b)/2])
		}, false},
		{"GeoLite2-ASN", func(t *testing.T, path string) {
			opts := mmdbwriter.Options{DatabaseType: "GeoLite2-ASN", IncludeReservedNetworks: true}
			geotest.WriteRecords(t, path, opts, map[string]mmdbtype.DataType{"192.0.2.0/24": asn})
		}, true},
		{"ip-location-db asn", func(t *testing.T, path string) {
			opts := mmdbwriter.Options{DatabaseType: "asn ipv4", IPVersion: 4, IncludeReservedNetworks: true}
			geotest.WriteRecords(t, path, opts, map[string]mmdbtype.DataType{"192.0.2.0/24": asn})
		}, true},
		{"custom type without location keys", func(t *testing.T, path string) {
			opts := mmdbwriter.Options{DatabaseType: "acme-asn", IncludeReservedNetworks: true}
			geotest.WriteRecords(t, path, opts, map[string]mmdbtype.DataType{"192.0.2.0/24": asn})
		}, true},
		{"custom type without records", func(t *testing.T, path string) {
			geotest.WriteRecords(t, path, mmdbwriter.Options{DatabaseType: "acme-empty"}, nil)
		}, true},
		{"layout does not match type", func(t *testing.T, path string) {
			opts := mmdbwriter.Options{DatabaseType: "GeoIP2-City", IncludeReservedNetworks: true}
			geotest.WriteRecords(t, path, opts, map[string]mmdbtype.DataType{
				"192.0.2.0/24": mmdbtype.Map{"country": mmdbtype.String("DE")},
			})
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "geo.mmdb")
			tt.write(t, path)
			d := geo.New(path)
			err := d.Open()
			if err == nil {
				_ = d.Close()
				t.Fatalf("Open() = nil, want error")
			}
			if got := errors.Is(err, geo.ErrUnsupported); got != tt.unsupported {
				t.Errorf("errors.Is(%v, ErrUnsupported) = %v, want %v", err, got, tt.unsupported)
			}
			if info := d.Info(); info.Loaded || info.LastError == "" {
				t.Errorf("Info() = %+v, want not loaded with an error", info)
			}
			if got := d.Lookup(netip.MustParseAddr("192.0.2.1")); got != (geo.Location{}) {
				t.Errorf("Lookup after failed Open = %+v, want zero", got)
			}
			if err := d.Close(); err != nil {
				t.Errorf("Close() after failed Open = %v", err)
			}
		})
	}
}

func writeBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeErrorYieldsZero(t *testing.T) {
	// The load probe decodes the first records only; a bad record further
	// on must cost a zero Location, never a panic or a wrong answer. The
	// networks are not adjacent so that the writer cannot merge them.
	recs := map[string]mmdbtype.DataType{}
	for i := range 20 {
		recs[fmt.Sprintf("10.0.%d.0/24", 2*i)] = geotest.Record(geo.SchemaMaxMindCity, berlin)
	}
	recs["10.9.0.0/24"] = mmdbtype.Map{"country": mmdbtype.Slice{mmdbtype.String("DE")}}
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	geotest.WriteRecords(t, path, mmdbwriter.Options{DatabaseType: "GeoIP2-City", IncludeReservedNetworks: true}, recs)
	d := open(t, path)
	if got := d.Lookup(netip.MustParseAddr("10.0.4.1")); got != berlin {
		t.Errorf("Lookup(good) = %+v, want %+v", got, berlin)
	}
	if got := d.Lookup(netip.MustParseAddr("10.9.0.1")); got != (geo.Location{}) {
		t.Errorf("Lookup(bad) = %+v, want zero", got)
	}
	if got := d.DecodeErrors(); got != 1 {
		t.Errorf("DecodeErrors() = %d, want 1", got)
	}
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	ip := netip.MustParseAddr("203.0.113.1")
	geotest.WriteCityDB(t, path, map[string]geo.Location{"203.0.113.0/24": berlin})
	d := open(t, path)
	first := d.Info().LoadedAt

	geotest.WriteCityDB(t, path, map[string]geo.Location{"203.0.113.0/24": paris})
	if got := d.Lookup(ip); got != berlin {
		t.Fatalf("Lookup before Reload = %+v, want %+v (no polling)", got, berlin)
	}
	if err := d.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	if got := d.Lookup(ip); got != paris {
		t.Errorf("Lookup after Reload = %+v, want %+v", got, paris)
	}
	if info := d.Info(); info.LoadedAt.Before(first) || !info.Loaded {
		t.Errorf("Info() after Reload = %+v, want a later load time than %v", info, first)
	}

	// A broken file keeps the previous reader serving.
	writeBytes(t, path+".new", []byte("garbage"))
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err == nil {
		t.Fatalf("Reload(garbage) = nil, want error")
	}
	if got := d.Lookup(ip); got != paris {
		t.Errorf("Lookup after failed Reload = %+v, want %+v", got, paris)
	}
	if info := d.Info(); !info.Loaded || info.LastError == "" || info.Schema != geo.SchemaMaxMindCity {
		t.Errorf("Info() after failed Reload = %+v, want still loaded, with the error", info)
	}

	// So does a missing file.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Reload(missing) = %v, want ErrNotExist", err)
	}
	if got := d.Lookup(ip); got != paris {
		t.Errorf("Lookup after missing file = %+v, want %+v", got, paris)
	}

	geotest.WriteDB(t, path, geo.SchemaIPLocationCountry, map[string]geo.Location{"203.0.113.0/24": tokyo})
	if err := d.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	if got, want := d.Lookup(ip), (geo.Location{Country: "JP"}); got != want {
		t.Errorf("Lookup after schema change = %+v, want %+v", got, want)
	}
	if info := d.Info(); info.LastError != "" || info.Schema != geo.SchemaIPLocationCountry {
		t.Errorf("Info() = %+v, want clean ip-location-db country", info)
	}
}

func TestWatcherReloadsChangedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	ip := netip.MustParseAddr("203.0.113.1")
	geotest.WriteCityDB(t, path, map[string]geo.Location{"203.0.113.0/24": berlin})
	d := geo.New(path)
	d.ReloadInterval = 5 * time.Millisecond
	if err := d.Open(); err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	waitFor := func(want geo.Location) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for d.Lookup(ip) != want {
			if time.Now().After(deadline) {
				t.Fatalf("watcher never served %+v; Info() = %+v", want, d.Info())
			}
			time.Sleep(time.Millisecond)
		}
	}
	geotest.WriteCityDB(t, path, map[string]geo.Location{"203.0.113.0/24": paris})
	waitFor(paris)

	// A broken file is reported and the previous reader keeps serving
	// until a good file replaces it.
	writeBytes(t, path+".new", []byte("garbage"))
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for d.Info().LastError == "" {
		if time.Now().After(deadline) {
			t.Fatalf("watcher never reported the broken file")
		}
		time.Sleep(time.Millisecond)
	}
	if got := d.Lookup(ip); got != paris {
		t.Errorf("Lookup with broken file = %+v, want %+v", got, paris)
	}
	geotest.WriteCityDB(t, path, map[string]geo.Location{"203.0.113.0/24": tokyo})
	waitFor(tokyo)
	if info := d.Info(); info.LastError != "" {
		t.Errorf("Info().LastError = %q after good file, want empty", info.LastError)
	}
}

func TestLookupDuringReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	ip := netip.MustParseAddr("203.0.113.1")
	versions := []geo.Location{berlin, paris}
	geotest.WriteCityDB(t, path, map[string]geo.Location{"203.0.113.0/24": berlin})
	d := open(t, path)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if got := d.Lookup(ip); got != berlin && got != paris {
					select {
					case errs <- fmt.Sprintf("Lookup during reload = %+v", got):
					default:
					}
					return
				}
			}
		})
	}
	for i := range 20 {
		geotest.WriteCityDB(t, path, map[string]geo.Location{"203.0.113.0/24": versions[i%2]})
		if err := d.Reload(); err != nil {
			t.Errorf("Reload() = %v", err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	geotest.WriteCityDB(t, path, fixture)
	d := geo.New(path)
	if err := d.Open(); err != nil {
		t.Fatal(err)
	}
	if err := d.Open(); err == nil {
		t.Errorf("second Open() = nil, want error")
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if got := d.Lookup(netip.MustParseAddr("203.0.113.1")); got != (geo.Location{}) {
		t.Errorf("Lookup after Close = %+v, want zero", got)
	}
	if info := d.Info(); info.Loaded {
		t.Errorf("Info().Loaded after Close = true")
	}
	var nilDB *geo.DB
	if got := nilDB.Lookup(netip.MustParseAddr("203.0.113.1")); got != (geo.Location{}) {
		t.Errorf("nil DB Lookup = %+v, want zero", got)
	}
	var _ geo.Lookuper = d
}

func TestLookupAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	for _, schema := range []string{geo.SchemaMaxMindCity, geo.SchemaIPLocationCountry} {
		path := filepath.Join(t.TempDir(), "geo.mmdb")
		geotest.WriteDB(t, path, schema, fixture)
		d := open(t, path)
		ip := netip.MustParseAddr("203.0.113.200")
		d.Lookup(ip) // fill the reader's string cache
		if got := testing.AllocsPerRun(100, func() { d.Lookup(ip) }); got != 0 {
			t.Errorf("%s: Lookup allocs = %v, want 0", schema, got)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	for _, schema := range []string{geo.SchemaMaxMindCity, geo.SchemaIPLocationCountry} {
		b.Run(schema, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "geo.mmdb")
			geotest.WriteDB(b, path, schema, fixture)
			d := geo.New(path)
			d.ReloadInterval = -1
			if err := d.Open(); err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			ips := []netip.Addr{
				netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.200"),
				netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("192.0.2.1"),
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					d.Lookup(ips[i%len(ips)])
					i++
				}
			})
		})
	}
}

// FuzzOpen feeds arbitrary bytes as the database file: loading must fail
// cleanly or yield a DB whose lookups return only normalised countries.
func FuzzOpen(f *testing.F) {
	for _, schema := range []string{geo.SchemaMaxMindCity, geo.SchemaMaxMindCountry, geo.SchemaIPLocationCountry, geo.SchemaIPLocationCity} {
		nets := map[string]geo.Location{"203.0.113.0/24": berlin, "198.51.100.7": tokyo}
		f.Add(geotest.Build(f, schema, nets))
	}
	f.Add([]byte("\xab\xcd\xefMaxMind.com"))
	path := filepath.Join(f.TempDir(), "geo.mmdb")
	ips := []netip.Addr{
		netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("198.51.100.7"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("0.0.0.0"),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		d := geo.New(path)
		d.ReloadInterval = -1
		if err := d.Open(); err != nil {
			if d.Info().Loaded {
				t.Fatalf("failed Open left a reader loaded")
			}
			return
		}
		defer d.Close()
		if s := d.Info().Schema; s == "" {
			t.Fatalf("loaded without a schema")
		}
		for _, ip := range ips {
			loc := d.Lookup(ip)
			if c := loc.Country; c != "" && (len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z') {
				t.Fatalf("Lookup(%s).Country = %q, want empty or two upper-case letters", ip, c)
			}
		}
	})
}
