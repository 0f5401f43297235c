package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one target's medians over the rounds.
type row struct {
	name         string
	rps          float64
	p50, p99     time.Duration
	rounds       []result
	badStatus    int64 // summed over the rounds
	socketErrors int64
	size         int  // bytes of one response, head and body; of one message for ws
	ws           bool // rps counts echoed WebSocket messages
}

type report struct {
	date    time.Time
	command string
	env     environment
	o       options
	rows    []row

	cold        *coldResult // nil when skipped
	redisCached *redisUse   // nil without Redis
	// redisOAuth2Proxy is oauth2-proxy's use of its own redis-server; nil
	// without the oauth2-proxy row.
	redisOAuth2Proxy *redisUse
	gatewayMemory    string   // resident set after the run
	gatewayLog       []string // what the gateway logged (LOG_LEVEL=error)
	svg              string   // the chart's file, relative to the Markdown report; "" for none
}

func newReport(o options, env environment, targets []target, results map[string][]result, sizes map[string]int) *report {
	rep := &report{
		date:    time.Now(),
		command: commandLine(),
		env:     env,
		o:       o,
	}
	for _, t := range targets {
		rs := results[t.name]
		r := row{name: t.name, rounds: rs, size: sizes[t.name], ws: t.ws}
		var rps []float64
		var p50, p99 []time.Duration
		for _, x := range rs {
			rps = append(rps, x.rps)
			p50 = append(p50, x.p50)
			p99 = append(p99, x.p99)
			r.badStatus += x.badStatus
			r.socketErrors += x.socketErrors
		}
		r.rps = median(rps)
		r.p50 = median(p50)
		r.p99 = median(p99)
		rep.rows = append(rep.rows, r)
	}
	return rep
}

