//go:build linux

package fanotify

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/enforce"
)

// The decision loop. One reader drains the group and answers, inline, every
// event whose opener is outside all sandboxes: that costs one ioctl on a
// pidfd of the opening thread (place.go; a read of /proc/TID/cgroup before
// Linux 6.13), so aigate itself and the rest of the machine never queue
// behind a sandbox. It decides a sandboxed event itself too when that
// takes only bounded work (decideInline: a readlink, an fstat, the policy
// match, one read of /proc/TID/syscall, a stat of /proc/TID/exe compared
// with the loaders already known): handing it to a worker cost more
// than the decision (bench/results.md, issue #15). Sandboxed events that need more go to a bounded pool of workers; when
// the pool is saturated the event is denied at once rather than queued
// behind a hostile process. A reaper denies any sandboxed event that has
// waited longer than DecisionTimeout, whatever its worker is doing.

// pending is one sandboxed event waiting for its verdict. The mutex makes
// the answer happen exactly once, and keeps the fd open (its number
// unreused) until the worker has closed it.
type pending struct {
	event
	sb       *sandbox
	deadline time.Time
	facts    facts // read by the reader, kept for the worker

	mu       sync.Mutex
	answered bool
	closed   bool
}

// answer writes the verdict unless someone already did. It reports whether
// this call answered.
func (p *pending) answer(group int, allow bool) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.answered || p.closed {
		return false, nil
	}
	p.answered = true
	return true, respond(group, p.fd, allow)
}

func (p *pending) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		unix.Close(p.fd)
	}
}

type pendingSet struct {
	mu sync.Mutex
	m  map[*pending]struct{}
}

func (s *pendingSet) add(p *pending) {
	s.mu.Lock()
	s.m[p] = struct{}{}
	s.mu.Unlock()
}

func (s *pendingSet) del(p *pending) {
	s.mu.Lock()
	delete(s.m, p)
	s.mu.Unlock()
}

// snapshot returns the events pending now.
func (s *pendingSet) snapshot() []*pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*pending, 0, len(s.m))
	for p := range s.m {
		out = append(out, p)
	}
	return out
}

// settled reports whether none of ps is pending any more.
func (s *pendingSet) settled(ps []*pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		if _, ok := s.m[p]; ok {
			return false
		}
	}
	return true
}

// expired returns the events past their deadline.
func (s *pendingSet) expired(now time.Time) []*pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*pending
	for p := range s.m {
		if now.After(p.deadline) {
			out = append(out, p)
		}
	}
	return out
}

// denyAll answers everything still pending, on Close.
func (s *pendingSet) denyAll(b *Backend) {
	for _, p := range s.expired(time.Now().Add(24 * time.Hour)) {
		_, _ = p.answer(p.group, false)
		p.close()
		s.del(p)
	}
}

func (b *Backend) start() {
	b.wg.Add(2 + b.opts.Workers)
	if b.watch != nil {
		b.wg.Add(1)
		go b.watchLoop()
	}
	go b.readLoop()
	go b.reapLoop()
	for range b.opts.Workers {
		go b.workLoop()
	}
}

func (b *Backend) readLoop() {
	defer b.wg.Done()
	defer close(b.work)
	buf := make([]byte, 64*metadataSize)
	evs := make([]event, 0, 64)
	// The backend's group, the wake pipe, and the group of the filesystem
	// exec marks (execfs.go): one reader for both groups, so that the
	// reader's stall bound and the guard's heartbeat attest both.
	fds := []unix.PollFd{{Fd: int32(b.group), Events: unix.POLLIN}, {Fd: int32(b.wake[0]), Events: unix.POLLIN}, {Fd: int32(b.execGroup), Events: unix.POLLIN}}
	// Until it returns, the time of its batch tells the reaper whether it
	// still answers; once it has returned, no one answers: the stall
	// counts from then.
	defer func() { b.batchSince.Store(int64(time.Since(b.epoch)) + 1) }()
	for {
		b.batchSince.Store(0)
		_, err := unix.Poll(fds, -1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			b.log.Error("poll fanotify group", zap.Error(err))
			return
		}
		select {
		case <-b.closing:
			return
		default:
		}
		for _, i := range [2]int{0, 2} {
			if fds[i].Revents == 0 {
				continue
			}
			if !b.drainGroup(int(fds[i].Fd), buf, &evs) {
				return
			}
		}
	}
}

