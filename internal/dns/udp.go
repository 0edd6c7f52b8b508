package dns

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync/atomic"

	mdns "github.com/miekg/dns"
)

// The proxy serves UDP itself rather than through miekg's Server, which
// starts a goroutine for every datagram: its stack grew (copied) several
// times on the way through a forwarded query, a tenth of the CPU a
// forwarded query cost (issue #15). Here long-lived workers read the
// listener in turn, each answering the query it read: while one waits for
// an upstream, another reads the next query. A listener keeps one worker
// until its first query, then two; a burst of slow queries starts more,
// up to udpMaxWorkers, and the extra ones end when the burst does.

// udpMaxWorkers bounds the queries one listener handles at once; beyond
// it queries wait in the socket's receive queue.
const udpMaxWorkers = 64

// udpQueryMax is the largest query read, as miekg's server reads (its
// default UDPSize): a longer one is cut and answered FORMERR.
const udpQueryMax = mdns.MinMsgSize

type udpListener struct {
	p     *Proxy
	pc    *net.UDPConn
	local netip.AddrPort

	idle    atomic.Int32 // workers reading, or about to
	workers atomic.Int32
}

// serveUDP starts serving pc.
func (p *Proxy) serveUDP(pc *net.UDPConn) {
	l := &udpListener{p: p, pc: pc, local: addrPort(pc.LocalAddr())}
	p.udpListeners = append(p.udpListeners, l)
	l.spawn()
}

func (l *udpListener) spawn() {
	l.workers.Add(1)
	l.idle.Add(1)
	l.p.wg.Add(1)
	go l.work()
}

// work reads and answers queries until the listener is closed, or until
// it is one of more idle workers than needed.
func (l *udpListener) work() {
	defer l.p.wg.Done()
	defer l.workers.Add(-1)
	buf := make([]byte, udpQueryMax)
	var out []byte
	for {
		n, from, err := l.pc.ReadFromUDPAddrPort(buf)
		left := l.idle.Add(-1)
		if err != nil {
			// Closed by Proxy.Close; an unconnected socket gets no ICMP
			// errors, so any other error would come again (miekg's
			// server stops too).
			return
		}
		if left == 0 && l.workers.Load() < udpMaxWorkers {
			l.spawn() // someone reads while this query is answered
		}
		out = l.answer(buf[:n], from, out[:0])
		if l.idle.Add(1) > 2 {
			l.idle.Add(-1)
			return
		}
	}
}

// answer answers one datagram as miekg's server does (malformed ones
// FORMERR, responses ignored) and returns the buffer the answer was
// packed in, for the next one.
func (l *udpListener) answer(b []byte, from netip.AddrPort, out []byte) []byte {
	req, rej := parseQuery(b)
	if req == nil && rej == nil {
		return out
	}
	resp := rej
	var used spent
	if req != nil {
		resp = l.p.respond(req, peer{client: from, proxy: l.local}, &used)
	}
	if wire, err := resp.PackBuffer(out[:cap(out)]); err == nil {
		_, _ = l.pc.WriteToUDPAddrPort(wire, from)
		out = wire
	}
	used.release()
	return out
}

// parseQuery unpacks a query, or returns the FORMERR or NOTIMP answer
// miekg's server would send, or neither for a datagram that gets no answer
// (too short, or itself a response: answering could be used to amplify).
func parseQuery(b []byte) (req, reject *mdns.Msg) {
	if len(b) < 12 {
		return nil, nil
	}
	be := binary.BigEndian
	h := mdns.Header{Id: be.Uint16(b[0:]), Bits: be.Uint16(b[2:]), Qdcount: be.Uint16(b[4:]),
		Ancount: be.Uint16(b[6:]), Nscount: be.Uint16(b[8:]), Arcount: be.Uint16(b[10:])}
	action := mdns.DefaultMsgAcceptFunc(h)
	switch action {
	case mdns.MsgIgnore:
		return nil, nil
	case mdns.MsgAccept:
		req = new(mdns.Msg)
		if req.Unpack(b) == nil {
			return req, nil
		}
	}
	reject = new(mdns.Msg)
	reject.Id = h.Id
	reject.Response = true
	reject.RecursionDesired = h.Bits&(1<<8) != 0
	reject.Rcode = mdns.RcodeFormatError
	if action == mdns.MsgRejectNotImplemented {
		reject.Opcode = int(h.Bits>>11) & 0xF
		reject.Rcode = mdns.RcodeNotImplemented
	}
	return nil, reject
}
