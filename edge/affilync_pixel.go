package edge

// The Affilync browser pixel (seed document 004, "JavaScript Pixel"), and an
// image pixel for pages without JavaScript. Decisions where the document is
// silent:
//
//   - Pixels authenticate only with the campaign's public pixel id
//     (Campaign.PixelID), never with the merchant's secret key, which must
//     not appear in a page. The id reaches the script from the script tag's
//     data-pixel-id attribute, from affilync('init', '<pixel id>'), or from a
//     pid parameter on the script's own URL (/pixel.js?pid=…, which the edge
//     writes into the script it serves). The document's snippet names no
//     pixel id; a merchant adds one of these three.
//   - GET /pixel.js is served with Cache-Control "public, max-age=300": a
//     fix reaches every page within five minutes. It defines
//     window.affilync(cmd, …); a call made before the script loaded (the
//     document's snippet loads it async, so its inline call can run first)
//     is replayed when a stub queued it the usual way:
//     window.affilync = window.affilync || function(){(affilync.q = affilync.q || []).push(arguments)}.
//     affilync('track', 'conversion', {order_id, amount, currency,
//     event_type, coupon_code, product_id, product_type}) reports to
//     /pixel/conversion on the origin the script was loaded from, with
//     credentials, so that the browser sends the edge's first-party click
//     cookie (afk_cid, or whatever the campaign names it). The cookie stays
//     HttpOnly: the script never reads it. It is first-party when the edge is
//     served on the merchant's own domain (track.merchant.com).
//   - GET /pixel/conversion and GET /pixel.gif take pid, order_id and amount
//     (required), currency (default: the campaign's currency, else USD),
//     event_type, coupon_code, product_id and product_type, with the track
//     call's rules. The click id comes only from the campaign's cookie (a
//     click_id parameter is ignored: anyone can write a page), into
//     CookieClickID, or the partner key when the campaign's cookie holds
//     partner keys; the event names the pixel's campaign, is marked
//     ClientReported, and carries the browser's IP (under the edge's privacy
//     mode), geo and user agent. Its event id has its own key space,
//     EventID(merchant, conversion, "pixel:" + order_id), never the S2S one:
//     a pixel is public, so a forged hit must not take the event id of the
//     merchant's authenticated report. Two pixel hits for one order are one
//     event; a pixel and a server call for one order still name one
//     conversion (UniqueID is the order id), and the worker lets the
//     authenticated report supersede a pending client-reported one.
//   - /pixel.gif always answers 200 with the 43-byte transparent GIF and
//     /pixel/conversion always answers 204, never cached, whatever the input:
//     a thank-you page shows no broken image. Bad input writes nothing and is
//     counted in clickedge_edge_pixel_requests_total{outcome}; so is an
//     outbox that could not store the conversion (also logged, rate-limited).
//     The pixel does not wait for the worker. HEAD requests record nothing.

import (
	"encoding/json"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/enrich"
	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

// affilyncGIF is the 1×1 transparent GIF that /pixel.gif answers: 43
// bytes, a two-colour palette whose colour 0 is transparent.
var affilyncGIF = []byte{
	0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
	0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
}

// Route labels of the pixel.
const (
	routeAffilyncPixelJS   = "affilync_pixel_js"
	routeAffilyncPixelConv = "affilync_pixel_conversion"
	routeAffilyncPixelGIF  = "affilync_pixel_gif"
)

// Pixel outcomes: every pixel request is counted under exactly one.
const (
	affilyncPixelRecorded     = "recorded"
	affilyncPixelUnknownPixel = "unknown_pixel"
	affilyncPixelBadInput     = "bad_input"
	affilyncPixelNotStored    = "not_stored"
	affilyncPixelNoCatalog    = "no_catalog"
	affilyncPixelHead         = "head"
)

var affilyncPixelOutcomes = []string{affilyncPixelRecorded, affilyncPixelUnknownPixel, affilyncPixelBadInput,
	affilyncPixelNotStored, affilyncPixelNoCatalog, affilyncPixelHead}

func init() {
	registerRoutes(
		route{Method: "GET", Pattern: "/pixel.js", Name: routeAffilyncPixelJS, Handler: (*Server).affilyncPixelJS},
		route{Method: "GET", Pattern: "/pixel/conversion", Name: routeAffilyncPixelConv, Handler: (*Server).affilyncPixelConversion},
		route{Method: "GET", Pattern: "/pixel.gif", Name: routeAffilyncPixelGIF, Handler: (*Server).affilyncPixelGIF},
	)
}

// affilyncPixelCounters holds each server's pixel counter, registered on its
// Registerer on first use: the Server has no per-dialect metrics of its own.
var affilyncPixelCounters sync.Map // *Server → *prometheus.CounterVec

func (s *Server) affilyncPixelCount(outcome string) {
	v, ok := affilyncPixelCounters.Load(s)
	if !ok {
		cv := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickedge_edge_pixel_requests_total",
			Help: "Conversion pixel requests (pixel.gif, /pixel/conversion), by outcome (recorded, unknown_pixel, bad_input, not_stored, no_catalog, head).",
		}, []string{"outcome"})
		for _, o := range affilyncPixelOutcomes {
			cv.WithLabelValues(o)
		}
		if s.Registerer != nil {
			if err := s.Registerer.Register(cv); err != nil {
				if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
					if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
						cv = existing
					}
				}
			}
		}
		v, _ = affilyncPixelCounters.LoadOrStore(s, cv)
	}
	v.(*prometheus.CounterVec).WithLabelValues(outcome).Inc()
}

