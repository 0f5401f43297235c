package testidp

import (
	"bytes"
	"io"
	"net/http"
	"net/url"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// The OP's endpoint paths; exampleop changes only the authorization
// endpoint ("/auth").
var (
	tokenPath      = op.DefaultEndpoints.Token.Relative()      // "/oauth/token"
	revocationPath = op.DefaultEndpoints.Revocation.Relative() // "/revoke"
)

// maxTokenForm bounds how much of a token request body the counter buffers.
const maxTokenForm = 1 << 20

// intercept counts token and revocation requests and applies the fault
// switches before the OP sees a request.
func (p *IdP) intercept(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case tokenPath:
			grant, err := peekGrantType(r)
			if err != nil {
				http.Error(w, "cannot read request body", http.StatusBadRequest)
				return
			}
			p.countsMu.Lock()
			p.tokenRequests[grant]++
			p.countsMu.Unlock()
			if p.tokenDown.Load() {
				http.Error(w, "service unavailable", http.StatusServiceUnavailable)
				return
			}
		case revocationPath:
			p.revocations.Add(1)
		}
		next.ServeHTTP(w, r)
	})
}

// peekGrantType returns the request's grant_type and leaves r.Body as it was
// for the OP, which parses the form itself.
func peekGrantType(r *http.Request) (string, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxTokenForm))
	if err != nil {
		return "", err
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if form, err := url.ParseQuery(string(body)); err == nil && form.Has("grant_type") {
		return form.Get("grant_type"), nil
	}
	return r.URL.Query().Get("grant_type"), nil
}

// TokenRequests returns how many requests reached the token endpoint with
// grant_type grantType ("authorization_code", "refresh_token", ...),
// including those answered 503 by [IdP.SetTokenEndpointDown].
func (p *IdP) TokenRequests(grantType string) int {
	p.countsMu.Lock()
	defer p.countsMu.Unlock()
	return p.tokenRequests[grantType]
}

// Revocations returns how many requests reached the revocation endpoint,
// whatever their outcome.
func (p *IdP) Revocations() int { return int(p.revocations.Load()) }

// SetTokenEndpointDown makes the token endpoint answer every request with 503
// and a plain-text body while down is true, as an overloaded or unreachable
// IdP behind a load balancer would; the other endpoints keep working. Use
// [IdP.Stop] for a provider that refuses connections altogether.
func (p *IdP) SetTokenEndpointDown(down bool) { p.tokenDown.Store(down) }

// SetRefreshInvalid makes every refresh_token grant fail with 400
// invalid_grant while invalid is true, as if the IdP had revoked the user's
// refresh tokens; the tokens themselves are kept, so setting it back to false
// makes them work again. To invalidate one refresh token for good, revoke it
// at the revocation endpoint (or end the session at end-session): using it
// afterwards also yields invalid_grant.
func (p *IdP) SetRefreshInvalid(invalid bool) { p.refreshDisabled.Store(invalid) }
