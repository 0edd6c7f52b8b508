package dns

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// A forwarded query used to open its upstream socket on the client's time
// (miekg's Client: socket, setsockopt, connect, getsockname, getpeername,
// two epoll_ctl, then close; issue #15). The pool opens those sockets ahead
// of the queries and, after an answer has been written, moves the socket
// that carried it to a fresh port (newPort) for a later query: every query
// leaves from a fresh port the kernel picked at random, with a fresh random
// ID, as before. Sockets are connected, so the kernel drops datagrams from
// any other address or port; the reply must also carry the query's ID and
// question.

// poolSize is how many sockets are kept open per upstream: two, because
// resolvers ask for A and AAAA at once.
const poolSize = 2

// poolIdle is how long unused pooled sockets stay open: an idle sandbox's
// proxy holds no upstream socket (the agent runs one proxy per sandbox),
// and no port is held open long before its query.
var poolIdle = 10 * time.Second

// newID returns a query ID; a variable so that a test can know it.
var newID = func() uint16 {
	var b [2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return binary.BigEndian.Uint16(b[:])
}

// upstreamPool holds sockets connected to one upstream resolver.
type upstreamPool struct {
	addr   netip.AddrPort
	family int

	mu     sync.Mutex
	ready  []*os.File
	idle   *time.Timer // closes ready when no query took one for poolIdle
	closed bool
}

// newUpstreamPool returns a pool for upstream ("ip:port"), or nil when
// upstream is a host name or a scoped address: the exchange then goes
// through miekg's client.
func newUpstreamPool(upstream string) *upstreamPool {
	ap, err := netip.ParseAddrPort(upstream)
	if err != nil || ap.Addr().Zone() != "" {
		return nil // a scoped address needs its interface index: miekg's client
	}
	a := ap.Addr().Unmap()
	u := &upstreamPool{addr: ap, family: unix.AF_INET6}
	if a.Is4() {
		u.family = unix.AF_INET
	}
	return u
}

// sockaddr is the upstream's address for one connect: a new one per call,
// because x/sys's Connect writes the raw form into the Sockaddr it is
// given, and the pool's sockets are connected from several goroutines at
// once (the race detector caught a shared one).
func (u *upstreamPool) sockaddr() unix.Sockaddr {
	a, port := u.addr.Addr().Unmap(), int(u.addr.Port())
	if u.family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: port, Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: port, Addr: a.As16()}
}

// dial opens a socket connected to the upstream. It is an os.File, not a
// net.UDPConn, for the syscalls: socket, connect, fcntl and epoll_ctl,
// where net.DialUDP adds a setsockopt, getsockname and getpeername. The
// kernel binds it to a random free port at connect.
func (u *upstreamPool) dial() (*os.File, error) {
	fd, err := udpSocket(u.family)
	if err != nil {
		return nil, fmt.Errorf("open socket to %s: %w", u.addr, err)
	}
	if err := unix.Connect(fd, u.sockaddr()); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect socket to %s: %w", u.addr, err)
	}
	return os.NewFile(uintptr(fd), "dns-upstream"), nil
}

// take returns a socket for one query: a pooled one, or a new one when
// none is ready.
func (u *upstreamPool) take() (*os.File, error) {
	u.mu.Lock()
	if len(u.ready) > 0 {
		// The oldest first: no socket waits open longer than it must.
		c := u.ready[0]
		u.ready = append(u.ready[:0], u.ready[1:]...)
		u.mu.Unlock()
		return c, nil
	}
	u.mu.Unlock()
	return u.dial()
}

