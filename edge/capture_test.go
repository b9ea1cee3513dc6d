package edge

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/sink"
)

func TestParseCapture(t *testing.T) {
	for in, want := range map[string]Capture{"": CaptureDurable, "durable": CaptureDurable, " Async ": CaptureAsync, "NONE": CaptureNone} {
		if got, err := ParseCapture(in); err != nil || got != want {
			t.Errorf("ParseCapture(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseCapture("sometimes"); err == nil {
		t.Error("ParseCapture accepted an unknown mode")
	}
	s := newModeServer(t, CaptureDurable, 0)
	s2 := &Server{Minter: s.Minter, Enricher: s.Enricher, Outbox: s.Outbox, Capture: "later"}
	if err := s2.Open(); err == nil {
		t.Error("Open accepted an unknown capture mode")
	}
}

// captureRequests exercise every branch of the redirect path.
var captureRequests = []struct {
	name, uri string
	hdr       map[string]string
}{
	{"link", "/r/a1?utm_source=news&utm_medium=mail&sub1=a%20b&sub2=x&click_id=FORGED&aff=EVIL",
		map[string]string{"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "Referer": "https://blog.example/p?a=1&b=<2>"}},
	{"partner key cookie", "/r/a2?x=1", map[string]string{"User-Agent": "curl/8.0"}},
	{"custom param", "/r/b1?url=https%3A%2F%2Fevil.example%2F", map[string]string{"User-Agent": "Slackbot-LinkExpanding 1.0"}},
	{"unknown", "/r/nope?x=1", nil},
	{"paused", "/r/ap", nil},
	{"returning", "/r/a1", map[string]string{"Cookie": "ce_ca=PREV"}},
	{"head", "/r/a1", map[string]string{"X-Method": "HEAD"}},
}

var clickIDPattern = regexp.MustCompile(`[0-9a-hjkmnp-tv-z]{32}`)

// answer is what a visitor sees, with click ids replaced.
func answer(ctx *fasthttp.RequestCtx) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", ctx.Response.StatusCode())
	for _, h := range []string{"Location", "Cache-Control", "Content-Type"} {
		fmt.Fprintf(&b, "%s: %s\n", h, ctx.Response.Header.Peek(h))
	}
	ctx.Response.Header.VisitAllCookie(func(k, v []byte) { fmt.Fprintf(&b, "Set-Cookie: %s\n", v) })
	b.Write(ctx.Response.Body())
	return clickIDPattern.ReplaceAllString(b.String(), "<id>")
}

// runCaptureRequests sends captureRequests to a server in mode and returns
// the answers and the clicks its outbox holds once everything is committed.
func runCaptureRequests(t *testing.T, mode Capture) ([]string, []sink.Click, *Server) {
	t.Helper()
	s := newModeServer(t, mode, 2*time.Millisecond)
	prev := s.Minter.New(time.Now())
	var answers []string
	for _, r := range captureRequests {
		method := "GET"
		hdr := map[string]string{}
		for k, v := range r.hdr {
			if k == "X-Method" {
				method = v
				continue
			}
			hdr[k] = strings.ReplaceAll(v, "PREV", prev)
		}
		answers = append(answers, r.name+": "+answer(do(s, method, r.uri, hdr, "")))
	}
	if err := s.Outbox.Close(); err != nil { // commits what async queued
		t.Fatal(err)
	}
	return answers, decodeRows(t, s.Outbox), s
}

func decodeRows(t *testing.T, o *sink.Outbox) []sink.Click {
	t.Helper()
	path := o.Path
	ro := sink.NewOutbox(path)
	if err := ro.Open(); err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	rows, err := ro.Peek(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []sink.Click
	for _, r := range rows {
		c, err := sink.DecodeClick(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		if r.MsgID != c.ID || r.Subject != sink.ClickSubjectPrefix+c.MerchantID {
			t.Errorf("row %d: msg id %q subject %q for click %s of %s", r.Seq, r.MsgID, r.Subject, c.ID, c.MerchantID)
		}
		out = append(out, c)
	}
	return out
}

// TestCaptureModes: visitors get the same answers in every mode; durable and
// async record the same clicks; none records nothing and counts them.
func TestCaptureModes(t *testing.T) {
	durAnswers, durClicks, _ := runCaptureRequests(t, CaptureDurable)
	asyncAnswers, asyncClicks, asyncSrv := runCaptureRequests(t, CaptureAsync)
	noneAnswers, noneClicks, noneSrv := runCaptureRequests(t, CaptureNone)
	for i := range durAnswers {
		if asyncAnswers[i] != durAnswers[i] {
			t.Errorf("async answer differs:\n%s\ndurable:\n%s", asyncAnswers[i], durAnswers[i])
		}
		if noneAnswers[i] != durAnswers[i] {
			t.Errorf("none answer differs:\n%s\ndurable:\n%s", noneAnswers[i], durAnswers[i])
		}
	}
	if len(durClicks) != len(captureRequests) {
		t.Fatalf("durable recorded %d clicks, want %d", len(durClicks), len(captureRequests))
	}
	if len(asyncClicks) != len(durClicks) {
		t.Fatalf("async recorded %d clicks, want %d", len(asyncClicks), len(durClicks))
	}
	for i := range durClicks {
		d, a := durClicks[i], asyncClicks[i]
		if d.PrevClickID != "" {
			d.PrevClickID, a.PrevClickID = "<prev>", "<prev>"
		}
		d.ID, d.TS, a.ID, a.TS = "", 0, "", 0
		d.Destination = clickIDPattern.ReplaceAllString(d.Destination, "<id>")
		a.Destination = clickIDPattern.ReplaceAllString(a.Destination, "<id>")
		if fmt.Sprint(d) != fmt.Sprint(a) {
			t.Errorf("click %d (%s):\nasync   %+v\ndurable %+v", i, captureRequests[i].name, a, d)
		}
	}
	if durClicks[0].Subs[0] != "a b" || durClicks[0].UTM["utm_medium"] != "mail" || durClicks[0].Referrer != "https://blog.example/p?a=1&b=<2>" ||
		durClicks[5].PrevClickID == "" || !durClicks[3].Orphan || !durClicks[6].Bot {
		t.Errorf("durable clicks lack what the requests carried: %+v", durClicks)
	}
	if len(noneClicks) != 0 {
		t.Errorf("capture none recorded %d clicks", len(noneClicks))
	}
	if got := testutilCount(noneSrv.m.clicks[outcomeNotCaptured]); got != float64(len(captureRequests)) {
		t.Errorf("not_captured = %v, want %d", got, len(captureRequests))
	}
	for _, o := range []string{outcomeRecorded, outcomeOrphan, outcomeBot, outcomeNonUnique, outcomeDropped} {
		if got := testutilCount(noneSrv.m.clicks[o]); got != 0 {
			t.Errorf("capture none counted %v clicks as %s", got, o)
		}
	}
	if got := testutilCount(asyncSrv.m.clicks[outcomeNotCaptured]); got != 0 {
		t.Errorf("async counted %v clicks as not captured", got)
	}
}

const s2sBody = `{"partnership_code":"ALICE","click_url":"https://shop-a.example/?sub1=z"}`

// TestCaptureAsyncAPIWritesDurable: under async capture a redirect is
// answered before its commit, but a merchant write only after its own.
func TestCaptureAsyncAPIWritesDurable(t *testing.T) {
	const interval = 300 * time.Millisecond
	s := newModeServer(t, CaptureAsync, interval)
	auth := map[string]string{"Authorization": "Bearer " + keyA, "Content-Type": "application/json"}
	// The first commit starts at once; the next waits for the interval.
	if ctx := do(s, "GET", "/r/a1", nil, ""); ctx.Response.StatusCode() != 302 {
		t.Fatalf("redirect: %d", ctx.Response.StatusCode())
	}
	waitUntil(t, "first commit", func() bool { return s.Outbox.Stats().Appended == 1 })
	start := time.Now()
	if ctx := do(s, "GET", "/r/a1", nil, ""); ctx.Response.StatusCode() != 302 {
		t.Fatalf("redirect: %d", ctx.Response.StatusCode())
	}
	if st := s.Outbox.Stats(); st.Appended != 1 && time.Since(start) < interval/2 {
		t.Fatalf("the second click was committed before its 302 (stats %+v): not async", st)
	}
	ctx := do(s, "POST", "/v1/tracking/clicks", auth, s2sBody)
	if ctx.Response.StatusCode() != 201 {
		t.Fatalf("S2S click: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	// Answered 201: already in the outbox, and so is the click queued before it.
	if st := s.Outbox.Stats(); st.Appended != 3 {
		t.Fatalf("after the 201, outbox stats %+v; want the S2S click committed", st)
	}
	cs := outboxClicks(t, s)
	if len(cs) != 3 || cs[2].Source != sink.SourceS2S {
		t.Fatalf("outbox clicks = %+v", cs)
	}
}

// TestCaptureNoneAPIWritesDurable: capture none records no redirect, but a
// merchant write is committed before its 2xx as always.
func TestCaptureNoneAPIWritesDurable(t *testing.T) {
	s := newModeServer(t, CaptureNone, 0)
	auth := map[string]string{"Authorization": "Bearer " + keyA, "Content-Type": "application/json"}
	do(s, "GET", "/r/a1", nil, "")
	do(s, "GET", "/r/unknown", nil, "")
	if st := s.Outbox.Stats(); st.Appended != 0 {
		t.Fatalf("capture none wrote %d rows", st.Appended)
	}
	ctx := do(s, "POST", "/v1/tracking/clicks", auth, s2sBody)
	if ctx.Response.StatusCode() != 201 {
		t.Fatalf("S2S click: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if cs := outboxClicks(t, s); len(cs) != 1 || cs[0].Source != sink.SourceS2S {
		t.Fatalf("outbox clicks = %+v, want the S2S click", cs)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
