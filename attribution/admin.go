package attribution

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clickedge/clickedge/redirect"
	"github.com/clickedge/clickedge/sink"
)

var referencePattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,100}$`)

// MinAdminTokenLen is the shortest admin token AdminAPI accepts.
const MinAdminTokenLen = 24

// AdminBodyLimit bounds an admin request body.
const AdminBodyLimit = 1 << 20

// Admin error codes, part of the admin API contract (docs/admin-api.md).
const (
	AdminCodeInvalidJSON      = "invalid_json"
	AdminCodeUnauthorized     = "unauthorized"
	AdminCodeNotFound         = "not_found"
	AdminCodeMethodNotAllowed = "method_not_allowed"
	AdminCodeAlreadyExists    = "already_exists"
	AdminCodeBodyTooLarge     = "body_too_large"
	AdminCodeInvalidCatalog   = "invalid_catalog"
	AdminCodeImmutableField   = "immutable_field"
	AdminCodeInvalidField     = "invalid_field"
	AdminCodeInvalidStatus    = "invalid_status"
	AdminCodeUnavailable      = "unavailable"
	AdminCodeInternal         = "internal"
)

// AdminAPI serves the admin API described in docs/admin-api.md over
// net/http: catalog objects (merchants, API keys, campaigns, partners, links)
// changed through Worker.UpdateCatalog, and commission status changes
// published as events on the merchant event stream, so that a worker rebuilt
// from the stream reproduces them.
type AdminAPI struct {
	Worker *Worker
	// Token is the bearer token every request but /healthz must carry; it
	// must be at least MinAdminTokenLen characters.
	Token string
	// Logger receives one line per change (an audit trail) under
	// component=admin; nil discards.
	Logger *slog.Logger
	// ResultWait bounds how long a status change waits for the worker to
	// apply it before answering 202 queued; 0 means 5 s.
	ResultWait time.Duration
	// Now stamps key creation and revocation; nil means time.Now.
	Now func() time.Time

	tokenSum [sha256.Size]byte
}

// adminError is an admin API error answer.
type adminError struct {
	status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *adminError) Error() string { return e.Code + ": " + e.Message }

func adminErr(status int, code, format string, a ...any) *adminError {
	return &adminError{status: status, Code: code, Message: fmt.Sprintf(format, a...)}
}

// Handler returns the API's handler. It fails when the token is too short.
func (a *AdminAPI) Handler() (http.Handler, error) {
	if len(a.Token) < MinAdminTokenLen {
		return nil, fmt.Errorf("admin token must be at least %d characters", MinAdminTokenLen)
	}
	if a.Worker == nil {
		return nil, errors.New("admin API: no worker")
	}
	a.tokenSum = sha256.Sum256([]byte(a.Token))
	mux := http.NewServeMux()
	route := func(pattern string, methods map[string]func(*http.Request) (int, any, error)) {
		mux.Handle(pattern, a.serve(methods))
	}
	type m = map[string]func(*http.Request) (int, any, error)
	route("/admin/v1/catalog", m{"GET": a.getCatalog, "PUT": a.putCatalog})
	mux.Handle("/admin/v1/backup", a.serveBackup())
	route("/admin/v1/merchants", m{"GET": a.listMerchants, "POST": a.createMerchant})
	route("/admin/v1/merchants/{id}", m{"GET": a.getMerchant, "PATCH": a.patchMerchant})
	route("/admin/v1/merchants/{id}/keys", m{"GET": a.listKeys, "POST": a.createKey})
	route("/admin/v1/merchants/{id}/keys/{key}", m{"DELETE": a.revokeKey})
	route("/admin/v1/campaigns", m{"GET": a.listCampaigns, "POST": a.createCampaign})
	route("/admin/v1/campaigns/{id}", m{"GET": a.getCampaign, "PATCH": a.patchCampaign})
	route("/admin/v1/partners", m{"GET": a.listPartners, "POST": a.createPartner})
	route("/admin/v1/partners/{id}", m{"GET": a.getPartner, "PATCH": a.patchPartner})
	route("/admin/v1/partners/{id}/balance", m{"GET": a.partnerBalance})
	route("/admin/v1/links", m{"GET": a.listLinks, "POST": a.createLink})
	route("/admin/v1/links/{code}", m{"GET": a.getLink, "PATCH": a.patchLink})
	route("/admin/v1/links/{code}/pause", m{"POST": a.pauseLink(true)})
	route("/admin/v1/links/{code}/resume", m{"POST": a.pauseLink(false)})
	route("/admin/v1/merchants/{id}/conversions", m{"GET": a.listConversions})
	route("/admin/v1/merchants/{id}/conversions/{ref}", m{"GET": a.getConversion})
	route("/admin/v1/merchants/{id}/conversions/{ref}/status", m{"POST": a.setStatus})
	route("/admin/v1/merchants/{id}/payouts", m{"POST": a.payout})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeAdminJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("/", a.serve(nil))
	notFound := a.serve(nil)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The mux would redirect an unclean path (//x, /a/../b) to its
		// clean form; an API answers it as unknown instead.
		if p := r.URL.Path; p == "" || path.Clean(p) != p {
			notFound.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	}), nil
}

// serve authenticates, dispatches on the method and writes the answer.
func (a *AdminAPI) serve(methods map[string]func(*http.Request) (int, any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="clickedge-admin"`)
			writeAdminError(w, adminErr(http.StatusUnauthorized, AdminCodeUnauthorized, "missing or wrong admin token"))
			return
		}
		if methods == nil {
			writeAdminError(w, adminErr(http.StatusNotFound, AdminCodeNotFound, "no such path: %s", r.URL.Path))
			return
		}
		h, ok := methods[r.Method]
		if !ok {
			allow := make([]string, 0, len(methods))
			for k := range methods {
				allow = append(allow, k)
			}
			slices.Sort(allow)
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeAdminError(w, adminErr(http.StatusMethodNotAllowed, AdminCodeMethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, AdminBodyLimit)
		status, body, err := h(r)
		if err != nil {
			var ae *adminError
			if !errors.As(err, &ae) {
				a.logger().Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
				ae = adminErr(http.StatusInternalServerError, AdminCodeInternal, "%v", err)
			}
			writeAdminError(w, ae)
			return
		}
		writeAdminJSON(w, status, body)
	})
}

