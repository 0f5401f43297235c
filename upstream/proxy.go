package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// Errors Forward returns before any byte reaches a backend. Other errors
// come from the backend exchange (fasthttp.ErrTimeout, dial errors, ...).
var (
	// ErrNoRoute means no mapping matched and there is no defaultBackend:
	// answer 404.
	ErrNoRoute = errors.New("upstream: no route for this host and path")
	// ErrBadPath means the request target is not a plain /api path (dot
	// segments, an encoded NUL, absolute form, ...): answer 400. Such a
	// request is never forwarded, because the backend could resolve it to
	// another path than the one it was routed by.
	ErrBadPath = errors.New("upstream: request path is not canonical")
	// ErrBadRequestBody means the client's request body could not be read:
	// invalid chunked framing (a size that is not hex, a chunk longer than
	// its size, bare LF line ends, ...), a forbidden trailer field, a body
	// cut short or a read timeout. It is the client's fault, never the
	// backend's: answer 400 and close the client's connection, whose next
	// request cannot be found. Forward returns it wrapped, with the cause.
	//
	// A chunked body is read up to PrefetchSize before the backend is
	// contacted, so an error there reaches no backend. Past that, the
	// backend has the request head and the body's valid prefix: it gets no
	// byte of the failing read and no end of body, and its connection is
	// closed, never reused.
	ErrBadRequestBody = errors.New("upstream: cannot read the request body")
)

// PrefetchSize is how much of a chunked request body Forward reads before it
// contacts the backend: a body this small (trailer section included) is
// checked whole first, so invalid framing reaches no backend. It matches
// what fasthttp reads of a Content-Length body before calling the handler,
// and the rest of a longer body streams as it comes.
const PrefetchSize = 8 << 10

// ProxyConfig configures the HTTP proxy.
type ProxyConfig struct {
	// Pool holds the per-backend connection limits.
	Pool PoolConfig
	// SessionCookieName is the gateway's own cookie, removed from the Cookie
	// header sent to backends. Default "sid".
	SessionCookieName string
	// Observer, when set, hears of every exchange's outcome per backend:
	// the passive health signal. Its methods run on the hot path.
	Observer BackendObserver `yaml:"-"`
	// ForwardedFor decides the X-Forwarded-For sent to backends (issue 6:
	// trusted proxies; edge.ClientIPPolicy). Nil sends the socket peer's
	// address alone: the client's own header is never believed.
	ForwardedFor ForwardedForPolicy `yaml:"-"`
}

// ForwardedForPolicy builds the X-Forwarded-For of a proxied request. It
// runs on the hot path and must not allocate.
type ForwardedForPolicy interface {
	// AppendForwardedFor appends the header's value for ctx's request to
	// dst and returns the extended slice.
	AppendForwardedFor(dst []byte, ctx *fasthttp.RequestCtx) []byte
}

// BackendObserver learns from the proxy whether a backend could be
// reached (healthd.Checker implements it). Both methods must be cheap.
type BackendObserver interface {
	// ReportFailure: the proxy could not connect to the backend (refused,
	// reset, dial timeout).
	ReportFailure(backendURL string)
	// ReportSuccess: the backend answered.
	ReportSuccess(backendURL string)
}

// Routing is one generation of the routing configuration: the File it was
// built from, its compiled table and the backends it uses. A Routing is
// immutable once published.
type Routing struct {
	// File is the configuration in force. Never modify it.
	File *File
	// Version increases by one with every applied configuration.
	Version uint64

	table    *Table
	backends []*Backend // indexed by Route.BackendIndex
	origins  map[string]struct{}
}

// AllowsOrigin reports whether origin (scheme://host[:port], as a browser
// sends it) is in the file's allowedOrigins.
func (r *Routing) AllowsOrigin(origin []byte) bool {
	_, ok := r.origins[string(origin)]
	return ok
}

