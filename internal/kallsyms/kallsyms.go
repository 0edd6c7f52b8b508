package kallsyms

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// Path is where the kernel lists its symbols.
const Path = "/proc/kallsyms"

var (
	// ErrHidden: the listing has the symbol with its address zeroed, as
	// the kernel shows every address to a reader it will not show them
	// (kernel.kptr_restrict, no CAP_SYSLOG).
	ErrHidden = errors.New("addresses hidden (kernel.kptr_restrict)")
	// ErrMissing: the listing does not have the symbol (a data symbol
	// needs CONFIG_KALLSYMS_ALL).
	ErrMissing = errors.New("not listed (a kernel without CONFIG_KALLSYMS_ALL lists no data symbols)")
)

// Addr returns the address of the kernel's own (not a module's) symbol
// name in r, a listing in the format of /proc/kallsyms ("ADDR TYPE NAME
// [MODULE]" per line). A listing that names it twice at different
// addresses is an error: which one is meant cannot be told.
func Addr(r io.Reader, name string) (uint64, error) {
	var addr uint64
	found := false
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := bytes.Fields(sc.Bytes())
		if len(f) < 3 || string(f[2]) != name || len(f) > 3 {
			continue // another symbol, or a module's
		}
		a, err := strconv.ParseUint(string(f[0]), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("line %d: address %q: %w", line, f[0], err)
		}
		if found && a != addr {
			return 0, fmt.Errorf("%s listed twice, at %#x and %#x", name, addr, a)
		}
		addr, found = a, true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	switch {
	case !found:
		return 0, ErrMissing
	case addr == 0:
		return 0, ErrHidden
	}
	return addr, nil
}

// Lookup is Addr of the file at path (Path, or one under a test's root).
func Lookup(path, name string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	addr, err := Addr(f, name)
	if err != nil {
		return 0, fmt.Errorf("%s: %s: %w", path, name, err)
	}
	return addr, nil
}
