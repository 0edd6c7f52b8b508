//go:build linux

package inotify

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestEach reads what the kernel wrote for two names of different
// lengths in a watched directory, then a removed watch's IN_IGNORED.
func TestEach(t *testing.T) {
	dir := t.TempDir()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	wd, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "a-longer-name.lock"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := unix.InotifyRmWatch(fd, uint32(wd)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := unix.Read(fd, buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []Event
	Each(buf[:n], func(e Event) { got = append(got, e) })
	want := []Event{
		{int32(wd), unix.IN_CREATE, "a"},
		{int32(wd), unix.IN_CREATE, "a-longer-name.lock"},
		{int32(wd), unix.IN_IGNORED, ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	// Cut short: the last whole record is the last reported.
	got = nil
	Each(buf[:n-1], func(e Event) { got = append(got, e) })
	if len(got) != 2 {
		t.Errorf("a buffer cut inside its last record gave %d records, want 2", len(got))
	}
}

// TestWatcher gets a record of a watched file's change, then closes with
// the reader waiting and no record to come: Close must wake it.
func TestWatcher(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan Event, 8)
	w, err := NewWatcher(func(e Event) { got <- e })
	if err != nil {
		t.Fatal(err)
	}
	wd, err := w.Add(file, unix.IN_MODIFY)
	if err != nil {
		w.Close()
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if e := <-got; e.Wd != int32(wd) || e.Mask&unix.IN_MODIFY == 0 {
		t.Errorf("record %+v, want IN_MODIFY of watch %d", e, wd)
	}
	// The record of the watch's end, so that none is left to wake the
	// reader.
	w.Remove(wd)
	for e := range got {
		if e.Mask&unix.IN_IGNORED != 0 {
			break
		}
	}
	closed := make(chan struct{})
	go func() { w.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: the reader was not woken")
	}
}
