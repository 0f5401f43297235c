package healthd

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// Every test leaves no goroutine behind: check loops, the notification
// sender, loopback servers and Redis clients all end before the binary
// does.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the fake clock's start: a fixed, realistic instant.
var t0 = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

// fakeClock is a settable clock for WithClock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t0 + d.
func (c *fakeClock) Set(d time.Duration) {
	c.mu.Lock()
	c.now = t0.Add(d)
	c.mu.Unlock()
}

// ms returns t0 + d in ms since the epoch, as Status reports times.
func ms(d time.Duration) int64 { return t0.Add(d).UnixMilli() }

// eventually polls cond until it holds, failing the test after 5s. It
// waits on a condition, never for a fixed time.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitIdle waits until c's notification sender has nothing queued or in
// progress, so that counting what reached the receiver is exact.
func waitIdle(tb testing.TB, c *Checker) {
	tb.Helper()
	eventually(tb, "notifications to settle", func() bool { return c.notify.pending.Load() == 0 })
}

// testLogger logs to the test's output (shown on failure or with -v).
func testLogger(tb testing.TB) *zap.Logger { return zaptest.NewLogger(tb) }

// newTestChecker returns a Checker closed at the end of the test.
func newTestChecker(tb testing.TB, cfg Config, opts ...Option) *Checker {
	tb.Helper()
	opts = append([]Option{WithLogger(testLogger(tb))}, opts...)
	c, err := New(cfg, opts...)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// testBackend is a real HTTP backend on 127.0.0.1 that can answer a chosen
// status, refuse HEAD, hang, go away (connection refused) and come back on
// the same address.
type testBackend struct {
	tb   testing.TB
	addr string

	mu         sync.Mutex
	status     int
	headStatus int  // when non-zero, the answer to HEAD
	hang       bool // hold requests until the client gives up
	location   string
	requests   []string // "METHOD /path?query"

	hits atomic.Int64

	srv    *http.Server
	served chan struct{} // closed when Serve returned
	quit   chan struct{} // closed by stop, guarded by mu
}

func newTestBackend(tb testing.TB) *testBackend {
	tb.Helper()
	b := &testBackend{tb: tb, status: http.StatusOK}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	b.addr = ln.Addr().String()
	b.serve(ln)
	tb.Cleanup(b.stop)
	return b
}

func (b *testBackend) URL() string { return "http://" + b.addr }

func (b *testBackend) serve(ln net.Listener) {
	b.srv = &http.Server{Handler: http.HandlerFunc(b.handle), ReadHeaderTimeout: 5 * time.Second}
	b.served = make(chan struct{})
	b.mu.Lock()
	b.quit = make(chan struct{})
	b.mu.Unlock()
	srv, served := b.srv, b.served
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
}

func (b *testBackend) handle(w http.ResponseWriter, r *http.Request) {
	b.hits.Add(1)
	b.mu.Lock()
	b.requests = append(b.requests, r.Method+" "+r.URL.RequestURI())
	status, hang, location, quit := b.status, b.hang, b.location, b.quit
	if r.Method == http.MethodHead && b.headStatus != 0 {
		status = b.headStatus
	}
	b.mu.Unlock()
	if hang {
		// The server notices a client that gave up only once the body is
		// read; quit ends the wait when the test stops the server.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-quit:
		}
		return
	}
	if location != "" {
		w.Header().Set("Location", location)
	}
	w.WriteHeader(status)
}

// set changes the answer.
func (b *testBackend) set(f func(b *testBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

func (b *testBackend) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.requests...)
}

// stop closes the listener and every connection; connecting is then
// refused.
func (b *testBackend) stop() {
	if b.srv == nil {
		return
	}
	b.mu.Lock()
	close(b.quit)
	b.mu.Unlock()
	_ = b.srv.Close()
	<-b.served
	b.srv = nil
}

// restart listens again on the same address.
func (b *testBackend) restart() {
	b.tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", b.addr)
		if err == nil {
			b.serve(ln)
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			b.tb.Fatalf("listen again on %s: %v", b.addr, err)
		}
		time.Sleep(10 * time.Millisecond) // the old socket lingers; retry
	}
}

// receivedCall is one request the Apprise receiver got.
type receivedCall struct {
	Path        string
	ContentType string
	Body        appriseRequest
}

// appriseReceiver is a real HTTP server on loopback standing in for the
// Apprise API: it records every call and fails the first fail ones with
// 500.
type appriseReceiver struct {
	srv *httptest.Server

	mu        sync.Mutex
	fail      int
	attempts  int
	delivered []receivedCall
}

func newAppriseReceiver(tb testing.TB) *appriseReceiver {
	tb.Helper()
	r := &appriseReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body appriseRequest
		if req.Method != http.MethodPost || json.NewDecoder(req.Body).Decode(&body) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.attempts++
		if r.fail > 0 {
			r.fail--
			http.Error(w, "apprise is unwell", http.StatusInternalServerError)
			return
		}
		r.delivered = append(r.delivered, receivedCall{
			Path:        req.URL.Path,
			ContentType: req.Header.Get("Content-Type"),
			Body:        body,
		})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	tb.Cleanup(r.srv.Close)
	return r
}

// URL is the receiver's notify endpoint for the key "gw-test".
func (r *appriseReceiver) URL() string { return r.srv.URL + "/notify/gw-test" }

func (r *appriseReceiver) failNext(n int) {
	r.mu.Lock()
	r.fail = n
	r.mu.Unlock()
}

func (r *appriseReceiver) calls() []receivedCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedCall(nil), r.delivered...)
}

func (r *appriseReceiver) attemptCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts
}
