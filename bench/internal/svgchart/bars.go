package svgchart

import (
	"io"
	"math"
	"strconv"
)

// BarChart is one or more panels of horizontal bars under a title.
type BarChart struct {
	Title    string
	Subtitle []string // lines under the title: date, command
	Panels   []BarPanel
	Notes    []string // lines under the panels
}

// BarPanel is one measure across the targets: a group of bars per target,
// one bar per series, all on one scale that starts at zero.
type BarPanel struct {
	Title  string
	Axis   string   // the axis label, with the unit
	Series []string // the name of each bar of a group; more than one draws a legend
	Groups []BarGroup
}

// BarGroup is one target's bars.
type BarGroup struct {
	Label  string
	Values []float64 // one per series; a value that is not finite and positive draws a bar of width zero
	Texts  []string  // printed after each bar; missing or empty: the value, or "n/a"
}

// Bar layout, in pixels.
const (
	barLabelWidth = 200 // the target names
	barTextWidth  = 90  // the values printed after the longest bar
	barHeight     = 14
	barGap        = 3  // between the bars of a group
	groupGap      = 10 // between groups
	barPlotX      = margin + barLabelWidth
	barPlotWidth  = Width - barPlotX - margin - barTextWidth
)

// WriteBars writes ch as an SVG document. Every group has one rect of class
// "bar" per series, whose width is its value over the panel's axis maximum
// times the plot width.
func WriteBars(w io.Writer, ch BarChart) error {
	var c canvas
	c.header(ch.Title, ch.Subtitle)
	for _, p := range ch.Panels {
		c.barPanel(p)
	}
	c.notes(ch.Notes)
	return c.finish(w, ch.Title)
}

func (c *canvas) barPanel(p BarPanel) {
	var biggest float64
	for _, g := range p.Groups {
		for _, v := range g.Values {
			if usable(v) {
				biggest = math.Max(biggest, v)
			}
		}
	}
	top, step := niceScale(biggest)

	c.y += lineHeight + 4
	c.text(margin, c.y, textSize+1, "start", textColour, "bold", p.Title)
	if len(p.Series) > 1 {
		c.y += lineHeight
		c.legend(barPlotX, p.Series)
	}
	c.y += 8
	n := max(len(p.Series), 1)
	groupHeight := float64(n*barHeight + (n-1)*barGap)
	plotTop := c.y
	plotBottom := plotTop + float64(len(p.Groups))*(groupHeight+groupGap) - groupGap/2

	// The grid first, under the bars.
	for v := 0.0; v <= top+step/2; v += step {
		x := float64(barPlotX) + v/top*barPlotWidth
		c.printf(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1"/>`+"\n",
			num(x), num(plotTop-4), num(x), num(plotBottom), gridColour)
		c.text(x, plotBottom+13, smallSize, "middle", mutedColor, "", tick(v))
	}
	for _, g := range p.Groups {
		c.text(barPlotX-8, c.y+groupHeight/2+4, textSize, "end", textColour, "", g.Label)
		for i := range n {
			v := math.NaN()
			if i < len(g.Values) {
				v = g.Values[i]
			}
			width := 0.0
			if usable(v) {
				width = v / top * barPlotWidth
			}
			y := c.y + float64(i*(barHeight+barGap))
			c.printf(`<rect class="bar" x="%d" y="%s" width="%s" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
				barPlotX, num(y), num(width), barHeight, colour(i), escape(g.Label+" "+seriesName(p.Series, i)+": "+valueText(g, i, v)))
			c.text(barPlotX+width+4, y+barHeight-3, textSize, "start", textColour, "", valueText(g, i, v))
		}
		c.y += groupHeight + groupGap
	}
	c.y = plotBottom + 13 + lineHeight
	c.text(barPlotX+barPlotWidth/2, c.y, textSize, "middle", mutedColor, "", p.Axis)
}

func valueText(g BarGroup, i int, v float64) string {
	if i < len(g.Texts) && g.Texts[i] != "" {
		return g.Texts[i]
	}
	if !usable(v) {
		return "n/a"
	}
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func seriesName(series []string, i int) string {
	if i < len(series) {
		return series[i]
	}
	return ""
}
