//go:build linux

package loader

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
)

// This file holds what every aigate object shares through aigate.h,
// sandbox.h and events.h: the sandbox table, the ring buffer of struct
// event and the per-CPU counters. The BPF objects declare the same maps, so
// the code works on the maps of whichever object owns them (the LSM object,
// or the sock_addr object when it runs alone beside fanotify).

// Names of the shared maps in every object, for MapReplacements.
const (
	MapSandboxes     = "sandboxes"
	MapSandboxLevels = "sandbox_levels"
	MapEvents        = "events"
	MapCounters      = "counters"
)

// sandboxTable keeps the sandboxes hash and the level bitmask of sandbox.h
// consistent: a level bit is set while at least one sandbox lives at that
// level of the cgroup v2 hierarchy.
type sandboxTable struct {
	mu        sync.Mutex
	sandboxes *ebpf.Map
	levels    *ebpf.Map
	perLevel  map[int]int
	byCgroup  map[uint64]int // cgroup id -> level
}

func newSandboxTable(sandboxes, levels *ebpf.Map) *sandboxTable {
	return &sandboxTable{sandboxes: sandboxes, levels: levels, perLevel: map[int]int{}, byCgroup: map[uint64]int{}}
}

// add enters the cgroup into the table. The entry is written before the
// level bit, so a program never sees the bit without the entry it stands for.
func (t *sandboxTable) add(cgroupID uint64, level int, policyID uint32, flags uint32) error {
	if level < 1 || level >= maxLevel {
		return fmt.Errorf("add sandbox cgroup %d: level %d outside 1..%d (the root cgroup is never a sandbox)", cgroupID, level, maxLevel-1)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byCgroup[cgroupID]; ok {
		return fmt.Errorf("add sandbox cgroup %d: already a sandbox", cgroupID)
	}
	sb := kernelSandbox{PolicyId: policyID, Flags: flags}
	if err := t.sandboxes.Update(cgroupID, &sb, ebpf.UpdateNoExist); err != nil {
		return fmt.Errorf("add sandbox cgroup %d: %w", cgroupID, err)
	}
	t.perLevel[level]++
	if err := t.writeLevels(); err != nil {
		t.perLevel[level]--
		_ = t.sandboxes.Delete(cgroupID)
		return fmt.Errorf("add sandbox cgroup %d: %w", cgroupID, err)
	}
	t.byCgroup[cgroupID] = level
	return nil
}

// remove takes the cgroup out of the table; removing an absent one is a no-op.
func (t *sandboxTable) remove(cgroupID uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	level, ok := t.byCgroup[cgroupID]
	if !ok {
		return nil
	}
	delete(t.byCgroup, cgroupID)
	t.perLevel[level]--
	if t.perLevel[level] == 0 {
		delete(t.perLevel, level)
	}
	var errs []error
	if err := t.writeLevels(); err != nil {
		errs = append(errs, err)
	}
	if err := t.sandboxes.Delete(cgroupID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove sandbox cgroup %d: %w", cgroupID, err)
	}
	return nil
}

func (t *sandboxTable) writeLevels() error {
	var mask uint64
	for lvl := range t.perLevel {
		mask |= 1 << lvl
	}
	if err := t.levels.Update(uint32(0), mask, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write sandbox levels: %w", err)
	}
	return nil
}

// Values of aigate.h (enums, generated in kernel_bpfel.go).
const (
	maxLevel         = int(kernelAigateSizeAIGATE_MAX_LEVEL)
	sandboxAudit     = uint32(kernelAigateSandboxFlagAIGATE_SB_AUDIT)
	sandboxUserns    = uint32(kernelAigateSandboxFlagAIGATE_SB_USERNS)
	counterDropped   = uint32(kernelAigateCounterAIGATE_COUNTER_DROPPED)
	counterSlots     = uint32(kernelAigateCounterAIGATE_COUNTERS)
	eventChannelSize = 256
)

// The kernel's kinds and operations (enum aigate_kind, enum aigate_op) to
// the user-side names.
var (
	eventKinds = map[kernelAigateKind]events.Kind{
		kernelAigateKindAIGATE_KIND_FILE: events.KindFile,
		kernelAigateKindAIGATE_KIND_EXEC: events.KindExec,
		kernelAigateKindAIGATE_KIND_NET:  events.KindNet,
		kernelAigateKindAIGATE_KIND_PROC: events.KindProc,
	}
	eventOps = map[kernelAigateOp]events.Op{
		kernelAigateOpAIGATE_OP_READ:    events.OpRead,
		kernelAigateOpAIGATE_OP_WRITE:   events.OpWrite,
		kernelAigateOpAIGATE_OP_EXEC:    events.OpExec,
		kernelAigateOpAIGATE_OP_CONNECT: events.OpConnect,
		kernelAigateOpAIGATE_OP_SEND:    events.OpSend,
		kernelAigateOpAIGATE_OP_DNS:     events.OpDNS,
		kernelAigateOpAIGATE_OP_UNIX:    events.OpUnix,
		kernelAigateOpAIGATE_OP_PTRACE:  events.OpPtrace,
		kernelAigateOpAIGATE_OP_SIGNAL:  events.OpSignal,
		kernelAigateOpAIGATE_OP_USERNS:  events.OpUserns,
		kernelAigateOpAIGATE_OP_RECEIVE: events.OpReceive,
	}
)

// opKind is the kind a counter slot's operation belongs to.
func opKind(op events.Op) events.Kind {
	switch op {
	case events.OpRead, events.OpWrite:
		return events.KindFile
	case events.OpExec:
		return events.KindExec
	case events.OpPtrace, events.OpSignal, events.OpUserns:
		return events.KindProc
	}
	return events.KindNet
}

// readCounters sums the per-CPU counters map into exact Stats.
func readCounters(m *ebpf.Map) (enforce.Stats, error) {
	var st enforce.Stats
	for slot := uint32(0); slot < counterSlots; slot++ {
		var perCPU []uint64
		if err := m.Lookup(slot, &perCPU); err != nil {
			return enforce.Stats{}, fmt.Errorf("read counter %d: %w", slot, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		if slot == counterDropped {
			st.EventsDropped = sum
			continue
		}
		op, ok := eventOps[kernelAigateOp(slot/2)]
		if !ok || sum == 0 {
			continue
		}
		st.Violations = append(st.Violations, enforce.Counter{
			Kind: opKind(op), Op: op, Audit: slot%2 == 1, Value: sum,
		})
	}
	return st, nil
}

// bootTime is the wall-clock time at which CLOCK_BOOTTIME was zero, so that
// an event's bpf_ktime_get_boot_ns() converts to a time.Time.
func bootTime() (time.Time, error) {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}, fmt.Errorf("read boot clock: %w", err)
	}
	return now.Add(-time.Duration(ts.Nano())), nil
}

// decodeEvent turns one ring-buffer record (struct event) into an Event.
func decodeEvent(raw []byte, boot time.Time) (events.Event, error) {
	ev, _, err := decodeRecord(raw, boot)
	return ev, err
}

// Where struct event's fields lie in a record, taken from the generated
// type so that they move with the C struct. The reader decodes every event
// by hand: encoding/binary's reflection spent about 5 us on each (3/4 of
// the reader's time at 200k events/s, BenchmarkEventRate).
const (
	eventSize   = int(unsafe.Sizeof(kernelEvent{}))
	offTsNs     = unsafe.Offsetof(kernelEvent{}.TsNs)
	offCgroupID = unsafe.Offsetof(kernelEvent{}.CgroupId)
	offPid      = unsafe.Offsetof(kernelEvent{}.Pid)
	offTgid     = unsafe.Offsetof(kernelEvent{}.Tgid)
	offUID      = unsafe.Offsetof(kernelEvent{}.Uid)
	offPolicyID = unsafe.Offsetof(kernelEvent{}.PolicyId)
	offRuleID   = unsafe.Offsetof(kernelEvent{}.RuleId)
	offKind     = unsafe.Offsetof(kernelEvent{}.Kind)
	offOp       = unsafe.Offsetof(kernelEvent{}.Op)
	offAudit    = unsafe.Offsetof(kernelEvent{}.Audit)
	offFamily   = unsafe.Offsetof(kernelEvent{}.Family)
	offPort     = unsafe.Offsetof(kernelEvent{}.Port)
	offPathLen  = unsafe.Offsetof(kernelEvent{}.PathLen)
	offAddr     = unsafe.Offsetof(kernelEvent{}.Addr)
	offComm     = unsafe.Offsetof(kernelEvent{}.Comm)
	offPath     = unsafe.Offsetof(kernelEvent{}.Path)
	offMntNS    = unsafe.Offsetof(kernelEvent{}.MntNs)
	commLen     = uintptr(len(kernelEvent{}.Comm))
	pathMax     = len(kernelEvent{}.Path)
)

// decodeRecord is decodeEvent that also returns the event's policy id.
func decodeRecord(raw []byte, boot time.Time) (events.Event, uint32, error) {
	if len(raw) < eventSize {
		return events.Event{}, 0, fmt.Errorf("decode event: %d bytes, want %d", len(raw), eventSize)
	}
	ne := binary.NativeEndian
	ev := events.Event{
		Time:     boot.Add(time.Duration(ne.Uint64(raw[offTsNs:]))),
		CgroupID: ne.Uint64(raw[offCgroupID:]),
		PID:      ne.Uint32(raw[offPid:]),
		TGID:     ne.Uint32(raw[offTgid:]),
		UID:      ne.Uint32(raw[offUID:]),
		Comm:     cString(raw[offComm : offComm+commLen]),
		Kind:     eventKinds[kernelAigateKind(raw[offKind])],
		Op:       eventOps[kernelAigateOp(raw[offOp])],
		Rule:     ne.Uint32(raw[offRuleID:]),
		Audit:    raw[offAudit] != 0,
	}
	port := ne.Uint16(raw[offPort:])
	switch raw[offFamily] {
	case unix.AF_INET:
		ev.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[offAddr:offAddr+4])), port)
	case unix.AF_INET6:
		ev.Addr = netip.AddrPortFrom(netip.AddrFrom16([16]byte(raw[offAddr:offAddr+16])), port)
	case byte(kernelAigateFamilyAIGATE_FAMILY_REFUSED):
		a := raw[offAddr:]
		caps := kernelAigateRefusedCap(ne.Uint16(a[unsafe.Offsetof(kernelRefusedCall{}.Caps):]))
		ev.Refused = &events.Refused{
			Nr:            uint32(ne.Uint16(a[unsafe.Offsetof(kernelRefusedCall{}.Nr):])),
			DACOverride:   caps&kernelAigateRefusedCapAIGATE_REFUSED_CAP_DAC_OVERRIDE != 0,
			DACReadSearch: caps&kernelAigateRefusedCapAIGATE_REFUSED_CAP_DAC_READ_SEARCH != 0,
			Kill:          caps&kernelAigateRefusedCapAIGATE_REFUSED_CAP_KILL != 0,
			SysPtrace:     caps&kernelAigateRefusedCapAIGATE_REFUSED_CAP_SYS_PTRACE != 0,
			Target:        int32(ne.Uint32(a[unsafe.Offsetof(kernelRefusedCall{}.Target):])),
			Flags:         ne.Uint32(a[unsafe.Offsetof(kernelRefusedCall{}.Flags):]),
			GID:           ne.Uint32(a[unsafe.Offsetof(kernelRefusedCall{}.Gid):]),
			MntNS:         ne.Uint32(raw[offMntNS:]),
		}
	}
	if n := int(ne.Uint16(raw[offPathLen:])); n > 0 {
		ev.Path = cString(raw[offPath : offPath+uintptr(min(n, pathMax))])
	}
	return ev, ne.Uint32(raw[offPolicyID:]), nil
}

