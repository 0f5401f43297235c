package wsecho

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// serveFastHTTP serves h on a loopback port until the test ends and
// returns its ws:// base URL.
func serveFastHTTP(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return "ws://" + ln.Addr().String()
}

func TestEchoBothServers(t *testing.T) {
	plain := func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("plain") }
	hs := httptest.NewServer(Handler())
	t.Cleanup(hs.Close)
	for name, url := range map[string]string{
		"net/http": "ws" + strings.TrimPrefix(hs.URL, "http") + "/live",
		"fasthttp": serveFastHTTP(t, FastHTTP(plain)) + "/api/ws",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Dial(t.Context(), url, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, size := range []int{1, 64, 70_000} {
				if err := RoundTrip(c, bytes.Repeat([]byte{'x'}, size)); err != nil {
					t.Fatalf("round trip of %d bytes: %v", size, err)
				}
			}
		})
	}
	// The fasthttp wrapper leaves other requests to the next handler.
	base := serveFastHTTP(t, FastHTTP(plain))
	resp, err := http.Get("http" + strings.TrimPrefix(base, "ws") + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len("plain")) {
		t.Errorf("a plain GET through FastHTTP: %d, %d bytes", resp.StatusCode, resp.ContentLength)
	}
}

func TestRun(t *testing.T) {
	url := serveFastHTTP(t, FastHTTP(func(ctx *fasthttp.RequestCtx) {})) + "/ws"
	res, err := Run(t.Context(), url, nil, 3, []byte("hello"), 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Trips == 0 || int64(len(res.Latencies)) != res.Trips || !slices.IsSorted(res.Latencies) {
		t.Errorf("%d trips, %d latencies (sorted: %v)", res.Trips, len(res.Latencies), slices.IsSorted(res.Latencies))
	}
	if res.Refused != 0 || res.Failed != 0 || res.FirstError != nil || res.PerSecond() <= 0 {
		t.Errorf("a clean run: %+v", res)
	}
}

func TestRunRefused(t *testing.T) {
	// No upgrade: the handshake is answered 401, as a gateway does
	// without a session.
	url := serveFastHTTP(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(401) }) + "/ws"
	res, err := Run(t.Context(), url, nil, 2, []byte("hello"), time.Second)
	if err == nil || res.Refused != 2 || res.Trips != 0 {
		t.Fatalf("Run against a refusing server: %+v, %v", res, err)
	}
	var he *HandshakeError
	if !errors.As(err, &he) || he.Status != 401 {
		t.Errorf("error %v, want a HandshakeError with 401", err)
	}
}
