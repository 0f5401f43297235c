package authflow

import (
	"bufio"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apigetaway/getaway/sessioncache"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// hotAuth is an Auth with just what Authenticate's hot path uses: a store
// holding one fresh session.
func hotAuth(tb testing.TB) (*Auth, string) {
	tb.Helper()
	store, err := sessioncache.NewMemory(sessioncache.Config{})
	require.NoError(tb, err)
	tb.Cleanup(store.Close)
	id := newID()
	require.NoError(tb, store.PutSession(context.Background(), id, &sessioncache.Session{
		Sub: "user-1", Email: "alice@example.com", Name: "Alice", AccessToken: "at",
		AccessExpiresAt: time.Now().Add(time.Hour).Unix(),
	}))
	cfg := Config{}.withDefaults()
	return &Auth{cfg: cfg, store: store, allows: func([]byte) bool { return false }, log: zap.NewNop(), now: time.Now}, id
}

func TestAuthenticateFromCookie(t *testing.T) {
	a, id := hotAuth(t)
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.Header.SetCookie("sid", id)
	ident, ok := a.Authenticate(&ctx)
	require.True(t, ok)
	require.Equal(t, "alice@example.com", ident.Email)
	require.Equal(t, "user-1", ident.Sub)

	ctx.Request.Header.SetCookie("sid", id+"x")
	_, ok = a.Authenticate(&ctx)
	require.False(t, ok)
	require.Equal(t, fasthttp.StatusUnauthorized, ctx.Response.StatusCode())
}

// BenchmarkRequireAuth is the authenticated hot path with the session in
// process memory: cookie -> session -> identity. Goal: 0 allocations.
func BenchmarkRequireAuth(b *testing.B) {
	a, id := hotAuth(b)
	var ctx fasthttp.RequestCtx
	// Parsed from bytes, as the server parses it: the Cookie line stays
	// raw (Header.Set would parse it into fasthttp's cookie list).
	head := "POST /api/x HTTP/1.1\r\nHost: gw.example.com\r\nCookie: theme=dark; sid=" + id +
		"\r\nOrigin: https://gw.example.com\r\nSec-Fetch-Site: same-origin\r\nContent-Length: 0\r\n\r\n"
	if err := ctx.Request.Header.Read(bufio.NewReader(strings.NewReader(head))); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := a.Authenticate(&ctx); !ok {
			b.Fatal("refused")
		}
	}
}
