//go:build linux

package api

import (
	"net"
	"strings"
	"testing"
	"time"
)

// TestWriteManyFrames: messages sent in one WriteMany read back one by
// one, each as Write would have framed it, through a buffered reader that
// takes several frames per read; an oversized one is refused whole.
func TestWriteManyFrames(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w, r := NewConn(a), NewConn(b)
	r.BufferReads()
	msgs := []any{&Response{OK: true, Dropped: 1}, &Response{OK: true, Warnings: []string{"<x>&"}}, &Response{Dropped: 3}}
	errc := make(chan error, 2)
	go func() {
		errc <- w.WriteMany(msgs, time.Second)
		errc <- w.Write(&Response{Dropped: 4}, time.Second)
	}()
	want := []Response{{OK: true, Dropped: 1}, {OK: true, Warnings: []string{"<x>&"}}, {Dropped: 3}, {Dropped: 4}}
	for i, wr := range want {
		var got Response
		if err := r.Read(&got, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if got.OK != wr.OK || got.Dropped != wr.Dropped || strings.Join(got.Warnings, ",") != strings.Join(wr.Warnings, ",") {
			t.Fatalf("message %d = %+v, want %+v", i, got, wr)
		}
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	big := &Response{Warnings: []string{strings.Repeat("x", MaxMessage)}}
	if err := w.WriteMany([]any{&Response{OK: true}, big}, time.Second); err != ErrTooLarge {
		t.Fatalf("oversized message: %v, want ErrTooLarge", err)
	}
}
