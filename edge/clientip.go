package edge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"unsafe"

	"github.com/apigetaway/getaway/upstream"
	"github.com/valyala/fasthttp"
)

// Client IP (issue 6). The client of a request is the socket peer, unless
// the peer is a trusted proxy (TRUSTED_PROXIES); then X-Forwarded-For is
// walked from the right, past every entry that is itself a trusted proxy,
// and the first entry that is not is the client:
//
//	X-Forwarded-For: 203.0.113.9, 198.51.100.7, 10.0.0.2   peer 10.0.0.3
//	trusted 10.0.0.0/8  ->  client 198.51.100.7
//
// Only entries appended by trusted proxies are believed: everything left of
// the client was written by the client (or by proxies we do not know) and
// is dropped. The rules, so that no client can choose the address it is
// limited and logged by:
//
//   - peer not trusted: the peer, whatever the headers say;
//   - no X-Forwarded-For (or only empty list elements): the peer;
//   - a malformed entry reached by the walk (not an IP address: a port, a
//     zone, "unknown", garbage): the peer. A trusted proxy wrote nonsense,
//     so nothing beyond the peer can be believed;
//   - every entry trusted: the left-most one. It was written by a trusted
//     proxy about a host in the trusted ranges, which is as far as the
//     chain can be followed (a host inside those ranges is a proxy to us).
//
// Several X-Forwarded-For header lines are one list, in order (RFC 9110
// section 5.3); spaces and tabs around entries and empty elements are
// ignored; IPv4-mapped IPv6 addresses ("::ffff:192.0.2.1") are their IPv4
// address, in the trusted list and in the header alike.

// ClientIPPolicy finds the client address of a request and the
// X-Forwarded-For the proxy sends on. The zero value and nil trust no proxy:
// the client is always the socket peer. It is immutable, safe for
// concurrent use, and allocates nothing.
type ClientIPPolicy struct {
	trusted []netip.Prefix // masked, IPv4 ones as IPv4
}

var _ upstream.ForwardedForPolicy = (*ClientIPPolicy)(nil)

// NewClientIPPolicy returns the policy that trusts the proxies in trusted
// (as ParseTrustedProxies returns them).
func NewClientIPPolicy(trusted []netip.Prefix) *ClientIPPolicy {
	p := &ClientIPPolicy{}
	for _, t := range trusted {
		p.trusted = append(p.trusted, normalizePrefix(t))
	}
	return p
}

// errTrustAll refuses a trusted range of every address: with it, the
// left-most X-Forwarded-For entry, which the client writes, would be the
// client's address.
var errTrustAll = errors.New("trusting every address would let clients choose their IP")

// ParseTrustedProxies parses TRUSTED_PROXIES: a comma list of CIDRs
// ("10.0.0.0/8", "2001:db8::/32") and single addresses ("192.0.2.10").
// Host bits of a CIDR are cleared; zones and /0 are refused.
func ParseTrustedProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var p netip.Prefix
		var err error
		if strings.Contains(item, "%") {
			errs = append(errs, fmt.Errorf("%q: zones are not allowed", item))
			continue
		}
		if strings.Contains(item, "/") {
			p, err = netip.ParsePrefix(item)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(item); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: not an IP address or CIDR", item))
			continue
		}
		p = normalizePrefix(p)
		if p.Bits() == 0 {
			errs = append(errs, fmt.Errorf("%q: %w", item, errTrustAll))
			continue
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// normalizePrefix masks p and turns an IPv4-mapped prefix into IPv4, so
// that it matches the unmapped addresses it is compared with.
func normalizePrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			bits = 0
		}
		p = netip.PrefixFrom(a.Unmap(), bits)
	}
	return p.Masked()
}

