//go:build linux

package loader

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/bench"
)

// The network tests re-execute the test binary as a helper that runs inside
// a sandbox cgroup (and a network namespace the test made) and performs
// socket operations, printing one errno per operation (0: success). init,
// not TestMain, so that no other test file of the package is constrained.
const netHelperEnv = "AIGATE_NET_HELPER_OPS"

func init() {
	ops, ok := os.LookupEnv(netHelperEnv)
	if !ok {
		return
	}
	for _, op := range strings.Split(ops, ";") {
		res, err := netHelperOp(strings.Fields(op))
		if err != nil {
			fmt.Fprintf(os.Stderr, "helper %q: %v\n", op, err)
			os.Exit(2)
		}
		fmt.Println(res)
	}
	os.Exit(0)
}

// netHelperOp runs one operation:
//
//	tcp ADDR:PORT       listen on the address if it is local, then connect
//	udp ADDR:PORT       connect a UDP socket
//	sendto ADDR:PORT    sendto on an unconnected UDP socket
//	tfo ADDR:PORT       sendto(MSG_FASTOPEN) on a fresh TCP socket
//	sub                 move into the cgroup whose cgroup.procs is fd 3 (ip
//	                    netns exec remounts /sys, hiding the cgroup tree)
//	bench OP ADDR N     N connects (udp) or sendtos, or (tcploop) N TCP
//	                    connections accepted and closed from a listener
//	                    the helper opens at ADDR; prints the ns per call
//	flood ADDR T MS R   T threads connect a UDP socket each to ADDR, every
//	                    one expected to be denied, for MS milliseconds, at
//	                    R connects/s in all (0: as fast as they can); prints
//	                    the number of connects (net_rate_test.go)
//	dnsudp ADDR:PORT    connect a UDP socket, send, and expect an echo whose
//	                    source is ADDR:PORT (1001: wrong source, 1002: wrong data)
//	dnssendto ADDR:PORT the same with sendto on an unconnected socket
//	dnstcp ADDR:PORT    connect over TCP, send, expect the echo
//	raw ADDR:0          create a raw ICMP socket of ADDR's family
//	ping ADDR:0         create an ICMP ping socket of ADDR's family
//	unix NAME           connect a stream socket to NAME (a path, or @abstract)
//	unixgram NAME       sendto NAME on an unbound datagram socket
//	unixself NAME       bind and listen on NAME, connect to it, close both
//	                    (and unlink a path)
//	unixselfgram NAME   bind a datagram socket to NAME, sendto it from another
//	unixtaken NAME      bind NAME, expecting EADDRINUSE (1003 otherwise),
//	                    then connect to it
//	unixhold NAME       bind and listen on a stream socket at NAME, print the
//	                    errno, hold the socket until stdin closes (the file
//	                    stays)
//	uring MODE OP ARG   the operation through io_uring (net_uring_test.go)
//	serve PROTO ADDR:PORT  listen (tcp) or bind (udp) there, print the errno
//	                    and the port, hold the socket until stdin closes
//	bind PROTO ADDR:PORT   bind a socket (tcp also listens) and close it
func netHelperOp(args []string) (string, error) {
	if len(args) == 1 && args[0] == "sub" {
		procs := os.NewFile(3, "cgroup.procs")
		if _, err := procs.WriteString(strconv.Itoa(os.Getpid())); err != nil {
			return "", err
		}
		// Prove the move: print 0 only if the kernel agrees.
		cg, err := os.ReadFile("/proc/self/cgroup")
		if err != nil || !strings.Contains(string(cg), "/escape\n") {
			return "1000", err
		}
		return "0", nil
	}
	if len(args) < 2 {
		return "", fmt.Errorf("bad op %q", args)
	}
	if args[0] == "bench" {
		if len(args) != 4 {
			return "", fmt.Errorf("bench takes OP ADDR N")
		}
		dst, err := netip.ParseAddrPort(args[2])
		if err != nil {
			return "", err
		}
		n, err := strconv.Atoi(args[3])
		if err != nil {
			return "", err
		}
		ns, err := benchOp(args[1], dst, n)
		return strconv.FormatFloat(ns, 'f', 2, 64), err
	}
	if args[0] == "flood" {
		return floodOp(args[1:])
	}
	if args[0] == "uring" { // uring MODE OP TARGET: see uringHelperOp
		return uringHelperOp(args[1:])
	}
	if (args[0] == "serve" || args[0] == "bind") && len(args) == 3 {
		dst, err := netip.ParseAddrPort(args[2])
		if err != nil {
			return "", err
		}
		fd, port, errno := serveOp(args[1], dst)
		if args[0] == "bind" {
			if fd >= 0 {
				unix.Close(fd)
			}
			return strconv.Itoa(int(errno)), nil
		}
		fmt.Println(int(errno), port)
		_, _ = io.Copy(io.Discard, os.Stdin)
		if fd >= 0 {
			unix.Close(fd)
		}
		return "0", nil
	}
	if args[0] == "unixhold" {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.Bind(fd, &unix.SockaddrUnix{Name: args[1]})
		}
		if err == nil {
			err = unix.Listen(fd, 8)
		}
		if err != nil {
			fmt.Println(int(errnoOf(err)))
		} else {
			fmt.Println(0)
		}
		_, _ = io.Copy(io.Discard, os.Stdin)
		if fd >= 0 {
			unix.Close(fd)
		}
		return "0", nil
	}
	if args[0] == "recvfd" { // recvfd FD: net_recv_test.go
		return recvFDOp(args[1])
	}
	if strings.HasPrefix(args[0], "unix") {
		return strconv.Itoa(int(unixOp(args[0], args[1]))), nil
	}
	dst, err := netip.ParseAddrPort(args[1])
	if err != nil {
		return "", err
	}
	switch args[0] {
	case "tcp", "udp", "sendto", "tfo":
	case "dnsudp", "dnssendto", "dnstcp":
		return strconv.Itoa(int(dnsOp(args[0], dst))), nil
	case "hold":
		// Connect over TCP, print the errno, keep the socket until stdin closes.
		fd, errno := holdOp(dst)
		fmt.Println(int(errno))
		_, _ = io.Copy(io.Discard, os.Stdin)
		if fd >= 0 {
			unix.Close(fd)
		}
		return "0", nil
	case "raw", "ping":
		return strconv.Itoa(int(createOp(args[0], dst))), nil
	default:
		return "", fmt.Errorf("unknown op %q", args[0])
	}
	return strconv.Itoa(int(sockOp(args[0], dst))), nil
}

