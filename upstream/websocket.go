package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// WebSocket proxying (issue 5): an upgrade on /api/* is routed and its
// headers rewritten exactly like an HTTP request (Proxy.rewriteRequest),
// the backend is dialled and must accept before the client is upgraded, and
// then two named copier goroutines relay messages both ways, frame by frame,
// with blocking writes under deadlines (a slow reader slows the writer; no
// queue grows). Control frames (ping, pong, close) are relayed as they are,
// so close codes and reasons pass end to end. The gateway itself closes a
// socket when its session ends (1008), at shutdown (1001), when it idles
// (1001) and when a message is too big (1009).

// Errors WebSocketProxy.Forward returns before the client is upgraded. Others
// are those of Proxy.Forward (ErrBadPath, ErrNoRoute) and of dialling the
// backend (timeouts, refused connections).
var (
	// ErrBadHandshake means the request is not a valid WebSocket opening
	// handshake (not GET, no Sec-WebSocket-Key, a version other than 13):
	// answer 400. The backend is not contacted.
	ErrBadHandshake = errors.New("upstream: not a valid WebSocket handshake")
	// ErrUpgradeFailed means the backend did not accept the upgrade, or
	// accepted it in a way the client could not use (a subprotocol the
	// client did not offer): answer 502. An UpgradeRefusedError carrying the
	// backend's own 4xx or 5xx status wraps it.
	ErrUpgradeFailed = errors.New("upstream: backend did not accept the WebSocket upgrade")
	// ErrShuttingDown means Shutdown has begun and no new socket is opened:
	// answer 503.
	ErrShuttingDown = errors.New("upstream: shutting down, no new WebSockets")
)

// UpgradeRefusedError is the backend's answer to an upgrade that it refused
// with a 4xx or 5xx status. The client gets that answer instead of 101.
type UpgradeRefusedError struct {
	// StatusCode is the backend's status, 400 to 599.
	StatusCode int
	// ContentType and Body are the backend's, the body cut to 1 KiB.
	ContentType string
	Body        []byte
}

func (e *UpgradeRefusedError) Error() string {
	return fmt.Sprintf("upstream: backend refused the WebSocket upgrade with status %d", e.StatusCode)
}

// Unwrap returns ErrUpgradeFailed.
func (e *UpgradeRefusedError) Unwrap() error { return ErrUpgradeFailed }

// WebSocketConfig holds the limits of proxied WebSockets. The zero value of
// a field means the default documented on it, never "unlimited".
type WebSocketConfig struct {
	// MaxMessageBytes caps one message in either direction, all its frames
	// together. A peer that sends more gets close 1009 (message too big), and
	// so does the other side. Default 1 MiB (env WS_MAX_MESSAGE_BYTES).
	MaxMessageBytes int64 `yaml:"maxMessageBytes"`
	// IdleTimeout closes a socket on which no frame (data, ping or pong, in
	// either direction) passed for this long, with close 1001 to both sides.
	// Default 60s (env WS_IDLE_TIMEOUT_SECONDS). Clients that keep a socket
	// open while silent must ping more often.
	IdleTimeout time.Duration `yaml:"idleTimeout"`
	// WriteTimeout is the longest one write to a peer may block: a peer that
	// stops reading for this long loses its socket, the relay never
	// buffers for it. Default 10s.
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	// HandshakeTimeout bounds dialling the backend and reading its answer to
	// the upgrade (a timeout answers 504), and the wait for the client's
	// connection to be handed over once upgraded. Default 10s.
	HandshakeTimeout time.Duration `yaml:"handshakeTimeout"`
	// CloseTimeout is how long the peers have to answer a close frame
	// before their connections are closed. Default 2s.
	CloseTimeout time.Duration `yaml:"closeTimeout"`
}

// withDefaults returns c with every zero field set to its documented default.
func (c WebSocketConfig) withDefaults() WebSocketConfig {
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 1 << 20
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 2 * time.Second
	}
	return c
}

