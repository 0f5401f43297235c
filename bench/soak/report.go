package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/apigetaway/getaway/bench/internal/svgchart"
)

// report is a soak's record.
type report struct {
	o          options
	started    time.Time
	elapsed    time.Duration
	command    string
	gateway    string
	redis      string
	samples    []sample
	load       *load
	verdict    verdict
	metricsErr string   // why /metrics did not answer, the first time
	gatewayLog []string // what the gateway logged (LOG_LEVEL=error)
	notes      []string
}

func goroutineText(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", v)
}

func (s sample) line() string {
	return fmt.Sprintf("%8v  RSS %7.1f MiB  goroutines %5s  threads %3s  fds %4d  ops %9d  errors %d",
		s.at.Round(time.Second), float64(s.rssKiB)/1024, goroutineText(s.goroutines), goroutineText(s.threads), s.fds, s.requests, s.errors)
}

// rule states the verdict's rule, for the report.
func rule() string {
	return fmt.Sprintf("the first quarter of the samples is warm-up; memory is flat when the median RSS of the last quarter is at most %.0f%% above that of the second quarter, goroutines when their median is at most %.0f%% or %d above (whichever is larger; from the gateway's /metrics, else its OS threads); any failed operation fails the soak (none is expected in steady state: the load stays far below every limit, the rate limit on /auth is off and no session expires); at least %d samples",
		rssMargin*100, goroutineMargin*100, goroutineAbsolute, minSamples)
}

func (rep *report) verdictLines() []string {
	v := rep.verdict
	word := "PASS"
	if !v.ok() {
		word = "FAIL"
	}
	lines := []string{
		fmt.Sprintf("Verdict: %s. %s; %s; errors: %d.", word, v.rss, v.goroutines, v.errors),
	}
	if v.tooFew {
		lines = append(lines, fmt.Sprintf("Too few samples (%d, at least %d): run longer or sample more often.", len(rep.samples), minSamples))
	}
	lines = append(lines, "Goroutines judged from "+v.goroutinesFrom+".")
	return lines
}

// summary is what the harness prints at the end.
func (rep *report) summary() string {
	var b strings.Builder
	for _, l := range rep.verdictLines() {
		b.WriteString(l + "\n")
	}
	for _, a := range activities {
		fmt.Fprintf(&b, "%s %d, ", a, rep.load.done[a].Load())
	}
	b.WriteString("done\n")
	for _, e := range rep.load.errorKinds() {
		b.WriteString("error " + e + "\n")
	}
	return b.String()
}

// svgPath is the chart's file next to the Markdown report.
func svgPath(markdown string) string {
	return strings.TrimSuffix(markdown, filepath.Ext(markdown)) + ".svg"
}

// write writes the Markdown report to path and its chart next to it.
func (rep *report) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var chart bytes.Buffer
	if err := svgchart.WriteLines(&chart, rep.chart()); err != nil {
		return err
	}
	if err := os.WriteFile(svgPath(path), chart.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(rep.markdown(filepath.Base(svgPath(path)))), 0o644)
}

func (rep *report) chart() svgchart.LineChart {
	var x, rss, gor, thr, fds []float64
	for _, s := range rep.samples {
		x = append(x, s.at.Seconds())
		rss = append(rss, float64(s.rssKiB)/1024)
		gor = append(gor, s.goroutines)
		thr = append(thr, s.threads)
		f := math.NaN()
		if s.fds >= 0 {
			f = float64(s.fds)
		}
		fds = append(fds, f)
	}
	word := "PASS"
	if !rep.verdict.ok() {
		word = "FAIL"
	}
	return svgchart.LineChart{
		Title:    "Soak: the getaway process over " + rep.elapsed.Round(time.Second).String() + " of mixed load (" + word + ")",
		Subtitle: []string{rep.started.UTC().Format("2006-01-02 15:04 UTC") + ", " + rep.command},
		Panels: []svgchart.LinePanel{
			{Title: "Resident memory (VmRSS)", Axis: "MiB", XAxis: "seconds since the load started", X: x,
				Series: []svgchart.LineSeries{{Name: "RSS", Y: rss}}},
			{Title: "Goroutines, OS threads, open files", Axis: "count", XAxis: "seconds since the load started", X: x,
				Series: []svgchart.LineSeries{{Name: "goroutines", Y: gor}, {Name: "threads", Y: thr}, {Name: "fds", Y: fds}}},
		},
		Notes: []string{"Goroutines from the gateway's /metrics (ADMIN_ADDR); no line when it did not answer."},
	}
}

