//go:build linux

// Package inotify reads the records of an inotify read(2): the one place
// that knows their layout, for the agent's and the fanotify backend's
// watchers.
package inotify

import (
	"bytes"
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// Event is one record: the watch it came from, what happened and, for a
// watched directory, the name in it (without the kernel's NUL padding).
type Event struct {
	Wd   int32
	Mask uint32
	Name string
}

// Each calls f for each whole record in buf, the bytes one read returned,
// in order. A record cut short at the end (not something the kernel
// returns) is left out.
func Each(buf []byte, f func(Event)) {
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		e := Event{
			Wd:   int32(binary.NativeEndian.Uint32(buf[off:])),
			Mask: binary.NativeEndian.Uint32(buf[off+4:]),
		}
		size := int(binary.NativeEndian.Uint32(buf[off+12:]))
		name := off + unix.SizeofInotifyEvent
		off = name + size
		if off > len(buf) {
			return
		}
		if size > 0 {
			n := buf[name:off]
			if i := bytes.IndexByte(n, 0); i >= 0 {
				n = n[:i]
			}
			e.Name = string(n)
		}
		f(e)
	}
}