// Proxy forwards /api requests to the backend chosen by the routing table.
// It is safe for concurrent use; Apply swaps the table atomically, so
// requests in flight finish on the table they started with.
type Proxy struct {
	pool       *Pool
	cookieName []byte
	observer   BackendObserver
	fwdFor     ForwardedForPolicy // nil: the peer alone
	log        *zap.Logger

	applyMu sync.Mutex // serialises Apply so versions are handed out in order
	routing atomic.Pointer[Routing]
	scratch sync.Pool // *[]byte for building request URIs
	errs    errorCounts
}

// NewProxy returns a proxy routing by f.
func NewProxy(cfg ProxyConfig, f *File, log *zap.Logger) (*Proxy, error) {
	if err := cfg.Pool.Validate(); err != nil {
		return nil, fmt.Errorf("proxy pool: %w", err)
	}
	if cfg.SessionCookieName == "" {
		cfg.SessionCookieName = "sid"
	}
	p := &Proxy{
		pool:       NewPool(cfg.Pool),
		cookieName: []byte(cfg.SessionCookieName),
		observer:   cfg.Observer,
		fwdFor:     cfg.ForwardedFor,
		log:        log,
	}
	p.scratch.New = func() any { b := make([]byte, 0, 256); return &b }
	if _, err := p.Apply(f); err != nil {
		return nil, err
	}
	return p, nil
}

// Apply compiles f (which must come from ParseFile) and makes it the
// routing in force. On error the previous routing stays in force.
func (p *Proxy) Apply(f *File) (*Routing, error) {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	t := Compile(f)
	urls := t.Backends()
	backends := make([]*Backend, len(urls))
	for i, u := range urls {
		b, err := p.pool.Get(u)
		if err != nil {
			return nil, err
		}
		backends[i] = b
	}
	origins := make(map[string]struct{}, len(f.AllowedOrigins))
	for _, o := range f.AllowedOrigins {
		origins[o] = struct{}{}
	}
	r := &Routing{File: f, table: t, backends: backends, origins: origins, Version: 1}
	if old := p.routing.Load(); old != nil {
		r.Version = old.Version + 1
	}
	p.routing.Store(r)
	p.pool.Retain(urls)
	return r, nil
}

// Publish applies f on this instance only: the publisher of a gateway that
// shares no config (Shared.Publish is the one of instances on one Redis).
// It returns the new routing version.
func (p *Proxy) Publish(_ context.Context, f *File) (int64, error) {
	r, err := p.Apply(f)
	if err != nil {
		return 0, err
	}
	return int64(r.Version), nil
}

// Routing returns the routing in force.
func (p *Proxy) Routing() *Routing { return p.routing.Load() }

// Close closes idle backend connections.
func (p *Proxy) Close() { p.pool.Close() }

// Forward proxies ctx's /api request on behalf of id and leaves the
// backend's response in ctx.Response, its body streaming from the backend.
// On error nothing useful is in ctx.Response: the caller writes the error
// status (see ErrNoRoute, ErrBadPath, ErrBadRequestBody).
//
// Request trailers are never forwarded: the fields of a chunked body's
// trailer section are dropped, whenever they are read, and so is the
// Trailer header.
func (p *Proxy) Forward(ctx *fasthttp.RequestCtx, id *Identity) error {
	route, b, rest, err := p.route(ctx)
	if err != nil {
		return err
	}
	req := &ctx.Request
	body, err := wrapBody(req)
	if err != nil {
		return err
	}
	// A body read before (buffered, or prefetched to its end) has its
	// trailer section parsed already: drop it before the rewrite, which
	// would otherwise see the fields under announced names.
	if err := dropTrailers(&req.Header); err != nil {
		if body != nil {
			_ = req.CloseBodyStream()
			releaseBodyReader(body)
		}
		return err
	}
	clientClose := req.Header.ConnectionClose()
	p.rewriteRequest(ctx, route, b, id, rest)
	err = b.client.Do(req, &ctx.Response)
	if body != nil {
		// Do has written the body, or failed before: either way the
		// reader is done with.
		_ = req.CloseBodyStream()
		bodyErr := body.err
		releaseBodyReader(body)
		if bodyErr != nil {
			// The client's fault: the backend is not to blame (no
			// health report), whatever error the failed write left in
			// err. fasthttp has closed the backend connection.
			return fmt.Errorf("%w: %w", ErrBadRequestBody, bodyErr)
		}
	}
	if p.observer != nil {
		switch {
		case err == nil:
			p.observer.ReportSuccess(b.URL)
		case !errors.Is(err, fasthttp.ErrTimeout):
			// Anything but a slow answer means the backend cannot be
			// reached; a slow one is the health checks' to judge.
			p.observer.ReportFailure(b.URL)
		}
	}
	if err != nil {
		p.errs.add(b.URL, err)
		return err
	}
	removeResponseHopByHop(&ctx.Response.Header)
	// The backend's Connection: close ends its own connection only; the
	// client's connection closes if the client asked for it.
	if clientClose {
		ctx.Response.SetConnectionClose()
	}
	return nil
}

