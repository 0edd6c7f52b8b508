//go:build linux

package api

import (
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
)

// batchEvents is a stream with what a batch must carry: every field set
// and unset, strings that repeat and change, times that go back, zero
// times, IPv4, IPv6 with a zone, counts, control characters.
func batchEvents() []events.Event {
	t0 := time.Unix(1_780_000_000, 123456789)
	full := events.Event{Time: t0, Sandbox: "s1-p42", CgroupID: 1 << 40, PID: 42, TGID: 41, UID: 1000, Comm: "cat",
		Kind: events.KindFile, Op: events.OpRead, Path: "/home/u/.env", Rule: 3, RuleText: ".env", Backend: "lsm"}
	net6 := events.Event{Time: t0.Add(-time.Second), Sandbox: "s1-p42", PID: 1<<32 - 1, Comm: "curl", Kind: events.KindNet,
		Op: events.OpConnect, Addr: netip.MustParseAddrPort("[fe80::1%eth0]:443"), Domain: "example.com", Audit: true, Count: 1 << 40}
	return []events.Event{
		full,
		full, // all the same but nothing changes
		{Op: events.OpDelete, Kind: events.KindFile, Path: "/p/a\nb\x1b[31m", Restored: true, Rescan: true},
		{Op: events.OpPlanted, Kind: events.KindFile, Path: "/p/.git/hooks/x", MovedTo: "/p/.aigate-quarantine/t/001-x"},
		net6,
		{Time: t0.Add(time.Hour), Kind: events.KindNet, Op: events.OpConnect, Addr: netip.MustParseAddrPort("10.9.9.9:9"), Comm: "ünïcode"},
		{},
	}
}

// TestEventBatchRoundTrip: a batch decodes to the events that were sent,
// as their JSON messages would (the same JSON), and batches follow each
// other on one connection with other messages between them.
func TestEventBatchRoundTrip(t *testing.T) {
	evs := batchEvents()
	got, err := decodeEvents(appendEvents(nil, evs), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(evs) {
		t.Fatalf("%d events, want %d", len(got), len(evs))
	}
	for i := range evs {
		want, _ := json.Marshal(evs[i])
		have, _ := json.Marshal(got[i])
		if string(want) != string(have) || !got[i].Time.Equal(evs[i].Time) {
			t.Errorf("event %d:\n got %s\nwant %s", i, have, want)
		}
	}

	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w, r := NewConn(a), NewConn(b)
	go func() {
		_ = w.WriteEvents(evs[:2], 0)
		_ = w.Write(&Response{OK: true, Dropped: 7}, 0)
		_ = w.WriteEvents(evs[2:], 0)
	}()
	var all []events.Event
	var resp Response
	for len(all) < len(evs) || resp.Dropped == 0 {
		var r1 Response
		if all, err = r.ReadStream(&r1, all); err != nil {
			t.Fatal(err)
		}
		if r1.Dropped != 0 {
			resp = r1
		}
	}
	if len(all) != len(evs) || resp.Dropped != 7 || all[4].Domain != "example.com" {
		t.Fatalf("over a connection: %d events, dropped %d", len(all), resp.Dropped)
	}
}

// TestEventBatchMalformed: whatever a batch holds, decoding returns an
// error or events, never panics, and never reads past it.
func TestEventBatchMalformed(t *testing.T) {
	good := appendEvents(nil, batchEvents())
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		b := append([]byte(nil), good[:rng.IntN(len(good)+1)]...)
		for range rng.IntN(4) {
			if len(b) > 1 {
				b[1+rng.IntN(len(b)-1)] = byte(rng.Uint32())
			}
		}
		if i%2 == 0 {
			b = append([]byte{evBatchTag}, randBytes(rng, rng.IntN(64))...)
		}
		_, _ = decodeEvents(b, nil)
	}
	if _, err := decodeEvents(good[:len(good)-1], nil); err == nil {
		t.Error("a truncated batch decoded without error")
	}
	if _, err := decodeEvents([]byte(`{"ok":true}`), nil); err == nil {
		t.Error("JSON decoded as a batch")
	}
	if !reflect.DeepEqual(appendEvents(nil, nil), []byte{evBatchTag}) {
		t.Error("an empty batch is more than its tag")
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
