package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Worker read API over NATS request/reply.
const (
	// APISubjectClicksList answers a JSON ClickQuery with {"page":ClickPage}
	// or {"error":APIError}.
	APISubjectClicksList = APISubjectPrefix + "clicks.list"
	// APIQueueGroup spreads requests over every worker serving the API.
	APIQueueGroup = "clickedge-worker"
	// DefaultAPITimeout is how long an APIClient waits for an answer.
	DefaultAPITimeout = 2 * time.Second
)

// APIError codes produced by this package.
const (
	// APICodeBadRequest: the request body is not a valid ClickQuery.
	APICodeBadRequest = "bad_request"
	// APICodeInternal: the worker failed for a reason of its own.
	APICodeInternal = "internal"
	// APICodeWorkerUnavailable: no worker answered (none subscribed, NATS
	// down, or no answer within the timeout).
	APICodeWorkerUnavailable = "worker_unavailable"
)

const (
	// apiServeTimeout bounds one ListClicks on the worker; the client gave
	// up long before, so there is no point going on.
	apiServeTimeout = 30 * time.Second
	// apiConcurrency bounds the requests one ServeAPI handles at once.
	apiConcurrency = 64
)

// ClickLister answers click queries; the worker's store implements it, and so
// does APIClient on the edge.
type ClickLister interface {
	ListClicks(ctx context.Context, q ClickQuery) (ClickPage, error)
}

// apiReply is the wire form of an answer: exactly one field is set.
type apiReply struct {
	Page  *ClickPage `json:"page,omitempty"`
	Error *APIError  `json:"error,omitempty"`
}

// ServeAPI answers APISubjectClicksList requests with l, in queue group
// APIQueueGroup, handling up to 64 requests at a time. An *APIError returned
// by l (also wrapped) reaches the client as is; any other error, or a panic,
// becomes code "internal"; an undecodable request gets "bad_request" without
// reaching l. Unsubscribe (or Drain) the returned subscription to stop.
func ServeAPI(nc *nats.Conn, l ClickLister) (*nats.Subscription, error) {
	if nc == nil || l == nil {
		return nil, fmt.Errorf("serve api: nil connection or lister")
	}
	sem := make(chan struct{}, apiConcurrency)
	sub, err := nc.QueueSubscribe(APISubjectClicksList, APIQueueGroup, func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			// Respond fails only when the connection is gone; the client
			// then times out, which is all it could learn anyway.
			_ = m.Respond(answerListClicks(l, m.Data))
		}()
	})
	if err != nil {
		return nil, fmt.Errorf("serve api on %s: %w", APISubjectClicksList, err)
	}
	return sub, nil
}

// answerListClicks turns a request body into a reply body.
func answerListClicks(l ClickLister, body []byte) (out []byte) {
	reply := func(r apiReply) []byte {
		b, err := json.Marshal(r)
		if err != nil {
			b, _ = json.Marshal(apiReply{Error: &APIError{Code: APICodeInternal, Message: "encode reply: " + err.Error()}})
		}
		return b
	}
	defer func() {
		if p := recover(); p != nil {
			out = reply(apiReply{Error: &APIError{Code: APICodeInternal, Message: fmt.Sprintf("list clicks panicked: %v", p)}})
		}
	}()
	q, err := decodeClickQuery(body)
	if err != nil {
		return reply(apiReply{Error: &APIError{Code: APICodeBadRequest, Message: err.Error()}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiServeTimeout)
	defer cancel()
	page, err := l.ListClicks(ctx, q)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae != nil && ae.Code != "" {
			return reply(apiReply{Error: ae})
		}
		return reply(apiReply{Error: &APIError{Code: APICodeInternal, Message: err.Error()}})
	}
	if page.Clicks == nil {
		page.Clicks = []Click{}
	}
	return reply(apiReply{Page: &page})
}

// decodeClickQuery parses a request body from the network.
func decodeClickQuery(body []byte) (ClickQuery, error) {
	var q ClickQuery
	if err := json.Unmarshal(body, &q); err != nil {
		return ClickQuery{}, fmt.Errorf("decode click query: %w", err)
	}
	if q.Limit < 0 || q.Offset < 0 {
		return ClickQuery{}, fmt.Errorf("decode click query: negative limit %d or offset %d", q.Limit, q.Offset)
	}
	return q, nil
}

// decodeAPIReply parses a worker's reply: the page, or the worker's
// *APIError, or an error saying the reply is malformed.
func decodeAPIReply(body []byte) (ClickPage, error) {
	var r apiReply
	if err := json.Unmarshal(body, &r); err != nil {
		return ClickPage{}, fmt.Errorf("decode worker reply: %w", err)
	}
	switch {
	case r.Error != nil && r.Page != nil:
		return ClickPage{}, fmt.Errorf("decode worker reply: both page and error")
	case r.Error != nil:
		if r.Error.Code == "" {
			return ClickPage{}, fmt.Errorf("decode worker reply: error without code: %q", r.Error.Message)
		}
		return ClickPage{}, r.Error
	case r.Page != nil:
		if r.Page.Clicks == nil {
			r.Page.Clicks = []Click{}
		}
		return *r.Page, nil
	}
	return ClickPage{}, fmt.Errorf("decode worker reply: neither page nor error")
}

// APIClient asks a worker for clicks over NATS; it implements ClickLister for
// an edge that runs apart from the worker.
type APIClient struct {
	NC *nats.Conn
	// Timeout bounds one request; 0 means DefaultAPITimeout.
	Timeout time.Duration
}

// ListClicks sends q to a worker. Errors the worker reports come back as
// *APIError; so does the absence of a worker (no responders, NATS down, no
// answer in time), with code APICodeWorkerUnavailable. If ctx itself ends,
// the error wraps ctx's error instead.
func (c *APIClient) ListClicks(ctx context.Context, q ClickQuery) (ClickPage, error) {
	if c.NC == nil {
		return ClickPage{}, fmt.Errorf("list clicks: nil connection")
	}
	body, err := json.Marshal(q)
	if err != nil {
		return ClickPage{}, fmt.Errorf("list clicks: encode query: %w", err)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultAPITimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := c.NC.RequestWithContext(rctx, APISubjectClicksList, body)
	if err != nil {
		if ctx.Err() != nil {
			return ClickPage{}, fmt.Errorf("list clicks for merchant %s: %w", q.MerchantID, ctx.Err())
		}
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return ClickPage{}, &APIError{Code: APICodeWorkerUnavailable, Message: "no worker is serving " + APISubjectClicksList}
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			return ClickPage{}, &APIError{Code: APICodeWorkerUnavailable, Message: fmt.Sprintf("no worker answered within %s", timeout)}
		default:
			return ClickPage{}, &APIError{Code: APICodeWorkerUnavailable, Message: "request to worker failed: " + err.Error()}
		}
	}
	return decodeAPIReply(msg.Data)
}
