package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// The WebSocket relay between a real client (the library's Dialer) and a
// real backend (its net/http Upgrader), both on loopback, with a bare
// fasthttp server calling WebSocketProxy.Forward in between (edge's
// authentication and error bodies are tested in edge and authflow).

// wsNoLeaks fails the test if a goroutine it started outlives it. Call it
// first, so that its check runs after every other cleanup. A stopped
// fasthttp.Server leaves its worker pool's cleaner asleep for up to 10s;
// that one is not the relay's, nor is fasthttp's process-wide date ticker.
func wsNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, ignore,
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
	})
}

// wsTestBackend is a WebSocket server on 127.0.0.1 that counts upgrade
// attempts, records the last handshake and the close frames it receives,
// and by default echoes every message.
type wsTestBackend struct {
	URL      string
	srv      *httptest.Server
	attempts atomic.Int64
	upgrader websocket.Upgrader
	handle   func(c *websocket.Conn)
	delay    time.Duration // before answering the upgrade
	closes   chan *websocket.CloseError

	mu   sync.Mutex
	last *http.Request
}

func startWSBackend(t *testing.T, tlsOn bool, configure func(b *wsTestBackend)) *wsTestBackend {
	t.Helper()
	b := &wsTestBackend{closes: make(chan *websocket.CloseError, 16)}
	b.upgrader.CheckOrigin = func(*http.Request) bool { return true }
	b.upgrader.EnableCompression = true // accepts deflate if it is ever offered
	b.handle = b.echo
	if configure != nil {
		configure(b)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.attempts.Add(1)
		b.mu.Lock()
		b.last = r.Clone(context.Background())
		b.mu.Unlock()
		time.Sleep(b.delay)
		c, err := b.upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		b.handle(c)
	})
	if tlsOn {
		b.srv = httptest.NewTLSServer(h)
	} else {
		b.srv = httptest.NewServer(h)
	}
	t.Cleanup(b.srv.Close)
	b.URL = b.srv.URL
	return b
}

// echo sends every message back and records the close that ends the loop.
func (b *wsTestBackend) echo(c *websocket.Conn) {
	for {
		typ, msg, err := c.ReadMessage()
		if err != nil {
			b.recordClose(err)
			return
		}
		if err := c.WriteMessage(typ, msg); err != nil {
			return
		}
	}
}

func (b *wsTestBackend) recordClose(err error) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		select {
		case b.closes <- ce:
		default:
		}
	}
}

func (b *wsTestBackend) lastRequest(t *testing.T) *http.Request {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	require.NotNil(t, b.last, "the backend saw no handshake")
	return b.last
}

// nextClose waits for the next close frame the backend received.
func (b *wsTestBackend) nextClose(t *testing.T) *websocket.CloseError {
	t.Helper()
	select {
	case ce := <-b.closes:
		return ce
	case <-time.After(5 * time.Second):
		t.Fatal("the backend received no close frame")
		return nil
	}
}

var wsTestUser = Identity{Sub: "user-1", Email: "alice@example.com", Name: "Alice Ω", AccessToken: "tok"}

// wsTestGateway is a fasthttp server whose every request is an upgrade
// relayed by a WebSocketProxy.
type wsTestGateway struct {
	URL   string // ws://127.0.0.1:PORT/api
	ws    *WebSocketProxy
	proxy *Proxy
}

type wsGatewayOpts struct {
	config string // config.yml; default: defaultBackend = the backend
	cfg    WebSocketConfig
	pool   PoolConfig
	// session returns the SessionEnd of each upgrade; nil: none.
	session func() SessionEnd
}

func startWSGateway(t *testing.T, backendURL string, o wsGatewayOpts) *wsTestGateway {
	t.Helper()
	if o.config == "" {
		o.config = fmt.Sprintf("defaultBackend: %q\n", backendURL)
	}
	f, err := ParseFile("config.yml", []byte(o.config))
	require.NoError(t, err)
	p, err := NewProxy(ProxyConfig{Pool: o.pool}, f, zap.NewNop())
	require.NoError(t, err)
	w, err := NewWebSocketProxy(p, o.cfg, zap.NewNop())
	require.NoError(t, err)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		var end SessionEnd
		if o.session != nil {
			end = o.session()
		}
		if err := w.Forward(ctx, &wsTestUser, end); err != nil {
			var refused *UpgradeRefusedError
			ctx.Response.Reset()
			switch {
			case errors.As(err, &refused):
				ctx.SetStatusCode(refused.StatusCode)
				ctx.SetBody(refused.Body)
				return
			case errors.Is(err, ErrBadHandshake):
				ctx.SetStatusCode(fasthttp.StatusBadRequest)
			case errors.Is(err, ErrShuttingDown):
				ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			default:
				ctx.SetStatusCode(fasthttp.StatusBadGateway)
			}
			ctx.SetBodyString(err.Error())
		}
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = w.Shutdown(context.Background())
		_ = srv.Shutdown()
		<-done
		p.Close()
	})
	return &wsTestGateway{URL: "ws://" + ln.Addr().String() + "/api", ws: w, proxy: p}
}

