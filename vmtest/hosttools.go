package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// defaultHostTools are host programs copied into the guest unless
// --host-tool=none: busybox's ip lacks netns, which network tests need.
var defaultHostTools = []string{"ip"}

// hostTool resolves a host program and the shared libraries it needs, so a
// dynamically linked tool runs in the guest: the program goes to
// /usr/local/bin (ahead of busybox on PATH), each library and the dynamic
// loader to the same path as on the host, copied as files (not symlinks).
func hostTool(ctx context.Context, name string) ([]guestFile, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("host tool %s: %w", name, err)
	}
	files := []guestFile{{host: p, guest: "/usr/local/bin/" + filepath.Base(name), follow: true}}
	if checkStatic(p) == nil {
		return files, nil
	}
	out, err := exec.CommandContext(ctx, "ldd", p).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", p, err)
	}
	libs, err := parseLdd(string(out))
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", p, err)
	}
	for _, lib := range libs {
		files = append(files, guestFile{host: lib, guest: lib, follow: true})
	}
	return files, nil
}

// parseLdd returns the absolute library paths in ldd's output.
func parseLdd(out string) ([]string, error) {
	var libs []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "linux-vdso") || strings.Contains(line, "statically linked") {
			continue
		}
		if _, after, ok := strings.Cut(line, "=> "); ok {
			line = after
		}
		if strings.HasPrefix(line, "not found") {
			return nil, fmt.Errorf("a library is missing: %s", line)
		}
		lib, _, _ := strings.Cut(line, " (")
		if strings.HasPrefix(lib, "/") {
			libs = append(libs, lib)
		}
	}
	return libs, nil
}
