package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---- a proxy between an edge and NATS ----

type proxyMode int

const (
	proxyUp      proxyMode = iota
	proxyCut               // every connection closed at once, new ones refused: NATS unreachable
	proxyAckHole           // bytes to NATS pass; from NATS only a new connection's handshake (up to its first PONG) passes: publishes land, acks never return
)

// cxProxy forwards TCP connections from the edge to a NATS server and can cut
// them, so that only the edge loses NATS while the worker keeps it.
type cxProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	mode   proxyMode
	conns  map[net.Conn]struct{}
	closed bool
}

func newProxy(t *testing.T, target string) *cxProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cxProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *cxProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *cxProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.mode == proxyCut || p.closed
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(s, c, true)
		go p.pipe(c, s, false)
	}
}

var pong = []byte("PONG\r\n")

func (p *cxProxy) pipe(dst, src net.Conn, toNATS bool) {
	// handshake is true until the server's first PONG has gone through: in
	// ack-hole mode a reconnecting client still completes its handshake.
	handshake := !toNATS
	var tail []byte
	defer func() {
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			m := p.mode
			p.mu.Unlock()
			if m == proxyCut {
				return
			}
			pass := m == proxyUp || toNATS || handshake
			if handshake {
				tail = append(tail, buf[:n]...)
				if bytes.Contains(tail, pong) {
					handshake = false
				}
				tail = tail[max(0, len(tail)-len(pong)):]
			}
			if pass {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *cxProxy) set(m proxyMode) {
	p.mu.Lock()
	p.mode = m
	var conns []net.Conn
	if m == proxyCut {
		for c := range p.conns {
			conns = append(conns, c)
		}
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (p *cxProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.set(proxyCut)
}

// ---- load ----

type latSample struct {
	at time.Time
	d  time.Duration
}

// cxLoad drives redirects and Partnac conversions at an edge and remembers
// every acknowledgement.
type cxLoad struct {
	edge   string
	prefix string

	mu         sync.Mutex
	clicks     map[string]bool // click ids answered with a 302
	lastClick  string          // the newest answered click, named by the next conversion
	convAcked  map[string]int  // unique id → 2xx status
	convRefuse map[string]int  // unique id → 503 (never durable)
	convOther  map[string]int  // unique id → other status, or 0 for a transport error (unknown fate)
	refunds    map[string]bool // unique id → the refund was answered 2xx (false: sent, fate unknown)
	samples    []latSample     // answered redirects
	nonFound   map[int]int     // redirect statuses other than 302 → count
	redirErrs  int             // redirect transport errors
	redirects  int             // redirect requests sent
	convSent   int             // conversion and refund requests sent
	seq        atomic.Int64
}

func newLoad(edgeAddr, prefix string) *cxLoad {
	return &cxLoad{edge: edgeAddr, prefix: prefix, clicks: map[string]bool{}, convAcked: map[string]int{},
		convRefuse: map[string]int{}, convOther: map[string]int{}, refunds: map[string]bool{}, nonFound: map[int]int{}}
}

// loadSpec bounds one run of the load.
type loadSpec struct {
	rate        int           // redirects per second, over all workers
	convRate    int           // conversions per second (0: none)
	refundEvery int           // refund every n-th conversion answered 201 (0: never)
	dur         time.Duration // time bound
	maxReq      int           // count bound on redirects (0: rate × dur × 2)
}

// run drives load until spec.dur passes, the count bound is reached or
// stop is closed; it returns when every worker has finished.
func (l *cxLoad) run(spec loadSpec, stop <-chan struct{}) {
	if spec.maxReq == 0 {
		spec.maxReq = int(float64(spec.rate)*spec.dur.Seconds()*2) + 100
	}
	deadline := time.Now().Add(spec.dur)
	var sent atomic.Int64
	var wg sync.WaitGroup
	transport := &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true, IdleConnTimeout: 5 * time.Second}
	defer transport.CloseIdleConnections()
	// A conversion takes up to ~5s while the edge cannot reach the worker
	// (2s existing-conversion lookup, then up to 3s waiting for the result
	// before its 202): the timeout leaves room for that.
	client := &http.Client{Transport: transport, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// pace runs workers goroutines that call body at rate calls per second
	// in all, until the deadline, stop, or body returns false.
	pace := func(workers, rate int, body func(w int) bool) {
		interval := time.Duration(float64(time.Second) * float64(workers) / float64(rate))
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				next := time.Now().Add(time.Duration(rand.Int64N(int64(interval))))
				for {
					now := time.Now()
					if now.After(deadline) {
						return
					}
					if d := next.Sub(now); d > 0 {
						select {
						case <-stop:
							return
						case <-time.After(d):
						}
					} else {
						select {
						case <-stop:
							return
						default:
						}
					}
					if !body(w) {
						return
					}
					next = next.Add(interval)
					if lag := time.Since(next); lag > interval {
						next = time.Now() // no bursts to catch up
					}
				}
			}(w)
		}
	}
	links := []string{"alice", "bob"}
	pace(16, spec.rate, func(w int) bool {
		if sent.Add(1) > int64(spec.maxReq) {
			return false
		}
		l.redirect(client, links[w%len(links)])
		return true
	})
	if spec.convRate > 0 {
		// A conversion can take about 5s when the edge cannot reach the
		// worker: enough workers keep the rate regardless.
		pace(min(64, max(4, 5*spec.convRate)), spec.convRate, func(int) bool {
			l.conversion(client, spec.refundEvery)
			return l.seq.Load() < int64(spec.maxReq)
		})
	}
	wg.Wait()
}

func (l *cxLoad) redirect(c *http.Client, code string) {
	req, _ := http.NewRequest("GET", "http://"+l.edge+"/r/"+code, nil)
	req.Header.Set("User-Agent", chaosUA)
	start := time.Now()
	resp, err := c.Do(req)
	var id string
	status := 0
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		if u, perr := url.Parse(resp.Header.Get("Location")); perr == nil {
			id = u.Query().Get("click_id")
		}
	}
	d := time.Since(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.redirects++
	switch {
	case err != nil:
		l.redirErrs++
	case status == http.StatusFound && id != "":
		l.clicks[id] = true
		if code == "alice" {
			l.lastClick = id
		}
		l.samples = append(l.samples, latSample{start, d})
	default:
		l.nonFound[status]++
	}
}

func (l *cxLoad) conversion(c *http.Client, refundEvery int) {
	l.mu.Lock()
	click := l.lastClick
	l.mu.Unlock()
	if click == "" {
		return
	}
	n := l.seq.Add(1)
	uid := fmt.Sprintf("%s-%06d", l.prefix, n)
	body := `{"partnership_code":"ALICE10","unique_id":"` + uid + `","conversion_type":"sale","amount":"10.00","session_id":"` + click + `"}`
	status, err := cxDoWith(c, "POST", "http://"+l.edge+"/v1/tracking/conversions", testKey, body, nil)
	l.mu.Lock()
	l.convSent++
	switch {
	case err != nil:
		l.convOther[uid] = 0
	case status >= 200 && status < 300:
		l.convAcked[uid] = status
	case status == http.StatusServiceUnavailable:
		l.convRefuse[uid] = status
	default:
		l.convOther[uid] = status
	}
	l.mu.Unlock()
	if err != nil || status != http.StatusCreated || refundEvery <= 0 || n%int64(refundEvery) != 0 {
		return
	}
	rb := `{"amount":"5.00","external_refund_id":"rf-` + uid + `"}`
	rstatus, rerr := cxDoWith(c, "POST", "http://"+l.edge+"/v1/tracking/conversions/"+uid+"/refund", testKey, rb, nil)
	l.mu.Lock()
	l.convSent++
	l.refunds[uid] = rerr == nil && rstatus >= 200 && rstatus < 300
	l.mu.Unlock()
}

// p99 is the 99th percentile latency of the redirects answered 302 that
// started in [from, to).
func (l *cxLoad) p99(from, to time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ds []time.Duration
	for _, s := range l.samples {
		if !s.at.Before(from) && s.at.Before(to) {
			ds = append(ds, s.d)
		}
	}
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*99/100)]
}

// answered counts the 302s that started in [from, to).
func (l *cxLoad) answered(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.samples {
		if !s.at.Before(from) && s.at.Before(to) {
			n++
		}
	}
	return n
}