// drainGroup reads and dispatches the events queued on group until it is
// empty; false when the group cannot be read any more.
func (b *Backend) drainGroup(group int, buf []byte, evs *[]event) bool {
	for {
		// Per read, not per wakeup: under a steady stream of events
		// the reader may not go back to poll for long, and it is
		// answering all the while.
		b.batchSince.Store(int64(time.Since(b.epoch)) + 1)
		if b.opts.beforeBatch != nil {
			b.opts.beforeBatch()
		}
		n, err := unix.Read(group, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return true
		}
		if err != nil {
			b.log.Error("read fanotify group", zap.Error(err))
			return false
		}
		*evs, err = parseEvents(buf[:n], (*evs)[:0], group)
		queued := false
		for _, ev := range *evs {
			queued = b.dispatch(ev) || queued
		}
		if queued {
			// Hand this thread to the worker now. A goroutine woken by
			// a channel send waits in this P's next slot, and the
			// reader is about to block in read or poll: until the
			// runtime's monitor takes the P back (tens of
			// microseconds to milliseconds) no one ran the worker and
			// the opener waited (BenchmarkOpen/inside/exec-binary:
			// 72 us, 14 us with this). The reader, queued, is picked
			// up by another thread.
			runtime.Gosched()
		}
		if err != nil {
			// The events we could parse were answered; the rest stay
			// pending and are denied when the reaper or Close gets them
			// cannot happen: we cannot name them. Fail loudly.
			b.log.Error("parse fanotify events", zap.Error(err))
		}
		if n+metadataSize <= len(buf) {
			// Room was left: the queue was empty when the read
			// ended. Back to poll, without the read that would
			// only say EAGAIN (a syscall per wakeup; at one opener
			// at a time, one per event).
			return true
		}
	}
}

// dispatch answers an unsandboxed opener at once, decides what it can for
// a sandboxed one and queues the rest. It reports whether it queued one.
func (b *Backend) dispatch(ev event) bool {
	if ev.fd < 0 {
		// FAN_NOFD: a queue overflow notice. With FAN_UNLIMITED_QUEUE it
		// cannot happen for permission events; count it if it ever does.
		b.stats.overflow()
		b.log.Error("fanotify queue overflow reported", zap.Uint64("mask", ev.mask))
		return false
	}
	if b.opts.onExecEvent != nil && ev.group == b.execGroup {
		b.opts.onExecEvent(b.fdPath(ev.fd))
	}
	sb := b.sandboxOf(ev.tid)
	if sb == nil {
		if err := respond(ev.group, ev.fd, true); err != nil {
			b.log.Error("allow unsandboxed open", zap.Error(err))
		}
		switch {
		case ev.group == b.execGroup && b.fsexec.learning.Load():
			// After the answer: the exec waits for none of this.
			b.fsexec.learn(b.fdPath(ev.fd))
		case ev.group == b.group && b.hasSandboxes():
			b.ignoreOutside(ev)
		}
		unix.Close(ev.fd)
		return false
	}
	p := &pending{event: ev, sb: sb, deadline: time.Now().Add(b.opts.DecisionTimeout)}
	b.pending.add(p)
	if !b.opts.allInWorkers {
		if v, ok := b.decideInline(p); ok {
			b.finish(p, v)
			return false
		}
	}
	select {
	case b.work <- p:
		return true
	default:
		b.stats.overload()
		b.finish(p, b.verdictOverload(p))
		return false
	}
}

func (b *Backend) workLoop() {
	defer b.wg.Done()
	for p := range b.work {
		if b.opts.beforeDecide != nil {
			b.opts.beforeDecide(p)
		}
		b.finish(p, b.decide(p))
	}
}

