package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/apigetaway/getaway/authflow"
	"github.com/apigetaway/getaway/upstream"
	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// AdminDeps wire the admin API.
type AdminDeps struct {
	// Authorizer decides who is an admin. Nil: the admin routes answer 404.
	Authorizer *authflow.Admin
	// ConfigPath is the config file PUT writes and reload reads.
	ConfigPath string
	// MaxConfigBytes caps a PUT body. Default 1 MiB.
	MaxConfigBytes int
	// Health returns the backend health snapshot for GET /admin/health
	// (JSON-encodable, keyed by backend URL). Nil answers {}.
	Health func() any
	// Applied, when set, is called after a new config is in force here
	// (health check resync).
	Applied func(f *upstream.File)
	// Publisher puts a change in force: upstream.Shared on every instance
	// sharing one Redis; nil means this instance only (Proxy.Publish).
	Publisher ConfigPublisher
}

// ConfigPublisher puts a config in force, or refuses with
// upstream.ErrConflict when another instance published first.
type ConfigPublisher interface {
	Publish(ctx context.Context, f *upstream.File) (int64, error)
}

// admin serves /admin/*. Changes are serialised so that If-Match and the
// swap happen as one step.
type admin struct {
	deps  AdminDeps
	proxy *upstream.Proxy
	log   *zap.Logger
	mu    sync.Mutex
}

func (s *Server) registerAdmin(r *router.Router, deps AdminDeps) {
	if deps.Authorizer == nil {
		return
	}
	if deps.MaxConfigBytes == 0 {
		deps.MaxConfigBytes = 1 << 20
	}
	if deps.Publisher == nil {
		deps.Publisher = s.proxy
	}
	a := &admin{deps: deps, proxy: s.proxy, log: s.log.Named("admin")}
	r.GET("/admin/config", a.guard(a.getConfig))
	r.PUT("/admin/config", a.guard(a.putConfig))
	r.POST("/admin/config/reload", a.guard(a.reload))
	r.GET("/admin/health", a.guard(a.health))
	// The metrics, for admins, on the public listener (ADMIN_ADDR serves
	// them without authentication on a private one).
	metrics := s.metrics.handler
	r.GET("/admin/metrics", a.guard(func(ctx *fasthttp.RequestCtx, _ string) { metrics(ctx) }))
}

// guard runs h for admins only; who is their name for the change log.
func (a *admin) guard(h func(ctx *fasthttp.RequestCtx, who string)) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		who, ok := a.deps.Authorizer.Authorize(ctx)
		if !ok {
			return
		}
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
		h(ctx, who)
	}
}

// etag names a config by its content, so every instance holding the same
// config gives the same ETag.
func etag(f *upstream.File) string {
	b, _ := marshalJSON(f)
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}

func (a *admin) getConfig(ctx *fasthttp.RequestCtx, _ string) {
	f := a.proxy.Routing().File
	body, _ := marshalJSON(f)
	ctx.Response.Header.Set(fasthttp.HeaderETag, etag(f))
	writeJSON(ctx, fasthttp.StatusOK, body)
}

// configResult is the answer to a successful change.
type configResult struct {
	OK        bool           `json:"ok"`
	Config    *upstream.File `json:"config"`
	Persisted *bool          `json:"persisted,omitempty"`
}

