package authflow

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/valyala/fasthttp"
)

func TestCrossOriginProtection(t *testing.T) {
	a := &Auth{
		ownOrigin: "https://gw.example.com",
		allows:    func(o []byte) bool { return string(o) == "https://app.example.com" },
	}
	tests := []struct {
		name, method, origin, site, host string
		refused                          bool
	}{
		{"safe method from anywhere", "GET", "https://evil.test", "cross-site", "gw.example.com", false},
		{"head", "HEAD", "https://evil.test", "cross-site", "gw.example.com", false},
		{"spa on allowed origin, same-site", "POST", "https://app.example.com", "same-site", "gw.example.com", false},
		{"spa on allowed origin, cross-site", "DELETE", "https://app.example.com", "cross-site", "gw.example.com", false},
		{"gateway's own page", "POST", "https://gw.example.com", "same-origin", "gw.example.com", false},
		{"same-origin without origin header", "POST", "", "same-origin", "gw.example.com", false},
		{"user typed / bookmark", "POST", "", "none", "gw.example.com", false},
		{"foreign site, browser marks cross-site", "POST", "https://evil.test", "cross-site", "gw.example.com", true},
		{"foreign site, same-site sibling", "PUT", "https://other.example.com", "same-site", "gw.example.com", true},
		{"cross-site without origin", "POST", "", "cross-site", "gw.example.com", true},
		{"null origin", "POST", "null", "cross-site", "gw.example.com", true},
		{"old browser, foreign origin", "POST", "https://evil.test", "", "gw.example.com", true},
		{"old browser, origin equals host", "POST", "http://gw.example.com:8080", "", "gw.example.com:8080", false},
		{"non-browser client", "POST", "", "", "gw.example.com", false},
		{"patch foreign", "PATCH", "https://evil.test", "cross-site", "gw.example.com", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod(tc.method)
			ctx.Request.Header.SetHost(tc.host)
			if tc.origin != "" {
				ctx.Request.Header.Set("Origin", tc.origin)
			}
			if tc.site != "" {
				ctx.Request.Header.Set("Sec-Fetch-Site", tc.site)
			}
			assert.Equal(t, tc.refused, a.crossOriginRefused(&ctx))
			if tc.refused {
				assert.Equal(t, fasthttp.StatusForbidden, ctx.Response.StatusCode())
				assert.JSONEq(t, `{"error":"Forbidden"}`, string(ctx.Response.Body()))
			}
		})
	}
}
