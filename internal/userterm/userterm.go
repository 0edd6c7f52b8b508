//go:build linux

package userterm

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"

	"golang.org/x/sys/unix"
)

// Max bounds the terminals kept out for one run: each is a rule.
const Max = 256

// Place is a directory terminals are named in, and their names there.
type Place struct {
	Dir  string
	Name *regexp.Regexp
}

// Places are the pseudo-terminals and the virtual consoles (/dev/ttyN,
// the user's after a console login).
var Places = []Place{
	{"/dev/pts", regexp.MustCompile(`^[0-9]+$`)},
	{"/dev", regexp.MustCompile(`^tty[0-9]+$`)},
}

// Find returns the character devices uid owns in places, but those whose
// device is in own, sorted, at most Max, and whether more were left out.
// Nothing is followed: a symbolic link is not a terminal.
func Find(uid int, places []Place, own map[uint64]bool) (terms []string, more bool) {
	for _, pl := range places {
		ents, err := os.ReadDir(pl.Dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !pl.Name.MatchString(e.Name()) {
				continue
			}
			p := filepath.Join(pl.Dir, e.Name())
			var st unix.Stat_t
			if unix.Lstat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR ||
				int(st.Uid) != uid || own[st.Rdev] {
				continue
			}
			terms = append(terms, p)
		}
	}
	sort.Strings(terms)
	if len(terms) > Max {
		return terms[:Max], true
	}
	return terms, false
}

// Own are the devices of the terminals this process has open (its
// standard streams, a pseudo-terminal it made for the command): the
// run's own, which its command reaches through its descriptors and
// /dev/tty anyway.
func Own() map[uint64]bool {
	own := map[uint64]bool{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return own
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR {
			own[st.Rdev] = true
		}
	}
	return own
}
