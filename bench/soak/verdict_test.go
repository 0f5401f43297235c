package main

import (
	"math"
	"testing"
)

// samplesOf makes samples with the given RSS (MiB) and goroutines (NaN: the
// metrics endpoint did not answer) and 10 threads.
func samplesOf(rssMiB, goroutines []float64) []sample {
	out := make([]sample, len(rssMiB))
	for i := range out {
		out[i] = sample{rssKiB: int64(rssMiB[i] * 1024), goroutines: goroutines[i], threads: 10}
	}
	return out
}

func repeat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestDecide(t *testing.T) {
	nan := math.NaN()
	// 12 samples: warm-up 0-2, second quarter 3-5, last quarter 9-11.
	warm := []float64{10, 20, 25}
	flatRSS := append(warm, 30, 31, 30, 31, 32, 31, 32, 32, 33)     // +6.7%
	growingRSS := append(warm, 30, 30, 30, 32, 34, 36, 38, 40, 42)  // +33%
	gor := []float64{5, 40, 50, 60, 62, 61, 63, 60, 64, 63, 62, 64} // 61 -> 63
	leak := []float64{5, 40, 50, 60, 62, 61, 70, 80, 90, 100, 110, 120}

	tests := []struct {
		name          string
		rss, gor      []float64
		errors        int64
		ok, rssFlat   bool
		goroutineFlat bool
		fromThreads   bool
	}{
		{"flat", flatRSS, gor, 0, true, true, true, false},
		{"memory grows", growingRSS, gor, 0, false, false, true, false},
		{"goroutines leak", flatRSS, leak, 0, false, true, false, false},
		{"an error", flatRSS, gor, 1, false, true, true, false},
		{"no metrics endpoint: threads judged", flatRSS, repeat(nan, 12), 0, true, true, true, true},
		// The warm-up quarter does not count however high it is.
		{"warm-up ignored", append([]float64{90, 90, 90}, flatRSS[3:]...), gor, 0, true, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := decide(samplesOf(tt.rss, tt.gor), tt.errors)
			if v.ok() != tt.ok || v.rss.flat != tt.rssFlat || v.goroutines.flat != tt.goroutineFlat {
				t.Errorf("ok %v, rss %v, goroutines %v; want %v, %v, %v", v.ok(), v.rss, v.goroutines, tt.ok, tt.rssFlat, tt.goroutineFlat)
			}
			if got := v.goroutines.name != "goroutines"; got != tt.fromThreads {
				t.Errorf("goroutines judged from %q", v.goroutines.name)
			}
		})
	}
}

func TestJudgeMargins(t *testing.T) {
	// 8 samples: second quarter 2-3, last quarter 6-7.
	at := func(base, end float64) []float64 { return []float64{0, 0, base, base, 0, 0, end, end} }
	for _, tt := range []struct {
		values   []float64
		rel, abs float64
		flat     bool
	}{
		{at(100, 110), 0.10, 0, true},
		{at(100, 110.5), 0.10, 0, false},
		{at(20, 25), 0.05, 5, true}, // the absolute slack wins for small counts
		{at(20, 26), 0.05, 5, false},
		{at(1000, 1050), 0.05, 5, true}, // the relative one for large counts
		{at(1000, 1051), 0.05, 5, false},
	} {
		tr := judge("x", tt.values, tt.rel, tt.abs)
		if !tr.measured || tr.flat != tt.flat {
			t.Errorf("judge(%v, +%v or +%v) = %v, want flat %v", tt.values, tt.rel, tt.abs, tr, tt.flat)
		}
	}
	if tr := judge("x", []float64{1, 2, 3}, 0.1, 0); tr.measured {
		t.Errorf("3 samples judged: %v", tr)
	}
	v := decide(samplesOf(repeat(30, 5), repeat(10, 5)), 0)
	if !v.tooFew || v.ok() {
		t.Errorf("5 samples: %+v", v)
	}
}