// cString is b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// eventStream reads an events ring buffer until closed and delivers the
// decoded events on a channel. When nobody receives, the ring buffer fills
// and the kernel counts the drops; the counters stay exact.
type eventStream struct {
	rd      *ringbuf.Reader
	out     chan events.Event
	done    chan struct{}
	wg      sync.WaitGroup
	boot    time.Time
	backend string

	ringMu  sync.Mutex // backlog against close
	closing bool

	sent    atomic.Uint64 // events handed to out, for flush
	flushMu sync.Mutex    // one flush at a time: each is answered by one ErrFlushed
	flushed chan struct{} // run's answer to a flush
}

func newEventStream(m *ebpf.Map, backend string) (*eventStream, error) {
	boot, err := bootTime()
	if err != nil {
		return nil, err
	}
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, fmt.Errorf("open event ring buffer: %w", err)
	}
	s := &eventStream{rd: rd, out: make(chan events.Event, eventChannelSize), done: make(chan struct{}), boot: boot, backend: backend,
		flushed: make(chan struct{}, 1)}
	s.wg.Add(1)
	go s.run()
	return s, nil
}

// foldDepth is how many distinct events the reader holds back while it is
// behind, each a denial that later identical ones fold into: a flood from
// a few threads interleaves their denials (one thread id each, and a Go
// program's goroutines move between more threads than it has).
const foldDepth = 16

