//go:build linux

package usersock

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
)

// Max bounds the sockets kept for one run: each is a rule (a watched
// name on the fanotify backend).
const Max = 64

// Place is a directory to look in: to what depth, and whether sockets
// directly in it count.
type Place struct {
	Dir   string
	Depth int
	Top   bool
}

// Places are the places to look in for uid. In the temp directories only
// sockets in the user's own directories count (tmux-UID/default,
// ssh-XXXX/agent.N): a rule on a name directly in /tmp would have the
// fanotify backend watch /tmp for it, and every unlink there by anyone
// would cost an event (docs/performance.md). In the user's runtime
// directory every one counts, down to gnupg/d.X/S.gpg-agent.
func Places(uid int) []Place {
	return []Place{
		{Dir: "/tmp", Depth: 2},
		{Dir: "/var/tmp", Depth: 2},
		{Dir: "/dev/shm", Depth: 2},
		{Dir: "/run/user/" + strconv.Itoa(uid), Depth: 3, Top: true},
	}
}

// Find returns the sockets owned by uid in places, sorted, at most Max,
// and whether more were left out. It does not follow symbolic links and
// enters only directories uid owns: a socket in another user's directory
// is that user's business, and the sandbox could not remove it anyway.
func Find(uid int, places []Place) (socks []string, more bool) {
	for _, p := range places {
		walk(p.Dir, p.Depth, p.Top, uint32(uid), &socks)
	}
	sort.Strings(socks)
	if len(socks) > Max {
		return socks[:Max], true
	}
	return socks, false
}

func walk(dir string, depth int, top bool, uid uint32, out *[]string) {
	if depth <= 0 || len(*out) > Max {
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.Type()&fs.ModeSocket != 0:
			if top && owner(p) == uid {
				*out = append(*out, p)
			}
		case e.IsDir() && depth > 1:
			// Only a directory the walk goes into is stat'ed: at
			// the last level it would find nothing, and the user's
			// directories in /tmp can hold hundreds (go-build's
			// 256), each a path walk.
			if owner(p) == uid {
				walk(p, depth-1, true, uid, out)
			}
		}
	}
}

// lstat is syscall.Lstat; tests count the calls.
var lstat = syscall.Lstat

// owner is p's owner, without following a link; an unreadable p is
// root's (never the user's).
func owner(p string) uint32 {
	var st syscall.Stat_t
	if err := lstat(p, &st); err != nil {
		return 0
	}
	return st.Uid
}
