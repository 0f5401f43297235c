package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
)

// child is a server process started by the harness.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// startChild starts this program in role with args and env added, in its
// own process group, killed with the harness (Pdeathsig).
func startChild(role string, args, env []string) (*child, *bufio.Reader, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(exe, append([]string{"-role=" + role}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttrs()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", role, err)
	}
	c := &child{name: role, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	return c, bufio.NewReader(out), nil
}

// stop sends SIGTERM and kills the process group after 10s.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		killGroup(c.cmd.Process.Pid)
		<-c.done
	}
}

// rssKiB reads the process's resident memory (VmRSS) from /proc.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(b))
}

func parseVmRSS(status string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib); err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kib, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS line")
}

// fdRoom returns the process's open-file soft limit and how many files it
// has open (from /proc).
func fdRoom(pid int) (limit, open uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if _, err := fmt.Sscan(rest, &limit); err != nil {
				return 0, 0, fmt.Errorf("limits %q: %w", line, err)
			}
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0, err
	}
	return limit, uint64(len(fds)), nil
}

// freePort returns a loopback address that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitHealthy polls base+"/healthz" until 200.
func waitHealthy(base string, c *child) error {
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return fmt.Errorf("%s exited at start", c.name)
		default:
		}
		if resp, err := client.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not healthy within 30s", c.name)
}

// env describes the run for the report.
type env struct {
	date, goVersion, cpu, command string
	nproc                         int
	fdLimit                       uint64
}

func describeEnv() env {
	e := env{
		date:      time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		goVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		nproc:     runtime.NumCPU(),
		command:   strings.TrimSpace("go run ./bench/wsload " + strings.Join(os.Args[1:], " ")),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "model name"); ok {
				e.cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
				break
			}
		}
	}
	return e
}

// startGateway starts a gateway process routing to backendURL, signs in
// through it, and returns it with the target that carries the session.
func startGateway(idp *testidp.IdP, backendURL string) (*child, target, error) {
	gwAddr, err := freePort()
	if err != nil {
		return nil, target{}, err
	}
	base := "http://" + gwAddr
	if err := idp.AddRedirectURI(base + "/auth/callback"); err != nil {
		return nil, target{}, err
	}
	gateway, _, err := startChild("gateway", []string{"-backend=" + backendURL}, []string{
		"LISTEN_ADDR=" + gwAddr,
		"APP_BASE_URL=" + base,
		"OIDC_ISSUER=" + idp.Issuer(),
		"OIDC_CLIENT_ID=getaway",
		"OIDC_CLIENT_SECRET=getaway-secret",
		"SESSION_COOKIE_SECURE=false",
		"PUBLIC_DIR=/nonexistent",
		"LOG_LEVEL=error",
		// The idle sockets must outlive the measure.
		"WS_IDLE_TIMEOUT_SECONDS=1800",
	})
	if err != nil {
		return nil, target{}, err
	}
	if err := waitHealthy(base, gateway); err != nil {
		gateway.stop()
		return nil, target{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sid, err := idp.SignInThrough(ctx, base, idp.Username(), testidp.Password, "sid")
	if err != nil {
		gateway.stop()
		return nil, target{}, fmt.Errorf("sign-in: %w", err)
	}
	fmt.Fprintf(os.Stderr, "wsload: gateway %s (pid %d), signed in\n", gwAddr, gateway.cmd.Process.Pid)
	return gateway, target{name: "gateway", url: "ws://" + gwAddr + "/api/live", header: http.Header{"Cookie": {"sid=" + sid}}}, nil
}

func runHarness(o options) error {
	e := describeEnv()
	fdLimit, err := raiseFDLimit(uint64(o.sockets) + 2_000)
	if err != nil {
		return err
	}
	e.fdLimit = fdLimit
	if fdLimit < uint64(o.sockets)+1_000 {
		return fmt.Errorf("open-file limit %d is too low for %d sockets", fdLimit, o.sockets)
	}

	idp, err := testidp.Start(testidp.Options{})
	if err != nil {
		return err
	}
	defer idp.Close()

	backend, out, err := startChild("backend", nil, nil)
	if err != nil {
		return err
	}
	defer backend.stop()
	line, err := out.ReadString('\n')
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	backendAddr := strings.TrimSpace(strings.TrimPrefix(line, "listening "))
	backendURL := "http://" + backendAddr

	direct := target{name: "direct", url: "ws://" + backendAddr + "/live"}

	// Memory first, on a gateway of its own, so no other run's garbage
	// hides in its baseline.
	gateway, through, err := startGateway(idp, backendURL)
	if err != nil {
		return err
	}
	// Every proxied socket costs the gateway two descriptors. Without the
	// privilege to raise the hard limit, hold as many as it allows.
	gwPid := gateway.cmd.Process.Pid
	requested := o.sockets
	if limit, open, err := fdRoom(gwPid); err == nil {
		if fit := int(limit-open-64) / 2; fit < o.sockets {
			fmt.Fprintf(os.Stderr, "wsload: the gateway may open %d files (%d open): holding %d sockets, not %d\n", limit, open, fit, o.sockets)
			o.sockets = fit
		}
	}
	mem, err := measureMemory(o, through, gwPid)
	gateway.stop()
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	mem.requested = requested
	fmt.Fprintf(os.Stderr, "wsload: %d idle sockets: %.1f KiB each\n", mem.sockets, mem.perSocketKiB())

	// Latency on a fresh gateway.
	gateway, through, err = startGateway(idp, backendURL)
	if err != nil {
		return err
	}
	defer gateway.stop()
	var lat []latencyResult
	for _, sc := range []scenario{
		{name: "1 socket, 64 B messages", sockets: 1, size: 64},
		{name: "1 socket, 16 KiB messages", sockets: 1, size: 16 << 10},
		{name: fmt.Sprintf("%d sockets at once, 64 B messages", o.parallel), sockets: o.parallel, size: 64},
	} {
		r, err := measureLatency(o, sc, direct, through)
		if err != nil {
			return fmt.Errorf("latency %s: %w", sc.name, err)
		}
		lat = append(lat, r)
		fmt.Fprintf(os.Stderr, "wsload: %s: direct p50 %v p99 %v, gateway p50 %v p99 %v\n", sc.name,
			r.direct.p50, r.direct.p99, r.gateway.p50, r.gateway.p99)
	}
	finalRSS, _ := rssKiB(gateway.cmd.Process.Pid)

	report := renderReport(e, o, mem, lat, finalRSS)
	fmt.Print(report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wsload: wrote %s\n", o.out)
	}
	return nil
}
