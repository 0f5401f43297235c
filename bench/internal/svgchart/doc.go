// Package svgchart draws the charts of the bench reports as standalone SVG
// files: horizontal bar panels (proxyload: throughput and latency per
// target) and line panels (soak: memory and goroutines over time).
//
// The output is plain SVG 1.1 written by hand, with no scripts, styles from
// outside or fonts to load: a fixed width (Width) and the system's sans-serif
// font, so that GitHub shows it as an image next to the Markdown report.
// Values that are zero, negative, NaN or infinite draw nothing (a bar of
// width zero, a gap in a line) and never reach the file as numbers; labels
// and notes are escaped. What the numbers mean, and their formatting on the
// bars, is the caller's.
package svgchart