// Validate reports a limit that makes no sense (a negative one).
func (c WebSocketConfig) Validate() error {
	var errs []error
	if c.MaxMessageBytes < 0 {
		errs = append(errs, errors.New("maxMessageBytes must not be negative"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"idleTimeout", c.IdleTimeout}, {"writeTimeout", c.WriteTimeout},
		{"handshakeTimeout", c.HandshakeTimeout}, {"closeTimeout", c.CloseTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", d.name))
		}
	}
	return errors.Join(errs...)
}

// SessionEnd tells the relay when the session that authorised a socket
// ends, so that the socket ends with it (close 1008).
type SessionEnd struct {
	// Gone is closed when the session ends (logout on any instance,
	// deletion, expiry as the store sees it). Nil never closes.
	Gone <-chan struct{}
	// Deadline is the session's absolute expiry; zero means none.
	Deadline time.Time
	// Stop releases what watches the session. Forward calls it exactly once:
	// before returning an error, or once the socket is closed. May be nil.
	Stop func()
}

// WebSocketProxy relays WebSockets to the backends a Proxy routes to, and
// tracks every relayed connection so that Shutdown can close them all. It is
// safe for concurrent use.
type WebSocketProxy struct {
	proxy    *Proxy
	cfg      WebSocketConfig
	log      *zap.Logger
	upgrader websocket.FastHTTPUpgrader
	// bufs lends write buffers to both sides of every socket for the time
	// of one message, so an idle socket holds none.
	bufs    sync.Pool
	tracker relayTracker
	opened  atomic.Uint64 // sockets relayed so far, for Opened
}

// NewWebSocketProxy returns the WebSocket relay for p's routes.
func NewWebSocketProxy(p *Proxy, cfg WebSocketConfig, log *zap.Logger) (*WebSocketProxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	w := &WebSocketProxy{proxy: p, cfg: cfg.withDefaults(), log: log}
	w.tracker.init()
	w.upgrader = websocket.FastHTTPUpgrader{
		HandshakeTimeout: w.cfg.HandshakeTimeout,
		WriteBufferPool:  &w.bufs,
		// The caller has checked Origin (edge, with the session's rules).
		CheckOrigin: func(*fasthttp.RequestCtx) bool { return true },
		// Failures are answered by the caller, in one place, as JSON.
		Error: func(*fasthttp.RequestCtx, int, error) {},
		// Subprotocols is nil: the upgrader answers with the response's
		// Sec-WebSocket-Protocol, which Forward sets to the backend's choice.
		// No compression is negotiated with either side: messages are relayed
		// as they are, and permessage-deflate would cost a compressor per
		// socket.
		EnableCompression: false,
	}
	return w, nil
}

// Open returns the number of sockets being relayed or waiting for their
// client's connection.
func (w *WebSocketProxy) Open() int { return w.tracker.len() }

// Opened returns the number of sockets accepted by a backend and relayed
// (or waiting for their client's connection) since w was created.
func (w *WebSocketProxy) Opened() uint64 { return w.opened.Load() }

// IsWebSocketUpgrade reports whether ctx's request asks for a WebSocket
// (Connection: upgrade and Upgrade: websocket, in any letter case). Requests
// without an Upgrade header, all but a few, are told apart by one look-up.
func IsWebSocketUpgrade(ctx *fasthttp.RequestCtx) bool {
	if len(ctx.Request.Header.Peek(fasthttp.HeaderUpgrade)) == 0 {
		return false
	}
	return websocket.FastHTTPIsWebSocketUpgrade(ctx)
}

// Forward proxies ctx's WebSocket upgrade on behalf of id: it routes the
// request like Proxy.Forward, dials the backend with the rewritten headers
// and the client's subprotocols, and once the backend has accepted,
// upgrades the client with the backend's choice and relays until either
// side closes, the session ends (end), the socket idles or Shutdown. On
// error nothing was written to ctx.Response: the caller answers (see
// ErrBadHandshake, ErrUpgradeFailed, UpgradeRefusedError, ErrShuttingDown,
// ErrNoRoute, ErrBadPath). Forward always calls end.Stop exactly once.
func (w *WebSocketProxy) Forward(ctx *fasthttp.RequestCtx, id *Identity, end SessionEnd) (err error) {
	if end.Stop == nil {
		end.Stop = func() {}
	}
	var r *wsRelay
	defer func() {
		if err != nil && r == nil {
			end.Stop()
		}
	}()
	if err := checkHandshake(ctx); err != nil {
		return err
	}
	if w.tracker.stopping() {
		return ErrShuttingDown
	}
	route, b, rest, err := w.proxy.route(ctx)
	if err != nil {
		return err
	}
	// What the rewrite changes and the upgrade needs later, copied first.
	var offered []byte // every Sec-WebSocket-Protocol line, as one list
	for _, v := range ctx.Request.Header.PeekAll("Sec-WebSocket-Protocol") {
		offered = append(append(offered, v...), ',')
	}
	host := b.host
	if route.PreserveHost {
		host = string(ctx.Request.Header.Host())
	}
	w.proxy.rewriteRequest(ctx, route, b, id, rest)

	backend, resp, err := w.dial(b, ctx.Request.Header.RequestURI(), host, backendHeader(&ctx.Request.Header))
	if err != nil {
		w.proxy.errs.add(b.URL, err)
		return err
	}
	chosen := resp.Header.Get("Sec-WebSocket-Protocol")
	if chosen != "" && !tokenListHas(offered, chosen) {
		_ = backend.Close()
		return fmt.Errorf("%w: subprotocol %q was not offered", ErrUpgradeFailed, chosen)
	}

	r = newRelay(w, backend, end)
	if !w.tracker.add(r) {
		r.abandon()
		return ErrShuttingDown
	}
	w.opened.Add(1)
	// fasthttp skips the hijack when it cannot write the 101 (the client
	// left, or the server is shutting down): the backend must not wait
	// for a client that never comes.
	r.pendingTimer = time.AfterFunc(w.cfg.HandshakeTimeout, r.abandonIfPending)

	// The rewrite removed them as hop-by-hop headers; the upgrader checks
	// them again.
	ctx.Request.Header.Set(fasthttp.HeaderConnection, "Upgrade")
	ctx.Request.Header.Set(fasthttp.HeaderUpgrade, "websocket")
	copyUpgradeHeaders(&ctx.Response.Header, resp.Header)
	if chosen != "" {
		ctx.Response.Header.Set("Sec-WebSocket-Protocol", chosen)
	}
	if err := w.upgrader.Upgrade(ctx, r.serve); err != nil {
		r.abandonIfPending()
		ctx.Response.Reset()
		return fmt.Errorf("%w: %v", ErrBadHandshake, err)
	}
	return nil
}

// Shutdown sends close 1001 (going away) to both sides of every socket,
// refuses new ones, and waits until all are closed or ctx ends, when it
// closes the remaining connections and returns ctx's error.
func (w *WebSocketProxy) Shutdown(ctx context.Context) error {
	return w.tracker.shutdown(ctx, w.cfg.CloseTimeout)
}

// checkHandshake refuses what the upgrader would refuse after the backend
// was dialled: a method other than GET, a version other than 13, no key.
func checkHandshake(ctx *fasthttp.RequestCtx) error {
	h := &ctx.Request.Header
	if !ctx.IsGet() || !tokenListHas(h.Peek("Sec-WebSocket-Version"), "13") ||
		len(h.Peek("Sec-WebSocket-Key")) == 0 || !IsWebSocketUpgrade(ctx) {
		return ErrBadHandshake
	}
	return nil
}

// backendHeader returns the rewritten request's headers for the backend's
// handshake, less those the dialer writes itself (Host, the Sec-WebSocket-
// handshake fields) and the extensions: none are negotiated.
func backendHeader(h *fasthttp.RequestHeader) http.Header {
	out := make(http.Header, h.Len())
	for k, v := range h.All() {
		name := http.CanonicalHeaderKey(string(k))
		switch name {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade",
			"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions", "Sec-Websocket-Accept":
			continue
		}
		out[name] = append(out[name], string(v))
	}
	return out
}

// copyUpgradeHeaders passes the backend's answer headers to the client's
// 101, as the HTTP proxy passes a response's, less the hop-by-hop ones and
// the handshake fields the upgrader sets itself.
func copyUpgradeHeaders(dst *fasthttp.ResponseHeader, src http.Header) {
	for k, vs := range src {
		switch k {
		case "Connection", "Upgrade", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Content-Length",
			"Trailer", "Te", "Content-Type", "Date", "Server",
			"Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions":
			continue
		}
		for _, v := range vs {
			dst.Add(k, v)
		}
	}
}

// tokenListHas reports whether the comma list v has token (compared
// exactly: subprotocol names are case-sensitive, RFC 6455 section 4.1).
func tokenListHas(v []byte, token string) bool {
	for len(v) > 0 {
		var t []byte
		t, v = nextToken(v)
		if string(t) == token {
			return true
		}
	}
	return false
}

// dial opens the backend's WebSocket: ws:// or wss:// (with the pool's TLS
// configuration) to the backend's address, requestURI as the target.
func (w *WebSocketProxy) dial(b *Backend, requestURI []byte, host string, h http.Header) (*websocket.Conn, *http.Response, error) {
	cfg := w.proxy.pool.cfg
	d := websocket.Dialer{
		TLSClientConfig:  b.client.TLSConfig,
		HandshakeTimeout: w.cfg.HandshakeTimeout,
		WriteBufferPool:  &w.bufs,
	}
	if dial := cfg.Dial; dial != nil {
		d.NetDialContext = func(_ context.Context, _, addr string) (net.Conn, error) { return dial(addr) }
	} else {
		nd := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
		d.NetDialContext = nd.DialContext
	}
	scheme := "ws://"
	if b.https {
		scheme = "wss://"
	}
	h["Host"] = []string{host}
	conn, resp, err := d.Dial(scheme+b.client.Addr+string(requestURI), h)
	if err == nil {
		return conn, resp, nil
	}
	if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
		if resp.StatusCode >= 400 && resp.StatusCode <= 599 {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			return nil, nil, &UpgradeRefusedError{StatusCode: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Body: body}
		}
		return nil, nil, fmt.Errorf("%w: status %d", ErrUpgradeFailed, resp.StatusCode)
	}
	return nil, nil, fmt.Errorf("websocket dial: %w", err)
}

