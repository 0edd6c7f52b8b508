//go:build linux

package fanotify

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// parseSyscallFields is parseSyscall as it was, with strings.Fields: the
// reference the in-place field split must agree with.
func parseSyscallFields(line string, table syscallTable) accessKind {
	f := strings.Fields(line)
	if len(f) < 7 {
		return accessUnknown
	}
	return decodeSyscall(f, table)
}

// TestParseSyscall reads /proc/TID/syscall lines as the kernel writes them
// (amd64 numbers: open 2, openat 257, creat 85, open_by_handle_at 304,
// execve 59) and broken ones.
func TestParseSyscall(t *testing.T) {
	table := syscallTable{2: 1, 257: 2, 85: alwaysWrite, 304: 2, 59: neverWrite}
	for _, c := range []struct {
		line string
		want accessKind
	}{
		{"257 0xffffff9c 0x7ffc1a2b 0x80000 0x0 0x0 0x0 0x7ffc1a00 0x7f3a1b2c\n", accessRead},
		{"257 0xffffff9c 0x7ffc1a2b 0x80001 0x0 0x0 0x0 0x7ffc1a00 0x7f3a1b2c\n", accessWrite},   // O_WRONLY
		{"257 0xffffff9c 0x7ffc1a2b 0x80002 0x1b6 0x0 0x0 0x7ffc1a00 0x7f3a1b2c\n", accessWrite}, // O_RDWR
		{"257 0xffffff9c 0x7ffc1a2b 0x80200 0x0 0x0 0x0 0x7ffc1a00 0x7f3a1b2c\n", accessWrite},   // O_TRUNC, read-only
		{"2 0x7ffc1a2b 0x0 0x0 0x0 0x0 0x0 0x7ffc1a00 0x7f3a1b2c\n", accessRead},
		{"2 0x7ffc1a2b 0x241 0x1b6 0x0 0x0 0x0 0x7ffc1a00 0x7f3a1b2c\n", accessWrite},
		{"85 0x7ffc1a2b 0x1b6 0x0 0x0 0x0 0x0 0x7ffc1a00 0x7f3a1b2c\n", accessWrite},
		{"59 0x7ffc1a2b 0x7ffc 0x7ffd 0x0 0x0 0x0 0x7ffc1a00 0x7f3a1b2c\n", accessRead},
		{"304 0x3 0x7ffc1a2b 0x0 0x0 0x0 0x0 0x7ffc1a00 0x7f3a1b2c\n", accessRead},
		{"  257\t0xffffff9c  0x7ffc1a2b\t\t0x0 0x0 0x0 0x0 0x7ffc1a00 0x7f3a1b2c", accessRead},
		{"257 0xffffff9c 0x7ffc1a2b 0x0 0x0 0x0", accessUnknown}, // cut short: six fields
		{"257 0xffffff9c 0x7ffc1a2b 0x0 0x0 0x0 0x0", accessRead},
		{"running\n", accessUnknown},
		{"-1 0x7ffc1a00 0x7f3a1b2c\n", accessUnknown},
		{"0 0x3 0x7ffc1a2b 0x0 0x0 0x0 0x0 0x7ffc1a00 0x7f3a1b2c\n", accessUnknown}, // read(2): not an open
		{"257 0xffffff9c 0x7ffc1a2b zz 0x0 0x0 0x0 0x7ffc1a00 0x7f3a1b2c\n", accessUnknown},
		{"", accessUnknown},
		{" \n", accessUnknown},
	} {
		if got := parseSyscall(c.line, table); got != c.want {
			t.Errorf("parseSyscall(%q) = %v, want %v", c.line, got, c.want)
		}
		if got := parseSyscallFields(c.line, table); got != c.want {
			t.Errorf("reference parse of %q = %v, want %v (the table is wrong)", c.line, got, c.want)
		}
	}
}

// TestParseSyscallAgreesWithFields compares the in-place parser with the
// strings.Fields one on random lines of numbers, hex words and ASCII white
// space.
func TestParseSyscallAgreesWithFields(t *testing.T) {
	table := syscallTable{2: 1, 257: 2, 85: alwaysWrite, 304: 2, 59: neverWrite}
	r := rand.New(rand.NewPCG(1, 2))
	spaces := []string{" ", "  ", "\t", "\n", " \t", "\r", "\v", "\f"}
	words := []string{"257", "2", "85", "304", "59", "0", "-1", "0x0", "0x1", "0x2", "0x200", "0x80000", "0x241", "0xffffff9c", "running", "x", "0x"}
	for i := range 20000 {
		var sb strings.Builder
		if r.IntN(3) == 0 {
			sb.WriteString(spaces[r.IntN(len(spaces))])
		}
		for j := range r.IntN(11) {
			if j > 0 {
				sb.WriteString(spaces[r.IntN(len(spaces))])
			}
			sb.WriteString(words[r.IntN(len(words))])
		}
		if r.IntN(2) == 0 {
			sb.WriteString("\n")
		}
		line := sb.String()
		if got, want := parseSyscall(line, table), parseSyscallFields(line, table); got != want {
			t.Fatalf("line %d %q: parseSyscall = %v, strings.Fields = %v", i, line, got, want)
		}
	}
}

// BenchmarkParseSyscall is the reader's parse of one openat line, in place
// against strings.Fields: go test -bench ParseSyscall -benchmem.
func BenchmarkParseSyscall(b *testing.B) {
	const line = "257 0xffffff9c 0x7ffc1a2b 0x80000 0x0 0x0 0x0 0x7ffc1a00 0x7f3a1b2c\n"
	for _, c := range []struct {
		name  string
		parse func(string, syscallTable) accessKind
	}{{"inplace", parseSyscall}, {"fields", parseSyscallFields}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c.parse(line, syscalls) != accessRead {
					b.Fatal("not read")
				}
			}
		})
	}
}
