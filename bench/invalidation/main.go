// Command invalidation measures how long a session signed out on one
// gateway instance is still served by another instance on the same Redis
// (DESIGN.md section 4: refused everywhere within 100 ms).
//
//	go run ./bench/invalidation [-n 200] [-out bench/results/invalidation.md]
//
// It builds the getaway binary and starts, on loopback, redis-server, the
// test OpenID provider (authflow/testidp) and two gateways A and B on that
// Redis. For each of n sessions: sign in through A, have B serve the
// session once (so that B holds it in its process cache), sign out through
// A, and from the moment A's logout has answered, ask B for /whoami/me
// until it answers 401. The time to that 401 is an upper bound of the
// invalidation latency (it includes one request to B); the report gives
// its p50, p99 and maximum, and how many requests B still served after the
// logout. Needs redis-server; not run in CI.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/bench/internal/gatewayproc"
	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/apigetaway/getaway/bench/internal/redisproc"
)

const (
	cookieName  = "sid"
	readyWithin = 30 * time.Second
	stopGrace   = 5 * time.Second
	// target is DESIGN.md section 4's bound.
	target = 100 * time.Millisecond
	// giveUp bounds the wait for B's 401 after one logout.
	giveUp = 5 * time.Second
)

func main() {
	n := flag.Int("n", 200, "sessions signed in, served by B, signed out through A")
	out := flag.String("out", "bench/results/invalidation.md", "Markdown report file")
	bin := flag.String("getaway", "", "getaway binary to run (default: go build of the module root)")
	flag.Parse()
	if err := run(*n, *out, *bin); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "invalidation: interrupted")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "invalidation: %v\n", err)
		os.Exit(1)
	}
}

func run(n int, out, bin string) error {
	if n <= 0 {
		return errors.New("-n must be positive")
	}
	rbin := redisproc.Find()
	if rbin == "" {
		return errors.New("redis-server not found: two instances share sessions only through Redis")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	bin, built, cleanup, err := procs.Getaway(ctx, bin, "invalidation")
	if err != nil {
		return err
	}
	defer cleanup()

	idp, err := testidp.Start(testidp.Options{})
	if err != nil {
		return err
	}
	defer idp.Close()
	var children []*procs.Child
	defer func() {
		for i := len(children) - 1; i >= 0; i-- {
			_ = children[i].Stop(stopGrace)
		}
	}()
	rc, addr, version, err := redisproc.Start(ctx, rbin, readyWithin)
	if err != nil {
		return err
	}
	children = append(children, rc)
	var gws [2]*gatewayproc.Gateway
	for i := range gws {
		// No backend: /whoami/me answers from the session alone.
		gws[i], err = gatewayproc.Start(ctx, gatewayproc.Options{
			Bin: bin, IdP: idp, BackendURL: "http://127.0.0.1:9", RedisURL: "redis://" + addr,
			ReadyWithin: readyWithin, StopGrace: stopGrace,
		})
		if err != nil {
			return err
		}
		children = append(children, gws[i].Child)
	}
	a, b := gws[0], gws[1]
	fmt.Printf("A %s, B %s, %s on %s\n", a.Base, b.Base, version, addr)

	c := &http.Client{Timeout: 5 * time.Second}
	var lat []time.Duration
	servedAfter := 0
	for i := range n {
		sid, err := idp.SignInThrough(ctx, a.Base, idp.Username(), testidp.Password, cookieName)
		if err != nil {
			return fmt.Errorf("sign-in %d through A: %w", i, err)
		}
		if status, err := whoami(ctx, c, b.Base, sid); err != nil || status != http.StatusOK {
			return fmt.Errorf("session %d on B before the logout: %d %v", i, status, err)
		}
		if status, err := logout(ctx, c, a.Base, sid); err != nil || status != http.StatusNoContent {
			return fmt.Errorf("logout %d through A: %d %v", i, status, err)
		}
		signedOut := time.Now()
		for {
			status, err := whoami(ctx, c, b.Base, sid)
			if err != nil {
				return err
			}
			if status == http.StatusUnauthorized {
				lat = append(lat, time.Since(signedOut))
				break
			}
			if status != http.StatusOK {
				return fmt.Errorf("session %d on B after the logout: %d", i, status)
			}
			servedAfter++
			if time.Since(signedOut) > giveUp {
				return fmt.Errorf("session %d still served by B %v after its logout", i, giveUp)
			}
		}
	}
	s := summarize(lat)
	fmt.Printf("invalidation on B after a logout on A, n=%d: p50 %v, p99 %v, max %v; requests B served after the logout: %d\n",
		len(lat), s.p50, s.p99, s.max, servedAfter)
	fmt.Println(s.verdict())
	report := renderReport(s, servedAfter, built, version, strings.Join(os.Args, " "))
	if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", out)
	return nil
}

func whoami(ctx context.Context, c *http.Client, base, sid string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/whoami/me", nil)
	if err != nil {
		return 0, err
	}
	req.AddCookie(&http.Cookie{Name: cookieName, Value: sid})
	return send(c, req)
}

func logout(ctx context.Context, c *http.Client, base, sid string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/auth/logout", nil)
	if err != nil {
		return 0, err
	}
	req.AddCookie(&http.Cookie{Name: cookieName, Value: sid})
	req.Header.Set("Origin", base) // the gateway's own origin passes the CSRF check
	return send(c, req)
}

func send(c *http.Client, req *http.Request) (int, error) {
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}

// summary is the distribution of the measured latencies.
type summary struct {
	n             int
	p50, p99, max time.Duration
}

func summarize(lat []time.Duration) summary {
	if len(lat) == 0 {
		return summary{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return summary{n: len(s), p50: at(0.50), p99: at(0.99), max: s[len(s)-1]}
}

// verdict compares the maximum with DESIGN.md's bound.
func (s summary) verdict() string {
	if s.n == 0 {
		return "DESIGN.md section 4 target, a session deleted on one instance refused on every other within 100 ms: no measurement"
	}
	state := "met"
	if s.max > target {
		state = "not met"
	}
	return fmt.Sprintf("DESIGN.md section 4 target, a session deleted on one instance refused on every other within 100 ms: %s (max %v over %d sessions)", state, s.max.Round(10*time.Microsecond), s.n)
}

func renderReport(s summary, servedAfter int, built, redis, command string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Session invalidation across instances\n\n")
	fmt.Fprintf(&b, "- Date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Go: %s %s/%s, nproc: %d\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(&b, "- Command: `%s`\n", command)
	fmt.Fprintf(&b, "- Gateways: two instances of %s on loopback, sessions in one %s (no persistence)\n", built, redis)
	fmt.Fprintf(&b, "- Method: per session, sign in through A, /whoami/me once on B (B now holds the session in its process cache), POST /auth/logout through A; from A's answer, /whoami/me on B, one request after another, until B answers 401. The time to that 401 bounds the invalidation latency from above (it includes B's last request).\n\n")
	fmt.Fprintf(&b, "| sessions | p50 | p99 | max | requests B served after the logout |\n|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| %d | %v | %v | %v | %d |\n\n", s.n, s.p50.Round(time.Microsecond), s.p99.Round(time.Microsecond), s.max.Round(time.Microsecond), servedAfter)
	fmt.Fprintf(&b, "%s.\n", s.verdict())
	return b.String()
}