// The two sides of a relay.
const (
	sideClient = iota
	sideBackend
)

// Relay states.
const (
	relayPending   = iota // backend dialled, waiting for the hijacked client connection
	relayRunning          // copiers started
	relayAbandoned        // the client connection never came, or shutdown came first
)

// wsRelay is one proxied socket: the client's and the backend's
// connections and the state of their closing.
type wsRelay struct {
	w            *WebSocketProxy
	end          SessionEnd
	pendingTimer *time.Timer
	started      time.Time

	mu    sync.Mutex // guards state and conns[sideClient] until running
	state int
	conns [2]*websocket.Conn
	nets  [2]net.Conn // the connections to close: the client's unwrapped from fasthttp's hijack

	// closeSent[s] is set by whoever sends the close frame to side s (once).
	closeSent [2]atomic.Bool
	// closing is set when a close handshake started: from now on the peers
	// have CloseTimeout, and the idle deadline is no longer pushed back.
	closing     atomic.Bool
	closingCh   chan struct{} // closed with closing
	closingOnce sync.Once
	// A copier asks the supervisor to close both sides (idle, too big).
	closeReq     chan struct{}
	closeReqOnce sync.Once
	reqCode      int
	reqReason    string

	lastRefresh atomic.Int64 // unix ns of the last push of the read deadlines
	copiers     atomic.Int32
	done        chan struct{} // closed when both copiers have returned
}