func sockaddr(a netip.AddrPort) (unix.Sockaddr, int) {
	if a.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: a.Addr().As4(), Port: int(a.Port())}, unix.AF_INET
	}
	return &unix.SockaddrInet6{Addr: a.Addr().As16(), Port: int(a.Port())}, unix.AF_INET6
}

// sockOp returns the errno of one operation on a fresh socket.
func sockOp(op string, dst netip.AddrPort) unix.Errno {
	if op == "tcp" {
		// A listener on the (unmapped) destination, when it is local.
		lsa, lfam := sockaddr(netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()))
		if lfd, err := unix.Socket(lfam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err == nil {
			defer unix.Close(lfd)
			_ = unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			if unix.Bind(lfd, lsa) == nil && unix.Listen(lfd, 8) == nil && dst.Port() == 0 {
				if sa, err := unix.Getsockname(lfd); err == nil {
					switch sa := sa.(type) {
					case *unix.SockaddrInet4:
						dst = netip.AddrPortFrom(dst.Addr(), uint16(sa.Port))
					case *unix.SockaddrInet6:
						dst = netip.AddrPortFrom(dst.Addr(), uint16(sa.Port))
					}
				}
			}
		}
	}
	sa, fam := sockaddr(dst)
	typ := unix.SOCK_DGRAM
	if op == "tcp" || op == "tfo" {
		typ = unix.SOCK_STREAM
	}
	fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err.(unix.Errno) + 1000
	}
	defer unix.Close(fd)
	switch op {
	case "sendto":
		err = unix.Sendto(fd, []byte("x"), 0, sa)
	case "tfo":
		// TCP Fast Open connects inside sendto: connect4/6 must see it.
		err = unix.Sendto(fd, []byte("x"), unix.MSG_FASTOPEN, sa)
	default:
		err = unix.Connect(fd, sa)
	}
	if err == nil {
		return 0
	}
	if e, ok := err.(unix.Errno); ok {
		return e
	}
	return 999
}

// benchOp performs n operations on one socket and returns the mean cost in
// nanoseconds.
func benchOp(op string, dst netip.AddrPort, n int) (float64, error) {
	if op == "tcploop" {
		return benchTCPLoop(dst, n)
	}
	sa, fam := sockaddr(dst)
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	// The median batch, not the mean: see bench.Batched.
	return bench.Batched(n, func() error {
		if op == "sendto" {
			err = unix.Sendto(fd, nil, 0, sa)
		} else {
			err = unix.Connect(fd, sa)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", op, dst, err)
		}
		return nil
	})
}

