// Command soak runs the real getaway binary under a steady, mixed load for
// a long time (10 minutes by default) and checks that it does not leak:
// every sample interval it records the gateway's resident memory, its
// goroutines (from the metrics listener at ADMIN_ADDR, when the gateway
// has one), OS threads and open file descriptors, and the operations and
// errors so far. At the end it judges whether memory and goroutines stayed
// flat (DESIGN.md section 4: "RSS flat during a 10-minute soak"), writes a
// Markdown report with an SVG chart, and exits 1 when they did not or when
// any operation failed.
//
// The load, all on loopback: cached-session GET /api requests from -conns
// connections (-rate a second in all), a fresh sign-in through the
// provider's form every 2 s followed by a request and a logout, WebSocket
// sockets opened, used for 10 echoes and closed by two clients every
// 500 ms each, and a PUT of the gateway's own config through the admin API
// every 15 s.
//
//	go run ./bench/soak                            # harness (default role)
//	soak -role=backend                             # the echo backend, started by the harness
//
// Like bench/proxyload it builds the gateway, runs it with its environment
// only, keeps its sessions in a redis-server of its own when one is
// installed, and runs the OpenID provider (authflow/testidp) in the
// harness. It is not run in CI: it takes too long.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/bench/internal/gatewayproc"
	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/apigetaway/getaway/bench/internal/redisproc"
	"github.com/apigetaway/getaway/bench/internal/wsecho"
)

const (
	readyWithin = 10 * time.Second
	stopGrace   = 5 * time.Second
)

// echoBody is the backend's answer to every request and the WebSocket
// message the clients send.
var echoBody = []byte(`{"ok":true,"service":"soak-echo","n":42}`)

type options struct {
	duration time.Duration
	conns    int
	rate     float64
	sample   time.Duration
	users    int
	out      string
	getaway  string
	redis    bool
}

func main() {
	role := flag.String("role", "harness", "harness or backend (started by the harness)")
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "how long to load the gateway")
	flag.IntVar(&o.conns, "conns", 8, "keep-alive connections sending /api requests")
	flag.Float64Var(&o.rate, "rate", 1000, "/api requests per second over all connections; 0: as fast as they are answered")
	flag.DurationVar(&o.sample, "sample", 10*time.Second, "interval between two readings of the gateway")
	flag.IntVar(&o.users, "users", 3, "sessions signed in at the start, shared by the /api connections and the WebSocket clients")
	flag.StringVar(&o.out, "out", "bench/results/soak.md", "Markdown report file; the SVG chart goes next to it, with .svg for its extension")
	flag.StringVar(&o.getaway, "getaway", "", "getaway binary to run (default: go build of the module root)")
	flag.BoolVar(&o.redis, "redis", true, "keep the gateway's sessions in a redis-server of their own when it is installed")
	flag.Parse()

	var err error
	passed := true
	switch *role {
	case "harness":
		passed, err = runHarness(o)
	case "backend":
		err = runBackend()
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "soak: interrupted")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak %s: %v\n", *role, err)
		os.Exit(1)
	}
	if !passed {
		fmt.Fprintln(os.Stderr, "soak: verdict failed")
		os.Exit(1)
	}
}

// runBackend answers echoBody to every request and echoes every message of
// a WebSocket, until SIGTERM.
func runBackend() error { return wsecho.ServeBackend("soak-echo", echoBody) }

