package edge

import (
	"math/rand/v2"

	"github.com/valyala/fasthttp"
)

// W3C Trace Context (https://www.w3.org/TR/trace-context/). The gateway
// records no spans: it is not a participant of the trace, only a relay.
// So a valid traceparent reaches the backend unchanged (parent-id
// included: the backend's spans hang under the client's), with its
// tracestate. An absent or invalid one is replaced by a new traceparent
// (random trace-id and parent-id, flags 00: not sampled) and any
// tracestate is dropped with it, as the specification asks of a vendor
// that cannot parse traceparent. Several traceparent lines are invalid.
// Every request gets this treatment, WebSocket upgrades included; the
// access log carries the trace-id. Nothing is echoed to the client: the
// Trace Context recommendation defines no response header (X-Request-Id
// is the gateway's answer to "which request was that").

const (
	traceparentLen = 55 // version 00: 2 + 1 + 32 + 1 + 16 + 1 + 2
	traceIDStart   = 3
	traceIDEnd     = 35
)

var (
	headerTraceparent = []byte("Traceparent")
	headerTracestate  = []byte("Tracestate")
)

// traceID is a trace-id in lowercase hex.
type traceID [traceIDEnd - traceIDStart]byte

// parseTraceparent reports whether v is a valid traceparent, and returns
// its trace-id. Version 00 is exactly
//
//	00-<32 lowercase hex trace-id, not all zero>-<16 lowercase hex parent-id, not all zero>-<2 hex flags>
//
// A higher version (but ff, which is invalid) is read the same way, its
// first four fields only: it may be longer, the 55th character then being
// a '-'.
func parseTraceparent(v []byte) (id traceID, ok bool) {
	if len(v) < traceparentLen || !isLowerHex(v[0:2]) || v[2] != '-' {
		return id, false
	}
	switch {
	case v[0] == 'f' && v[1] == 'f':
		return id, false
	case v[0] == '0' && v[1] == '0':
		if len(v) != traceparentLen {
			return id, false
		}
	default:
		if len(v) > traceparentLen && v[traceparentLen] != '-' {
			return id, false
		}
	}
	tid, pid, flags := v[traceIDStart:traceIDEnd], v[36:52], v[53:55]
	if v[35] != '-' || v[52] != '-' ||
		!isLowerHex(tid) || allZeroHex(tid) || !isLowerHex(pid) || allZeroHex(pid) || !isLowerHex(flags) {
		return id, false
	}
	copy(id[:], tid)
	return id, true
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZeroHex(b []byte) bool {
	for _, c := range b {
		if c != '0' {
			return false
		}
	}
	return true
}

const hexDigits = "0123456789abcdef"

// putHex writes v as 16 lowercase hex digits into dst[:16].
func putHex(dst []byte, v uint64) {
	_ = dst[15]
	for i := 15; i >= 0; i-- {
		dst[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

// newTraceparent writes a fresh version-00 traceparent into dst: random
// trace-id and parent-id (never all zero), flags 00. The random numbers
// come from math/rand/v2's global source, a per-thread ChaCha8 seeded by
// the runtime from the system's random source: no lock, no allocation.
func newTraceparent(dst *[traceparentLen]byte) traceID {
	hi, lo, parent := rand.Uint64(), rand.Uint64(), rand.Uint64()
	if hi|lo == 0 {
		lo = 1
	}
	if parent == 0 {
		parent = 1
	}
	dst[0], dst[1], dst[2] = '0', '0', '-'
	putHex(dst[3:19], hi)
	putHex(dst[19:35], lo)
	dst[35] = '-'
	putHex(dst[36:52], parent)
	dst[52], dst[53], dst[54] = '-', '0', '0'
	var id traceID
	copy(id[:], dst[traceIDStart:traceIDEnd])
	return id
}

// ensureTraceparent keeps a valid traceparent of h, or replaces it (and
// drops tracestate) with a new one; it returns the trace-id in force. It
// allocates nothing.
func ensureTraceparent(h *fasthttp.RequestHeader) traceID {
	vals := h.PeekAll("Traceparent")
	if len(vals) == 1 {
		if id, ok := parseTraceparent(vals[0]); ok {
			return id
		}
	}
	if len(vals) > 0 {
		h.DelBytes(headerTraceparent)
	}
	h.DelBytes(headerTracestate)
	var buf [traceparentLen]byte
	id := newTraceparent(&buf)
	h.SetCanonical(headerTraceparent, buf[:])
	return id
}
