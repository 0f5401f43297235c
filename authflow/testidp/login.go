package testidp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// ErrLoginFailed is returned by [IdP.Login] when the login form refuses the
// username or password (the form is shown again instead of a redirect).
var ErrLoginFailed = errors.New("testidp: login refused")

// loginPath is where the example client sends the browser to sign in
// (storage's defaultLoginURL) and where the form posts to
// (exampleop/templates/login.html).
const loginPath = "/login/username"

// maxRedirects bounds Login's redirect chain; the normal one has three
// hops (authorize -> login form, form post -> authorize callback ->
// redirect_uri).
const maxRedirects = 10

// Login signs username in as a browser would, without a browser, and returns
// the URL the IdP finally redirects to (the relying party's redirect_uri with
// code and state, or with error) without requesting it.
//
// authorizeURL is the authorization request, typically the Location of the
// gateway's redirect to the IdP. Login GETs it, follows the redirect to the
// login form (/login/username?authRequestID=...), loads the form, posts
// username, password and the request id to it, and follows the IdP's
// redirects until one points outside the IdP. A refused password gives
// [ErrLoginFailed]; an IdP answer that is neither a redirect nor the form
// gives an error with its status and the start of its body. Login uses its
// own client, which keeps no cookies, so each call is a fresh browser. It is
// safe for concurrent use.
func (p *IdP) Login(ctx context.Context, authorizeURL, username, password string) (string, error) {
	next, err := url.Parse(authorizeURL)
	if err != nil {
		return "", fmt.Errorf("testidp: authorize URL: %w", err)
	}
	if !p.isOwn(next) {
		return "", fmt.Errorf("testidp: authorize URL %q is not on issuer %s", authorizeURL, p.issuer)
	}
	for range maxRedirects {
		if !p.isOwn(next) {
			return next.String(), nil
		}
		var resp *http.Response
		if next.Path == loginPath {
			resp, err = p.submitLogin(ctx, next, username, password)
		} else {
			resp, err = p.do(ctx, http.MethodGet, next.String(), nil)
		}
		if err != nil {
			return "", err
		}
		next, err = location(resp)
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("testidp: more than %d redirects from %s", maxRedirects, authorizeURL)
}

// submitLogin loads the login form at formURL and posts the credentials; it
// returns the response to the post, which redirects on success.
func (p *IdP) submitLogin(ctx context.Context, formURL *url.URL, username, password string) (*http.Response, error) {
	id := formURL.Query().Get("authRequestID")
	resp, err := p.do(ctx, http.MethodGet, formURL.String(), nil)
	if err != nil {
		return nil, err
	}
	page, err := readSome(resp)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `name="password"`) {
		return nil, unexpected(resp, page)
	}
	form := url.Values{"id": {id}, "username": {username}, "password": {password}}
	resp, err = p.do(ctx, http.MethodPost, p.issuer+loginPath, form)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK { // the form again, with the error
		page, _ := readSome(resp)
		if strings.Contains(page, `name="password"`) {
			return nil, fmt.Errorf("%w for %q", ErrLoginFailed, username)
		}
		return nil, unexpected(resp, page)
	}
	return resp, nil
}

func (p *IdP) do(ctx context.Context, method, target string, form url.Values) (*http.Response, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("testidp: %s %s: %w", method, target, err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := p.login.Do(req)
	if err != nil {
		return nil, fmt.Errorf("testidp: %s %s: %w", method, target, err)
	}
	return resp, nil
}

// location returns the absolute target of a redirect response and closes
// its body.
func location(resp *http.Response) (*url.URL, error) {
	page, err := readSome(resp)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusFound, http.StatusSeeOther, http.StatusMovedPermanently,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return nil, unexpected(resp, page)
	}
	loc, err := resp.Location() // resolved against the request URL
	if err != nil {
		return nil, fmt.Errorf("testidp: %s %s: redirect without a usable Location: %w",
			resp.Request.Method, resp.Request.URL, err)
	}
	return loc, nil
}

// readSome reads up to 64 KiB of the body, drains the rest so the
// connection can be reused, and closes it.
func readSome(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	if err != nil {
		return "", fmt.Errorf("testidp: reading %s %s: %w", resp.Request.Method, resp.Request.URL, err)
	}
	return string(b), nil
}

func unexpected(resp *http.Response, page string) error {
	const limit = 300
	if len(page) > limit {
		page = page[:limit] + "..."
	}
	return fmt.Errorf("testidp: %s %s: unexpected %s: %s",
		resp.Request.Method, resp.Request.URL, resp.Status, strings.TrimSpace(page))
}

// isOwn reports whether u is served by this IdP.
func (p *IdP) isOwn(u *url.URL) bool {
	return u.Scheme == p.issuerURL.Scheme && u.Host == p.issuerURL.Host
}