// foldPoll is how often the reader looks at the ring buffer again while
// the events it holds wait for room in its channel.
const foldPoll = time.Millisecond

// foldMax is how many denials an event stands for before the reader hands
// it on though it is behind: a flood's live lines keep coming.
const foldMax = 1024

// run reads the ring buffer. While the reader is behind (out is full, or
// more records wait in the ring buffer), a record that is the same denial as
// one of the events waiting to be handed on is folded into it
// (events.Event.Count) instead of costing a channel send each: a flood of
// identical denials costs the consumers one event per foldMax denials,
// and the kernel drops (counted) fewer of them. Events are handed on in
// the order of their first denial; none is held back while the reader
// keeps up, or once the ring buffer is empty.
func (s *eventStream) run() {
	defer s.wg.Done()
	defer close(s.out)
	var rec ringbuf.Record
	var pend [foldDepth]events.Event
	n := 0           // events in pend
	polling := false // a read deadline is set
	// hand hands pend[0] on, waiting for room when wait; false when it
	// did not (no room, or closed).
	hand := func(wait bool) bool {
		select {
		case s.out <- pend[0]:
		default:
			if !wait {
				return false
			}
			select {
			case s.out <- pend[0]:
			case <-s.done:
				return false
			}
		}
		s.sent.Add(1)
		copy(pend[:], pend[1:n])
		n--
		pend[n] = events.Event{}
		return true
	}
	for {
		// Behind: records wait in the ring buffer. Then a denial is handed
		// on once foldMax others folded into it (a flood's events keep
		// coming, ~1 ms apart), otherwise at once.
		behind, open := s.backlog()
		if !open {
			return
		}
		for n > 0 && (!behind || pend[0].N() >= foldMax) {
			if !hand(false) {
				break
			}
		}
		// Events wait for room in out: the ring buffer is read at least
		// every foldPoll meanwhile, so that what comes is folded rather
		// than left to overflow it.
		if poll := n > 0; poll != polling {
			var until time.Time
			if poll {
				until = time.Now().Add(foldPoll)
			}
			s.rd.SetDeadline(until)
			polling = poll
		}
		if err := s.rd.ReadInto(&rec); err != nil {
			switch {
			case errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed):
				return
			case errors.Is(err, ringbuf.ErrFlushed):
				// Everything read before the flush is handed on first.
				for n > 0 {
					if !hand(true) {
						return
					}
				}
				select {
				case s.flushed <- struct{}{}:
				default:
				}
			case errors.Is(err, os.ErrDeadlineExceeded):
				polling = false // the deadline passed: set a new one
			}
			continue
		}
		ev, err := decodeEvent(rec.RawSample, s.boot)
		if err != nil {
			continue // a layout mismatch is caught by the tests, not at run time
		}
		ev.Backend = s.backend
		if fold(pend[:n], &ev) {
			continue
		}
		if n == foldDepth && !hand(true) {
			return
		}
		pend[n] = ev
		n++
	}
}

