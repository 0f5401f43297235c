package edge

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// Connection limits and slow clients, on real loopback connections.

// keepAliveConn is a raw client connection that sends requests one at a
// time and reads their answers with net/http's parser.
type keepAliveConn struct {
	net.Conn
	r *bufio.Reader
}

func dialGateway(t *testing.T, addr string) *keepAliveConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &keepAliveConn{Conn: c, r: bufio.NewReader(c)}
}

// get sends GET path and returns the answer's status, or an error when the
// connection gave none.
func (c *keepAliveConn) get(path string) (int, string, error) {
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return 0, "", err
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: gw.test\r\n\r\n", path); err != nil {
		return 0, "", err
	}
	return c.readResponse()
}

func (c *keepAliveConn) readResponse() (int, string, error) {
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// closedByServer reports whether the server has closed c: a read returns
// EOF (or a reset) rather than data or a timeout.
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestMaxConnsPerIP(t *testing.T) {
	const limit = 3
	be := startBackend(t, nil)
	gw := startGateway(t, defaultBackendYAML(be.URL), withConfig(func(c *Config) { c.MaxConnsPerIP = limit }))

	// limit connections from 127.0.0.1, each seen by the server (it
	// answered a request on it) and kept open.
	var open []*keepAliveConn
	for i := range limit {
		c := dialGateway(t, gw.Addr)
		status, body, err := c.get("/healthz")
		require.NoError(t, err, "connection %d", i+1)
		require.Equal(t, http.StatusOK, status, body)
		open = append(open, c)
	}

	// One more is accepted by the kernel, then answered by fasthttp with a
	// plain-text 429 and closed, before any request is read.
	extra := dialGateway(t, gw.Addr)
	require.NoError(t, extra.SetReadDeadline(time.Now().Add(10*time.Second)))
	status, body, err := extra.readResponse()
	require.NoError(t, err)
	assert.Equal(t, http.StatusTooManyRequests, status)
	assert.Contains(t, body, "exceeds MaxConnsPerIP")
	assert.True(t, closedByServer(extra), "the refused connection must be closed")
	assert.Zero(t, be.hits.Load(), "a refused connection reaches no backend")

	// The connections held are not disturbed.
	status, _, err = open[0].get("/healthz")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status)

	// Once one closes, a new connection is served. The server counts the
	// close when it notices it: poll.
	require.NoError(t, open[0].Close())
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := dialGateway(t, gw.Addr)
		status, _, err := c.get("/healthz")
		_ = c.Close()
		if err == nil && status == http.StatusOK {
			break
		}
		require.True(t, time.Now().Before(deadline), "no connection accepted after one closed (last: %d, %v)", status, err)
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func TestMaxConnsPerIPDefault(t *testing.T) {
	be := startBackend(t, nil)
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name string
		cfg  Config
		want int // what fasthttp is given; 0 is off
	}{
		{"default, clients connect directly", Config{}, DefaultMaxConnsPerIP},
		// Behind proxies the peers are the proxies: counting them would cap
		// every client together.
		{"default, behind trusted proxies", Config{TrustedProxies: trusted}, 0},
		{"set, behind trusted proxies", Config{TrustedProxies: trusted, MaxConnsPerIP: 50}, 50},
		{"off", Config{MaxConnsPerIP: -1}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gw := startGateway(t, defaultBackendYAML(be.URL), withConfig(func(c *Config) { *c = tc.cfg }))
			assert.Equal(t, tc.want, gw.Server.srv.MaxConnsPerIP)
			// Serving (startGateway's cleanup needs Serve to have begun).
			resp, _ := do(t, http.MethodGet, gw.URL+"/healthz", nil, nil)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
		})
	}
}