// finish answers with v (unless the reaper was first), reports and releases.
func (b *Backend) finish(p *pending, v verdict) {
	// The event is built before answering: once answered, the opener may
	// exit and take its /proc entry (comm, tgid, uid) with it.
	ev, ok := b.describe(p, v)
	won, err := p.answer(p.group, v.allow())
	if err != nil {
		b.log.Error("answer fanotify event", zap.Error(err))
	}
	if p.group == b.execGroup && p.facts.path != "" {
		b.fsexec.learn(p.facts.path)
	}
	if won && ok {
		b.stats.violation(ev.Kind, ev.Op, ev.Audit)
		b.emit(ev)
	}
	b.stats.decided()
	if won && v.unrelated && !v.deny {
		// After the answer, so the opener does not wait for it; before
		// the close, which gives the fd's number back.
		b.ignoreNew(p)
	}
	p.close()
	b.pending.del(p)
}

func (b *Backend) reapLoop() {
	defer b.wg.Done()
	tick := time.NewTicker(min(b.opts.DecisionTimeout/4, guardHeartbeat))
	defer tick.Stop()
	stuck := false
	for {
		select {
		case <-b.closing:
			return
		case now := <-tick.C:
			// The heartbeat comes from here, and attests the reader too: a
			// reader that has held one batch for readerStall answers no
			// one, outsiders included. Without the heartbeat the guard
			// freezes the sandboxes, and past its release bound kills them
			// and aigate, which releases the group (guard.go).
			if held := b.readerHeld(); held > b.opts.readerStall {
				if !stuck {
					stuck = true
					b.log.Error("fanotify reader stuck: heartbeat withheld; the guard freezes the sandboxes, then kills them and aigate unless the reader resumes",
						zap.Duration("batch_held", held), zap.Duration("reader_stall", b.opts.readerStall),
						zap.Duration("guard_stall", b.opts.guardStall), zap.Duration("guard_release", b.opts.guardRelease))
				}
			} else {
				if stuck {
					stuck = false
					b.log.Warn("fanotify reader resumed: heartbeat back", zap.Duration("batch_held", held))
				}
				// Once Close ended the guard no heartbeat is due: the
				// loop runs on only while the guard kills what is left.
				if err := b.guard.beat(); err != nil && !errors.Is(err, errGuardClosed) {
					b.log.Error("fanotify guard heartbeat", zap.Error(err))
				}
			}
			for _, p := range b.pending.expired(now) {
				won, err := p.answer(p.group, false)
				if err != nil {
					b.log.Error("deny timed-out fanotify event", zap.Error(err))
				}
				if won {
					b.stats.timeout()
					b.log.Warn("sandboxed open denied: no verdict in time",
						zap.String("sandbox", p.sb.Name), zap.String("tid", strconv.Itoa(p.tid)),
						zap.Duration("timeout", b.opts.DecisionTimeout))
				}
			}
		}
	}
}

// readerHeld is how long the reader has held its current batch, 0 while
// it polls.
func (b *Backend) readerHeld() time.Duration {
	since := b.batchSince.Load()
	if since == 0 {
		return 0
	}
	return time.Since(b.epoch) - time.Duration(since-1)
}

// readerStall is the default of Options.readerStall: far above the time
// one batch of at most 64 events takes (a read of /proc per event).
const readerStall = 5 * time.Second

// Flush implements enforce.Flusher. An event is reported after its answer
// (finish) and stays pending until then: once the events pending at the
// call are gone, every denial an opener has seen has been emitted. An
// event the kernel still queues has not been answered, so its opener is
// still waiting (or was killed) and has seen nothing.
func (b *Backend) Flush(ctx context.Context) (uint64, error) {
	ps := b.pending.snapshot()
	if len(ps) > 0 {
		var settled uint64 // 1 once ps are gone
		load := func() uint64 {
			if settled == 0 && b.pending.settled(ps) {
				settled = 1
			}
			return settled
		}
		if err := enforce.AwaitCount(ctx, load, 1); err != nil {
			return 0, fmt.Errorf("flush fanotify events: %w", err)
		}
	}
	return b.sent.Load(), nil
}
