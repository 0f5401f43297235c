package authflow

import (
	"bufio"
	"bytes"
	"net"
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
	raw         string // the value as sent, quotes kept
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
			raw := value
			if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
				value = value[1 : len(value)-1]
			}
			out = append(out, cookiePair{name: strings.Trim(name, " \t"), value: value, raw: raw, hasEq: eq})
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
				found = found || (c.hasEq && c.name == "sid" && c.raw == id)
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
		// name compared case-sensitively, as the gateway reads it).
		for _, c := range got {
			if c.hasEq && c.name == "sid" {
				t.Fatalf("backend got sid=%q from Cookie %q", c.value, header)
			}
			if c.name == "" && (c.hasEq || c.value != "") {
				t.Fatalf("backend got a nameless item %q from Cookie %q", c.value, header)
			}
		}
		// Every other named cookie reaches it as sent, as often as it was
		// sent, well-formed or not.
		want := map[cookiePair]int{}
		for _, c := range sent {
			if c.name != "sid" && c.name != "" && c.hasEq {
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

// TestCookieForwarding: the proxy removes the session cookie and forwards
// the other cookies byte for byte, those fasthttp's parser would change
// (quotes, '\\', raw JSON) included; nameless items are dropped.
func TestCookieForwarding(t *testing.T) {
	p := cookieEcho(t)
	tests := []struct{ name, sent, want string }{
		{"other cookies kept as sent", `a=x\y; b="q"; c={"k":1}; d=1; sid=s`, `a=x\y; b="q"; c={"k":1}; d=1`},
		{"nameless item not made a sid pair", "=sid=s; e=2", "e=2"},
		{"several lines joined", "a=1; sid=s\nb=\"2\"", `a=1; b="2"`},
		{"only the session cookie", " sid=s ;", ""},
		{"no session cookie", `x=1;y=2`, `x=1; y=2`},
		{"session name in another case kept", "SID=s; sid=t", "SID=s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req fasthttp.Request
			raw := "GET /api/x HTTP/1.1\r\nHost: app.test\r\nCookie: " + strings.ReplaceAll(tc.sent, "\n", "\r\nCookie: ") + "\r\n\r\n"
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
