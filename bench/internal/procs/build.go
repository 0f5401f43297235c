package procs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// modulePath is the module whose root package is the gateway.
const modulePath = "github.com/apigetaway/getaway"

const (
	// buildWithin bounds go build of the gateway.
	buildWithin = 5 * time.Minute
	// outputGrace bounds the wait for the output of a command that ctx
	// has ended.
	outputGrace = 5 * time.Second
)

// ErrOutsideModule is wrapped by BuildGetaway's error when the working
// directory is not inside the module.
var ErrOutsideModule = errors.New("run from the module's directory")

// BuildGetaway builds the gateway's main package, the root of the module
// the working directory is in (as go env GOMOD finds it), into dir with go
// build. It returns the binary and the module root. The build runs in a
// process group of its own, so that an interrupted build (ctx ends) takes
// its compiler processes with it; it may take up to 5 minutes.
func BuildGetaway(ctx context.Context, dir string) (bin, root string, err error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", "", fmt.Errorf("go not found to build getaway: %w", err)
	}
	out, err := exec.CommandContext(ctx, gobin, "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", "", fmt.Errorf("not inside the %s module: %w", modulePath, ErrOutsideModule)
	}
	mod, err := os.ReadFile(gomod)
	if err != nil {
		return "", "", err
	}
	if first, _, _ := strings.Cut(string(mod), "\n"); strings.TrimSpace(first) != "module "+modulePath {
		return "", "", fmt.Errorf("%s is not the %s module: %w", gomod, modulePath, ErrOutsideModule)
	}
	root = filepath.Dir(gomod)

	bin = filepath.Join(dir, "getaway")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	ctx, cancel := context.WithTimeout(ctx, buildWithin)
	defer cancel()
	cmd := CommandContext(ctx, gobin, "build", "-o", bin, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "", "", ctx.Err()
		}
		return "", "", fmt.Errorf("go build getaway: %w\n%s", err, out)
	}
	return bin, root, nil
}

// CommandContext is exec.CommandContext for a command run to its end, such
// as a build or a load generator: in a process group of its own (see the
// package documentation), all of which is killed when ctx ends, so that
// it takes its own children with it.
func CommandContext(ctx context.Context, name string, arg ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, arg...)
	cmd.SysProcAttr = childAttrs()
	cmd.Cancel = func() error {
		killGroup(cmd.Process.Pid)
		return cmd.Process.Kill()
	}
	cmd.WaitDelay = outputGrace
	return cmd
}

// LookupIn is os.LookupEnv over env, a child's environment (the last value
// of a key wins, as for the child), for edge.LoadSettings to read it as
// the gateway will.
func LookupIn(env []string) func(key string) (string, bool) {
	return func(key string) (string, bool) {
		for _, kv := range slices.Backward(env) {
			if k, v, ok := strings.Cut(kv, "="); ok && k == key {
				return v, true
			}
		}
		return "", false
	}
}

// Getaway returns the gateway binary a harness runs: bin when it is set,
// else one built with BuildGetaway into a temp dir that cleanup removes.
// It also returns how the report names it.
func Getaway(ctx context.Context, bin, prefix string) (path, describe string, cleanup func(), err error) {
	if bin != "" {
		return bin, "the getaway binary " + bin, func() {}, nil
	}
	dir, err := os.MkdirTemp("", prefix+"-build-")
	if err != nil {
		return "", "", nil, err
	}
	fmt.Println("getaway: go build ...")
	path, root, err := BuildGetaway(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		if errors.Is(err, ErrOutsideModule) || errors.Is(err, exec.ErrNotFound) {
			err = fmt.Errorf("%w (or pass -getaway=BINARY)", err)
		}
		return "", "", nil, err
	}
	return path, "the getaway binary, built from " + root + " with go build at the start of the run",
		func() { os.RemoveAll(dir) }, nil
}
