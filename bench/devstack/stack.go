package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/apigetaway/getaway/edge"
)

const (
	clientSecret   = "getaway-secret" // the IdP's registered client and the gateway agree on it
	adminTokenName = "dev"            // the name the admin change log shows
)

// Options configures run.
type Options struct {
	// Port is the gateway's port on 127.0.0.1 (http://localhost:PORT/).
	// 0 picks a free one (tests).
	Port int
	// RedisURL, when set, keeps sessions in Redis; else in memory.
	RedisURL string
	// Logs receives the gateway's log lines and devstack's progress.
	// Default os.Stderr.
	Logs io.Writer
}

// Stack is a running dev stack.
type Stack struct {
	BaseURL    string // http://localhost:PORT, the gateway's APP_BASE_URL
	Addr       string // 127.0.0.1:PORT, where the gateway listens
	EchoURL    string // the echo backend, http://127.0.0.1:PORT
	AdminToken string // bearer token for /admin/*
	RedisURL   string // empty: sessions in memory
	Username   string // the test user's login name
	Password   string // and password
	IdP        *testidp.IdP

	dir      string // temp dir: binary, config.yml, public/
	echo     *echoServer
	gw       *procs.Child
	gwLog    *lineWriter
	stopOnce sync.Once
	stopErr  error
}

