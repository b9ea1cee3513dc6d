package edge

import (
	"encoding/json"
	"net/http"

	"github.com/valyala/fasthttp"
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
)

// codeStatus maps every error code to its HTTP status, in one place.
var codeStatus = map[string]int{
	CodeInvalidJSON:        http.StatusBadRequest,
	CodeInvalidParameter:   http.StatusBadRequest,
	CodeInvalidField:       http.StatusUnprocessableEntity,
	CodeMissingField:       http.StatusUnprocessableEntity,
	CodeUnknownPartnership: http.StatusUnprocessableEntity,
	CodeUnauthorized:       http.StatusUnauthorized,
	CodeNotFound:           http.StatusNotFound,
	CodeUnknownCampaign:    http.StatusNotFound,
	CodeUnknownPartner:     http.StatusNotFound,
	CodeMethodNotAllowed:   http.StatusMethodNotAllowed,
	CodePayloadTooLarge:    http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia:   http.StatusUnsupportedMediaType,
	CodeUnavailable:        http.StatusServiceUnavailable,
	CodeWorkerUnavailable:  http.StatusServiceUnavailable,
	CodeInternal:           http.StatusInternalServerError,
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

func writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	body, _ := json.Marshal(struct {
		Error *apiError `json:"error"`
	}{e})
	ctx.Response.Reset()
	ctx.SetStatusCode(StatusOf(e.Code))
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(body)
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
