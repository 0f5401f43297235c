package authflow

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/apigetaway/getaway/sessioncache"
	"github.com/bytedance/sonic"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// logout ends the session: it is deleted from the store (so every gateway
// instance refuses it at once), its refresh token revoked at the provider
// (RFC 7009) where the provider offers revocation, and the cookie cleared.
// It answers 204, or with ?redirect=1 200 {"logoutUrl": ...}: the provider's
// end-session URL with id_token_hint, for the SPA to navigate to.
func (a *Auth) logout(ctx *fasthttp.RequestCtx) {
	if a.crossOriginRefused(ctx) {
		return
	}
	c, cancel := context.WithTimeout(context.Background(), a.cfg.HTTPTimeout)
	defer cancel()
	var idToken string
	if id := a.sessionID(ctx); id != nil {
		// Through the renewed sessions kept in memory (unsaved.go), so
		// that the refresh token revoked is the live one.
		sess, err := a.currentSession(c, string(id))
		switch {
		case err == nil:
			idToken = sess.IDToken
			if err := a.store.DeleteSession(c, string(id)); err != nil {
				a.log.Warn("session not deleted at logout", zap.Error(err))
				writeBody(ctx, fasthttp.StatusServiceUnavailable, bodyUnavailable)
				return
			}
			if sess.RefreshToken != "" {
				a.revoke(c, sess.RefreshToken)
			}
			a.log.Info("signed out", zap.String("sub", sess.Sub))
		case !errors.Is(err, sessioncache.ErrNotFound):
			a.log.Warn("session unavailable at logout", zap.Error(err))
			writeBody(ctx, fasthttp.StatusServiceUnavailable, bodyUnavailable)
			return
		}
	}
	a.setSessionCookie(ctx, "", 0)
	if string(ctx.QueryArgs().Peek("redirect")) != "1" {
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	body, _ := sonic.Marshal(map[string]string{"logoutUrl": a.logoutURL(idToken)})
	writeBody(ctx, fasthttp.StatusOK, body)
}

// logoutURL is the provider's end-session URL for idToken, or the
// gateway's own URL when the provider has none.
func (a *Auth) logoutURL(idToken string) string {
	if a.idp.endSessionURL == "" {
		return a.cfg.AppBaseURL
	}
	q := url.Values{}
	if idToken != "" {
		q.Set("id_token_hint", idToken)
	}
	q.Set("client_id", a.cfg.ClientID)
	q.Set("post_logout_redirect_uri", a.cfg.AppBaseURL)
	sep := "?"
	if strings.Contains(a.idp.endSessionURL, "?") {
		sep = "&"
	}
	return a.idp.endSessionURL + sep + q.Encode()
}

// revoke asks the provider to revoke a refresh token (RFC 7009). Failure is
// logged: the session is already gone from the gateway.
func (a *Auth) revoke(ctx context.Context, refreshToken string) {
	if a.idp.revocationURL == "" {
		return
	}
	form := url.Values{"token": {refreshToken}, "token_type_hint": {"refresh_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.idp.revocationURL, strings.NewReader(form.Encode()))
	if err != nil {
		a.log.Warn("revocation request", zap.Error(err))
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(a.cfg.ClientID), url.QueryEscape(a.cfg.ClientSecret))
	resp, err := a.idp.client.Do(req)
	if err != nil {
		a.log.Warn("refresh token not revoked", zap.Error(err))
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		a.log.Warn("refresh token not revoked", zap.Int("status", resp.StatusCode))
	}
}