// done moves a socket that carried its query to a fresh port and pools
// it, or closes it (when that fails, or the pool is full or closed), and
// opens the pool back up to poolSize; the proxy calls it after writing the
// answer, off the client's time.
func (u *upstreamPool) done(used *os.File) {
	if err := newPort(used, u.sockaddr()); err == nil {
		u.mu.Lock()
		if !u.closed && len(u.ready) < poolSize {
			u.ready = append(u.ready, used)
			used = nil
		}
		u.mu.Unlock()
	}
	if used != nil {
		used.Close()
	}
	for {
		u.mu.Lock()
		full := u.closed || len(u.ready) >= poolSize
		u.mu.Unlock()
		if full {
			break
		}
		c, err := u.dial()
		if err != nil {
			break // the next query opens its own and says why
		}
		u.mu.Lock()
		if u.closed || len(u.ready) >= poolSize {
			u.mu.Unlock()
			c.Close()
			break
		}
		u.ready = append(u.ready, c)
		u.mu.Unlock()
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return
	}
	if u.idle == nil {
		u.idle = time.AfterFunc(poolIdle, u.drain)
	} else {
		u.idle.Reset(poolIdle)
	}
}

// drain closes the pooled sockets.
func (u *upstreamPool) drain() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.ready {
		c.Close()
	}
	u.ready = nil
}

// close closes the pooled sockets and opens no more.
func (u *upstreamPool) close() {
	u.mu.Lock()
	u.closed = true
	if u.idle != nil {
		u.idle.Stop()
	}
	u.mu.Unlock()
	u.drain()
}

// pooledSize reports how many sockets are ready (tests).
func (u *upstreamPool) pooledSize() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.ready)
}

// replyBufs are read buffers for upstream replies, as large as a UDP
// datagram can be: a shorter one would cut a large EDNS answer.
var replyBufs = sync.Pool{New: func() any { b := make([]byte, mdns.MaxMsgSize); return &b }}

// exchange sends req over c with a fresh random ID and returns the first
// reply that answers it: from the upstream (the socket is connected), a
// response, with that ID and the same question. Anything else is read
// past until the timeout, as miekg's client reads past replies with
// another ID.
func exchange(c *os.File, req *mdns.Msg, timeout time.Duration) (*mdns.Msg, error) {
	q := *req // the client's ID stays on req, for the answer
	q.Id = newID()
	wire, err := q.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack query: %w", err)
	}
	bp := replyBufs.Get().(*[]byte)
	defer replyBufs.Put(bp)
	buf := *bp
	// A socket from the pool may have been sent datagrams while it
	// waited, at this port or at the one of its last query: none of them
	// can answer a query not yet sent. An error the socket holds (an ICMP
	// one of its last query) is reported once, ahead of the datagrams, so
	// the draining goes on past it until the queue is empty.
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Read(func(fd uintptr) bool {
			for errs := 0; errs < 8; {
				_, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
				if errors.Is(err, syscall.EAGAIN) {
					break
				}
				if err != nil {
					errs++
				}
			}
			return true
		})
	}
	if _, err := c.Write(wire); err != nil {
		return nil, fmt.Errorf("send query: %w", err)
	}
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, fmt.Errorf("set read deadline: %w", err)
	}
	for {
		n, err := c.Read(buf)
		if errors.Is(err, io.EOF) {
			continue // an empty datagram
		}
		if err != nil {
			return nil, fmt.Errorf("read reply: %w", err)
		}
		r := new(mdns.Msg)
		if r.Unpack(buf[:n]) != nil || !answers(r, &q) {
			continue
		}
		return r, nil
	}
}

// answers reports whether r is the reply to q. A reply without a question
// is accepted only as an error (some servers send FORMERR so): it carries
// no address to learn.
func answers(r, q *mdns.Msg) bool {
	if !r.Response || r.Id != q.Id || r.Opcode != q.Opcode {
		return false
	}
	if len(r.Question) == 0 {
		return r.Rcode != mdns.RcodeSuccess && len(r.Answer) == 0
	}
	a, b := r.Question[0], q.Question[0]
	return len(r.Question) == 1 && a.Qtype == b.Qtype && a.Qclass == b.Qclass && strings.EqualFold(a.Name, b.Name)
}