// wsDial opens a client socket; the response is returned on failure too.
func wsDial(t *testing.T, url string, h http.Header, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: subprotocols, EnableCompression: true}
	c, resp, err := d.Dial(url, h)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, resp, err
}

func mustDial(t *testing.T, url string, h http.Header, subprotocols ...string) *websocket.Conn {
	t.Helper()
	c, resp, err := wsDial(t, url, h, subprotocols...)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	return c
}

// readClose reads until the socket's close frame and returns it.
func readClose(t *testing.T, c *websocket.Conn, within time.Duration) *websocket.CloseError {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(within)))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce, "no close frame within %v", within)
		return ce
	}
}

func roundTrip(t *testing.T, c *websocket.Conn, typ int, msg []byte) {
	t.Helper()
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(5*time.Second)))
	require.NoError(t, c.WriteMessage(typ, msg))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	gotTyp, got, err := c.ReadMessage()
	require.NoError(t, err)
	assert.Equal(t, typ, gotTyp)
	assert.True(t, bytes.Equal(msg, got), "echo differs (%d bytes sent, %d back)", len(msg), len(got))
}

func TestWebSocketRelayEchoAndHeaders(t *testing.T) {
	wsNoLeaks(t)
	be := startWSBackend(t, false, nil)
	gw := startWSGateway(t, be.URL+"/base", wsGatewayOpts{})

	c := mustDial(t, gw.URL+"/chat/room%2F1?x=1&y=%20", http.Header{
		"Cookie":        {"sid=secret-session; theme=dark"},
		"X-User-Email":  {"mallory@evil.test"},
		"X-User-Role":   {"admin"},
		"Origin":        {"http://app.test"},
		"Forwarded":     {"for=6.6.6.6"},
		"X-Request-Id":  {"req-1"},
		"Authorization": {"Basic client"},
	})
	roundTrip(t, c, websocket.TextMessage, []byte("hello"))
	roundTrip(t, c, websocket.BinaryMessage, []byte{0, 1, 2, 255})
	roundTrip(t, c, websocket.TextMessage, []byte{})
	// The default limit is 1 MiB: a message of exactly that passes.
	roundTrip(t, c, websocket.BinaryMessage, bytes.Repeat([]byte{7}, 1<<20))

	r := be.lastRequest(t)
	assert.Equal(t, "/base/chat/room%2F1?x=1&y=%20", r.RequestURI, "/api stripped, path and query as sent")
	assert.Equal(t, wsTestUser.Email, r.Header.Get("X-User-Email"))
	assert.Equal(t, wsTestUser.Sub, r.Header.Get("X-User-Sub"))
	assert.Equal(t, wsTestUser.Name, r.Header.Get("X-User-Name"))
	assert.Empty(t, r.Header.Values("X-User-Role"), "client x-user-* headers must not reach the backend")
	assert.Equal(t, "theme=dark", r.Header.Get("Cookie"), "the session cookie must not reach the backend")
	assert.Equal(t, "127.0.0.1", r.Header.Get("X-Forwarded-For"))
	assert.Equal(t, "http", r.Header.Get("X-Forwarded-Proto"))
	assert.Equal(t, strings.TrimPrefix(strings.TrimSuffix(gw.URL, "/api"), "ws://"), r.Header.Get("X-Forwarded-Host"))
	assert.Empty(t, r.Header.Get("Forwarded"))
	assert.Equal(t, "req-1", r.Header.Get("X-Request-Id"))
	assert.Equal(t, "http://app.test", r.Header.Get("Origin"))
	assert.Equal(t, "Basic client", r.Header.Get("Authorization"), "no token relay unless the mapping asks")
	assert.Equal(t, strings.TrimPrefix(be.URL, "http://"), r.Host)
	assert.Empty(t, r.Header.Get("Sec-Websocket-Extensions"), "no extension is offered to the backend")
	assert.Equal(t, int64(1), be.attempts.Load())
}