// runHarness starts everything, runs the soak and writes the report. It
// returns whether the verdict passed.
func runHarness(o options) (bool, error) {
	if o.duration <= 0 || o.conns <= 0 || o.rate < 0 || o.sample <= 0 || o.users <= 0 {
		return false, errors.New("-duration, -conns, -sample and -users must be positive, -rate not negative")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	defer stop()
	rep := &report{o: o, started: time.Now(), command: commandLine()}

	bin, built, cleanup, err := procs.Getaway(ctx, o.getaway, "soak")
	if err != nil {
		return false, err
	}
	defer cleanup()
	rep.gateway = built

	idp, err := testidp.Start(testidp.Options{})
	if err != nil {
		return false, err
	}
	defer idp.Close()

	var children []*procs.Child
	defer func() {
		for i := len(children) - 1; i >= 0; i-- {
			if err := children[i].Stop(stopGrace); errors.Is(err, procs.ErrKilled) {
				fmt.Fprintln(os.Stderr, err)
			}
		}
	}()
	cmd, err := procs.SelfCommand("backend")
	if err != nil {
		return false, err
	}
	backend, backendAddr, err := procs.StartServer(ctx, "backend", cmd, readyWithin)
	if err != nil {
		return false, err
	}
	children = append(children, backend)

	var redisURL string
	rep.redis = "skipped (-redis=false): sessions in the gateway's process memory"
	if o.redis {
		rep.redis = "redis-server not found: sessions in the gateway's process memory"
		if rbin := redisproc.Find(); rbin != "" {
			rc, addr, version, err := redisproc.Start(ctx, rbin, readyWithin)
			if err != nil {
				return false, fmt.Errorf("redis-server (-redis=false runs without it): %w", err)
			}
			children = append(children, rc)
			redisURL = "redis://" + addr
			rep.redis = version + " on a free loopback port, no persistence; REDIS_URL set"
		}
	}
	fmt.Printf("redis: %s\n", rep.redis)

	adminAddr, err := procs.FreeAddr()
	if err != nil {
		return false, err
	}
	token, err := randomHex(adminTokenLen)
	if err != nil {
		return false, err
	}
	gw, err := gatewayproc.Start(ctx, gatewayproc.Options{
		Bin: bin, IdP: idp, BackendURL: "http://" + backendAddr, RedisURL: redisURL,
		Env:         []string{"ADMIN_TOKENS=soak=" + token, "ADMIN_ADDR=" + adminAddr},
		ReadyWithin: readyWithin, StopGrace: stopGrace,
	})
	if err != nil {
		return false, err
	}
	children = append(children, gw.Child)
	fmt.Printf("getaway: pid %d on %s (ADMIN_ADDR %s), provider %s\n", gw.Pid(), gw.Addr, adminAddr, idp.Issuer())

	l := newLoad()
	l.base, l.wsURL, l.idp = gw.Base, "ws://"+gw.Addr+"/api/ws", idp
	l.adminToken, l.config = token, gw.Config
	l.conns, l.rate = o.conns, o.rate
	for range o.users {
		sid, err := idp.SignInThrough(ctx, gw.Base, idp.Username(), testidp.Password, cookieName)
		if err != nil {
			return false, fmt.Errorf("sign-in through the gateway: %w", err)
		}
		l.sids = append(l.sids, sid)
	}
	// Without a session the gateway must refuse, or the load measures an
	// open door.
	if status, err := do(ctx, "GET", gw.Base+apiPath, nil, nil); err != nil || status != 401 {
		return false, fmt.Errorf("getaway answered %d (%v) to /api without a session, want 401", status, err)
	}

	metricsURL := "http://" + adminAddr + "/metrics"
	fmt.Printf("soak: %v, a sample every %v, %d connections at %s\n", o.duration, o.sample, o.conns, rateText(o.rate))
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		l.run(loadCtx)
	}()
	start := time.Now()
	take := func() sample {
		s := sample{at: time.Since(start), requests: l.ops.Load(), errors: l.errorCount()}
		var err error
		if s.rssKiB, s.threads, s.fds, err = readProc(gw.Pid()); err != nil {
			rep.notes = append(rep.notes, fmt.Sprintf("at %v: /proc: %v", s.at.Round(time.Second), err))
		}
		if s.goroutines, err = readGoroutines(ctx, metricsURL); err != nil && rep.metricsErr == "" {
			rep.metricsErr = err.Error()
		}
		fmt.Println(s.line())
		return s
	}
	rep.samples = append(rep.samples, take())
	tick := time.NewTicker(o.sample)
	deadline := time.NewTimer(o.duration)
	var gwErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-gw.Done():
			gwErr = fmt.Errorf("getaway exited during the soak: %v", gw.Err())
			break loop
		case <-tick.C:
			rep.samples = append(rep.samples, take())
		case <-deadline.C:
			break loop
		}
	}
	tick.Stop()
	stopLoad()
	<-loadDone
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if gwErr != nil {
		return false, gwErr
	}
	rep.elapsed = time.Since(start)
	rep.load = l
	rep.gatewayLog = gw.NewLog()
	rep.verdict = decide(rep.samples, l.errorCount())

	fmt.Println()
	fmt.Print(rep.summary())
	if err := rep.write(o.out); err != nil {
		return false, err
	}
	fmt.Printf("wrote %s and %s\n", o.out, svgPath(o.out))
	return rep.verdict.ok(), nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func rateText(rate float64) string {
	if rate == 0 {
		return "as fast as answered"
	}
	return fmt.Sprintf("%.0f requests/s", rate)
}
