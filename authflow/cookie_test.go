package authflow

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/valyala/fasthttp"
)

func TestSessionCookieAttributes(t *testing.T) {
	tests := []struct {
		name         string
		cookie       CookieConfig
		want, absent []string
	}{
		{"defaults", CookieConfig{}, []string{"sid=abc", "HttpOnly", "secure", "SameSite=Lax", "path=/", "max-age=3600"}, []string{"domain="}},
		{"strict with domain", CookieConfig{SameSite: "Strict", Domain: "example.com"}, []string{"SameSite=Strict", "domain=example.com", "secure"}, nil},
		{"insecure for local http", CookieConfig{Insecure: true}, []string{"HttpOnly", "SameSite=Lax"}, []string{"secure"}},
		{"__Host- prefix", CookieConfig{Name: "__Host-sid"}, []string{"__Host-sid=abc", "secure", "path=/"}, []string{"domain="}},
		{"none", CookieConfig{SameSite: "None"}, []string{"SameSite=None", "secure"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Cookie: tc.cookie}.withDefaults()
			site, err := cfg.Cookie.sameSite()
			assert.NoError(t, err)
			a := &Auth{cfg: cfg, cookieSite: site}
			var ctx fasthttp.RequestCtx
			a.setSessionCookie(&ctx, "abc", time.Hour)
			got := string(ctx.Response.Header.Peek("Set-Cookie"))
			for _, w := range tc.want {
				assert.Contains(t, strings.ToLower(got), strings.ToLower(w))
			}
			for _, w := range tc.absent {
				assert.NotContains(t, strings.ToLower(got), strings.ToLower(w))
			}
		})
	}
}
