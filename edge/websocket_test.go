package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apigetaway/getaway/upstream"
	"github.com/apigetaway/getaway/upstream/wsecho"
	"github.com/fasthttp/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// WebSockets through the whole gateway (issue 5): a real client, the edge
// server with its middleware, and a real WebSocket backend, on loopback.
// The relay itself is tested in upstream; sign-in in authflow.

func withWebSocket(cfg upstream.WebSocketConfig) gatewayOption {
	return func(o *gatewayOpts) { o.deps.WebSocket = cfg }
}

// wsURL turns the gateway's http:// URL into ws://.
func (g *gateway) wsURL(path string) string { return "ws://" + g.Addr + path }

// dialWS opens a socket; on a refused handshake it returns the status and
// the body of the gateway's answer.
func dialWS(t testing.TB, url string, h http.Header) (*websocket.Conn, int, string) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, EnableCompression: true}
	c, resp, err := d.Dial(url, h)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
		return c, resp.StatusCode, ""
	}
	require.NotNil(t, resp, "dial %s: %v", url, err)
	body, _ := io.ReadAll(resp.Body)
	return nil, resp.StatusCode, string(body)
}

func echo(t testing.TB, c *websocket.Conn, msg string) {
	t.Helper()
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(msg)))
	_, got, err := c.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}

func TestWebSocketThroughGateway(t *testing.T) {
	be := wsecho.Start(t)
	gw := startGateway(t, defaultBackendYAML(be.URL))
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, EnableCompression: true}
	c, resp, err := d.Dial(gw.wsURL("/api/live?x=1"), http.Header{
		"X-User-Email": {"mallory@evil.test"},
		"Cookie":       {"sid=secret; theme=dark"},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	echo(t, c, "hello")

	assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get(HeaderRequestID), "the 101 carries the request id")
	assert.Empty(t, resp.Header.Get("Sec-Websocket-Extensions"), "compression is not negotiated")
	assert.Equal(t, testUser.Email, be.Header("X-User-Email"))
	assert.Equal(t, testUser.Sub, be.Header("X-User-Sub"))
	assert.Equal(t, "theme=dark", be.Header("Cookie"))
	assert.Equal(t, resp.Header.Get(HeaderRequestID), be.Header(HeaderRequestID))
	assert.Equal(t, 1, gw.Server.ws.Open())
}

func TestWebSocketOnlyUnderAPI(t *testing.T) {
	be := wsecho.Start(t)
	gw := startGateway(t, defaultBackendYAML(be.URL))
	for _, path := range []string{"/ws", "/apix", "/healthz", "/auth/login"} {
		c, status, _ := dialWS(t, gw.wsURL(path), nil)
		assert.Nil(t, c, path)
		assert.NotEqual(t, http.StatusSwitchingProtocols, status, path)
	}
	assert.Zero(t, be.Attempts.Load(), "only /api/* upgrades are proxied")
}

func TestWebSocketRefusedBeforeTheBackend(t *testing.T) {
	const allowed = "http://app.test:5173"
	tests := []struct {
		name       string
		auth       Authenticator
		header     http.Header
		wantStatus int
		wantBody   string
	}{
		{"no session", DenyAll, nil, http.StatusUnauthorized, `{"error":"Unauthorized"}`},
		{"no session, allowed origin", DenyAll, http.Header{"Origin": {allowed}}, http.StatusUnauthorized, `{"error":"Unauthorized"}`},
		{"foreign origin", allowAll, http.Header{"Origin": {"https://evil.test"}}, http.StatusForbidden, `{"error":"Forbidden"}`},
		{"origin of another port", allowAll, http.Header{"Origin": {"http://app.test:5174"}}, http.StatusForbidden, `{"error":"Forbidden"}`},
		{"cross-site without origin", allowAll, http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden, `{"error":"Forbidden"}`},
		{"allowed origin", allowAll, http.Header{"Origin": {allowed}}, http.StatusSwitchingProtocols, ""},
		{"no origin (not a browser)", allowAll, nil, http.StatusSwitchingProtocols, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := wsecho.Start(t)
			gw := startGateway(t, defaultBackendYAML(be.URL), withAuth(tc.auth),
				withConfig(func(c *Config) { c.AllowedOrigins = []string{allowed} }))
			c, status, body := dialWS(t, gw.wsURL("/api/live"), tc.header)
			require.Equal(t, tc.wantStatus, status, body)
			if tc.wantStatus != http.StatusSwitchingProtocols {
				assert.JSONEq(t, tc.wantBody, body)
				assert.Zero(t, be.Attempts.Load(), "the backend saw a refused upgrade")
				return
			}
			echo(t, c, "ok")
			assert.Equal(t, int64(1), be.Attempts.Load())
		})
	}
	t.Run("origin of the gateway itself", func(t *testing.T) {
		be := wsecho.Start(t)
		gw := startGateway(t, defaultBackendYAML(be.URL))
		c, status, body := dialWS(t, gw.wsURL("/api/live"), http.Header{"Origin": {gw.URL}})
		require.Equal(t, http.StatusSwitchingProtocols, status, body)
		echo(t, c, "ok")
	})
}

func TestWebSocketBackendFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	live := wsecho.Start(t)

	gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\nmappings:\n  - frontendHost: live.test\n    backend: %q\n", dead, live.URL))
	for range 3 {
		c, status, body := dialWS(t, gw.wsURL("/api/live"), nil)
		require.Nil(t, c)
		assert.Equal(t, http.StatusBadGateway, status)
		assert.JSONEq(t, `{"error":"bad_gateway"}`, body)
	}
	// The gateway stays up: health, HTTP and other backends' sockets work.
	resp, _ := do(t, http.MethodGet, gw.URL+"/healthz", nil, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	c, status, body := dialWS(t, gw.wsURL("/api/live"), http.Header{"Host": {"live.test"}})
	require.Equal(t, http.StatusSwitchingProtocols, status, body)
	echo(t, c, "still here")
	assert.Equal(t, 1, gw.Server.ws.Open())

	t.Run("timeout", func(t *testing.T) {
		silent, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		var conns []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				c, err := silent.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			_ = silent.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				_ = c.Close()
			}
		})
		gw := startGateway(t, defaultBackendYAML("http://"+silent.Addr().String()),
			withWebSocket(upstream.WebSocketConfig{HandshakeTimeout: 200 * time.Millisecond}))
		_, status, body := dialWS(t, gw.wsURL("/api/live"), nil)
		assert.Equal(t, http.StatusGatewayTimeout, status)
		assert.JSONEq(t, `{"error":"gateway_timeout"}`, body)
	})
	t.Run("refusal passes with the backend's status", func(t *testing.T) {
		refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":"room closed"}`))
		}))
		t.Cleanup(refusing.Close)
		gw := startGateway(t, defaultBackendYAML(refusing.URL))
		_, status, body := dialWS(t, gw.wsURL("/api/live"), nil)
		assert.Equal(t, http.StatusForbidden, status)
		assert.JSONEq(t, `{"error":"room closed"}`, body)
	})
	t.Run("bad path", func(t *testing.T) {
		_, status, body := dialWS(t, gw.wsURL("/api/a/%2e%2e/b"), http.Header{"Host": {"live.test"}})
		assert.Equal(t, http.StatusBadRequest, status)
		assert.JSONEq(t, `{"error":"bad_request"}`, body)
	})
}

func TestWebSocketGracefulShutdown(t *testing.T) {
	be := wsecho.Start(t)
	gw := startGateway(t, defaultBackendYAML(be.URL))
	const n = 3
	codes := make(chan int, n)
	for range n {
		c, status, body := dialWS(t, gw.wsURL("/api/live"), nil)
		require.Equal(t, http.StatusSwitchingProtocols, status, body)
		echo(t, c, "x")
		require.NoError(t, c.SetReadDeadline(time.Time{}))
		go func() {
			_, _, err := c.ReadMessage() // answers the close frame
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				codes <- ce.Code
				return
			}
			codes <- 0
		}()
	}
	start := time.Now()
	require.NoError(t, gw.Server.Shutdown(context.Background()))
	assert.Less(t, time.Since(start), 3*time.Second)
	for range n {
		assert.Equal(t, websocket.CloseGoingAway, <-codes)
		assert.Equal(t, websocket.CloseGoingAway, be.NextClose(t).Code)
	}
	assert.Zero(t, gw.Server.ws.Open())
	_, err := net.DialTimeout("tcp", gw.Addr, time.Second)
	assert.Error(t, err, "the listener is closed")
}

