package edge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/sink"
)

// commitCtx is the context of outbox appends. It is never the request's:
// fasthttp cancels every request context when Shutdown begins, and a click
// or event already accepted must still be committed while the server drains
// (the outbox closes only after the listener has finished).
var commitCtx = context.Background()

// DefaultResultWait is how long a merchant write waits for the worker's
// result before it is answered 202 "queued".
const DefaultResultWait = 2 * time.Second

// commitEvent makes a merchant event durable in the outbox: the edge answers
// 2xx only after this returns nil. The event's id is its Nats-Msg-Id.
func (s *Server) commitEvent(ctx *fasthttp.RequestCtx, ev *sink.Event) *apiError {
	ev.V = sink.EventVersion
	if ev.TS == 0 {
		ev.TS = s.Now().UnixMilli()
	}
	ev.Edge = s.EdgeID
	data, err := sink.AppendEvent(nil, ev)
	if err == nil {
		err = s.Outbox.Append(commitCtx, sink.Record{Subject: sink.EventSubjectPrefix + ev.MerchantID, MsgID: ev.ID, Data: data})
	}
	if err != nil {
		s.reqLog(ctx).Error("merchant event not stored", "merchant", ev.MerchantID, "kind", ev.Kind, "err", err)
		return errf(CodeUnavailable, "the event could not be stored; retry later")
	}
	return nil
}

// awaitResult waits up to the edge's ResultWait for the worker's result of a
// committed event. ok is false when the worker is slow or away: the caller
// answers 202 with the identifiers it has, and the result is readable later.
func (s *Server) awaitResult(merchantID, eventID string) (sink.EventResult, bool) {
	if s.Backend == nil {
		return sink.EventResult{}, false
	}
	wait := s.ResultWait
	if wait <= 0 {
		wait = DefaultResultWait
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait+time.Second)
	defer cancel()
	r, err := s.Backend.EventResult(ctx, merchantID, eventID, wait)
	if err != nil {
		var ae *sink.APIError
		if !errors.As(err, &ae) || (ae.Code != sink.APICodePending && ae.Code != sink.APICodeWorkerUnavailable) {
			s.Logger.Warn("event result", "merchant", merchantID, "event", eventID, "err", err)
		}
		return sink.EventResult{}, false
	}
	return r, true
}

// backendError turns an error of the worker's API into the answer for the
// merchant: not found stays 404, the worker being away is 503.
func backendError(err error, notFound string) *apiError {
	var ae *sink.APIError
	if errors.As(err, &ae) {
		switch ae.Code {
		case sink.APICodeNotFound:
			return errf(notFound, ae.Message)
		case sink.APICodeBadRequest, "invalid_request":
			return errf(CodeInvalidParameter, ae.Message)
		}
	}
	return errf(CodeWorkerUnavailable, "the attribution worker did not answer; retry later")
}

// backendReadTimeout bounds one read of the worker's API.
const backendReadTimeout = 5 * time.Second

// lookupConversion reads a conversion of the merchant from the worker (by
// conv_ id or the merchant's unique id); notFound is the code answered when
// the merchant has none.
func (s *Server) lookupConversion(merchantID, ref, notFound string) (sink.ConversionRecord, *apiError) {
	if s.Backend == nil {
		return sink.ConversionRecord{}, errf(CodeWorkerUnavailable, "this edge has no attribution worker configured")
	}
	rctx, cancel := context.WithTimeout(context.Background(), backendReadTimeout)
	defer cancel()
	rec, err := s.Backend.Conversion(rctx, merchantID, ref)
	if err != nil {
		aerr := backendError(err, notFound)
		if aerr.Code == CodeWorkerUnavailable {
			s.Logger.Error("read conversion", "merchant", merchantID, "err", err)
		}
		return sink.ConversionRecord{}, aerr
	}
	if rec.MerchantID != merchantID {
		// Defense in depth: never show another tenant's conversion.
		return sink.ConversionRecord{}, errf(notFound, "no conversion with that id")
	}
	return rec, nil
}

// maxIdempotencyKey bounds the Idempotency-Key header (it becomes part of an
// event id, so of a Nats-Msg-Id).
const maxIdempotencyKey = 128

// idempotencyKey returns the request's Idempotency-Key header, "" when
// absent; a malformed one is 400. Writes that carry no id of their own
// (a partial refund without external_refund_id, a Partnero transaction
// without key, a balance credit) use it so that a retry is one event.
func idempotencyKey(ctx *fasthttp.RequestCtx) (string, *apiError) {
	v := ctx.Request.Header.Peek("Idempotency-Key")
	if len(v) == 0 {
		return "", nil
	}
	if len(v) > maxIdempotencyKey {
		return "", errf(CodeInvalidParameter, fmt.Sprintf("Idempotency-Key is longer than %d characters", maxIdempotencyKey))
	}
	for _, c := range v {
		if c <= ' ' || c > '~' || c == ':' {
			return "", errf(CodeInvalidParameter, "Idempotency-Key must be visible ASCII characters other than ':'")
		}
	}
	return string(v), nil
}