// median returns the middle value, or the mean of the two middle ones.
func median[T float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (rep *report) find(name string) *row {
	for i := range rep.rows {
		if rep.rows[i].name == name {
			return &rep.rows[i]
		}
	}
	return nil
}

// versus compares r with the reference target ref: "0.52x req/s, 1.80x p99".
func (rep *report) versus(r row, ref string) string {
	b := rep.find(ref)
	switch {
	case b == nil:
		return "n/a"
	case b.name == r.name:
		return "-"
	case r.ws || b.ws:
		return "n/a (msg/s)" // a message is not a request
	}
	return fmt.Sprintf("%.2fx req/s, %.2fx p99", r.rps/b.rps, float64(r.p99)/float64(b.p99))
}

var header = []string{"target", "req/s (median)", "p50", "p99", "vs direct", "vs nginx"}

func (rep *report) cells(r row) []string {
	rate := fmt.Sprintf("%.0f", r.rps)
	if r.ws {
		rate += " msg/s"
	}
	return []string{r.name, rate, fmtDur(r.p50), fmtDur(r.p99), rep.versus(r, direct), rep.versus(r, nginxName)}
}

// table is the rows of the table, the cold row last.
func (rep *report) table() [][]string {
	var t [][]string
	for _, r := range rep.rows {
		t = append(t, rep.cells(r))
	}
	if c := rep.cold; c != nil {
		// One request at a time: no throughput, and no ratio to rows
		// measured under load.
		t = append(t, []string{getawayCold, fmt.Sprintf("- (1st request, n=%d)", len(c.first)),
			fmtDur(percentile(c.first, 50)), fmtDur(percentile(c.first, 99)), "-", "-"})
	}
	return t
}

// notes are the lines that follow the table in both outputs.
func (rep *report) notes() []string {
	var out []string
	if g, n := rep.find(getawayCached), rep.find(nginxName); g != nil && n != nil {
		out = append(out, fmt.Sprintf("DESIGN.md section 4 target, getaway-cached req/s >= nginx and p99 <= nginx's: %s (%.2fx req/s, %.2fx p99).",
			metOrNot(g.rps >= n.rps && g.p99 <= n.p99), g.rps/n.rps, float64(g.p99)/float64(n.p99)))
	}
	out = append(out, rep.oauth2ProxyTarget())
	if u := rep.redisCached; u != nil {
		out = append(out, fmt.Sprintf("Redis commands per 1,000 getaway-cached requests: %.3f (%d commands over %d requests in %.1fs of measured rounds, %.1f per second: %s; INFO commandstats before and after each round, the harness's own INFO calls excluded). DESIGN.md section 4 target < 1: %s.",
			u.perThousand(), u.commands(), u.requests, u.elapsed.Seconds(), u.perSecond(), u.breakdown(), metOrNot(u.perThousand() < 1)))
	} else {
		out = append(out, "Redis commands per 1,000 getaway-cached requests: n/a (no Redis in this run).")
	}
	if u := rep.redisOAuth2Proxy; u != nil {
		out = append(out, fmt.Sprintf("Redis commands per 1,000 oauth2-proxy requests: %.3f (%d commands over %d requests in %.1fs of measured rounds: %s; in the redis-server oauth2-proxy has to itself, counted the same way).",
			u.perThousand(), u.commands(), u.requests, u.elapsed.Seconds(), u.breakdown()))
	}
	if c := rep.cold; c != nil {
		line := fmt.Sprintf("getaway-cold: the first /api request right after each of %d fresh sign-ins (login, provider form, callback), one at a time over a warm keep-alive connection with no other load: p50 %s, p99 %s; the second request of the same session: p50 %s, p99 %s; the whole sign-in: p50 %s, p99 %s.",
			c.n, fmtDur(percentile(c.first, 50)), fmtDur(percentile(c.first, 99)),
			fmtDur(percentile(c.second, 50)), fmtDur(percentile(c.second, 99)),
			fmtDur(percentile(c.signIn, 50)), fmtDur(percentile(c.signIn, 99)))
		if c.redis != nil {
			line += fmt.Sprintf(" Redis commands per sign-in and its two requests: %.1f (%s).",
				float64(c.redis.commands())/float64(max(c.n, 1)), c.redis.breakdown())
		}
		if len(c.failures) > 0 {
			line += fmt.Sprintf(" %d of %d failed; the first: %s", len(c.failures), c.n, c.failures[0])
		}
		out = append(out, line)
	}
	if w := rep.find(getawayWS); w != nil {
		out = append(out, fmt.Sprintf("getaway-websocket: the unit is echoed messages per second, not requests: each of the %d sockets, opened through the gateway's /api/ws with the session of getaway-cached and relayed to the backend's WebSocket echo, sends the %d-byte body as one binary message and waits for its echo before sending the next; p50 and p99 are of one such round trip. No ratio to the HTTP rows: %.0f msg/s, p50 %s, p99 %s.",
			rep.o.conns, w.size, w.rps, fmtDur(w.p50), fmtDur(w.p99)))
	}
	var errs, sizes []string
	for _, r := range rep.rows {
		errs = append(errs, fmt.Sprintf("%s %d/%d", r.name, r.badStatus, r.socketErrors))
		if r.ws {
			sizes = append(sizes, fmt.Sprintf("%s %d B per message", r.name, r.size))
		} else {
			sizes = append(sizes, fmt.Sprintf("%s %d B", r.name, r.size))
		}
	}
	out = append(out,
		"Errors over all rounds (responses with status >= 400 / socket errors and timeouts; for getaway-websocket, handshakes refused / sockets failed): "+strings.Join(errs, ", ")+".",
		"One response, head and body: "+strings.Join(sizes, ", ")+".",
		"Gateway resident memory after the run (VmRSS, /proc): "+rep.gatewayMemory+".",
	)
	if len(rep.gatewayLog) == 0 {
		out = append(out, "Gateway log (LOG_LEVEL=error): empty.")
	} else {
		out = append(out, fmt.Sprintf("Gateway log (LOG_LEVEL=error): %d line(s); the first: %s", len(rep.gatewayLog), rep.gatewayLog[0]))
	}
	out = append(out,
		"Ratios are from one run on one machine (load generator and servers share its CPUs); compare them only with runs made the same way.")
	return out
}

// oauth2ProxyTarget is the line on the DESIGN.md section 4 target against
// oauth2-proxy, with the ratio, or why it could not be checked.
func (rep *report) oauth2ProxyTarget() string {
	const prefix = "DESIGN.md section 4 target, getaway-cached req/s >= 10x oauth2-proxy's: "
	g, p := rep.find(getawayCached), rep.find(oauth2ProxyName)
	switch {
	case p == nil:
		why := rep.env.oauth2Proxy
		if why == "" {
			why = "not measured"
		}
		return prefix + "n/a (oauth2-proxy: " + why + ")."
	case g == nil || p.rps <= 0:
		return prefix + "n/a (no getaway-cached or oauth2-proxy throughput)."
	}
	ratio := g.rps / p.rps
	return fmt.Sprintf("%s%s (%.2fx).", prefix, metOrNot(ratio >= 10), ratio)
}

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// text is the plain table printed on stdout.
func (rep *report) text() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, cells := range rep.table() {
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	b.WriteString("\n")
	for _, n := range rep.notes() {
		b.WriteString(n + "\n")
	}
	return b.String()
}

// writeMarkdown writes the report, with the machine it ran on, to path.
func (rep *report) writeMarkdown(path string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Proxy load test\n\n")
	fmt.Fprintf(&b, "- Date: %s\n", rep.date.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "- nproc: %d\n", runtime.NumCPU())
	if cpu := cpuModel(); cpu != "" {
		fmt.Fprintf(&b, "- CPU: %s\n", cpu)
	}
	fmt.Fprintf(&b, "- Command: `%s`\n", rep.command)
	fmt.Fprintf(&b, "- Load generator: %s; %d connections; getaway-websocket: a Go closed loop over %d sockets (github.com/fasthttp/websocket, in the harness process)\n", rep.env.generator, rep.o.conns, rep.o.conns)
	fmt.Fprintf(&b, "- Gateway: %s, started with only its environment (OIDC_*, APP_BASE_URL, REDIS_URL, CONFIG_PATH, LISTEN_ADDR, LOG_LEVEL=error, AUTH_RATE_LIMIT=0, MAX_CONNS_PER_IP=0)\n", rep.env.gateway)
	fmt.Fprintf(&b, "- OpenID provider: authflow/testidp (zitadel's example OP) in the harness process\n")
	fmt.Fprintf(&b, "- Redis: %s\n", rep.env.redis)
	fmt.Fprintf(&b, "- nginx: %s\n", rep.env.nginx)
	fmt.Fprintf(&b, "- oauth2-proxy: %s\n", rep.env.oauth2Proxy)
	coldMethod := " getaway-cold: skipped (-cold 0)."
	if rep.o.cold > 0 {
		coldMethod = fmt.Sprintf(" getaway-cold: %d sequential fresh sign-ins, the latency of the first /api request of each.", rep.o.cold)
	}
	fmt.Fprintf(&b, "- Method: one echo backend (same ~%d-byte JSON body) reached directly (`/bench`), through nginx when present "+
		"(`/api/bench`, no authentication), through oauth2-proxy when present (`/bench` with the `_oauth2_proxy` cookie "+
		"of a session signed in once through its `/oauth2/start` and the same provider's login form, the session in Redis) "+
		"and through getaway (`/api/bench` with the `sid` cookie of a session signed in "+
		"once through the gateway's login and the provider's login form; getaway-cached: the session is in the gateway's "+
		"process cache after its first request; getaway-websocket: the same session upgraded on `/api/ws`, echoed "+
		"by the same backend), every server in its own process on 127.0.0.1; %d round(s) of %v per "+
		"target, interleaved, starting target rotated every round; a %v warm-up per target is excluded. The table gives "+
		"medians over the rounds.%s\n\n",
		len(echoBody), rep.o.rounds, rep.o.duration, warmup, coldMethod)
	if rep.svg != "" {
		fmt.Fprintf(&b, "![req/s, p50 and p99 per target](%s)\n\n", rep.svg)
	}

	fmt.Fprintf(&b, "| %s |\n", strings.Join(header, " | "))
	fmt.Fprintf(&b, "|---|---:|---:|---:|---|---|\n")
	for _, cells := range rep.table() {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
	}
	b.WriteString("\n")
	for _, n := range rep.notes() {
		b.WriteString(n + "\n\n")
	}
	if len(rep.gatewayLog) > 0 {
		b.WriteString("Gateway log lines (at most 20):\n\n```\n")
		for _, l := range rep.gatewayLog[:min(len(rep.gatewayLog), 20)] {
			b.WriteString(l + "\n")
		}
		b.WriteString("```\n\n")
	}

	b.WriteString("Per round, req/s:\n\n| target |")
	for i := range rep.o.rounds {
		fmt.Fprintf(&b, " %d |", i+1)
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", rep.o.rounds) + "\n")
	for _, r := range rep.rows {
		fmt.Fprintf(&b, "| %s |", r.name)
		for _, x := range r.rounds {
			fmt.Fprintf(&b, " %.0f |", x.rps)
		}
		b.WriteString("\n")
	}

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or "".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// commandLine is how the harness was started. Under go run, os.Args[0] is
// a temporary build; show the go run command instead.
func commandLine() string {
	name := filepath.Base(os.Args[0])
	if strings.Contains(os.Args[0], "go-build") {
		name = "go run ./bench/proxyload"
	}
	args := []string{name}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$`\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}
