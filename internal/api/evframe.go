//go:build linux

package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
)

// An event batch is a frame like every message (the 4-byte length, then
// the body) whose body starts with evBatchTag, a byte no JSON message
// starts with; then the events, each written against the one before it in
// the batch: the strings that changed, the time as a difference. A stream
// of the same process's denials then costs a few bytes an event and no
// JSON encoding or decoding; the agent sends them only to clients of
// protocol version 2 (BinaryEvents), which read both kinds of frame.
const evBatchTag = 0x01

// BinaryEvents reports whether a stream of version v carries its events
// in binary batches.
func BinaryEvents(v int) bool { return v >= 2 }

// The strings of an event, in the order of their bits in a batch.
// MovedTo, the last, is set only for an events.OpPlanted: a client that
// knows only the first eight reads every other event.
func evStrings(e *events.Event) [9]*string {
	return [9]*string{&e.Sandbox, &e.Comm, (*string)(&e.Kind), (*string)(&e.Op), &e.Path, &e.Domain, &e.RuleText, &e.Backend, &e.MovedTo}
}

const (
	evAudit = 1 << iota
	evRestored
	evRescan
	evNoTime
	evAddr
)

// appendEvents appends the body of a batch of evs to b.
func appendEvents(b []byte, evs []events.Event) []byte {
	b = append(b, evBatchTag)
	var prev events.Event
	var prevNano int64
	for i := range evs {
		e := &evs[i]
		cur, old := evStrings(e), evStrings(&prev)
		var changed uint64
		for k := range cur {
			if *cur[k] != *old[k] {
				changed |= 1 << k
			}
		}
		b = binary.AppendUvarint(b, changed)
		for k := range cur {
			if changed&(1<<k) != 0 {
				b = binary.AppendUvarint(b, uint64(len(*cur[k])))
				b = append(b, *cur[k]...)
			}
		}
		b = append(b, flag(e.Audit, evAudit)|flag(e.Restored, evRestored)|flag(e.Rescan, evRescan)|
			flag(e.Time.IsZero(), evNoTime)|flag(e.Addr.IsValid(), evAddr))
		if !e.Time.IsZero() {
			nano := e.Time.UnixNano()
			b = binary.AppendVarint(b, nano-prevNano)
			prevNano = nano
		}
		for _, v := range []uint64{e.CgroupID, uint64(e.PID), uint64(e.TGID), uint64(e.UID), uint64(e.Rule), e.Count} {
			b = binary.AppendUvarint(b, v)
		}
		if e.Addr.IsValid() {
			a, _ := e.Addr.MarshalBinary() // cannot fail
			b = append(b, byte(len(a)))
			b = append(b, a...)
		}
		prev = *e
	}
	return b
}

func flag(set bool, bit byte) byte {
	if set {
		return bit
	}
	return 0
}

// errBatch is a batch that does not decode.
var errBatch = errors.New("malformed event batch")

// batchReader reads a batch's body; the first error sticks.
type batchReader struct {
	b   []byte
	err error
}

func (r *batchReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errBatch
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *batchReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errBatch
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *batchReader) bytes(n uint64) []byte {
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errBatch
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *batchReader) byte1() byte {
	if v := r.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *batchReader) u32() uint32 {
	v := r.uvarint()
	if v > 1<<32-1 {
		r.err = errBatch
	}
	return uint32(v)
}

// decodeEvents appends the events of a batch body (evBatchTag first) to
// out.
func decodeEvents(body []byte, out []events.Event) ([]events.Event, error) {
	if len(body) == 0 || body[0] != evBatchTag {
		return out, errBatch
	}
	r := &batchReader{b: body[1:]}
	var prev events.Event
	var prevNano int64
	for len(r.b) > 0 && r.err == nil {
		e := prev // the strings that did not change
		e.Time, e.Count = time.Time{}, 0
		changed := r.uvarint()
		if changed >= 1<<9 {
			return out, errBatch
		}
		for k, s := range evStrings(&e) {
			if changed&(1<<k) != 0 {
				*s = string(r.bytes(r.uvarint()))
			}
		}
		flags := r.byte1()
		e.Audit, e.Restored, e.Rescan = flags&evAudit != 0, flags&evRestored != 0, flags&evRescan != 0
		if flags&evNoTime == 0 {
			prevNano += r.varint()
			e.Time = time.Unix(0, prevNano)
		}
		e.CgroupID = r.uvarint()
		e.PID, e.TGID, e.UID, e.Rule = r.u32(), r.u32(), r.u32(), r.u32()
		e.Count = r.uvarint()
		e.Addr = netip.AddrPort{}
		if flags&evAddr != 0 {
			a := r.bytes(uint64(r.byte1()))
			if r.err == nil && e.Addr.UnmarshalBinary(a) != nil {
				r.err = errBatch
			}
		}
		if r.err == nil {
			out = append(out, e)
			prev = e
		}
	}
	if r.err != nil {
		return out, fmt.Errorf("%w (%d events read)", r.err, len(out))
	}
	return out, nil
}
