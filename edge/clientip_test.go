package edge

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// requestFrom returns a request context whose socket peer is peer and
// whose head carries one X-Forwarded-For line per element of xff.
func requestFrom(t testing.TB, peer string, xff ...string) *fasthttp.RequestCtx {
	t.Helper()
	ap, err := netip.ParseAddrPort(peer)
	require.NoError(t, err)
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&fasthttp.Request{}, net.TCPAddrFromAddrPort(ap), nil)
	ctx.Request.SetRequestURI("/auth/login")
	for _, v := range xff {
		ctx.Request.Header.Add(fasthttp.HeaderXForwardedFor, v)
	}
	return ctx
}

func mustPrefixes(t testing.TB, list string) []netip.Prefix {
	t.Helper()
	p, err := ParseTrustedProxies(list)
	require.NoError(t, err)
	return p
}

func TestClientIP(t *testing.T) {
	const lb = "10.0.0.3:40000" // a trusted load balancer
	tests := []struct {
		name    string
		trusted string
		peer    string
		xff     []string
		client  string // ClientIP
		fwdFor  string // the X-Forwarded-For sent on
	}{
		{name: "no trusted proxies: the peer", peer: "198.51.100.7:5000", client: "198.51.100.7", fwdFor: "198.51.100.7"},
		{name: "untrusted peer: a spoofed header is ignored", trusted: "10.0.0.0/8", peer: "198.51.100.7:5000",
			xff: []string{"6.6.6.6"}, client: "198.51.100.7", fwdFor: "198.51.100.7"},
		{name: "untrusted peer claiming a trusted address", trusted: "10.0.0.0/8", peer: "198.51.100.7:5000",
			xff: []string{"10.0.0.9, 10.0.0.2"}, client: "198.51.100.7", fwdFor: "198.51.100.7"},
		{name: "untrusted IPv6 peer", trusted: "10.0.0.0/8", peer: "[2001:db8::1]:5000",
			xff: []string{"6.6.6.6"}, client: "2001:db8::1", fwdFor: "2001:db8::1"},
		{name: "IPv4-mapped peer is IPv4", peer: "[::ffff:192.0.2.1]:5000", client: "192.0.2.1", fwdFor: "192.0.2.1"},
		{name: "trusted peer, one entry", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"203.0.113.9"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 10.0.0.3"},
		{name: "right-most untrusted entry; what the client wrote left of it is dropped", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"6.6.6.6, 203.0.113.9, 10.0.0.2"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 10.0.0.2, 10.0.0.3"},
		{name: "a client writing a trusted address before its own", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"10.0.0.9, 198.51.100.1"}, client: "198.51.100.1", fwdFor: "198.51.100.1, 10.0.0.3"},
		{name: "spaces and tabs around entries", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{" 6.6.6.6 ,\t203.0.113.9 ,  10.0.0.2\t"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 10.0.0.2, 10.0.0.3"},
		{name: "empty list elements are skipped", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{",203.0.113.9,, 10.0.0.2,"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 10.0.0.2, 10.0.0.3"},
		{name: "several header lines are one list", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"6.6.6.6, 203.0.113.9", "10.0.0.2"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 10.0.0.2, 10.0.0.3"},
		{name: "client in the last of several lines", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"10.9.9.9", "6.6.6.6", "203.0.113.9, 10.0.0.2"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 10.0.0.2, 10.0.0.3"},
		{name: "trusted hops spread over lines", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"6.6.6.6, 203.0.113.9", "10.0.0.1", "10.0.0.2"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 10.0.0.1, 10.0.0.2, 10.0.0.3"},
		{name: "all trusted: the left-most", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"10.0.0.7, 10.0.0.2"}, client: "10.0.0.7", fwdFor: "10.0.0.7, 10.0.0.2, 10.0.0.3"},
		{name: "trusted peer without the header: the peer", trusted: "10.0.0.0/8", peer: lb, client: "10.0.0.3", fwdFor: "10.0.0.3"},
		{name: "trusted peer, only empty elements", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{" , ,"}, client: "10.0.0.3", fwdFor: "10.0.0.3"},
		{name: "malformed entry reached: the peer", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"203.0.113.9, unknown"}, client: "10.0.0.3", fwdFor: "10.0.0.3"},
		{name: "malformed entry behind trusted hops: the peer", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"203.0.113.9, bogus", "10.0.0.2"}, client: "10.0.0.3", fwdFor: "10.0.0.3"},
		{name: "malformed entry left of the client is never reached", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"<script>, 203.0.113.9"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 10.0.0.3"},
		{name: "entry with a port is malformed", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"203.0.113.9:4711"}, client: "10.0.0.3", fwdFor: "10.0.0.3"},
		{name: "bracketed IPv6 is malformed", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"[2001:db8::1]"}, client: "10.0.0.3", fwdFor: "10.0.0.3"},
		{name: "IPv6 zone is malformed", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"fe80::1%eth0"}, client: "10.0.0.3", fwdFor: "10.0.0.3"},
		{name: "IPv6 client behind an IPv6 proxy", trusted: "2001:db8:ffff::/48", peer: "[2001:db8:ffff::1]:443",
			xff: []string{"2001:DB8:1::5"}, client: "2001:db8:1::5", fwdFor: "2001:db8:1::5, 2001:db8:ffff::1"},
		{name: "IPv4-mapped entry is IPv4", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"::ffff:203.0.113.9"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 10.0.0.3"},
		{name: "IPv4-mapped trusted hop is trusted", trusted: "10.0.0.0/8", peer: lb,
			xff: []string{"203.0.113.9, ::ffff:10.0.0.2"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 10.0.0.2, 10.0.0.3"},
		{name: "IPv4-mapped peer against an IPv4 range", trusted: "10.0.0.0/8", peer: "[::ffff:10.0.0.3]:40000",
			xff: []string{"203.0.113.9"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 10.0.0.3"},
		{name: "IPv4-mapped range trusts IPv4 peers", trusted: "::ffff:10.0.0.0/104", peer: lb,
			xff: []string{"203.0.113.9"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 10.0.0.3"},
		{name: "single trusted address", trusted: "192.0.2.10, 10.0.0.3", peer: lb,
			xff: []string{"203.0.113.9, 192.0.2.10"}, client: "203.0.113.9", fwdFor: "203.0.113.9, 192.0.2.10, 10.0.0.3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewClientIPPolicy(mustPrefixes(t, tc.trusted))
			ctx := requestFrom(t, tc.peer, tc.xff...)
			assert.Equal(t, tc.client, p.ClientIP(ctx).String(), "client IP")
			assert.Equal(t, tc.fwdFor, string(p.AppendForwardedFor(nil, ctx)), "X-Forwarded-For")
		})
	}
}

func TestClientIPNilPolicyIsThePeer(t *testing.T) {
	var p *ClientIPPolicy
	ctx := requestFrom(t, "198.51.100.7:5000", "6.6.6.6")
	assert.Equal(t, "198.51.100.7", p.ClientIP(ctx).String())
	assert.Equal(t, "198.51.100.7", string(p.AppendForwardedFor(nil, ctx)))
}

func TestClientIPAllocatesNothing(t *testing.T) {
	p := NewClientIPPolicy(mustPrefixes(t, "10.0.0.0/8"))
	untrusted := requestFrom(t, "198.51.100.7:5000", "6.6.6.6")
	trusted := requestFrom(t, "10.0.0.3:40000", "6.6.6.6, 2001:db8::5", "10.0.0.2")
	buf := make([]byte, 0, 256)
	for name, ctx := range map[string]*fasthttp.RequestCtx{"untrusted peer": untrusted, "trusted peer": trusted} {
		allocs := testing.AllocsPerRun(100, func() {
			_ = p.ClientIP(ctx)
			buf = p.AppendForwardedFor(buf[:0], ctx)
		})
		assert.Zero(t, allocs, name)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "", want: nil},
		{in: "10.0.0.0/8, 192.0.2.10 ,2001:db8::/32", want: []string{"10.0.0.0/8", "192.0.2.10/32", "2001:db8::/32"}},
		{in: "10.1.2.3/8", want: []string{"10.0.0.0/8"}},
		{in: "::ffff:10.0.0.0/104, ::ffff:192.0.2.1", want: []string{"10.0.0.0/8", "192.0.2.1/32"}},
		{in: "10.0.0.0/8,,", want: []string{"10.0.0.0/8"}},
		{in: "proxy.internal", wantErr: "not an IP address or CIDR"},
		{in: "10.0.0.0/33", wantErr: "not an IP address or CIDR"},
		{in: "fe80::1%eth0", wantErr: "zones are not allowed"},
		{in: "0.0.0.0/0", wantErr: "clients choose their IP"},
		{in: "10.0.0.0/8, ::/0", wantErr: "clients choose their IP"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTrustedProxies(tc.in)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			var s []string
			for _, p := range got {
				s = append(s, p.String())
			}
			assert.Equal(t, tc.want, s)
		})
	}
}

func TestLoadSettingsClientIPAndRateLimits(t *testing.T) {
	env := func(kv map[string]string) LookupEnv {
		return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
	}
	s, err := LoadSettings(env(nil))
	require.NoError(t, err)
	assert.Empty(t, s.Server.TrustedProxies)
	assert.Equal(t, RateLimit{Requests: 60, Window: 60e9}, s.Server.AuthRateLimit)
	assert.False(t, s.Server.APIRateLimitPerUser.enabled())
	assert.Equal(t, 100_000, s.Server.RateLimitMaxKeys)
	require.NotNil(t, s.Proxy.ForwardedFor, "the proxy gets the same trusted proxies")

	s, err = LoadSettings(env(map[string]string{
		"TRUSTED_PROXIES":         "10.0.0.0/8, 192.0.2.10",
		"AUTH_RATE_LIMIT":         "0",
		"API_RATE_LIMIT_PER_USER": "600/m",
		"RATE_LIMIT_MAX_KEYS":     "5000",
	}))
	require.NoError(t, err)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.10/32")}, s.Server.TrustedProxies)
	assert.False(t, s.Server.AuthRateLimit.enabled())
	assert.Equal(t, RateLimit{Requests: 600, Window: 60e9}, s.Server.APIRateLimitPerUser)
	assert.Equal(t, 5000, s.Server.RateLimitMaxKeys)
	ctx := requestFrom(t, "10.0.0.3:1", "203.0.113.9")
	assert.Equal(t, "203.0.113.9, 10.0.0.3", string(s.Proxy.ForwardedFor.AppendForwardedFor(nil, ctx)))

	_, err = LoadSettings(env(map[string]string{
		"TRUSTED_PROXIES":         "0.0.0.0/0, nope",
		"AUTH_RATE_LIMIT":         "60 per minute",
		"API_RATE_LIMIT_PER_USER": "10/fortnight",
		"RATE_LIMIT_MAX_KEYS":     "10",
	}))
	require.Error(t, err)
	for _, want := range []string{"TRUSTED_PROXIES: \"0.0.0.0/0\"", "\"nope\"", "AUTH_RATE_LIMIT:", "API_RATE_LIMIT_PER_USER:", "RATE_LIMIT_MAX_KEYS:"} {
		assert.Contains(t, err.Error(), want)
	}
}

// TestForwardedForReachesTheBackend checks the header a real backend gets,
// with and without a trusted proxy in front (the test client on 127.0.0.1
// plays the proxy), client copies of the header in several lines.
func TestForwardedForReachesTheBackend(t *testing.T) {
	be := startBackend(t, nil)
	tests := []struct {
		name    string
		trusted string
		want    string
	}{
		{name: "peer not trusted", want: "127.0.0.1"},
		{name: "peer trusted", trusted: "127.0.0.1", want: "203.0.113.9, 127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gw := startLimitedGateway(t, defaultBackendYAML(be.URL), Config{TrustedProxies: mustPrefixes(t, tc.trusted)}, nil)
			h := http.Header{fasthttp.HeaderXForwardedFor: {"6.6.6.6", "203.0.113.9"}}
			resp, _ := do(t, http.MethodGet, gw.URL+"/api/x", h, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			got := be.lastRequest(t).Header.PeekAll(fasthttp.HeaderXForwardedFor)
			var lines []string
			for _, v := range got {
				lines = append(lines, string(v))
			}
			assert.Equal(t, []string{tc.want}, lines, "one X-Forwarded-For line: %s", strings.Join(lines, " | "))
		})
	}
}
