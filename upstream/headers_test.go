package upstream

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/valyala/fasthttp"
)

func parseRequestHead(t *testing.T, head string) *fasthttp.Request {
	t.Helper()
	var req fasthttp.Request
	if err := req.Header.Read(bufioReader(head)); err != nil {
		t.Fatalf("parse %q: %v", head, err)
	}
	return &req
}

func TestRemoveRequestHopByHop(t *testing.T) {
	tests := []struct {
		name       string
		head       string
		gone, kept []string
	}{
		{
			name: "standard set",
			head: "GET / HTTP/1.1\r\nHost: a\r\nKeep-Alive: 5\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nProxy-Authorization: x\r\nProxy-Connection: keep-alive\r\nX-App: 1\r\n\r\n",
			gone: []string{"Keep-Alive", "Te", "Trailer", "Upgrade", "Proxy-Authorization", "Proxy-Connection"},
			kept: []string{"X-App"},
		},
		{
			name: "connection names more",
			head: "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Foo ,x-bar\r\nX-Foo: 1\r\nX-Bar: 2\r\nX-Baz: 3\r\n\r\n",
			gone: []string{"Connection", "X-Foo", "X-Bar"},
			kept: []string{"X-Baz"},
		},
		{
			name: "nothing to remove",
			head: "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
			kept: []string{"Accept"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := parseRequestHead(t, tc.head)
			removeRequestHeaders(&req.Header)
			for _, k := range tc.gone {
				assert.Empty(t, req.Header.Peek(k), k)
			}
			for _, k := range tc.kept {
				assert.NotEmpty(t, req.Header.Peek(k), k)
			}
		})
	}
}

func TestRemoveResponseHopByHop(t *testing.T) {
	var resp fasthttp.Response
	resp.Header.Set("Connection", "X-Secret")
	resp.Header.Set("X-Secret", "1")
	resp.Header.Set("Keep-Alive", "timeout=5")
	resp.Header.Set("X-Kept", "1")
	removeResponseHopByHop(&resp.Header)
	assert.Empty(t, resp.Header.Peek("X-Secret"))
	assert.Empty(t, resp.Header.Peek("Keep-Alive"))
	assert.Equal(t, "1", string(resp.Header.Peek("X-Kept")))
}

func TestSetIdentityRemovesEveryClientUserHeader(t *testing.T) {
	req := parseRequestHead(t, "GET / HTTP/1.1\r\nHost: a\r\nx-user-email: evil@x\r\nX-USER-SUB: 0\r\nX-User-Sub: 1\r\nx-UsEr-roles: admin\r\nX-Userland: keep\r\n\r\n")
	setIdentity(&req.Header, &Identity{Sub: "s1", Email: "e@x", Name: "N"}, nil)
	var got []string
	for k, v := range req.Header.All() {
		got = append(got, string(k)+"="+string(v))
	}
	assert.ElementsMatch(t, []string{"Host=a", "X-Userland=keep", "X-User-Email=e@x", "X-User-Sub=s1", "X-User-Name=N"}, got)
}

func TestSanitizeHeaderValue(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"José", "José"},
		{"李雷", "李雷"},
		{"a\r\nb", "ab"},
		{"\x00\x01\x1f\x7f", ""},
		{"tab\there", "tabhere"},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, SanitizeHeaderValue(tc.in), "%q", tc.in)
	}
	clean := "already clean"
	assert.Equal(t, 0, int(testing.AllocsPerRun(100, func() { _ = SanitizeHeaderValue(clean) })))
}

func FuzzSanitizeHeaderValue(f *testing.F) {
	for _, s := range []string{"", "José", "a\r\nb", "\x00", "李雷\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := SanitizeHeaderValue(s)
		if strings.ContainsFunc(out, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("control character left in %q", out)
		}
		var h fasthttp.RequestHeader
		h.Set(HeaderUserName, out)
		if out != "" && string(h.Peek(HeaderUserName)) != out {
			t.Fatalf("value changed in the header: %q -> %q", out, h.Peek(HeaderUserName))
		}
	})
}
