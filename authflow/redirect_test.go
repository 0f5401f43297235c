package authflow

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSafeNextRefusesOpenRedirects(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/dashboard", "/dashboard"},
		{"/a/b?x=1&y=%2F#frag", "/a/b?x=1&y=%2F#frag"},
		{"/caf%C3%A9", "/caf%C3%A9"},
		{"//evil.com", "/"},
		{"//evil.com/path", "/"},
		{"/\\evil.com", "/"},
		{"\\\\evil.com", "/"},
		{"/\\/evil.com", "/"},
		{"https:evil.com", "/"},
		{"https://evil.com", "/"},
		{"http://evil.com", "/"},
		{"javascript:alert(1)", "/"},
		{"%2F%2Fevil.com", "/"},
		{"/%2F%2Fevil.com", "/"},
		{"/%2f/evil.com", "/"},
		{"/%5Cevil.com", "/"},
		{"/%5cevil.com", "/"},
		{"evil.com", "/"},
		{"@evil.com", "/"},
		{".evil.com", "/"},
		{"/ /evil.com", "/"},
		{"/\t/evil.com", "/"},
		{"/\r\nLocation: https://evil.com", "/"},
		{"/%0d%0aSet-Cookie:x=1", "/"},
		{"/%00", "/"},
		{"/%zz", "/"},
		{" /x", "/"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			assert.Equal(t, tc.want, SafeNext(tc.in))
		})
	}
}

func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "//evil.com", "/\\x", "/%2F%2Fx", "https:x", "/a?b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := SafeNext(next)
		if got != "/" && got != next {
			t.Fatalf("SafeNext(%q) = %q: neither the input nor /", next, got)
		}
		if !localPath(got) {
			t.Fatalf("SafeNext(%q) = %q is not a local path", next, got)
		}
		// Prefixed with an origin, it must stay on that origin.
		const origin = "https://app.example.com"
		u := origin + got
		if len(u) > len(origin) && u[len(origin)] != '/' {
			t.Fatalf("%q leaves the origin", u)
		}
	})
}
