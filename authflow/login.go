package authflow

import (
	"time"

	"github.com/apigetaway/getaway/sessioncache"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// login starts the authorization code flow: PKCE S256 verifier, state and
// nonce are kept in the store for StateTTL, single use, and the browser is
// sent to the provider.
func (a *Auth) login(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	next := SafeNext(string(args.Peek("next")))
	origin, ok := a.frontendOrigin(string(args.Peek("frontend_host")),
		ctx.Request.Header.Peek(fasthttp.HeaderOrigin), ctx.Request.Header.Referer())
	if !ok {
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_request", "frontend_host is not an allowed origin")
		return
	}
	st := &sessioncache.LoginState{
		Verifier:       oauth2.GenerateVerifier(),
		Nonce:          newID(),
		Next:           next,
		FrontendOrigin: origin,
		CreatedAt:      a.now().Unix(),
	}
	state := newID()
	if err := a.store.PutState(ctx, state, st); err != nil {
		a.log.Warn("login state not stored", zap.Error(err))
		writeBody(ctx, fasthttp.StatusServiceUnavailable, bodyUnavailable)
		return
	}
	target := a.idp.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce))
	redirect(ctx, target)
}

// redirect answers 302 to target as it is (fasthttp's ctx.Redirect would
// re-encode it).
func redirect(ctx *fasthttp.RequestCtx, target string) {
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.Response.Header.Set(fasthttp.HeaderLocation, target)
	ctx.SetStatusCode(fasthttp.StatusFound)
}

// loginAge bounds how old a login may be at the callback, as the state
// record's TTL does in the store.
const loginAge = 10 * time.Minute
