package authflow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/upstream"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

var (
	// errSessionExpired: the session cannot be refreshed (the provider
	// said invalid_grant, or there is no refresh token and the access
	// token expired). Answer 401 {"error":"Session expired"}.
	errSessionExpired = errors.New("authflow: session expired")
	// errProviderDown: the provider could not be asked. The request may
	// proceed while the access token is still valid; otherwise 503.
	errProviderDown = errors.New("authflow: provider unavailable")
)

// Authenticate is RequireAuth for /api/*: cross-origin check for unsafe
// methods, cookie -> session (normally from process memory), refresh when
// the access token is about to expire, identity. On refusal it writes the
// answer (401, 403 or 503) and returns false. The hot path allocates
// nothing.
func (a *Auth) Authenticate(ctx *fasthttp.RequestCtx) (upstream.Identity, bool) {
	if a.crossOriginRefused(ctx) {
		return upstream.Identity{}, false
	}
	sess, ok := a.session(ctx)
	if !ok {
		return upstream.Identity{}, false
	}
	return upstream.Identity{Sub: sess.Sub, Email: sess.Email, Name: sess.Name, AccessToken: sess.AccessToken}, true
}

// session returns the request's session, refreshed if needed, or writes
// the refusal.
func (a *Auth) session(ctx *fasthttp.RequestCtx) (*sessioncache.Session, bool) {
	id := a.sessionID(ctx)
	if id == nil {
		writeBody(ctx, fasthttp.StatusUnauthorized, bodyUnauthorized)
		return nil, false
	}
	// The store neither keeps nor changes the id: no copy is needed.
	sess, err := a.currentSession(ctx, b2s(id))
	if err != nil {
		a.refuse(ctx, err)
		return nil, false
	}
	now := a.now()
	if !a.stale(sess, now) {
		return sess, true
	}
	fresh, err := a.refresh(string(id))
	switch {
	case err == nil:
		return fresh, true
	case errors.Is(err, errProviderDown) && sess.AccessExpiresAt > now.Unix():
		// The provider is away but the token still works: carry on.
		return sess, true
	default:
		a.refuse(ctx, err)
		return nil, false
	}
}

// refuse answers an error from the session path.
func (a *Auth) refuse(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, sessioncache.ErrNotFound):
		writeBody(ctx, fasthttp.StatusUnauthorized, bodyUnauthorized)
	case errors.Is(err, errSessionExpired):
		writeBody(ctx, fasthttp.StatusUnauthorized, bodySessionExpired)
	default:
		// During an outage every request lands here: log once a second.
		if now := a.now().Unix(); a.lastUnavailableLog.Swap(now) != now {
			a.log.Warn("session unavailable", zap.Error(err))
		}
		writeBody(ctx, fasthttp.StatusServiceUnavailable, bodyUnavailable)
	}
}

// stale reports whether s's access token expires within the refresh skew.
func (a *Auth) stale(s *sessioncache.Session, now time.Time) bool {
	return s.AccessExpiresAt != 0 && now.Add(a.cfg.RefreshSkew).Unix() >= s.AccessExpiresAt
}

// refresh renews the tokens of session id. Concurrent callers on this
// instance share one refresh; across instances a short store lock makes the
// others wait and re-read the session the winner stored, so a rotated
// refresh token is spent once.
func (a *Auth) refresh(id string) (*sessioncache.Session, error) {
	v, err, _ := a.refreshes.Do(id, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*a.cfg.HTTPTimeout)
		defer cancel()
		return a.refreshLocked(ctx, id)
	})
	if err != nil {
		return nil, err
	}
	return v.(*sessioncache.Session), nil
}

// refreshPoll is how often an instance that lost the refresh lock looks
// for the refreshed session.
const refreshPoll = 20 * time.Millisecond

