package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/apigetaway/getaway/bench/internal/svgchart"
)

// svgPath is the chart's file next to the Markdown report: its name with
// .svg in place of the extension.
func svgPath(markdown string) string {
	return strings.TrimSuffix(markdown, filepath.Ext(markdown)) + ".svg"
}

// chart is the report as two bar panels: throughput and latency per target.
func (rep *report) chart() svgchart.BarChart {
	tput := svgchart.BarPanel{
		Title:  "Throughput, median over the rounds (longer is better)",
		Axis:   "requests per second (getaway-websocket: echoed messages per second)",
		Series: []string{"req/s"},
	}
	lat := svgchart.BarPanel{
		Title:  "Latency, median over the rounds of each round's p50 and p99 (shorter is better)",
		Axis:   "milliseconds",
		Series: []string{"p50", "p99"},
	}
	for _, r := range rep.rows {
		label, rate := r.name, fmt.Sprintf("%.0f", r.rps)
		if r.ws {
			label, rate = r.name+" (msg/s)", rate+" msg/s"
		}
		tput.Groups = append(tput.Groups, svgchart.BarGroup{
			Label: label, Values: []float64{r.rps}, Texts: []string{rate},
		})
		lat.Groups = append(lat.Groups, svgchart.BarGroup{
			Label:  label,
			Values: []float64{ms(r.p50), ms(r.p99)},
			Texts:  []string{fmtDur(r.p50), fmtDur(r.p99)},
		})
	}
	if c := rep.cold; c != nil {
		tput.Groups = append(tput.Groups, svgchart.BarGroup{
			Label: getawayCold, Values: []float64{0}, Texts: []string{"- (one at a time)"},
		})
		p50, p99 := percentile(c.first, 50), percentile(c.first, 99)
		lat.Groups = append(lat.Groups, svgchart.BarGroup{
			Label:  getawayCold + " (1st request)",
			Values: []float64{ms(p50), ms(p99)},
			Texts:  []string{fmtDur(p50), fmtDur(p99)},
		})
	}
	title := "Proxy load test: direct, nginx and getaway on loopback"
	notes := []string{
		"getaway-websocket: its unit is messages per second (one message and its echo), latency of one round trip.",
		"getaway-cold: sequential sign-ins, the first /api request of each; no throughput.",
	}
	if rep.find(oauth2ProxyName) != nil {
		title = "Proxy load test: direct, nginx, oauth2-proxy and getaway on loopback"
		notes = append(notes, "oauth2-proxy: signed in through the same provider, sessions in Redis.", rep.oauth2ProxyTarget())
	} else {
		// The reason can be long: it is in the Markdown report.
		notes = append(notes, "oauth2-proxy: not measured in this run (the report says why).")
	}
	notes = append(notes, "One machine runs the load generator and every server: compare ratios within a run only.")
	return svgchart.BarChart{
		Title: title,
		Subtitle: []string{
			rep.date.Format("2006-01-02 15:04 MST") + ", " + fmt.Sprintf("%d cores, %d connections, %d round(s) of %v", runtime.NumCPU(), rep.o.conns, rep.o.rounds, rep.o.duration),
			rep.command,
		},
		Panels: []svgchart.BarPanel{tput, lat},
		Notes:  notes,
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// writeSVG writes the chart to path.
func (rep *report) writeSVG(path string) error {
	var b bytes.Buffer
	if err := svgchart.WriteBars(&b, rep.chart()); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
