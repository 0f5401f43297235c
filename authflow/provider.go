package authflow

import (
	"context"
	"fmt"
	"net/http"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// provider is the OpenID provider as the gateway uses it: endpoints fixed at
// start-up (discovery, then explicit overrides), the OAuth2 client and the
// ID token verifier.
type provider struct {
	oauth         oauth2.Config
	verifier      *oidc.IDTokenVerifier
	userinfoURL   string
	revocationURL string
	endSessionURL string
	client        *http.Client // every call to the provider goes through it
}

// discovered holds the discovery fields go-oidc does not expose itself.
type discovered struct {
	RevocationEndpoint string `json:"revocation_endpoint"`
	EndSessionEndpoint string `json:"end_session_endpoint"`
}

// newProvider discovers the provider (when an issuer is set) and applies the
// explicit endpoints over what it found. It fails when discovery fails:
// the gateway does not start half-configured.
func newProvider(ctx context.Context, cfg Config) (*provider, error) {
	client := &http.Client{Timeout: cfg.HTTPTimeout}
	ctx = oidc.ClientContext(ctx, client)

	pc := oidc.ProviderConfig{
		IssuerURL:   cfg.Issuer,
		AuthURL:     cfg.AuthorizationEndpoint,
		TokenURL:    cfg.TokenEndpoint,
		UserInfoURL: cfg.UserinfoEndpoint,
		JWKSURL:     cfg.JWKSURI,
	}
	p := &provider{client: client, revocationURL: cfg.RevocationEndpoint, endSessionURL: cfg.EndSessionEndpoint}
	if cfg.Issuer != "" {
		d, err := oidc.NewProvider(ctx, cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("oidc discovery at %s: %w", cfg.Issuer, err)
		}
		var claims struct {
			discovered
			JWKSURI string `json:"jwks_uri"`
		}
		if err := d.Claims(&claims); err != nil {
			return nil, fmt.Errorf("oidc discovery at %s: %w", cfg.Issuer, err)
		}
		ep := d.Endpoint()
		pc.AuthURL = firstNonEmpty(pc.AuthURL, ep.AuthURL)
		pc.TokenURL = firstNonEmpty(pc.TokenURL, ep.TokenURL)
		pc.UserInfoURL = firstNonEmpty(pc.UserInfoURL, d.UserInfoEndpoint())
		pc.JWKSURL = firstNonEmpty(pc.JWKSURL, claims.JWKSURI)
		p.revocationURL = firstNonEmpty(p.revocationURL, claims.RevocationEndpoint)
		p.endSessionURL = firstNonEmpty(p.endSessionURL, claims.EndSessionEndpoint)
	}
	if pc.AuthURL == "" || pc.TokenURL == "" || pc.JWKSURL == "" {
		return nil, fmt.Errorf("oidc: the provider has no authorization, token or jwks endpoint")
	}
	// Keys are fetched (and refetched on rotation) with the provider
	// client for the life of the process, so the context is not the
	// caller's.
	keyCtx := oidc.ClientContext(context.Background(), client)
	p.verifier = oidc.NewVerifier(cfg.Issuer, oidc.NewRemoteKeySet(keyCtx, pc.JWKSURL), &oidc.Config{
		ClientID:        cfg.ClientID,
		SkipIssuerCheck: cfg.Issuer == "",
	})
	p.userinfoURL = pc.UserInfoURL
	p.oauth = oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		// client_secret_basic, fixed: auto-detection would retry a failed
		// call with the other style and so spend a refresh token twice.
		Endpoint:    oauth2.Endpoint{AuthURL: pc.AuthURL, TokenURL: pc.TokenURL, AuthStyle: oauth2.AuthStyleInHeader},
		RedirectURL: cfg.AppBaseURL + cfg.RedirectPath,
		Scopes:      cfg.Scopes,
	}
	return p, nil
}

// ctx returns a context whose OAuth2 calls use the provider client.
func (p *provider) ctx(parent context.Context) context.Context {
	return context.WithValue(parent, oauth2.HTTPClient, p.client)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