func (a *Auth) refreshLocked(ctx context.Context, id string) (*sessioncache.Session, error) {
	for {
		cur, err := a.currentSession(ctx, id)
		if err != nil {
			return nil, err
		}
		if !a.stale(cur, a.now()) {
			return cur, nil // refreshed elsewhere meanwhile
		}
		release, ok, err := a.store.AcquireRefreshLock(ctx, id, a.cfg.HTTPTimeout+5*time.Second)
		if err != nil {
			return nil, err
		}
		if ok {
			defer release()
			// A renewed session of id not yet stored: its writer must not
			// store it over what this refresh stores. Only a refresh of
			// id, which singleflight makes this one, adds an entry for id.
			if a.unsaved.has(id) {
				a.unsaved.writeMu.Lock()
				defer a.unsaved.writeMu.Unlock()
			}
			// Re-read under the lock: the holder before us may have
			// finished between our read and our lock.
			if cur, err = a.currentSession(ctx, id); err != nil {
				return nil, err
			}
			if !a.stale(cur, a.now()) {
				return cur, nil
			}
			next, err := a.redeem(ctx, id, cur)
			a.countRefresh(next, cur, err)
			return next, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: waiting for another instance's refresh: %v", errProviderDown, ctx.Err())
		case <-time.After(refreshPoll):
		}
	}
}

// countRefresh counts redeem's outcome for RefreshStats. A session
// returned as it was (no refresh token, still valid) asked nothing.
func (a *Auth) countRefresh(next, cur *sessioncache.Session, err error) {
	switch {
	case err == nil && next == cur:
	case err == nil:
		a.refreshOK.Add(1)
	case errors.Is(err, errSessionExpired):
		a.refreshExpired.Add(1)
	default:
		a.refreshFailed.Add(1)
	}
}

// redeem spends cur's refresh token and stores the renewed session.
func (a *Auth) redeem(ctx context.Context, id string, cur *sessioncache.Session) (*sessioncache.Session, error) {
	if cur.RefreshToken == "" {
		if cur.AccessExpiresAt > a.now().Unix() {
			return cur, nil // still valid; it will expire without renewal
		}
		return nil, errSessionExpired
	}
	src := a.idp.oauth.TokenSource(a.idp.ctx(ctx), &oauth2.Token{RefreshToken: cur.RefreshToken, Expiry: time.Unix(1, 0)})
	tok, err := src.Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			// Another instance may have renewed the session while this
			// one held an older copy: it stores a renewed session late
			// when the store refused it at first (keepUnsaved). Look
			// once more before ending the session.
			if moved, gerr := a.store.GetSession(ctx, id); gerr == nil && moved.Version > cur.Version && moved.RefreshToken != cur.RefreshToken {
				if a.stale(moved, a.now()) {
					return a.redeem(ctx, id, moved)
				}
				return moved, nil
			}
			a.unsaved.drop(id, nil)
			if derr := a.store.DeleteSession(ctx, id); derr != nil {
				a.log.Warn("expired session not deleted", zap.Error(derr))
			}
			return nil, errSessionExpired
		}
		return nil, fmt.Errorf("%w: %v", errProviderDown, err)
	}
	next := *cur
	next.AccessToken = tok.AccessToken
	if tok.RefreshToken != "" {
		next.RefreshToken = tok.RefreshToken
	}
	next.AccessExpiresAt = 0
	if !tok.Expiry.IsZero() {
		next.AccessExpiresAt = tok.Expiry.Unix()
	}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		if _, _, err := a.verifyIDToken(ctx, raw); err == nil {
			next.IDToken = raw
		} else {
			a.log.Warn("refreshed id token refused, keeping the previous one", zap.Error(err))
		}
	}
	next.Version++
	if err := a.store.PutSession(ctx, id, &next); err != nil {
		// The provider may have rotated the refresh token: cur's is then
		// dead, and dropping next would end the session at its next
		// refresh. Keep next in memory until the store takes it, and
		// serve this request with it: its tokens are fresh and its
		// identity verified.
		kept, first := a.keepUnsaved(id, &next)
		if !kept {
			return nil, err
		}
		if first {
			a.log.Warn("renewed session not stored, kept in memory until the store answers",
				zap.String("sub", next.Sub), zap.Error(err))
		}
		return &next, nil
	}
	a.unsaved.drop(id, nil) // the store has the newest
	return &next, nil
}
