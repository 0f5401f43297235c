package procs

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain runs the test binary in a child role when the tests start it
// again with SelfCommand ("-role=NAME" first).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		if role, ok := strings.CutPrefix(os.Args[1], "-role="); ok {
			if err := runRole(role); err != nil {
				fmt.Fprintf(os.Stderr, "role %s: %v\n", role, err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// runRole is a child of the tests:
//
//   - server: answers 200 on / until SIGTERM, then exits 0;
//   - stubborn: the same, but ignores SIGTERM;
//   - parent: starts a stubborn child in its own process group and answers
//     its pid on /, until SIGTERM;
//   - exit3: exits with status 3 at once.
func runRole(role string) error {
	switch role {
	case "server":
		return serve("ok")
	case "stubborn":
		// Serve without ServeUntilSignal: its signal.Notify would take
		// SIGTERM back from Ignore.
		signal.Ignore(syscall.SIGTERM)
		ln, err := Listen()
		if err != nil {
			return err
		}
		return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
	case "parent":
		cmd, err := SelfCommand("stubborn")
		if err != nil {
			return err
		}
		// Not Start: the grandchild stays in this process's group.
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		return serve(fmt.Sprint(cmd.Process.Pid))
	case "exit3":
		os.Exit(3)
	}
	return fmt.Errorf("unknown role %q", role)
}

// serve answers body on / at an address it reports with Listen, until
// SIGTERM or SIGINT.
func serve(body string) error {
	ln, err := Listen()
	if err != nil {
		return err
	}
	srv := &http.Server{
		ReadHeaderTimeout: time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			fmt.Fprint(w, body)
		}),
	}
	return ServeUntilSignal(func() error { return srv.Serve(ln) }, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	})
}
