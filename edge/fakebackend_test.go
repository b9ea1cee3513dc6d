package edge

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/clickedge/clickedge/sink"
)

// fakeBackend is a scripted sink.Backend for dialect tests: results and
// records are what a test puts in; queries are remembered.
type fakeBackend struct {
	mu          sync.Mutex
	results     map[string]sink.EventResult // by event id; absent → pending
	conversions []sink.ConversionRecord
	customers   []sink.CustomerRecord
	lastQuery   sink.ConversionQuery
	down        bool // every call fails with worker_unavailable
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{results: map[string]sink.EventResult{}}
}

func (f *fakeBackend) ListClicks(context.Context, sink.ClickQuery) (sink.ClickPage, error) {
	return sink.ClickPage{Clicks: []sink.Click{}}, nil
}

func (f *fakeBackend) EventResult(_ context.Context, merchantID, eventID string, _ time.Duration) (sink.EventResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return sink.EventResult{}, &sink.APIError{Code: sink.APICodeWorkerUnavailable, Message: "down"}
	}
	r, ok := f.results[eventID]
	if i := strings.LastIndexByte(eventID, ':'); !ok && strings.Contains(eventID, ":customer:") && i > 0 {
		// Tests script customer results by merchant:customer:key; the
		// event id adds a digest of the request's content.
		r, ok = f.results[eventID[:i]]
	}
	if !ok {
		return sink.EventResult{}, &sink.APIError{Code: sink.APICodePending, Message: "not yet"}
	}
	return r, nil
}

func (f *fakeBackend) ListConversions(_ context.Context, q sink.ConversionQuery) (sink.ConversionPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastQuery = q
	if f.down {
		return sink.ConversionPage{}, &sink.APIError{Code: sink.APICodeWorkerUnavailable, Message: "down"}
	}
	p := sink.ConversionPage{Conversions: []sink.ConversionRecord{}}
	for _, c := range f.conversions {
		if c.MerchantID == q.MerchantID && (q.Status == "" || q.Status == c.Status) &&
			(q.CampaignID == "" || q.CampaignID == c.CampaignID) && (q.PartnerID == "" || q.PartnerID == c.PartnerID) {
			p.Conversions = append(p.Conversions, c)
		}
	}
	p.Total = len(p.Conversions)
	return p, nil
}

func (f *fakeBackend) Conversion(_ context.Context, merchantID, ref string) (sink.ConversionRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return sink.ConversionRecord{}, &sink.APIError{Code: sink.APICodeWorkerUnavailable, Message: "down"}
	}
	for _, c := range f.conversions {
		if c.MerchantID == merchantID && (c.ID == ref || c.UniqueID == ref) {
			return c, nil
		}
	}
	return sink.ConversionRecord{}, &sink.APIError{Code: sink.APICodeNotFound, Message: "no such conversion"}
}

func (f *fakeBackend) Customer(_ context.Context, merchantID, key string) (sink.CustomerRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return sink.CustomerRecord{}, &sink.APIError{Code: sink.APICodeWorkerUnavailable, Message: "down"}
	}
	for _, c := range f.customers {
		if c.MerchantID == merchantID && c.Key == key {
			return c, nil
		}
	}
	return sink.CustomerRecord{}, &sink.APIError{Code: sink.APICodeNotFound, Message: "no such customer"}
}

// outboxEvents decodes every merchant event waiting in the outbox.
func outboxEvents(s *Server) ([]sink.Event, error) {
	rows, err := s.Outbox.Peek(0, 100000)
	if err != nil {
		return nil, err
	}
	var out []sink.Event
	for _, r := range rows {
		if len(r.Subject) < len(sink.EventSubjectPrefix) || r.Subject[:len(sink.EventSubjectPrefix)] != sink.EventSubjectPrefix {
			continue
		}
		e, err := sink.DecodeEvent(r.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}
