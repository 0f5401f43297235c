package svgchart

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
)

// element is one start element of a parsed document.
type element struct {
	name  string
	attrs map[string]string
	text  string // character data up to the next element
}

// parse decodes doc as XML, failing t when it is not well-formed or its root
// is not an svg of width Width, and returns its elements in order.
func parse(t *testing.T, doc []byte) []element {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	var els []element
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			e := element{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			els = append(els, e)
		case xml.CharData:
			if len(els) > 0 {
				els[len(els)-1].text += string(tok)
			}
		}
	}
	if len(els) == 0 || els[0].name != "svg" || els[0].attrs["width"] != strconv.Itoa(Width) {
		t.Fatalf("root is not an svg %d wide: %+v", Width, els[:min(1, len(els))])
	}
	for _, bad := range []string{"NaN", "Inf"} {
		if bytes.Contains(doc, []byte(bad)) {
			t.Errorf("the document contains %s:\n%s", bad, doc)
		}
	}
	return els
}

func classed(els []element, name, class string) []element {
	var out []element
	for _, e := range els {
		if e.name == name && e.attrs["class"] == class {
			out = append(out, e)
		}
	}
	return out
}

func width(t *testing.T, e element) float64 {
	t.Helper()
	w, err := strconv.ParseFloat(e.attrs["width"], 64)
	if err != nil {
		t.Fatalf("bar width %q: %v", e.attrs["width"], err)
	}
	return w
}

func texts(els []element) string {
	var b strings.Builder
	for _, e := range els {
		if e.name == "text" {
			b.WriteString(e.text + "\n")
		}
	}
	return b.String()
}

func TestWriteBars(t *testing.T) {
	ch := BarChart{
		Title:    "Proxy load <test>",
		Subtitle: []string{"go run ./bench/proxyload -duration 3s"},
		Panels: []BarPanel{
			{Title: "Throughput", Axis: "requests per second", Series: []string{"req/s"}, Groups: []BarGroup{
				{Label: "direct", Values: []float64{40000}},
				{Label: "nginx", Values: []float64{20000}, Texts: []string{"20000 req/s"}},
				{Label: "getaway-cached", Values: []float64{10000}},
			}},
			{Title: "Latency", Axis: "milliseconds", Series: []string{"p50", "p99"}, Groups: []BarGroup{
				{Label: "direct", Values: []float64{0.5, 4}},
				{Label: "nginx", Values: []float64{1, 8}},
				{Label: "getaway-cached", Values: []float64{2, 16}},
			}},
		},
		Notes: []string{"getaway-websocket counts messages & their echoes"},
	}
	var b bytes.Buffer
	if err := WriteBars(&b, ch); err != nil {
		t.Fatal(err)
	}
	els := parse(t, b.Bytes())
	bars := classed(els, "rect", "bar")
	if len(bars) != 3+6 {
		t.Fatalf("%d bars, want 3 targets x 1 series + 3 targets x 2 series", len(bars))
	}
	// Within a panel, widths are proportional to the values.
	base := width(t, bars[0]) / 40000
	for i, v := range []float64{40000, 20000, 10000} {
		if got := width(t, bars[i]); math.Abs(got-v*base) > 0.2 {
			t.Errorf("throughput bar %d: width %v, want %v", i, got, v*base)
		}
	}
	base = width(t, bars[4]) / 4
	for i, v := range []float64{0.5, 4, 1, 8, 2, 16} {
		if got := width(t, bars[3+i]); math.Abs(got-v*base) > 0.2 {
			t.Errorf("latency bar %d: width %v, want %v", i, got, v*base)
		}
	}
	if w := width(t, bars[0]); w <= 0 || w > barPlotWidth {
		t.Errorf("the longest bar is %v wide, want within (0, %d]", w, barPlotWidth)
	}
	all := texts(els)
	for _, want := range []string{"Proxy load <test>", "20000 req/s", "40000", "getaway-cached", "p99", "requests per second", "milliseconds", "messages & their echoes"} {
		if !strings.Contains(all, want) {
			t.Errorf("no text %q in\n%s", want, all)
		}
	}
}