func TestWebSocketRelayRoutesLikeHTTP(t *testing.T) {
	wsNoLeaks(t)
	a := startWSBackend(t, false, nil)
	b := startWSBackend(t, false, nil)
	gw := startWSGateway(t, "", wsGatewayOpts{config: fmt.Sprintf(
		"defaultBackend: %q\nmappings:\n  - frontendHost: 127.0.0.1\n    pathPrefix: /v2\n    backend: %q\n    forwardAccessToken: true\n    preserveHost: true\n",
		a.URL, b.URL)})

	roundTrip(t, mustDial(t, gw.URL+"/v2/feed", nil), websocket.TextMessage, []byte("to b"))
	r := b.lastRequest(t)
	assert.Equal(t, "/v2/feed", r.RequestURI)
	assert.Equal(t, "Bearer "+wsTestUser.AccessToken, r.Header.Get("Authorization"))
	assert.Equal(t, strings.TrimPrefix(strings.TrimSuffix(gw.URL, "/api"), "ws://"), r.Host, "preserveHost keeps the client's Host")

	roundTrip(t, mustDial(t, gw.URL+"/v2x", nil), websocket.TextMessage, []byte("to a"))
	assert.Equal(t, "/v2x", a.lastRequest(t).RequestURI)
	assert.Empty(t, a.lastRequest(t).Header.Get("Authorization"))

	// Dot segments are refused before any backend sees them.
	_, resp, err := wsDial(t, gw.URL+"/v2/%2e%2e/admin", nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode) // ErrBadPath; edge maps it to 400
	assert.Equal(t, int64(1), a.attempts.Load())
	assert.Equal(t, int64(1), b.attempts.Load())
}

func TestWebSocketSubprotocol(t *testing.T) {
	wsNoLeaks(t)
	be := startWSBackend(t, false, func(b *wsTestBackend) { b.upgrader.Subprotocols = []string{"v2.chat"} })
	gw := startWSGateway(t, be.URL, wsGatewayOpts{})

	t.Run("the backend's choice reaches the client", func(t *testing.T) {
		c := mustDial(t, gw.URL+"/s", nil, "v1.chat", "v2.chat")
		assert.Equal(t, "v2.chat", c.Subprotocol())
		assert.Equal(t, []string{"v1.chat, v2.chat"}, be.lastRequest(t).Header.Values("Sec-Websocket-Protocol"))
		roundTrip(t, c, websocket.TextMessage, []byte("x"))
	})
	t.Run("offered on several header lines", func(t *testing.T) {
		// This backend picks from the last line the client sent.
		last := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			lines := r.Header.Values("Sec-Websocket-Protocol")
			pick := strings.TrimSpace(lines[len(lines)-1])
			c, err := (&websocket.Upgrader{}).Upgrade(w, r, http.Header{"Sec-Websocket-Protocol": {pick}})
			if err == nil {
				_ = c.Close()
			}
		}))
		t.Cleanup(last.Close)
		gw := startWSGateway(t, last.URL, wsGatewayOpts{})
		c := mustDial(t, gw.URL+"/s", http.Header{"Sec-Websocket-Protocol": {"v1.chat", "v2.chat"}})
		assert.Equal(t, "v2.chat", c.Subprotocol())
	})
	t.Run("none in common", func(t *testing.T) {
		c := mustDial(t, gw.URL+"/s", nil, "v3.chat")
		assert.Empty(t, c.Subprotocol())
	})
	t.Run("none asked", func(t *testing.T) {
		c := mustDial(t, gw.URL+"/s", nil)
		assert.Empty(t, c.Subprotocol())
		assert.Empty(t, be.lastRequest(t).Header.Values("Sec-Websocket-Protocol"))
	})

	t.Run("a protocol the client did not offer is refused", func(t *testing.T) {
		rogue := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Answers 101 with a protocol of its own choosing.
			u := websocket.Upgrader{Subprotocols: []string{"rogue"}}
			r.Header.Set("Sec-Websocket-Protocol", "rogue")
			c, err := u.Upgrade(w, r, nil)
			if err == nil {
				_ = c.Close()
			}
		}))
		t.Cleanup(rogue.Close)
		gw := startWSGateway(t, rogue.URL, wsGatewayOpts{})
		_, resp, err := wsDial(t, gw.URL+"/s", nil, "v1.chat")
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
		assert.Equal(t, 0, gw.ws.Open())
	})
}