// benchTCPLoop listens at dst and returns the mean cost of a connect,
// accept and close of both ends: the handshake's packets pass the ingress
// program of the listener's cgroup (the SYN to a listening socket).
func benchTCPLoop(dst netip.AddrPort, n int) (float64, error) {
	l, port, errno := serveOp("tcp", dst)
	if errno != 0 {
		return 0, fmt.Errorf("listen %s: %w", dst, errno)
	}
	defer unix.Close(l)
	sa, fam := sockaddr(netip.AddrPortFrom(dst.Addr(), uint16(port)))
	return bench.Batched(n, func() error {
		c, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(c)
		if err := unix.Connect(c, sa); err != nil {
			return fmt.Errorf("connect %s: %w", dst, err)
		}
		a, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		// A reset, not FIN_WAIT: n connections must not fill the ports.
		_ = unix.SetsockoptLinger(c, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(a)
		return nil
	})
}

// dnsOp sends one datagram (or stream write) and checks the echo the test's
// stand-in proxy returns, as a resolver would.
func dnsOp(op string, dst netip.AddrPort) unix.Errno {
	sa, fam := sockaddr(dst)
	typ := unix.SOCK_DGRAM
	if op == "dnstcp" {
		typ = unix.SOCK_STREAM
	}
	fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err.(unix.Errno) + 1000
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 2}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	msg := []byte("query " + dst.String())
	if op == "dnssendto" {
		err = unix.Sendto(fd, msg, 0, sa)
	} else if err = unix.Connect(fd, sa); err == nil {
		_, err = unix.Write(fd, msg)
	}
	if err != nil {
		return errnoOf(err)
	}
	buf := make([]byte, 512)
	n, from, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return errnoOf(err)
	}
	if string(buf[:n]) != string(msg) {
		return 1002
	}
	if op == "dnstcp" {
		return 0
	}
	var got netip.AddrPort
	switch from := from.(type) {
	case *unix.SockaddrInet4:
		got = netip.AddrPortFrom(netip.AddrFrom4(from.Addr), uint16(from.Port))
	case *unix.SockaddrInet6:
		got = netip.AddrPortFrom(netip.AddrFrom16(from.Addr), uint16(from.Port))
	}
	if got != dst {
		fmt.Fprintf(os.Stderr, "reply from %s, want %s\n", got, dst)
		return 1001
	}
	return 0
}

func createOp(op string, dst netip.AddrPort) unix.Errno {
	fam, typ, proto := unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP
	if !dst.Addr().Is4() {
		fam, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	if op == "ping" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return errnoOf(err)
	}
	unix.Close(fd)
	return 0
}

func errnoOf(err error) unix.Errno {
	if e, ok := err.(unix.Errno); ok {
		return e
	}
	return 999
}

// serveOp binds a socket of proto (tcp or udp) to dst, listening on a TCP
// one, and returns it with its port.
func serveOp(proto string, dst netip.AddrPort) (int, int, unix.Errno) {
	sa, fam := sockaddr(dst)
	typ := unix.SOCK_DGRAM
	if proto == "tcp" {
		typ = unix.SOCK_STREAM
	}
	fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, errnoOf(err) + 1000
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, 0, errnoOf(err)
	}
	if proto == "tcp" {
		if err := unix.Listen(fd, 8); err != nil {
			unix.Close(fd)
			return -1, 0, errnoOf(err)
		}
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, 0, errnoOf(err) + 1000
	}
	port := 0
	switch sa := bound.(type) {
	case *unix.SockaddrInet4:
		port = sa.Port
	case *unix.SockaddrInet6:
		port = sa.Port
	}
	return fd, port, 0
}

func holdOp(dst netip.AddrPort) (int, unix.Errno) {
	sa, fam := sockaddr(dst)
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, errnoOf(err) + 1000
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, errnoOf(err)
	}
	return fd, 0
}

// unixOp returns the errno of one unix-socket operation.
func unixOp(op, name string) unix.Errno {
	// x/sys/unix turns a leading '@' into the abstract namespace's NUL.
	sa := &unix.SockaddrUnix{Name: name}
	typ := unix.SOCK_STREAM
	if strings.HasSuffix(op, "gram") {
		typ = unix.SOCK_DGRAM
	}
	switch op {
	case "unixself", "unixselfgram", "unixtaken":
		lfd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return errnoOf(err) + 1000
		}
		defer unix.Close(lfd)
		err = unix.Bind(lfd, sa)
		if op == "unixtaken" {
			if err != unix.EADDRINUSE {
				return 1003
			}
			break
		}
		if err != nil {
			return errnoOf(err) + 1000
		}
		if !strings.HasPrefix(name, "@") {
			defer os.Remove(name)
		}
		if typ == unix.SOCK_STREAM {
			if err := unix.Listen(lfd, 8); err != nil {
				return errnoOf(err) + 1000
			}
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return errnoOf(err) + 1000
	}
	defer unix.Close(fd)
	if typ == unix.SOCK_DGRAM {
		err = unix.Sendto(fd, []byte("x"), 0, sa)
	} else {
		err = unix.Connect(fd, sa)
	}
	if err != nil {
		return errnoOf(err)
	}
	return 0
}