func newRelay(w *WebSocketProxy, backend *websocket.Conn, end SessionEnd) *wsRelay {
	r := &wsRelay{
		w: w, end: end,
		closingCh: make(chan struct{}),
		closeReq:  make(chan struct{}),
		done:      make(chan struct{}),
	}
	r.conns[sideBackend] = backend
	r.nets[sideBackend] = backend.NetConn()
	return r
}

// abandon gives up a relay whose client connection never came.
func (r *wsRelay) abandon() {
	_ = r.nets[sideBackend].Close()
	r.w.tracker.remove(r)
	r.end.Stop()
}

// abandonIfPending abandons r unless its client connection has come: the
// handshake timed out, the upgrade failed, or shutdown came first.
func (r *wsRelay) abandonIfPending() {
	r.mu.Lock()
	if r.state != relayPending {
		r.mu.Unlock()
		return
	}
	r.state = relayAbandoned
	r.mu.Unlock()
	r.abandon()
}

// goAway closes a running socket on the gateway's initiative: the close
// frame (code, reason) to both sides, then the peers have CloseTimeout to
// answer. It blocks at most CloseTimeout per side (a side whose writes are
// stuck). Only the supervisor calls it.
func (r *wsRelay) goAway(code int, reason string) {
	msg := websocket.FormatCloseMessage(code, reason)
	deadline := time.Now().Add(r.w.cfg.CloseTimeout)
	for s := range r.conns {
		r.sendClose(s, msg, deadline)
	}
	r.beginClosing()
}