func (a *AdminAPI) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		tok, ok = strings.CutPrefix(auth, "bearer ")
	}
	// Digests have a fixed length, so the comparison leaks neither the
	// token's length nor where a guess first differs.
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return ok && subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) == 1
}

func writeAdminJSON(w http.ResponseWriter, status int, body any) {
	data, err := json.Marshal(body)
	if err != nil {
		status = http.StatusInternalServerError
		data = []byte(`{"error":{"code":"internal","message":"encode answer"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}

func writeAdminError(w http.ResponseWriter, e *adminError) {
	writeAdminJSON(w, e.status, map[string]*adminError{"error": e})
}

func (a *AdminAPI) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger.With("component", "admin")
}

func (a *AdminAPI) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

// answer is the envelope of every successful admin answer.
type answer struct {
	Data           any    `json:"data"`
	CatalogVersion uint64 `json:"catalog_version"`
	Total          *int   `json:"total,omitempty"`
	Status         string `json:"status,omitempty"`
}

// readBody reads a request body under the size limit.
func readBody(r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, adminErr(http.StatusRequestEntityTooLarge, AdminCodeBodyTooLarge, "body over %d bytes", AdminBodyLimit)
		}
		return nil, adminErr(http.StatusBadRequest, AdminCodeInvalidJSON, "read body: %v", err)
	}
	return data, nil
}

// decodeStrict decodes one JSON value with no unknown fields into v.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return adminErr(http.StatusBadRequest, AdminCodeInvalidJSON, "%v", err)
	}
	if dec.More() {
		return adminErr(http.StatusBadRequest, AdminCodeInvalidJSON, "more than one JSON value in the body")
	}
	return nil
}

// decodeBody reads and strictly decodes the request body into v.
func decodeBody(r *http.Request, v any) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return adminErr(http.StatusBadRequest, AdminCodeInvalidJSON, "empty body, want a JSON object")
	}
	return decodeStrict(data, v)
}

// catalog returns the stored catalog, or an empty one.
func (a *AdminAPI) catalog() (*redirect.Catalog, error) {
	c, err := a.Worker.Catalog()
	if err != nil {
		return nil, err
	}
	if c == nil {
		c = &redirect.Catalog{}
	}
	return c, nil
}

// change applies fn to the catalog and publishes it, mapping errors to
// admin errors. what names the change in the audit log.
func (a *AdminAPI) change(r *http.Request, what string, fn func(*redirect.Catalog) error) (*redirect.Catalog, error) {
	c, err := a.Worker.UpdateCatalog(r.Context(), fn)
	switch {
	case err == nil:
	case errors.Is(err, ErrNotPublished):
		a.logger().Warn("admin change saved but not published", "change", what, "err", err)
		return nil, adminErr(http.StatusServiceUnavailable, AdminCodeUnavailable, "the change was saved as catalog version %d but could not be published to the edges yet: %v", c.Version, err)
	case errors.Is(err, redirect.ErrInvalidCatalog):
		return nil, adminErr(http.StatusUnprocessableEntity, AdminCodeInvalidCatalog, "%v", err)
	default:
		return nil, err
	}
	a.logger().Info("admin change", "change", what, "version", c.Version)
	return c, nil
}

// mergePatch applies an RFC 7386 JSON merge patch to target.
func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
			continue
		}
		tm[k] = mergePatch(tm[k], v)
	}
	return tm
}

// patchObject applies the request's merge patch to obj (a pointer to a
// catalog struct) in place. Fields named in immutable may appear in the
// patch only with their current value.
func patchObject(r *http.Request, obj any, immutable ...string) error {
	data, err := readBody(r)
	if err != nil {
		return err
	}
	var patch any
	if err := json.Unmarshal(data, &patch); err != nil {
		return adminErr(http.StatusBadRequest, AdminCodeInvalidJSON, "%v", err)
	}
	pm, ok := patch.(map[string]any)
	if !ok {
		return adminErr(http.StatusBadRequest, AdminCodeInvalidJSON, "a merge patch must be a JSON object")
	}
	cur, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	var target map[string]any
	if err := json.Unmarshal(cur, &target); err != nil {
		return err
	}
	for _, f := range immutable {
		if v, ok := pm[f]; ok && !jsonEqual(v, target[f]) {
			return adminErr(http.StatusUnprocessableEntity, AdminCodeImmutableField, "%s cannot change", f)
		}
	}
	merged, err := json.Marshal(mergePatch(target, pm))
	if err != nil {
		return err
	}
	// Decode into a zero value so that fields the patch cleared stay clear.
	fresh := newOf(obj)
	if err := decodeStrict(merged, fresh); err != nil {
		return err
	}
	return assign(obj, fresh)
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// newOf and assign handle the catalog struct types patchObject is used with.
func newOf(obj any) any {
	switch obj.(type) {
	case *redirect.Merchant:
		return new(redirect.Merchant)
	case *redirect.Campaign:
		return new(redirect.Campaign)
	case *redirect.Partner:
		return new(redirect.Partner)
	case *redirect.Link:
		return new(redirect.Link)
	}
	panic(fmt.Sprintf("patch of %T", obj))
}

func assign(dst, src any) error {
	switch d := dst.(type) {
	case *redirect.Merchant:
		*d = *src.(*redirect.Merchant)
	case *redirect.Campaign:
		*d = *src.(*redirect.Campaign)
	case *redirect.Partner:
		*d = *src.(*redirect.Partner)
	case *redirect.Link:
		*d = *src.(*redirect.Link)
	default:
		return fmt.Errorf("patch of %T", dst)
	}
	return nil
}

func notFound(kind, id string) error {
	return adminErr(http.StatusNotFound, AdminCodeNotFound, "no %s %q", kind, id)
}

// serveBackup streams a consistent copy of the worker's store: a bbolt
// file, written from one read transaction while the worker keeps running.
func (a *AdminAPI) serveBackup() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="clickedge-admin"`)
			writeAdminError(w, adminErr(http.StatusUnauthorized, AdminCodeUnauthorized, "missing or wrong admin token"))
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			writeAdminError(w, adminErr(http.StatusMethodNotAllowed, AdminCodeMethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
			return
		}
		started := false
		n, err := a.Worker.Backup(w, func(size int64) {
			started = true
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			w.Header().Set("Content-Disposition", `attachment; filename="worker.db"`)
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
		})
		if err != nil {
			a.logger().Error("backup failed", "written", n, "err", err)
			if !started {
				writeAdminError(w, adminErr(http.StatusServiceUnavailable, AdminCodeUnavailable, "backup: %v", err))
			}
			// Past the header the short body (under Content-Length) tells
			// the client the copy is incomplete.
			return
		}
		a.logger().Info("backup written", "bytes", n)
	})
}

