//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
)

// Fault tests with real processes (README "Faults"): the getaway binary
// with redis-server, an OpenID provider and two backend processes, each
// broken in turn under load. Every request is bounded (requestTimeout);
// every answer of the load is recorded and checked, and the histograms are
// logged. Statuses the contract allows during a fault:
//
//   - Redis down: 200 (session served from process memory) or
//     503 {"error":"unavailable"}; never 401, 500 or a hang. Service comes
//     back within 2s of Redis answering again, with every session.
//   - a backend down: 502 {"error":"bad_gateway"} for its routes, at once;
//     the other backend's routes unaffected.
//   - the IdP down: signed-in users with valid tokens unaffected; a session
//     whose token must be refreshed gets 503 (kept, not 401) until the IdP
//     is back.

// recoveryBound is how soon after Redis answers again every user must be
// served again.
const recoveryBound = 2 * time.Second

// checkAnswers fails t for every answer that is neither the backend's 200
// for its user nor one of the error kinds in allowed, and returns how many
// answers of each allowed kind there were.
func checkAnswers(t *testing.T, what string, users []user, as []answer, allowed ...string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	bad := 0
	for _, a := range as {
		k := a.kind()
		switch {
		case a.ok(users[a.user]):
			seen["200"]++
			continue
		case a.err == nil && contains(allowed, k):
			seen[k]++
			continue
		}
		if bad++; bad <= 5 {
			t.Errorf("%s: user %d route %s after %v: %s (%v) %s", what, a.user, a.route, a.took.Round(time.Millisecond), k, a.err, a.body)
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d more unexpected answers", what, bad-5)
	}
	return seen
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// waitBack polls each user on route until it gets its 200, every other
// answer being one of allowed, and returns when the last one came back.
func (s *stack) waitBack(t *testing.T, c *http.Client, users []user, route string, within time.Duration, allowed ...string) time.Time {
	t.Helper()
	pending := map[int]bool{}
	for i := range users {
		pending[i] = true
	}
	deadline := time.Now().Add(within)
	for len(pending) > 0 {
		for i := range pending {
			a := s.get(c, users[i], route)
			if a.ok(users[i]) {
				delete(pending, i)
				continue
			}
			if a.err != nil || !contains(allowed, a.kind()) {
				t.Fatalf("user %d while waiting for recovery: %s (%v) %s", i, a.kind(), a.err, a.body)
			}
		}
		if len(pending) > 0 && time.Now().After(deadline) {
			t.Fatalf("%d of %d users still not served %v after the fault ended", len(pending), len(users), within)
		}
	}
	return time.Now()
}

// Redis SIGKILLed under load, then restarted on its port with its
// append-only file.
func TestFaultRedisKilled(t *testing.T) {
	s := startStack(t, stackOptions{})
	users := s.signIn(t, 6)
	c := newClient()
	defer c.CloseIdleConnections()
	l := s.startLoad(t, users, []string{"a", "b"}, 4)
	start := time.Now()
	l.waitAnswers(t, start, 40, 0)

	s.redis.Kill()
	killed := time.Now()
	waitFor(t, 5*time.Second, "the load to see 503", func() error {
		for _, a := range l.startedIn(killed, time.Now()) {
			if a.kind() == "503 unavailable" {
				return nil
			}
		}
		return fmt.Errorf("no 503 yet")
	})
	waitFor(t, 5*time.Second, "/readyz to report the session store", func() error {
		status, body, err := s.readyz(c)
		if err != nil {
			return err
		}
		if status != http.StatusServiceUnavailable || !strings.Contains(body, `"sessions"`) {
			return fmt.Errorf("/readyz: %d %s", status, body)
		}
		t.Logf("/readyz during the outage: %d %s", status, body)
		return nil
	})
	outage := time.Now()
	l.waitAnswers(t, outage, 60, time.Second) // the outage lasts a while under load

	s.redis.Restart(t) // returns once redis-server answers PING
	restarted := time.Now()
	back := s.waitBack(t, c, users, "a", 10*time.Second, "503 unavailable")
	recovery := back.Sub(restarted)
	l.waitAnswers(t, back, 60, 0)
	l.stop()

	all := l.all()
	before := endedBefore(all, killed)
	during := l.startedIn(killed, restarted)
	after := l.startedIn(back, time.Now())
	t.Logf("before the kill: %s", histogram(before))
	t.Logf("Redis down (%v): %s; slowest %v", restarted.Sub(killed).Round(time.Millisecond), histogram(during), slowest(during).Round(time.Millisecond))
	t.Logf("restart to recovery: %s", histogram(l.startedIn(restarted, back)))
	t.Logf("after recovery: %s", histogram(after))
	t.Logf("every user served again %v after Redis answered PING (bound %v)", recovery.Round(time.Millisecond), recoveryBound)

	checkAnswers(t, "whole run", users, all, "503 unavailable")
	checkAnswers(t, "before the kill", users, before)
	if seen := checkAnswers(t, "while Redis was down", users, during, "503 unavailable"); seen["503 unavailable"] == 0 {
		t.Errorf("no 503 while Redis was down: the outage was not observed")
	}
	checkAnswers(t, "after recovery", users, after)
	if recovery > recoveryBound {
		t.Errorf("service resumed %v after Redis came back, want <= %v", recovery, recoveryBound)
	}
	// No session lost: each one is read again from Redis (the kill dropped
	// every copy in process memory) and still works.
	for i, u := range users {
		if a := s.get(c, u, "b"); !a.ok(u) {
			t.Errorf("user %d after the restart: %s %s", i, a.kind(), a.body)
		}
	}
}

// endedBefore returns the answers that came before t.
func endedBefore(as []answer, t time.Time) []answer {
	var out []answer
	for _, a := range as {
		if a.end().Before(t) {
			out = append(out, a)
		}
	}
	return out
}

// A backend SIGKILLed under load: its routes answer 502 at once, the
// other backend's keep answering; restarted, its routes recover.
func TestFaultBackendKilled(t *testing.T) {
	s := startStack(t, stackOptions{})
	users := s.signIn(t, 5)
	c := newClient()
	defer c.CloseIdleConnections()
	l := s.startLoad(t, users, []string{"a", "b"}, 4)
	start := time.Now()
	l.waitAnswers(t, start, 40, 0)

	killing := time.Now()
	s.backends["a"].kill()
	killed := time.Now() // the process is gone
	l.waitAnswers(t, killed, 100, time.Second)
	restarting := time.Now()
	s.backends["a"].restart(t)
	restarted := time.Now()
	back := s.waitBack(t, c, users, "a", 5*time.Second, "502 bad_gateway")
	l.waitAnswers(t, back, 60, 0)
	l.stop()

	var routeA, routeB, downA []answer
	for _, a := range l.all() {
		if a.route == "b" {
			routeB = append(routeB, a)
			continue
		}
		routeA = append(routeA, a)
		if !a.start.Before(killed) && a.end().Before(restarting) {
			downA = append(downA, a)
		}
	}
	t.Logf("route a while its backend was down: %s; slowest %v", histogram(downA), slowest(downA).Round(time.Millisecond))
	t.Logf("route a, whole run: %s", histogram(routeA))
	t.Logf("route b, whole run: %s; slowest %v", histogram(routeB), slowest(routeB).Round(time.Millisecond))
	t.Logf("route a served again %v after the backend was restarted", back.Sub(restarted).Round(time.Millisecond))

	checkAnswers(t, "route b", users, routeB)
	checkAnswers(t, "route a before the kill", users, endedBefore(routeA, killing))
	if seen := checkAnswers(t, "route a while down", users, downA, "502 bad_gateway"); seen["502 bad_gateway"] == 0 || seen["200"] > 0 {
		t.Errorf("route a while its backend was down: %v, want only 502", seen)
	}
	for _, a := range downA {
		if a.took > time.Second {
			t.Errorf("route a while down: a 502 took %v, want < 1s", a.took)
			break
		}
	}
	checkAnswers(t, "route a after the restart", users, l.startedIn(back, time.Now()))
	checkAnswers(t, "route a, whole run", users, routeA, "502 bad_gateway")
}

// The IdP stopped (connections refused) under load.
func TestFaultIdPStopped(t *testing.T) {
	// Access tokens live 6s and are refreshed in their last 4s: a user
	// of the load is refreshed about every 2s and holds a token valid for
	// 4s more at any moment, longer than the IdP stays down here.
	const ttl = 6 * time.Second
	s := startStack(t, stackOptions{accessTTL: ttl, refreshSkew: 4 * time.Second})
	c := newClient()
	defer c.CloseIdleConnections()

	// Signed in first, then left alone until its access token has expired:
	// its next request needs a refresh.
	stale := s.signIn(t, 1)[0]
	staleExpired := time.Now().Add(ttl + 500*time.Millisecond)
	users := s.signIn(t, 5)
	l := s.startLoad(t, users, []string{"a", "b"}, 4)
	start := time.Now()
	l.waitAnswers(t, start, 40, 0)
	time.Sleep(time.Until(staleExpired)) // a token lifetime: waited out, not polled

	// A sign-in that got its code from the IdP just before it went down.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	callback, err := s.idp.Login(ctx, s.loginRedirect(t, c), s.idp.Username(), testidp.Password)
	if err != nil {
		t.Fatal(err)
	}
	refreshes := s.idp.TokenRequests("refresh_token")
	if refreshes == 0 {
		t.Fatal("the load caused no refresh: the users' tokens were not refreshed as they aged")
	}

	if err := s.idp.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()

	// The session that needs a refresh: 503, kept (not 401).
	for range 3 {
		a := s.get(c, stale, "a")
		if a.kind() != "503 unavailable" || a.took > time.Second {
			t.Fatalf("user needing a refresh while the IdP is down: %s %s after %v, want a quick 503 unavailable", a.kind(), a.body, a.took)
		}
	}
	// A new sign-in: /auth/login needs no IdP (endpoints were discovered at
	// start-up) and still redirects there, where the browser finds nothing.
	loc := s.loginRedirect(t, c)
	if !strings.HasPrefix(loc, s.idp.Issuer()+"/") {
		t.Fatalf("/auth/login with the IdP down: redirect to %q, want the IdP", loc)
	}
	if resp, err := c.Get(loc); err == nil {
		resp.Body.Close()
		t.Fatalf("the stopped IdP answered %d", resp.StatusCode)
	}
	// A sign-in coming back from the IdP: the code exchange fails, 502.
	t0 := time.Now()
	resp, err := c.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	t.Logf("IdP down: /auth/login 302 to the IdP (connection refused there); callback %d %q after %v",
		resp.StatusCode, body.Error, time.Since(t0).Round(time.Millisecond))
	if resp.StatusCode != http.StatusBadGateway || body.Error != "login_failed" {
		t.Fatalf("callback with the IdP down: %d %q, want 502 login_failed", resp.StatusCode, body.Error)
	}
	l.waitAnswers(t, stopped, 60, time.Second)

	if err := s.idp.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	back := s.waitBack(t, c, []user{stale}, "a", 5*time.Second, "503 unavailable")
	t.Logf("the user needing a refresh served again %v after the IdP restarted", back.Sub(restarted).Round(time.Millisecond))
	if got := s.idp.TokenRequests("refresh_token"); got <= refreshes {
		t.Errorf("no refresh after the IdP restarted (%d refresh requests before, %d after)", refreshes, got)
	}
	again := s.signIn(t, 1)[0]
	if a := s.get(c, again, "b"); !a.ok(again) {
		t.Errorf("new sign-in after the IdP restarted: %s %s", a.kind(), a.body)
	}
	l.waitAnswers(t, back, 40, 0)
	l.stop()

	down := l.startedIn(stopped, restarted)
	t.Logf("signed-in users, IdP down %v: %s", restarted.Sub(stopped).Round(time.Millisecond), histogram(down))
	t.Logf("signed-in users, whole run: %s", histogram(l.all()))
	t.Logf("refresh requests at the IdP: %d", s.idp.TokenRequests("refresh_token"))
	if len(down) == 0 {
		t.Error("no request of the load while the IdP was down")
	}
	checkAnswers(t, "signed-in users", users, l.all())
}

// loginRedirect GETs /auth/login and returns where it redirects.
func (s *stack) loginRedirect(t *testing.T, c *http.Client) string {
	t.Helper()
	resp, err := c.Get(s.base + "/auth/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("/auth/login: %d, want 302", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// fastBound is how quickly a refusal must come once the store fails fast
// (about a millisecond on loopback; loose for a loaded 2-core machine).
const fastBound = time.Second

// Redis hung (SIGSTOP: its connections stay open, nothing answers) under
// load. Requests served from process memory carry on; the others wait for
// the command timeout until a few such failures in a row open the store's
// breaker, then fail at once with 503 while a background PING watches for
// Redis; resumed (SIGCONT), service is back within 2s.
func TestFaultRedisHung(t *testing.T) {
	s := startStack(t, stackOptions{})
	users := s.signIn(t, 6)
	c := newClient()
	defer c.CloseIdleConnections()
	l := s.startLoad(t, users, []string{"a", "b"}, 4)
	start := time.Now()
	l.waitAnswers(t, start, 40, 0)

	s.redis.Pause(t)
	paused := time.Now()
	// The first requests that need Redis wait for the command timeout
	// (2s); then the answers come at once.
	var open time.Time
	waitFor(t, 15*time.Second, "quick 503s", func() error {
		for _, a := range l.startedIn(paused, time.Now()) {
			if a.kind() == "503 unavailable" && a.took < 300*time.Millisecond {
				open = a.start
				return nil
			}
		}
		return fmt.Errorf("none yet; since the pause %s, slowest %v", histogram(l.startedIn(paused, time.Now())), slowest(l.startedIn(paused, time.Now())))
	})
	l.waitAnswers(t, open, 60, time.Second)
	t0 := time.Now()
	status, body, err := s.readyz(c)
	if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(body, `"sessions"`) || time.Since(t0) > fastBound {
		t.Errorf("/readyz with Redis hung: %d %s (%v) after %v, want a quick 503 naming the session store", status, body, err, time.Since(t0))
	}

	resuming := time.Now()
	s.redis.Resume(t)
	back := s.waitBack(t, c, users, "a", 10*time.Second, "503 unavailable")
	recovery := back.Sub(resuming)
	l.waitAnswers(t, back, 60, 0)
	l.stop()

	slow := l.startedIn(paused, open)
	fast := l.startedIn(open, resuming)
	t.Logf("before the pause: %s", histogram(endedBefore(l.all(), paused)))
	t.Logf("paused, until the first quick 503 (%v): %s; slowest %v", open.Sub(paused).Round(time.Millisecond), histogram(slow), slowest(slow).Round(time.Millisecond))
	t.Logf("paused, failing fast (%v): %s; slowest %v", resuming.Sub(open).Round(time.Millisecond), histogram(fast), slowest(fast).Round(time.Millisecond))
	t.Logf("after recovery: %s", histogram(l.startedIn(back, time.Now())))
	t.Logf("every user served again %v after SIGCONT (bound %v)", recovery.Round(time.Millisecond), recoveryBound)

	checkAnswers(t, "whole run", users, l.all(), "503 unavailable")
	for _, a := range fast {
		if a.took > fastBound {
			t.Errorf("with Redis hung, after the first quick 503: an answer (%s) took %v, want < %v", a.kind(), a.took, fastBound)
			break
		}
	}
	checkAnswers(t, "after recovery", users, l.startedIn(back, time.Now()))
	if recovery > recoveryBound {
		t.Errorf("service resumed %v after Redis resumed, want <= %v", recovery, recoveryBound)
	}
}