func (a *admin) putConfig(ctx *fasthttp.RequestCtx, who string) {
	if !yamlOrJSON(ctx.Request.Header.ContentType()) {
		writeJSON(ctx, fasthttp.StatusUnsupportedMediaType, []byte(`{"error":"unsupported_media_type","message":"send application/json or application/yaml"}`))
		return
	}
	body, err := readBodyLimited(ctx, a.deps.MaxConfigBytes)
	if err != nil {
		writeJSON(ctx, fasthttp.StatusRequestEntityTooLarge, bodyTooLarge)
		return
	}
	f, err := upstream.ParseFile("config", body)
	if err != nil {
		a.invalid(ctx, err)
		return
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.proxy.Routing().File
	if m := ctx.Request.Header.Peek(fasthttp.HeaderIfMatch); len(m) > 0 && string(m) != "*" && string(m) != etag(old) {
		writeJSON(ctx, fasthttp.StatusPreconditionFailed, []byte(`{"error":"precondition_failed","message":"the config changed since it was read: GET it again"}`))
		return
	}
	a.apply(ctx, who, old, f, true)
}

func (a *admin) reload(ctx *fasthttp.RequestCtx, who string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.proxy.Routing().File
	f, err := upstream.LoadFile(a.deps.ConfigPath)
	if err != nil {
		a.invalid(ctx, err)
		return
	}
	a.apply(ctx, who, old, f, false)
}

// apply puts f in force (here, or on every instance through the
// publisher), writes it to the config file when persist is set, logs the
// change once with who made it, and answers. The file is written only once
// the change is in force, so a refused change leaves it alone; a read-only
// file is reported as "persisted": false.
func (a *admin) apply(ctx *fasthttp.RequestCtx, who string, old, f *upstream.File, persist bool) {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	version, err := a.deps.Publisher.Publish(c, f)
	cancel()
	switch {
	case errors.Is(err, upstream.ErrConflict):
		writeJSON(ctx, fasthttp.StatusConflict, []byte(`{"error":"conflict","message":"another instance changed the config meanwhile: GET it again"}`))
		return
	case err != nil:
		a.log.Error("config not put in force", zap.Error(err))
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, []byte(`{"error":"unavailable"}`))
		return
	}
	var persisted *bool
	if persist {
		ok := true
		if err := upstream.WriteFile(a.deps.ConfigPath, f); err != nil {
			ok = false
			if errors.Is(err, upstream.ErrReadOnly) {
				a.log.Warn("config file is read-only: the new config is in force until restart", zap.String("path", a.deps.ConfigPath))
			} else {
				a.log.Error("config in force but not written", zap.Error(err))
			}
		}
		persisted = &ok
	}
	a.log.Info("config changed", zap.String("by", who), zap.Int64("version", version), zap.String("diff", upstream.Diff(old, f)))
	if a.deps.Applied != nil {
		a.deps.Applied(f)
	}
	body, _ := marshalJSON(configResult{OK: true, Config: f, Persisted: persisted})
	ctx.Response.Header.Set(fasthttp.HeaderETag, etag(f))
	writeJSON(ctx, fasthttp.StatusOK, body)
}

// invalid answers 400 with every problem, each as "field: reason".
func (a *admin) invalid(ctx *fasthttp.RequestCtx, err error) {
	var ce *upstream.ConfigError
	details := []string{}
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			if p.Field == "" {
				details = append(details, p.Reason)
			} else {
				details = append(details, p.Field+": "+p.Reason)
			}
		}
	} else {
		// An unreadable file: say so without the path's system details.
		details = append(details, "the config file cannot be read")
		a.log.Warn("config file unreadable", zap.Error(err))
	}
	body, _ := marshalJSON(map[string]any{"error": "invalid_config", "details": details})
	writeJSON(ctx, fasthttp.StatusBadRequest, body)
}

func (a *admin) health(ctx *fasthttp.RequestCtx, _ string) {
	var snap any = map[string]any{}
	if a.deps.Health != nil {
		snap = a.deps.Health()
	}
	body, _ := marshalJSON(snap)
	writeJSON(ctx, fasthttp.StatusOK, body)
}

func yamlOrJSON(ct []byte) bool {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	switch string(bytes.ToLower(bytes.TrimSpace(ct))) {
	case "application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml":
		return true
	}
	return false
}

var errTooLarge = errors.New("edge: body too large")

// readBodyLimited reads the request body, refusing more than limit bytes
// (the server streams bodies, so the limit is ours to apply).
func readBodyLimited(ctx *fasthttp.RequestCtx, limit int) ([]byte, error) {
	if cl := ctx.Request.Header.ContentLength(); cl > limit {
		return nil, errTooLarge
	}
	if r := ctx.RequestBodyStream(); r != nil {
		b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
		if err != nil {
			return nil, err
		}
		if len(b) > limit {
			return nil, errTooLarge
		}
		return b, nil
	}
	b := ctx.Request.Body()
	if len(b) > limit {
		return nil, errTooLarge
	}
	return b, nil
}
