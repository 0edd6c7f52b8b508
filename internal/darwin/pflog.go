package darwin

import (
	"bufio"
	"context"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// PFLogCommand reads pflog0. -tttt prints absolute timestamps (-ttt would
// print deltas, useless for an event time), -l line-buffers for a pipe, -e
// prints the pflog header with the rule and action, -n keeps tcpdump from
// doing DNS lookups (which would themselves cross pf).
func PFLogCommand() Command {
	return cmd("tcpdump", "-l", "-n", "-e", "-tttt", "-i", PFLogIf)
}

// PFLogEntry is one logged packet.
type PFLogEntry struct {
	Time    time.Time
	Ruleset string // "com.aigate" for ours
	Action  string // "block" or "pass" (audit mode)
	Dir     string
	If      string
	Proto   string // "tcp" or "udp"
	Src     netip.AddrPort
	Dst     netip.AddrPort
}

// ParsePFLogLine parses one line of `tcpdump -n -e -tttt -i pflog0`:
//
//	2025-03-01 10:15:42.123456 rule 0.com.aigate.4/0(match): block out on en0: 192.168.1.23.50432 > 140.82.113.4.443: Flags [S], ...
//
// The rule is "<main rule>.<anchor>.<rule in anchor>/<subrule>". Lines it
// does not understand (continuation lines, other anchors' rules) return
// false. now is used when the line has no absolute timestamp.
func ParsePFLogLine(line string, now time.Time) (PFLogEntry, bool) {
	var e PFLogEntry
	i := strings.Index(line, "rule ")
	if i < 0 {
		return e, false
	}
	e.Time = now
	if ts := strings.TrimSpace(line[:i]); ts != "" {
		if t, err := time.ParseInLocation("2006-01-02 15:04:05.999999", ts, time.Local); err == nil {
			e.Time = t
		}
	}
	rest := line[i+len("rule "):]
	spec, rest, ok := strings.Cut(rest, "(")
	if !ok {
		return e, false
	}
	if n := strings.LastIndex(spec, "/"); n >= 0 {
		spec = spec[:n]
	}
	// Strip the leading main-ruleset number and the trailing anchor rule
	// number; what remains is the anchor path (which may contain dots).
	if a, b := strings.Index(spec, "."), strings.LastIndex(spec, "."); a >= 0 && b > a {
		e.Ruleset = spec[a+1 : b]
	}
	_, rest, ok = strings.Cut(rest, "): ")
	if !ok {
		return e, false
	}
	f := strings.SplitN(rest, " ", 5) // action dir "on" if: payload
	if len(f) < 5 || f[2] != "on" {
		return e, false
	}
	e.Action, e.Dir, e.If = f[0], f[1], strings.TrimSuffix(f[3], ":")
	payload := strings.TrimPrefix(strings.TrimPrefix(f[4], "IP6 "), "IP ")
	src, rest, ok := strings.Cut(payload, " > ")
	if !ok {
		return e, false
	}
	dst, rest, ok := strings.Cut(rest, ": ")
	if !ok {
		return e, false
	}
	if e.Src, ok = parseDotPort(src); !ok {
		return e, false
	}
	if e.Dst, ok = parseDotPort(dst); !ok {
		return e, false
	}
	e.Proto = "udp"
	if strings.HasPrefix(rest, "Flags [") {
		e.Proto = "tcp"
	}
	return e, true
}

// parseDotPort parses tcpdump's "addr.port" for IPv4 and IPv6.
func parseDotPort(s string) (netip.AddrPort, bool) {
	i := strings.LastIndex(s, ".")
	if i < 0 {
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddr(s[:i])
	if err != nil {
		return netip.AddrPort{}, false
	}
	p, err := strconv.ParseUint(s[i+1:], 10, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, uint16(p)), true
}

// Event turns an entry from the aigate anchor into the user-side event. pf
// matches by user, not process, so PID and Comm stay unknown. The rule is the
// deny entry that covers the destination, else the policy's "net: deny" rule,
// by its id only, as every backend reports it: agent.Name writes its text.
func (e PFLogEntry) Event(c *policy.Compiled, u SandboxUser) events.Event {
	ev := events.Event{
		Time:    e.Time,
		UID:     u.UID,
		Kind:    events.KindNet,
		Op:      events.OpConnect,
		Addr:    e.Dst,
		Audit:   e.Action == "pass",
		Backend: "pf",
	}
	if e.Proto == "udp" {
		ev.Op = events.OpSend
	}
	if c == nil {
		return ev
	}
	id := c.Net.DenyRule
	for _, d := range c.Net.Deny {
		if d.Prefix.Contains(e.Dst.Addr().Unmap()) && (d.Port == 0 || d.Port == e.Dst.Port()) {
			id = d.Rule
			break
		}
	}
	ev.Rule = uint32(id)
	return ev
}

// ReadPFLog parses tcpdump output from r and sends an event for each packet
// logged by the aigate anchor until r ends or ctx is done.
func ReadPFLog(ctx context.Context, r io.Reader, c *policy.Compiled, u SandboxUser, out chan<- events.Event) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		e, ok := ParsePFLogLine(sc.Text(), time.Now())
		if !ok || e.Ruleset != AnchorName {
			continue
		}
		select {
		case out <- e.Event(c, u):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return sc.Err()
}
