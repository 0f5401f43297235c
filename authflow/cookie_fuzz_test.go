package authflow

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/apigetaway/getaway/upstream"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/zap"
)

// The session cookie as the gateway reads it (sessionID) and as the proxy
// strips it before forwarding (upstream rewriteRequest), over any Cookie
// header a client may send, on one or several lines.

// cookieEcho is a backend on an in-memory listener behind a real
// upstream.Proxy: it answers with the Cookie lines it received, as they
// came, one per line.
func cookieEcho(tb testing.TB) *upstream.Proxy {
	tb.Helper()
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetBody(bytes.Join(cookieLines(ctx.Request.Header.RawHeaders()), []byte("\n")))
	}}
	go func() { _ = srv.Serve(ln) }()
	f, err := upstream.ParseFile("config.yml", []byte("defaultBackend: \"http://backend.test\"\n"))
	if err != nil {
		tb.Fatal(err)
	}
	p, err := upstream.NewProxy(upstream.ProxyConfig{
		SessionCookieName: "sid",
		Pool:              upstream.PoolConfig{Dial: func(string) (net.Conn, error) { return ln.Dial() }},
	}, f, zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		p.Close()
		_ = srv.Shutdown()
		_ = ln.Close()
	})
	return p
}

// cookieLines returns the values of the Cookie lines of a raw head, any
// case, optional whitespace around the value removed.
func cookieLines(head []byte) [][]byte {
	var out [][]byte
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(name, []byte("cookie")) {
			out = append(out, bytes.Trim(value, " \t"))
		}
	}
	return out
}

// cookiePair is one ';'-separated item of a Cookie line, read leniently
// (as fasthttp and most servers do): name and value trimmed of spaces and
// tabs, one pair of double quotes around the value removed.
type cookiePair struct {
	name, value string
	hasEq       bool
}

func parseCookieLines(lines [][]byte) []cookiePair {
	var out []cookiePair
	for _, line := range lines {
		for item := range strings.SplitSeq(string(line), ";") {
			name, value, eq := strings.Cut(item, "=")
			if !eq {
				name, value = "", name
			}
			value = strings.Trim(value, " \t")
			if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
				value = value[1 : len(value)-1]
			}
			out = append(out, cookiePair{name: strings.Trim(name, " \t"), value: value, hasEq: eq})
		}
	}
	return out
}

