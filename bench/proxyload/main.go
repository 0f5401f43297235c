// Command proxyload measures what getaway's authenticated proxy path costs:
// it loads the same echo backend directly, through the real getaway binary
// (signed in through a real OpenID provider, the session in Redis) and
// through nginx as a plain reverse proxy without authentication and
// through oauth2-proxy with Redis sessions (signed in through the same
// provider), all on loopback, with the same load generator, in several interleaved rounds,
// and reports the medians and the ratios (DESIGN.md section 4). It also
// times the first request of freshly signed-in sessions, counts the Redis
// commands the gateway sends per 1,000 cached requests and reads the
// gateway's resident memory.
//
// Every server runs in its own OS process except the OpenID provider
// (authflow/testidp), which runs in the harness:
//
//	go run ./bench/proxyload     # harness (default role)
//	proxyload -role=backend      # the echo backend, started by the harness
//	getaway                      # built from the module root with go build,
//	                             # configured through its environment only
//
// The harness uses wrk, nginx and redis-server when they are installed and
// falls back to a Go load generator, to no nginx row and to the gateway's
// in-memory session store when they are not. It builds oauth2-proxy once
// with go install into the user cache dir; without redis-server, or when
// that fails, it goes on without the oauth2-proxy row.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/bench/internal/gatewayproc"
	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/apigetaway/getaway/bench/internal/redisproc"
	"github.com/apigetaway/getaway/bench/internal/wsecho"
)

const (
	warmup      = time.Second      // per target, before round 1, not reported
	readyWithin = 10 * time.Second // how long a server may take to answer
	// stopGrace is how long a child has to exit after SIGTERM before it
	// is killed.
	stopGrace = 5 * time.Second
)

// Target names.
const (
	direct        = "direct"
	nginxName     = "nginx"
	getawayCached = "getaway-cached"
	getawayCold   = "getaway-cold"
	getawayWS     = "getaway-websocket"
	// oauth2ProxyName ("oauth2-proxy") is in oauth2proxy.go.
)

type options struct {
	duration time.Duration
	conns    int
	rounds   int
	cold     int
	out      string
	getaway  string
	nginx    bool
	redis    bool
	wrk      bool
	// oauth2Proxy measures oauth2-proxy too, when it can be obtained;
	// oauth2ProxyBin is a binary of the user's instead of the cached build.
	oauth2Proxy    bool
	oauth2ProxyBin string
}

func main() {
	role := flag.String("role", "harness", "harness or backend (started by the harness)")
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of one measurement")
	flag.IntVar(&o.conns, "conns", 64, "concurrent keep-alive connections")
	flag.IntVar(&o.rounds, "rounds", 5, "measurements per target, interleaved")
	flag.IntVar(&o.cold, "cold", 200, "fresh sign-ins whose first /api request is timed (getaway-cold); 0 skips")
	flag.StringVar(&o.out, "out", "bench/results/proxy.md", "Markdown report file; the SVG chart goes next to it, with .svg for its extension")
	flag.StringVar(&o.getaway, "getaway", "", "getaway binary to run (default: go build of the module root)")
	flag.BoolVar(&o.nginx, "nginx", true, "also measure nginx when it is installed")
	flag.BoolVar(&o.redis, "redis", true, "keep the gateway's sessions in a redis-server of their own when it is installed")
	flag.BoolVar(&o.wrk, "wrk", true, "use wrk as the load generator when it is installed")
	flag.BoolVar(&o.oauth2Proxy, "oauth2proxy", true, "also measure oauth2-proxy "+oauth2ProxyVersion+" with Redis sessions (built once with go install into the user cache dir) when redis-server is installed")
	flag.StringVar(&o.oauth2ProxyBin, "oauth2proxy-bin", "", "oauth2-proxy binary to run (default: the cached go install build)")
	flag.Parse()

	var err error
	switch *role {
	case "harness":
		err = runHarness(o)
	case "backend":
		err = runBackend()
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "proxyload: interrupted")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "proxyload %s: %v\n", *role, err)
		os.Exit(1)
	}
}

// target is one way to reach the echo backend.
type target struct {
	name string
	url  string
	sid  string // session cookie value to send, if any
	// cookie is the name of the cookie that carries sid; "" is the
	// gateway's, cookieName.
	cookie string
	// ws marks a WebSocket target (url is ws://): it is measured in
	// echoed messages per second, not requests.
	ws bool
}

// cookieKey is the name of the cookie that carries t.sid.
func (t target) cookieKey() string {
	if t.cookie != "" {
		return t.cookie
	}
	return cookieName
}

// unit is what a target's rate counts.
func (t target) unit() string {
	if t.ws {
		return "msg/s"
	}
	return "req/s"
}

