package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
)

// TestDevStack runs the whole stack as `go run ./bench/devstack` does (on a
// free port), signs in through the gateway as a browser would, and checks
// what a person is told to look at: the start page, the injected identity
// headers, the missing session cookie at the backend, the admin token; then
// that Stop leaves nothing running.
func TestDevStack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the getaway binary and runs it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := run(ctx, Options{Logs: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = st.Stop()
		}
	})

	var banner strings.Builder
	printBanner(&banner, st)
	for _, want := range []string{st.BaseURL + "/", st.Username, testidp.Password,
		"Authorization: Bearer " + st.AdminToken, st.BaseURL + "/admin/config", "Ctrl-C"} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("the banner does not say %q:\n%s", want, banner.String())
		}
	}

	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string, header http.Header) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.BaseURL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}

	if status, body := get("/", nil); status != http.StatusOK || !strings.Contains(body, `href="/auth/login?next=/api/whoami-demo"`) {
		t.Errorf("GET /: %d, want 200 with the sign-in link:\n%s", status, body)
	}
	if status, _ := get("/api/x", nil); status != http.StatusUnauthorized {
		t.Errorf("GET /api/x without a session: %d, want 401", status)
	}

	sid, err := st.IdP.SignInThrough(ctx, st.BaseURL, st.Username, st.Password, "sid")
	if err != nil {
		t.Fatal(err)
	}
	status, body := get("/api/x?a=1", http.Header{
		"Cookie":       {"theme=dark; sid=" + sid},
		"X-User-Email": {"forged@example.com"},
	})
	if status != http.StatusOK {
		t.Fatalf("GET /api/x signed in: %d, want 200: %s", status, body)
	}
	var rep echoReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatalf("the echo's answer: %v\n%s", err, body)
	}
	if got := rep.Headers["X-User-Email"]; !slices.Equal(got, []string{st.IdP.Email()}) {
		t.Errorf("the backend got X-User-Email %q, want only %q", got, st.IdP.Email())
	}
	if got := rep.UserHeaders["X-User-Sub"]; len(got) != 1 || got[0] == "" {
		t.Errorf("the backend got X-User-Sub %q", got)
	}
	if !slices.Equal(rep.Cookies, []string{"theme"}) || strings.Contains(strings.Join(rep.Headers["Cookie"], ";"), sid) {
		t.Errorf("the backend got cookies %q (Cookie %q): the session cookie must not reach it", rep.Cookies, rep.Headers["Cookie"])
	}
	if rep.RequestURI != "/x?a=1" {
		t.Errorf("the backend got %q, want /x?a=1", rep.RequestURI)
	}

	admin := http.Header{"Authorization": {"Bearer " + st.AdminToken}}
	status, body = get("/admin/config", admin)
	var cfg struct {
		DefaultBackend string `json:"defaultBackend"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &cfg) != nil || cfg.DefaultBackend != st.EchoURL {
		t.Errorf("GET /admin/config with the token: %d %s, want 200 with defaultBackend %s", status, body, st.EchoURL)
	}
	if status, body := get("/admin/health", admin); status != http.StatusOK {
		t.Errorf("GET /admin/health with the token: %d %s", status, body)
	}
	if status, _ := get("/admin/config", http.Header{"Authorization": {"Bearer 0123456789abcdef0123456789abcdef"}}); status != http.StatusUnauthorized {
		t.Errorf("GET /admin/config with a wrong token: %d, want 401", status)
	}

	// Signing out at the provider too brings the browser back to the gateway.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, st.BaseURL+"/auth/logout?redirect=1", nil)
	req.Header.Set("Cookie", "sid="+sid)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		LogoutURL string `json:"logoutUrl"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || out.LogoutURL == "" {
		t.Fatalf("POST /auth/logout?redirect=1: %d %v %+v", resp.StatusCode, err, out)
	}
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	if resp, err = noFollow.Get(out.LogoutURL); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || strings.TrimSuffix(loc, "/") != st.BaseURL {
		t.Errorf("the provider's end-session: %d to %q, want 302 to %s", resp.StatusCode, loc, st.BaseURL)
	}
	if status, _ := get("/api/x", http.Header{"Cookie": {"sid=" + sid}}); status != http.StatusUnauthorized {
		t.Errorf("GET /api/x after sign-out: %d, want 401", status)
	}

	if err := st.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	stopped = true
	select {
	case <-st.Done():
	default:
		t.Fatal("Stop returned with the gateway still running")
	}
	if err := st.Err(); runtime.GOOS != "windows" && err != nil {
		t.Errorf("the gateway did not exit cleanly on SIGTERM: %v", err)
	}
	for _, addr := range []string{st.Addr, strings.TrimPrefix(st.EchoURL, "http://"), strings.TrimPrefix(st.IdP.Issuer(), "http://")} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Stop", addr)
		}
	}
	if _, err := os.Stat(st.dir); !os.IsNotExist(err) {
		t.Errorf("temp dir %s not removed: %v", st.dir, err)
	}
}
