package procs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
)

func TestParseStatus(t *testing.T) {
	status := "Name:\tgetaway\nVmPeak:\t 1263424 kB\nVmHWM:\t   32180 kB\nVmRSS:\t   31004 kB\nThreads:\t7\n"
	m, err := parseStatus(status)
	if err != nil {
		t.Fatal(err)
	}
	if m.RSSKiB != 31004 || m.PeakKiB != 32180 {
		t.Errorf("parseStatus = %+v", m)
	}
	if got := m.String(); got != "30.3 MiB (peak 31.4 MiB)" {
		t.Errorf("String() = %q", got)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, err := parseStatus(bad); err == nil {
			t.Errorf("parseStatus(%q) succeeded", bad)
		}
	}
}

func TestLookupIn(t *testing.T) {
	lookup := LookupIn([]string{"A=1", "B=", "A=2", "C"})
	for key, want := range map[string]string{"A": "2", "B": ""} {
		if v, ok := lookup(key); !ok || v != want {
			t.Errorf("%s = %q, %v; want %q", key, v, ok, want)
		}
	}
	for _, key := range []string{"C", "D"} {
		if v, ok := lookup(key); ok {
			t.Errorf("%s = %q, want unset", key, v)
		}
	}
}

func TestBuildGetawayOutsideModule(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not installed")
	}
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("GOWORK", "off")
	_, _, err := BuildGetaway(context.Background(), dir)
	if !errors.Is(err, ErrOutsideModule) {
		t.Fatalf("BuildGetaway outside the module: %v, want ErrOutsideModule", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("BuildGetaway wrote %v", entries)
	}
}
