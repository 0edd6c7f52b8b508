package claudejson

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Guard is ~/.claude.json as it was before a run: recorded before the
// sandbox's command starts, checked once the sandbox is gone. Its fields
// are exported for the agent's journal, which keeps it across a crash.
type Guard struct {
	Path string `json:"path"`
	// Data is the file at start; nil when there was none.
	Data []byte `json:"data,omitempty"`
	// Keep are the folders whose trust the user may answer inside.
	Keep []string `json:"keep,omitempty"`
}

// Undo says what Restore put back.
type Undo struct {
	Path string
	// Keys are the guarded keys put back ("mcpServers",
	// "projects[/home/u/p].mcpServers"); empty when the whole file was.
	Keys []string
	// Whole: the file was no longer JSON, or gone, and the recorded one
	// was put back whole; Aside is where the broken one was kept ("" when
	// it was gone).
	Whole bool
	Aside string
}

// What is the undo in a few words, for an event's rule text.
func (u *Undo) What() string {
	switch {
	case !u.Whole:
		return strings.Join(u.Keys, ", ")
	case u.Aside == "":
		return "the whole file (removed inside)"
	}
	return "the whole file (no longer valid JSON; the broken one is " + u.Aside + ")"
}

// MaxFile bounds what is read: the file grows with every project, a few
// hundred kilobytes on a busy machine.
const MaxFile = 64 << 20

// Read records path (symlinks resolved) with the file-system identity of
// the caller. A missing or unreadable file is recorded as none.
func Read(path string, keep []string) *Guard {
	g := &Guard{Path: path, Keep: keep}
	if p, err := filepath.EvalSymlinks(path); err == nil {
		g.Path = p
	}
	if data, err := readBounded(g.Path); err == nil {
		g.Data = data
	}
	return g
}

func readBounded(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > MaxFile {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", path, MaxFile)
	}
	return os.ReadFile(path)
}

// Restore checks the file after the sandbox ended, with the caller's
// file-system identity, and puts back what it must; nil when nothing. write
// replaces a file atomically, and calls unchanged just before it does,
// giving up with its error. Only the guarded keys are merged back, so
// the other changes of the run (and the user's own outside meanwhile)
// stay. A file that is no longer JSON (Claude Code would fall back to a
// backup the sandbox could have written) gets the recorded file back
// whole, the broken one kept beside it: claude's own changes of the run
// are lost, nothing it would run is let through. A file removed is put
// back.
func (g *Guard) Restore(now time.Time, write func(path string, data []byte, unchanged func() error) error) (*Undo, error) {
	if g == nil {
		return nil, nil
	}
	for try := 1; ; try++ {
		undo, err := g.restore(now, write)
		if !errors.Is(err, ErrChanged) || try == restoreTries {
			return undo, err
		}
	}
}

// ErrChanged: the file changed between Restore's read and its write
// (Claude Code, or the user, wrote it meanwhile); Restore reads it again.
var ErrChanged = errors.New("changed while being put back")

// restoreTries bounds Restore's reads of a file that keeps changing.
const restoreTries = 3

// brokenSettle is how long a file that is not JSON is given to become
// whole before it counts as broken.
const brokenSettle = 50 * time.Millisecond

// readFile is readBounded; a test replaces it to read a file mid-write.
var readFile = readBounded

func (g *Guard) restore(now time.Time, write func(path string, data []byte, unchanged func() error) error) (*Undo, error) {
	cur, err := readFile(g.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && g.Data == nil:
		return nil, nil
	case errors.Is(err, fs.ErrNotExist):
		if err := write(g.Path, g.Data, g.still(nil)); err != nil {
			return nil, err
		}
		return &Undo{Path: g.Path, Whole: true}, nil
	case err != nil:
		return nil, err
	}
	snap, serr := Record(g.Data)
	if g.Data == nil || serr != nil {
		// No file, or none claude could read, at start: nothing in it
		// named a command then.
		snap, _ = Record([]byte("{}"))
	}
	out, changed, perr := snap.Restore(cur, g.Keep)
	if perr != nil {
		if g.Data == nil || serr != nil {
			return nil, nil // not JSON before either: claude reads nothing there
		}
		// A file being written in place (truncated, not whole yet) reads
		// as broken for a moment: it is read again before it is put aside.
		time.Sleep(brokenSettle)
		if again, err := readFile(g.Path); err != nil || !bytes.Equal(again, cur) {
			return nil, fmt.Errorf("%s: %w", g.Path, ErrChanged)
		}
		aside := fmt.Sprintf("%s.replaced-%s", g.Path, now.UTC().Format("20060102T150405"))
		if err := os.Rename(g.Path, aside); err != nil {
			return nil, fmt.Errorf("move the broken %s aside: %w", g.Path, err)
		}
		if err := write(g.Path, g.Data, g.still(nil)); err != nil {
			return nil, err
		}
		return &Undo{Path: g.Path, Whole: true, Aside: aside}, nil
	}
	if len(changed) == 0 {
		return nil, nil
	}
	if err := write(g.Path, out, g.still(cur)); err != nil {
		return nil, err
	}
	return &Undo{Path: g.Path, Keys: changed}, nil
}

// still is the check a write makes just before its rename: the file is
// still what restore read (cur; nil: still absent). A write of the user's
// or claude's outside between the read and the rename would otherwise be
// lost under the merged file; it is ErrChanged, and restore reads again.
// What is left is the time between this check and the rename.
func (g *Guard) still(cur []byte) func() error {
	return func() error {
		now, err := readFile(g.Path)
		switch {
		case cur == nil && errors.Is(err, fs.ErrNotExist):
			return nil
		case cur != nil && err == nil && bytes.Equal(now, cur):
			return nil
		}
		return fmt.Errorf("%s: %w", g.Path, ErrChanged)
	}
}
