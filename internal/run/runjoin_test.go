//go:build linux || darwin

package run

import (
	"bytes"
	"strings"
	"testing"
)

// The joiner writes aigate's lines only at the command's line starts.
func TestLineJoinerHoldsUntilLineEnd(t *testing.T) {
	var out bytes.Buffer
	j := &lineJoiner{w: &out}
	cmd := commandWriter{j}
	cmd.Write([]byte("cat: .env"))
	j.Write([]byte("aigate: blocked read .env\n"))
	cmd.Write([]byte(": Operation not permitted\nnext"))
	j.Write([]byte("aigate: second\n"))
	cmd.Write([]byte(" line\n"))
	j.Write([]byte("aigate: third\n"))
	cmd.Write([]byte("unfinished"))
	j.Write([]byte("aigate: last\n"))
	j.finish()
	want := "cat: .env: Operation not permitted\naigate: blocked read .env\nnext line\naigate: second\naigate: third\nunfinished\naigate: last\n"
	if out.String() != want {
		t.Errorf("joined:\n%q\nwant\n%q", out.String(), want)
	}
}

func TestDeferredLinesBounded(t *testing.T) {
	var d deferredLines
	line := strings.Repeat("x", 1023) + "\n"
	for i := 0; i < maxDeferred/1024+10; i++ {
		d.Write([]byte(line))
	}
	got := string(d.take())
	if len(got) > maxDeferred+200 || !strings.Contains(got, "10 more lines not kept here") {
		t.Errorf("kept %d bytes, tail %q", len(got), got[len(got)-120:])
	}
}
