//go:build linux

package e2e

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/loader"
)

// KeptSets is for a test binary's TestMain: call it before m.Run and the
// function it returns after. An embedded `aigate run` keeps its verified
// network programs pinned under loader.KeptRoot for the next run; a test
// binary's runs would leave them on the machine. The function removes the
// sets made since KeptSets was called that no process uses any more (a
// set's directory is flock'ed for as long as a run uses it: a concurrent
// test's or a real run's is left alone), and loader.KeptRoot itself when
// it did not exist before and is empty now. It runs after failed tests too
// (not after go test's timeout, which kills the binary: the next test
// binary's KeptSets does not take the old sets for its own; `aigate reset
// --force` removes them).
func KeptSets() func() {
	root := loader.KeptRoot
	before := map[string]bool{}
	_, err := os.Lstat(root)
	rootExisted := err == nil
	if ents, err := os.ReadDir(root); err == nil {
		for _, e := range ents {
			before[e.Name()] = true
		}
	}
	return func() {
		ents, err := os.ReadDir(root)
		if err != nil {
			return
		}
		for _, e := range ents {
			if before[e.Name()] || !e.IsDir() {
				continue
			}
			removeUnlocked(filepath.Join(root, e.Name()))
		}
		if !rootExisted {
			_ = unix.Rmdir(root) // fails, as it should, while a set is left in it
		}
	}
}

// removeUnlocked removes the set dir if its lock is free, holding the lock
// while it does: a run that opens the set meanwhile waits or loads its own.
func removeUnlocked(dir string) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		_ = os.RemoveAll(dir)
	}
}
