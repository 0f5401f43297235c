package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSVGPath(t *testing.T) {
	for in, want := range map[string]string{
		"bench/results/proxy.md": "bench/results/proxy.svg",
		"out/report":             "out/report.svg",
		"r.v1.md":                "r.v1.svg",
	} {
		if got := svgPath(in); got != want {
			t.Errorf("svgPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestReportChart writes the report of a run without nginx, with a round
// that measured nothing, as Markdown and SVG.
func TestReportChart(t *testing.T) {
	o := options{duration: time.Second, conns: 8, rounds: 2, cold: 3}
	targets := []target{{name: direct}, {name: getawayCached}, {name: getawayWS, ws: true}}
	results := map[string][]result{
		direct:        {{rps: 30000, p50: time.Millisecond, p99: 4 * time.Millisecond}, {rps: 30000, p50: time.Millisecond, p99: 4 * time.Millisecond}},
		getawayCached: {{rps: 10000, p50: 3 * time.Millisecond, p99: 12 * time.Millisecond}, {}},
		getawayWS:     {{rps: 20000, p50: 2 * time.Millisecond, p99: 5 * time.Millisecond}, {rps: 20000, p50: 2 * time.Millisecond, p99: 5 * time.Millisecond}},
	}
	rep := newReport(o, environment{}, targets, results, nil)
	rep.cold = &coldResult{n: 3, first: []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond}}

	dir := t.TempDir()
	md := filepath.Join(dir, "proxy.md")
	chart := svgPath(md)
	if err := rep.writeSVG(chart); err != nil {
		t.Fatal(err)
	}
	rep.svg = filepath.Base(chart)
	if err := rep.writeMarkdown(md); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(chart)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(doc, []byte("NaN")) || bytes.Contains(doc, []byte("Inf")) {
		t.Errorf("the chart has NaN or Inf:\n%s", doc)
	}
	// One throughput bar and two latency bars (p50, p99) per target, the
	// cold row included; the median of 10000 and nothing is 5000.
	var bars []string
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the chart is not XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			for _, a := range se.Attr {
				if a.Name.Local == "class" && a.Value == "bar" {
					bars = append(bars, widthOf(se))
				}
			}
		}
	}
	if len(bars) != 4+4*2 {
		t.Fatalf("%d bars, want 12: %v", len(bars), bars)
	}
	if bars[3] != "0" {
		t.Errorf("getaway-cold has a throughput bar of width %s, want 0", bars[2])
	}
	for _, want := range []string{">direct<", ">getaway-cached<", ">5000<", ">6.00ms<", "getaway-cold (1st request)", rep.command,
		">getaway-websocket (msg/s)<", ">20000 msg/s<", "unit is messages per second"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("the chart lacks %q", want)
		}
	}
	if bytes.Contains(doc, []byte(">nginx<")) {
		t.Error("the chart has an nginx row that was not measured")
	}
	report, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"](proxy.svg)", "| getaway-websocket | 20000 msg/s | 2.00ms | 5.00ms | n/a (msg/s) | n/a |", "the unit is echoed messages per second"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("the Markdown report lacks %q:\n%s", want, report)
		}
	}
}

func widthOf(se xml.StartElement) string {
	for _, a := range se.Attr {
		if a.Name.Local == "width" {
			return a.Value
		}
	}
	return ""
}