func TestWebSocketMessageLimit(t *testing.T) {
	wsNoLeaks(t)
	const limit = 64 << 10
	cfg := WebSocketConfig{MaxMessageBytes: limit}

	t.Run("client to backend", func(t *testing.T) {
		be := startWSBackend(t, false, nil)
		gw := startWSGateway(t, be.URL, wsGatewayOpts{cfg: cfg})
		c := mustDial(t, gw.URL, nil)
		roundTrip(t, c, websocket.BinaryMessage, bytes.Repeat([]byte{1}, limit))
		// A fragmented message counts as a whole.
		w, err := c.NextWriter(websocket.TextMessage)
		require.NoError(t, err)
		for range 4 {
			_, err = w.Write(bytes.Repeat([]byte("a"), limit/4))
			require.NoError(t, err)
		}
		require.NoError(t, w.Close())
		_, got, err := c.ReadMessage()
		require.NoError(t, err)
		assert.Len(t, got, limit)

		require.NoError(t, c.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{1}, limit+1)))
		ce := readClose(t, c, 5*time.Second)
		assert.Equal(t, websocket.CloseMessageTooBig, ce.Code)
		ce = be.nextClose(t)
		assert.Equal(t, websocket.CloseMessageTooBig, ce.Code)
		assert.Equal(t, "message too big", ce.Text)
	})

	t.Run("backend to client", func(t *testing.T) {
		be := startWSBackend(t, false, func(b *wsTestBackend) {
			b.handle = func(c *websocket.Conn) {
				_ = c.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{2}, limit))
				_ = c.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{2}, limit+1))
				b.echo(c)
			}
		})
		gw := startWSGateway(t, be.URL, wsGatewayOpts{cfg: cfg})
		c := mustDial(t, gw.URL, nil)
		_, got, err := c.ReadMessage()
		require.NoError(t, err)
		assert.Len(t, got, limit)
		ce := readClose(t, c, 5*time.Second)
		assert.Equal(t, websocket.CloseMessageTooBig, ce.Code)
		assert.Equal(t, "message too big", ce.Text)
		assert.Equal(t, websocket.CloseMessageTooBig, be.nextClose(t).Code)
	})
}

func TestWebSocketCloseCodesPassBothWays(t *testing.T) {
	wsNoLeaks(t)
	t.Run("client closes", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			msg    []byte
			code   int
			reason string
		}{
			{"custom code and reason", websocket.FormatCloseMessage(4001, "bye now"), 4001, "bye now"},
			{"normal", websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), websocket.CloseNormalClosure, ""},
			{"no status", []byte{}, websocket.CloseNoStatusReceived, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				be := startWSBackend(t, false, nil)
				gw := startWSGateway(t, be.URL, wsGatewayOpts{})
				c := mustDial(t, gw.URL, nil)
				roundTrip(t, c, websocket.TextMessage, []byte("x"))
				require.NoError(t, c.WriteControl(websocket.CloseMessage, tc.msg, time.Now().Add(time.Second)))
				ce := be.nextClose(t)
				assert.Equal(t, tc.code, ce.Code)
				assert.Equal(t, tc.reason, ce.Text)
				// The backend's answer (its library echoes the code) comes back.
				reply := readClose(t, c, 5*time.Second)
				assert.Equal(t, tc.code, reply.Code)
				require.Eventually(t, func() bool { return gw.ws.Open() == 0 }, 5*time.Second, 5*time.Millisecond)
			})
		}
	})
	t.Run("backend closes", func(t *testing.T) {
		replied := make(chan *websocket.CloseError, 1)
		be := startWSBackend(t, false, func(b *wsTestBackend) {
			b.handle = func(c *websocket.Conn) {
				_ = c.WriteMessage(websocket.TextMessage, []byte("last words"))
				_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4002, "server bye"), time.Now().Add(time.Second))
				_, _, err := c.ReadMessage()
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					replied <- ce
				}
			}
		})
		gw := startWSGateway(t, be.URL, wsGatewayOpts{})
		c := mustDial(t, gw.URL, nil)
		_, msg, err := c.ReadMessage()
		require.NoError(t, err)
		assert.Equal(t, "last words", string(msg))
		ce := readClose(t, c, 5*time.Second)
		assert.Equal(t, 4002, ce.Code)
		assert.Equal(t, "server bye", ce.Text)
		select {
		case ce := <-replied:
			assert.Equal(t, 4002, ce.Code, "the client's answer reaches the backend")
		case <-time.After(5 * time.Second):
			t.Fatal("the backend got no answer to its close")
		}
		require.Eventually(t, func() bool { return gw.ws.Open() == 0 }, 5*time.Second, 5*time.Millisecond)
	})
}

