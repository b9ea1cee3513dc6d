// Command baseline is the bare fasthttp server the benchmark suite compares
// clickedge's redirect with: GET /r/{anything} answers the same 302 as
// clickedge's demo link /r/alice, header for header and byte for byte in
// size (Server, Date, Content-Length, Location with a 32-character click id,
// Cache-Control, Set-Cookie), and does nothing else: no lookup, no
// enrichment, no capture. Every other path is a 404. It is the ceiling of
// what a fasthttp handler can answer on this machine, measured in the same
// run as clickedge so that the ratio between the two is what the targets of
// bench/README.md are stated in.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// The click id alphabet and length match clickedge's (redirect/clickid.go):
// 32 lower-case base32 characters.
const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"

var seq atomic.Uint64

// appendID appends a 32-character id that differs per request, as a click
// id does, at a cost close to nothing.
func appendID(dst []byte, n uint64) []byte {
	var b [32]byte
	for i := range b {
		b[i] = '0'
	}
	for i := len(b) - 1; i >= 0 && n > 0; i-- {
		b[i] = alphabet[n%32]
		n /= 32
	}
	return append(dst, b[:]...)
}

var (
	locPrefix    = []byte("https://example.com/landing?click_id=")
	cookiePrefix = []byte("ce_spring=")
	cookieSuffix = []byte("; max-age=2592000; path=/; HttpOnly; SameSite=Lax")
	hLocation    = []byte("Location")
	hCache       = []byte("Cache-Control")
	vNoStore     = []byte("no-store")
	hSetCookie   = []byte("Set-Cookie")
	redirectPath = []byte("/r/")
)

func handler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		path := ctx.Path()
		if !ctx.IsGet() || len(path) <= len(redirectPath) || string(path[:len(redirectPath)]) != string(redirectPath) {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
			return
		}
		n := seq.Add(1)
		var lb, cb [128]byte
		loc := appendID(append(lb[:0], locPrefix...), n)
		cookie := append(appendID(append(cb[:0], cookiePrefix...), n), cookieSuffix...)
		h := &ctx.Response.Header
		ctx.SetStatusCode(fasthttp.StatusFound)
		h.SetCanonical(hLocation, loc)
		h.SetCanonical(hCache, vNoStore)
		h.SetCanonical(hSetCookie, cookie)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8090", "address to listen on (loopback only in the suite)")
	flag.Parse()
	ln, err := net.Listen("tcp4", *listen)
	if err != nil {
		log.Fatalf("baseline: listen %s: %v", *listen, err)
	}
	srv := &fasthttp.Server{
		Handler: handler(),
		// Same name as clickedge's, so that the response is the same size.
		Name:                          "clickedge",
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
	}
	fmt.Fprintln(os.Stderr, "baseline listening on", ln.Addr().String(), "pid", strconv.Itoa(os.Getpid()))
	if err := srv.Serve(ln); err != nil {
		log.Fatalf("baseline: serve: %v", err)
	}
}