// affilyncPixelScript is the script /pixel.js serves, around the pixel id
// given in its own URL (a JSON string literal, "" when none).
const affilyncPixelScriptHead = `/* clickedge conversion pixel (Affilync compatible). */
(function (w, d) {
  "use strict";
  var fromURL = `

const affilyncPixelScriptTail = `;
  var script = d.currentScript;
  if (!script) {
    var all = d.getElementsByTagName("script");
    for (var i = all.length - 1; i >= 0; i--) {
      if (/\/pixel\.js(\?|#|$)/.test(all[i].src || "")) { script = all[i]; break; }
    }
  }
  var m = /^(https?:\/\/[^\/?#]+)/i.exec((script && script.src) || "");
  var origin = m ? m[1] : "";
  var pid = (script && script.getAttribute && script.getAttribute("data-pixel-id")) || fromURL || "";
  var keys = ["order_id", "amount", "currency", "event_type", "coupon_code", "product_id", "product_type"];
  function send(props) {
    if (!origin || !pid || !props) { return false; }
    var q = "pid=" + encodeURIComponent(pid);
    for (var i = 0; i < keys.length; i++) {
      var v = props[keys[i]];
      if (v !== undefined && v !== null && v !== "") { q += "&" + keys[i] + "=" + encodeURIComponent(String(v)); }
    }
    try {
      if (typeof w.fetch === "function") {
        w.fetch(origin + "/pixel/conversion?" + q, { method: "GET", credentials: "include", mode: "no-cors", cache: "no-store", keepalive: true });
        return true;
      }
    } catch (e) {}
    var img = new w.Image(1, 1);
    img.src = origin + "/pixel.gif?" + q;
    return true;
  }
  function affilync(cmd, name, props) {
    if (cmd === "init") {
      if (typeof name === "string" && name) { pid = name; }
      return true;
    }
    if (cmd === "track" && name === "conversion") { return send(props || {}); }
    return false;
  }
  var queued = (typeof w.affilync === "function" && w.affilync.q) || [];
  w.affilync = affilync;
  for (var j = 0; j < queued.length; j++) { affilync.apply(w, queued[j]); }
})(window, document);
`

// affilyncPixelJS is GET /pixel.js.
func (s *Server) affilyncPixelJS(ctx *fasthttp.RequestCtx, _ Params) {
	pid := string(ctx.QueryArgs().Peek("pid"))
	if !affilyncPixelIDOK(pid) {
		pid = ""
	}
	lit, _ := json.Marshal(pid) // a checked id: letters, digits, '_' and '-'
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/javascript; charset=utf-8")
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "public, max-age=300")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	body := make([]byte, 0, len(affilyncPixelScriptHead)+len(lit)+len(affilyncPixelScriptTail))
	body = append(append(append(body, affilyncPixelScriptHead...), lit...), affilyncPixelScriptTail...)
	ctx.SetBody(body)
}

