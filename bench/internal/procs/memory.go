package procs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Memory is a process's resident set, from /proc/PID/status.
type Memory struct {
	RSSKiB  int64 // VmRSS
	PeakKiB int64 // VmHWM
}

func (m Memory) String() string {
	return fmt.Sprintf("%.1f MiB (peak %.1f MiB)", float64(m.RSSKiB)/1024, float64(m.PeakKiB)/1024)
}

// Memory reads the child's resident set (Linux only).
func (c *Child) Memory() (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Pid()))
	if err != nil {
		return Memory{}, err
	}
	return parseStatus(string(b))
}

// parseStatus reads the "VmRSS:\t  12345 kB" and "VmHWM: ..." lines of
// /proc/PID/status.
func parseStatus(status string) (Memory, error) {
	var m Memory
	var haveRSS bool
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return Memory{}, fmt.Errorf("/proc status line %q: want a number of kB", sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("/proc status line %q: %w", sc.Text(), err)
		}
		if k == "VmRSS" {
			m.RSSKiB, haveRSS = n, true
		} else {
			m.PeakKiB = n
		}
	}
	if !haveRSS {
		return Memory{}, errors.New("/proc status has no VmRSS line")
	}
	return m, nil
}