// environment is what the run found and started, for the report.
type environment struct {
	generator string
	nginx     string
	redis     string
	gateway   string
	// oauth2Proxy is what ran as oauth2-proxy, or why it did not.
	oauth2Proxy string
}

func runHarness(o options) error {
	if o.duration <= 0 || o.conns <= 0 || o.rounds <= 0 || o.cold < 0 {
		return errors.New("-duration, -conns and -rounds must be positive, -cold not negative")
	}
	// SIGHUP (terminal gone) and SIGPIPE (stdout piped into a reader that
	// quit, such as head) end the run like Ctrl-C, with children stopped
	// and temp dirs removed, instead of killing the harness outright.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	defer stop()

	var env environment
	gen := chooseGenerator(o.wrk)
	env.generator = gen.describe()
	fmt.Printf("load generator: %s\n", env.generator)

	bin, built, cleanup, err := procs.Getaway(ctx, o.getaway, "proxyload")
	if err != nil {
		return err
	}
	defer cleanup()
	env.gateway = built

	// The provider runs in this process. Deferred before the children's
	// stop, it is closed after the gateway has stopped.
	idp, err := testidp.Start(testidp.Options{})
	if err != nil {
		return err
	}
	defer idp.Close()

	var children []*procs.Child
	defer func() {
		// Stop in reverse start order: the proxies before the store and
		// the backend.
		for i := len(children) - 1; i >= 0; i-- {
			stopChild(children[i])
		}
	}()

	backend, backendAddr, err := startRole(ctx, "backend", "/bench")
	if err != nil {
		return err
	}
	children = append(children, backend)

	var redisAddr, redisURL string
	env.redis = "skipped (-redis=false): sessions in the gateway's process memory"
	if o.redis {
		env.redis = "redis-server not found: sessions in the gateway's process memory"
		if rbin := redisproc.Find(); rbin != "" {
			rc, addr, version, err := redisproc.Start(ctx, rbin, readyWithin)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("redis-server (-redis=false runs without it): %w", err)
			}
			children = append(children, rc)
			redisAddr, redisURL = addr, "redis://"+addr
			env.redis = fmt.Sprintf("%s (%s) on a free loopback port, no persistence; REDIS_URL set", version, rbin)
		}
	}
	if redisAddr != "" {
		fmt.Printf("redis: %s, on %s\n", env.redis, redisAddr)
	} else {
		fmt.Printf("redis: %s\n", env.redis)
	}

	gw, err := gatewayproc.Start(ctx, gatewayproc.Options{
		Bin: bin, IdP: idp, BackendURL: "http://" + backendAddr, RedisURL: redisURL,
		ReadyWithin: readyWithin, StopGrace: stopGrace,
	})
	if err != nil {
		return err
	}
	children = append(children, gw.Child)
	fmt.Printf("getaway: %s on %s, provider %s\n", bin, gw.Addr, idp.Issuer())

	targets := []target{{name: direct, url: "http://" + backendAddr + "/bench"}}
	env.nginx = "skipped (-nginx=false)"
	if o.nginx {
		env.nginx = "not found, skipped"
		if nbin := findNginx(); nbin != "" {
			ng, addr, version, err := startNginx(ctx, nbin, backendAddr)
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				// nginx is a comparison point, not the subject: go on without it.
				fmt.Fprintf(os.Stderr, "nginx: %v\n", err)
				env.nginx = "could not start, skipped"
			default:
				children = append(children, ng)
				env.nginx = fmt.Sprintf("%s (%s), plain reverse proxy with upstream keep-alive, no authentication", version, nbin)
				targets = append(targets, target{name: nginxName, url: "http://" + addr + "/api/bench"})
			}
		}
	}
	fmt.Printf("nginx: %s\n", env.nginx)

	o2p, desc, err := setupOAuth2Proxy(ctx, o, idp, backendAddr)
	if err != nil {
		return err
	}
	env.oauth2Proxy = desc
	var o2pRedis string
	if o2p != nil {
		children = append(children, o2p.children...)
		targets = append(targets, o2p.target)
		o2pRedis = o2p.redisAddr
	}
	fmt.Printf("oauth2-proxy: %s\n", env.oauth2Proxy)

	// Sign in once, as a browser would, for the loaded session.
	apiURL := gw.Base + "/api/bench"
	br := newBrowser(gw, idp)
	defer br.close()
	sid, err := br.signIn(ctx)
	if err != nil {
		return fmt.Errorf("sign-in through the gateway: %w", err)
	}
	// Without the cookie the gateway must refuse: the row then measures
	// authentication, not an open door.
	if status, err := get(target{url: apiURL}, nil); err != nil || status != 401 {
		return fmt.Errorf("getaway answered %d (%v) to /api without a session, want 401", status, err)
	}
	targets = append(targets, target{name: getawayCached, url: apiURL, sid: sid})
	// The same session upgrades to a WebSocket, which the backend echoes;
	// without it the upgrade must be refused.
	wsURL := "ws://" + gw.Addr + "/api/ws"
	if _, err := wsecho.Dial(ctx, wsURL, nil); !isRefused(err, 401) {
		return fmt.Errorf("getaway answered a WebSocket upgrade without a session with %v, want a 401", err)
	}
	targets = append(targets, target{name: getawayWS, url: wsURL, sid: sid, ws: true})

	// Every path must return the backend's exact body (the first request
	// of the session also puts it in the gateway's process cache); note
	// the response sizes, since the proxies add headers of their own.
	sizes := make(map[string]int, len(targets))
	for _, t := range targets {
		probeOne := probe
		if t.ws {
			probeOne = func(t target) (int, error) { return probeWS(ctx, t) }
		}
		n, err := probeOne(t)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		sizes[t.name] = n
	}

	fmt.Printf("warm-up: %v per target\n", warmup)
	for _, t := range targets {
		if _, err := measure(ctx, gen, t, o.conns, warmup); err != nil {
			return fmt.Errorf("warm-up of %s: %w", t.name, err)
		}
	}

	check := func(when string) error {
		for _, c := range children {
			if c.Exited() {
				return fmt.Errorf("%s exited %s: %v", c.Name(), when, c.Err())
			}
		}
		return nil
	}

	// The Redis commands of the loaded targets, counted around each of
	// their rounds in the redis-server each has to itself.
	redisFor := map[string]string{} // target name -> its Redis address
	use := map[string]*redisUse{}
	if redisAddr != "" {
		redisFor[getawayCached] = redisAddr
		use[getawayCached] = &redisUse{}
	}
	if o2pRedis != "" {
		redisFor[oauth2ProxyName] = o2pRedis
		use[oauth2ProxyName] = &redisUse{}
	}
	results := make(map[string][]result, len(targets))
	for r := range o.rounds {
		for i := range targets {
			// Rotate the starting target every round against order bias.
			t := targets[(r+i)%len(targets)]
			var before commandStats
			raddr := redisFor[t.name]
			if raddr != "" {
				if before, err = readCommandStats(ctx, raddr); err != nil {
					return err
				}
			}
			res, err := measure(ctx, gen, t, o.conns, o.duration)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, t.name, err)
			}
			if before != nil {
				after, err := readCommandStats(ctx, raddr)
				if err != nil {
					return err
				}
				use[t.name].add(before, after, res.requests, res.elapsed)
			}
			fmt.Printf("round %d/%d  %-17s %s\n", r+1, o.rounds, t.name, res.format(t.unit()))
			results[t.name] = append(results[t.name], res)
			if err := check(fmt.Sprintf("during round %d", r+1)); err != nil {
				return err
			}
		}
	}
	for _, name := range []string{getawayCached, oauth2ProxyName} {
		if u := use[name]; u != nil {
			fmt.Printf("redis: %.3f commands per 1,000 %s requests (%d over %d requests in %.1fs: %s)\n",
				u.perThousand(), name, u.commands(), u.requests, u.elapsed.Seconds(), u.breakdown())
		}
	}

	var cold *coldResult
	if o.cold > 0 {
		fmt.Printf("getaway-cold: %d fresh sign-ins, first /api request of each timed ...\n", o.cold)
		var before commandStats
		if redisAddr != "" {
			if before, err = readCommandStats(ctx, redisAddr); err != nil {
				return err
			}
		}
		t0 := time.Now()
		cold = measureCold(ctx, br, apiURL, o.cold)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if before != nil {
			after, err := readCommandStats(ctx, redisAddr)
			if err != nil {
				return err
			}
			cold.redis = &redisUse{}
			cold.redis.add(before, after, int64(o.cold), time.Since(t0))
		}
		if err := check("while signing in"); err != nil {
			return err
		}
	}

	rep := newReport(o, env, targets, results, sizes)
	rep.cold = cold
	rep.redisCached = use[getawayCached]
	rep.redisOAuth2Proxy = use[oauth2ProxyName]
	if m, err := gw.Memory(); err == nil {
		rep.gatewayMemory = m.String()
	} else {
		rep.gatewayMemory = "n/a (" + err.Error() + ")"
	}
	rep.gatewayLog = gw.NewLog()

	fmt.Println()
	fmt.Print(rep.text())
	chart := svgPath(o.out)
	if err := rep.writeSVG(chart); err != nil {
		return err
	}
	rep.svg = filepath.Base(chart)
	if err := rep.writeMarkdown(o.out); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s and %s\n", o.out, chart)
	return nil
}

// stopChild stops c, allowing it stopGrace, and says so when it had to be
// killed.
func stopChild(c *procs.Child) {
	if err := c.Stop(stopGrace); errors.Is(err, procs.ErrKilled) {
		fmt.Fprintln(os.Stderr, err)
	}
}
