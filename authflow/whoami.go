package authflow

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/apigetaway/getaway/sessioncache"
	"github.com/bytedance/sonic"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// Me is the answer of GET /whoami/me.
type Me struct {
	Sub     string `json:"sub"`
	Name    string `json:"name"`
	Email   string `json:"email"`
	Picture string `json:"picture"`
}

// whoami answers the signed-in user's profile from the provider's userinfo
// endpoint, cached briefly per session; from the session's ID token claims
// when the provider has no userinfo endpoint or cannot be reached.
func (a *Auth) whoami(ctx *fasthttp.RequestCtx) {
	sess, ok := a.session(ctx)
	if !ok {
		return
	}
	key := sha256.Sum256([]byte(sess.AccessToken))
	me, ok := a.userinfo.get(key, a.now())
	if !ok {
		me = a.fetchUserinfo(sess)
		a.userinfo.put(key, me, a.now())
	}
	body, _ := sonic.Marshal(me)
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	writeBody(ctx, fasthttp.StatusOK, body)
}

func (a *Auth) fetchUserinfo(sess *sessioncache.Session) Me {
	me := Me{Sub: sess.Sub, Name: sess.Name, Email: sess.Email, Picture: sess.Picture}
	if a.idp.userinfoURL == "" {
		return me
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.idp.userinfoURL, nil)
	if err != nil {
		return me
	}
	req.Header.Set("Authorization", "Bearer "+sess.AccessToken)
	resp, err := a.idp.client.Do(req)
	if err != nil {
		a.log.Warn("userinfo unavailable, answering from the session", zap.Error(err))
		return me
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil || resp.StatusCode != http.StatusOK {
		a.log.Warn("userinfo refused, answering from the session", zap.Int("status", resp.StatusCode))
		return me
	}
	var got Me
	if err := sonic.Unmarshal(body, &got); err != nil || got.Sub != sess.Sub {
		// A userinfo answer for another subject is not trusted (OIDC Core 5.3.2).
		a.log.Warn("userinfo answer refused, answering from the session")
		return me
	}
	return got
}

// userinfoCache keeps userinfo answers per access token for a short time.
type userinfoCache struct {
	ttl     time.Duration
	mu      sync.Mutex
	entries map[[32]byte]userinfoEntry
}

type userinfoEntry struct {
	me      Me
	expires time.Time
}

// maxUserinfoEntries bounds the cache; past it, it starts afresh.
const maxUserinfoEntries = 10_000

func (c *userinfoCache) init(ttl time.Duration) {
	c.ttl = ttl
	c.entries = make(map[[32]byte]userinfoEntry)
}

func (c *userinfoCache) get(k [32]byte, now time.Time) (Me, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || now.After(e.expires) {
		return Me{}, false
	}
	return e.me, true
}

func (c *userinfoCache) put(k [32]byte, me Me, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxUserinfoEntries {
		clear(c.entries)
	}
	c.entries[k] = userinfoEntry{me: me, expires: now.Add(c.ttl)}
}
