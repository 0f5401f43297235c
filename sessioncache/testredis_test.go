package sessioncache

import (
	"fmt"
	"os"
	"testing"

	"github.com/apigetaway/getaway/sessioncache/redistest"
	"go.uber.org/goleak"
)

// The Redis tests run against real redis-server processes (package
// redistest). One single node and one 3-node cluster are shared by the
// whole test binary and stopped by TestMain; tests that kill or count
// commands start their own server.

// shared holds the servers shared by the test binary.
var shared redistest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Close()
	if code == 0 {
		// Every store is closed by now. Two goroutines of rueidis' cluster
		// client may outlive Close for a few seconds and end by themselves:
		// the one closing connections a topology refresh replaced (after
		// 5s, cluster.go _refresh) and the delay of a lazy refresh
		// (singleflight.go DelayDo).
		if err := goleak.Find(
			goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
			goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