func (rep *report) markdown(chart string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	o := rep.o
	w("# Soak\n\n")
	w("- Date: %s\n- Go: %s %s/%s\n- nproc: %d\n", rep.started.UTC().Format("2006-01-02 15:04 UTC"), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	w("- Command: `%s`\n", rep.command)
	w("- Gateway: %s, started with only its environment (OIDC_*, APP_BASE_URL, REDIS_URL, CONFIG_PATH, LISTEN_ADDR, LOG_LEVEL=error, AUTH_RATE_LIMIT=0, MAX_CONNS_PER_IP=0, ADMIN_TOKENS, ADMIN_ADDR)\n", rep.gateway)
	w("- Redis: %s\n- OpenID provider: authflow/testidp in the harness process\n", rep.redis)
	w("- Load for %v, all on 127.0.0.1: GET `%s` with %d signed-in sessions from %d keep-alive connections at %s; a fresh sign-in through the provider's form every %v, one request with it, `POST /auth/logout` and a check that it then answers 401; %d clients each opening a WebSocket on `/api/ws` every %v, %d echoes, a close frame; a `PUT /admin/config` of the gateway's own config with an admin token every %v\n",
		o.duration, apiPath, o.users, o.conns, rateText(o.rate), signInEvery, wsChurners, wsEvery, wsTrips, reloadEvery)
	w("- Samples every %v: VmRSS and Threads from /proc/PID/status, open files from /proc/PID/fd, goroutines from `GET http://ADMIN_ADDR/metrics` (`go_goroutines`), operations and errors so far\n\n", o.sample)

	for _, l := range rep.verdictLines() {
		w("%s\n\n", l)
	}
	w("Rule: %s.\n\n", rule())
	w("![RSS, goroutines, threads and open files over time](%s)\n\n", chart)
	if rep.metricsErr != "" {
		w("Goroutines: n/a, the metrics listener did not answer (%s); OS threads stand in.\n\n", rep.metricsErr)
	}

	w("Operations done: ")
	var parts []string
	var total int64
	for _, a := range activities {
		n := rep.load.done[a].Load()
		total += n
		parts = append(parts, fmt.Sprintf("%s %d", a, n))
	}
	w("%s (%d in all, %.0f a second).\n\n", strings.Join(parts, ", "), total, float64(total)/rep.elapsed.Seconds())
	if kinds := rep.load.errorKinds(); len(kinds) > 0 {
		w("Errors by kind:\n\n")
		for _, k := range kinds {
			w("- %s\n", k)
		}
		w("\n")
	} else {
		w("Errors: none.\n\n")
	}
	if len(rep.gatewayLog) == 0 {
		w("Gateway log (LOG_LEVEL=error): empty.\n\n")
	} else {
		w("Gateway log (LOG_LEVEL=error), %d line(s), at most 10:\n\n```\n%s\n```\n\n", len(rep.gatewayLog), strings.Join(rep.gatewayLog[:min(10, len(rep.gatewayLog))], "\n"))
	}
	for _, n := range rep.notes {
		w("Note: %s\n\n", n)
	}

	w("| time | RSS (MiB) | goroutines | threads | open fds | operations | errors |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range rep.samples {
		w("| %v | %.1f | %s | %s | %d | %d | %d |\n", s.at.Round(time.Second), float64(s.rssKiB)/1024, goroutineText(s.goroutines), goroutineText(s.threads), s.fds, s.requests, s.errors)
	}
	w("\nNumbers from one machine shared with other work; the verdict compares the gateway with itself over the run.\n")
	return b.String()
}

// commandLine is how the harness was started; under go run, the go run
// command.
func commandLine() string {
	name := filepath.Base(os.Args[0])
	if strings.Contains(os.Args[0], "go-build") {
		name = "go run ./bench/soak"
	}
	return strings.Join(append([]string{name}, os.Args[1:]...), " ")
}
