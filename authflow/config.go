package authflow

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Config configures sign-in. The environment variable of each field is in
// its comment; defaults are applied by withDefaults, in one place.
type Config struct {
	// AppBaseURL (APP_BASE_URL) is the gateway's public URL. The OIDC
	// redirect_uri is AppBaseURL + RedirectPath: it is never built from the
	// request. Its origin is trusted for CSRF and is the default frontend.
	// Required.
	AppBaseURL string

	// Issuer (OIDC_ISSUER) is the provider, discovered through
	// <issuer>/.well-known/openid-configuration. Each endpoint below, when
	// set, overrides what discovery found; without an issuer all of
	// AuthorizationEndpoint, TokenEndpoint and JWKSURI are required.
	Issuer                string
	AuthorizationEndpoint string // OIDC_AUTHORIZATION_ENDPOINT
	TokenEndpoint         string // OIDC_TOKEN_ENDPOINT
	UserinfoEndpoint      string // OIDC_USERINFO_ENDPOINT
	JWKSURI               string // OIDC_JWKS_URI
	RevocationEndpoint    string // OIDC_REVOCATION_ENDPOINT; empty: refresh tokens are not revoked at logout
	EndSessionEndpoint    string // OIDC_END_SESSION_ENDPOINT; empty: logout ?redirect=1 has no IdP URL

	// ClientID and ClientSecret (OIDC_CLIENT_ID, OIDC_CLIENT_SECRET) of the
	// gateway, a confidential client. ClientID is required.
	ClientID     string
	ClientSecret string
	// RedirectPath (OIDC_REDIRECT_PATH) is the callback path. Default
	// /auth/callback.
	RedirectPath string
	// Scopes (OIDC_SCOPES). Default openid profile email offline_access.
	Scopes []string
	// IDTokenMaxAge (ID_TOKEN_MAX_AGE_SECONDS) refuses ID tokens whose
	// auth_time (or iat) is older. 0 = off.
	IDTokenMaxAge time.Duration
	// RefreshSkew (TOKEN_REFRESH_SKEW_SECONDS): tokens are refreshed when
	// they expire within this. Default 60s.
	RefreshSkew time.Duration
	// HTTPTimeout bounds each call to the provider. Default 10s.
	HTTPTimeout time.Duration

	// Cookie configures the session cookie.
	Cookie CookieConfig

	// UserinfoCacheTTL is how long /whoami/me reuses a userinfo answer per
	// session. Default 60s.
	UserinfoCacheTTL time.Duration
}

// CookieConfig configures the session cookie. It carries only an opaque,
// random session id.
type CookieConfig struct {
	// Name (SESSION_COOKIE_NAME). Default "sid". A "__Host-" name requires
	// Secure and no Domain; a "__Secure-" name requires Secure.
	Name string
	// Domain (SESSION_COOKIE_DOMAIN). Empty (the default) makes a host-only
	// cookie. Never taken from the request.
	Domain string
	// Insecure turns the Secure attribute off (SESSION_COOKIE_SECURE=false),
	// for plain-http development only.
	Insecure bool
	// SameSite (SESSION_COOKIE_SAMESITE): Lax (default), Strict or None
	// (None requires Secure).
	SameSite string
	// MaxAge is the cookie's lifetime; set it to the session's absolute
	// lifetime (the server enforces the idle timeout). Default 7 days.
	MaxAge time.Duration
}

func (c Config) withDefaults() Config {
	if c.RedirectPath == "" {
		c.RedirectPath = "/auth/callback"
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{"openid", "profile", "email", "offline_access"}
	}
	if c.RefreshSkew == 0 {
		c.RefreshSkew = 60 * time.Second
	}
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = 10 * time.Second
	}
	if c.UserinfoCacheTTL == 0 {
		c.UserinfoCacheTTL = 60 * time.Second
	}
	if c.Cookie.Name == "" {
		c.Cookie.Name = "sid"
	}
	if c.Cookie.MaxAge == 0 {
		c.Cookie.MaxAge = 7 * 24 * time.Hour
	}
	if c.Cookie.SameSite == "" {
		c.Cookie.SameSite = "Lax"
	}
	return c
}

