package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/valyala/fasthttp"
)

// requestTimeout bounds one request of the Go generator, as wrk's default
// --timeout does; such a request counts as a socket error.
const requestTimeout = 2 * time.Second

// result is one measurement of one target.
type result struct {
	requests int64         // responses received
	elapsed  time.Duration // wall time of the measurement
	rps      float64
	p50, p99 time.Duration
	// badStatus counts responses with a status >= 400 (what wrk reports
	// as "Non-2xx or 3xx responses").
	badStatus int64
	// socketErrors counts connect, read and write errors and timeouts.
	socketErrors int64
}

// format prints r with its rate in unit (req/s, msg/s).
func (r result) format(unit string) string {
	s := fmt.Sprintf("%9.0f %s  p50 %8s  p99 %8s", r.rps, unit, fmtDur(r.p50), fmtDur(r.p99))
	if r.badStatus > 0 || r.socketErrors > 0 {
		s += fmt.Sprintf("  (%d status >= 400, %d socket errors)", r.badStatus, r.socketErrors)
	}
	return s
}

// generator runs one closed-loop measurement of t (its URL, with its
// session cookie if it has one) with conns keep-alive connections for d.
type generator interface {
	describe() string
	run(ctx context.Context, t target, conns int, d time.Duration) (result, error)
}

// chooseGenerator returns wrk when asked for and installed, else the Go
// generator.
func chooseGenerator(useWrk bool) generator {
	if !useWrk {
		return goGen{note: "-wrk=false"}
	}
	path, err := exec.LookPath("wrk")
	if err != nil {
		return goGen{note: "wrk not found"}
	}
	// "wrk 4.2.0 [epoll] Copyright ..." (wrk -v exits 1; the text is what matters).
	out, _ := exec.Command(path, "-v").CombinedOutput()
	version, _, _ := strings.Cut(string(out), "[")
	return wrkGen{path: path, version: strings.TrimSpace(version)}
}

// wrkGen runs wrk with one thread.
type wrkGen struct{ path, version string }

func (w wrkGen) describe() string {
	return fmt.Sprintf("%s (%s), 1 thread", w.version, w.path)
}

func (w wrkGen) run(ctx context.Context, t target, conns int, d time.Duration) (result, error) {
	// wrk takes whole seconds.
	secs := max(1, int(math.Ceil(d.Seconds())))
	args := []string{"-t1", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(secs) + "s", "--latency"}
	if t.sid != "" {
		args = append(args, "-H", "Cookie: "+t.cookieKey()+"="+t.sid)
	}
	out, err := procs.CommandContext(ctx, w.path, append(args, t.url)...).CombinedOutput()
	if ctx.Err() != nil {
		return result{}, ctx.Err()
	}
	if err != nil {
		return result{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	res, err := parseWrk(string(out))
	if err != nil {
		return result{}, fmt.Errorf("%w\nwrk output:\n%s", err, out)
	}
	return res, nil
}

// parseWrk reads the numbers out of the report of wrk --latency.
func parseWrk(out string) (result, error) {
	var r result
	var haveRPS, have50, have99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		var err error
		switch {
		case len(f) == 2 && f[0] == "50%":
			r.p50, err = parseWrkDuration(f[1])
			have50 = true
		case len(f) == 2 && f[0] == "99%":
			r.p99, err = parseWrkDuration(f[1])
			have99 = true
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.rps, err = strconv.ParseFloat(f[1], 64)
			haveRPS = true
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			// "123456 requests in 3.00s, 45.67MB read"
			if r.requests, err = strconv.ParseInt(f[0], 10, 64); err == nil {
				r.elapsed, err = parseWrkDuration(strings.TrimSuffix(f[3], ","))
			}
		case strings.HasPrefix(line, "Socket errors:"):
			// "Socket errors: connect 0, read 12, write 0, timeout 3"
			for i := 2; i+1 < len(f); i += 2 {
				n, perr := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				if perr != nil {
					err = perr
					break
				}
				r.socketErrors += n
			}
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			r.badStatus, err = strconv.ParseInt(f[len(f)-1], 10, 64)
		}
		if err != nil {
			return result{}, fmt.Errorf("wrk output line %q: %w", line, err)
		}
	}
	if !haveRPS || !have50 || !have99 {
		return result{}, errors.New("wrk output lacks Requests/sec or the 50%/99% latency lines (was --latency given?)")
	}
	return r, nil
}

// parseWrkDuration parses wrk's time format: a number and one of the units
// us, ms, s, m, h ("812.00us", "1.02ms", "2.00s").
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{ // "ms" and "us" before "s", which they end with.
		{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second},
		{"m", time.Minute}, {"h", time.Hour},
	}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("bad duration %q", s)
			}
			return time.Duration(math.Round(v * float64(u.unit))), nil
		}
	}
	return 0, fmt.Errorf("bad duration %q: unknown unit", s)
}

// goGen is a closed-loop load generator in the harness process: conns
// goroutines, each with its own keep-alive connection, send the next
// request as soon as the previous answer has been read.
type goGen struct{ note string }

func (g goGen) describe() string {
	return "Go closed loop (fasthttp.HostClient, in the harness process; " + g.note + ")"
}

func (goGen) run(ctx context.Context, t target, conns int, d time.Duration) (result, error) {
	u, err := url.Parse(t.url)
	if err != nil {
		return result{}, err
	}
	hc := &fasthttp.HostClient{
		Addr:         u.Host,
		MaxConns:     conns,
		ReadTimeout:  requestTimeout,
		WriteTimeout: requestTimeout,
	}
	defer hc.CloseIdleConnections()

	var badStatus, socketErrors atomic.Int64
	perConn := make([][]time.Duration, conns)
	stop := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			perConn[i] = loop(ctx, hc, t, stop, &badStatus, &socketErrors)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return result{}, ctx.Err()
	}

	all := slices.Concat(perConn...)
	slices.Sort(all)
	return result{
		requests:     int64(len(all)),
		elapsed:      elapsed,
		rps:          float64(len(all)) / elapsed.Seconds(),
		p50:          percentile(all, 50),
		p99:          percentile(all, 99),
		badStatus:    badStatus.Load(),
		socketErrors: socketErrors.Load(),
	}, nil
}

// loop sends requests one after the other until stop or ctx's end and
// returns the latency of every response.
func loop(ctx context.Context, hc *fasthttp.HostClient, t target, stop time.Time, badStatus, socketErrors *atomic.Int64) []time.Duration {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(t.url)
	if t.sid != "" {
		req.Header.SetCookie(t.cookieKey(), t.sid)
	}

	lat := make([]time.Duration, 0, 1<<14)
	done := ctx.Done()
	for t0 := time.Now(); t0.Before(stop); t0 = time.Now() {
		select {
		case <-done:
			return lat
		default:
		}
		if err := hc.Do(req, resp); err != nil {
			socketErrors.Add(1)
			continue
		}
		lat = append(lat, time.Since(t0))
		if resp.StatusCode() >= 400 {
			badStatus.Add(1)
		}
	}
	return lat
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value with at least p% of the values
// at or below it. It returns 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// fmtDur prints a latency with three significant digits or so.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
