package upstream

import (
	"bufio"
	"bytes"
	"net"
	"testing"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// rewriteHeads are /api requests as the server parses them: a browser's
// ordinary one (the session cookie among others), and a hostile one with
// spoofed identity and forwarding headers and a Connection that names
// another header, which take the rare, allocating paths.
var rewriteHeads = []struct{ name, head string }{
	{"browser", "GET /api/v2/orders?page=2 HTTP/1.1\r\n" +
		"Host: app.example.com\r\n" +
		"User-Agent: Mozilla/5.0\r\n" +
		"Accept: application/json\r\n" +
		"Referer: https://app.example.com/orders\r\n" +
		"Cookie: theme=dark; sid=0123456789abcdef0123456789abcdef0123456789a; consent=\"yes\"\r\n" +
		"\r\n"},
	{"hostile", "GET /api/v2/orders?page=2 HTTP/1.1\r\n" +
		"Host: app.example.com\r\n" +
		"Cookie: theme=dark; sid=0123456789abcdef0123456789abcdef0123456789a\r\n" +
		"X-User-Email: forged@example.com\r\n" +
		"X-Forwarded-For: 6.6.6.6\r\n" +
		"Connection: keep-alive, X-Hop\r\n" +
		"X-Hop: 1\r\n" +
		"\r\n"},
}

// BenchmarkRewriteRequest measures turning the client's request into the
// backend's (route lookup, /api strip, header policy, identity headers,
// cookie removal, backend URI). Every sub-benchmark parses the head from
// bytes first, as the server does: the rewrite costs the difference
// between parse-and-rewrite and parse-only. Goal: 0 allocations for the
// browser's request.
func BenchmarkRewriteRequest(b *testing.B) {
	f, err := ParseFile("config.yml", []byte(`
defaultBackend: "http://default.internal:4070"
mappings:
  - frontendHost: "app.example.com"
    pathPrefix: "/v2"
    backend: "http://orders.internal:7001/base"
`))
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewProxy(ProxyConfig{}, f, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	id := &Identity{Sub: "user-1", Email: "alice@example.com", Name: "Alice Example"}

	var ctx fasthttp.RequestCtx
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 40000}, nil)
	src := bytes.NewReader(nil)
	br := bufio.NewReader(src)
	parse := func(b *testing.B, head []byte) {
		ctx.Request.Reset()
		src.Reset(head)
		br.Reset(src)
		if err := ctx.Request.Header.Read(br); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range rewriteHeads {
		head := []byte(tc.head)
		b.Run(tc.name+"/parse-only", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				parse(b, head)
			}
		})
		b.Run(tc.name+"/parse-and-rewrite", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				parse(b, head)
				route, be, rest, err := p.route(&ctx)
				if err != nil {
					b.Fatal(err)
				}
				p.rewriteRequest(&ctx, route, be, id, rest)
			}
			if got := string(ctx.Request.Header.Peek(HeaderUserEmail)); got != id.Email {
				b.Fatalf("X-User-Email %q", got)
			}
			if bytes.Contains(ctx.Request.Header.Header(), []byte("sid=")) {
				b.Fatalf("the session cookie is forwarded:\n%s", ctx.Request.Header.Header())
			}
		})
	}
}
