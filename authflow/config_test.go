package authflow

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func validConfig() Config {
	return Config{AppBaseURL: "https://gw.example.com", Issuer: "https://idp.example.com", ClientID: "getaway"}
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, validConfig().Validate())
	tests := []struct {
		name   string
		change func(*Config)
		env    string
	}{
		{"no base url", func(c *Config) { c.AppBaseURL = "" }, "APP_BASE_URL"},
		{"relative base url", func(c *Config) { c.AppBaseURL = "/app" }, "APP_BASE_URL"},
		{"no client id", func(c *Config) { c.ClientID = "" }, "OIDC_CLIENT_ID"},
		{"no issuer nor endpoints", func(c *Config) { c.Issuer = "" }, "OIDC_ISSUER"},
		{"bad endpoint", func(c *Config) { c.TokenEndpoint = "ftp://x" }, "OIDC_TOKEN_ENDPOINT"},
		{"redirect path", func(c *Config) { c.RedirectPath = "//evil" }, "OIDC_REDIRECT_PATH"},
		{"no openid scope", func(c *Config) { c.Scopes = []string{"email"} }, "OIDC_SCOPES"},
		{"samesite", func(c *Config) { c.Cookie.SameSite = "sometimes" }, "SESSION_COOKIE_SAMESITE"},
		{"samesite none insecure", func(c *Config) { c.Cookie.SameSite = "None"; c.Cookie.Insecure = true }, "SESSION_COOKIE_SAMESITE"},
		{"__Host- with domain", func(c *Config) { c.Cookie.Name = "__Host-sid"; c.Cookie.Domain = "example.com" }, "SESSION_COOKIE_NAME"},
		{"__Host- insecure", func(c *Config) { c.Cookie.Name = "__Host-sid"; c.Cookie.Insecure = true }, "SESSION_COOKIE_NAME"},
		{"__Secure- insecure", func(c *Config) { c.Cookie.Name = "__Secure-sid"; c.Cookie.Insecure = true }, "SESSION_COOKIE_NAME"},
		{"bad cookie name", func(c *Config) { c.Cookie.Name = "s id;" }, "SESSION_COOKIE_NAME"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.change(&c)
			err := c.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.env)
		})
	}
	explicit := Config{AppBaseURL: "https://gw", ClientID: "x",
		AuthorizationEndpoint: "https://idp/auth", TokenEndpoint: "https://idp/token", JWKSURI: "https://idp/keys"}
	assert.NoError(t, explicit.Validate(), "explicit endpoints need no issuer")
}