// fold adds ev to the event in pend that is the same denial, if any.
func fold(pend []events.Event, ev *events.Event) bool {
	for i := range pend {
		if pend[i].SameDenial(ev) {
			pend[i].Count = pend[i].N() + ev.N()
			return true
		}
	}
	return false
}

// flush returns once every record in the ring buffer when it was called
// has been handed to out, with how many events out has had in all. The
// reader is woken at once, whether or not the producer asked for a wakeup
// (BPF_RB_NO_WAKEUP), so this costs one pass over the ring, not a wait.
func (s *eventStream) flush(ctx context.Context) (uint64, error) {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	select {
	case <-s.flushed: // the answer to an earlier flush that gave up
	default:
	}
	if err := s.rd.Flush(); err != nil {
		return 0, fmt.Errorf("flush event ring buffer: %w", err)
	}
	select {
	case <-s.flushed:
		return s.sent.Load(), nil
	case <-s.done:
		return 0, errors.New("flush event ring buffer: closed")
	case <-ctx.Done():
		return 0, fmt.Errorf("flush event ring buffer: %w", ctx.Err())
	}
}

// Events is closed after close.
func (s *eventStream) Events() <-chan events.Event { return s.out }

// backlog reports whether records wait in the ring buffer, and false for
// open once close began. ringbuf.Reader.AvailableBytes takes no lock and
// dereferences the ring that Close unmaps: the two must not overlap.
func (s *eventStream) backlog() (behind, open bool) {
	s.ringMu.Lock()
	defer s.ringMu.Unlock()
	if s.closing {
		return false, false
	}
	return s.rd.AvailableBytes() > 0, true
}

func (s *eventStream) close() error {
	close(s.done)
	s.ringMu.Lock()
	s.closing = true
	s.ringMu.Unlock()
	err := s.rd.Close()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("close event ring buffer: %w", err)
	}
	return nil
}