// TestWebSocketThousandSockets holds 1,000 sockets open through one gateway
// at once, exchanges messages on all of them, closes them, and requires the
// goroutine count back to where it was before.
func TestWebSocketThousandSockets(t *testing.T) {
	const sockets, messages = 1000, 5
	be := wsecho.Start(t)
	gw := startLoadGateway(t, defaultBackendYAML(be.URL))

	// One socket first, so that the servers' own goroutines (accept loops,
	// worker pool cleaner, fasthttp's date ticker) are in the baseline.
	warm, status, body := dialWS(t, gw.wsURL("/api/warm-up"), nil)
	require.Equal(t, http.StatusSwitchingProtocols, status, body)
	echo(t, warm, "warm-up")
	require.NoError(t, warm.Close())
	require.Eventually(t, func() bool { return gw.Server.ws.Open() == 0 }, 5*time.Second, 5*time.Millisecond)

	baseline := runtime.NumGoroutine()
	conns := make([]*websocket.Conn, sockets)
	d := websocket.Dialer{HandshakeTimeout: 20 * time.Second}
	var g errgroup.Group
	g.SetLimit(64) // connections open at this pace; all stay open
	for i := range conns {
		g.Go(func() error {
			c, _, err := d.Dial(gw.wsURL(fmt.Sprintf("/api/socket/%d", i)), nil)
			conns[i] = c
			return err
		})
	}
	require.NoError(t, g.Wait())
	require.Equal(t, sockets, gw.Server.ws.Open())
	peak := runtime.NumGoroutine()

	var ex errgroup.Group
	for i, c := range conns {
		ex.Go(func() error {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			for m := range messages {
				want := fmt.Sprintf("socket %d message %d", i, m)
				if err := c.WriteMessage(websocket.TextMessage, []byte(want)); err != nil {
					return err
				}
				_, got, err := c.ReadMessage()
				if err != nil {
					return err
				}
				if string(got) != want {
					return fmt.Errorf("socket %d: got %q, want %q", i, got, want)
				}
			}
			// A clean close: the backend's answer comes back, then the
			// client closes its end.
			err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
			if err != nil {
				return err
			}
			_, _, err = c.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
				return fmt.Errorf("socket %d: close answer %v", i, err)
			}
			return c.Close()
		})
	}
	require.NoError(t, ex.Wait())

	require.Eventually(t, func() bool { return gw.Server.ws.Open() == 0 }, 10*time.Second, 10*time.Millisecond)
	var now int
	ok := assert.Eventually(t, func() bool {
		now = runtime.NumGoroutine()
		return now <= baseline
	}, 15*time.Second, 20*time.Millisecond)
	t.Logf("goroutines: %d before, %d with %d sockets open, %d after", baseline, peak, sockets, now)
	if !ok {
		buf := make([]byte, 1<<20)
		t.Logf("goroutines left:\n%s", buf[:runtime.Stack(buf, true)])
	}
}

// startLoadGateway is startGateway with the fasthttp server's idle workers
// let go after 100ms (instead of 10s), so that a goroutine count taken
// after a burst of connections settles within the test.
func startLoadGateway(t testing.TB, configYAML string) *gateway {
	t.Helper()
	f, err := upstream.ParseFile("config.yml", []byte(configYAML))
	require.NoError(t, err)
	p, err := upstream.NewProxy(upstream.ProxyConfig{}, f, zap.NewNop())
	require.NoError(t, err)
	s, err := New(Config{}, Deps{Proxy: p, Auth: allowAll})
	require.NoError(t, err)
	s.srv.MaxIdleWorkerDuration = 100 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Shutdown(context.Background())
		<-done
	})
	return &gateway{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(), Server: s, Proxy: p}
}

// BenchmarkWebSocketRoundTrip measures one message out and its echo back,
// directly to the backend and through the gateway (authentication stubbed,
// every middleware on), side by side, for a small and a larger message.
func BenchmarkWebSocketRoundTrip(b *testing.B) {
	be := wsecho.Start(b)
	gw := startGateway(b, defaultBackendYAML(be.URL))
	targets := []struct{ name, url string }{
		{"direct", "ws" + strings.TrimPrefix(be.URL, "http") + "/live"},
		{"gateway", gw.wsURL("/api/live")},
	}
	for _, size := range []int{64, 16 << 10} {
		msg := bytes.Repeat([]byte{'m'}, size)
		for _, tg := range targets {
			b.Run(fmt.Sprintf("%s/%dB", tg.name, size), func(b *testing.B) {
				c, _, err := websocket.DefaultDialer.Dial(tg.url, nil)
				require.NoError(b, err)
				defer c.Close()
				b.SetBytes(int64(2 * size))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
						b.Fatal(err)
					}
					if _, _, err := c.ReadMessage(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestLoadSettingsWebSocket(t *testing.T) {
	s, err := LoadSettings(fakeEnv(nil))
	require.NoError(t, err)
	assert.Equal(t, int64(1<<20), s.WebSocket.MaxMessageBytes)
	assert.Equal(t, 60*time.Second, s.WebSocket.IdleTimeout)

	s, err = LoadSettings(fakeEnv(map[string]string{"WS_MAX_MESSAGE_BYTES": "65536", "WS_IDLE_TIMEOUT_SECONDS": "2.5"}))
	require.NoError(t, err)
	assert.Equal(t, int64(65536), s.WebSocket.MaxMessageBytes)
	assert.Equal(t, 2500*time.Millisecond, s.WebSocket.IdleTimeout)

	for _, kv := range [][2]string{
		{"WS_MAX_MESSAGE_BYTES", "0"}, {"WS_MAX_MESSAGE_BYTES", "-1"}, {"WS_MAX_MESSAGE_BYTES", "1MB"},
		{"WS_IDLE_TIMEOUT_SECONDS", "0"}, {"WS_IDLE_TIMEOUT_SECONDS", "NaN"},
	} {
		_, err := LoadSettings(fakeEnv(map[string]string{kv[0]: kv[1]}))
		require.Error(t, err, "%s=%s", kv[0], kv[1])
		assert.Contains(t, err.Error(), kv[0])
	}
}
