// Command proxyload measures what getaway's proxy path costs: it loads the
// same echo backend directly, through getaway (an authenticated request with
// a fixed bench identity) and through nginx as a plain reverse proxy, all on
// loopback, with the same load generator, in several interleaved rounds, and
// reports the medians and the ratios (DESIGN.md section 4).
//
// One binary plays every role, so every server runs in its own OS process:
//
//	go run ./bench/proxyload                  # harness (default role)
//	proxyload -role=backend                   # started by the harness
//	proxyload -role=gateway -backend=URL      # started by the harness
//
// The harness uses wrk and nginx when they are installed and falls back to a
// Go load generator, and to no nginx row, when they are not.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const (
	warmup      = time.Second      // per target, before round 1, not reported
	readyWithin = 10 * time.Second // how long a server may take to answer
)

type options struct {
	duration time.Duration
	conns    int
	rounds   int
	out      string
	nginx    bool
	wrk      bool
}

func main() {
	role := flag.String("role", "harness", "harness, backend or gateway (the last two are started by the harness)")
	backendURL := flag.String("backend", "", "gateway role: URL of the echo backend")
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of one measurement")
	flag.IntVar(&o.conns, "conns", 64, "concurrent keep-alive connections")
	flag.IntVar(&o.rounds, "rounds", 5, "measurements per target, interleaved")
	flag.StringVar(&o.out, "out", "bench/results/proxy.md", "Markdown report file")
	flag.BoolVar(&o.nginx, "nginx", true, "also measure nginx when it is installed")
	flag.BoolVar(&o.wrk, "wrk", true, "use wrk as the load generator when it is installed")
	flag.Parse()

	var err error
	switch *role {
	case "harness":
		err = runHarness(o)
	case "backend":
		err = runBackend()
	case "gateway":
		err = runGateway(*backendURL)
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
}

func runHarness(o options) error {
	if o.duration <= 0 || o.conns <= 0 || o.rounds <= 0 {
		return errors.New("-duration, -conns and -rounds must be positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	gen := chooseGenerator(o.wrk)
	fmt.Printf("load generator: %s\n", gen.describe())

	var children []*child
	defer func() {
		// Stop in reverse start order: the proxies before their backend.
		for i := len(children) - 1; i >= 0; i-- {
			children[i].stop()
		}
	}()

	backend, backendAddr, err := startRole(ctx, "backend", "/bench")
	if err != nil {
		return err
	}
	children = append(children, backend)
	gateway, gatewayAddr, err := startRole(ctx, "gateway", "/api/bench", "-backend=http://"+backendAddr)
	if err != nil {
		return err
	}
	children = append(children, gateway)

	targets := []target{
		{"direct", "http://" + backendAddr + "/bench"},
		{"getaway", "http://" + gatewayAddr + "/api/bench"},
	}
	nginxNote := "skipped (-nginx=false)"
	if o.nginx {
		nginxNote = "not found, skipped"
		if bin := findNginx(); bin != "" {
			ng, addr, version, err := startNginx(ctx, bin, backendAddr)
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				// nginx is a comparison point, not the subject: go on without it.
				fmt.Fprintf(os.Stderr, "nginx: %v\n", err)
				nginxNote = "could not start, skipped"
			default:
				children = append(children, ng)
				nginxNote = fmt.Sprintf("%s (%s), plain reverse proxy with upstream keep-alive", version, bin)
				targets = append(targets, target{"nginx", "http://" + addr + "/api/bench"})
			}
		}
	}
	fmt.Printf("nginx: %s\n", nginxNote)

	// Every path must return the backend's exact body; note the response
	// sizes, since the proxies add headers of their own.
	sizes := make(map[string]int, len(targets))
	for _, t := range targets {
		n, err := probe(t.url)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		sizes[t.name] = n
	}

	fmt.Printf("warm-up: %v per target\n", warmup)
	for _, t := range targets {
		if _, err := gen.run(ctx, t.url, o.conns, warmup); err != nil {
			return fmt.Errorf("warm-up of %s: %w", t.name, err)
		}
	}

	results := make(map[string][]result, len(targets))
	for r := range o.rounds {
		for i := range targets {
			// Rotate the starting target every round against order bias.
			t := targets[(r+i)%len(targets)]
			res, err := gen.run(ctx, t.url, o.conns, o.duration)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, t.name, err)
			}
			fmt.Printf("round %d/%d  %-8s %s\n", r+1, o.rounds, t.name, res)
			results[t.name] = append(results[t.name], res)
			for _, c := range children {
				if c.exited() {
					return fmt.Errorf("%s exited during round %d: %v", c.name, r+1, c.err)
				}
			}
		}
	}

	rep := newReport(o, gen.describe(), nginxNote, targets, results, sizes)
	fmt.Println()
	fmt.Print(rep.text())
	if err := rep.writeMarkdown(o.out); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s\n", o.out)
	return nil
}