// run builds the gateway and starts the IdP, the echo backend and the
// gateway; it returns once the gateway's /readyz answers 200. On error
// everything started is stopped again.
func run(ctx context.Context, opts Options) (_ *Stack, err error) {
	logs := opts.Logs
	if logs == nil {
		logs = os.Stderr
	}
	if opts.Port != 0 {
		// Fail before the build, with advice, rather than after it.
		if err := checkPort(opts.Port); err != nil {
			return nil, err
		}
	}
	st := &Stack{RedisURL: opts.RedisURL, Password: testidp.Password}
	defer func() {
		if err != nil {
			_ = st.Stop()
		}
	}()
	if st.dir, err = os.MkdirTemp("", "getaway-devstack-"); err != nil {
		return nil, err
	}

	fmt.Fprintln(logs, "devstack: building getaway (go build) ...")
	bin, _, err := procs.BuildGetaway(ctx, st.dir)
	if err != nil {
		return nil, err
	}

	idpLog := &lineWriter{out: logs, prefix: "idp     | "}
	st.IdP, err = testidp.Start(testidp.Options{
		ClientSecret: clientSecret,
		Logger:       slog.New(slog.NewTextHandler(idpLog, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, err
	}
	st.Username = st.IdP.Username()
	if st.echo, err = startEcho(); err != nil {
		return nil, err
	}
	st.EchoURL = st.echo.url

	port := opts.Port
	if port == 0 {
		addr, err := procs.FreeAddr()
		if err != nil {
			return nil, err
		}
		_, p, _ := net.SplitHostPort(addr)
		if port, err = strconv.Atoi(p); err != nil {
			return nil, err
		}
	}
	st.Addr = "127.0.0.1:" + strconv.Itoa(port)
	st.BaseURL = "http://localhost:" + strconv.Itoa(port)
	// The gateway always sends its own redirect_uri (APP_BASE_URL's);
	// 127.0.0.1 is registered too for whoever points APP_BASE_URL there.
	for _, host := range []string{"localhost", "127.0.0.1"} {
		base := "http://" + host + ":" + strconv.Itoa(port)
		if err := st.IdP.AddRedirectURI(base + "/auth/callback"); err != nil {
			return nil, err
		}
		// authflow sends APP_BASE_URL itself (no trailing slash); both forms.
		for _, uri := range []string{base, base + "/"} {
			if err := st.IdP.AddPostLogoutRedirectURI(uri); err != nil {
				return nil, err
			}
		}
	}

	if st.AdminToken, err = randomHex(16); err != nil {
		return nil, err
	}
	if err := st.writeFiles(); err != nil {
		return nil, err
	}
	env := st.gatewayEnv(port)
	// Refuse here, with the reason, what the gateway would refuse.
	if _, err := edge.LoadSettings(procs.LookupIn(env)); err != nil {
		return nil, fmt.Errorf("gateway environment: %w", err)
	}

	if st.gw, st.gwLog, err = startGateway(bin, st.dir, env, logs); err != nil {
		return nil, err
	}
	if err := st.gw.WaitHTTP(ctx, "http://"+st.Addr+"/readyz", readyWithin); err != nil {
		if st.gwLog.contains("address already in use") {
			return nil, portError(port, err)
		}
		if st.gw.Exited() {
			return nil, fmt.Errorf("%w; its log is above", err)
		}
		return nil, err
	}
	return st, nil
}

// gatewayEnv is the gateway's whole environment: nothing of ours reaches it
// but REDIS_URL (through Options) and what the Go runtime and Windows need.
func (st *Stack) gatewayEnv(port int) []string {
	env := []string{
		"PORT=" + strconv.Itoa(port),
		"LISTEN_ADDR=" + st.Addr,
		"APP_BASE_URL=" + st.BaseURL,
		"OIDC_ISSUER=" + st.IdP.Issuer(),
		"OIDC_CLIENT_ID=" + st.IdP.ClientID(),
		"OIDC_CLIENT_SECRET=" + clientSecret,
		"SESSION_COOKIE_SECURE=false",
		"CONFIG_PATH=" + filepath.Join(st.dir, "config.yml"),
		"PUBLIC_DIR=" + filepath.Join(st.dir, "public"),
		"ADMIN_TOKENS=" + adminTokenName + "=" + st.AdminToken,
		// The test user may use the admin API from the browser too.
		"ADMIN_EMAILS=" + st.IdP.Email(),
		"LOG_FORMAT=console",
		"LOG_LEVEL=info",
		"SHUTDOWN_TIMEOUT_SECONDS=2", // within stopGrace
	}
	if st.RedisURL != "" {
		env = append(env, "REDIS_URL="+st.RedisURL)
	}
	for _, k := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG", "SYSTEMROOT"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// writeFiles writes the gateway's config.yml and its public/index.html.
func (st *Stack) writeFiles() error {
	config := "# written by bench/devstack: every /api request goes to the echo backend\n" +
		"defaultBackend: " + strconv.Quote(st.EchoURL) + "\n"
	if err := os.WriteFile(filepath.Join(st.dir, "config.yml"), []byte(config), 0o644); err != nil {
		return err
	}
	public := filepath.Join(st.dir, "public")
	if err := os.Mkdir(public, 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(public, "index.html"))
	if err != nil {
		return err
	}
	err = indexPage.Execute(f, st)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// indexPage is the start page the gateway serves at /: links only, no
// script (the gateway's Content-Security-Policy allows none inline anyway).
var indexPage = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>API Get Away dev stack</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46em; margin: 2em auto; padding: 0 1em; }
code { background: #f2f2f2; padding: 0 .2em; }
</style>
</head>
<body>
<h1>API Get Away dev stack</h1>
<p>This page is a static file served by <code>getaway</code>. Behind it run a test OpenID provider
and an echo backend that answers every <code>/api</code> request with what it received.</p>
<ol>
<li><a href="/api/whoami-demo">/api/whoami-demo</a> before signing in: <code>401 Unauthorized</code>,
the gateway lets no anonymous request through.</li>
<li><a href="/auth/login?next=/api/whoami-demo">Sign in</a> as <code>{{.Username}}</code> with the
password <code>{{.Password}}</code>.</li>
<li>You come back to <code>/api/whoami-demo</code>: the echo backend's JSON shows the
<code>X-User-Email</code>, <code>X-User-Sub</code> and <code>X-User-Name</code> headers the gateway
added from your session, and no <code>sid</code> among the cookies it received.</li>
<li>More: <a href="/api/anything/else?x=1&amp;x=2">/api/anything/else?x=1&amp;x=2</a>,
<a href="/whoami/me">/whoami/me</a> (your identity from the provider),
<a href="/admin/config">/admin/config</a> (the routing in force; the test user is an admin),
<a href="/admin/health">/admin/health</a>, <a href="/readyz">/readyz</a>.</li>
</ol>
<form method="post" action="/auth/logout"><button type="submit">Sign out</button>
(the gateway answers 204: the page stays, the session is gone)</form>
<p>Use <code>{{.BaseURL}}</code>, not 127.0.0.1: the session cookie belongs to the host name
the gateway's <code>APP_BASE_URL</code> names.</p>
</body>
</html>
`))

// Done is closed when the gateway process has exited.
func (st *Stack) Done() <-chan struct{} { return st.gw.Done() }

// Err is how the gateway exited, once Done is closed.
func (st *Stack) Err() error { return st.gw.Err() }

// Stop stops the gateway (SIGTERM, then a kill after stopGrace), the echo
// backend and the IdP, and removes the temp dir. It is safe to call more
// than once and on a partly started stack.
func (st *Stack) Stop() error {
	st.stopOnce.Do(func() {
		var errs []error
		if st.gw != nil {
			errs = append(errs, st.gw.Stop(stopGrace))
		}
		if st.echo != nil {
			st.echo.stop()
		}
		if st.IdP != nil {
			errs = append(errs, st.IdP.Close())
		}
		if st.dir != "" {
			errs = append(errs, os.RemoveAll(st.dir))
		}
		st.stopErr = errors.Join(errs...)
	})
	return st.stopErr
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