// slowGateway has a short head timeout and a long body timeout, so that
// whichever cuts a connection is plain.
func slowGateway(t *testing.T) (*gateway, *backend) {
	t.Helper()
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetBody(ctx.Request.Body())
	})
	gw := startGateway(t, defaultBackendYAML(be.URL), withConfig(func(c *Config) {
		c.HeaderTimeout = 300 * time.Millisecond
		c.ReadTimeout = time.Minute
		c.IdleTimeout = time.Minute
	}))
	return gw, be
}

// trickle writes p one byte per interval until it is written or the
// connection fails; it reports how many bytes went out.
func trickle(c net.Conn, p string, interval time.Duration) <-chan int {
	done := make(chan int, 1)
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		n := 0
		for ; n < len(p); n++ {
			if _, err := c.Write([]byte{p[n]}); err != nil {
				break
			}
			<-tick.C
		}
		done <- n
	}()
	return done
}

func TestSlowHeaderIsCut(t *testing.T) {
	gw, be := slowGateway(t)
	// A head that would take ~6 s at 50 ms a byte: far beyond the 300 ms
	// head timeout, far within the one-minute read timeout.
	head := "GET /healthz HTTP/1.1\r\nHost: gw.test\r\nX-Pad: " + strings.Repeat("a", 100) + "\r\n\r\n"

	t.Run("first request", func(t *testing.T) {
		c := dialGateway(t, gw.Addr)
		start := time.Now()
		sent := trickle(c, head, 50*time.Millisecond)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
		status, body, err := c.readResponse()
		require.NoError(t, err)
		assert.Equal(t, http.StatusRequestTimeout, status)
		assert.JSONEq(t, `{"error":"request_timeout"}`, body)
		assert.True(t, closedByServer(c), "the slow connection must be closed")
		// Not a timing assertion: without the head timeout the read
		// timeout (a minute) would be the one to cut it.
		assert.Less(t, time.Since(start), 20*time.Second)
		assert.Less(t, <-sent, len(head), "the whole head went out: it was not cut")
	})

	t.Run("keep-alive request", func(t *testing.T) {
		c := dialGateway(t, gw.Addr)
		status, _, err := c.get("/healthz")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)
		sent := trickle(c, head, 50*time.Millisecond)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
		status, _, err = c.readResponse()
		require.NoError(t, err)
		assert.Equal(t, http.StatusRequestTimeout, status)
		assert.True(t, closedByServer(c))
		assert.Less(t, <-sent, len(head))
	})

	t.Run("no request at all", func(t *testing.T) {
		// A connection that never sends a byte is held no longer than a
		// slow one.
		c := dialGateway(t, gw.Addr)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(30*time.Second)))
		status, _, err := c.readResponse()
		require.NoError(t, err)
		assert.Equal(t, http.StatusRequestTimeout, status)
		assert.True(t, closedByServer(c))
	})
	assert.Zero(t, be.hits.Load())
}

func TestIdleKeepAliveOutlivesHeaderTimeout(t *testing.T) {
	gw, _ := slowGateway(t)
	c := dialGateway(t, gw.Addr)
	status, _, err := c.get("/healthz")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	// Idle for twice the head timeout: IdleTimeout (a minute), not the
	// head timeout, governs the wait for the next request.
	<-time.After(600 * time.Millisecond)
	status, _, err = c.get("/healthz")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status)
}

func TestSlowBodyWithinReadTimeout(t *testing.T) {
	gw, be := slowGateway(t)
	// The head at once, then a body over ~1 s: longer than the head
	// timeout, within the read timeout.
	body := bytes.Repeat([]byte("0123456789"), 100)
	c := dialGateway(t, gw.Addr)
	require.NoError(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	_, err := fmt.Fprintf(c, "POST /api/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", len(body))
	require.NoError(t, err)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < len(body); i += 100 {
		<-tick.C
		_, err := c.Write(body[i : i+100])
		require.NoError(t, err)
	}
	status, got, err := c.readResponse()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, string(body), got, "the backend got the whole body")
	assert.Equal(t, int64(1), be.hits.Load())
}