// sendClose writes a close frame to side s unless one was sent already.
func (r *wsRelay) sendClose(s int, msg []byte, deadline time.Time) {
	if r.closeSent[s].CompareAndSwap(false, true) {
		_ = r.conns[s].WriteControl(websocket.CloseMessage, msg, deadline)
	}
}

// beginClosing starts the close timeout: both reads end by then at the
// latest (the supervisor closes the connections shortly after).
func (r *wsRelay) beginClosing() {
	r.closingOnce.Do(func() {
		r.closing.Store(true)
		close(r.closingCh)
		deadline := time.Now().Add(r.w.cfg.CloseTimeout)
		for _, c := range r.nets {
			_ = c.SetReadDeadline(deadline)
		}
	})
}

// requestClose asks the supervisor to close both sides with code.
func (r *wsRelay) requestClose(code int, reason string) {
	r.closeReqOnce.Do(func() {
		r.reqCode, r.reqReason = code, reason
		close(r.closeReq)
	})
}

// abort closes both connections at once, without close frames: what the
// peers see when a side vanished or broke the protocol, as they would
// without the gateway.
func (r *wsRelay) abort() {
	r.beginClosing()
	for _, c := range r.nets {
		_ = c.Close()
	}
}

// serve is the hijack handler: it runs on the goroutine fasthttp gives the
// upgraded client connection, starts the two copiers, and supervises them
// until both have returned. fasthttp closes the client connection after.
func (r *wsRelay) serve(client *websocket.Conn) {
	r.mu.Lock()
	if r.state != relayPending {
		r.mu.Unlock()
		return // abandoned meanwhile; the backend is closed already
	}
	r.pendingTimer.Stop()
	r.conns[sideClient] = client
	r.nets[sideClient] = unwrapHijacked(client.NetConn())
	r.state = relayRunning
	r.mu.Unlock()
	r.started = time.Now()

	cfg := &r.w.cfg
	for s, c := range r.conns {
		c.SetReadLimit(cfg.MaxMessageBytes)
		other := 1 - s
		c.SetPingHandler(func(data string) error { return r.forwardControl(other, websocket.PingMessage, data) })
		c.SetPongHandler(func(data string) error { return r.forwardControl(other, websocket.PongMessage, data) })
		c.SetCloseHandler(func(code int, text string) error {
			// The peer closes: pass its code and reason on, unless the other
			// side was sent a close already (then this is the answer to it).
			r.sendClose(other, websocket.FormatCloseMessage(code, text), time.Now().Add(cfg.CloseTimeout))
			r.beginClosing()
			return nil
		})
		_ = r.nets[s].SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
	}
	r.lastRefresh.Store(time.Now().UnixNano())
	r.copiers.Store(2)
	go r.copyBackendToClient()
	go r.copyClientToBackend()
	r.supervise()

	for _, c := range r.nets {
		_ = c.Close()
	}
	r.w.tracker.remove(r)
	r.end.Stop()
	if ce := r.w.log.Check(zap.DebugLevel, "websocket closed"); ce != nil {
		ce.Write(zap.Duration("duration", time.Since(r.started)))
	}
}

