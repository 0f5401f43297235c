package sessioncache

import (
	"strings"
	"testing"
)

func TestKeyspace(t *testing.T) {
	k := newKeyspace("gw:")
	d := digestOf("session-id")
	key := k.sessionKey(d)
	if key != "gw:session:{"+d.String()+"}" || strings.Contains(key, "session-id") {
		t.Fatalf("sessionKey = %q", key)
	}
	if got, ok := k.parseSessionKey(key); !ok || got != d {
		t.Fatalf("parseSessionKey(%q) = %x, %v", key, got, ok)
	}
	if got, ok := k.parseSessionKey("gw:session:{" + strings.ToUpper(d.String()) + "}"); !ok || got != d {
		t.Fatalf("parseSessionKey of upper-case hex = %x, %v", got, ok)
	}
	for _, bad := range []string{
		"",
		k.lockKey(d),
		k.stateKey(d),
		"gw:session:{" + d.String(),
		"gw:session:{" + d.String()[:63] + "g}",
		"other:session:{" + d.String() + "}",
	} {
		if _, ok := k.parseSessionKey(bad); ok {
			t.Errorf("parseSessionKey(%q) succeeded", bad)
		}
	}
	// A session and its lock share the hash tag, so a cluster slot.
	if !strings.HasSuffix(k.lockKey(d), "{"+d.String()+"}") {
		t.Errorf("lockKey = %q", k.lockKey(d))
	}
}

func TestDigestOfDoesNotAllocate(t *testing.T) {
	id := strings.Repeat("x", 43)
	if n := testing.AllocsPerRun(100, func() { _ = digestOf(id) }); n != 0 {
		t.Fatalf("digestOf allocates %v times", n)
	}
}