func TestWebSocketPingPongPassBothWays(t *testing.T) {
	wsNoLeaks(t)
	backendPings := make(chan string, 1)
	backendPongs := make(chan string, 1)
	be := startWSBackend(t, false, func(b *wsTestBackend) {
		b.handle = func(c *websocket.Conn) {
			c.SetPingHandler(func(data string) error {
				backendPings <- data
				return c.WriteControl(websocket.PongMessage, []byte("pong:"+data), time.Now().Add(time.Second))
			})
			c.SetPongHandler(func(data string) error { backendPongs <- data; return nil })
			_ = c.WriteControl(websocket.PingMessage, []byte("from backend"), time.Now().Add(time.Second))
			b.echo(c)
		}
	})
	gw := startWSGateway(t, be.URL, wsGatewayOpts{})
	c := mustDial(t, gw.URL, nil)
	clientPings := make(chan string, 1)
	clientPongs := make(chan string, 1)
	c.SetPingHandler(func(data string) error {
		clientPings <- data
		return c.WriteControl(websocket.PongMessage, []byte("pong:"+data), time.Now().Add(time.Second))
	})
	c.SetPongHandler(func(data string) error { clientPongs <- data; return nil })
	require.NoError(t, c.WriteControl(websocket.PingMessage, []byte("from client"), time.Now().Add(time.Second)))
	// The client's read loop runs the handlers.
	roundTrip(t, c, websocket.TextMessage, []byte("x"))
	recv := func(ch chan string) string {
		select {
		case v := <-ch:
			return v
		case <-time.After(5 * time.Second):
			t.Fatal("control frame not relayed")
			return ""
		}
	}
	assert.Equal(t, "from backend", recv(clientPings))
	assert.Equal(t, "from client", recv(backendPings))
	roundTrip(t, c, websocket.TextMessage, []byte("y"))
	assert.Equal(t, "pong:from client", recv(clientPongs))
	assert.Equal(t, "pong:from backend", recv(backendPongs))
}

func TestWebSocketBackendUnavailable(t *testing.T) {
	wsNoLeaks(t)
	t.Run("down", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		gw := startWSGateway(t, "http://"+addr, wsGatewayOpts{})
		for range 3 {
			_, resp, err := wsDial(t, gw.URL+"/x", nil)
			require.Error(t, err)
			require.NotNil(t, resp)
			assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
		}
		assert.Equal(t, 0, gw.ws.Open())
	})
	t.Run("refuses with its own status", func(t *testing.T) {
		be := startWSBackend(t, false, func(b *wsTestBackend) {
			b.upgrader.CheckOrigin = func(*http.Request) bool { return false }
			b.upgrader.Error = func(w http.ResponseWriter, _ *http.Request, status int, _ error) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = w.Write([]byte(`{"error":"origin"}`))
			}
		})
		gw := startWSGateway(t, be.URL, wsGatewayOpts{})
		_, resp, err := wsDial(t, gw.URL+"/x", http.Header{"Origin": {"http://elsewhere.test"}})
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		assert.Equal(t, 0, gw.ws.Open())
	})
	t.Run("answers plain HTTP", func(t *testing.T) {
		plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hi")) }))
		t.Cleanup(plain.Close)
		gw := startWSGateway(t, plain.URL, wsGatewayOpts{})
		_, resp, err := wsDial(t, gw.URL+"/x", nil)
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	})
	t.Run("never answers", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c
			}
		}()
		t.Cleanup(func() {
			_ = ln.Close()
			select {
			case c := <-accepted:
				_ = c.Close()
			default:
			}
		})
		gw := startWSGateway(t, "http://"+ln.Addr().String(), wsGatewayOpts{cfg: WebSocketConfig{HandshakeTimeout: 300 * time.Millisecond}})
		start := time.Now()
		_, resp, err := wsDial(t, gw.URL+"/x", nil)
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode) // a timeout: edge answers 504
		assert.Less(t, time.Since(start), 3*time.Second)
	})
	t.Run("not a handshake", func(t *testing.T) {
		be := startWSBackend(t, false, nil)
		gw := startWSGateway(t, be.URL, wsGatewayOpts{})
		addr := strings.TrimSuffix(strings.TrimPrefix(gw.URL, "ws://"), "/api")
		for _, req := range []string{
			"GET /api/x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
			"GET /api/x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
			"POST /api/x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 0\r\n\r\n",
		} {
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			_, err = c.Write([]byte(req))
			require.NoError(t, err)
			require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			_ = c.Close()
			assert.True(t, strings.HasPrefix(string(buf[:n]), "HTTP/1.1 400"), "%q", buf[:n])
		}
		assert.Equal(t, int64(0), be.attempts.Load())
	})
}