// rfcCookie reports a pair RFC 6265 section 4.2.1 allows: a token name and
// cookie-octets for value. Such pairs are the ones a browser sends for
// cookies set by a server.
func rfcCookie(p cookiePair) bool {
	if !p.hasEq || p.name == "" {
		return false
	}
	for i := 0; i < len(p.name); i++ {
		c := p.name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	for i := 0; i < len(p.value); i++ {
		c := p.value[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

// strictGaps (ATTACK_GAPS=1, as for the attack suite of package edge)
// fails on the known gap below instead of tolerating it.
var strictGaps = os.Getenv("ATTACK_GAPS") == "1"

// namelessPairs returns the pairs the values of nameless items read as.
// Known gap: fasthttp writes a nameless item ("=sid=x") back as its bare
// value, so after the proxy's DelCookie the backend reads it as the pair
// sid=x. The value is one the client wrote there itself, never a session
// cookie the gateway read (that one is removed); fixing it belongs to the
// proxy's cookie removal (upstream/proxy.go rewriteRequest).
func namelessPairs(sent []cookiePair) map[cookiePair]bool {
	out := map[cookiePair]bool{}
	for _, c := range sent {
		if c.name == "" && c.hasEq {
			for _, p := range parseCookieLines([][]byte{[]byte(c.value)}) {
				out[p] = true
			}
		}
	}
	return out
}

func FuzzCookieSessionStripped(f *testing.F) {
	for _, s := range []string{
		"sid=abc",
		`sid="abc"`,
		`sid=""`,
		"sid=a; sid=b",
		"a=1;sid=s;b=2",
		"a=1; ; ;; sid=s;;",
		"sid",
		"sid=",
		"sid; a=1",
		" sid = s ",
		"\tsid\t=\ts\t",
		"SID=s; Sid=t",
		"=sid=s",
		"sid=a=b",
		"sid=a\x00b; a=1",
		"a\x00=1; sid=s",
		"sid=" + strings.Repeat("x", 128),
		"sid=" + strings.Repeat("x", 129),
		"a=1\nsid=s\nb=2", // three Cookie lines
		"sid=a\nsid=b",
		"\nsid=s\n",
		`a="x;y"; sid=s`,
		`a=x\y; sid=s; b="q"`,
		"a=%73id; sid%3D=x",
		"sid=s, b=2",
		"__Host-sid=s; sid=t",
	} {
		f.Add(s)
	}
	p := cookieEcho(f)
	a := &Auth{cfg: Config{Cookie: CookieConfig{Name: "sid"}}.withDefaults()}
	remote := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1234}

	f.Fuzz(func(t *testing.T, header string) {
		if strings.ContainsRune(header, '\r') {
			return // not a header value: it would end the line
		}
		var raw strings.Builder
		raw.WriteString("GET /api/x HTTP/1.1\r\nHost: app.test\r\n")
		for line := range strings.SplitSeq(header, "\n") {
			raw.WriteString("Cookie: " + line + "\r\n")
		}
		raw.WriteString("\r\n")
		var req fasthttp.Request
		if err := req.Read(bufio.NewReaderSize(strings.NewReader(raw.String()), 1<<16)); err != nil {
			return // the server would refuse it before any handler
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, remote, nil)
		sent := parseCookieLines(cookieLines(ctx.Request.Header.RawHeaders()))

		// The session id read is nil or the value of a sid pair sent, and
		// never longer than any id the gateway issues.
		id := string(a.sessionID(&ctx))
		if a.sessionID(&ctx) != nil {
			if len(id) == 0 || len(id) > 128 {
				t.Fatalf("session id of %d bytes", len(id))
			}
			found := false
			for _, c := range sent {
				found = found || (c.hasEq && c.name == "sid" && c.value == id)
			}
			if !found {
				t.Fatalf("session id %q is no sid value sent in %q", id, header)
			}
		}

		if err := p.Forward(&ctx, &upstream.Identity{Sub: "user-1"}); err != nil {
			t.Fatalf("forward: %v", err)
		}
		got := parseCookieLines(bytes.Split(ctx.Response.Body(), []byte("\n")))

		// No pair named like the session cookie reaches the backend (the
		// name compared as fasthttp compares it: case-sensitively).
		smuggled := namelessPairs(sent)
		for _, c := range got {
			if c.hasEq && c.name == "sid" {
				if smuggled[c] && !strictGaps {
					// Known gap: see namelessPairs.
					continue
				}
				t.Fatalf("backend got sid=%q from Cookie %q", c.value, header)
			}
		}
		// Every other well-formed cookie reaches it unchanged, as often as
		// it was sent.
		want := map[cookiePair]int{}
		for _, c := range sent {
			if c.name != "sid" && rfcCookie(c) {
				want[c]++
			}
		}
		for _, c := range got {
			want[c]--
		}
		for c, n := range want {
			if n > 0 {
				t.Fatalf("backend lost %s=%q (Cookie %q, forwarded %q)", c.name, c.value, header, ctx.Response.Body())
			}
		}
	})
}

// TestCookieForwardingGaps holds what the proxy's cookie removal should do
// and does not yet: fasthttp re-serialises the whole Cookie header after
// DelCookie, so cookies that are not RFC 6265 pairs are changed or lost.
// Skipped as known gaps unless ATTACK_GAPS=1.
func TestCookieForwardingGaps(t *testing.T) {
	if !strictGaps {
		t.Skip("known gaps of the proxy's cookie removal; ATTACK_GAPS=1 runs them")
	}
	p := cookieEcho(t)
	tests := []struct{ name, sent, want string }{
		// Today: "b=q; d=1" (a and c dropped, b unquoted).
		{"other cookies kept as sent", `a=x\y; b="q"; c={"k":1}; d=1; sid=s`, `a=x\y; b="q"; c={"k":1}; d=1`},
		// Today: "sid=s; e=2".
		{"nameless item not made a sid pair", "=sid=s; e=2", "e=2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req fasthttp.Request
			raw := "GET /api/x HTTP/1.1\r\nHost: app.test\r\nCookie: " + tc.sent + "\r\n\r\n"
			if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
				t.Fatal(err)
			}
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}, nil)
			if err := p.Forward(&ctx, &upstream.Identity{Sub: "user-1"}); err != nil {
				t.Fatal(err)
			}
			if got := string(ctx.Response.Body()); got != tc.want {
				t.Errorf("backend got Cookie %q, want %q", got, tc.want)
			}
		})
	}
}
