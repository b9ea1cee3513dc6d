package edge

import (
	"fmt"
	"strings"
	"unsafe"
)

// Capture says what the redirect path does with the clicks it mints. Merchant
// API writes (S2S clicks, conversions, refunds, pixels…) ignore it: they are
// answered 2xx only after their outbox commit, in every mode.
type Capture string

const (
	// CaptureDurable sends the 302 only after the click's outbox commit:
	// an answered click survives a crash or power loss. The default.
	CaptureDurable Capture = "durable"
	// CaptureAsync queues the click for the outbox writer and sends the 302
	// at once. The loss window: a crash or power loss loses the clicks
	// queued since the last commit, at most sink.Outbox.CommitInterval plus
	// one commit's duration (a few milliseconds); a clean shutdown loses
	// none.
	CaptureAsync Capture = "async"
	// CaptureNone enriches and redirects but records nothing (counted as
	// clickedge_clicks_total{outcome="not_captured"}): for redirect-only
	// deployments and for measuring what capture costs.
	CaptureNone Capture = "none"
)

// ParseCapture parses a capture mode, ignoring case and surrounding space;
// the empty string means CaptureDurable.
func ParseCapture(s string) (Capture, error) {
	switch c := Capture(strings.ToLower(strings.TrimSpace(s))); c {
	case "":
		return CaptureDurable, nil
	case CaptureDurable, CaptureAsync, CaptureNone:
		return c, nil
	}
	return "", fmt.Errorf("parse capture mode %q: want durable, async or none", s)
}

// bytesView returns b's bytes as a string without copying. The redirect path
// uses it for values it only reads, or hands to code that copies them (the
// click encoder, the outbox, fasthttp's header setters), before the handler
// returns: the string must not outlive b's contents, which fasthttp and the
// pooled click state reuse for the next request.
func bytesView(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