func TestWebSocketTLSBackend(t *testing.T) {
	wsNoLeaks(t)
	be := startWSBackend(t, true, nil)
	roots := x509.NewCertPool()
	roots.AddCert(be.srv.Certificate())
	gw := startWSGateway(t, be.URL, wsGatewayOpts{pool: PoolConfig{TLSConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}})
	c := mustDial(t, gw.URL+"/secure", nil)
	roundTrip(t, c, websocket.TextMessage, []byte("over wss"))
	assert.NotNil(t, be.lastRequest(t).TLS, "the backend was reached over TLS")

	t.Run("an untrusted certificate is refused", func(t *testing.T) {
		gw := startWSGateway(t, be.URL, wsGatewayOpts{})
		_, resp, err := wsDial(t, gw.URL+"/secure", nil)
		require.Error(t, err)
		require.NotNil(t, resp)
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	})
}

func TestWebSocketSessionEnd(t *testing.T) {
	wsNoLeaks(t)
	t.Run("gone", func(t *testing.T) {
		be := startWSBackend(t, false, nil)
		gone := make(chan struct{})
		var stops atomic.Int32
		gw := startWSGateway(t, be.URL, wsGatewayOpts{session: func() SessionEnd {
			return SessionEnd{Gone: gone, Stop: func() { stops.Add(1) }}
		}})
		c := mustDial(t, gw.URL, nil)
		roundTrip(t, c, websocket.TextMessage, []byte("x"))
		close(gone)
		ended := time.Now()
		ce := readClose(t, c, time.Second)
		assert.Less(t, time.Since(ended), time.Second)
		assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
		assert.Equal(t, "session ended", ce.Text)
		assert.Equal(t, websocket.ClosePolicyViolation, be.nextClose(t).Code)
		require.Eventually(t, func() bool { return gw.ws.Open() == 0 && stops.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	})
	t.Run("absolute expiry", func(t *testing.T) {
		be := startWSBackend(t, false, nil)
		gw := startWSGateway(t, be.URL, wsGatewayOpts{session: func() SessionEnd {
			return SessionEnd{Deadline: time.Now().Add(200 * time.Millisecond)}
		}})
		c := mustDial(t, gw.URL, nil)
		ce := readClose(t, c, 2*time.Second)
		assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
		assert.Equal(t, "session expired", ce.Text)
	})
	t.Run("stop is called when the upgrade fails", func(t *testing.T) {
		var stops atomic.Int32
		gw := startWSGateway(t, "http://127.0.0.1:1", wsGatewayOpts{session: func() SessionEnd {
			return SessionEnd{Stop: func() { stops.Add(1) }}
		}})
		_, _, err := wsDial(t, gw.URL, nil)
		require.Error(t, err)
		assert.Equal(t, int32(1), stops.Load())
	})
}

func TestWebSocketIdleTimeout(t *testing.T) {
	wsNoLeaks(t)
	be := startWSBackend(t, false, nil)
	gw := startWSGateway(t, be.URL, wsGatewayOpts{cfg: WebSocketConfig{IdleTimeout: 400 * time.Millisecond}})

	t.Run("pings keep a socket open", func(t *testing.T) {
		c := mustDial(t, gw.URL, nil)
		pongs := make(chan struct{}, 100)
		c.SetPongHandler(func(string) error { pongs <- struct{}{}; return nil })
		stop := make(chan struct{})
		readerDone := make(chan error, 1)
		go func() {
			_, _, err := c.ReadMessage()
			readerDone <- err
		}()
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		deadline := time.After(1200 * time.Millisecond)
	loop:
		for {
			select {
			case <-ticker.C:
				require.NoError(t, c.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)))
			case err := <-readerDone:
				t.Fatalf("socket closed while pinged: %v", err)
			case <-deadline:
				break loop
			}
		}
		close(stop)
		assert.NotEmpty(t, pongs, "the backend's pongs come back")
		// Silent now: closed within the idle timeout (plus the refresh step).
		start := time.Now()
		select {
		case err := <-readerDone:
			var ce *websocket.CloseError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, websocket.CloseGoingAway, ce.Code)
			assert.Equal(t, "idle timeout", ce.Text)
			assert.Less(t, time.Since(start), time.Second)
		case <-time.After(3 * time.Second):
			t.Fatal("idle socket not closed")
		}
		assert.Equal(t, websocket.CloseGoingAway, be.nextClose(t).Code)
	})
	t.Run("one-way traffic counts", func(t *testing.T) {
		// The backend streams; the client never sends: not idle.
		stream := startWSBackend(t, false, func(b *wsTestBackend) {
			b.handle = func(c *websocket.Conn) {
				for i := 0; i < 12; i++ {
					if c.WriteMessage(websocket.TextMessage, []byte("tick")) != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				b.echo(c)
			}
		})
		gw := startWSGateway(t, stream.URL, wsGatewayOpts{cfg: WebSocketConfig{IdleTimeout: 400 * time.Millisecond}})
		c := mustDial(t, gw.URL, nil)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		for i := 0; i < 12; i++ {
			_, msg, err := c.ReadMessage()
			require.NoError(t, err, "tick %d", i)
			assert.Equal(t, "tick", string(msg))
		}
	})
}

