package sessioncache

import (
	"crypto/sha256"
	"encoding/hex"
	"unsafe"
)

// digest is the SHA-256 of a session id, state or subject. Redis keys and
// the in-process maps carry digests, never the raw values: a Redis dump or
// a heap dump of the index yields no cookie that could be replayed.
type digest [sha256.Size]byte

// digestOf hashes s without copying it: GetSession runs this on every
// request and must not allocate. sha256.Sum256 neither keeps nor modifies
// its argument, so viewing the string's bytes is safe.
func digestOf(s string) digest {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(s), len(s)))
}

func (d digest) String() string { return hex.EncodeToString(d[:]) }

// keyspace builds the Redis keys of one store. Every key ends in a hash
// tag "{<hex digest>}", so in a cluster a session and its refresh lock
// share a slot, and no command ever needs keys from two slots at once.
//
//	<prefix>session:{<sha256(id) hex>}       the JSON session, PX = idle timeout
//	<prefix>lock:refresh:{<sha256(id) hex>}  refresh lock token, PX = lock ttl
//	<prefix>user:{<sha256(sub) hex>}         set of the subject's session digests (hex)
//	<prefix>state:{<sha256(state) hex>}      the JSON login state, PX = StateTTL
type keyspace struct {
	session, lock, user, state string // prefixes, up to and including '{'
}

func newKeyspace(prefix string) keyspace {
	return keyspace{
		session: prefix + "session:{",
		lock:    prefix + "lock:refresh:{",
		user:    prefix + "user:{",
		state:   prefix + "state:{",
	}
}

func (k keyspace) sessionKey(d digest) string { return k.session + d.String() + "}" }
func (k keyspace) lockKey(d digest) string    { return k.lock + d.String() + "}" }
func (k keyspace) userKey(d digest) string    { return k.user + d.String() + "}" }
func (k keyspace) stateKey(d digest) string   { return k.state + d.String() + "}" }

// sessionKeyFromHex builds a session key from a digest already in hex (a
// member of a user index).
func (k keyspace) sessionKeyFromHex(h string) string { return k.session + h + "}" }

// parseSessionKey returns the digest in a session key, or ok=false when
// key is not one of this keyspace's session keys. It does not allocate:
// it runs for every key in an invalidation message.
func (k keyspace) parseSessionKey(key string) (d digest, ok bool) {
	if len(key) != len(k.session)+2*len(d)+1 || key[:len(k.session)] != k.session || key[len(key)-1] != '}' {
		return d, false
	}
	return parseHexDigest(key[len(k.session) : len(key)-1])
}

// parseHexDigest decodes a lowercase or uppercase hex digest.
func parseHexDigest(h string) (d digest, ok bool) {
	if len(h) != 2*len(d) {
		return d, false
	}
	for i := range d {
		hi, ok1 := fromHex(h[2*i])
		lo, ok2 := fromHex(h[2*i+1])
		if !ok1 || !ok2 {
			return d, false
		}
		d[i] = hi<<4 | lo
	}
	return d, true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
