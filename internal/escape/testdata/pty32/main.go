//go:build linux

// Command pty32 makes a pseudo-terminal and opens its slave by name, as
// unlockpt and ptsname do, prints "pty32-ok" when the open worked, and
// holds both ends for the duration of its argument, if any.
// TestEscapeCompatPty builds it with GOARCH=386: on amd64 its ioctls then go
// through the kernel's compat entry (compat_sys_ioctl), which calls the LSM
// hook file_ioctl_compat instead of file_ioctl (Linux 6.8+ and the stable
// kernels that took the change).
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pty32:", err)
		os.Exit(1)
	}
}

func run() error {
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/ptmx: %w", err)
	}
	defer unix.Close(m)
	var hold time.Duration
	if len(os.Args) > 1 {
		if hold, err = time.ParseDuration(os.Args[1]); err != nil {
			return err
		}
	}
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	n, err := unix.IoctlGetUint32(m, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("pty number: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(int(n))
	s, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	fmt.Println("pty32-ok")
	time.Sleep(hold)
	return unix.Close(s)
}