func TestWebSocketBackpressure(t *testing.T) {
	wsNoLeaks(t)
	// The backend reads nothing: the relay must stop reading from the
	// client rather than queue, so the client's writes block.
	release := make(chan struct{})
	be := startWSBackend(t, false, func(b *wsTestBackend) {
		b.handle = func(*websocket.Conn) { <-release }
	})
	t.Cleanup(func() { close(release) })
	gw := startWSGateway(t, be.URL, wsGatewayOpts{cfg: WebSocketConfig{WriteTimeout: 2 * time.Second}})
	c := mustDial(t, gw.URL, nil)
	msg := bytes.Repeat([]byte{9}, 32<<10)
	written := 0
	var err error
	for written < 256<<20 {
		_ = c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		if err = c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			break
		}
		written += len(msg)
	}
	require.Error(t, err, "256 MiB written to a backend that reads nothing")
	t.Logf("client blocked after %d KiB (socket buffers on the way)", written>>10)
	assert.Less(t, written, 64<<20)
	// The stuck write to the backend times out, and the socket goes.
	require.Eventually(t, func() bool { return gw.ws.Open() == 0 }, 10*time.Second, 10*time.Millisecond)
}

func TestWebSocketShutdown(t *testing.T) {
	wsNoLeaks(t)
	be := startWSBackend(t, false, nil)
	gw := startWSGateway(t, be.URL, wsGatewayOpts{})
	clients := make([]*websocket.Conn, 5)
	for i := range clients {
		clients[i] = mustDial(t, gw.URL, nil)
		roundTrip(t, clients[i], websocket.TextMessage, []byte("x"))
	}
	require.Equal(t, 5, gw.ws.Open())

	// The clients answer the close frames in their read loops.
	codes := make(chan int, len(clients))
	for _, c := range clients {
		go func() {
			var ce *websocket.CloseError
			_, _, err := c.ReadMessage()
			if errors.As(err, &ce) {
				codes <- ce.Code
			} else {
				codes <- 0
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, gw.ws.Shutdown(ctx))
	assert.Less(t, time.Since(start), 2*time.Second, "answered closes end the wait at once")
	for range clients {
		assert.Equal(t, websocket.CloseGoingAway, <-codes)
		assert.Equal(t, websocket.CloseGoingAway, be.nextClose(t).Code)
	}
	assert.Equal(t, 0, gw.ws.Open())

	_, resp, err := wsDial(t, gw.URL, nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

func TestWebSocketShutdownClosesSilentPeers(t *testing.T) {
	wsNoLeaks(t)
	// Neither side answers the close frame (nobody reads): shutdown closes
	// the connections after CloseTimeout and does not wait longer.
	release := make(chan struct{})
	be := startWSBackend(t, false, func(b *wsTestBackend) { b.handle = func(*websocket.Conn) { <-release } })
	t.Cleanup(func() { close(release) })
	gw := startWSGateway(t, be.URL, wsGatewayOpts{cfg: WebSocketConfig{CloseTimeout: 300 * time.Millisecond}})
	mustDial(t, gw.URL, nil)
	require.Equal(t, 1, gw.ws.Open())
	start := time.Now()
	require.NoError(t, gw.ws.Shutdown(context.Background()))
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Equal(t, 0, gw.ws.Open())
}

func TestWebSocketConfigValidate(t *testing.T) {
	assert.NoError(t, WebSocketConfig{}.Validate())
	err := WebSocketConfig{MaxMessageBytes: -1, IdleTimeout: -time.Second}.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "maxMessageBytes")
	assert.Contains(t, err.Error(), "idleTimeout")
	d := WebSocketConfig{}.withDefaults()
	assert.Equal(t, int64(1<<20), d.MaxMessageBytes)
	assert.Equal(t, 60*time.Second, d.IdleTimeout)
}

func TestTokenListHas(t *testing.T) {
	for _, tc := range []struct {
		list, token string
		want        bool
	}{
		{"v1, v2", "v2", true},
		{"v1,v2", "v1", true},
		{" v1 ", "v1", true},
		{"V1", "v1", false},
		{"v10", "v1", false},
		{"", "v1", false},
	} {
		assert.Equal(t, tc.want, tokenListHas([]byte(tc.list), tc.token), "%q has %q", tc.list, tc.token)
	}
}

func TestWebSocketAbruptEndsAreMirrored(t *testing.T) {
	wsNoLeaks(t)
	t.Run("backend vanishes", func(t *testing.T) {
		be := startWSBackend(t, false, func(b *wsTestBackend) {
			b.handle = func(c *websocket.Conn) {
				_, _, _ = c.ReadMessage()
				_ = c.NetConn().Close() // no close frame
			}
		})
		gw := startWSGateway(t, be.URL, wsGatewayOpts{})
		c := mustDial(t, gw.URL, nil)
		require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte("bye")))
		ce := readClose(t, c, 5*time.Second)
		assert.Equal(t, websocket.CloseAbnormalClosure, ce.Code, "the client sees what it would see without the gateway")
		require.Eventually(t, func() bool { return gw.ws.Open() == 0 }, 5*time.Second, 5*time.Millisecond)
	})
	t.Run("client vanishes", func(t *testing.T) {
		ended := make(chan error, 1)
		be := startWSBackend(t, false, func(b *wsTestBackend) {
			b.handle = func(c *websocket.Conn) {
				_, _, err := c.ReadMessage()
				ended <- err
			}
		})
		gw := startWSGateway(t, be.URL, wsGatewayOpts{})
		c := mustDial(t, gw.URL, nil)
		require.NoError(t, c.NetConn().Close())
		select {
		case err := <-ended:
			var ce *websocket.CloseError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, websocket.CloseAbnormalClosure, ce.Code)
		case <-time.After(5 * time.Second):
			t.Fatal("the backend's connection outlived the client's")
		}
		require.Eventually(t, func() bool { return gw.ws.Open() == 0 }, 5*time.Second, 5*time.Millisecond)
	})
	t.Run("client vanishes before the upgrade completes", func(t *testing.T) {
		// The backend is slow to accept; meanwhile the client resets its
		// connection, so the 101 cannot be written and fasthttp never hands
		// the connection over: the dialled backend must not wait forever.
		ended := make(chan struct{}, 1)
		be := startWSBackend(t, false, func(b *wsTestBackend) {
			b.delay = 200 * time.Millisecond
			b.handle = func(c *websocket.Conn) {
				_, _, _ = c.ReadMessage()
				ended <- struct{}{}
			}
		})
		gw := startWSGateway(t, be.URL, wsGatewayOpts{cfg: WebSocketConfig{HandshakeTimeout: 500 * time.Millisecond}})
		conn, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(gw.URL, "ws://"), "/api"))
		require.NoError(t, err)
		_, err = conn.Write([]byte("GET /api/x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"))
		require.NoError(t, err)
		require.NoError(t, conn.(*net.TCPConn).SetLinger(0))
		require.NoError(t, conn.Close())
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatal("the backend's connection outlived the client's")
		}
		require.Eventually(t, func() bool { return gw.ws.Open() == 0 }, 5*time.Second, 5*time.Millisecond)
	})
}