// Enabled reports whether sign-in is configured at all (an issuer or the
// explicit endpoints, and a client id). Without it the gateway refuses
// every /api request.
func (c Config) Enabled() bool {
	return c.ClientID != "" && (c.Issuer != "" || c.AuthorizationEndpoint != "" || c.TokenEndpoint != "")
}

// Validate reports every problem, each naming its environment variable.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(env, reason string) { errs = append(errs, fmt.Errorf("%s: %s", env, reason)) }
	if u, err := url.Parse(c.AppBaseURL); c.AppBaseURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("APP_BASE_URL", "must be the gateway's absolute http(s) URL, e.g. https://gateway.example.com")
	}
	if c.ClientID == "" {
		bad("OIDC_CLIENT_ID", "is required")
	}
	if c.Issuer == "" && (c.AuthorizationEndpoint == "" || c.TokenEndpoint == "" || c.JWKSURI == "") {
		bad("OIDC_ISSUER", "is required unless OIDC_AUTHORIZATION_ENDPOINT, OIDC_TOKEN_ENDPOINT and OIDC_JWKS_URI are all set")
	}
	for env, v := range map[string]string{
		"OIDC_ISSUER": c.Issuer, "OIDC_AUTHORIZATION_ENDPOINT": c.AuthorizationEndpoint,
		"OIDC_TOKEN_ENDPOINT": c.TokenEndpoint, "OIDC_USERINFO_ENDPOINT": c.UserinfoEndpoint,
		"OIDC_JWKS_URI": c.JWKSURI, "OIDC_REVOCATION_ENDPOINT": c.RevocationEndpoint,
		"OIDC_END_SESSION_ENDPOINT": c.EndSessionEndpoint,
	} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(env, "must be an absolute http(s) URL")
		}
	}
	if !strings.HasPrefix(c.RedirectPath, "/") || strings.HasPrefix(c.RedirectPath, "//") {
		bad("OIDC_REDIRECT_PATH", "must be a path starting with a single /")
	}
	if !containsScope(c.Scopes, "openid") {
		bad("OIDC_SCOPES", "must include openid")
	}
	if c.IDTokenMaxAge < 0 {
		bad("ID_TOKEN_MAX_AGE_SECONDS", "must not be negative")
	}
	if c.RefreshSkew < 0 {
		bad("TOKEN_REFRESH_SKEW_SECONDS", "must not be negative")
	}
	if _, err := c.Cookie.sameSite(); err != nil {
		bad("SESSION_COOKIE_SAMESITE", err.Error())
	} else if strings.EqualFold(c.Cookie.SameSite, "none") && c.Cookie.Insecure {
		bad("SESSION_COOKIE_SAMESITE", "None requires SESSION_COOKIE_SECURE=true")
	}
	switch {
	case strings.HasPrefix(c.Cookie.Name, "__Host-"):
		if c.Cookie.Insecure || c.Cookie.Domain != "" {
			bad("SESSION_COOKIE_NAME", "a __Host- cookie requires SESSION_COOKIE_SECURE=true and no SESSION_COOKIE_DOMAIN")
		}
	case strings.HasPrefix(c.Cookie.Name, "__Secure-"):
		if c.Cookie.Insecure {
			bad("SESSION_COOKIE_NAME", "a __Secure- cookie requires SESSION_COOKIE_SECURE=true")
		}
	}
	if !validCookieName(c.Cookie.Name) {
		bad("SESSION_COOKIE_NAME", "must be a cookie name (letters, digits, - _ .)")
	}
	return errors.Join(errs...)
}

func (c CookieConfig) sameSite() (fasthttp.CookieSameSite, error) {
	switch strings.ToLower(c.SameSite) {
	case "", "lax":
		return fasthttp.CookieSameSiteLaxMode, nil
	case "strict":
		return fasthttp.CookieSameSiteStrictMode, nil
	case "none":
		return fasthttp.CookieSameSiteNoneMode, nil
	}
	return 0, errors.New("must be Lax, Strict or None")
}

func validCookieName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func containsScope(scopes []string, s string) bool {
	for _, x := range scopes {
		if x == s {
			return true
		}
	}
	return false
}