// affilyncPixelIDOK reports whether id has the catalog's pixel id form.
func affilyncPixelIDOK(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// affilyncPixelConversion is GET /pixel/conversion: 204 whatever happens.
func (s *Server) affilyncPixelConversion(ctx *fasthttp.RequestCtx, _ Params) {
	s.affilyncPixelRecord(ctx)
	resetResponse(ctx)
	ctx.Response.Header.SetNoDefaultContentType(true)
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store, no-cache, must-revalidate, max-age=0")
}

// affilyncPixelGIF is GET /pixel.gif: the transparent GIF whatever happens.
func (s *Server) affilyncPixelGIF(ctx *fasthttp.RequestCtx, _ Params) {
	s.affilyncPixelRecord(ctx)
	resetResponse(ctx)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("image/gif")
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store, no-cache, must-revalidate, max-age=0")
	ctx.Response.Header.Set("Pragma", "no-cache")
	ctx.Response.Header.Set("Expires", "0")
	ctx.SetBody(affilyncGIF)
}

// affilyncPixelRecord parses a pixel request and commits its conversion;
// the outcome is counted, never shown to the browser.
func (s *Server) affilyncPixelRecord(ctx *fasthttp.RequestCtx) {
	outcome, err := s.affilyncPixelCommit(ctx)
	if err != nil {
		s.dropLog.log("pixel conversion not stored", err)
	}
	s.affilyncPixelCount(outcome)
}

func (s *Server) affilyncPixelCommit(ctx *fasthttp.RequestCtx) (string, error) {
	if ctx.IsHead() {
		return affilyncPixelHead, nil
	}
	x := s.index.Load()
	if x == nil {
		return affilyncPixelNoCatalog, nil
	}
	args := ctx.QueryArgs()
	camp, ok := x.CampaignByPixel(string(args.Peek("pid")))
	if !ok {
		return affilyncPixelUnknownPixel, nil
	}
	c, aerr := affilyncParsePixel(args, camp)
	if aerr != nil {
		return affilyncPixelBadInput, nil
	}
	if v := ctx.Request.Header.Cookie(camp.Cookie()); len(v) > 0 {
		if cc, err := redirect.ParseCookieValue(camp, v); err == nil {
			c.cookieClickID, c.cookiePartnerKey = cc.ClickID, cc.PartnerKey
		}
	}
	var f enrich.Facts
	in := enrich.Input{
		Peer:          peerAddr(ctx),
		XForwardedFor: ctx.Request.Header.PeekBytes(hdrXFF),
		Forwarded:     ctx.Request.Header.PeekBytes(hdrForwarded),
		UserAgent:     ctx.Request.Header.UserAgent(),
		LinkKey:       "pixel/" + camp.ID,
	}
	s.Enricher.Enrich(&in, &f)
	c.ip, c.country, c.region, c.city = f.StoredIP, f.Country, f.Region, f.City
	c.userAgent = truncate(string(in.UserAgent), 512)
	ev := s.affilyncEvent(camp.MerchantID, sink.DialectPixel, &c)
	ev.ID = affilyncPixelEventID(camp.MerchantID, c.orderID)
	if aerr := s.commitEvent(ctx, ev); aerr != nil {
		return affilyncPixelNotStored, aerr
	}
	return affilyncPixelRecorded, nil
}

// affilyncPixelKeyPrefix starts the event key of a pixel conversion.
const affilyncPixelKeyPrefix = "pixel:"

// affilyncPixelEventID is the event id of a pixel conversion: in its own
// key space, so that a public, forgeable pixel hit never takes the id of the
// merchant's authenticated report (POST /api/conversions/track, postback,
// Partnac) for the same order.
func affilyncPixelEventID(merchantID, orderID string) string {
	return sink.EventID(merchantID, sink.KindConversion, affilyncPixelKeyPrefix+orderID)
}

// affilyncParsePixel parses a pixel's query for campaign camp.
func affilyncParsePixel(args *fasthttp.Args, camp *redirect.Campaign) (affilyncConv, *apiError) {
	c := affilyncConv{campaignID: camp.ID}
	c.orderID = string(args.Peek("order_id"))
	amount := args.Peek("amount")
	if c.orderID == "" || len(amount) == 0 {
		return c, errf(CodeMissingField, "order_id and amount are required")
	}
	c.coupon = string(args.Peek("coupon_code"))
	c.productID = string(args.Peek("product_id"))
	c.productType = string(args.Peek("product_type"))
	def := camp.Currency
	if def == "" {
		def = "USD"
	}
	aerr := affilyncFields(camp.MerchantID, &c, amount, false, string(args.Peek("currency")),
		string(args.Peek("event_type")), "", def)
	return c, aerr
}
