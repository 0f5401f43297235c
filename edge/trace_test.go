package edge

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

const (
	validTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	validTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
)

func TestParseTraceparent(t *testing.T) {
	tests := []struct {
		name, v string
		ok      bool
	}{
		{"version 00", validTraceparent, true},
		{"flags 00", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"unknown flags kept", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", true},
		{"higher version", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"higher version, more fields", "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds", true},
		{"higher version, no dash after flags", "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"version 00 too long", validTraceparent + "-00", false},
		{"version 00 trailing space", validTraceparent + " ", false},
		{"too short", validTraceparent[:54], false},
		{"empty", "", false},
		{"upper case trace-id", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
		{"upper case version", "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"zero trace-id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"zero parent-id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"not hex", "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false},
		{"bad flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", false},
		{"wrong separator", "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"shifted fields", "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, ok := parseTraceparent([]byte(tc.v))
			assert.Equal(t, tc.ok, ok)
			if ok {
				assert.Equal(t, tc.v[3:35], string(id[:]))
			}
		})
	}
}

func TestNewTraceparent(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		var buf [traceparentLen]byte
		id := newTraceparent(&buf)
		got, ok := parseTraceparent(buf[:])
		require.True(t, ok, "%s", buf[:])
		assert.Equal(t, id, got)
		assert.True(t, strings.HasPrefix(string(buf[:]), "00-"))
		assert.True(t, strings.HasSuffix(string(buf[:]), "-00"), "not sampled: the gateway records nothing")
		assert.False(t, seen[string(id[:])], "trace-ids repeat")
		seen[string(id[:])] = true
	}
}

// FuzzTraceparent: the parser never panics, accepts only what it
// documents, and what the gateway generates always passes it.
func FuzzTraceparent(f *testing.F) {
	for _, s := range []string{
		validTraceparent, "", "00-", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", strings.Repeat("-", 55),
		"00-00000000000000000000000000000000-0000000000000000-00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, ok := parseTraceparent([]byte(v))
		if ok {
			if len(v) < traceparentLen || v[2] != '-' || v[35] != '-' || v[52] != '-' || v[3:35] != string(id[:]) {
				t.Fatalf("accepted %q with trace-id %q", v, id[:])
			}
			if v[:2] == "00" && len(v) != traceparentLen {
				t.Fatalf("accepted version 00 of length %d", len(v))
			}
		}
		var buf [traceparentLen]byte
		gen := newTraceparent(&buf)
		if got, ok := parseTraceparent(buf[:]); !ok || got != gen {
			t.Fatalf("generated %q does not parse", buf[:])
		}
	})
}

func TestEnsureTraceparentAllocatesNothing(t *testing.T) {
	var h fasthttp.RequestHeader
	allocs := testing.AllocsPerRun(100, func() {
		h.Reset()
		h.SetRequestURI("/api/x")
		h.Set("Tracestate", "vendor=1")
		ensureTraceparent(&h)
	})
	assert.Zero(t, allocs)
}

// traceHeaders sends a request through the gateway and returns what the
// backend received.
func traceHeaders(t *testing.T, be *backend, gw *gateway, h http.Header) *fasthttp.Request {
	t.Helper()
	resp, body := do(t, http.MethodGet, gw.URL+"/api/x", h, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Empty(t, resp.Header.Get("Traceparent"), "not echoed to the client")
	return be.lastRequest(t)
}

func TestTraceparentPropagation(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, defaultBackendYAML(be.URL))

	t.Run("absent: generated", func(t *testing.T) {
		got := traceHeaders(t, be, gw, http.Header{"Tracestate": {"orphan=1"}})
		tp := got.Header.Peek("Traceparent")
		_, ok := parseTraceparent(tp)
		assert.True(t, ok, "%q", tp)
		assert.Empty(t, got.Header.Peek("Tracestate"), "a tracestate without traceparent is dropped")
		// Each request gets its own trace.
		again := traceHeaders(t, be, gw, nil).Header.Peek("Traceparent")
		assert.NotEqual(t, string(tp[3:35]), string(again[3:35]))
	})
	t.Run("valid: unchanged", func(t *testing.T) {
		got := traceHeaders(t, be, gw, http.Header{"Traceparent": {validTraceparent}, "Tracestate": {"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"}})
		assert.Equal(t, validTraceparent, string(got.Header.Peek("Traceparent")))
		assert.Equal(t, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", string(got.Header.Peek("Tracestate")))
	})
	t.Run("higher version: unchanged", func(t *testing.T) {
		v := "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
		got := traceHeaders(t, be, gw, http.Header{"Traceparent": {v}})
		assert.Equal(t, v, string(got.Header.Peek("Traceparent")))
	})
	for name, h := range map[string]http.Header{
		"invalid":           {"Traceparent": {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}, "Tracestate": {"rojo=1"}},
		"zero trace-id":     {"Traceparent": {"00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, "Tracestate": {"rojo=1"}},
		"two traceparents":  {"Traceparent": {validTraceparent, "00-11111111111111111111111111111111-00f067aa0ba902b7-01"}, "Tracestate": {"rojo=1"}},
		"empty traceparent": {"Traceparent": {""}, "Tracestate": {"rojo=1"}},
	} {
		t.Run(name+": replaced", func(t *testing.T) {
			got := traceHeaders(t, be, gw, h)
			all := got.Header.PeekAll("Traceparent")
			require.Len(t, all, 1)
			_, ok := parseTraceparent(all[0])
			assert.True(t, ok, "%q", all[0])
			assert.NotEqual(t, validTraceparent, string(all[0]))
			assert.Empty(t, got.Header.Peek("Tracestate"), "dropped with the invalid traceparent")
		})
	}
}

func TestTraceparentOnWebSocketUpgrade(t *testing.T) {
	// A plain HTTP backend: it records the upgrade request, then refuses
	// it. What matters is what reached it.
	be := startBackend(t, nil)
	gw := startGateway(t, defaultBackendYAML(be.URL))
	_, status, _ := dialWS(t, gw.wsURL("/api/live"), http.Header{"Tracestate": {"rojo=1"}})
	assert.NotEqual(t, http.StatusSwitchingProtocols, status)
	got := be.lastRequest(t)
	assert.Equal(t, "websocket", strings.ToLower(string(got.Header.Peek("Upgrade"))))
	_, ok := parseTraceparent(got.Header.Peek("Traceparent"))
	assert.True(t, ok, "%q", got.Header.Peek("Traceparent"))
	assert.Empty(t, got.Header.Peek("Tracestate"))

	_, _, _ = dialWS(t, gw.wsURL("/api/live"), http.Header{"Traceparent": {validTraceparent}})
	assert.Equal(t, validTraceparent, string(be.lastRequest(t).Header.Peek("Traceparent")))
}