// ---- catalog ----

func (a *AdminAPI) getCatalog(*http.Request) (int, any, error) {
	c, err := a.catalog()
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, answer{Data: c, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) putCatalog(r *http.Request) (int, any, error) {
	data, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	format := FormatJSON
	if ct := r.Header.Get("Content-Type"); strings.Contains(ct, "yaml") {
		format = FormatYAML
	}
	in, err := DecodeCatalog(data, format)
	if err != nil {
		if errors.Is(err, redirect.ErrInvalidCatalog) {
			return 0, nil, adminErr(http.StatusUnprocessableEntity, AdminCodeInvalidCatalog, "%v", err)
		}
		return 0, nil, adminErr(http.StatusBadRequest, AdminCodeInvalidJSON, "%v", err)
	}
	c, err := a.change(r, "catalog replaced", func(cur *redirect.Catalog) error {
		*cur = *in
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, answer{Data: c, CatalogVersion: c.Version}, nil
}

// ---- merchants ----

func findMerchant(c *redirect.Catalog, id string) *redirect.Merchant {
	for i := range c.Merchants {
		if c.Merchants[i].ID == id {
			return &c.Merchants[i]
		}
	}
	return nil
}

func (a *AdminAPI) listMerchants(*http.Request) (int, any, error) {
	c, err := a.catalog()
	if err != nil {
		return 0, nil, err
	}
	out := slices.Clone(c.Merchants)
	slices.SortFunc(out, func(x, y redirect.Merchant) int { return strings.Compare(x.ID, y.ID) })
	if out == nil {
		out = []redirect.Merchant{}
	}
	return http.StatusOK, answer{Data: out, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) getMerchant(r *http.Request) (int, any, error) {
	c, err := a.catalog()
	if err != nil {
		return 0, nil, err
	}
	m := findMerchant(c, r.PathValue("id"))
	if m == nil {
		return 0, nil, notFound("merchant", r.PathValue("id"))
	}
	return http.StatusOK, answer{Data: m, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) createMerchant(r *http.Request) (int, any, error) {
	var m redirect.Merchant
	if err := decodeBody(r, &m); err != nil {
		return 0, nil, err
	}
	if len(m.APIKeyHashes) > 0 || len(m.APIKeys) > 0 {
		return 0, nil, adminErr(http.StatusUnprocessableEntity, AdminCodeInvalidField, "api keys are created with POST /admin/v1/merchants/{id}/keys")
	}
	var out redirect.Merchant
	c, err := a.change(r, "merchant "+m.ID+" created", func(c *redirect.Catalog) error {
		if findMerchant(c, m.ID) != nil {
			return adminErr(http.StatusConflict, AdminCodeAlreadyExists, "merchant %q exists", m.ID)
		}
		c.Merchants = append(c.Merchants, m)
		out = m
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, answer{Data: out, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) patchMerchant(r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	data, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	var out redirect.Merchant
	c, err := a.change(r, "merchant "+id+" updated", func(c *redirect.Catalog) error {
		m := findMerchant(c, id)
		if m == nil {
			return notFound("merchant", id)
		}
		if err := patchWith(r, data, m, "id", "api_key_hashes", "api_keys"); err != nil {
			return err
		}
		out = *m
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, answer{Data: out, CatalogVersion: c.Version}, nil
}

// ---- API keys ----

// keyView is an API key as the admin API shows it; Key is set only in the
// answer that creates it.
type keyView struct {
	ID        string     `json:"id"`
	Name      string     `json:"name,omitempty"`
	Prefix    string     `json:"prefix,omitempty"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Key       string     `json:"key,omitempty"`
}

// legacyKeyID names a hash from a catalog file's api_key_hashes.
func legacyKeyID(hash string) string { return "sha256_" + hash[:min(12, len(hash))] }

func keyViews(m *redirect.Merchant) []keyView {
	out := make([]keyView, 0, len(m.APIKeyHashes)+len(m.APIKeys))
	for _, h := range m.APIKeyHashes {
		out = append(out, keyView{ID: legacyKeyID(h)})
	}
	for _, k := range m.APIKeys {
		created := k.CreatedAt
		out = append(out, keyView{ID: k.ID, Name: k.Name, Prefix: k.Prefix, CreatedAt: &created, RevokedAt: k.RevokedAt})
	}
	return out
}

func (a *AdminAPI) listKeys(r *http.Request) (int, any, error) {
	c, err := a.catalog()
	if err != nil {
		return 0, nil, err
	}
	m := findMerchant(c, r.PathValue("id"))
	if m == nil {
		return 0, nil, notFound("merchant", r.PathValue("id"))
	}
	return http.StatusOK, answer{Data: keyViews(m), CatalogVersion: c.Version}, nil
}

// randomID returns prefix followed by n random base62 characters.
func randomID(prefix string, n int) string {
	b := make([]byte, 0, len(prefix)+n)
	b = append(b, prefix...)
	var buf [32]byte
	for len(b) < cap(b) {
		rand.Read(buf[:])
		for _, x := range buf {
			if x < 248 && len(b) < cap(b) {
				b = append(b, base62[x%62])
			}
		}
	}
	return string(b)
}

func (a *AdminAPI) createKey(r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	var req struct {
		Name string `json:"name"`
	}
	data, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := decodeStrict(data, &req); err != nil {
			return 0, nil, err
		}
	}
	if len(req.Name) > 200 {
		return 0, nil, adminErr(http.StatusUnprocessableEntity, AdminCodeInvalidField, "name: at most 200 bytes")
	}
	secret, err := NewAPIKey()
	if err != nil {
		return 0, nil, err
	}
	now := a.now()
	k := redirect.APIKey{ID: randomID("key_", 12), Name: req.Name, Prefix: secret[:len(APIKeyPrefix)+4],
		Hash: redirect.HashAPIKey(secret), CreatedAt: now}
	c, err := a.change(r, "api key "+k.ID+" created for merchant "+id, func(c *redirect.Catalog) error {
		m := findMerchant(c, id)
		if m == nil {
			return notFound("merchant", id)
		}
		m.APIKeys = append(m.APIKeys, k)
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, answer{Data: keyView{ID: k.ID, Name: k.Name, Prefix: k.Prefix, CreatedAt: &now, Key: secret},
		CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) revokeKey(r *http.Request) (int, any, error) {
	id, keyID := r.PathValue("id"), r.PathValue("key")
	var out keyView
	now := a.now()
	c, err := a.change(r, "api key "+keyID+" of merchant "+id+" revoked", func(c *redirect.Catalog) error {
		m := findMerchant(c, id)
		if m == nil {
			return notFound("merchant", id)
		}
		for i := range m.APIKeys {
			k := &m.APIKeys[i]
			if k.ID == keyID {
				if k.RevokedAt == nil {
					k.RevokedAt = &now
				}
				created := k.CreatedAt
				out = keyView{ID: k.ID, Name: k.Name, Prefix: k.Prefix, CreatedAt: &created, RevokedAt: k.RevokedAt}
				return nil
			}
		}
		for i, h := range m.APIKeyHashes {
			if legacyKeyID(h) == keyID {
				m.APIKeyHashes = slices.Delete(m.APIKeyHashes, i, i+1)
				out = keyView{ID: keyID, RevokedAt: &now}
				return nil
			}
		}
		return notFound("api key", keyID)
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, answer{Data: out, CatalogVersion: c.Version}, nil
}

// ---- campaigns ----

func findCampaign(c *redirect.Catalog, id string) *redirect.Campaign {
	for i := range c.Campaigns {
		if c.Campaigns[i].ID == id {
			return &c.Campaigns[i]
		}
	}
	return nil
}

func (a *AdminAPI) listCampaigns(r *http.Request) (int, any, error) {
	c, err := a.catalog()
	if err != nil {
		return 0, nil, err
	}
	merchant := r.URL.Query().Get("merchant_id")
	out := []redirect.Campaign{}
	for _, k := range c.Campaigns {
		if merchant == "" || k.MerchantID == merchant {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(x, y redirect.Campaign) int { return strings.Compare(x.ID, y.ID) })
	return http.StatusOK, answer{Data: out, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) getCampaign(r *http.Request) (int, any, error) {
	c, err := a.catalog()
	if err != nil {
		return 0, nil, err
	}
	k := findCampaign(c, r.PathValue("id"))
	if k == nil {
		return 0, nil, notFound("campaign", r.PathValue("id"))
	}
	return http.StatusOK, answer{Data: k, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) createCampaign(r *http.Request) (int, any, error) {
	var k redirect.Campaign
	if err := decodeBody(r, &k); err != nil {
		return 0, nil, err
	}
	c, err := a.change(r, "campaign "+k.ID+" created", func(c *redirect.Catalog) error {
		if findCampaign(c, k.ID) != nil {
			return adminErr(http.StatusConflict, AdminCodeAlreadyExists, "campaign %q exists", k.ID)
		}
		c.Campaigns = append(c.Campaigns, k)
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, answer{Data: k, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) patchCampaign(r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	data, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	var out redirect.Campaign
	c, err := a.change(r, "campaign "+id+" updated", func(c *redirect.Catalog) error {
		k := findCampaign(c, id)
		if k == nil {
			return notFound("campaign", id)
		}
		if err := patchWith(r, data, k, "id", "merchant_id"); err != nil {
			return err
		}
		out = *k
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, answer{Data: out, CatalogVersion: c.Version}, nil
}

// patchWith is patchObject over a body already read.
func patchWith(r *http.Request, body []byte, obj any, immutable ...string) error {
	req := r.Clone(r.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	return patchObject(req, obj, immutable...)
}

// ---- partners ----

func findPartner(c *redirect.Catalog, id string) *redirect.Partner {
	for i := range c.Partners {
		if c.Partners[i].ID == id {
			return &c.Partners[i]
		}
	}
	return nil
}

func (a *AdminAPI) listPartners(r *http.Request) (int, any, error) {
	c, err := a.catalog()
	if err != nil {
		return 0, nil, err
	}
	merchant := r.URL.Query().Get("merchant_id")
	out := []redirect.Partner{}
	for _, p := range c.Partners {
		if merchant == "" || p.MerchantID == merchant {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(x, y redirect.Partner) int { return strings.Compare(x.ID, y.ID) })
	return http.StatusOK, answer{Data: out, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) getPartner(r *http.Request) (int, any, error) {
	c, err := a.catalog()
	if err != nil {
		return 0, nil, err
	}
	p := findPartner(c, r.PathValue("id"))
	if p == nil {
		return 0, nil, notFound("partner", r.PathValue("id"))
	}
	return http.StatusOK, answer{Data: p, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) createPartner(r *http.Request) (int, any, error) {
	var p redirect.Partner
	if err := decodeBody(r, &p); err != nil {
		return 0, nil, err
	}
	c, err := a.change(r, "partner "+p.ID+" created", func(c *redirect.Catalog) error {
		if findPartner(c, p.ID) != nil {
			return adminErr(http.StatusConflict, AdminCodeAlreadyExists, "partner %q exists", p.ID)
		}
		c.Partners = append(c.Partners, p)
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, answer{Data: p, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) patchPartner(r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	data, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	var out redirect.Partner
	c, err := a.change(r, "partner "+id+" updated", func(c *redirect.Catalog) error {
		p := findPartner(c, id)
		if p == nil {
			return notFound("partner", id)
		}
		if err := patchWith(r, data, p, "id", "merchant_id"); err != nil {
			return err
		}
		out = *p
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, answer{Data: out, CatalogVersion: c.Version}, nil
}

// balanceView is a partner's balance and ledger.
type balanceView struct {
	PartnerID    string        `json:"partner_id"`
	MerchantID   string        `json:"merchant_id"`
	Currency     string        `json:"currency"`
	BalanceMinor int64         `json:"balance_minor"`
	PaidMinor    int64         `json:"paid_minor"`
	Ledger       []LedgerEntry `json:"ledger"`
}

func (a *AdminAPI) partnerBalance(r *http.Request) (int, any, error) {
	c, err := a.catalog()
	if err != nil {
		return 0, nil, err
	}
	p := findPartner(c, r.PathValue("id"))
	if p == nil {
		return 0, nil, notFound("partner", r.PathValue("id"))
	}
	bal, paid, cur, err := a.Worker.PartnerBalance(p.MerchantID, p.ID)
	if err != nil {
		return 0, nil, err
	}
	ledger, err := a.Worker.Ledger(p.MerchantID, p.ID)
	if err != nil {
		return 0, nil, err
	}
	if ledger == nil {
		ledger = []LedgerEntry{}
	}
	return http.StatusOK, answer{Data: balanceView{PartnerID: p.ID, MerchantID: p.MerchantID, Currency: cur,
		BalanceMinor: bal, PaidMinor: paid, Ledger: ledger}, CatalogVersion: c.Version}, nil
}

// ---- links ----

func findLink(c *redirect.Catalog, code string) *redirect.Link {
	for i := range c.Links {
		if c.Links[i].Code == code {
			return &c.Links[i]
		}
	}
	return nil
}

func (a *AdminAPI) listLinks(r *http.Request) (int, any, error) {
	c, err := a.catalog()
	if err != nil {
		return 0, nil, err
	}
	q := r.URL.Query()
	merchant, campaign, partner := q.Get("merchant_id"), q.Get("campaign_id"), q.Get("partner_id")
	owner := map[string]string{}
	for _, k := range c.Campaigns {
		owner[k.ID] = k.MerchantID
	}
	out := []redirect.Link{}
	for _, l := range c.Links {
		if (merchant == "" || owner[l.CampaignID] == merchant) && (campaign == "" || l.CampaignID == campaign) &&
			(partner == "" || l.PartnerID == partner) {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(x, y redirect.Link) int { return strings.Compare(x.Code, y.Code) })
	return http.StatusOK, answer{Data: out, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) getLink(r *http.Request) (int, any, error) {
	c, err := a.catalog()
	if err != nil {
		return 0, nil, err
	}
	l := findLink(c, r.PathValue("code"))
	if l == nil {
		return 0, nil, notFound("link", r.PathValue("code"))
	}
	return http.StatusOK, answer{Data: l, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) createLink(r *http.Request) (int, any, error) {
	var l redirect.Link
	if err := decodeBody(r, &l); err != nil {
		return 0, nil, err
	}
	c, err := a.change(r, "link created", func(c *redirect.Catalog) error {
		if l.Code == "" {
			for l.Code == "" || findLink(c, l.Code) != nil {
				l.Code = randomID("", 8)
			}
		} else if findLink(c, l.Code) != nil {
			return adminErr(http.StatusConflict, AdminCodeAlreadyExists, "link %q exists", l.Code)
		}
		c.Links = append(c.Links, l)
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, answer{Data: l, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) patchLink(r *http.Request) (int, any, error) {
	code := r.PathValue("code")
	data, err := readBody(r)
	if err != nil {
		return 0, nil, err
	}
	var out redirect.Link
	c, err := a.change(r, "link "+code+" updated", func(c *redirect.Catalog) error {
		l := findLink(c, code)
		if l == nil {
			return notFound("link", code)
		}
		if err := patchWith(r, data, l, "code"); err != nil {
			return err
		}
		out = *l
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, answer{Data: out, CatalogVersion: c.Version}, nil
}

func (a *AdminAPI) pauseLink(paused bool) func(*http.Request) (int, any, error) {
	verb := "resumed"
	if paused {
		verb = "paused"
	}
	return func(r *http.Request) (int, any, error) {
		code := r.PathValue("code")
		var out redirect.Link
		c, err := a.change(r, "link "+code+" "+verb, func(c *redirect.Catalog) error {
			l := findLink(c, code)
			if l == nil {
				return notFound("link", code)
			}
			l.Paused = paused
			out = *l
			return nil
		})
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, answer{Data: out, CatalogVersion: c.Version}, nil
	}
}

// ---- conversions and payouts ----

// merchantOf answers 404 for a merchant the catalog does not hold.
func (a *AdminAPI) merchantOf(r *http.Request) (string, uint64, error) {
	c, err := a.catalog()
	if err != nil {
		return "", 0, err
	}
	id := r.PathValue("id")
	if findMerchant(c, id) == nil {
		return "", 0, notFound("merchant", id)
	}
	return id, c.Version, nil
}

// apiErr maps an error of the worker's read API to an admin error.
func apiErr(err error) error {
	var ae *sink.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Code {
	case sink.APICodeNotFound, CodeConversionNotFound, CodeCustomerNotFound:
		return adminErr(http.StatusNotFound, AdminCodeNotFound, "%s", ae.Message)
	case CodeInvalidStatus, CodeInvalidTransition:
		return adminErr(http.StatusUnprocessableEntity, AdminCodeInvalidStatus, "%s", ae.Message)
	case sink.APICodeBadRequest, CodeInvalidRequest:
		return adminErr(http.StatusUnprocessableEntity, AdminCodeInvalidField, "%s", ae.Message)
	}
	return adminErr(http.StatusUnprocessableEntity, ae.Code, "%s", ae.Message)
}

func queryInt(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, adminErr(http.StatusUnprocessableEntity, AdminCodeInvalidField, "%s: want an integer in %d..%d", name, lo, hi)
	}
	return n, nil
}

func (a *AdminAPI) listConversions(r *http.Request) (int, any, error) {
	merchant, version, err := a.merchantOf(r)
	if err != nil {
		return 0, nil, err
	}
	limit, err := queryInt(r, "limit", DefaultListLimit, 1, MaxListLimit)
	if err != nil {
		return 0, nil, err
	}
	offset, err := queryInt(r, "offset", 0, 0, 1<<30)
	if err != nil {
		return 0, nil, err
	}
	q := r.URL.Query()
	status := q.Get("status")
	switch status {
	case "", sink.StatusPending, sink.StatusApproved, sink.StatusRejected, sink.StatusPaid:
	default:
		return 0, nil, adminErr(http.StatusUnprocessableEntity, AdminCodeInvalidField, "status: want pending, approved, rejected or paid")
	}
	page, err := a.Worker.ListConversions(r.Context(), sink.ConversionQuery{MerchantID: merchant,
		CampaignID: q.Get("campaign_id"), PartnerID: q.Get("partner_id"), Status: status, Limit: limit, Offset: offset})
	if err != nil {
		return 0, nil, apiErr(err)
	}
	convs := page.Conversions
	if convs == nil {
		convs = []sink.ConversionRecord{}
	}
	total := page.Total
	return http.StatusOK, answer{Data: convs, Total: &total, CatalogVersion: version}, nil
}

func (a *AdminAPI) getConversion(r *http.Request) (int, any, error) {
	merchant, version, err := a.merchantOf(r)
	if err != nil {
		return 0, nil, err
	}
	rec, err := a.Worker.Conversion(r.Context(), merchant, r.PathValue("ref"))
	if err != nil {
		return 0, nil, apiErr(err)
	}
	return http.StatusOK, answer{Data: rec, CatalogVersion: version}, nil
}

// publishStatus sends a status change to the event stream under the id
// conversion:status+tag. A change the worker refused keeps its result under
// its id, so each admin call gets a fresh tag; repeating a change is safe
// because the worker ignores a move to the status a conversion already has.
func (a *AdminAPI) publishStatus(ctx context.Context, merchant, convID, status, note, tag string) (string, error) {
	ev := sink.Event{
		V: sink.EventVersion, ID: sink.EventID(merchant, sink.KindStatus, convID+":"+status+tag),
		Kind: sink.KindStatus, TS: a.now().UnixMilli(), Edge: "admin", Dialect: sink.DialectAdmin, MerchantID: merchant,
		Status: &sink.StatusEvent{ConversionID: convID, Status: status, Note: note},
	}
	data, err := sink.AppendEvent(nil, &ev)
	if err != nil {
		return "", err
	}
	if a.Worker.JS == nil {
		return "", adminErr(http.StatusServiceUnavailable, AdminCodeUnavailable, "the worker has no NATS connection")
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.Worker.JS.Publish(pctx, sink.EventSubjectPrefix+merchant, data, jetstream.WithMsgID(ev.ID)); err != nil {
		return "", adminErr(http.StatusServiceUnavailable, AdminCodeUnavailable, "send the status change to NATS: %v", err)
	}
	return ev.ID, nil
}

func (a *AdminAPI) resultWait() time.Duration {
	if a.ResultWait > 0 {
		return a.ResultWait
	}
	return 5 * time.Second
}

func (a *AdminAPI) setStatus(r *http.Request) (int, any, error) {
	merchant, version, err := a.merchantOf(r)
	if err != nil {
		return 0, nil, err
	}
	var req struct {
		Status string `json:"status"`
		Note   string `json:"note"`
	}
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	switch req.Status {
	case sink.StatusApproved, sink.StatusRejected, sink.StatusPaid:
	default:
		return 0, nil, adminErr(http.StatusUnprocessableEntity, AdminCodeInvalidField, "status: want approved, rejected or paid")
	}
	if len(req.Note) > 1000 {
		return 0, nil, adminErr(http.StatusUnprocessableEntity, AdminCodeInvalidField, "note: at most 1000 bytes")
	}
	rec, err := a.Worker.Conversion(r.Context(), merchant, r.PathValue("ref"))
	if err != nil {
		return 0, nil, apiErr(err)
	}
	evID, err := a.publishStatus(r.Context(), merchant, rec.ID, req.Status, req.Note, randomID(":", 12))
	if err != nil {
		return 0, nil, err
	}
	a.logger().Info("admin status change", "merchant", merchant, "conversion", rec.ID, "status", req.Status)
	res, err := a.Worker.EventResult(r.Context(), merchant, evID, a.resultWait())
	if err != nil {
		var ae *sink.APIError
		if errors.As(err, &ae) && ae.Code == sink.APICodePending {
			return http.StatusAccepted, answer{Data: map[string]string{"event_id": evID, "conversion_id": rec.ID},
				Status: "queued", CatalogVersion: version}, nil
		}
		return 0, nil, err
	}
	if res.Error != nil {
		return 0, nil, apiErr(res.Error)
	}
	out := rec
	if res.Conversion != nil {
		out = *res.Conversion
	}
	if cur, err := a.Worker.Conversion(r.Context(), merchant, rec.ID); err == nil {
		out = cur
	}
	return http.StatusOK, answer{Data: out, CatalogVersion: version}, nil
}

// payoutView is the answer to a payout.
type payoutView struct {
	PartnerID   string         `json:"partner_id"`
	Reference   string         `json:"reference"`
	Totals      []payoutTotal  `json:"totals"`
	Conversions []string       `json:"conversions"`
	Queued      []string       `json:"queued,omitempty"`
	Rejected    []payoutReject `json:"rejected,omitempty"`
}

type payoutTotal struct {
	Currency    string `json:"currency"`
	AmountMinor int64  `json:"amount_minor"`
}

type payoutReject struct {
	ConversionID string `json:"conversion_id"`
	Code         string `json:"code"`
	Message      string `json:"message"`
}

func (a *AdminAPI) payout(r *http.Request) (int, any, error) {
	merchant, version, err := a.merchantOf(r)
	if err != nil {
		return 0, nil, err
	}
	var req struct {
		PartnerID string `json:"partner_id"`
		Reference string `json:"reference"`
	}
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	c, err := a.catalog()
	if err != nil {
		return 0, nil, err
	}
	p := findPartner(c, req.PartnerID)
	if p == nil || p.MerchantID != merchant {
		return 0, nil, adminErr(http.StatusUnprocessableEntity, AdminCodeInvalidField, "partner_id: merchant %q has no partner %q", merchant, req.PartnerID)
	}
	if req.Reference != "" && !referencePattern.MatchString(req.Reference) {
		return 0, nil, adminErr(http.StatusUnprocessableEntity, AdminCodeInvalidField, "reference: want 1-100 of [A-Za-z0-9_.:-]")
	}
	if req.Reference == "" {
		req.Reference = randomID("payout_", 12)
	}
	var due []sink.ConversionRecord
	for offset := 0; ; offset += MaxListLimit {
		page, err := a.Worker.ListConversions(r.Context(), sink.ConversionQuery{MerchantID: merchant, PartnerID: p.ID,
			Status: sink.StatusApproved, Limit: MaxListLimit, Offset: offset})
		if err != nil {
			return 0, nil, apiErr(err)
		}
		due = append(due, page.Conversions...)
		if len(page.Conversions) < MaxListLimit {
			break
		}
	}
	out := payoutView{PartnerID: p.ID, Reference: req.Reference, Totals: []payoutTotal{}, Conversions: []string{}}
	ids := make([]string, len(due))
	for i, conv := range due {
		if ids[i], err = a.publishStatus(r.Context(), merchant, conv.ID, sink.StatusPaid, "payout "+req.Reference, ":payout:"+req.Reference); err != nil {
			return 0, nil, err
		}
	}
	a.logger().Info("admin payout", "merchant", merchant, "partner", p.ID, "reference", req.Reference, "conversions", len(due))
	totals := map[string]int64{}
	deadline := time.Now().Add(a.resultWait())
	for i, conv := range due {
		res, err := a.Worker.EventResult(r.Context(), merchant, ids[i], max(time.Until(deadline), 0))
		if err != nil {
			var ae *sink.APIError
			if errors.As(err, &ae) && ae.Code == sink.APICodePending {
				out.Queued = append(out.Queued, conv.ID)
				continue
			}
			return 0, nil, err
		}
		if res.Error != nil {
			out.Rejected = append(out.Rejected, payoutReject{ConversionID: conv.ID, Code: res.Error.Code, Message: res.Error.Message})
			continue
		}
		out.Conversions = append(out.Conversions, conv.ID)
		totals[conv.Currency] += conv.CommissionMinor
	}
	for _, cur := range slices.Sorted(maps.Keys(totals)) {
		out.Totals = append(out.Totals, payoutTotal{Currency: cur, AmountMinor: totals[cur]})
	}
	status := http.StatusOK
	if len(out.Queued) > 0 {
		status = http.StatusAccepted
	}
	return status, answer{Data: out, CatalogVersion: version}, nil
}

// NewAdminToken returns a random admin token.
func NewAdminToken() string {
	var b [24]byte
	rand.Read(b[:])
	return "ce_admin_" + hex.EncodeToString(b[:])
}
