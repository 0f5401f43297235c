package upstream

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/valyala/fasthttp"
)

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

func TestStripAPI(t *testing.T) {
	tests := []struct {
		target, want string
		ok           bool
	}{
		{"/api", "/", true},
		{"/api/", "/", true},
		{"/api?x=1", "/?x=1", true},
		{"/api/a%2Fb?x=1&x=2", "/a%2Fb?x=1&x=2", true},
		{"/api/v2/x", "/v2/x", true},
		{"/api/x?next=/../admin", "/x?next=/../admin", true}, // dots in the query are data
		{"/api/..x/y", "/..x/y", true},
		{"/api/x.../y", "/x.../y", true},
		{"/apix", "", false},
		{"/ap", "", false},
		{"//api/x", "", false},
		{"/%61pi/x", "", false},
		{"http://evil/api/x", "", false},
		{"/api/../admin", "", false},
		{"/api/x/..", "", false},
		{"/api/./x", "", false},
		{"/api/%2e%2e/admin", "", false},
		{"/api/%2E./admin", "", false},
		{"/api/.%2e", "", false},
		{"/api/%2e/x", "", false},
		{"/api/x%00y", "", false},
		{"/api/v2/..%2fsecret", "", false},
		{"/api/v2/..%2Fsecret", "", false},
		{"/api/v2/..%5Csecret", "", false},
		{"/api/v2/..\\..\\secret", "", false},
		{"/api/v2/%2e%2e%5csecret", "", false},
		{"/api/a%2Fb%5Cc", "/a%2Fb%5Cc", true},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			got, ok := stripAPI([]byte(tc.target))
			assert.Equal(t, tc.ok, ok)
			if tc.ok {
				assert.Equal(t, tc.want, string(got))
			}
		})
	}
}

func FuzzStripAPI(f *testing.F) {
	for _, s := range []string{"/api", "/api/", "/api/a%2Fb?x=1", "/api/../x", "/api/%2e%2E/x", "/api?q", "/apix", "/api/x%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		rest, ok := stripAPI([]byte(target))
		if !ok {
			return
		}
		if len(rest) == 0 || rest[0] != '/' {
			t.Fatalf("%q: result %q does not start with /", target, rest)
		}
		path, _, _ := strings.Cut(string(rest), "?")
		seps := strings.NewReplacer("\\", "/", "%2f", "/", "%2F", "/", "%5c", "/", "%5C", "/")
		for _, seg := range strings.Split(seps.Replace(path), "/") {
			decoded := strings.NewReplacer("%2e", ".", "%2E", ".").Replace(seg)
			if decoded == "." || decoded == ".." {
				t.Fatalf("%q: dot segment %q passed", target, seg)
			}
		}
		if strings.Contains(path, "%00") || strings.Contains(path, "\x00") {
			t.Fatalf("%q: NUL passed", target)
		}
	})
}

func TestErrorKind(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		err  error
		want string
	}{
		{fasthttp.ErrTimeout, ErrorKindTimeout},
		{fasthttp.ErrDialTimeout, ErrorKindTimeout},
		{fmt.Errorf("websocket dial: %w", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}), ErrorKindTimeout},
		{fasthttp.ErrNoFreeConns, ErrorKindPoolExhausted},
		{refused, ErrorKindConnect},
		{fmt.Errorf("websocket dial: %w", refused), ErrorKindConnect},
		{&net.DNSError{Err: "no such host", Name: "backend"}, ErrorKindConnect},
		{&UpgradeRefusedError{StatusCode: 403}, ErrorKindUpgrade},
		{fasthttp.ErrConnectionClosed, ErrorKindOther},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, errorKind(tc.err), "%v", tc.err)
	}

	var c errorCounts
	c.add("http://a", fasthttp.ErrTimeout)
	c.add("http://a", fasthttp.ErrTimeout)
	c.add("http://b", refused)
	assert.ElementsMatch(t, []BackendErrors{
		{Backend: "http://a", Kind: ErrorKindTimeout, Count: 2},
		{Backend: "http://b", Kind: ErrorKindConnect, Count: 1},
	}, c.snapshot())
}
