//go:build linux

package escape

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// tryLoop is the sandboxed attacker of the fail-closed tests: it opens
// secret in one goroutine and connects to addr in another (so that an open
// waiting for fanotify's answer does not hold up the connects), each over
// and over as fast as it can, and appends a line to out/leaks for every try
// that succeeded. It writes its pid to out/ready once both have been
// refused once, and the number of tries so far to out/rounds-files and
// out/rounds-net, so that the test knows they are trying.
func tryLoop(out, secret, addr string) {
	ap := netip.MustParseAddrPort(addr)
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	leaks, err := os.OpenFile(out+"/leaks", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	ready := make(chan struct{}, 2)
	loop := func(name string, try func() bool) {
		rounds, err := os.OpenFile(out+"/rounds-"+name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		for i := 0; ; i++ {
			if try() {
				_, _ = leaks.WriteString(name + "\n")
			}
			if i == 0 {
				ready <- struct{}{}
			}
			_, _ = rounds.WriteAt([]byte(strconv.Itoa(i+1)+"\n"), 0) // grows only
		}
	}
	go loop("files", func() bool {
		fd, err := unix.Open(secret, unix.O_RDONLY, 0)
		if err != nil {
			return false
		}
		unix.Close(fd)
		return true
	})
	go loop("net", func() bool {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return false
		}
		defer unix.Close(fd)
		return unix.Connect(fd, sa) == nil
	})
	<-ready
	<-ready
	// Renamed into place: the test must not read it half written.
	_ = os.WriteFile(out+"/ready.tmp", []byte(strconv.Itoa(os.Getpid())), 0o644)
	_ = os.Rename(out+"/ready.tmp", out+"/ready")
	select {}
}

// tryLoopChild runs tryLoop in a child process and waits: the command that
// aigate run starts dies with aigate (Pdeathsig), its child does not, as a
// tool's background process would not, and runs on in the sandbox after
// aigate is killed.
func tryLoopChild(args []string) {
	exe, err := os.Executable()
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), clientEnv+"="+strings.Join(args, " "))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Println("error:", err)
	}
	os.Exit(1)
}
