// Package wsecho runs a WebSocket echo backend on loopback for tests and
// benchmarks of the gateway's WebSocket relay: it counts upgrade attempts,
// keeps the last handshake's headers, echoes every message and records the
// close frames it receives.
package wsecho

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// Server is a running echo backend. Its methods are safe for concurrent use.
type Server struct {
	// URL is the backend's http:// URL (the gateway dials it as ws://).
	URL string
	// Attempts counts the upgrade requests that reached the backend,
	// refused or not.
	Attempts atomic.Int64

	closes chan *websocket.CloseError
	mu     sync.Mutex
	last   http.Header
}

// Start serves on 127.0.0.1:0 until tb ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{closes: make(chan *websocket.CloseError, 64)}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Attempts.Add(1)
		s.mu.Lock()
		s.last = r.Header.Clone()
		s.mu.Unlock()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
					select {
					case s.closes <- ce:
					default: // nobody reads them: never block a connection
					}
				}
				return
			}
			if c.WriteMessage(typ, msg) != nil {
				return
			}
		}
	}))
	tb.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Header returns a header of the last upgrade request received.
func (s *Server) Header(k string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last.Get(k)
}

// NextClose returns the next close frame a client (the gateway) sent,
// failing tb when none arrives within 5 s.
func (s *Server) NextClose(tb testing.TB) *websocket.CloseError {
	tb.Helper()
	select {
	case ce := <-s.closes:
		return ce
	case <-time.After(5 * time.Second):
		tb.Fatal("the backend received no close frame")
		return nil
	}
}