// bodyReader stands between the client's streamed request body and the
// backend request (issue 6). It tells the client's read errors from the
// backend's, withholds the bytes of a failing read, drops the trailer
// section once the body ends, and serves first what was prefetched of a
// chunked body.
type bodyReader struct {
	r    io.Reader // the client's body, as fasthttp's server streams it
	h    *fasthttp.RequestHeader
	size int // the Content-Length, or -1 for a chunked body
	n    int // bytes read from r

	buf []byte // prefetched bytes of a chunked body; capacity PrefetchSize
	off int    // next byte of buf to serve

	eof bool  // r ended, its trailer section dropped
	err error // the first error reading the client's body
}

var bodyReaders = sync.Pool{New: func() any { return new(bodyReader) }}

// wrapBody puts a bodyReader in front of req's streamed body and, for a
// chunked one, reads its first PrefetchSize bytes. It returns nil for a
// request without a streamed body (nothing to read: no allocation, no
// work), and ErrBadRequestBody if the prefetch fails.
func wrapBody(req *fasthttp.Request) (*bodyReader, error) {
	size := req.Header.ContentLength()
	if !req.IsBodyStream() || size == 0 {
		return nil, nil
	}
	br := bodyReaders.Get().(*bodyReader)
	br.r, br.h, br.size = req.BodyStream(), &req.Header, size
	if size < 0 {
		if err := br.prefetch(); err != nil {
			releaseBodyReader(br)
			return nil, err
		}
	}
	// SetBodyStream leaves the server's own stream to the server, which
	// drains what is left of it (or closes the connection) as before.
	req.SetBodyStream(br, size)
	return br, nil
}

func releaseBodyReader(br *bodyReader) {
	if br == nil {
		return
	}
	*br = bodyReader{buf: br.buf[:0]}
	bodyReaders.Put(br)
}

// prefetch fills buf from the body, up to PrefetchSize or the body's end.
func (br *bodyReader) prefetch() error {
	if cap(br.buf) < PrefetchSize {
		br.buf = make([]byte, 0, PrefetchSize)
	}
	buf := br.buf[:PrefetchSize]
	filled := 0
	for filled < len(buf) {
		n, err := br.account(br.r.Read(buf[filled:]))
		filled += n
		if err == io.EOF {
			break
		}
		if err != nil {
			if br.err != nil {
				return fmt.Errorf("%w: %w", ErrBadRequestBody, br.err)
			}
			return err
		}
	}
	br.buf = buf[:filled]
	return nil
}

// Read serves the prefetched bytes, then the rest of the client's body.
func (br *bodyReader) Read(p []byte) (int, error) {
	if br.off < len(br.buf) {
		n := copy(p, br.buf[br.off:])
		br.off += n
		return n, nil
	}
	switch {
	case br.err != nil:
		return 0, br.err
	case br.eof:
		return 0, io.EOF
	}
	return br.account(br.r.Read(p))
}

// account records the outcome of one read of the client's body. A failing
// read gives nothing: its bytes may be those of a broken chunk, and the
// backend must get none of them.
func (br *bodyReader) account(n int, err error) (int, error) {
	br.n += n
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF && br.size >= 0 && br.n < br.size:
		err = io.ErrUnexpectedEOF // the client stopped short of its Content-Length
	case err == io.EOF:
		// The trailer section of a chunked body has just been parsed
		// into the request header: drop it before fasthttp writes it
		// after the last chunk.
		if err := dropTrailers(br.h); err != nil {
			return 0, err // not the client's fault: a backend error, 502
		}
		br.eof = true
		return n, io.EOF
	}
	br.err = err
	return 0, err
}

