//go:build linux

package loader

import "testing"

// TestNameLenBit: each length of a Names entry has its own set_flags bit
// from AIGATE_NAME_LEN_SHIFT up, lengths from AIGATE_NAME_LEN_LONG on share
// bit 31, and none falls on a rule-kind flag.
func TestNameLenBit(t *testing.T) {
	kindBits := setPaths | setNames | setPrefix | setSuffix | setInodes | setDirInodes | setNameLens
	seen := map[uint32]int{}
	for n := 1; n <= maxNameRule; n++ {
		b := nameLenBit(n)
		if b == 0 || b&(b-1) != 0 || b&kindBits != 0 {
			t.Fatalf("nameLenBit(%d) = %#x, want one bit above the kinds", n, b)
		}
		if n < int(kernelAigateNameLenAIGATE_NAME_LEN_LONG) {
			if m, ok := seen[b]; ok {
				t.Errorf("lengths %d and %d share bit %#x", m, n, b)
			}
			seen[b] = n
		} else if b != 1<<31 {
			t.Errorf("nameLenBit(%d) = %#x, want the long bit 1<<31", n, b)
		}
	}
	if b := nameLenBit(1); b != 1<<8 {
		t.Errorf("nameLenBit(1) = %#x, want 1<<8", b)
	}
	if b := nameLenBit(0); b != 0 {
		t.Errorf("nameLenBit(0) = %#x, want 0 (no bit: the set looks up every component)", b)
	}
}