// supervise waits for the copiers, and closes the socket on the gateway's
// initiative when the session ends, at shutdown, or when a copier asks.
// Once a close handshake has started it gives the peers CloseTimeout, then
// closes the connections, which ends any read or write still blocked.
func (r *wsRelay) supervise() {
	var expiry <-chan time.Time
	if !r.end.Deadline.IsZero() {
		t := time.NewTimer(time.Until(r.end.Deadline))
		defer t.Stop()
		expiry = t.C
	}
	select {
	case <-r.done:
		return
	case <-r.end.Gone:
		r.goAway(websocket.ClosePolicyViolation, "session ended")
	case <-expiry:
		r.goAway(websocket.ClosePolicyViolation, "session expired")
	case <-r.w.tracker.stoppingCh:
		r.goAway(websocket.CloseGoingAway, "gateway shutting down")
	case <-r.closeReq:
		r.goAway(r.reqCode, r.reqReason)
	case <-r.closingCh:
	}
	t := time.NewTimer(r.w.cfg.CloseTimeout + 100*time.Millisecond)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		r.abort()
		<-r.done
	}
}

// forwardControl relays a ping or pong to side s, unless s is closing.
func (r *wsRelay) forwardControl(s, messageType int, data string) error {
	r.touch()
	if r.closeSent[s].Load() {
		return nil
	}
	if err := r.conns[s].WriteControl(messageType, []byte(data), time.Now().Add(r.w.cfg.WriteTimeout)); err != nil {
		return &relayWriteError{err}
	}
	return nil
}

// touch pushes back the idle deadline of both sides: any frame either way
// counts. The deadlines move at most once per refreshEvery, so a busy
// socket does not pay for it per frame.
func (r *wsRelay) touch() time.Time {
	now := time.Now()
	if r.closing.Load() {
		return now
	}
	idle := r.w.cfg.IdleTimeout
	every := min(time.Second, idle/10)
	last := r.lastRefresh.Load()
	if now.UnixNano()-last < int64(every) || !r.lastRefresh.CompareAndSwap(last, now.UnixNano()) {
		return now
	}
	for _, c := range r.nets {
		_ = c.SetReadDeadline(now.Add(idle))
	}
	return now
}

// copyClientToBackend and copyBackendToClient are the two copier
// goroutines; they exist so that stacks name the direction.
func (r *wsRelay) copyClientToBackend() { r.copierDone(sideClient, r.copyMessages(sideClient)) }
func (r *wsRelay) copyBackendToClient() { r.copierDone(sideBackend, r.copyMessages(sideBackend)) }

// relayWriteError marks an error of writing to the destination side.
type relayWriteError struct{ err error }

func (e *relayWriteError) Error() string { return "websocket relay write: " + e.err.Error() }
func (e *relayWriteError) Unwrap() error { return e.err }

// copyMessages relays messages from side src to the other side until a
// read or a write fails. Each message streams through the destination's
// (pooled) write buffer, frame by frame; a write blocks while the
// destination does not read, up to WriteTimeout, and meanwhile nothing more
// is read from src: that is the backpressure.
func (r *wsRelay) copyMessages(src int) error {
	from, to := r.conns[src], r.conns[1-src]
	mr := &deadlineReader{r: r, to: to}
	for {
		typ, msg, err := from.NextReader()
		if err != nil {
			return err
		}
		r.touch()
		if r.closeSent[1-src].Load() {
			// The destination was sent a close: it may get no more data.
			if _, err := io.Copy(io.Discard, msg); err != nil {
				return err
			}
			continue
		}
		_ = to.SetWriteDeadline(time.Now().Add(r.w.cfg.WriteTimeout))
		wr, err := to.NextWriter(typ)
		if err == nil {
			mr.msg, mr.err = msg, nil
			_, err = io.Copy(wr, mr)
			mr.msg = nil
			if mr.err != nil {
				return mr.err
			}
			if err == nil {
				err = wr.Close()
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, websocket.ErrCloseSent):
			// The destination got a close meanwhile: drop the rest.
			if _, err := io.Copy(io.Discard, msg); err != nil {
				return err
			}
		default:
			return &relayWriteError{err}
		}
	}
}

// deadlineReader reads a message for the destination's writer, pushing back
// its write deadline and the idle deadline at every chunk, so a long
// message that keeps moving never times out.
type deadlineReader struct {
	r   *wsRelay
	to  *websocket.Conn
	msg io.Reader
	err error // the read error, told apart from the writer's
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	n, err := d.msg.Read(p)
	if err != nil && err != io.EOF {
		d.err = err
	}
	if n > 0 {
		now := d.r.touch()
		_ = d.to.SetWriteDeadline(now.Add(d.r.w.cfg.WriteTimeout))
	}
	return n, err
}

