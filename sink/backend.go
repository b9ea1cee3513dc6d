package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Subjects of the worker's conversion API (request/reply, JSON bodies,
// replies {"result":…} or {"error":APIError}).
const (
	APISubjectEventResult     = APISubjectPrefix + "events.result"
	APISubjectConversionsList = APISubjectPrefix + "conversions.list"
	APISubjectConversionGet   = APISubjectPrefix + "conversions.get"
	APISubjectCustomerGet     = APISubjectPrefix + "customers.get"
)

// More APIError codes of the conversion API.
const (
	// APICodePending: the worker has not processed the event yet.
	APICodePending = "pending"
	// APICodeNotFound: the merchant has no such conversion or customer.
	APICodeNotFound = "not_found"
)

// MaxResultWait bounds EventResult's wait on the worker side.
const MaxResultWait = 10 * time.Second

// Backend is everything an edge asks of the attribution worker. The worker
// implements it in process (serve); APIClient implements it over NATS.
type Backend interface {
	ClickLister
	// EventResult returns the worker's result for an event of the merchant,
	// waiting up to wait (at most MaxResultWait) for the worker to process
	// it; *APIError{Code: APICodePending} when it has not in that time.
	EventResult(ctx context.Context, merchantID, eventID string, wait time.Duration) (EventResult, error)
	// ListConversions answers a ConversionQuery, newest first.
	ListConversions(ctx context.Context, q ConversionQuery) (ConversionPage, error)
	// Conversion returns one conversion of the merchant by the worker's id
	// (conv_…) or the merchant's unique id; *APIError{Code: APICodeNotFound}
	// when the merchant has none (another merchant's id included).
	Conversion(ctx context.Context, merchantID, ref string) (ConversionRecord, error)
	// Customer returns one customer of the merchant by key; APICodeNotFound
	// when the merchant has none.
	Customer(ctx context.Context, merchantID, key string) (CustomerRecord, error)
}

type eventResultReq struct {
	MerchantID string `json:"merchant_id"`
	EventID    string `json:"event_id"`
	WaitMilli  int64  `json:"wait_ms"`
}

type refReq struct {
	MerchantID string `json:"merchant_id"`
	Ref        string `json:"ref"`
}

type opReply struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *APIError       `json:"error,omitempty"`
}

