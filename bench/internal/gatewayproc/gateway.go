package gatewayproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/apigetaway/getaway/edge"
)

// Gateway is the running getaway child.
type Gateway struct {
	*procs.Child
	Addr       string // host:port
	Base       string // http://Addr, its APP_BASE_URL
	ConfigPath string // its config.yml (CONFIG_PATH), in a temp dir removed when it stops
	Config     []byte // what was written there

	logPath string // its stdout and stderr
	logSeen int64  // bytes of the log already returned by NewLog
}

// Options say how to run the gateway.
type Options struct {
	Bin        string       // the getaway binary
	IdP        *testidp.IdP // the OpenID provider to sign in with; the callback is registered with it
	BackendURL string       // every /api request goes there (defaultBackend)
	RedisURL   string       // REDIS_URL; empty keeps sessions in process memory
	// Env adds variables (NAME=value) to the environment Env builds,
	// after it, so that they win: ADMIN_TOKENS, ADMIN_ADDR, LOG_LEVEL.
	Env []string
	// ReadyWithin bounds the wait for /readyz; StopGrace a stop.
	ReadyWithin, StopGrace time.Duration
}

// Env is the complete environment of the gateway process: nothing
// of the harness's own environment reaches it but the Go runtime's tuning
// variables, so a stray OIDC_* or REDIS_URL cannot change what is measured.
func Env(addr, issuer, redisURL, configPath string) []string {
	env := []string{
		"LISTEN_ADDR=" + addr,
		"APP_BASE_URL=http://" + addr,
		"OIDC_ISSUER=" + issuer,
		"OIDC_CLIENT_ID=getaway",
		"OIDC_CLIENT_SECRET=getaway-secret",
		"SESSION_COOKIE_SECURE=false",
		"CONFIG_PATH=" + configPath,
		"LOG_LEVEL=error",
		// A bounded graceful stop, within the harness's stopGrace.
		"SHUTDOWN_TIMEOUT_SECONDS=2",
		// The cold-path rounds sign in hundreds of times from one address.
		"AUTH_RATE_LIMIT=0",
		// The load comes from one address.
		"MAX_CONNS_PER_IP=0",
	}
	if redisURL != "" {
		env = append(env, "REDIS_URL="+redisURL)
	}
	for _, k := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Start runs the getaway binary as main.go wires it, configured by its
// environment only: sign-in against o.IdP, sessions in Redis at o.RedisURL
// (or in process memory when it is empty), every /api request routed to
// o.BackendURL. It waits until /readyz answers 200. A lost race for the
// port is retried with another one. Whatever the gateway logs after the
// last NewLog goes to stderr when it stops.
func Start(ctx context.Context, o Options) (*Gateway, error) {
	bin, idp, backendURL, redisURL := o.Bin, o.IdP, o.BackendURL, o.RedisURL
	dir, err := os.MkdirTemp("", "bench-gateway-")
	if err != nil {
		return nil, err
	}
	configPath := filepath.Join(dir, "config.yml")
	config := "# written by the bench harness\ndefaultBackend: " + strconv.Quote(backendURL) + "\n"
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	logPath := filepath.Join(dir, "gateway.log")

	var g *Gateway
	err = procs.RetryOnFreeAddr(ctx, func(addr string) (retry bool, err error) {
		env := append(Env(addr, idp.Issuer(), redisURL, configPath), o.Env...)
		// What main.go will make of it: fail here, with the reason, on a
		// setting the gateway would refuse.
		settings, err := edge.LoadSettings(procs.LookupIn(env))
		if err != nil {
			return false, fmt.Errorf("gateway environment: %w", err)
		}
		if !settings.AuthEnabled || settings.Server.Addr != addr || settings.RedisURL != redisURL {
			return false, errors.New("gateway environment: not read as intended (sign-in, address or Redis)")
		}
		base := settings.Auth.AppBaseURL
		if err := idp.AddRedirectURI(base + settings.Auth.RedirectPath); err != nil {
			return false, err
		}

		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return false, err
		}
		cmd := exec.Command(bin)
		cmd.Dir = dir // no ./public: static files off
		cmd.Env = env
		// The access log (stdout, 1% of requests by default) is written as
		// in production but not kept: the log is the process log (stderr).
		devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			logf.Close()
			return false, err
		}
		cmd.Stdout, cmd.Stderr = devNull, logf
		c, err := procs.Start("getaway", cmd)
		logf.Close() // the child has its own descriptors
		devNull.Close()
		if err != nil {
			return false, err
		}
		if err := c.WaitHTTP(ctx, base+"/readyz", o.ReadyWithin); err != nil {
			_ = c.Stop(o.StopGrace)
			// Another process may have taken the port: try another one.
			log, _ := os.ReadFile(logPath)
			return bytes.Contains(log, []byte("address already in use")), err
		}
		g = &Gateway{Child: c, Addr: addr, Base: base, ConfigPath: configPath, Config: []byte(config), logPath: logPath}
		return false, nil
	})
	if err == nil {
		g.OnStop(func() {
			// Whatever it logged since the report (while stopping).
			if rest := g.NewLog(); len(rest) > 0 {
				fmt.Fprintf(os.Stderr, "getaway log:\n%s\n", strings.Join(rest, "\n"))
			}
			os.RemoveAll(dir)
		})
		return g, nil
	}
	log, _ := os.ReadFile(logPath)
	os.RemoveAll(dir)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("%w\ngetaway log:\n%s", err, procs.LastLines(string(log), 20))
}

// NewLog returns the gateway's log lines written since the last call.
func (g *Gateway) NewLog() []string {
	f, err := os.Open(g.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(g.logSeen, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	g.logSeen += int64(len(b))
	var lines []string
	for l := range strings.Lines(string(b)) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}
