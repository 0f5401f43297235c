package gatewayproc

import (
	"testing"

	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/apigetaway/getaway/edge"
)

func TestGatewayEnvIsWhatMainReads(t *testing.T) {
	t.Setenv("REDIS_URL", "redis://127.0.0.1:1") // must not leak into the child
	t.Setenv("GOMAXPROCS", "3")                  // passed on
	env := Env("127.0.0.1:4567", "http://127.0.0.1:9999", "", "/tmp/x/config.yml")
	s, err := edge.LoadSettings(procs.LookupIn(env))
	if err != nil {
		t.Fatal(err)
	}
	if !s.AuthEnabled || s.Server.Addr != "127.0.0.1:4567" || s.Auth.AppBaseURL != "http://127.0.0.1:4567" ||
		s.Auth.Issuer != "http://127.0.0.1:9999" || s.RedisURL != "" || s.ConfigPath != "/tmp/x/config.yml" ||
		!s.Auth.Cookie.Insecure || s.Proxy.SessionCookieName != "sid" {
		t.Errorf("settings read from %q:\n%+v", env, s)
	}
	if v, _ := procs.LookupIn(env)("GOMAXPROCS"); v != "3" {
		t.Errorf("GOMAXPROCS = %q, want it passed on", v)
	}

	env = Env("127.0.0.1:4567", "http://127.0.0.1:9999", "redis://127.0.0.1:6000", "/tmp/x/config.yml")
	if s, err := edge.LoadSettings(procs.LookupIn(env)); err != nil || s.RedisURL != "redis://127.0.0.1:6000" {
		t.Errorf("with Redis: %v, %+v", err, s)
	}
}