// ServeBackend answers the conversion API subjects with b (queue group
// APIQueueGroup), alongside ServeAPI's click listing. Unsubscribe the
// returned subscriptions to stop.
func ServeBackend(nc *nats.Conn, b Backend) ([]*nats.Subscription, error) {
	ops := map[string]func(ctx context.Context, body []byte) (any, error){
		APISubjectEventResult: func(ctx context.Context, body []byte) (any, error) {
			var r eventResultReq
			if err := json.Unmarshal(body, &r); err != nil || r.MerchantID == "" || r.EventID == "" {
				return nil, &APIError{Code: APICodeBadRequest, Message: "want merchant_id and event_id"}
			}
			return b.EventResult(ctx, r.MerchantID, r.EventID, min(time.Duration(r.WaitMilli)*time.Millisecond, MaxResultWait))
		},
		APISubjectConversionsList: func(ctx context.Context, body []byte) (any, error) {
			var q ConversionQuery
			if err := json.Unmarshal(body, &q); err != nil || q.MerchantID == "" || q.Limit < 0 || q.Offset < 0 {
				return nil, &APIError{Code: APICodeBadRequest, Message: "not a valid conversion query"}
			}
			return b.ListConversions(ctx, q)
		},
		APISubjectConversionGet: func(ctx context.Context, body []byte) (any, error) {
			var r refReq
			if err := json.Unmarshal(body, &r); err != nil || r.MerchantID == "" || r.Ref == "" {
				return nil, &APIError{Code: APICodeBadRequest, Message: "want merchant_id and ref"}
			}
			return b.Conversion(ctx, r.MerchantID, r.Ref)
		},
		APISubjectCustomerGet: func(ctx context.Context, body []byte) (any, error) {
			var r refReq
			if err := json.Unmarshal(body, &r); err != nil || r.MerchantID == "" || r.Ref == "" {
				return nil, &APIError{Code: APICodeBadRequest, Message: "want merchant_id and ref"}
			}
			return b.Customer(ctx, r.MerchantID, r.Ref)
		},
	}
	var subs []*nats.Subscription
	sem := make(chan struct{}, apiConcurrency)
	for subject, op := range ops {
		sub, err := nc.QueueSubscribe(subject, APIQueueGroup, func(m *nats.Msg) {
			if m.Reply == "" {
				return
			}
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				_ = m.Respond(answerOp(op, m.Data))
			}()
		})
		if err != nil {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			return nil, fmt.Errorf("serve %s: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

func answerOp(op func(context.Context, []byte) (any, error), body []byte) (out []byte) {
	reply := func(r opReply) []byte {
		b, err := json.Marshal(r)
		if err != nil {
			b, _ = json.Marshal(opReply{Error: &APIError{Code: APICodeInternal, Message: "encode reply"}})
		}
		return b
	}
	defer func() {
		if p := recover(); p != nil {
			out = reply(opReply{Error: &APIError{Code: APICodeInternal, Message: fmt.Sprintf("worker panicked: %v", p)}})
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), apiServeTimeout)
	defer cancel()
	v, err := op(ctx, body)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae != nil && ae.Code != "" {
			return reply(opReply{Error: ae})
		}
		return reply(opReply{Error: &APIError{Code: APICodeInternal, Message: err.Error()}})
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return reply(opReply{Error: &APIError{Code: APICodeInternal, Message: "encode result"}})
	}
	return reply(opReply{Result: raw})
}

// call sends one request of the conversion API and decodes the result into out.
func (c *APIClient) call(ctx context.Context, subject string, req any, out any, extra time.Duration) error {
	if c.NC == nil {
		return fmt.Errorf("%s: nil connection", subject)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: encode request: %w", subject, err)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultAPITimeout
	}
	timeout += extra
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := c.NC.RequestWithContext(rctx, subject, body)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", subject, ctx.Err())
		}
		if errors.Is(err, nats.ErrNoResponders) {
			return &APIError{Code: APICodeWorkerUnavailable, Message: "no worker is serving " + subject}
		}
		return &APIError{Code: APICodeWorkerUnavailable, Message: fmt.Sprintf("no answer from a worker within %s: %v", timeout, err)}
	}
	var r opReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return fmt.Errorf("%s: decode reply: %w", subject, err)
	}
	if r.Error != nil {
		if r.Error.Code == "" {
			return fmt.Errorf("%s: error reply without code", subject)
		}
		return r.Error
	}
	if r.Result == nil {
		return fmt.Errorf("%s: reply without result", subject)
	}
	if err := json.Unmarshal(r.Result, out); err != nil {
		return fmt.Errorf("%s: decode result: %w", subject, err)
	}
	return nil
}

// EventResult implements Backend over NATS.
func (c *APIClient) EventResult(ctx context.Context, merchantID, eventID string, wait time.Duration) (EventResult, error) {
	var r EventResult
	wait = min(max(wait, 0), MaxResultWait)
	err := c.call(ctx, APISubjectEventResult, eventResultReq{merchantID, eventID, wait.Milliseconds()}, &r, wait)
	return r, err
}

// ListConversions implements Backend over NATS.
func (c *APIClient) ListConversions(ctx context.Context, q ConversionQuery) (ConversionPage, error) {
	var p ConversionPage
	err := c.call(ctx, APISubjectConversionsList, q, &p, 0)
	if p.Conversions == nil {
		p.Conversions = []ConversionRecord{}
	}
	return p, err
}

// Conversion implements Backend over NATS.
func (c *APIClient) Conversion(ctx context.Context, merchantID, ref string) (ConversionRecord, error) {
	var r ConversionRecord
	err := c.call(ctx, APISubjectConversionGet, refReq{merchantID, ref}, &r, 0)
	return r, err
}

// Customer implements Backend over NATS.
func (c *APIClient) Customer(ctx context.Context, merchantID, key string) (CustomerRecord, error) {
	var r CustomerRecord
	err := c.call(ctx, APISubjectCustomerGet, refReq{merchantID, key}, &r, 0)
	return r, err
}
