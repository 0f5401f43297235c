package svgchart

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
)

// Width is the width of every chart, in pixels.
const Width = 720

const (
	margin     = 16 // left and right
	titleSize  = 16 // font sizes
	textSize   = 12 // labels, values, notes
	smallSize  = 11 // tick labels
	lineHeight = 16 // one line of textSize text
	font       = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
	gridColour = "#d0d7de"
	textColour = "#24292f"
	mutedColor = "#57606a"
)

// palette colours the series of a panel, in order.
var palette = []string{"#0969da", "#bc4c00", "#1a7f37", "#8250df"}

// canvas accumulates the body of an SVG document.
type canvas struct {
	b bytes.Buffer
	y float64 // the next free line, growing downwards
}

func (c *canvas) printf(format string, args ...any) { fmt.Fprintf(&c.b, format, args...) }

// text writes one line of escaped text at x, y.
func (c *canvas) text(x, y float64, size int, anchor, colour, weight, s string) {
	c.printf(`<text x="%s" y="%s" font-size="%d" text-anchor="%s" fill="%s"`, num(x), num(y), size, anchor, colour)
	if weight != "" {
		c.printf(` font-weight="%s"`, weight)
	}
	c.printf(">%s</text>\n", escape(s))
}

// header writes the title and the subtitle lines.
func (c *canvas) header(title string, subtitle []string) {
	c.y = margin + titleSize
	c.text(margin, c.y, titleSize, "start", textColour, "bold", title)
	c.y += 6
	for _, s := range subtitle {
		c.y += lineHeight
		c.text(margin, c.y, textSize, "start", mutedColor, "", s)
	}
	c.y += lineHeight
}

// notes writes lines of text below the panels.
func (c *canvas) notes(notes []string) {
	for _, n := range notes {
		c.y += lineHeight
		c.text(margin, c.y, textSize, "start", mutedColor, "", n)
	}
}

// legend writes one coloured square and name per series, on one line, when
// there is more than one series.
func (c *canvas) legend(x float64, series []string) {
	if len(series) < 2 {
		return
	}
	for i, s := range series {
		c.printf(`<rect x="%s" y="%s" width="10" height="10" fill="%s"/>`+"\n", num(x), num(c.y-9), colour(i))
		c.text(x+14, c.y, textSize, "start", textColour, "", s)
		x += 14 + float64(len(s))*7 + 16
	}
}

// finish writes the document with the height the body took.
func (c *canvas) finish(w io.Writer, title string) error {
	height := math.Ceil(c.y + margin)
	_, err := fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%s" viewBox="0 0 %d %s" font-family="%s">
<title>%s</title>
<rect x="0" y="0" width="%d" height="%s" fill="#ffffff"/>
%s</svg>
`, Width, num(height), Width, num(height), escape(font), escape(title), Width, num(height), c.b.Bytes())
	return err
}

func colour(i int) string { return palette[i%len(palette)] }

// usable reports whether v can be drawn: finite and positive.
func usable(v float64) bool { return v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) }

// num formats a coordinate; it never prints NaN or Inf (they become 0).
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		v = 0
	}
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}

func escape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// niceScale returns an axis maximum at or above biggest and its tick step: a
// step of 1, 2 or 5 times a power of ten giving at most five steps. It
// returns 1, 1 when biggest is not usable.
func niceScale(biggest float64) (top, step float64) {
	if !usable(biggest) {
		return 1, 1
	}
	raw := biggest / 5
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * pow
	for _, m := range []float64{1, 2, 5} {
		if m*pow >= raw {
			step = m * pow
			break
		}
	}
	return math.Ceil(biggest/step) * step, step
}

// tick formats an axis value compactly: 12000 as "12k", 0.5 as "0.5".
func tick(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}
