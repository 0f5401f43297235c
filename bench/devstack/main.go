// Command devstack runs API Get Away on this machine with everything it
// needs, on loopback, in one command:
//
//	go run ./bench/devstack            # the gateway on http://localhost:8080/
//	go run ./bench/devstack -port 18080
//
// It starts the OpenID provider the tests use (authflow/testidp: discovery,
// a real login form, tokens), an echo backend that answers every request with
// a JSON document of what it received (method, path, query, headers, cookie
// names), and the real getaway binary, built from this module with go build
// and run as a child process configured by its environment only: sign-in
// against that provider, every /api request routed to the echo backend,
// sessions in process memory (in Redis when REDIS_URL is set), a random admin
// token (the test user is an admin too) and a small start page.
//
// It prints the URL to open, the test user's credentials and curl examples,
// streams the gateway's log to stderr ("getaway | ..."), and stops everything
// on Ctrl-C (SIGINT, SIGTERM, SIGHUP, or when its parent `go run` is killed).
// It exits non-zero when the gateway exits by itself. (`go run` itself exits
// 1 after a Ctrl-C whatever the program returns: that is the go command.)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	port := flag.Int("port", 8080, "the gateway's port on loopback (http://localhost:PORT/)")
	flag.Parse()
	if flag.NArg() > 0 || *port < 1 || *port > 65535 {
		fmt.Fprintln(os.Stderr, "usage: go run ./bench/devstack [-port N]  (N from 1 to 65535)")
		os.Exit(2)
	}
	os.Exit(serve(*port))
}

// serve runs the stack until Ctrl-C or until the gateway exits, and returns
// the exit code.
func serve(port int) int {
	// SIGHUP: the terminal closed.
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stopSignals()
	ctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go watchParent(ctx, stopWatch)

	st, err := run(ctx, Options{Port: port, RedisURL: os.Getenv("REDIS_URL")})
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		return 1
	}
	printBanner(os.Stdout, st)

	select {
	case <-ctx.Done():
	case <-st.Done():
	}
	// On systems where the gateway shares our process group, Ctrl-C reaches
	// it too and it stops at once: that is still a stop we asked for.
	select {
	case <-ctx.Done():
	case <-time.After(200 * time.Millisecond):
	}
	if ctx.Err() == nil {
		_ = st.Stop()
		how := "exit status 0"
		if st.Err() != nil {
			how = st.Err().Error()
		}
		fmt.Fprintf(os.Stderr, "devstack: getaway exited by itself (%s); everything is stopped\n", how)
		return 1
	}
	fmt.Fprintln(os.Stderr, "devstack: stopping")
	if err := st.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "devstack: stopped")
	return 0
}

// watchParent calls stop when our parent process goes away. `go run`
// ignores SIGINT (the terminal sends it to us as well) but dies of SIGTERM
// without passing it on, which would leave the stack running, orphaned.
func watchParent(ctx context.Context, stop func()) {
	parent := os.Getppid()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if os.Getppid() != parent {
				fmt.Fprintln(os.Stderr, "devstack: the parent process (go run?) is gone")
				stop()
				return
			}
		}
	}
}

// printBanner tells a person what runs and how to use it.
func printBanner(w io.Writer, st *Stack) {
	sessions := "in memory; set REDIS_URL to keep them in Redis"
	if st.RedisURL != "" {
		sessions = "in Redis at " + redacted(st.RedisURL)
	}
	bearer := "-H 'Authorization: Bearer " + st.AdminToken + "'"
	fmt.Fprintf(w, `
API Get Away dev stack is running.

  Open        %[1]s/
  Sign in as  %[2]s   password: %[3]s

  getaway     %[1]s  (listens on %[4]s; sessions %[5]s)
  IdP         %[6]s  (OpenID provider with a login form)
  echo        %[7]s  (every /api request goes here; it answers with what it received)

Try it with curl:
  curl -i %[1]s/api/hello
      401: no session yet
  curl -s %[8]s %[1]s/admin/config
  curl -s %[8]s %[1]s/admin/health
      the admin API with the token of this run (ADMIN_TOKENS=%[9]s=%[10]s)
  curl -s -b 'sid=PASTE_IT_HERE' %[1]s/api/hello
      sid is the session cookie your browser got when you signed in (HttpOnly, so copy it
      from the developer tools: Application/Storage > Cookies > %[1]s);
      the echo shows the x-user-* headers getaway added, and that no sid cookie reached it

Ctrl-C stops everything.

`, st.BaseURL, st.Username, st.Password, st.Addr, sessions, st.IdP.Issuer(), st.EchoURL,
		bearer, adminTokenName, st.AdminToken)
}

// redacted hides a password in a Redis URL.
func redacted(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "REDIS_URL"
}