// copierDone decides what a copier's end means for the socket, and closes
// done after the second copier.
func (r *wsRelay) copierDone(src int, err error) {
	var closeErr *websocket.CloseError
	var writeErr *relayWriteError
	var netErr net.Error
	switch {
	case errors.As(err, &closeErr) && closeErr.Code != websocket.CloseAbnormalClosure:
		// A close from src, passed on by the close handler (or the answer to
		// ours): the other side has CloseTimeout to answer. (1006 is how the
		// library reports a connection that ended without a close frame.)
		r.beginClosing()
	case r.closing.Load():
		// The close timeout or the connection's end, after a close began.
	case errors.As(err, &writeErr):
		r.abort()
	case errors.Is(err, websocket.ErrReadLimit):
		// The connection sent src close 1009 itself.
		r.closeSent[src].Store(true)
		r.requestClose(websocket.CloseMessageTooBig, "message too big")
		r.drain(src)
	case errors.As(err, &netErr) && netErr.Timeout():
		r.requestClose(websocket.CloseGoingAway, "idle timeout")
	default:
		// src vanished or broke the protocol (its connection answered
		// that with 1002 itself).
		r.abort()
	}
	if r.copiers.Add(-1) == 0 {
		close(r.done)
	}
}

// drain reads and drops what src still sends after its connection refused a
// message, until src closes or CloseTimeout, so that closing the socket
// does not reset it before src has read the close frame.
func (r *wsRelay) drain(src int) {
	c := r.nets[src]
	_ = c.SetReadDeadline(time.Now().Add(r.w.cfg.CloseTimeout))
	_, _ = io.Copy(io.Discard, c)
}

// unwrapHijacked returns the connection under fasthttp's hijacked one,
// whose Close does nothing (fasthttp closes it when the handler returns).
func unwrapHijacked(c net.Conn) net.Conn {
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		return u.UnsafeConn()
	}
	return c
}

// relayTracker registers every relay, so that shutdown reaches them all.
type relayTracker struct {
	mu         sync.Mutex
	relays     map[*wsRelay]struct{}
	stopped    bool
	stoppingCh chan struct{} // closed by shutdown
	drained    chan struct{} // closed when the last relay leaves after shutdown
}

func (t *relayTracker) init() {
	t.relays = make(map[*wsRelay]struct{})
	t.stoppingCh = make(chan struct{})
}

func (t *relayTracker) stopping() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopped
}

func (t *relayTracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.relays)
}

// add registers r, unless shutdown has begun.
func (t *relayTracker) add(r *wsRelay) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	t.relays[r] = struct{}{}
	return true
}

func (t *relayTracker) remove(r *wsRelay) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.relays, r)
	if len(t.relays) == 0 && t.drained != nil {
		close(t.drained)
		t.drained = nil
	}
}

// shutdown closes every socket with 1001 (running ones through their
// supervisors, which see stoppingCh; pending ones here) and waits until
// all are gone or ctx ends; then it closes the rest outright.
func (t *relayTracker) shutdown(ctx context.Context, closeTimeout time.Duration) error {
	t.mu.Lock()
	if !t.stopped {
		t.stopped = true
		close(t.stoppingCh)
	}
	if len(t.relays) == 0 {
		t.mu.Unlock()
		return nil
	}
	drained := make(chan struct{})
	t.drained = drained
	var pending []*wsRelay
	for r := range t.relays {
		pending = append(pending, r)
	}
	t.mu.Unlock()
	for _, r := range pending {
		r.abandonIfPending()
	}
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	var left []*wsRelay
	for r := range t.relays {
		left = append(left, r)
	}
	t.mu.Unlock()
	for _, r := range left {
		r.mu.Lock()
		running := r.state == relayRunning
		r.mu.Unlock()
		if running {
			r.abort()
		}
	}
	select {
	case <-drained:
	case <-time.After(closeTimeout):
	}
	return ctx.Err()
}

// Compile-time interface guard: the write buffer pool.
var _ websocket.BufferPool = (*sync.Pool)(nil)
