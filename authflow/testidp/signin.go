package testidp

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// SignInThrough signs username in through a relying party at base (a
// gateway) as a browser would: GET base+"/auth/login", Login at the IdP,
// then GET the callback, and returns the value of the cookie named cookie
// that the callback set. Each call is a fresh browser without cookies.
func (p *IdP) SignInThrough(ctx context.Context, base, username, password, cookie string) (string, error) {
	client := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	get := func(target string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			return nil, fmt.Errorf("testidp: GET %s: status %d, want 302", target, resp.StatusCode)
		}
		return resp, nil
	}
	resp, err := get(base + "/auth/login")
	if err != nil {
		return "", err
	}
	callback, err := p.Login(ctx, resp.Header.Get("Location"), username, password)
	if err != nil {
		return "", err
	}
	if resp, err = get(callback); err != nil {
		return "", err
	}
	for _, c := range resp.Cookies() {
		if c.Name == cookie && c.Value != "" {
			return c.Value, nil
		}
	}
	return "", fmt.Errorf("testidp: the callback set no %q cookie", cookie)
}
