//go:build linux

package agent

import "unsafe"

// unsafePointer converts for reading inotify records in place, as
// x/sys/unix's own examples do.
func unsafePointer(b *byte) unsafe.Pointer { return unsafe.Pointer(b) }
