// Package wsecho is the WebSocket echo of the bench programs, both ends:
// the backend that sends every message back ([Handler] for net/http,
// [FastHTTP] in front of a fasthttp handler) and the client that times
// round trips through it ([Dial], [RoundTrip], and [Run], a closed loop
// over many sockets for a fixed time).
//
// It runs in the bench programs' own processes; the echo backend of the
// gateway's tests, in the test process with httptest, is upstream/wsecho.
package wsecho
