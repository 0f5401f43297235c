package procs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const within = 20 * time.Second

// startRole starts the test binary in role (see runRole) and waits until
// it answers on /.
func startRole(t *testing.T, role string) (*Child, string) {
	t.Helper()
	cmd, err := SelfCommand(role)
	if err != nil {
		t.Fatal(err)
	}
	c, addr, err := StartServer(t.Context(), role, cmd, within)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(time.Second) })
	if err := c.WaitHTTP(t.Context(), "http://"+addr+"/", within); err != nil {
		t.Fatal(err)
	}
	return c, addr
}

// gone reports whether process pid no longer runs: it does not exist, or
// it is a zombie nobody has reaped yet (its parent exited and PID 1 of a
// container may not reap).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// "PID (COMM) STATE ...": the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// waitGone fails the test unless pid is gone within a few seconds.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !gone(pid); {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStopOnSIGTERM(t *testing.T) {
	c, _ := startRole(t, "server")
	var order []int
	c.OnStop(func() { order = append(order, 1) })
	c.OnStop(func() {
		if !c.Exited() {
			t.Error("OnStop ran before the process had exited")
		}
		order = append(order, 2)
	})
	if c.Exited() || c.Err() != nil {
		t.Fatalf("running child: Exited %v, Err %v", c.Exited(), c.Err())
	}

	t0 := time.Now()
	if err := c.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Stop took %v for a child that exits on SIGTERM", d)
	}
	if !c.Exited() || c.Err() != nil {
		t.Errorf("after Stop: Exited %v, Err %v; want an exit status 0", c.Exited(), c.Err())
	}
	waitGone(t, c.Pid())
	if err := c.Stop(time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if !slices.Equal(order, []int{2, 1}) {
		t.Errorf("OnStop functions ran as %v, want [2 1], once each", order)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	c, _ := startRole(t, "stubborn")
	err := c.Stop(200 * time.Millisecond)
	if !errors.Is(err, ErrKilled) || !strings.Contains(err.Error(), "stubborn did not stop within 200ms") {
		t.Fatalf("Stop of a child that ignores SIGTERM: %v", err)
	}
	waitGone(t, c.Pid())
}

// TestStopKillsGroup checks that Stop takes the child's own children along,
// even when they ignore SIGTERM and the child exits cleanly.
func TestStopKillsGroup(t *testing.T) {
	c, addr := startRole(t, "parent")
	grandchild := grandchildPid(t, addr)
	if err := c.Stop(5 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitGone(t, c.Pid())
	waitGone(t, grandchild)
}

func TestChildExitsWhileStarting(t *testing.T) {
	cmd, err := SelfCommand("exit3")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start("exit3", cmd)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	err = c.WaitHTTP(t.Context(), "http://"+addr+"/", within)
	if err == nil || !strings.Contains(err.Error(), "exit3 exited while starting: exit status 3") {
		t.Errorf("WaitHTTP: %v", err)
	}
	if err := c.Stop(time.Second); err == nil || err.Error() != "exit3: exit status 3" {
		t.Errorf("Stop: %v, want exit status 3", err)
	}

	cmd, err = SelfCommand("exit3")
	if err != nil {
		t.Fatal(err)
	}
	c, _, err = StartServer(t.Context(), "exit3", cmd, within)
	if c != nil || err == nil || !strings.Contains(err.Error(), "exit3 exited before reporting its address: exit status 3") {
		t.Errorf("StartServer: %v, %v", c, err)
	}
}

func TestWaitHTTPGivesUp(t *testing.T) {
	c, addr := startRole(t, "server")
	err := c.WaitHTTP(t.Context(), "http://"+addr+"/missing", 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "server not ready within 100ms: GET http://"+addr+"/missing: status 404") {
		t.Errorf("WaitHTTP of a 404: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.WaitHTTP(ctx, "http://"+addr+"/missing", within); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitHTTP with its context ended: %v", err)
	}
}

func TestCommandContextKillsGroup(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := CommandContext(ctx, self, "-role=parent")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), addrPrefix)
	if err != nil || !ok {
		t.Fatalf("the parent's first line: %q, %v", line, err)
	}
	grandchild := grandchildPid(t, addr)

	cancel()
	if err := cmd.Wait(); err == nil {
		t.Error("Wait after the context ended: no error")
	}
	waitGone(t, cmd.Process.Pid)
	waitGone(t, grandchild)
}

// grandchildPid asks the parent role at addr for its child's pid.
func grandchildPid(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pid, err := strconv.Atoi(string(body))
	if err != nil {
		t.Fatalf("the grandchild's pid: %q", body)
	}
	if gone(pid) {
		t.Fatal("the grandchild is not running")
	}
	return pid
}