// rewriteRequest turns the client's request into the backend's, in place.
func (p *Proxy) rewriteRequest(ctx *fasthttp.RequestCtx, route *Route, b *Backend, id *Identity, rest []byte) {
	h := &ctx.Request.Header

	// Forwarding headers are computed before the client's Host is replaced.
	bufp := p.scratch.Get().(*[]byte)
	// The session cookie goes before anything parses the Cookie lines
	// (see cookie.go); the other cookies reach the backend as sent.
	buf := stripCookies(h, p.cookieName, *bufp)
	if p.fwdFor != nil {
		buf = p.fwdFor.AppendForwardedFor(buf[:0], ctx)
	} else {
		buf = appendClientIP(buf[:0], ctx)
	}
	// Every client copy of the hop-by-hop and forwarding headers goes
	// first (Set would replace only the first copy), then the gateway's.
	removeRequestHeaders(h)
	h.SetCanonical(keyForwardedFor, buf)
	if ctx.IsTLS() {
		h.SetCanonical(keyForwardedProto, valueHTTPS)
	} else {
		h.SetCanonical(keyForwardedProto, valueHTTP)
	}
	h.SetCanonical(keyForwardedHost, h.Host())

	buf = setIdentity(h, id, buf)
	if route.ForwardAccessToken && id != nil && id.AccessToken != "" {
		buf = append(append(buf[:0], "Bearer "...), id.AccessToken...)
		h.Del(fasthttp.HeaderAuthorization) // every client copy
		h.SetCanonical(keyAuthorization, buf)
	}

	if len(b.basePath) > 0 {
		buf = append(append(buf[:0], b.basePath...), rest...)
		ctx.Request.SetRequestURIBytes(buf)
	} else {
		ctx.Request.SetRequestURIBytes(rest)
	}
	*bufp = buf
	p.scratch.Put(bufp)

	uri := ctx.Request.URI()
	if b.https {
		uri.SetScheme("https")
	} else {
		uri.SetScheme("http")
	}
	ctx.Request.UseHostHeader = route.PreserveHost
	if !route.PreserveHost {
		uri.SetHost(b.host)
	}
}

// route finds the backend of an /api request (HTTP and WebSocket alike) and
// returns the request target without /api.
func (p *Proxy) route(ctx *fasthttp.RequestCtx) (*Route, *Backend, []byte, error) {
	req := &ctx.Request
	rest, ok := stripAPI(req.Header.RequestURI())
	if !ok {
		return nil, nil, nil, ErrBadPath
	}
	path := rest
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	r := p.routing.Load()
	defaultPort := 80
	if ctx.IsTLS() {
		defaultPort = 443
	}
	route := r.table.Lookup(req.Header.Host(), defaultPort, path)
	if route == nil {
		return nil, nil, nil, ErrNoRoute
	}
	return route, r.backends[route.BackendIndex], rest, nil
}

var apiPrefix = []byte("/api")

// stripAPI returns the request target without its leading /api ("/api" and
// "/api/" both become "/"), the query string kept byte for byte. ok is
// false for a target that is not origin-form under /api, or whose path
// has a dot segment or an encoded NUL, literal or percent-encoded.
func stripAPI(target []byte) (rest []byte, ok bool) {
	if !bytes.HasPrefix(target, apiPrefix) {
		return nil, false
	}
	rest = target[len(apiPrefix):]
	switch {
	case len(rest) == 0:
		return []byte("/"), true
	case rest[0] == '?':
		// "/api?x" forwards as "/?x"; the caller sees a fresh slice.
		return append([]byte("/"), rest...), true
	case rest[0] != '/':
		return nil, false // "/apix" is not under /api
	}
	path := rest
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if hasDotSegmentOrNUL(path) {
		return nil, false
	}
	return rest, true
}

