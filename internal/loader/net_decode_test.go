//go:build linux

package loader

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
)

// decodeReflect is the decoder the reader used before the hand-written one
// (encoding/binary into the generated struct), kept as its reference.
func decodeReflect(raw []byte, boot time.Time) (events.Event, uint32) {
	var e kernelEvent
	if err := binary.Read(bytes.NewReader(raw), binary.NativeEndian, &e); err != nil {
		panic(err)
	}
	str := func(b []int8) string {
		s := make([]byte, 0, len(b))
		for _, c := range b {
			if c == 0 {
				break
			}
			s = append(s, byte(c))
		}
		return string(s)
	}
	ev := events.Event{
		Time: boot.Add(time.Duration(e.TsNs)), CgroupID: e.CgroupId, PID: e.Pid, TGID: e.Tgid, UID: e.Uid,
		Comm: str(e.Comm[:]), Kind: eventKinds[kernelAigateKind(e.Kind)], Op: eventOps[kernelAigateOp(e.Op)],
		Rule: e.RuleId, Audit: e.Audit != 0,
	}
	switch e.Family {
	case unix.AF_INET:
		ev.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte(e.Addr[:4])), e.Port)
	case unix.AF_INET6:
		ev.Addr = netip.AddrPortFrom(netip.AddrFrom16(e.Addr), e.Port)
	}
	if n := int(e.PathLen); n > 0 {
		ev.Path = str(e.Path[:min(n, len(e.Path))])
	}
	return ev, e.PolicyId
}

// TestDecodeRecordMatchesLayout decodes random records (every family,
// paths empty, short, full and with a path_len past the buffer, names
// without a NUL) by hand and through encoding/binary on the generated
// struct: the field offsets must agree with the C layout.
func TestDecodeRecordMatchesLayout(t *testing.T) {
	boot := time.Unix(1_700_000_000, 123)
	rng := rand.New(rand.NewPCG(1, 2))
	raw := make([]byte, eventSize)
	for i := range 5000 {
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		raw[offKind] = byte(rng.IntN(6))
		raw[offOp] = byte(rng.IntN(13))
		raw[offFamily] = []byte{0, unix.AF_INET, unix.AF_INET6, 7}[i%4]
		// A NUL somewhere in the name and path, or none.
		if i%3 != 0 {
			raw[int(offComm)+rng.IntN(int(commLen))] = 0
			raw[int(offPath)+rng.IntN(pathMax)] = 0
		}
		pathLen := []int{0, 1 + rng.IntN(pathMax), pathMax, pathMax + 1 + rng.IntN(1000)}[i%4]
		binary.NativeEndian.PutUint16(raw[offPathLen:], uint16(pathLen))
		got, gotPolicy, err := decodeRecord(raw, boot)
		if err != nil {
			t.Fatal(err)
		}
		want, wantPolicy := decodeReflect(raw, boot)
		if !reflect.DeepEqual(got, want) || gotPolicy != wantPolicy {
			t.Fatalf("record %d (% x):\n got %+v policy %d\nwant %+v policy %d", i, raw, got, gotPolicy, want, wantPolicy)
		}
	}
	if _, _, err := decodeRecord(raw[:eventSize-1], boot); err == nil {
		t.Error("a short record decoded without error")
	}
}

// BenchmarkDecodeRecord: the hand-written decoder (case) against
// encoding/binary (the one it replaced), per event.
func BenchmarkDecodeRecord(b *testing.B) {
	raw := make([]byte, eventSize)
	raw[offFamily] = unix.AF_INET
	copy(raw[offComm:], "python3\x00")
	boot := time.Now()
	b.Run("reflect", func(b *testing.B) {
		for range b.N {
			decodeReflect(raw, boot)
		}
	})
	b.Run("by-hand", func(b *testing.B) {
		for range b.N {
			if _, _, err := decodeRecord(raw, boot); err != nil {
				b.Fatal(err)
			}
		}
	})
}
