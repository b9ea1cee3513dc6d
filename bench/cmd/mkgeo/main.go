// Command mkgeo writes a synthetic GeoIP2-City database for the benchmark
// suite, used only when no real database can be had (no ./data/geoip/*.mmdb
// and deploy/geoip.sh could not fetch one). It maps the client addresses the
// suite sends in X-Forwarded-For to known places and fills the rest of the
// IPv4 space with -networks random /16–/24 networks, so that a lookup walks
// a tree about as deep as a real database's. Records are those of package
// geo's test fixtures (geo/geotest.Record), so clickedge reads them as it
// reads MaxMind's.
package main

import (
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"

	"github.com/maxmind/mmdbwriter"

	"github.com/clickedge/clickedge/geo"
	"github.com/clickedge/clickedge/geo/geotest"
)

// Known are the client addresses the suite's requests carry (see
// bench/wrk/redirect.lua and the driver's headers).
var known = map[string]geo.Location{
	"81.2.69.160/32":     {Country: "GB", Region: "ENG", City: "London"},
	"89.160.20.112/32":   {Country: "SE", Region: "E", City: "Linköping"},
	"175.16.199.1/32":    {Country: "CN", Region: "22", City: "Changchun"},
	"216.160.83.56/32":   {Country: "US", Region: "WA", City: "Milton"},
	"2.125.160.216/32":   {Country: "GB", Region: "ENG", City: "Boxford"},
	"67.43.156.1/32":     {Country: "BT", Region: "", City: ""},
	"202.196.224.1/32":   {Country: "PH", Region: "", City: ""},
	"149.101.100.1/32":   {Country: "US", Region: "", City: ""},
	"128.101.101.101/32": {Country: "US", Region: "MN", City: "Minneapolis"},
	"217.65.48.1/32":     {Country: "GI", Region: "", City: ""},
	"50.114.0.1/32":      {Country: "US", Region: "", City: ""},
	"111.235.160.1/32":   {Country: "CN", Region: "", City: ""},
	"81.2.69.142/32":     {Country: "GB", Region: "ENG", City: "London"},
	"89.160.20.128/32":   {Country: "SE", Region: "E", City: "Linköping"},
	"214.78.120.1/32":    {Country: "US", Region: "", City: ""},
	"222.230.136.1/32":   {Country: "JP", Region: "", City: ""},
}

var countries = []string{"DE", "FR", "US", "GB", "NL", "SE", "PL", "IT", "ES", "BR", "IN", "JP", "CN", "CA", "AU"}

func main() {
	out := flag.String("o", "bench-city.mmdb", "output file")
	n := flag.Int("networks", 40000, "random networks besides the known addresses")
	flag.Parse()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "GeoIP2-City",
		IPVersion:               6,
		RecordSize:              28,
		IncludeReservedNetworks: true,
		BuildEpoch:              geotest.BuildEpoch,
		Description:             map[string]string{"en": "clickedge bench synthetic city database"},
		Languages:               []string{"en"},
	})
	if err != nil {
		log.Fatalf("mkgeo: %v", err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < *n; i++ {
		bits := 16 + r.IntN(9)
		ip := net.IPv4(byte(1+r.IntN(222)), byte(r.IntN(256)), byte(r.IntN(256)), 0)
		nw := &net.IPNet{IP: ip.Mask(net.CIDRMask(bits, 32)), Mask: net.CIDRMask(bits, 32)}
		loc := geo.Location{Country: countries[r.IntN(len(countries))], Region: "R" + fmt.Sprint(r.IntN(50)), City: "City" + fmt.Sprint(r.IntN(1000))}
		if err := tree.Insert(nw, geotest.Record(geo.SchemaMaxMindCity, loc)); err != nil {
			log.Fatalf("mkgeo: insert %s: %v", nw, err)
		}
	}
	// Known addresses last: a more specific network inserted later wins.
	for cidr, loc := range known {
		_, nw, err := net.ParseCIDR(cidr)
		if err != nil {
			log.Fatalf("mkgeo: %s: %v", cidr, err)
		}
		if err := tree.Insert(nw, geotest.Record(geo.SchemaMaxMindCity, loc)); err != nil {
			log.Fatalf("mkgeo: insert %s: %v", cidr, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		log.Fatalf("mkgeo: %v", err)
	}
	tmp := *out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		log.Fatalf("mkgeo: %v", err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		log.Fatalf("mkgeo: write: %v", err)
	}
	if err := f.Close(); err != nil {
		log.Fatalf("mkgeo: %v", err)
	}
	if err := os.Rename(tmp, *out); err != nil {
		log.Fatalf("mkgeo: %v", err)
	}
	fmt.Println(*out)
}