// hasDotSegmentOrNUL reports a "." or ".." path segment, written plainly or
// with %2e, or a %00 anywhere in path. Segments are split at "/" and also at
// what some backends take for one: "\", %2F and %5C, so "..%2f" cannot
// climb out of the routed prefix on a backend that decodes it.
func hasDotSegmentOrNUL(path []byte) bool {
	start := 0
	for i := 0; i <= len(path); {
		sep := 0
		switch {
		case i == len(path):
			sep = 1
		case path[i] == '/' || path[i] == '\\':
			sep = 1
		case path[i] == '%' && i+2 < len(path) &&
			((path[i+1] == '2' && (path[i+2] == 'f' || path[i+2] == 'F')) ||
				(path[i+1] == '5' && (path[i+2] == 'c' || path[i+2] == 'C'))):
			sep = 3
		case path[i] == '%' && i+2 < len(path) && path[i+1] == '0' && path[i+2] == '0':
			return true
		case path[i] == 0:
			return true
		}
		if sep == 0 {
			i++
			continue
		}
		if isDotSegment(path[start:i]) {
			return true
		}
		i += sep
		start = i
	}
	return false
}

func isDotSegment(seg []byte) bool {
	dots := 0
	for i := 0; i < len(seg); {
		switch {
		case seg[i] == '.':
			i++
		case i+2 < len(seg) && seg[i] == '%' && seg[i+1] == '2' && (seg[i+2] == 'e' || seg[i+2] == 'E'):
			i += 3
		default:
			return false
		}
		dots++
	}
	return dots == 1 || dots == 2
}

// Kinds of failed backend exchanges (BackendErrors.Kind).
const (
	// ErrorKindTimeout: the backend did not answer in time, or the dial
	// or TLS handshake timed out.
	ErrorKindTimeout = "timeout"
	// ErrorKindPoolExhausted: every connection to the backend stayed busy
	// past MaxConnWaitTimeout.
	ErrorKindPoolExhausted = "pool_exhausted"
	// ErrorKindConnect: the backend could not be connected to (refused,
	// unreachable, DNS, TLS handshake).
	ErrorKindConnect = "connect"
	// ErrorKindUpgrade: the backend refused or botched a WebSocket upgrade.
	ErrorKindUpgrade = "upgrade"
	// ErrorKindOther: anything else (a reset or malformed answer).
	ErrorKindOther = "other"
)

// BackendErrors is how many exchanges with one backend failed one way.
type BackendErrors struct {
	// Backend is the backend's URL as config.yml names it.
	Backend string
	// Kind is one of the ErrorKind constants.
	Kind string
	// Count is the number of failures since the proxy was created.
	Count uint64
}

// ErrorCounts returns the failed backend exchanges (HTTP and WebSocket
// dials) so far, per backend and kind, for metrics. Requests refused before
// a backend was chosen (ErrNoRoute, ErrBadPath) are not counted.
func (p *Proxy) ErrorCounts() []BackendErrors { return p.errs.snapshot() }

// errorCounts is touched on the error path only: a map under a mutex.
type errorCounts struct {
	mu sync.Mutex
	m  map[backendErrorKey]uint64
}

type backendErrorKey struct{ backend, kind string }

func (c *errorCounts) add(backend string, err error) {
	k := backendErrorKey{backend, errorKind(err)}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[backendErrorKey]uint64)
	}
	c.m[k]++
	c.mu.Unlock()
}

func (c *errorCounts) snapshot() []BackendErrors {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]BackendErrors, 0, len(c.m))
	for k, n := range c.m {
		out = append(out, BackendErrors{Backend: k.backend, Kind: k.kind, Count: n})
	}
	return out
}

// errorKind classifies a failed exchange with a backend.
func errorKind(err error) string {
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return ErrorKindPoolExhausted
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout), errors.As(err, &netErr) && netErr.Timeout():
		return ErrorKindTimeout
	case errors.Is(err, ErrUpgradeFailed):
		return ErrorKindUpgrade
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return ErrorKindConnect
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return ErrorKindConnect
	}
	return ErrorKindOther
}
