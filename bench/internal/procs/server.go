package procs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// addrPrefix starts the line in which a server child reports its address.
const addrPrefix = "ADDR "

// abortGrace bounds the stop of a child that failed to start.
const abortGrace = 2 * time.Second

// FreeAddr returns a loopback address, "127.0.0.1:PORT", whose port was
// free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// addrTries is how many free addresses RetryOnFreeAddr tries.
const addrTries = 3

// RetryOnFreeAddr calls start with a loopback address whose port was free
// a moment ago. When start fails and says to retry (its child may have
// lost the race for the port to another process), it calls start again
// with another address, up to three times in all, unless ctx has ended.
// It returns start's last error.
func RetryOnFreeAddr(ctx context.Context, start func(addr string) (retry bool, err error)) error {
	var err error
	for range addrTries {
		addr, aerr := FreeAddr()
		if aerr != nil {
			return aerr
		}
		var retry bool
		if retry, err = start(addr); err == nil || !retry || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// SelfCommand is a command that runs this executable again with
// -role=role and args.
func SelfCommand(role string, args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(self, append([]string{"-role=" + role}, args...)...), nil
}

// Listen is for a child in a server role: it listens on a free loopback
// port and reports the address on stdout as "ADDR host:port", for
// StartServer.
func Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fmt.Printf("%s%s\n", addrPrefix, ln.Addr())
	return ln, nil
}

// StartServer starts cmd as Start does, with its stdout read until the
// line "ADDR host:port" that Listen prints (the rest is discarded), and
// returns the child and that address. It fails, with the child stopped,
// when the child exits first, ctx ends or within passes.
func StartServer(ctx context.Context, name string, cmd *exec.Cmd, within time.Duration) (*Child, string, error) {
	if cmd.Stdout != nil {
		return nil, "", fmt.Errorf("start %s: its stdout is already taken", name)
	}
	// An *os.File as Stdout, so that exec.Cmd.Wait never waits on the
	// reader.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, "", err
	}
	cmd.Stdout = pw
	c, err := Start(name, cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, "", err
	}

	addrc := make(chan string, 1)
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), addrPrefix); ok {
				addrc <- strings.TrimSpace(addr)
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr) // never block the child
	}()

	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case addr := <-addrc:
		return c, addr, nil
	case <-c.done:
		err = fmt.Errorf("%s exited before reporting its address: %w", name, c.exitErr())
	case <-timer.C:
		err = fmt.Errorf("%s did not report its address within %v", name, within)
	case <-ctx.Done():
		err = ctx.Err()
	}
	_ = c.Stop(abortGrace)
	return nil, "", err
}

// ServeUntilSignal is for a child in a server role: it runs serve until
// serve fails or SIGTERM or SIGINT arrives, then calls shutdown and waits
// for serve to return. http.ErrServerClosed from serve is no error.
func ServeUntilSignal(serve func() error, shutdown func() error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- serve() }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		err := shutdown()
		if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}
}