func TestWriteBarsWithoutData(t *testing.T) {
	ch := BarChart{
		Title: "empty",
		Panels: []BarPanel{
			{Title: "all zero", Series: []string{"req/s"}, Groups: []BarGroup{
				{Label: "direct", Values: []float64{0}},
				{Label: "nginx"}, // not measured
			}},
			{Title: "not numbers", Series: []string{"p50", "p99"}, Groups: []BarGroup{
				{Label: "direct", Values: []float64{math.NaN(), math.Inf(1)}},
				{Label: "getaway", Values: []float64{-1}},
			}},
			{Title: "no targets"},
		},
	}
	var b bytes.Buffer
	if err := WriteBars(&b, ch); err != nil {
		t.Fatal(err)
	}
	els := parse(t, b.Bytes())
	bars := classed(els, "rect", "bar")
	if len(bars) != 2+4 {
		t.Fatalf("%d bars, want one per target and series", len(bars))
	}
	for i, e := range bars {
		if w := width(t, e); w != 0 {
			t.Errorf("bar %d has width %v, want 0", i, w)
		}
	}
	if n := strings.Count(texts(els), "n/a"); n != 6 {
		t.Errorf("%d n/a labels, want 6", n)
	}
}

func TestWriteLines(t *testing.T) {
	nan := math.NaN()
	ch := LineChart{
		Title: "Soak",
		Panels: []LinePanel{
			{Title: "memory", Axis: "MiB", XAxis: "seconds", X: []float64{0, 10, 20, 30, 40},
				Series: []LineSeries{{Name: "RSS", Y: []float64{30, 31, 31, 32, 31}}}},
			{Title: "goroutines", Axis: "count", XAxis: "seconds", X: []float64{0, 10, 20, 30, 40},
				Series: []LineSeries{
					{Name: "goroutines", Y: []float64{nan, nan, nan, nan, nan}}, // no metrics endpoint
					{Name: "threads", Y: []float64{8, nan, 9, 9, math.Inf(1)}},  // a run of one, a run of two
				}},
			{Title: "nothing yet"},
		},
	}
	var b bytes.Buffer
	if err := WriteLines(&b, ch); err != nil {
		t.Fatal(err)
	}
	els := parse(t, b.Bytes())
	lines := classed(els, "polyline", "line")
	dots := classed(els, "circle", "line")
	if len(lines) != 2 || len(dots) != 1 {
		t.Fatalf("%d polylines and %d points, want 2 and 1", len(lines), len(dots))
	}
	if n := len(strings.Fields(lines[0].attrs["points"])); n != 5 {
		t.Errorf("the RSS line has %d points, want 5", n)
	}
	// Higher values are drawn higher: y grows downwards.
	pts := strings.Fields(lines[0].attrs["points"])
	y := func(p string) float64 {
		_, s, _ := strings.Cut(p, ",")
		v, _ := strconv.ParseFloat(s, 64)
		return v
	}
	if !(y(pts[3]) < y(pts[0])) {
		t.Errorf("32 MiB at y %v is not above 30 MiB at y %v", y(pts[3]), y(pts[0]))
	}
}

func TestNiceScale(t *testing.T) {
	for _, tc := range []struct{ in, top, step float64 }{
		{48559, 50000, 10000}, {23.4, 25, 5}, {4, 4, 1}, {0, 1, 1}, {math.NaN(), 1, 1}, {0.8, 0.8, 0.2},
	} {
		top, step := niceScale(tc.in)
		if math.Abs(top-tc.top) > 1e-9 || math.Abs(step-tc.step) > 1e-9 {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", tc.in, top, step, tc.top, tc.step)
		}
	}
}
