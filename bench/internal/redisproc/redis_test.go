package redisproc

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	tests := []struct {
		in, want string
		fails    bool
	}{
		{"+PONG\r\n", "PONG", false},
		{":42\r\n", "42", false},
		{"$5\r\nhello\r\n", "hello", false},
		{"$0\r\n\r\n", "", false},
		{"-ERR unknown command\r\n", "", true},
		{"$-1\r\n", "", true},
		{"*1\r\n$1\r\na\r\n", "", true},
		{"$9\r\nshort\r\n", "", true},
	}
	for _, tt := range tests {
		got, err := readReply(bufio.NewReader(strings.NewReader(tt.in)))
		if (err != nil) != tt.fails || got != tt.want {
			t.Errorf("readReply(%q) = %q, %v", tt.in, got, err)
		}
	}
	if got := encodeCommand("INFO", "commandstats"); got != "*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n" {
		t.Errorf("encodeCommand = %q", got)
	}
}
