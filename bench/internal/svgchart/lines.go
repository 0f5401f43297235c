package svgchart

import (
	"io"
	"math"
	"strings"
)

// LineChart is one or more panels of lines over a shared x axis under a
// title.
type LineChart struct {
	Title    string
	Subtitle []string
	Panels   []LinePanel
	Notes    []string
}

// LinePanel is one measure over time: one line per series on a y scale
// that starts at zero.
type LinePanel struct {
	Title  string
	Axis   string    // the y axis label, with the unit
	XAxis  string    // the x axis label, with the unit
	X      []float64 // increasing; one per point of every series
	Series []LineSeries
}

// LineSeries is one line. A point that is NaN or infinite (a sample that
// could not be taken) leaves a gap.
type LineSeries struct {
	Name string
	Y    []float64
}

// Line layout, in pixels.
const (
	lineAxisWidth  = 64 // the y tick labels and the axis label
	linePlotHeight = 150
	linePlotX      = margin + lineAxisWidth
	linePlotWidth  = Width - linePlotX - margin - 8
)

// WriteLines writes ch as an SVG document: per panel, one polyline of
// class "line" per run of drawable points of each series (a lone point is
// a circle).
func WriteLines(w io.Writer, ch LineChart) error {
	var c canvas
	c.header(ch.Title, ch.Subtitle)
	for _, p := range ch.Panels {
		c.linePanel(p)
	}
	c.notes(ch.Notes)
	return c.finish(w, ch.Title)
}

func (c *canvas) linePanel(p LinePanel) {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	var ymax float64
	for _, s := range p.Series {
		for _, v := range s.Y {
			if finite(v) {
				ymax = math.Max(ymax, v)
			}
		}
	}
	var xmin, xmax float64
	if len(p.X) > 0 {
		xmin, xmax = p.X[0], p.X[len(p.X)-1]
	}
	if !finite(xmin) || !finite(xmax) || xmax <= xmin {
		xmin, xmax = 0, 1
	}
	ytop, ystep := niceScale(ymax)
	xtop, xstep := niceScale(xmax - xmin)

	c.y += lineHeight + 4
	c.text(margin, c.y, textSize+1, "start", textColour, "bold", p.Title)
	names := make([]string, len(p.Series))
	for i, s := range p.Series {
		names[i] = s.Name
	}
	c.legend(linePlotX+200, names)
	c.y += 10
	top := c.y
	bottom := top + linePlotHeight
	px := func(x float64) float64 { return linePlotX + (x-xmin)/xtop*linePlotWidth }
	py := func(y float64) float64 { return bottom - y/ytop*linePlotHeight }

	for v := 0.0; v <= ytop+ystep/2; v += ystep {
		c.printf(`<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="%s" stroke-width="1"/>`+"\n",
			linePlotX, num(py(v)), linePlotX+linePlotWidth, num(py(v)), gridColour)
		c.text(linePlotX-6, py(v)+4, smallSize, "end", mutedColor, "", tick(v))
	}
	for v := 0.0; v <= xtop+xstep/2; v += xstep {
		c.text(px(xmin+v), bottom+14, smallSize, "middle", mutedColor, "", tick(v))
	}
	ax, ay := float64(margin+10), top+linePlotHeight/2
	c.printf(`<text x="%s" y="%s" font-size="%d" text-anchor="middle" fill="%s" transform="rotate(-90 %s %s)">%s</text>`+"\n",
		num(ax), num(ay), textSize, mutedColor, num(ax), num(ay), escape(p.Axis))

	for i, s := range p.Series {
		var run []string
		flush := func() {
			switch len(run) {
			case 0:
			case 1:
				x, y, _ := strings.Cut(run[0], ",")
				c.printf(`<circle class="line" cx="%s" cy="%s" r="2.5" fill="%s"/>`+"\n", x, y, colour(i))
			default:
				c.printf(`<polyline class="line" points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(run, " "), colour(i))
			}
			run = run[:0]
		}
		for j, y := range s.Y {
			if j >= len(p.X) || !finite(p.X[j]) || !finite(y) {
				flush()
				continue
			}
			run = append(run, num(px(p.X[j]))+","+num(py(y)))
		}
		flush()
	}
	c.y = bottom + 14 + lineHeight
	c.text(linePlotX+linePlotWidth/2, c.y, textSize, "middle", mutedColor, "", p.XAxis)
}
