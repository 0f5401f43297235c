package wsecho

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
)

// handshakeTimeout bounds one opening handshake.
const handshakeTimeout = 30 * time.Second

// tripTimeout bounds one round trip of Run.
const tripTimeout = 5 * time.Second

var dialer = websocket.Dialer{HandshakeTimeout: handshakeTimeout}

// HandshakeError is a handshake the server refused with an HTTP status.
type HandshakeError struct {
	URL    string
	Status int
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("dial %s: handshake refused with status %d", e.URL, e.Status)
}

// Dial opens a WebSocket to url (ws://...) with header in the handshake
// (a Cookie, an Origin). A refused handshake is a *HandshakeError.
func Dial(ctx context.Context, url string, header http.Header) (*websocket.Conn, error) {
	c, resp, err := dialer.DialContext(ctx, url, header)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, &HandshakeError{URL: url, Status: resp.StatusCode}
		}
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	return c, nil
}

// RoundTrip sends msg as a binary message and reads the next message,
// which must be the same bytes.
func RoundTrip(c *websocket.Conn, msg []byte) error {
	if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
		return err
	}
	_, got, err := c.ReadMessage()
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo of %d bytes came back as %d different bytes", len(msg), len(got))
	}
	return nil
}

// Result is one closed-loop measurement of Run.
type Result struct {
	Trips     int64           // round trips completed
	Elapsed   time.Duration   // from the first send to the last socket's end
	Latencies []time.Duration // of every round trip, sorted
	// Refused counts handshakes answered with a status; Failed counts
	// sockets that failed otherwise (connect, I/O, timeout, wrong echo).
	// A failed socket stops.
	Refused, Failed int64
	// FirstError is the first failure, for the report.
	FirstError error
}

// PerSecond is the rate of round trips.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Trips) / r.Elapsed.Seconds()
}

// Run opens conns sockets to url with header (not timed), then has each
// send msg and read its echo, one round trip after the other, for d or
// until ctx ends, and closes them. It fails only when no socket could be
// opened or ctx ended; other failures are counted in the Result.
func Run(ctx context.Context, url string, header http.Header, conns int, msg []byte, d time.Duration) (Result, error) {
	var res Result
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := errors.AsType[*HandshakeError](err); ok {
			res.Refused++
		} else {
			res.Failed++
		}
		if res.FirstError == nil {
			res.FirstError = err
		}
	}

	sockets := make([]*websocket.Conn, 0, conns)
	defer func() {
		for _, c := range sockets {
			_ = c.Close()
		}
	}()
	for range conns {
		c, err := Dial(ctx, url, header)
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			fail(err)
			continue
		}
		sockets = append(sockets, c)
	}
	if len(sockets) == 0 {
		return res, fmt.Errorf("no socket opened of %d: %w", conns, res.FirstError)
	}

	perSocket := make([][]time.Duration, len(sockets))
	start := time.Now()
	stop := start.Add(d)
	var wg sync.WaitGroup
	for i, c := range sockets {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1<<12)
			for t0 := time.Now(); t0.Before(stop) && ctx.Err() == nil; t0 = time.Now() {
				_ = c.SetReadDeadline(t0.Add(tripTimeout))
				if err := RoundTrip(c, msg); err != nil {
					fail(err)
					break
				}
				lat = append(lat, time.Since(t0))
			}
			perSocket[i] = lat
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	res.Latencies = slices.Concat(perSocket...)
	slices.Sort(res.Latencies)
	res.Trips = int64(len(res.Latencies))
	return res, nil
}
