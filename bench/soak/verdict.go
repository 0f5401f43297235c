package main

import (
	"fmt"
	"math"
	"slices"
)

// The flatness rule: the first quarter of the samples is warm-up; the
// median of the last quarter may exceed the median of the second quarter
// by at most these margins.
const (
	rssMargin         = 0.10 // +10% resident memory
	goroutineMargin   = 0.05 // +5% goroutines ...
	goroutineAbsolute = 5    // ... or +5 goroutines, whichever is larger (sockets in flight at the sampling instant)
	minSamples        = 8    // two per quarter at least
)

// trend is one figure's verdict.
type trend struct {
	name           string
	base, end      float64 // medians of the second and of the last quarter
	limit          float64 // the largest end that is flat
	flat, measured bool    // measured: enough samples with a value
}

func (t trend) String() string {
	if !t.measured {
		return t.name + ": n/a"
	}
	word := "flat"
	if !t.flat {
		word = "NOT flat"
	}
	return fmt.Sprintf("%s: %s (median %.1f in the second quarter, %.1f in the last; limit %.1f)", t.name, word, t.base, t.end, t.limit)
}

// judge applies the rule to values, one per sample in order (NaN: not
// taken), with the relative margin rel and at least abs of slack.
func judge(name string, values []float64, rel, abs float64) trend {
	t := trend{name: name}
	n := len(values)
	if n < minSamples {
		return t
	}
	second := finite(values[n/4 : n/2])
	last := finite(values[n-n/4:])
	if len(second) == 0 || len(last) == 0 {
		return t
	}
	t.measured = true
	t.base, t.end = median(second), median(last)
	t.limit = t.base + math.Max(t.base*rel, abs)
	t.flat = t.end <= t.limit
	return t
}

func finite(xs []float64) []float64 {
	var out []float64
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out
}

// median returns the middle value, or the mean of the two middle ones; 0
// for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// verdict is the outcome of a soak.
type verdict struct {
	rss, goroutines trend
	// goroutinesFrom says where the goroutine figure came from: the
	// gateway's metrics, or its OS threads when they did not answer.
	goroutinesFrom string
	errors         int64
	tooFew         bool
}

// ok is whether the soak passed: enough samples, memory and goroutines
// flat, no error.
func (v verdict) ok() bool {
	return !v.tooFew && v.rss.measured && v.rss.flat && v.goroutines.measured && v.goroutines.flat && v.errors == 0
}

// decide judges the samples. Goroutines are judged from the metrics
// endpoint when it answered in both quarters, else from the OS threads.
func decide(samples []sample, errors int64) verdict {
	var rss, gor, thr []float64
	for _, s := range samples {
		rss = append(rss, float64(s.rssKiB)/1024)
		gor = append(gor, s.goroutines)
		thr = append(thr, s.threads)
	}
	v := verdict{errors: errors, tooFew: len(samples) < minSamples}
	v.rss = judge("RSS (MiB)", rss, rssMargin, 0)
	v.goroutines = judge("goroutines", gor, goroutineMargin, goroutineAbsolute)
	v.goroutinesFrom = "the gateway's /metrics (go_goroutines)"
	if !v.goroutines.measured {
		v.goroutines = judge("OS threads (no go_goroutines)", thr, goroutineMargin, goroutineAbsolute)
		v.goroutinesFrom = "the gateway's OS threads (/proc Threads), as /metrics did not answer"
	}
	return v
}
