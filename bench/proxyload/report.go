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
	size         int // bytes of one response, head and body
}

type report struct {
	date      time.Time
	command   string
	generator string
	nginx     string
	o         options
	rows      []row
}

func newReport(o options, generator, nginx string, targets []target, results map[string][]result, sizes map[string]int) *report {
	rep := &report{
		date:      time.Now(),
		command:   commandLine(),
		generator: generator,
		nginx:     nginx,
		o:         o,
	}
	for _, t := range targets {
		rs := results[t.name]
		r := row{name: t.name, rounds: rs, size: sizes[t.name]}
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
	}
	return fmt.Sprintf("%.2fx req/s, %.2fx p99", r.rps/b.rps, float64(r.p99)/float64(b.p99))
}

var header = []string{"target", "req/s (median)", "p50", "p99", "vs direct", "vs nginx"}

func (rep *report) cells(r row) []string {
	return []string{r.name, fmt.Sprintf("%.0f", r.rps), fmtDur(r.p50), fmtDur(r.p99), rep.versus(r, "direct"), rep.versus(r, "nginx")}
}

// notes are the lines that follow the table in both outputs.
func (rep *report) notes() []string {
	var out []string
	if g, n := rep.find("getaway"), rep.find("nginx"); g != nil && n != nil {
		verdict := "not met"
		if g.rps >= n.rps && g.p99 <= n.p99 {
			verdict = "met"
		}
		out = append(out, fmt.Sprintf("DESIGN.md section 4 target, getaway req/s >= nginx and p99 <= nginx's: %s (%.2fx req/s, %.2fx p99).",
			verdict, g.rps/n.rps, float64(g.p99)/float64(n.p99)))
	}
	var errs, sizes []string
	for _, r := range rep.rows {
		errs = append(errs, fmt.Sprintf("%s %d/%d", r.name, r.badStatus, r.socketErrors))
		sizes = append(sizes, fmt.Sprintf("%s %d B", r.name, r.size))
	}
	out = append(out,
		"Errors over all rounds (responses with status >= 400 / socket errors and timeouts): "+strings.Join(errs, ", ")+".",
		"One response, head and body: "+strings.Join(sizes, ", ")+".",
		"Ratios are from one run on one machine (load generator and servers share its CPUs); compare them only with runs made the same way.",
	)
	return out
}

// text is the plain table printed on stdout.
func (rep *report) text() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rep.rows {
		fmt.Fprintln(tw, strings.Join(rep.cells(r), "\t"))
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
	fmt.Fprintf(&b, "- Load generator: %s; %d connections\n", rep.generator, rep.o.conns)
	fmt.Fprintf(&b, "- nginx: %s\n", rep.nginx)
	fmt.Fprintf(&b, "- Method: one echo backend (same ~%d-byte JSON body) reached directly (`/bench`), through getaway "+
		"(`/api/bench`, authenticated with a fixed bench identity) and through nginx when present (`/api/bench`), "+
		"every server in its own process on 127.0.0.1; %d round(s) of %v per target, interleaved, starting target "+
		"rotated every round; a %v warm-up per target is excluded. The table gives medians over the rounds.\n\n",
		len(echoBody), rep.o.rounds, rep.o.duration, warmup)

	fmt.Fprintf(&b, "| %s |\n", strings.Join(header, " | "))
	fmt.Fprintf(&b, "|---|---:|---:|---:|---|---|\n")
	for _, r := range rep.rows {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(rep.cells(r), " | "))
	}
	b.WriteString("\n")
	for _, n := range rep.notes() {
		b.WriteString(n + "\n\n")
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
