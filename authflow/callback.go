package authflow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apigetaway/getaway/sessioncache"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// idClaims are the ID token claims the session keeps.
type idClaims struct {
	Nonce    string   `json:"nonce"`
	AuthTime int64    `json:"auth_time"`
	Email    string   `json:"email"`
	Name     string   `json:"name"`
	Username string   `json:"preferred_username"`
	Picture  string   `json:"picture"`
	Groups   []string `json:"groups"`
}

// callback finishes the flow: the state is taken (once), the code exchanged
// with the PKCE verifier, the ID token verified (signature, iss, aud, exp,
// iat by go-oidc; nonce and max age here), and a new session created under
// a new id, replacing any session the browser had (no fixation).
func (a *Auth) callback(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	state := string(args.Peek("state"))
	if state == "" {
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_state", "the sign-in state is missing")
		return
	}
	st, err := a.store.TakeState(ctx, state)
	switch {
	case errors.Is(err, sessioncache.ErrNotFound):
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_state", "the sign-in state is unknown, expired or already used")
		return
	case err != nil:
		a.log.Warn("login state unavailable", zap.Error(err))
		writeBody(ctx, fasthttp.StatusServiceUnavailable, bodyUnavailable)
		return
	}
	if a.now().Unix()-st.CreatedAt > int64(loginAge/time.Second) {
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_state", "the sign-in took too long")
		return
	}
	if e := args.Peek("error"); len(e) > 0 {
		a.log.Info("provider refused sign-in", zap.ByteString("error", e))
		writeError(ctx, fasthttp.StatusBadRequest, "login_failed", "the identity provider did not sign the user in")
		return
	}
	code := string(args.Peek("code"))
	if code == "" {
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_request", "the authorization code is missing")
		return
	}

	c, cancel := context.WithTimeout(context.Background(), 2*a.cfg.HTTPTimeout)
	defer cancel()
	sess, err := a.exchange(c, code, st)
	if err != nil {
		a.log.Warn("sign-in failed at the provider", zap.Error(err))
		writeError(ctx, fasthttp.StatusBadGateway, "login_failed", "the identity provider exchange failed")
		return
	}

	if old := a.sessionID(ctx); old != nil {
		if err := a.store.DeleteSession(c, string(old)); err != nil {
			a.log.Warn("previous session not deleted", zap.Error(err))
		}
	}
	id := newID()
	if err := a.store.PutSession(c, id, sess); err != nil {
		a.log.Warn("session not stored", zap.Error(err))
		writeBody(ctx, fasthttp.StatusServiceUnavailable, bodyUnavailable)
		return
	}
	a.setSessionCookie(ctx, id, a.cfg.Cookie.MaxAge)
	a.log.Info("signed in", zap.String("sub", sess.Sub))
	redirect(ctx, st.FrontendOrigin+SafeNext(st.Next))
}

// exchange redeems the code and returns the session it yields.
func (a *Auth) exchange(ctx context.Context, code string, st *sessioncache.LoginState) (*sessioncache.Session, error) {
	tok, err := a.idp.oauth.Exchange(a.idp.ctx(ctx), code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return nil, fmt.Errorf("code exchange: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, errors.New("token response has no id_token")
	}
	idt, claims, err := a.verifyIDToken(ctx, raw)
	if err != nil {
		return nil, err
	}
	// go-oidc does not check the nonce: it is ours to compare.
	if claims.Nonce == "" || claims.Nonce != st.Nonce {
		return nil, errors.New("id token nonce does not match the login")
	}
	if max := a.cfg.IDTokenMaxAge; max > 0 {
		at := claims.AuthTime
		if at == 0 {
			at = idt.IssuedAt.Unix()
		}
		if a.now().Unix()-at > int64(max/time.Second) {
			return nil, errors.New("id token authentication is older than ID_TOKEN_MAX_AGE_SECONDS")
		}
	}
	name := claims.Name
	if name == "" {
		name = claims.Username
	}
	s := &sessioncache.Session{
		Sub:          idt.Subject,
		Email:        claims.Email,
		Name:         name,
		Picture:      claims.Picture,
		Groups:       claims.Groups,
		AccessToken:  tok.AccessToken,
		RefreshToken: tok.RefreshToken,
		IDToken:      raw,
		CreatedAt:    a.now().Unix(),
		Version:      1,
	}
	if !tok.Expiry.IsZero() {
		s.AccessExpiresAt = tok.Expiry.Unix()
	}
	return s, nil
}

// verifyIDToken checks raw's signature, issuer, audience and expiry.
func (a *Auth) verifyIDToken(ctx context.Context, raw string) (*oidc.IDToken, *idClaims, error) {
	idt, err := a.idp.verifier.Verify(a.idp.ctx(ctx), raw)
	if err != nil {
		return nil, nil, fmt.Errorf("id token: %w", err)
	}
	var claims idClaims
	if err := idt.Claims(&claims); err != nil {
		return nil, nil, fmt.Errorf("id token claims: %w", err)
	}
	return idt, &claims, nil
}
