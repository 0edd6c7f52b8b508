//go:build linux

package lsm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
)

func script(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Each script's own content: two identical ones are one program, and
	// the copy programs refuse a copy of a denied one (lsm_copy_test.go).
	if err := os.WriteFile(path, []byte("#!/bin/sh\n# "+path+"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func symlink(t *testing.T, target, link string) string {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// expectDenied runs the helper in sb and checks EPERM and the event.
func expectDenied(t *testing.T, l *Backend, sb *sandbox, kind events.Kind, path string, rule uint32, args ...string) {
	t.Helper()
	code, pid := run(t, sb, args...)
	if code != exitEPERM {
		t.Errorf("%v: exit %d, want EPERM", args, code)
		return
	}
	ev := nextEvent(t, l)
	if ev.Kind != kind || ev.Path != path || ev.Rule != rule || int(ev.TGID) != pid {
		t.Errorf("%v: event %+v, want %s path %s rule %d pid %d", args, ev, kind, path, rule, pid)
	}
}

func expectAllowed(t *testing.T, sb *sandbox, args ...string) {
	t.Helper()
	if code, _ := run(t, sb, args...); code != 0 {
		t.Errorf("%v: exit %d, want allowed", args, code)
	}
}
