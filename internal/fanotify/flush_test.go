//go:build linux

package fanotify

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// kernelMarks counts the inode marks the kernel holds for fanotify
// descriptor fd of this process (its fdinfo lists one line each).
func kernelMarks(t *testing.T, fd int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "fanotify ino:")
}

// TestFlushWhenEmpty: with FlushWhenEmpty (embedded runs) the marks of
// both groups go in one call when the last sandbox is removed, and only
// then: a sandbox still running keeps every mark it needs, and a sandbox
// added after a flush is marked afresh (the table forgot what was
// flushed), so each one's secrets stay refused.
func TestFlushWhenEmpty(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.FlushWhenEmpty = true })
	if e.b.watch == nil {
		t.Fatal("no directory watcher: the test needs one")
	}
	for _, d := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(e.home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := e.write(filepath.Join(e.home, "a", "b", ".env"), "K=v")
	e.write(filepath.Join(e.home, "c", "notes.txt"), "n")
	p := policy.Policy{DenyRead: rules(".env")}
	refused := func(s *sbox, when string) {
		t.Helper()
		if got := e.run(s, "open", secret, "r"); got != "EPERM" {
			t.Fatalf("read of %s %s: %s, want EPERM", secret, when, got)
		}
		e.event()
	}

	first, second := e.sandbox(p), e.sandbox(p)
	if err := e.b.Remove(first.ID); err != nil {
		t.Fatal(err)
	}
	if kernelMarks(t, e.b.group) == 0 || kernelMarks(t, e.b.watch.fd) == 0 {
		t.Fatal("marks flushed while a sandbox was still running")
	}
	refused(second, "in a sandbox that outlived another")
	if err := e.b.Remove(second.ID); err != nil {
		t.Fatal(err)
	}
	if n, w := kernelMarks(t, e.b.group), kernelMarks(t, e.b.watch.fd); n != 0 || w != 0 {
		t.Fatalf("%d marks and %d directory watches left after the last sandbox, want none", n, w)
	}

	third := e.sandbox(p)
	refused(third, "in a sandbox added after a flush")
	if marks, _ := e.b.marks.counts(); marks == 0 || kernelMarks(t, e.b.watch.fd) == 0 {
		t.Fatalf("sandbox added after a flush: %d marks in the table, %d watches", marks, kernelMarks(t, e.b.watch.fd))
	}
}
