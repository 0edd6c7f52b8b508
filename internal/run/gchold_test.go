package run

import (
	"runtime/debug"
	"testing"
)

// TestHoldGC: the collector is off while any hold is left, and the
// settings it had come back with the last release; a release twice counts
// once.
func TestHoldGC(t *testing.T) {
	before := debug.SetGCPercent(-1)
	debug.SetGCPercent(before)
	beforeLimit := debug.SetMemoryLimit(-1)
	percent := func() int {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p
	}
	r1 := holdGC()
	r2 := holdGC()
	if p := percent(); p != -1 {
		t.Fatalf("held: GC percent %d, want -1 (off)", p)
	}
	if l := debug.SetMemoryLimit(-1); l > gcHoldLimit {
		t.Errorf("held: memory limit %d, want at most %d", l, gcHoldLimit)
	}
	r1()
	r1()
	if p := percent(); p != -1 {
		t.Fatalf("one hold left: GC percent %d, want -1", p)
	}
	r2()
	if p := percent(); p != before {
		t.Errorf("released: GC percent %d, want %d", p, before)
	}
	if l := debug.SetMemoryLimit(-1); l != beforeLimit {
		t.Errorf("released: memory limit %d, want %d", l, beforeLimit)
	}
}
