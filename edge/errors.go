package edge

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/clickedge/clickedge/money"
)

// Error codes returned in {"error":{"code":…,"message":…}}. They are part of
// the API: clients branch on them, so they never change meaning.
const (
	CodeInvalidJSON        = "invalid_json"
	CodeInvalidField       = "invalid_field"
	CodeMissingField       = "missing_field"
	CodeInvalidParameter   = "invalid_parameter"
	CodeUnauthorized       = "unauthorized"
	CodeNotFound           = "not_found"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodePayloadTooLarge    = "payload_too_large"
	CodeUnsupportedMedia   = "unsupported_media_type"
	CodeUnknownPartnership = "unknown_partnership_code"
	CodeUnknownCampaign    = "unknown_campaign"
	CodeUnknownPartner     = "unknown_partnership"
	CodeUnavailable        = "unavailable"
	CodeWorkerUnavailable  = "worker_unavailable"
	CodeInternal           = "internal"

	// Amounts and currencies (package money's errors), the same in every dialect.
	CodeInvalidAmount    = "invalid_amount"    // not decimal text: NaN, exponent, empty, boolean…
	CodeNegativeAmount   = "negative_amount"   // a negative amount where none is allowed
	CodeTooManyDecimals  = "too_many_decimals" // more decimals than the currency has
	CodeAmountTooLarge   = "amount_too_large"  // above money.MaxMinor minor units
	CodeUnknownCurrency  = "unknown_currency"  // not an active ISO 4217 code
	CodeCurrencyMismatch = "currency_mismatch" // another currency than the conversion's

	// Conversions and customers.
	CodeConversionNotFound  = "conversion_not_found"
	CodeCustomerNotFound    = "customer_not_found"
	CodeTransactionNotFound = "transaction_not_found"
	CodeUnknownAffiliate    = "unknown_affiliate"
	CodeRefundExceedsAmount = "refund_exceeds_amount"
	CodeInvalidTransition   = "invalid_transition"
	// CodeEventRejected: the worker rejected the event for a reason the edge
	// has no code of its own for; the message names the worker's code.
	CodeEventRejected = "event_rejected"
)

// codeStatus maps every error code to its HTTP status, in one place.
var codeStatus = map[string]int{
	CodeInvalidJSON:         http.StatusBadRequest,
	CodeInvalidParameter:    http.StatusBadRequest,
	CodeInvalidField:        http.StatusUnprocessableEntity,
	CodeMissingField:        http.StatusUnprocessableEntity,
	CodeUnknownPartnership:  http.StatusUnprocessableEntity,
	CodeUnauthorized:        http.StatusUnauthorized,
	CodeNotFound:            http.StatusNotFound,
	CodeUnknownCampaign:     http.StatusNotFound,
	CodeUnknownPartner:      http.StatusNotFound,
	CodeMethodNotAllowed:    http.StatusMethodNotAllowed,
	CodePayloadTooLarge:     http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia:    http.StatusUnsupportedMediaType,
	CodeUnavailable:         http.StatusServiceUnavailable,
	CodeWorkerUnavailable:   http.StatusServiceUnavailable,
	CodeInternal:            http.StatusInternalServerError,
	CodeInvalidAmount:       http.StatusUnprocessableEntity,
	CodeNegativeAmount:      http.StatusUnprocessableEntity,
	CodeTooManyDecimals:     http.StatusUnprocessableEntity,
	CodeAmountTooLarge:      http.StatusUnprocessableEntity,
	CodeUnknownCurrency:     http.StatusUnprocessableEntity,
	CodeCurrencyMismatch:    http.StatusUnprocessableEntity,
	CodeConversionNotFound:  http.StatusNotFound,
	CodeCustomerNotFound:    http.StatusNotFound,
	CodeTransactionNotFound: http.StatusNotFound,
	CodeUnknownAffiliate:    http.StatusNotFound,
	CodeRefundExceedsAmount: http.StatusUnprocessableEntity,
	CodeInvalidTransition:   http.StatusConflict,
	CodeEventRejected:       http.StatusUnprocessableEntity,
}

// amountError maps an error of package money to its stable code.
func amountError(field string, err error) *apiError {
	code := CodeInvalidAmount
	switch {
	case errors.Is(err, money.ErrUnknownCurrency):
		code = CodeUnknownCurrency
	case errors.Is(err, money.ErrNegative):
		code = CodeNegativeAmount
	case errors.Is(err, money.ErrTooManyDecimals):
		code = CodeTooManyDecimals
	case errors.Is(err, money.ErrTooLarge):
		code = CodeAmountTooLarge
	}
	return errf(code, field+": "+err.Error())
}

// apiError is an error answered to a client.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errf(code, msg string) *apiError { return &apiError{Code: code, Message: msg} }

// StatusOf returns the HTTP status of an error code (500 for an unknown code).
func StatusOf(code string) int {
	if s, ok := codeStatus[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// resetResponse clears the answer built so far but keeps its request id.
func resetResponse(ctx *fasthttp.RequestCtx) {
	var buf [64]byte
	id := append(buf[:0], ctx.Response.Header.Peek(HeaderRequestID)...)
	ctx.Response.Reset()
	if len(id) > 0 {
		ctx.Response.Header.SetBytesV(HeaderRequestID, id)
	}
}

func writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	body, _ := json.Marshal(struct {
		Error *apiError `json:"error"`
	}{e})
	resetResponse(ctx)
	ctx.SetStatusCode(StatusOf(e.Code))
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(body)
}

// writeMethodNotAllowed answers 405 method_not_allowed with an Allow header
// naming the methods the path takes. The header is set after writeError,
// which resets the response.
func writeMethodNotAllowed(ctx *fasthttp.RequestCtx, allow, msg string) {
	writeError(ctx, errf(CodeMethodNotAllowed, msg))
	ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(ctx, errf(CodeInternal, "encode response"))
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(body)
}
