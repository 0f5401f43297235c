package authflow

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"github.com/valyala/fasthttp"
)

// AdminConfig says who may use the admin API.
type AdminConfig struct {
	// Tokens (ADMIN_TOKENS) are bearer tokens for curl, by name: the name
	// is what the change log records. Each token must be at least 16
	// characters.
	Tokens map[string]string
	// Emails (ADMIN_EMAILS): signed-in users with one of these e-mail
	// addresses (compared case-insensitively) are admins.
	Emails []string
	// Groups (ADMIN_GROUPS): signed-in users with one of these groups in
	// their ID token's groups claim are admins.
	Groups []string
}

// Enabled reports whether anybody can be an admin.
func (c AdminConfig) Enabled() bool {
	return len(c.Tokens) > 0 || len(c.Emails) > 0 || len(c.Groups) > 0
}

// Validate reports tokens too short to be secret.
func (c AdminConfig) Validate() error {
	var errs []error
	for name, tok := range c.Tokens {
		if len(tok) < 16 {
			errs = append(errs, fmt.Errorf("ADMIN_TOKENS: token %q is shorter than 16 characters", name))
		}
	}
	return errors.Join(errs...)
}

// Admin authorizes admin requests. It is safe for concurrent use.
type Admin struct {
	tokens []adminToken
	emails map[string]struct{}
	groups map[string]struct{}
	auth   *Auth // nil when sign-in is not configured: tokens only
}

// adminToken keeps a token's digest: comparing digests of equal length in
// constant time leaks neither the tokens' contents nor their lengths.
type adminToken struct {
	name   string
	digest [32]byte
}

// NewAdmin returns the admin authorizer; auth may be nil (tokens only).
func NewAdmin(cfg AdminConfig, auth *Auth) *Admin {
	a := &Admin{emails: map[string]struct{}{}, groups: map[string]struct{}{}, auth: auth}
	for name, tok := range cfg.Tokens {
		a.tokens = append(a.tokens, adminToken{name: name, digest: sha256.Sum256([]byte(tok))})
	}
	for _, e := range cfg.Emails {
		a.emails[strings.ToLower(strings.TrimSpace(e))] = struct{}{}
	}
	for _, g := range cfg.Groups {
		a.groups[strings.TrimSpace(g)] = struct{}{}
	}
	return a
}

var bearerPrefix = []byte("Bearer ")

// Authorize decides an admin request: a bearer token from ADMIN_TOKENS, or
// a signed-in user in ADMIN_EMAILS or ADMIN_GROUPS (unsafe methods then
// pass the cross-origin check). It returns who (the token's name or the
// user's e-mail) for the change log, or false after answering 401 (no or
// bad credentials) or 403 (signed in, not an admin).
func (a *Admin) Authorize(ctx *fasthttp.RequestCtx) (who string, ok bool) {
	if h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization); len(h) > 0 {
		if len(h) > len(bearerPrefix) && bytes.EqualFold(h[:len(bearerPrefix)], bearerPrefix) {
			if name, ok := a.token(h[len(bearerPrefix):]); ok {
				return "token:" + name, true
			}
		}
		writeBody(ctx, fasthttp.StatusUnauthorized, bodyUnauthorized)
		return "", false
	}
	if a.auth == nil || a.auth.sessionID(ctx) == nil {
		writeBody(ctx, fasthttp.StatusUnauthorized, bodyUnauthorized)
		return "", false
	}
	if a.auth.crossOriginRefused(ctx) {
		return "", false
	}
	sess, ok := a.auth.session(ctx)
	if !ok {
		return "", false
	}
	if _, ok := a.emails[strings.ToLower(sess.Email)]; ok && sess.Email != "" {
		return "user:" + sess.Email, true
	}
	for _, g := range sess.Groups {
		if _, ok := a.groups[g]; ok {
			return "user:" + sess.Email, true
		}
	}
	writeBody(ctx, fasthttp.StatusForbidden, bodyForbidden)
	return "", false
}

// token returns the name of the configured token equal to presented. Every
// configured token is compared, so the time taken does not tell which one
// (or whether any) matched.
func (a *Admin) token(presented []byte) (string, bool) {
	d := sha256.Sum256(presented)
	name, found := "", 0
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare(d[:], t.digest[:]) == 1 {
			name, found = t.name, 1
		}
	}
	return name, found == 1
}
