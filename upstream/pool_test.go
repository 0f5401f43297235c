package upstream

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A deadline set on the connection from outside (as fasthttp may) is not
// mistaken for the wrapper's own: the next Read and Write set theirs again.
func TestIdleTimeoutConnReplacesOutsideDeadline(t *testing.T) {
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	c := &idleTimeoutConn{Conn: a, read: time.Minute, write: time.Minute}

	go func() { _, _ = b.Write([]byte("x")); _, _ = b.Write([]byte("y")) }()
	buf := make([]byte, 1)
	_, err := c.Read(buf) // sets the wrapper's read deadline
	require.NoError(t, err)

	require.NoError(t, c.SetReadDeadline(time.Now().Add(-time.Second)))
	n, err := c.Read(buf)
	require.NoError(t, err, "a past deadline set from outside was kept")
	assert.Equal(t, "y", string(buf[:n]))

	go func() { _, _ = b.Read(make([]byte, 8)) }()
	require.NoError(t, c.SetDeadline(time.Now().Add(-time.Second)))
	_, err = c.Write([]byte("z"))
	require.NoError(t, err, "a past deadline set from outside was kept")
}

// A silent peer still ends a Read with a timeout.
func TestIdleTimeoutConnSilentPeer(t *testing.T) {
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	c := &idleTimeoutConn{Conn: a, read: 20 * time.Millisecond, write: time.Minute}
	_, err := c.Read(make([]byte, 1))
	require.Error(t, err)
	assert.True(t, errors.Is(err, os.ErrDeadlineExceeded), "%v", err)
}