// isTrusted reports whether a (unmapped) is a trusted proxy.
func (p *ClientIPPolicy) isTrusted(a netip.Addr) bool {
	for _, t := range p.trusted {
		if t.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the address of ctx's client (see the rules above),
// IPv4 addresses as IPv4.
func (p *ClientIPPolicy) ClientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	peer := peerIP(ctx)
	if p == nil || len(p.trusted) == 0 || !p.isTrusted(peer) {
		return peer
	}
	if w := p.walk(&ctx.Request.Header); w.found {
		return w.client
	}
	return peer
}

// AppendForwardedFor appends the X-Forwarded-For the proxy sends for ctx:
// the peer alone when it is not trusted or the walk found no client; else
// the incoming entries from the client rightwards (the client and the
// trusted proxies after it, in canonical form) and then the peer. What the
// client wrote left of its own address is dropped.
func (p *ClientIPPolicy) AppendForwardedFor(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	peer := peerIP(ctx)
	if p == nil || len(p.trusted) == 0 || !p.isTrusted(peer) {
		return peer.AppendTo(dst)
	}
	h := &ctx.Request.Header
	w := p.walk(h)
	if !w.found {
		return peer.AppendTo(dst)
	}
	// PeekAll again: walk's values live in a buffer of h that the next
	// PeekAll reuses, and nothing touched h in between.
	vals := h.PeekAll(fasthttp.HeaderXForwardedFor)
	for i := w.line; i < len(vals); i++ {
		v := vals[i]
		if i == w.line {
			v = v[w.offset:]
		}
		for len(v) > 0 {
			var item []byte
			item, v = nextListItem(v)
			if len(item) == 0 {
				continue
			}
			a, _ := parseForwardedIP(item) // valid: the walk checked it
			dst = a.AppendTo(dst)
			dst = append(dst, ", "...)
		}
	}
	return peer.AppendTo(dst)
}

// walkResult is where the walk found the client: its address and where its
// entry starts (header line and byte offset), so the entries from it
// rightwards can be copied.
type walkResult struct {
	client       netip.Addr
	line, offset int
	found        bool
}

// walk finds the client in h's X-Forwarded-For, from the right. found is
// false when there is no entry or a malformed one stops the walk: the
// caller then uses the peer.
func (p *ClientIPPolicy) walk(h *fasthttp.RequestHeader) walkResult {
	var last walkResult // the left-most trusted entry seen so far
	vals := h.PeekAll(fasthttp.HeaderXForwardedFor)
	for line := len(vals) - 1; line >= 0; line-- {
		v := vals[line]
		end := len(v)
		for end > 0 {
			start := 0
			for i := end - 1; i >= 0; i-- {
				if v[i] == ',' {
					start = i + 1
					break
				}
			}
			item := trimOWS(v[start:end])
			if start > 0 {
				end = start - 1
			} else {
				end = 0
			}
			if len(item) == 0 {
				continue // an empty list element (RFC 9110 section 5.6.1)
			}
			a, ok := parseForwardedIP(item)
			if !ok {
				return walkResult{}
			}
			if !p.isTrusted(a) {
				return walkResult{client: a, line: line, offset: start, found: true}
			}
			last = walkResult{client: a, line: line, offset: start, found: true}
		}
	}
	return last
}

// nextListItem splits a comma list: the first element without surrounding
// spaces and tabs, and the rest after the comma.
func nextListItem(list []byte) (item, rest []byte) {
	for i, c := range list {
		if c == ',' {
			return trimOWS(list[:i]), list[i+1:]
		}
	}
	return trimOWS(list), nil
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// parseForwardedIP parses one X-Forwarded-For entry: a bare IPv4 or IPv6
// address, returned unmapped. Ports, brackets, zones and names are
// malformed.
func parseForwardedIP(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 45 { // 45: the longest IPv6 text form
		return netip.Addr{}, false
	}
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F', c == '.', c == ':':
		default:
			return netip.Addr{}, false
		}
	}
	// Viewing the bytes as a string without a copy is safe: ParseAddr keeps
	// nothing of its input but a zone (excluded above) and the text of its
	// error, which is dropped here.
	a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(b), len(b)))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// peerIP returns the socket peer's address, unmapped.
func peerIP(ctx *fasthttp.RequestCtx) netip.Addr {
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		if ap := a.AddrPort(); ap.IsValid() {
			return ap.Addr().Unmap()
		}
	}
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap()
}
